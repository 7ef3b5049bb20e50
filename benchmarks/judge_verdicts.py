"""Seconds per judged item of the two ways the MT-Bench judge reads a pairwise verdict, side by side in one run.

``sami eval mtbench`` reads a model judge's verdict either from generated text (``mtbench.verdict: text``:
``backend.generate`` with ``judge_max_new_tokens``, then ``parse_pairwise``) or from the probabilities of the
letters A, B and C right after ``VERDICT_PREFIX`` (``mtbench.verdict: probability``: one batched forward pass,
``backend.next_token_probs_iter``). Both are timed here on the same judge prompts and the same backend.

The prompts are the principle-aware judge's (``principle_aware_prompt``): MT-Bench questions of the package in
file order, each under its category's constitution in the weak phrasing (the judge's default), with two short
fixed answers (the question restated as a sentence, and as a bulleted list), in both orders as the judge
shows them; ``--items`` prompts in all. The embedded judge is built as the quickstart builds it
(``BackendConfig(kind="transformers", model="smollm2-135m", batch_size=8)``).

Reported per mode: the median over ``--rounds`` rounds of the wall seconds per judged item (after one untimed
warm-up call of each mode; the modes take turns within a round, and alternate which goes first, so a
disturbance from other work on the machine hits both), the speed-up of probability over text mode, and how
many verdicts each mode could read (text: ``parse_pairwise`` finds one; probability: the letters'
probabilities exist). The header gives torch's thread count and a float32 matmul rate (2048^3, on the CPU)
measured at the start, so that runs on different machines or under different load can be compared.

Run from the repository root (benchmarks never overlap: hold the lock)::

    flock /tmp/sami-bench.lock python benchmarks/judge_verdicts.py                    # 16 items, 48 tokens
    flock /tmp/sami-bench.lock python benchmarks/judge_verdicts.py --items 32 --rounds 3 --batch-size 16
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from sami.backends.base import BackendConfig, SamplingParams, make_backend
from sami.data.principles import load_library
from sami.eval.common import constitution_text
from sami.eval.judges import VERDICT_LETTERS, VERDICT_PREFIX, hard_verdict, parse_pairwise, principle_aware_prompt
from sami.eval.mtbench_data import load_questions

MATMUL_N = 2048


def matmul_gflops(n: int = MATMUL_N, warmup: int = 2, repeats: int = 10) -> float:
    """float32 GFLOP/s of an n x n by n x n matmul on the CPU: the mean of ``repeats`` after ``warmup``."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    for _ in range(warmup):
        torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    per_matmul = (time.perf_counter() - start) / repeats
    return 2 * n**3 / per_matmul / 1e9


def answers(question: str) -> tuple[str, str]:
    """Two short fixed answers to ``question``: its first sentence restated, and the same as a bulleted list."""
    first = question.strip().split("\n")[0]
    for end in (". ", "? ", "! "):
        first = first.split(end)[0]
    first = first.rstrip(".?!")
    plain = f"Here is my answer to the request: {first}. I would start with the main point and keep it short."
    bullets = f"- The request: {first}.\n- The main point first.\n- Kept short."
    return plain, bullets


