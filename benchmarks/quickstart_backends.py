"""The whole quickstart through vLLM's engine and through the transformers backend, back to back, per stage.

Runs ``sami experiment configs/quickstart.yaml`` twice from empty folders under ``--output-dir``: once as
the quickstart is (the transformers backend for the teachers, the answering models and the judge) and once
with every one of them on vLLM's engine (``kind: vllm``; the judge's verdicts still read from the letters'
probabilities, ``mtbench.verdict: probability``, as the quickstart's local judge does). Both legs run in
the same environment (``.venv-vllm``), one after the other, each in its own process, so each pays its own
model loads and, for vLLM, an engine start per model a stage uses (included in the stage times). A float32
2048^3 matmul rate is measured before each leg and after the last, so the times can be read against the
machine's load. Prints each stage's seconds (from its ``stage.json``) side by side, and each leg's wall time.
``--train-steps N`` cuts every method's training to N steps in both legs: training runs no backend, so this
shortens the run without changing what the legs compare (the data and evaluation stages, at their sizes).

vLLM runs float32 by default (``--dtype``): its CPU kernels then give the transformers backend's greedy
answers (``tests/backends/test_vllm_backend.py``), so both legs run the same experiment; sampled answers
(GSM8K's attempts) differ between the engines' random streams.

    flock /tmp/sami-bench.lock .venv-vllm/bin/python benchmarks/quickstart_backends.py
    flock /tmp/sami-bench.lock .venv-vllm/bin/python benchmarks/quickstart_backends.py --train-steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from judge_verdicts import matmul_gflops  # the same measurement as the other benchmarks

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/quickstart.yaml"
ENGINE_ARGS = "{max_model_len: 1024, enforce_eager: true, seed: 0}"


def overrides(leg: str, dtype: str, train_steps: int | None = None) -> list[str]:
    """The -o overrides of a leg: every generating backend on vLLM (the vllm leg), training cut to
    ``train_steps`` optimiser steps per method (both legs; training runs no backend)."""
    cut = []
    if train_steps:
        keys = ["mtbench.train", "mtbench.overrides.sft", "mtbench.overrides.dpo", "math.train"]
        cut = [f"{k}.max_steps={train_steps}" for k in keys]
    if leg == "transformers":
        return cut
    engine = ["kind=vllm", f"dtype={dtype}", f"engine_args={ENGINE_ARGS}"]
    where = ["backend", "judge", "mtbench.generate.teacher", "math.generate.teacher"]
    return cut + [f"{w}.{e}" for w in where for e in engine] + ["mtbench.mtbench.verdict=probability"]


def stage_seconds(args: list[str]) -> dict[str, float]:
    """Each finished stage's seconds, from the markers of the run ``sami experiment CONFIG *args`` planned."""
    from sami.study.experiment import load_experiment_config, plan_experiment
    from sami.study.stages import plan, read_marker

    cfg = load_experiment_config(ROOT / CONFIG, [a for a in args if a != "-o"])
    return {s.name: marker["seconds"] for s in plan(plan_experiment(cfg)[0]) if (marker := read_marker(s.folder))}


def run_leg(leg: str, folder: Path, dtype: str, train_steps: int | None) -> dict:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    args = ["-o", f"output_dir={folder}"]
    for text in overrides(leg, dtype, train_steps):
        args += ["-o", text]
    command = [sys.executable, "-m", "sami.cli", "experiment", CONFIG, *args]
    gflops = matmul_gflops()
    print(f"{leg}: matmul {gflops:.0f} GFLOP/s; {' '.join(command)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with open(folder.with_name(folder.name + ".log"), "wb") as log:
        code = subprocess.call(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    print(f"{leg}: exit {code} in {wall:.0f} s", file=sys.stderr, flush=True)
    return {"leg": leg, "exit": code, "wall": wall, "gflops_before": gflops, "stages": stage_seconds(args)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="runs/quickstart-backends")
    parser.add_argument("--legs", default="vllm,transformers", help="which legs, in this order")
    parser.add_argument("--dtype", default="float32", help="vLLM's dtype")
    parser.add_argument("--train-steps", type=int, help="cut every method's training to this many steps (both legs)")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB per engine
    out = ROOT / args.output_dir
    legs = [run_leg(leg, out / leg, args.dtype, args.train_steps) for leg in args.legs.split(",")]
    after = matmul_gflops()
    (out / "results.json").write_text(json.dumps({"legs": legs, "gflops_after": after}, indent=2))
    names = list(dict.fromkeys(s for leg in legs for s in leg["stages"]))
    print("| stage | " + " | ".join(f"{leg['leg']} s" for leg in legs) + " |")
    print("|---|" + "---:|" * len(legs))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{leg['stages'].get(name, float('nan')):.1f}" for leg in legs) + " |")
    print("| whole run (wall, process start included) | " + " | ".join(f"{leg['wall']:.0f}" for leg in legs) + " |")
    print("| matmul before the leg, GFLOP/s | " + " | ".join(f"{leg['gflops_before']:.0f}" for leg in legs) + " |")
    print(f"matmul after the last leg: {after:.0f} GFLOP/s; exits: {[leg['exit'] for leg in legs]}")
    return max(leg["exit"] for leg in legs)


if __name__ == "__main__":
    sys.exit(main())
