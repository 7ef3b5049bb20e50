"""Throughput of GSM8K multiple attempts: one prompt expanded to n samples vs n separate prompts.

``sami eval gsm8k`` draws the n sampled attempts of a problem as one prompt with ``SamplingParams.n = n``
(transformers' ``num_return_sequences``). The alternative is to send the same prompt n times with n = 1.
Both are timed here on the same problems, the same model and the same number of sequences per forward pass
(``--batch-size`` prompts x n for the expanded mode, ``--batch-size`` x n copies for the separate mode), and
also the separate mode at ``--batch-size`` rows, which is what a naive loop over copies would run.

Reported per mode: the median wall seconds of ``backend.generate`` over ``--repeats`` rounds (after one
untimed warm-up call; the modes take turns within a round, so a disturbance from other work on the
machine hits all of them), samples per second, generated tokens per second, and the speedup over the
separate mode at equal rows.

Run from the repository root (benchmarks never overlap: hold the lock)::

    flock /tmp/sami-bench.lock python benchmarks/gsm8k_attempts.py                   # embedded model
    flock /tmp/sami-bench.lock python benchmarks/gsm8k_attempts.py --problems 8 --samples 10 --max-new-tokens 96
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from sami.backends.base import SamplingParams
from sami.backends.transformers_backend import TransformersBackend, load_inference_model
from sami.eval.gsm8k_data import gsm8k_prompt, load_problems


def timed(backend: TransformersBackend, prompts, params: SamplingParams) -> tuple[float, int, int]:
    start = time.perf_counter()
    out = backend.generate(prompts, params, desc=None)
    seconds = time.perf_counter() - start
    samples = sum(len(c) for c in out)
    tokens = sum(x.num_tokens or 0 for c in out for x in c)
    return seconds, samples, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4, help="prompts per forward pass in the expanded mode")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--prompt", default="paper-cot-v1")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the median time is reported")
    args = parser.parse_args()

    model, tokenizer = load_inference_model(args.model)
    problems, _ = load_problems("gsm_symbolic", limit=args.problems, seed=0)
    prompts = [gsm8k_prompt(args.prompt, p.question) for p in problems]
    n, b = args.samples, args.batch_size
    # No stop string: every sequence runs to the token limit unless it emits EOS, so modes do equal work.
    expanded = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, n=n, seed=0)
    single = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, n=1, seed=0)
    copies = [p for p in prompts for _ in range(n)]
    modes = [
        ("expanded: 1 prompt x n samples", TransformersBackend(model, tokenizer, batch_size=b), prompts, expanded),
        ("separate: n copies, equal rows", TransformersBackend(model, tokenizer, batch_size=b * n), copies, single),
        ("separate: n copies, b rows", TransformersBackend(model, tokenizer, batch_size=b), copies, single),
    ]
    device = next(model.parameters()).device
    print(
        f"model {args.model}, {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"{args.problems} problems x {n} samples, max {args.max_new_tokens} new tokens, temperature 1.0, "
        f"batch {b} prompts ({b * n} rows)"
    )
    backend = modes[0][1]
    backend.generate(prompts[:1], SamplingParams(max_new_tokens=4, temperature=1.0, n=2))  # warm-up
    times: list[list[float]] = [[] for _ in modes]
    counts = [(0, 0)] * len(modes)
    for _ in range(args.repeats):
        for k, (_, backend, mode_prompts, params) in enumerate(modes):
            seconds, samples, tokens = timed(backend, mode_prompts, params)
            times[k].append(seconds)
            counts[k] = (samples, tokens)
    rows = [
        (label, backend.batch_size, statistics.median(times[k]), *counts[k])
        for k, (label, backend, _, _) in enumerate(modes)
    ]
    print("seconds per round, mode by mode: " + "; ".join(str([round(t, 1) for t in ts]) for ts in times))
    base = rows[1][2]
    print("| mode | prompts per forward | seconds | samples | samples/s | tokens/s | speedup vs equal rows |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, bs, seconds, samples, tokens in rows:
        print(
            f"| {label} | {bs} | {seconds:.2f} | {samples} | {samples / seconds:.2f} | {tokens / seconds:.1f} "
            f"| {base / seconds:.2f}x |"
        )


if __name__ == "__main__":
    main()
