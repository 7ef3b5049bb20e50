"""One prepared GPU check: SAMI and TRL's DPO on a ~1B random-weight Llama, in bfloat16, on one GPU.

Made for one H100 or H200 with torch, transformers, peft and accelerate installed, this package and trl
installed from wheels, no internet and no model weights: the model is a Llama built from a config with random
weights, and its tokenizer a byte-level BPE trained here on the data file's own text. Everything is written
to a temporary folder; nothing is downloaded.

Cells, each ``sami.train.run.train`` in a fresh process (``cells.run_cell``), on the same records and model:

- SAMI with the shared and the naive layout of the log-prob matrix, LoRA and full fine-tuning;
- TRL's DPO (``method: dpo``) on the same records, LoRA and full fine-tuning;
- one ``accelerate launch`` of ``sami train`` (SAMI, LoRA) with the project's FSDP config
  (``configs/accelerate/fsdp-8gpu.yaml``) on one process;
- SAMI's own sharded path (``sharding: fsdp``, ``sami.train.sharding``) at world size 1: ``fully_shard`` per
  decoder block with bf16 parameters and fp32 gradient reduction, full fine-tuning, AdamW steps through the
  SAMI loss; then the same on the embedded model (SmolLM2-135M) for its peak GPU memory (skipped without a
  GPU).

bfloat16: ``precision: auto`` computes in bf16 autocast on a GPU that has it; LoRA's frozen base is stored in
bfloat16 (``model.dtype: auto``), fully fine-tuned weights stay float32 (AdamW's small steps would be lost
in bfloat16). Per cell: the median seconds between optimiser steps after the first, the time to the first
step, and the peak memory (``torch.cuda.max_memory_allocated``; the process's peak RSS on a CPU). The FSDP
launch reports its wall time and exit status. It prints one table.

``--tiny`` runs the same cells on a 2-layer model in seconds, on the CPU if there is no GPU: the test suite
runs it (``tests/test_gpu_check.py``) so that the script cannot rot. On a CPU accelerate sets up no FSDP
(it does so only on accelerators), so there the launch checks the command and the config, not sharding.

Run from the repository root::

    python benchmarks/gpu_check.py            # ~1.1B parameters, one GPU; about 5 minutes on an H100
    python benchmarks/gpu_check.py --tiny     # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cells import add_cell_options, answered_as_worker, run_cell

RESULT_MARK = "GPU_CHECK_RESULT "
ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
SIZES = {
    # TinyLlama's shape: 22 layers of width 2048, grouped-query attention; ~1.0 B parameters with this vocab
    "1b": dict(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4
    ),
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    ),
}
CELLS = [
    ("sami", "shared", "lora"),
    ("sami", "naive", "lora"),
    ("dpo", "-", "lora"),
    ("sami", "shared", "full"),
    ("sami", "naive", "full"),
    ("dpo", "-", "full"),
]


def _import_sami() -> None:
    try:
        import sami  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))


def build_model_folder(folder: Path, data: Path, size: str, vocab_size: int) -> int:
    """A random-weight Llama of ``SIZES[size]`` and a BPE tokenizer trained on ``data``'s text, saved in
    ``folder``; returns the parameter count."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = []
    for line in data.read_text().splitlines():
        record = json.loads(line)
        texts += [record["query"], *record["responses"]]
        texts += [p["text"] for c in record["constitutions"] for p in c["principles"]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|bos|>", "<|eos|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|eos|>"
    )
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        **SIZES[size],
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def train_config(spec: dict, output_dir: str) -> dict:
    return {
        "method": spec["method"],
        "data": spec["data"],
        "output_dir": output_dir,
        "max_steps": spec["steps"],
        "max_prompt_tokens": spec["max_prompt_tokens"],
        "max_response_tokens": spec["max_response_tokens"],
        "queries_per_device": spec["queries_per_device"],
        "model": {"name_or_path": spec["model"], "finetune": spec["finetune"]},
        "optim": {"lr": 1e-5, "scheduler": "constant"},
        **({"sami": {"layout": spec["layout"]}} if spec["method"] == "sami" else {}),
    }