def judge_prompts(n: int, phrasing: str = "weak") -> list[list[dict]]:
    """``n`` principle-aware judge prompts: questions in file order, each pair of answers in both orders."""
    questions, _ = load_questions("package")
    library = load_library()
    prompts = []
    for k in range(n):
        q = questions[(k // 2) % len(questions)]
        constitution = constitution_text(library.for_category(q.category), phrasing)
        plain, bullets = answers(q.turns[0])
        a, b = (plain, bullets) if k % 2 == 0 else (bullets, plain)
        prompts.append(principle_aware_prompt(constitution, q.turns[0], a, b))
    return prompts


def text_mode(backend, prompts, params: SamplingParams) -> tuple[float, list[str | None], int]:
    """Seconds, the parsed verdicts, and the generated tokens."""
    start = time.perf_counter()
    out = backend.generate(prompts, params, progress=False)
    seconds = time.perf_counter() - start
    return seconds, [parse_pairwise(c[0].text) for c in out], sum(c[0].num_tokens or 0 for c in out)


def probability_mode(backend, prompts) -> tuple[float, list[str | None]]:
    """Seconds and the hard verdicts (None where the letters have no probabilities)."""
    start = time.perf_counter()
    results = dict(backend.next_token_probs_iter(prompts, VERDICT_PREFIX, VERDICT_LETTERS, progress=False))
    seconds = time.perf_counter() - start
    verdicts = [None if results[i].probs is None else hard_verdict(results[i].probs) for i in range(len(prompts))]
    return seconds, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--items", type=int, default=16, help="judge prompts (question x order)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="text mode's limit (judge_max_new_tokens)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the median time is reported")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass, both modes")
    args = parser.parse_args()
    if args.items < 1 or args.rounds < 1 or args.max_new_tokens < 1 or args.batch_size < 1:
        parser.error("--items, --rounds, --max-new-tokens and --batch-size must be at least 1")

    threads = torch.get_num_threads()
    gflops = matmul_gflops()
    start = time.perf_counter()
    backend = make_backend(BackendConfig(kind="transformers", model=args.model, batch_size=args.batch_size))
    load_s = time.perf_counter() - start
    prompts = judge_prompts(args.items)
    prompt_tokens = [len(backend.encode(p)) for p in prompts]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, seed=0)
    device = next(backend.model.parameters()).device
    print(
        f"model {args.model} (loaded in {load_s:.1f} s), {device}, torch {torch.__version__}, {threads} threads, "
        f"{platform.processor() or platform.machine()}; float32 {MATMUL_N}^3 matmul {gflops:.1f} GFLOP/s"
    )
    print(
        f"{len(prompts)} principle-aware judge prompts ({statistics.mean(prompt_tokens):.0f} tokens on average, "
        f"{max(prompt_tokens)} at most), batch {backend.batch_size}, text mode greedy with at most "
        f"{args.max_new_tokens} new tokens, {args.rounds} rounds"
    )

    warm = prompts[: backend.batch_size]
    backend.generate(warm, SamplingParams(max_new_tokens=2, seed=0), progress=False)
    probability_mode(backend, warm)
    times: dict[str, list[float]] = {"text": [], "probability": []}
    verdicts: dict[str, list[str | None]] = {}
    tokens = 0
    for r in range(args.rounds):
        for mode in ("text", "probability") if r % 2 == 0 else ("probability", "text"):
            if mode == "text":
                seconds, verdicts["text"], tokens = text_mode(backend, prompts, params)
            else:
                seconds, verdicts["probability"] = probability_mode(backend, prompts)
            times[mode].append(seconds)
    print("seconds per round: " + "; ".join(f"{m} {[round(t, 2) for t in ts]}" for m, ts in times.items()))

    per_item = {m: statistics.median(ts) / len(prompts) for m, ts in times.items()}
    read = {m: sum(v is not None for v in vs) for m, vs in verdicts.items()}
    both = [(t, p) for t, p in zip(verdicts["text"], verdicts["probability"], strict=True) if t and p]
    agree = sum(t == p for t, p in both)
    print(
        f"text mode generated {tokens / len(prompts):.1f} tokens per item; the modes' verdicts agree on "
        f"{agree} of the {len(both)} items both could read"
    )
    print("\n| mode | median s/item | items/s | verdicts read | read rate | speed-up vs text |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in ("text", "probability"):
        s = per_item[mode]
        print(
            f"| {mode} | {s:.3f} | {1 / s:.2f} | {read[mode]}/{len(prompts)} | {read[mode] / len(prompts):.0%} "
            f"| {per_item['text'] / s:.2f}x |"
        )


if __name__ == "__main__":
    main()
