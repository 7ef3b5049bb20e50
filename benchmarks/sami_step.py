"""Time one SAMI optimiser step with the "naive" and the "shared" log-prob layouts.

One step is: the (1, C, C) log-prob matrix of one query (``sami.core.logprobs.batch_logprob_matrices``), the SAMI
loss, the backward pass, an AdamW step and ``zero_grad``; full fine-tuning, every parameter trainable. The
grid is models x constitutions C x (prompt tokens : response tokens), with random token ids of exactly those
lengths (C prompts of P tokens, C responses of R tokens, one query per batch). Each (model, C, shape, layout)
cell runs in a fresh Python process (``benchmarks/cells.py``), so that memory peaks and allocator state do not
leak from one cell into the next; a cell whose process dies (out of memory, ``--timeout``) is reported as failed
and the run goes on.

Per cell it reports the median step time over ``--repeats`` timed steps (after one warm-up step), tokens per
second (counting the tokens the layout actually processes, ``QueryTokens.num_tokens(layout)``), the peak
memory of the step and its increase over the memory held once the model and optimiser are built, a model
FLOP utilisation against a matmul peak measured on the same device, and on the shared row the speedup over
naive, the speedup the token counts alone would allow, and the ratio of memory increases.

Models: ``smollm2`` (the embedded SmolLM2-135M, float32), ``large`` (a random-weight Llama, hidden 1024, 12
layers, about 185M parameters, float32), ``llama-1b`` (random weights shaped like Llama-3.2-1B, bfloat16;
part of the default list only on a GPU) and ``tiny`` (a toy config for smoke tests). On a GPU every model
runs on cuda.

Run from the repository root::

    python benchmarks/sami_step.py                 # full grid (minutes to hours on a CPU)
    python benchmarks/sami_step.py --quick         # tiny smoke test, seconds
    python benchmarks/sami_step.py --models smollm2 --constitutions 2,4 --shapes 128:128 --json out.json

The final markdown table can be pasted into docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

from cells import run_cell

RESULT_MARK = "SAMI_STEP_RESULT "
LAYOUT_ORDER = ("naive", "shared")
GIB = 1024**3

# Random-weight Llama shapes. Every one ties the output projection to the input embedding.
LLAMA_SHAPES = {
    "large": dict(
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=12,
        num_attention_heads=16,
        num_key_value_heads=4,
        vocab_size=49152,
        max_position_embeddings=8192,
    ),
    "llama-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=8192,
        rope_theta=500000.0,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        max_position_embeddings=1024,
    ),
}
MODEL_DTYPES = {"smollm2": "float32", "large": "float32", "llama-1b": "bfloat16", "tiny": "float32"}
MODEL_NOTES = {
    "smollm2": "embedded SmolLM2-135M (sami.models.loading.load_model), float32",
    "large": "random-weight Llama, hidden 1024, inter 2816, 12 layers, 16/4 heads, vocab 49152, tied, float32",
    "llama-1b": (
        "random-weight Llama-3.2-1B shape, hidden 2048, inter 8192, 16 layers, 32/8 heads, vocab 128256, tied, bf16"
    ),
    "tiny": "random-weight toy Llama, hidden 64, 2 layers, vocab 512, tied, float32",
}


# --------------------------------------------------------------------------------------------- worker side


def _import_sami() -> None:
    """Make ``import sami`` work from a checkout even when the package is not installed."""
    try:
        import sami  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _current_rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _release_free_heap() -> None:
    """Hand freed heap pages back to the OS so the RSS measured before the steps is what is really held."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0), so ru_maxrss starts from the current RSS.

    Without it the peak could be the transient of loading the model rather than of the step.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _build_model(name: str, device: str, seed: int):
    import torch

    torch.manual_seed(seed)
    if name == "smollm2":
        from sami.models.loading import ModelConfig, load_model

        model, _ = load_model(ModelConfig(dtype="float32", attn_implementation="sdpa"))
        return model.to(device)
    if name not in LLAMA_SHAPES:
        raise ValueError(f"unknown model {name!r}")
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2, **LLAMA_SHAPES[name])
    dtype = getattr(torch, MODEL_DTYPES[name])
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model


