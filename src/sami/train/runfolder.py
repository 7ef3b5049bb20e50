"""What every ``sami train`` output folder holds, whichever method wrote it.

The result a training run returns, the error that stops a diverged one, the precision it computes in and
the fresh accelerate state it starts with, its ``metrics.jsonl`` (the one reader and writer of that file),
the final model's record (``sami_config.yaml`` and ``provenance.json``, ``record_model``), and the settings
in which a chained run differs from the run it starts from. SAMI's loop, the TRL methods, the CLI,
``iterate`` and the report all read and write run folders through this module (checkpoints through
``sami.train.checkpoints``), so none of them imports a trainer for it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from sami.core.config import config_hash, save_yaml, to_dict
from sami.core.errors import ConfigError, DataError, OutputExists, TrainingDiverged  # noqa: F401  (re-exported: the trainers raise it from here)
from sami.core.layout import (
    METRICS,  # noqa: F401  (the trainers import it from here)
    MODEL_CONFIG,
    PROVENANCE,
    run_configs,
)
from sami.models.loading import model_folder, training_config
from sami.train.checkpoints import CHECKPOINTS, STATE_FILE, data_sha256, has_former_name, numbered_checkpoints
from sami.train.config import NOT_USED, TrainConfig, compare_configs

logger = logging.getLogger(__name__)

PACKAGES = ("sami-align", "torch", "transformers", "accelerate", "peft", "trl", "datasets")
CHAIN_KEYS = ("method", "init_from", "output_dir")  # differ from the parent run in every chain


@dataclass
class TrainResult:
    method: str
    output_dir: Path
    model_dir: Path
    steps: int
    metrics: list[dict]


def resolve_precision(cfg: TrainConfig) -> str:
    """``cfg.precision`` with ``auto`` resolved: bf16 on a GPU that has it, else full precision (``no``)."""
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def reset_accelerate_state() -> None:
    """Forget accelerate's global state before a run builds its Accelerator (SAMI's loop) or has the HF Trainer
    build one: one process may train several models in turn (iterated SAMI, SFT then SAMI, a chain) with
    different precision. The process group (``PartialState``) is kept."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)


# ------------------------------------------------------------------------------------------ the folder


def recorded_method(out: Path) -> tuple[str, Path] | None:
    """The method a run folder holds and the file that says so (its ``config.yaml``, else the model's); None
    for a folder no run has written into yet. A folder with checkpoints but neither file is named by them."""
    from sami.core.config import load_yaml

    out = Path(out)
    for path in run_configs(out):
        if path.is_file():
            method = load_yaml(path).get("method")
            if isinstance(method, str):
                return method, path
    held = numbered_checkpoints(out)
    if any(_sami_checkpoint(p) for p in held):
        return "sami", out / CHECKPOINTS
    if held:
        return "a TRL method's", out / CHECKPOINTS
    return None


def _sami_checkpoint(folder: Path) -> bool:
    """Whether SAMI's loop wrote a checkpoint folder: its former name ``step-N``, or its state file (SAMI's
    holds ``step``, the HF Trainer's ``global_step``)."""
    if has_former_name(folder):
        return True
    try:
        return "global_step" not in json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError, TypeError):  # no state file (an unfinished HF checkpoint) or an unreadable one
        return False


def check_run_folder(cfg: TrainConfig, resume: bool) -> None:
    """A run folder holds one run: refuse a method other than the one that wrote it (with or without
    ``--resume``: two methods' models, metrics and checkpoints would mix), and a new run where checkpoints
    of any method exist. Checked before any model loads."""
    out = Path(cfg.output_dir)
    found = recorded_method(out)
    if found is not None and found[0] != cfg.method:
        method, source = found
        raise ConfigError(
            f"output_dir: {out} holds a {method} run ({source}); --method {cfg.method} would mix two runs in one "
            "folder; choose another output_dir"
        )
    held = numbered_checkpoints(out)
    if not resume and held:
        raise OutputExists(
            f"{out} already holds checkpoints ({held[-1].name}); pass --resume to continue, or choose another "
            "output_dir"
        )


# ------------------------------------------------------------------------------------------ metrics.jsonl


def read_metrics(path: Path) -> list[dict]:
    """Every step record of a ``metrics.jsonl``, in file order; ``[]`` when the file does not exist.

    A last line cut short (a run killed while writing it) is left out: ``truncate_metrics`` removes it on
    resume. Any other line that is not a JSON object with a ``step`` is an error naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "step" not in record:
                raise DataError("no step")
        except ValueError as err:
            if number == len(lines):  # the line a killed run was writing
                continue
            raise DataError(f"{path}:{number}: not a metrics record ({err})") from None
        records.append(record)
    return records


def append_metrics(path: Path, record: dict) -> None:
    """One step's record as one line; a crash loses at most this line."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the records of steps up to ``step``: later ones are recomputed on resume and would appear twice."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in read_metrics(path) if r["step"] <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def metric_history(path: Path, key: str) -> list[float]:
    """``key`` of every step that logged it, in step order (a resumed run's history)."""
    rows = sorted((r["step"], r[key]) for r in read_metrics(path) if key in r)
    return [value for _, value in rows]


