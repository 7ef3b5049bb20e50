"""``sami train``: check the paths, take the output folder's lock, and hand the run to its method.

Which function trains a method, how its examples come from a record and what its console line shows is
the method's entry in ``sami.train.methods``; this module only does what every method needs first, before any
model loads.
"""

from __future__ import annotations

from pathlib import Path

from sami.core.errors import ConfigError, InputMissing
from sami.core.locks import hold
from sami.models.loading import check_reference
from sami.train.config import TrainConfig
from sami.train.methods import method_entry
from sami.train.runfolder import TrainResult, check_run_folder


def check_paths(cfg: TrainConfig) -> None:
    """The data file and the output folder, checked before anything is loaded."""
    if not cfg.data:
        raise ConfigError("no data file: set `data` in the config or pass --data")
    data = Path(cfg.data)
    if data.is_dir():
        raise ConfigError(f"data: {data} is a folder; expected a JSONL file (docs/DATA.md)")
    if not data.is_file():
        raise InputMissing(f"data file not found: {data}")
    out = Path(cfg.output_dir)
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"output_dir: {parent} is a file; expected a folder (or a path that does not exist)")
    check_reference(cfg.init_from or cfg.model.name_or_path)


def train(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train a student with ``cfg.method`` on ``cfg.data``; writes checkpoints, metrics and ``model/`` under
    output_dir, which no other run may write meanwhile (``sami.core.locks``)."""
    entry = method_entry(cfg.method)
    check_paths(cfg)
    with hold(cfg.output_dir, folder=True, what="this training run"):
        check_run_folder(cfg, resume)
        return entry.train(cfg, resume=resume)