def _parameter_counts(model) -> dict[str, int]:
    """Total, body (outside the input embedding and output projection) and head (output projection)."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    tied = head is embed or head.data_ptr() == embed.data_ptr()
    body = total - embed.numel() - (0 if tied else head.numel())
    return {"params": total, "body_params": body, "head_params": head.numel(), "tied": tied}


def _random_query(vocab: int, c: int, prompt_len: int, response_len: int, seed: int):
    import torch

    from sami.core.tokens import QueryTokens

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (2 * c, max(prompt_len, response_len)), generator=gen).tolist()
    prompts = tuple(tuple(row[:prompt_len]) for row in ids[:c])
    responses = tuple(tuple(row[:response_len]) for row in ids[c:])
    return QueryTokens(prompts, responses)


def worker_step(spec: dict) -> dict:
    """One (model, C, shape, layout) cell: build, warm up, time. Runs in its own process."""
    import torch

    from sami.core.logprobs import batch_logprob_matrices
    from sami.core.objective import sami_loss

    if spec["threads"] > 0:
        torch.set_num_threads(spec["threads"])
    device, layout = spec["device"], spec["layout"]
    c, p_len, r_len = spec["constitutions"], spec["prompt_tokens"], spec["response_tokens"]

    model = _build_model(spec["model"], device, spec["seed"])
    model.train()
    counts = _parameter_counts(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    query = _random_query(model.config.vocab_size, c, p_len, r_len, spec["seed"])
    tokens = query.num_tokens(layout)
    # Positions whose full-vocabulary logits the layout computes: naive projects every position of its
    # C*C rows; shared keeps the last C*R + 1 positions of each of its C rows (logits_to_keep).
    logit_positions = tokens if layout == "naive" else c * (c * r_len + 1)

    def step() -> float:
        matrix = batch_logprob_matrices(model, [query], layout=layout, pad_token_id=0)
        loss = sami_loss(matrix)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    # Memory held once model and optimiser exist (AdamW state is created lazily by the first step, so the
    # increase below includes gradients and optimiser state as well as activations).
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base_bytes = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        peak_reset = True
    else:
        import resource

        _release_free_heap()
        base_bytes = _current_rss_kib() * 1024
        peak_reset = _reset_peak_rss()

    start = time.perf_counter()
    loss = step()
    _synchronize(device)
    warmup_s = time.perf_counter() - start

    times = []
    for _ in range(spec["repeats"]):
        _synchronize(device)
        start = time.perf_counter()
        loss = step()
        _synchronize(device)
        times.append(time.perf_counter() - start)

    if device == "cuda":
        peak_bytes = torch.cuda.max_memory_allocated()
    else:
        peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    step_s = statistics.median(times)
    model_flops = 6 * (counts["body_params"] * tokens + counts["head_params"] * logit_positions)
    return {
        **{k: spec[k] for k in ("model", "device", "constitutions", "prompt_tokens", "response_tokens", "layout")},
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        **counts,
        "tokens": tokens,
        "logit_positions": logit_positions,
        "warmup_s": warmup_s,
        "times_s": times,
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "model_flops": model_flops,
        "loss": loss,
        "memory_kind": "cuda max_memory_allocated" if device == "cuda" else "process peak RSS (ru_maxrss)",
        "base_bytes": base_bytes,
        "peak_bytes": peak_bytes,
        "increase_bytes": max(peak_bytes - base_bytes, 0),
        "peak_reset": peak_reset,
        "threads": torch.get_num_threads(),
    }


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def worker_peak(spec: dict) -> dict:
    """Best-of-N time of an n x n matmul per dtype: peak FLOP/s = 2 n^3 / t."""
    import torch

    if spec["threads"] > 0:
        torch.set_num_threads(spec["threads"])
    device, n = spec["device"], spec["matmul_size"]
    peaks = {}
    for dtype_name in spec["dtypes"]:
        dtype = getattr(torch, dtype_name)
        gen = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
        b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
        torch.matmul(a, b)  # warm-up
        _synchronize(device)
        best = float("inf")
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            torch.matmul(a, b)
            _synchronize(device)
            best = min(best, time.perf_counter() - start)
        peaks[dtype_name] = 2 * n**3 / best
        del a, b
    return {"device_name": _device_name(device), "threads": torch.get_num_threads(), "matmul_size": n, "peaks": peaks}


def worker_main(payload: str) -> int:
    _import_sami()
    spec = json.loads(payload)
    try:
        result = worker_peak(spec) if spec["kind"] == "peak" else worker_step(spec)
    except Exception as exc:  # reported by the parent as a failed cell
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        print(RESULT_MARK + json.dumps({"error": message}), flush=True)
        return 1
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------------- parent side


def _csv(text: str, cast=str) -> list:
    return [cast(x.strip()) for x in text.split(",") if x.strip()]


def _shape(text: str) -> tuple[int, int]:
    try:
        p, r = text.split(":")
        p, r = int(p), int(r)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not PROMPT:RESPONSE") from None
    if p < 1 or r < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r} needs positive lengths")
    return p, r


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time one SAMI optimiser step (log-prob matrix, sami_loss, backward, AdamW step, "
        "zero_grad) with the naive and the shared layout, each cell in a fresh process.",
    )
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated models from smollm2, large, llama-1b, tiny; default smollm2,large "
        "(plus llama-1b on a GPU), or tiny with --quick",
    )
    parser.add_argument(
        "--constitutions",
        default=None,
        help="comma-separated numbers of constitutions C; default 2,4,8 (2 with --quick)",
    )
    parser.add_argument(
        "--shapes",
        default=None,
        help="comma-separated PROMPT:RESPONSE token lengths of each prompt and each response; "
        "default 128:128,128:64,256:128 (16:8 with --quick)",
    )
    parser.add_argument(
        "--layouts",
        default="naive,shared",
        help="comma-separated log-prob matrix layouts to time, from naive, shared (default: naive,shared)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="timed steps per cell after one warm-up step; the median is reported (default: 2)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds one cell's process may run before it is killed and reported as failed (default: 900)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to run; auto (the default) picks cuda when torch sees a GPU",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch.set_num_threads in every worker; 0 (the default) keeps torch's default",
    )
    parser.add_argument(
        "--matmul-size",
        type=int,
        default=0,
        help="n of the n x n matmul that measures the peak; 0 means 2048 on CPU, 8192 on GPU (1024 with --quick)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random token ids and random model weights (default: 0)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny grid for a smoke test: model tiny, C=2, shape 16:8 (explicit options still win)",
    )
    parser.add_argument(
        "--json", metavar="PATH", default=None, help="also write the header and every row to this JSON file"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f}"


def _fmt_cell(row: dict, peaks: dict) -> dict:
    """Display strings of one successful row (ratios are added separately)."""
    peak = peaks.get(row["dtype"])
    mfu = row["model_flops"] / row["step_s"] / peak * 100 if peak else None
    row["mfu_pct"] = mfu
    return {
        "step s": f"{row['step_s']:.4g}",
        "tok/s": f"{row['tokens_per_s']:.0f}",
        "MFU %": "-" if mfu is None else f"{mfu:.1f}",
        "peak GiB": _gib(row["peak_bytes"]),
        "+GiB": _gib(row["increase_bytes"]),
    }


COLUMNS = (
    "model",
    "C",
    "P:R",
    "layout",
    "tokens",
    "step s",
    "tok/s",
    "MFU %",
    "peak GiB",
    "+GiB",
    "speedup",
    "bound",
    "mem ratio",
)
WIDTHS = (9, 3, 8, 7, 7, 9, 9, 6, 9, 7, 8, 6, 9)


def _line(values: dict) -> str:
    if "failed" in values:
        head = [
            str(values[c]).rjust(w) if i else str(values[c]).ljust(w)
            for i, (c, w) in enumerate(zip(COLUMNS[:5], WIDTHS[:5], strict=True))
        ]
        return " ".join(head) + "  " + values["failed"]
    return " ".join(
        str(values.get(c, "")).rjust(w) if i else str(values.get(c, "")).ljust(w)
        for i, (c, w) in enumerate(zip(COLUMNS, WIDTHS, strict=True))
    )


def _markdown(rows: list[dict]) -> str:
    out = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if i < 4 else "---:" for i in range(len(COLUMNS))) + "|",
    ]
    for values in rows:
        if "failed" in values:
            cells = [str(values[c]) for c in COLUMNS[:5]] + [values["failed"]] + [""] * (len(COLUMNS) - 6)
        else:
            cells = [str(values.get(c, "")) for c in COLUMNS]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no GPU")
    return requested


def _fill_defaults(args: argparse.Namespace, device: str) -> None:
    """The grid's defaults, which depend on --quick and on the device."""
    if args.models is None:
        args.models = "tiny" if args.quick else ("smollm2,large,llama-1b" if device == "cuda" else "smollm2,large")
    if args.constitutions is None:
        args.constitutions = "2" if args.quick else "2,4,8"
    if args.shapes is None:
        args.shapes = "16:8" if args.quick else "128:128,128:64,256:128"
    if args.matmul_size <= 0:
        args.matmul_size = 1024 if args.quick else (8192 if device == "cuda" else 2048)


