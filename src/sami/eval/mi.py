"""``sami eval mi``: the InfoNCE lower bound on I(Y; C | X) of held-out records under each checkpoint.

Each record (docs/DATA.md) is encoded exactly as training encodes it (template, principle shuffling,
token limits) and its C x C log-prob matrix is scored; ``mi_bound = log C - column loss`` in nats
(``sami.core.objective.sami_metrics``). Per-record values go to ``mi/<model>.jsonl``; the mean and its
bootstrap interval, overall and per category, are computed from those files.

Fluency is measured beside it: a record's ``diag_logprob`` is mean_i L[i, i], the mean per-token log-prob of
each response under its own constitution. The MI bound can rise while every likelihood falls (the collapse
that ``sami.nll_weight`` / ``sami.ref_weight`` guard against in training), so each checkpoint also reports
its change in ``diag_logprob`` from an origin checkpoint, paired by record: the checkpoint named ``base``
when one is evaluated, else the first one listed.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sami.backends.base import close_backend, make_backend
from sami.backends.transformers_backend import load_inference_model
from sami.core.errors import ConfigError
from sami.core.logprobs import batch_logprob_matrices
from sami.core.objective import sami_metrics
from sami.core.stats import bootstrap_mean, bounded_mean
from sami.core.tokens import QueryTokens
from sami.data.records import read_records
from sami.eval.common import fmt
from sami.eval.config import EvalConfig
from sami.eval.results import MIBlock, MIResult
from sami.eval.store import JsonlStore, check_settings, finish_suite, read_jsonl
from sami.models.loading import load_tokenizer
from sami.train.config import TrainConfig
from sami.train.encoding import encode_records


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


def engine_logprob_matrix(backend, query: QueryTokens) -> torch.Tensor:
    """(1, C, C) float32 matrix L[i, j] = mean log p(response j | prompt i) from a backend that returns
    response log-probs (``response_logprobs``: vLLM's engine, or an endpoint that returns prompt log-probs):
    the same numbers ``batch_logprob_matrices`` computes locally, one prefill per (i, j) pair."""
    c = query.num_constitutions
    pairs = [(query.prompt_ids[i], query.response_ids[j]) for i in range(c) for j in range(c)]
    means = [sum(lps) / len(lps) for lps in backend.response_logprobs(pairs)]
    return torch.tensor(means, dtype=torch.float32).view(1, c, c)


def score_records(cfg: EvalConfig, name: str, model_ref: str, records, root: Path) -> None:
    """Score each record not yet stored. ``backend.kind`` transformers: the model is loaded here and scored
    with ``mi.layout``; any other kind whose backend returns response log-probs (vllm, openai: a vLLM
    server) is asked for them, the tokens encoded with ``model_ref``'s tokenizer (so an endpoint's served
    model name must also load as a local folder, alias or hub id, as ``vllm serve FOLDER`` gives)."""
    store = JsonlStore(root / f"{name}.jsonl", ("id",))
    todo = [r for r in records if not store.done(r.id)]
    if not todo:
        return
    if cfg.backend.kind == "transformers":
        model, tokenizer = load_inference_model(model_ref, revision=cfg.backend.revision, dtype=cfg.backend.dtype)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

        def score(query):
            return batch_logprob_matrices(model, [query], layout=cfg.mi.layout, pad_token_id=pad)
    else:
        backend = make_backend(cfg.backend_for(model_ref))
        if not hasattr(backend, "response_logprobs"):
            raise ConfigError(f"backend kind {cfg.backend.kind!r} returns no log-probs; the MI bound needs them")
        tokenizer = getattr(backend, "tokenizer", None) or load_tokenizer(model_ref, cfg.backend.revision)

        def score(query):
            return engine_logprob_matrix(backend, query)

    queries = encode_records(todo, tokenizer, _encoding_config(cfg))
    try:
        _score_into(store, name, todo, queries, score)
    finally:
        if cfg.backend.kind != "transformers":
            close_backend(backend)


def _score_into(store: JsonlStore, name: str, todo, queries, score) -> None:
    with torch.inference_mode():
        for record, query in tqdm(list(zip(todo, queries, strict=True)), desc=f"{name} MI", unit="record"):
            matrix = score(query)
            stored = matrix[0].tolist()
            row = {
                "id": record.id,
                "category": record.category,
                "constitutions": query.num_constitutions,
                "matrix": stored,
                **sami_metrics(matrix),
            }
            # From the stored numbers, so that rows written before this field recompute to the same value.
            row["diag_logprob"] = _diagonal_mean(stored)
            store.append(row)


def _diagonal_mean(matrix: list[list[float]]) -> float:
    return sum(matrix[i][i] for i in range(len(matrix))) / len(matrix)


def diag_logprob(row: dict) -> float:
    """A stored row's mean diagonal log-prob; rows written before it was stored get it from their matrix."""
    return row["diag_logprob"] if "diag_logprob" in row else _diagonal_mean(row["matrix"])