def worker(spec: dict) -> dict:
    if spec.get("cell") == "sharded":
        return sharded_worker(spec)
    import shutil

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    _import_sami()
    from sami.core.config import from_dict
    from sami.train.config import TrainConfig
    from sami.train.run import train

    stamps: list[float] = []
    register_optimizer_step_post_hook(lambda *args: stamps.append(time.perf_counter()))
    out = tempfile.mkdtemp(prefix=f"gpu-check-{spec['method']}-")
    start = time.perf_counter()
    try:
        train(from_dict(TrainConfig, train_config(spec, out)))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    cuda = torch.cuda.is_available()
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "step_s": statistics.median(intervals) if intervals else None,
        "setup_s": stamps[0] - start if stamps else None,
        "steps": len(stamps),
        "peak_gib": peak / GIB,
    }


def sharded_worker(spec: dict) -> dict:
    """``sharding: fsdp``'s code at world size 1 (a one-process group, NCCL on a GPU, gloo on a CPU): the model
    sharded with ``sami.train.sharding.shard_model`` (bf16 parameters, fp32 reduction on a GPU), AdamW steps
    through the SAMI loss, each process's share of the queries as ``sami train`` reads them."""
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if spec.get("needs_gpu") and not cuda:
        return {"skipped": "no GPU"}
    _import_sami()
    from sami.core.config import from_dict
    from sami.data.records import read_records
    from sami.models.loading import load_model
    from sami.train import sharding
    from sami.train.config import TrainConfig
    from sami.train.encoding import encode_records
    from sami.train.sami_loop import _micro_loss, micro_batch

    start = time.perf_counter()
    if cuda:
        torch.cuda.set_device(0)
    dist.init_process_group("nccl" if cuda else "gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        cfg = from_dict(TrainConfig, train_config(spec, tempfile.gettempdir()))
        model, tokenizer = load_model(cfg.model)
        queries = encode_records(read_records(cfg.data), tokenizer, cfg)
        shard = sharding.Sharding(world=1, rank=0, device_type="cuda" if cuda else "cpu", active=True, mixed=cuda)
        model = sharding.shard_model(model, shard)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        stamps = []
        for step in range(spec["steps"]):
            batch = [queries[i] for i in micro_batch(cfg, len(queries), step, 0, 0, 1)]
            loss, _, _ = _micro_loss(model, cfg, batch, tokenizer.pad_token_id)
            loss.backward()
            sharding.clip_grad_norm(model, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
    finally:
        dist.destroy_process_group()
    intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "step_s": statistics.median(intervals) if intervals else None,
        "setup_s": stamps[0] - start if stamps else None,
        "steps": len(stamps),
        "peak_gib": peak / GIB,
        "loss": float(loss.detach()),
    }


def fsdp_launch(spec: dict, timeout: float) -> dict:
    """``accelerate launch`` of ``sami train`` with the project's FSDP config on one process."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-fsdp-") as out:  # the model it trains goes with it
        return _fsdp_launch_in(spec, timeout, out)


def _fsdp_launch_in(spec: dict, timeout: float, out: str) -> dict:
    config = Path(out) / "train.yaml"
    import yaml

    config.write_text(yaml.safe_dump(train_config(spec, str(Path(out) / "run"))))
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate) if accelerate.exists() else "accelerate",
        "launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "fsdp-8gpu.yaml"),
        "--num_processes",
        "1",
        "-m",
        "sami.cli",
        "train",
        "--config",
        str(config),
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:g} s"}
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"error": f"exit {proc.returncode}: {tail[-1][:200] if tail else 'no output'}", "wall_s": seconds}
    saved = (Path(out) / "run" / "model").is_dir()
    return {"wall_s": seconds, "model_saved": saved}


def _fmt(value, digits=3) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def table(rows: list[dict], fsdp: dict, sharded: list[dict] = ()) -> str:
    lines = [
        "| method | layout | finetune | step s (median) | setup s | peak GiB |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        r = row["result"]
        cells = f"| {row['method']} | {row['layout']} | {row['finetune']} |"
        if "error" in r:
            lines.append(f"{cells} failed ({r['error']}) |  |  |")
        else:
            lines.append(f"{cells} {_fmt(r['step_s'], 4)} | {_fmt(r['setup_s'])} | {r['peak_gib']:.2f} |")
    if "error" in fsdp:
        lines.append(f"| accelerate launch, FSDP config, 1 process | shared | lora | failed ({fsdp['error']}) |  |  |")
    else:
        status = f"ok in {fsdp['wall_s']:.0f} s wall" + ("" if fsdp["model_saved"] else ", no model saved")
        lines.append(f"| accelerate launch, FSDP config, 1 process | shared | lora | {status} |  |  |")
    for row in sharded:
        r, cells = row["result"], f"| {row['name']} | shared | full |"
        if "error" in r:
            lines.append(f"{cells} failed ({r['error']}) |  |  |")
        elif "skipped" in r:
            lines.append(f"{cells} skipped ({r['skipped']}) |  |  |")
        else:
            lines.append(f"{cells} {_fmt(r['step_s'], 4)} | {_fmt(r['setup_s'])} | {r['peak_gib']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="a 2-layer model and short sequences: seconds, CPU or GPU")
    p.add_argument("--data", default=str(ROOT / "examples" / "example.jsonl"))
    add_cell_options(p, steps=4, timeout=240)
    args = p.parse_args(argv)
    if answered_as_worker(args, worker, RESULT_MARK):
        return 0
    import torch

    size, tokens, vocab = ("tiny", 48, 1024) if args.tiny else ("1b", 512, 8192)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    with tempfile.TemporaryDirectory(prefix="gpu-check-model-") as folder:
        start = time.perf_counter()
        params = build_model_folder(Path(folder), Path(args.data), size, vocab)
        print(f"built a {params / 1e6:.1f} M-parameter Llama in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        base = {
            "model": folder,
            "data": args.data,
            "steps": args.steps,
            "max_prompt_tokens": tokens,
            "max_response_tokens": tokens,
            "queries_per_device": 2,
        }
        rows = []
        for method, layout, finetune in CELLS:
            spec = {**base, "method": method, "layout": layout if layout != "-" else "shared", "finetune": finetune}
            t0 = time.perf_counter()
            result = run_cell(__file__, spec, mark=RESULT_MARK, timeout=args.timeout, cwd=ROOT)
            print(f"{method} {layout} {finetune}: {result} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            rows.append({"method": method, "layout": layout, "finetune": finetune, "result": result})
        fsdp = fsdp_launch({**base, "method": "sami", "layout": "shared", "finetune": "lora"}, args.timeout)
        print(f"fsdp launch: {fsdp}", file=sys.stderr)
        sharded = []
        for name, extra in (
            ("sharding: fsdp, fully_shard, world size 1", {}),
            ("sharding: fsdp, embedded model (SmolLM2-135M)", {"model": "smollm2-135m", "needs_gpu": True}),
        ):
            spec = {**base, "method": "sami", "layout": "shared", "finetune": "full", "cell": "sharded", **extra}
            result = run_cell(__file__, spec, mark=RESULT_MARK, timeout=args.timeout, cwd=ROOT)
            print(f"{name}: {result}", file=sys.stderr)
            sharded.append({"name": name, "result": result})
    print(
        f"{device}, torch {torch.__version__}; random-weight Llama, {params / 1e6:.1f} M parameters; "
        f"{args.data}: 2 queries per step, prompt and response <= {tokens} tokens, {args.steps - 1} timed steps "
        "after one warm-up; bf16 autocast (LoRA base stored in bf16, full fine-tuning weights float32)"
    )
    print(table(rows, fsdp, sharded))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": device, "params": params, "rows": rows, "fsdp": fsdp, "sharded": sharded})
        )
    failed = [r for r in rows + sharded if "error" in r["result"]] + ([fsdp] if "error" in fsdp else [])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