def _grid(args: argparse.Namespace) -> tuple[list[str], list[str], list[int], list[tuple[int, int]]]:
    """Models, layouts, numbers of constitutions and shapes from the options; a ValueError says what is wrong."""
    models = _csv(args.models)
    unknown = [name for name in models if name not in MODEL_DTYPES]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; choose from {', '.join(MODEL_DTYPES)}")
    asked = _csv(args.layouts)
    layouts = [m for m in LAYOUT_ORDER if m in asked]
    if not layouts or len(layouts) != len(set(asked)):
        raise ValueError("--layouts takes naive and/or shared")
    try:
        constitutions = _csv(args.constitutions, int)
        shapes = [_shape(s) for s in _csv(args.shapes)]
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None
    if any(c < 2 for c in constitutions):
        raise ValueError("every C must be at least 2")
    return models, layouts, constitutions, shapes


def _measure_peak(args: argparse.Namespace, device: str, models: list[str]) -> dict:
    """Matmul peak FLOP/s per dtype of the models, measured in a fresh process."""
    spec = {
        "kind": "peak",
        "device": device,
        "threads": args.threads,
        "matmul_size": args.matmul_size,
        "dtypes": sorted({MODEL_DTYPES[m] for m in models}),
        "repeats": 5,
    }
    return run_cell(__file__, spec, mark=RESULT_MARK, timeout=args.timeout)


