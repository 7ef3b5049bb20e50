"""Per-step time and peak memory of SFT, DPO, KTO, ORPO, SimPO and SAMI, trained by ``sami train`` on the
same data and model.

Each (method, fine-tuning) cell runs ``sami.train.run.train`` in a fresh Python process, so memory peaks do not
leak between cells; a cell whose process dies (out of memory, ``--timeout``) is reported as failed and the
run goes on. Everything but the method is the same in every cell: model, data file, template, token limits,
queries per step, optimiser.

A step's time is the interval between two consecutive optimiser steps (a global ``torch.optim`` step hook),
so it covers the forward and backward passes, clipping, the optimiser, and each trainer's own bookkeeping
(logging, metrics.jsonl). ``--steps`` steps give ``--steps - 1`` intervals: the first step is the warm-up.
Steps differ in cost because queries differ in length, and each method orders the queries its own way (SAMI
by its seeded query stream, TRL by the HF Trainer's sampler), so the mean over a whole epoch of timed steps
(the default: 8 timed steps of 2 queries = the 16 example queries) compares the methods on nearly the same
queries, where the median of a few steps would not.
``setup s`` is the time from calling ``train`` to the first optimiser step: loading, tokenising, and for DPO
with full fine-tuning the one pass that precomputes the reference log-probs. Peak memory is the process's
peak resident memory (ru_maxrss, model loading included) on a CPU and ``torch.cuda.max_memory_allocated`` on
a GPU.

What one step processes differs by method, by design: with C constitutions a SAMI query is C prompts and C*C
scored responses (the shared layout packs them into C rows); an SFT example is one prompt and one response;
a DPO pair is one prompt with two responses, plus the reference's forward pass when the reference is the
network with LoRA adapters disabled (with full fine-tuning it is precomputed); ORPO and SimPO take the same
pairs without a reference; a KTO example is one prompt and one response, plus a second sequence (the prompt
with another example's response) for its KL estimate, both scored by the reference as DPO's are.

The header gives a float32 2048^3 matmul rate measured just before the cells, so that runs on different or
shared machines can be compared.

Run from the repository root::

    python benchmarks/train_methods.py                       # embedded model, LoRA and full, 9 steps
    python benchmarks/train_methods.py --finetune lora --steps 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cells import add_cell_options, answered_as_worker, run_cell

RESULT_MARK = "TRAIN_METHODS_RESULT "
ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
METHODS = ("sft", "dpo", "kto", "orpo", "simpo", "sami")


def worker(spec: dict) -> dict:
    import resource

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    try:
        import sami  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
    from sami.core.config import from_dict
    from sami.train.config import TrainConfig
    from sami.train.run import train

    stamps: list[float] = []
    register_optimizer_step_post_hook(lambda *args: stamps.append(time.perf_counter()))
    out = tempfile.mkdtemp(prefix=f"bench-{spec['method']}-")
    cfg = from_dict(
        TrainConfig,
        {
            "method": spec["method"],
            "data": spec["data"],
            "output_dir": out,
            "max_steps": spec["steps"],
            "max_prompt_tokens": spec["max_prompt_tokens"],
            "max_response_tokens": spec["max_response_tokens"],
            "queries_per_device": spec["queries_per_device"],
            "model": {"name_or_path": spec["model"], "finetune": spec["finetune"]},
            "optim": {"lr": 1e-5, "scheduler": "constant"},
        },
    )
    start = time.perf_counter()
    try:
        train(cfg)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    if torch.cuda.is_available():
        peak, kind = torch.cuda.max_memory_allocated(), "cuda max_memory_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS"
    return {
        "step_s": statistics.median(intervals) if intervals else None,
        "step_s_mean": statistics.fmean(intervals) if intervals else None,
        "step_s_min": min(intervals, default=None),
        "step_s_max": max(intervals, default=None),
        "timed_steps": len(intervals),
        "setup_s": stamps[0] - start if stamps else None,
        "peak_gib": peak / GIB,
        "memory_kind": kind,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
    }


def _fmt(value, digits=3) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def table(rows: list[dict]) -> str:
    lines = [
        "| finetune | method | step s (median) | mean | min-max | setup s | peak GiB | vs SAMI step (mean) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        r = row["result"]
        if "error" in r:
            lines.append(f"| {row['finetune']} | {row['method']} | failed ({r['error']}) |  |  |  |  |  |")
            continue
        sami = next((x["result"] for x in rows if x["finetune"] == row["finetune"] and x["method"] == "sami"), {}).get(
            "step_s_mean"
        )
        ratio = f"{r['step_s_mean'] / sami:.2f}x" if sami and r["step_s_mean"] else ""
        lines.append(
            f"| {row['finetune']} | {row['method']} | {_fmt(r['step_s'], 4)} | {_fmt(r['step_s_mean'], 4)} | "
            f"{_fmt(r['step_s_min'])}-{_fmt(r['step_s_max'])} | {_fmt(r['setup_s'])} | {r['peak_gib']:.2f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ",".join(METHODS))
    p.add_argument("--finetune", default="lora,full", help="comma-separated, from lora,full")
    p.add_argument("--model", default="smollm2-135m", help="alias, hub id or folder (default: the embedded model)")
    p.add_argument("--data", default=str(ROOT / "examples" / "example.jsonl"))
    p.add_argument("--max-prompt-tokens", type=int, default=128)
    p.add_argument("--max-response-tokens", type=int, default=128)
    p.add_argument("--queries-per-device", type=int, default=2, help="KTO needs at least 2")
    add_cell_options(p, steps=9, timeout=1800)
    args = p.parse_args(argv)
    if answered_as_worker(args, worker, RESULT_MARK):
        return 0
    from judge_verdicts import MATMUL_N, matmul_gflops  # the same measurement as the judging benchmark

    gflops = matmul_gflops()
    print(f"matmul {MATMUL_N}^3 float32: {gflops:.0f} GFLOP/s", file=sys.stderr, flush=True)
    rows = []
    for finetune in args.finetune.split(","):
        for method in args.methods.split(","):
            spec = {
                "method": method,
                "finetune": finetune,
                "model": args.model,
                "data": args.data,
                "steps": args.steps,
                "max_prompt_tokens": args.max_prompt_tokens,
                "max_response_tokens": args.max_response_tokens,
                "queries_per_device": args.queries_per_device,
            }
            t0 = time.perf_counter()
            result = run_cell(__file__, spec, mark=RESULT_MARK, timeout=args.timeout, cwd=ROOT)
            print(f"{finetune} {method}: {result} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
            rows.append({**spec, "result": result})
    first = next((r["result"] for r in rows if "error" not in r["result"]), {})
    print(
        f"model {args.model}, data {args.data}, {args.queries_per_device} queries per step, prompt <= "
        f"{args.max_prompt_tokens} and response <= {args.max_response_tokens} tokens, {args.steps - 1} timed "
        f"steps after one warm-up; device {first.get('device')}, {first.get('threads')} threads; memory: "
        f"{first.get('memory_kind')}; matmul {MATMUL_N}^3 float32 {gflops:.0f} GFLOP/s before the cells"
    )
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"matmul_gflops": gflops, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