def origin_checkpoint(names: list[str]) -> str:
    """The checkpoint the others' change in ``diag_logprob`` is measured from: ``base``, else the first."""
    return "base" if "base" in names else names[0]


def _block(rows: list[dict], origin: dict[str, float] | None) -> MIBlock:
    """Estimates over ``rows``; with ``origin`` (id -> its diag_logprob), the paired change from it."""
    sizes = sorted({r["constitutions"] for r in rows})
    change = None
    if origin is not None:  # records scored under both; a partial file pairs what it has
        change = bootstrap_mean([diag_logprob(r) - origin[r["id"]] for r in rows if r["id"] in origin])
    return MIBlock(
        mi_bound=bootstrap_mean([r["mi_bound"] for r in rows]),
        col_accuracy=bounded_mean([r["col_accuracy"] for r in rows]),
        row_accuracy=bounded_mean([r["row_accuracy"] for r in rows]),
        diag_logprob=bootstrap_mean([diag_logprob(r) for r in rows]),
        constitutions=sizes,
        upper_limit=[math.log(c) for c in sizes],  # the bound cannot exceed log C
        diag_logprob_change=change,
    )


def mi_metrics(cfg: EvalConfig) -> dict[str, MIResult]:
    """Per checkpoint, overall and per category: the MI bound, accuracies and ``diag_logprob``; for every
    checkpoint but the origin (``origin_checkpoint``, named in ``diag_logprob_origin``), the paired
    change in ``diag_logprob`` from it (negative: its responses lost likelihood)."""
    root = Path(cfg.output_dir) / "mi"
    names = [name for name, _ in cfg.checkpoints()]
    rows_of = {name: read_jsonl(root / f"{name}.jsonl") for name in names}
    origin_name = origin_checkpoint(names)
    origin = {r["id"]: diag_logprob(r) for r in rows_of[origin_name]}
    out = {}
    for name in names:
        rows, paired = rows_of[name], (None if name == origin_name else origin)
        per_category = {
            c: _block([r for r in rows if r["category"] == c], paired) for c in sorted({r["category"] for r in rows})
        }
        origin_of = None if paired is None else origin_name
        out[name] = MIResult(_block(rows, paired), per_category, diag_logprob_origin=origin_of)
    return out


def print_mi(metrics: dict) -> None:
    """``metrics``: checkpoint -> what ``metrics.json`` stores for it (``MIResult.to_dict``)."""
    for name, stored in metrics.items():
        m = MIResult.from_dict(stored)
        o = m.overall
        limits = ", ".join(f"{v:.3f}" for v in o.upper_limit)
        print(f"{name}: MI bound {fmt(o.mi_bound, False)} nats (at most log C = {limits})")
        print(f"    column accuracy {fmt(o.col_accuracy)}; row accuracy {fmt(o.row_accuracy)}")
        fluency = f"    diagonal log-prob per token {fmt(o.diag_logprob, False)}"
        if o.diag_logprob_change is not None:
            fluency += f"; change from {m.diag_logprob_origin} {fmt(o.diag_logprob_change, False)}"
        print(fluency)
        for category, c in m.per_category.items():
            print(f"    {category:<11} {fmt(c.mi_bound, False)}")


def run_mi(cfg: EvalConfig) -> dict:
    if not cfg.mi.data:
        raise ConfigError("mi.data: give the held-out records to score (--data FILE.jsonl, docs/DATA.md)")
    records = read_records(cfg.mi.data)
    if cfg.mi.limit:
        records = records[: cfg.mi.limit]
    root = Path(cfg.output_dir) / "mi"
    settings = {"data": str(Path(cfg.mi.data).resolve()), "records": [r.id for r in records]}
    # the records' content, not only their ids: data edited in place (responses swapped) is other data
    settings["records_sha256"] = hashlib.sha256(
        json.dumps([r.to_json() for r in records], sort_keys=True).encode()
    ).hexdigest()
    settings.update({k: v for k, v in vars(cfg.mi).items() if k not in ("data", "limit")}, seed=cfg.seed)
    check_settings(root, settings, "mi")
    for name, model in cfg.checkpoints():
        score_records(cfg, name, model, records, root)
    return finish_suite(cfg, "mi", mi_metrics)