def _header(args: argparse.Namespace, device: str, peak_info: dict) -> dict:
    import torch
    import transformers

    return {
        "command": shlex.join(["python", *sys.argv]),
        "device": device,
        "device_name": peak_info.get("device_name", "?"),
        "torch_threads": peak_info.get("threads"),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "matmul_size": args.matmul_size,
        "matmul_peak_flops": peak_info.get("peaks", {}),
        "repeats": args.repeats,
    }


def _print_header(header: dict, peak_info: dict, models: list[str]) -> None:
    """The setup and what every column means."""
    device, size = header["device"], header["matmul_size"]
    print(f"device: {device}, {header['device_name']}; torch threads {header['torch_threads']}, {os.cpu_count()} CPUs")
    print(f"torch {header['torch']}, transformers {header['transformers']}, python {header['python']}")
    if "error" in peak_info:
        print(f"matmul peak: failed ({peak_info['error']}); MFU not reported")
    for dtype_name, flops in header["matmul_peak_flops"].items():
        print(f"matmul peak ({dtype_name}, {size}x{size}, best of 5): {flops / 1e9:.1f} GFLOP/s")
    for name in models:
        print(f"model {name}: {MODEL_NOTES[name]}")
    print(
        "step = log-prob matrix forward + sami_loss + backward + AdamW step + zero_grad; one query, C prompts of "
        f"P tokens, C responses of R tokens, random ids; median of {header['repeats']} steps after 1 warm-up, "
        "each cell in a fresh process.\n"
        "tokens = tokens the layout actually processes (naive: C*C*(P+R); shared: C*P + C*C*R); "
        "tok/s = tokens / step s.\n"
        "MFU = model FLOPs / step s / matmul peak of the model's dtype; model FLOPs = 6 * (N_body * tokens + "
        "N_head * logit positions), N_body = parameters outside the input embedding and the output projection, "
        "N_head = vocab * hidden (the output projection, counted even when tied), logit positions = positions whose "
        "vocabulary logits are computed (naive: every token; shared: C*(C*R + 1)); attention scores and the "
        "optimiser update are not counted.\n"
        + (
            "peak GiB = torch.cuda.max_memory_allocated over warm-up and timed steps; "
            if device == "cuda"
            else "peak GiB = process peak RSS (ru_maxrss, high-water mark reset after building) "
            "over warm-up and timed steps; "
        )
        + "+GiB = peak minus what was held once model and optimiser were built (so it includes gradients and "
        "AdamW state as well as activations).\n"
        "shared rows: speedup = naive step s / shared step s; bound = naive tokens / shared tokens (the speedup if "
        "cost were linear in tokens); mem ratio = shared +GiB / naive +GiB."
    )
    print()
    print(_line({c: c for c in COLUMNS}), flush=True)