class SaturationWatch:
    """Warns when the gradient norm has been exactly 0 for ``patience`` steps in a row: the model no longer
    learns (e.g. SAMI's loss sits at log C after a learning rate that blew the logits up), and ``trained N
    steps`` alone would not say so. ``saturated`` counts such steps for the run's summary."""

    def __init__(self, patience: int = 3):
        self.patience, self.run, self.saturated, self.warned = patience, 0, 0, False

    def update(self, step: int, grad_norm: float, loss: float) -> bool:
        """Record one step; True when this call warned."""
        if grad_norm != 0.0:
            self.run = 0
            return False
        self.run += 1
        self.saturated += 1
        if self.warned or self.run < self.patience:
            return False
        self.warned = True
        logger.warning(
            "step %d: the gradient norm has been exactly 0 for %d steps (loss %.6g): training is saturated and "
            "nothing changes any more; lower the learning rate or check the data",
            step,
            self.run,
            loss,
        )
        return True


# ------------------------------------------------------------------------------------------ provenance


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, None for one that is not installed."""

    def one(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {name: one(name) for name in names}


def provenance(cfg: TrainConfig, steps: int, num_processes: int, segments: list[dict] | None = None) -> dict:
    """What produced a trained model: config hash, data file hash, model source, template, versions, and the
    run's segments (a start, and each resume that extended it: ``sami.train.checkpoints.segment``)."""
    return {
        "method": cfg.method,
        "config_hash": config_hash(cfg),
        "data": {"path": cfg.data, "sha256": data_sha256(cfg)},
        "model": {"name_or_path": cfg.model.name_or_path, "revision": cfg.model.revision, "init_from": cfg.init_from},
        "template": cfg.template,
        "seed": cfg.seed,
        "steps": steps,
        "segments": segments or [],
        "num_processes": num_processes,
        "versions": package_versions(),
    }


def record_model(
    model_dir: Path, cfg: TrainConfig, steps: int, num_processes: int, segments: list[dict], tokenizer=None
) -> None:
    """Beside a trained model's weights in ``model_dir``: its tokenizer (when given), the run's config as
    ``sami_config.yaml`` and, last (``model_written`` reads it), ``provenance.json``. The main process only."""
    if tokenizer is not None:
        tokenizer.save_pretrained(model_dir)
    save_yaml(cfg, Path(model_dir) / MODEL_CONFIG)
    record = provenance(cfg, steps, num_processes, segments)
    (Path(model_dir) / PROVENANCE).write_text(json.dumps(record, indent=2))


def model_written(model_dir: Path, steps: int) -> bool:
    """Whether ``model_dir`` holds the model of a run at ``steps`` (its provenance, written last, says so):
    a resumed run with nothing left to train keeps it as it is, so what was evaluated stays bound to it."""
    path = Path(model_dir) / PROVENANCE
    return path.is_file() and json.loads(path.read_text()).get("steps") == steps


def parent_config_differences(cfg: TrainConfig) -> dict:
    """Settings in which this run differs from the run that trained ``init_from`` (logged; empty without one).

    A chain (SFT then DPO, SFT then SAMI) is only a fair comparison when the shared settings agree or
    differ on purpose; this says which.
    """
    if not cfg.init_from:
        return {}
    parent = training_config(model_folder(cfg.init_from))
    if parent is None:
        return {}
    names = (f"{cfg.init_from} ({parent.get('method')})", f"this run ({cfg.method})")
    diffs = compare_configs({names[0]: parent, names[1]: to_dict(cfg)})
    # A chain differs from its parent by construction in these, and in each method's own section; the log
    # names the rest (the returned dict keeps everything).
    shown = {k: v for k, v in diffs.items() if k not in CHAIN_KEYS and NOT_USED not in v.values()}
    if shown:
        logger.info("starting from %s; settings that differ:\n%s", cfg.init_from, format_differences(shown))
    else:
        logger.info("starting from %s; every shared setting is the same", cfg.init_from)
    return diffs


def format_differences(diffs: dict[str, dict]) -> str:
    """One line per setting: ``key: name=value, name=value``."""
    return "\n".join(
        f"  {key}: " + ", ".join(f"{name}={value!r}" for name, value in values.items()) for key, values in diffs.items()
    )
