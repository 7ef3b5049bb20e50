"""``sami iterate``: rounds of (generate on fresh queries, train from the previous round's weights).

``teacher: student`` is the original SAMI recipe: each round's data is written by the current student
(round 1 by the starting model). ``teacher: fixed`` keeps ``generate.teacher`` for every round (the
multi-task recipe: a stronger model writes for a weaker student). Round k takes the k-th slice of
``queries_per_round`` queries of the shuffled pool, so no query is seen twice.

Layout, one folder per round::

    OUTPUT_DIR/config.yaml                 the resolved iterate config
    OUTPUT_DIR/round-K/data/train.jsonl    (and .filtered.jsonl, .generate.yaml)
    OUTPUT_DIR/round-K/train/              config.yaml, metrics.jsonl, checkpoints/, model/

A rerun skips finished rounds (their ``model/provenance.json`` exists) and resumes the unfinished one.
"""

from __future__ import annotations

import copy
import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sami.backends.base import BackendConfig
from sami.core.config import save_yaml
from sami.core.errors import ConfigError
from sami.core.layout import CONFIG, MODEL, PROVENANCE
from sami.generate.run import GenerateConfig, GenerateResult, generate
from sami.train.config import TrainConfig
from sami.train.run import train
from sami.train.runfolder import TrainResult

logger = logging.getLogger(__name__)


@dataclass
class IterateConfig:
    output_dir: str = "runs/iterate"
    rounds: int = 2
    queries_per_round: int = 16
    steps_per_round: int | None = None  # optimiser steps per round (None: train.epochs over the round's data)
    teacher: str = "student"  # student | fixed
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.queries_per_round < 1:
            raise ValueError("rounds and queries_per_round must be at least 1")
        if self.teacher not in ("student", "fixed"):
            raise ValueError(f"teacher must be 'student' or 'fixed', got {self.teacher!r}")
        if self.steps_per_round is not None and self.steps_per_round < 1:
            raise ValueError("steps_per_round must be at least 1 (or null)")


@dataclass
class RoundResult:
    round: int
    data: GenerateResult | None  # None when the round was already finished
    train: TrainResult | None
    model_dir: Path


def round_dir(cfg: IterateConfig, k: int) -> Path:
    return Path(cfg.output_dir) / f"round-{k}"


def round_configs(cfg: IterateConfig, k: int, previous_model: str | None) -> tuple[GenerateConfig, TrainConfig]:
    """The generate and train configs of round ``k`` (1-based), given the previous round's model folder."""
    folder = round_dir(cfg, k)
    gen = copy.deepcopy(cfg.generate)
    gen.output = str(folder / "data" / "train.jsonl")
    gen.skip_queries = cfg.generate.skip_queries + (k - 1) * cfg.queries_per_round
    gen.num_queries = cfg.queries_per_round
    if cfg.teacher == "student":
        source = previous_model or cfg.train.init_from or cfg.train.model.name_or_path
        revision = None if (previous_model or cfg.train.init_from) else cfg.train.model.revision
        gen.teacher = BackendConfig(
            kind="transformers", model=source, revision=revision, batch_size=gen.teacher.batch_size
        )
    tr = copy.deepcopy(cfg.train)
    tr.data = gen.output
    tr.output_dir = str(folder / "train")
    tr.init_from = previous_model or cfg.train.init_from
    tr.seed = cfg.train.seed + k - 1
    if cfg.steps_per_round is not None:
        tr.max_steps = cfg.steps_per_round
    return gen, tr


def iterate(cfg: IterateConfig) -> list[RoundResult]:
    save_yaml(cfg, Path(cfg.output_dir) / CONFIG)
    previous: str | None = None
    results = []
    for k in range(1, cfg.rounds + 1):
        gen, tr = round_configs(cfg, k, previous)
        model_dir = Path(tr.output_dir) / MODEL
        if (model_dir / PROVENANCE).is_file():
            logger.info("round %d already finished (%s)", k, model_dir)
            results.append(RoundResult(k, None, None, model_dir))
        else:
            logger.info("round %d: generating %d queries with %s", k, cfg.queries_per_round, gen.teacher.model)
            data = generate(gen)
            gc.collect()
            if data.written == 0 and data.already_done == 0:
                raise ConfigError(f"round {k}: every generated record was filtered out; see {data.rejected_path}")
            trained = train(tr, resume=True)  # continues from a checkpoint of an interrupted round, if any
            results.append(RoundResult(k, data, trained, trained.model_dir))
        previous = str(model_dir)
    return results