def _time_cell(args: argparse.Namespace, device: str, name: str, c: int, shape: tuple[int, int], layout: str):
    """One cell, run in a fresh process: its result row and its display values."""
    p_len, r_len = shape
    spec = {
        "kind": "step",
        "model": name,
        "device": device,
        "constitutions": c,
        "prompt_tokens": p_len,
        "response_tokens": r_len,
        "layout": layout,
        "repeats": args.repeats,
        "seed": args.seed,
        "threads": args.threads,
    }
    result = run_cell(__file__, spec, mark=RESULT_MARK, timeout=args.timeout)
    row = {**{k: v for k, v in spec.items() if k not in ("kind", "seed", "threads", "repeats")}, **result}
    tokens = c * p_len + c * c * r_len if layout == "shared" else c * c * (p_len + r_len)
    values = {"model": name, "C": c, "P:R": f"{p_len}:{r_len}", "layout": layout, "tokens": tokens}
    if "error" in result:
        row["failed"] = result["error"]
        values["failed"] = f"failed ({result['error']})"
    return row, values


def _compare_with_naive(row: dict, values: dict, naive: dict) -> None:
    """A shared row's speedup, token bound and memory ratio against the naive row of the same cell."""
    row["speedup"] = naive["step_s"] / row["step_s"]
    row["token_bound"] = naive["tokens"] / row["tokens"]
    row["memory_ratio"] = row["increase_bytes"] / naive["increase_bytes"] if naive["increase_bytes"] else None
    values["speedup"] = f"{row['speedup']:.2f}x"
    values["bound"] = f"{row['token_bound']:.2f}x"
    values["mem ratio"] = "-" if row["memory_ratio"] is None else f"{row['memory_ratio']:.2f}"


def run_grid(args, device, models, layouts, constitutions, shapes, peaks) -> tuple[list[dict], list[dict]]:
    """Every cell of the grid, printed as it finishes: the result rows and their display values."""
    rows, display = [], []
    for name in models:
        for c in constitutions:
            for shape in shapes:
                done = {}
                for layout in layouts:
                    row, values = _time_cell(args, device, name, c, shape, layout)
                    if "failed" not in row:
                        values.update(_fmt_cell(row, peaks))
                        done[layout] = row
                        if layout == "shared" and "naive" in done:
                            _compare_with_naive(row, values, done["naive"])
                    rows.append(row)
                    display.append(values)
                    print(_line(values), flush=True)
    return rows, display


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    try:
        device = _device(args.device)
        _fill_defaults(args, device)
        models, layouts, constitutions, shapes = _grid(args)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2

    print("command: " + shlex.join(["python", *sys.argv]))
    peak_info = _measure_peak(args, device, models)
    header = _header(args, device, peak_info)
    _print_header(header, peak_info, models)
    rows, display = run_grid(args, device, models, layouts, constitutions, shapes, header["matmul_peak_flops"])

    if any(r.get("peak_reset") is False for r in rows):
        print("note: the RSS high-water mark could not be reset, so some CPU peaks may include model loading")
    print()
    print(_markdown(display))
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
