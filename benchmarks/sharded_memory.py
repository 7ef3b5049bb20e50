"""Memory and step time of full fine-tuning of the embedded model with AdamW: 1 process unsharded, 2 processes
sharded (``sharding: fsdp``, FSDP2 over gloo) and 2 processes data-parallel unsharded (DDP), side by side.

Each setup is one ``torchrun`` launch on CPU processes; every process loads the embedded model (SmolLM2-135M,
float32), scores its share of the same SAMI queries (the global batch is 2 queries per step: 2 on one
process, 1 on each of two) and takes ``--steps`` AdamW steps through the SAMI loss, as ``sami train`` does.
Per process it reports:

- ``state MiB``: the bytes of the tensors training keeps between steps, counted tensor by tensor after the
  last step: the weights this process holds (its shard under FSDP2), their gradients and AdamW's two moments.
  This is what sharding divides; it is counted, not inferred from the process size.
- ``base MiB``: the resident set once torch, transformers and the project are imported and the process group
  is up, before any model exists: the interpreter's and torch's own footprint, the same at any sharding.
- ``peak MiB``: the process's peak resident set (``ru_maxrss``). Every process first loads the whole model
  before ``fully_shard`` keeps its shard, and the allocator does not always hand freed pages back, so the peak
  carries the load and the activations too; it is shown, not used for the comparison.
- ``step s``: the median time of the steps after the first.

The matmul rate (2048^3 float32, the mean of 10 after 2 warm-ups, as the other benchmarks measure it, in the
launching process) says how fast this machine was.

Run from the repository root::

    python benchmarks/sharded_memory.py              # 3 launches, about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024**2
SETUPS = [
    ("1 process, unsharded", "single", 1),
    ("2 processes, sharded (fsdp)", "fsdp", 2),
    ("2 processes, data-parallel (ddp)", "ddp", 2),
]


def _import_sami() -> None:
    try:
        import sami  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _local_bytes(t) -> int:
    """Bytes of ``t`` held by this process: its local shard for a sharded (DTensor) tensor."""
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.numel() * local.element_size()


def worker(mode: str, steps: int, tokens: int, result: Path) -> None:
    import torch
    import torch.distributed as dist

    _import_sami()
    import transformers  # noqa: F401

    from sami.core.config import from_dict
    from sami.data.records import read_records
    from sami.models.loading import load_model
    from sami.train import sharding
    from sami.train.config import TrainConfig
    from sami.train.encoding import encode_records
    from sami.train.sami_loop import _micro_loss, micro_batch

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    base = _rss_mib()
    cfg = from_dict(
        TrainConfig,
        {
            "data": str(ROOT / "examples" / "example.jsonl"),
            "queries_per_device": 2 // world,
            "max_prompt_tokens": tokens,
            "max_response_tokens": tokens,
            "model": {"name_or_path": "smollm2-135m"},
        },
    )
    model, tokenizer = load_model(cfg.model)
    queries = encode_records(read_records(cfg.data), tokenizer, cfg)
    if mode == "fsdp":
        shard = sharding.Sharding(world=world, rank=rank, device_type="cpu", active=True, mixed=False)
        model = sharding.shard_model(model, shard)
    elif mode == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    times = []
    for step in range(steps):
        dist.barrier()
        start = time.perf_counter()
        batch = [queries[i] for i in micro_batch(cfg, len(queries), step, 0, rank, world)]
        loss, _, _ = _micro_loss(model, cfg, batch, tokenizer.pad_token_id)
        loss.backward()
        optimizer.step()
        if step < steps - 1:
            optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    params = list(model.parameters())
    state = {
        "weights": sum(_local_bytes(p) for p in params),
        "grads": sum(_local_bytes(p.grad) for p in params if p.grad is not None),
        "adamw": sum(
            _local_bytes(v) for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0
        ),
    }
    record = {
        "mode": mode,
        "rank": rank,
        "world": world,
        "threads": torch.get_num_threads(),
        "base_mib": base,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "state_mib": {k: v / MIB for k, v in state.items()},
        "step_s": statistics.median(times[1:]),
    }
    Path(f"{result}.{rank}").write_text(json.dumps(record))
    dist.destroy_process_group()


def launch(mode: str, processes: int, args, folder: Path) -> list[dict]:
    result = folder / mode
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(args.port + processes + len(mode)),
        __file__,
        "--worker",
        mode,
        "--steps",
        str(args.steps),
        "--tokens",
        str(args.tokens),
        "--result",
        str(result),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} launch failed:\n{proc.stderr[-3000:]}")
    return [json.loads(Path(f"{result}.{rank}").read_text()) for rank in range(processes)]


def table(rows: list[tuple[str, dict]]) -> str:
    lines = [
        "| setup | process | state MiB (weights + grads + AdamW) | x 1 process | base MiB | peak MiB | step s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    single = sum(rows[0][1]["state_mib"].values())
    for name, r in rows:
        s = r["state_mib"]
        total = sum(s.values())
        parts = f"{total:.0f} ({s['weights']:.0f} + {s['grads']:.0f} + {s['adamw']:.0f})"
        lines.append(
            f"| {name} | {r['rank']} | {parts} | {total / single:.2f} | {r['base_mib']:.0f} | "
            f"{r['peak_mib']:.0f} | {r['step_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--tokens", type=int, default=64, help="prompt and response budget in tokens")
    p.add_argument("--port", type=int, default=29611)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps, args.tokens, Path(args.result))
        return 0
    import torch

    rows = []
    with tempfile.TemporaryDirectory(prefix="sharded-memory-") as folder:
        for name, mode, processes in SETUPS:
            start = time.perf_counter()
            rows += [(name, r) for r in launch(mode, processes, args, Path(folder))]
            print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    from judge_verdicts import matmul_gflops  # the same measurement as the other benchmarks

    gflops = matmul_gflops()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPU cores, 2048^3 float32 matmul {gflops:.0f} GFLOP/s; "
        f"embedded model (SmolLM2-135M, float32), full fine-tuning, AdamW, SAMI loss, 2 queries per step, "
        f"prompt and response <= {args.tokens} tokens, median of {args.steps - 1} steps after the first; "
        f"threads per process: {rows[0][1]['threads']} (1 process), {rows[-1][1]['threads']} (2 processes)"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
