"""``sami eval mi``: the InfoNCE lower bound on I(Y; C | X) of held-out records under each checkpoint.

Each record (docs/DATA.md) is encoded exactly as training encodes it (template, principle shuffling,
token limits) and its C x C log-prob matrix is scored; ``mi_bound = log C - column loss`` in nats
(``sami.objective.sami_metrics``). Per-record values go to ``mi/<model>.jsonl``; the mean and its
bootstrap interval, overall and per category, are computed from those files.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sami.backends import load_inference_model
from sami.data import read_records
from sami.eval.common import fmt
from sami.eval.config import EvalConfig
from sami.eval.store import JsonlStore, check_settings, read_jsonl, write_json
from sami.logprobs import batch_logprob_matrices
from sami.metrics import bootstrap_mean, bounded_mean
from sami.objective import sami_metrics
from sami.train import encode_records
from sami.train_config import TrainConfig


def _encoding_config(cfg: EvalConfig) -> TrainConfig:
    """The training encoding settings the MI is measured under (template, shuffling, limits, seed)."""
    m = cfg.mi
    return TrainConfig(
        template=m.template,
        shuffle_principles=m.shuffle_principles,
        max_prompt_tokens=m.max_prompt_tokens,
        max_response_tokens=m.max_response_tokens,
        seed=cfg.seed,
    )


def score_records(cfg: EvalConfig, name: str, model_ref: str, records, root: Path) -> None:
    store = JsonlStore(root / f"{name}.jsonl", ("id",))
    todo = [r for r in records if not store.done(r.id)]
    if not todo:
        return
    model, tokenizer = load_inference_model(model_ref, revision=cfg.backend.revision, dtype=cfg.backend.dtype)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    queries = encode_records(todo, tokenizer, _encoding_config(cfg))
    with torch.inference_mode():
        for record, query in tqdm(list(zip(todo, queries, strict=True)), desc=f"{name} MI", unit="record"):
            matrix = batch_logprob_matrices(model, [query], method=cfg.mi.logprob_method, pad_token_id=pad)
            store.append(
                {
                    "id": record.id,
                    "category": record.category,
                    "constitutions": query.num_constitutions,
                    "matrix": matrix[0].tolist(),
                    **sami_metrics(matrix),
                }
            )


def _block(rows: list[dict]) -> dict:
    sizes = sorted({r["constitutions"] for r in rows})
    return {
        "mi_bound": bootstrap_mean([r["mi_bound"] for r in rows]).to_dict(),
        "col_accuracy": bounded_mean([r["col_accuracy"] for r in rows]).to_dict(),
        "row_accuracy": bounded_mean([r["row_accuracy"] for r in rows]).to_dict(),
        "constitutions": sizes,
        "upper_limit": [math.log(c) for c in sizes],  # the bound cannot exceed log C
    }


def mi_metrics(cfg: EvalConfig) -> dict:
    root = Path(cfg.output_dir) / "mi"
    out = {}
    for name, _ in cfg.checkpoints():
        rows = read_jsonl(root / f"{name}.jsonl")
        per_category = {
            c: _block([r for r in rows if r["category"] == c]) for c in sorted({r["category"] for r in rows})
        }
        out[name] = {"overall": _block(rows), "per_category": per_category}
    return out


def print_mi(metrics: dict) -> None:
    for name, m in metrics.items():
        o = m["overall"]
        limits = ", ".join(f"{v:.3f}" for v in o["upper_limit"])
        print(f"{name}: MI bound {fmt(o['mi_bound'], False)} nats (at most log C = {limits})")
        print(f"    column accuracy {fmt(o['col_accuracy'])}; row accuracy {fmt(o['row_accuracy'])}")
        for category, c in m["per_category"].items():
            print(f"    {category:<11} {fmt(c['mi_bound'], False)}")


def run_mi(cfg: EvalConfig) -> dict:
    if not cfg.mi.data:
        raise ValueError("mi.data: give the held-out records to score (--data FILE.jsonl, docs/DATA.md)")
    records = read_records(cfg.mi.data)
    if cfg.mi.limit:
        records = records[: cfg.mi.limit]
    root = Path(cfg.output_dir) / "mi"
    settings = {"data": str(Path(cfg.mi.data).resolve()), "records": [r.id for r in records]}
    settings.update({k: v for k, v in vars(cfg.mi).items() if k not in ("data", "limit")}, seed=cfg.seed)
    check_settings(root, settings)
    for name, model in cfg.checkpoints():
        score_records(cfg, name, model, records, root)
    metrics = mi_metrics(cfg)
    write_json(root / "metrics.json", metrics)
    return metrics
