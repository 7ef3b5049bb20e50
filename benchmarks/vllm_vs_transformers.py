"""The embedded model through vLLM's engine and through the transformers backend, side by side in one run.

Two stages of the quickstart are timed on each engine:

- generation: the prompts ``sami generate`` sends (``benchmarks/generation.py``'s: built-in pool queries
  under their category's positive constitution), greedy, ``--max-new-tokens`` each; responses/s and
  tokens/s of the answers;
- judge prefill: the principle-aware judge's prompts (``benchmarks/judge_verdicts.py``'s), the verdict read
  from the letters' probabilities after ``VERDICT_PREFIX`` (``next_token_probs_iter``); items/s.

The transformers backend runs as the quickstart configures it (float32 weights, ``batch_size`` 8 for the
teacher and the judge); vLLM schedules every prompt of a call at once (its own batching) in bfloat16 (the
dtype its CPU kernels are fast in) and float32 (the quickstart's). Each engine's start (model load; for vLLM
also the engine core process and its KV cache) is timed separately: a quickstart stage pays it once per
model. After one untimed warm-up call, each stage is timed ``--rounds`` times and the median kept. A float32
2048^3 matmul rate is measured before and after, so that a number can be read against the machine's load.

Needs vLLM (``make bench-vllm`` runs it in ``.venv-vllm``). Run from the repository root::

    flock /tmp/sami-bench.lock .venv-vllm/bin/python benchmarks/vllm_vs_transformers.py
    flock /tmp/sami-bench.lock .venv-vllm/bin/python benchmarks/vllm_vs_transformers.py --prompts 64 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generation import prompts as generation_prompts  # noqa: E402
from judge_verdicts import judge_prompts, matmul_gflops  # noqa: E402

from sami.backends.base import BackendConfig, SamplingParams, make_backend  # noqa: E402
from sami.eval.judges import VERDICT_LETTERS, VERDICT_PREFIX  # noqa: E402

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; vLLM's CPU default takes a large share of memory
ENGINE_ARGS = {"max_model_len": 2048, "enforce_eager": True, "seed": 0}


def timed(call, rounds: int) -> tuple[float, object]:
    call()  # warm-up
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(label: str, cfg: BackendConfig, gen, judge, params: SamplingParams, rounds: int) -> dict:
    start = time.perf_counter()
    backend = make_backend(cfg)
    start_s = time.perf_counter() - start
    gen_s, out = timed(lambda: backend.generate(gen, params, progress=False), rounds)
    tokens = sum(c[0].num_tokens for c in out)
    judge_s, _ = timed(
        lambda: dict(backend.next_token_probs_iter(judge, VERDICT_PREFIX, VERDICT_LETTERS, progress=False)), rounds
    )
    row = {
        "engine": label,
        "start_s": start_s,
        "gen_s": gen_s,
        "responses_s": len(gen) / gen_s,
        "tokens_s": tokens / gen_s,
        "judge_s": judge_s,
        "items_s": len(judge) / judge_s,
        "texts": [c[0].text for c in out],
    }
    print(
        f"{label}: start {start_s:.1f} s; generation {gen_s:.2f} s ({row['tokens_s']:.1f} tokens/s); "
        f"judge prefill {judge_s:.2f} s ({row['items_s']:.2f} items/s)",
        flush=True,
    )
    if hasattr(backend, "llm"):
        del backend.llm  # end the engine core before the next one starts
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=32, help="generation prompts")
    parser.add_argument("--items", type=int, default=16, help="judge prompts")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="the transformers backend's (the quickstart's)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    before = matmul_gflops()
    gen, judge = generation_prompts(args.prompts), judge_prompts(args.items)
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    print(
        f"model {args.model}; torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}; float32 2048^3 matmul {before:.1f} GFLOP/s at the start"
    )
    print(
        f"{len(gen)} generation prompts (greedy, at most {args.max_new_tokens} new tokens), {len(judge)} judge "
        f"prompts; median of {args.rounds} rounds after a warm-up",
        flush=True,
    )
    model = args.model
    rows = [
        measure(
            f"transformers float32, batch {args.batch_size}",
            BackendConfig(kind="transformers", model=model, dtype="float32", batch_size=args.batch_size),
            gen,
            judge,
            params,
            args.rounds,
        )
    ]
    for dtype in ("bfloat16", "float32"):
        cfg = BackendConfig(kind="vllm", model=model, dtype=dtype, engine_args=ENGINE_ARGS)
        rows.append(measure(f"vLLM {dtype}", cfg, gen, judge, params, args.rounds))
    after = matmul_gflops()
    base = rows[0]
    print(f"\nfloat32 2048^3 matmul: {before:.1f} GFLOP/s before, {after:.1f} GFLOP/s after\n")
    columns = ["engine", "start s", "generation s", "tokens/s", "vs transformers", "judge prefill s", "items/s"]
    columns += ["vs transformers", "answers equal to transformers'"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = sum(a == b for a, b in zip(r["texts"], base["texts"], strict=True))
        print(
            f"| {r['engine']} | {r['start_s']:.1f} | {r['gen_s']:.2f} | {r['tokens_s']:.1f} | "
            f"{r['tokens_s'] / base['tokens_s']:.2f}x | {r['judge_s']:.2f} | {r['items_s']:.2f} | "
            f"{r['items_s'] / base['items_s']:.2f}x | {same}/{len(gen)} |"
        )


if __name__ == "__main__":
    main()
