"""Throughput of the local transformers backend at several batch sizes, side by side in one run.

The prompts are those ``sami generate`` sends: queries of the built-in pool under the positive constitution
of their category, rendered with the ``gen-chat-v1`` template. Every batch size answers the same prompts with
greedy decoding and the same token limit, after one warm-up batch. Responses/s counts prompts answered;
tokens/s counts the tokens of the answers only (a row that finished early inside a batch waits for the
others; that waste is part of what is measured).

Run from the repository root::

    python benchmarks/generation.py                          # embedded model, batch 1 vs 8
    python benchmarks/generation.py --batch-sizes 1,4,8,16 --prompts 32 --max-new-tokens 128
    python benchmarks/generation.py --quick                  # tiny random model, seconds

The markdown table at the end can be pasted into docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time

import torch

from sami.backends.base import SamplingParams
from sami.backends.transformers_backend import TransformersBackend, load_inference_model
from sami.data.pools import builtin_items
from sami.data.principles import load_library, sample_constitutions
from sami.data.templates import GEN_CHAT_TEMPLATE, generation_prompt


def prompts(n: int, seed: int = 0) -> list:
    library = load_library()
    items = builtin_items()
    random.Random(seed).shuffle(items)
    out = []
    for item in items[:n]:
        positive = sample_constitutions(library.for_category(item.category), "flip_all", rng=random.Random(item.id))[0]
        out.append(generation_prompt(GEN_CHAT_TEMPLATE, positive.render(), item.prompt))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="tiny random model, 4 prompts, 8 tokens")
    args = parser.parse_args()
    if args.quick:
        from transformers import LlamaConfig, LlamaForCausalLM

        from sami.models.loading import load_tokenizer

        tokenizer = load_tokenizer("smollm2-135m")
        cfg = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
        model, name = LlamaForCausalLM(cfg).eval(), "tiny random Llama"
        args.prompts, args.max_new_tokens = 4, 8
    else:
        model, tokenizer = load_inference_model(args.model)
        name = args.model
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    texts = prompts(args.prompts)
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    device = next(model.parameters()).device
    print(
        f"model {name}, {device.type}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"{len(texts)} prompts, greedy, at most {args.max_new_tokens} new tokens"
    )
    rows = []
    for bs in batch_sizes:
        backend = TransformersBackend(model, tokenizer, batch_size=bs)
        backend.generate(texts[:bs], SamplingParams(max_new_tokens=4), progress=False)  # warm-up
        start = time.perf_counter()
        out = backend.generate(texts, params, progress=False)
        seconds = time.perf_counter() - start
        tokens = sum(c[0].num_tokens for c in out)
        rows.append((bs, seconds, len(texts) / seconds, tokens / seconds, tokens))
        print(
            f"batch {bs:>3}: {seconds:7.2f} s, {len(texts) / seconds:6.2f} responses/s, "
            f"{tokens / seconds:7.1f} tokens/s"
        )
    base = rows[0]
    print("\n| batch size | seconds | responses/s | tokens/s | answer tokens | throughput vs batch " + f"{base[0]} |")
    print("|---|---|---|---|---|---|")
    for bs, seconds, rps, tps, tokens in rows:
        print(f"| {bs} | {seconds:.2f} | {rps:.2f} | {tps:.1f} | {tokens} | {tps / base[3]:.2f}x |")


if __name__ == "__main__":
    main()
