"""Checkpoints that say what they hold, and resumes that run only what the run folder says ran.

Every method writes its checkpoints as ``checkpoints/checkpoint-N`` (the HF Trainer's name; SAMI's loop wrote
``step-N`` before, and such folders are still listed, resumed and rotated: ``numbered_checkpoints``). A
checkpoint is finished once its ``trainer_state.json`` is written (last, by SAMI's loop and the HF Trainer
alike). Every checkpoint folder gets a ``manifest.json``: its files with sizes and SHA-256 hashes, the
training data's hash, and the run's segments (one per start or resume: the step it started from and the
length it was given). A resume (``resume_point``, the one used by every method)

- verifies the newest checkpoint against its manifest and falls back to the newest intact one, moving a
  damaged one aside to ``checkpoints/damaged-<name>`` and saying which file is wrong (``latest_intact``);
- refuses any changed setting except those that only extend the run or touch logging, and a changed data
  file (``check_resume``), so that ``config.yaml`` and ``provenance.json`` describe what ran;
- records an extension (a larger ``max_steps`` or ``epochs``) as a new segment.

A save that fails removes what it wrote and names the cause (``save_failed``), "no space left on <path>"
when the disk is full.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from sami.core.config import ConfigError, config_differences, flatten, load_yaml, to_dict
from sami.core.errors import CheckpointError
from sami.core.layout import CHECKPOINTS, CONFIG, MANIFEST, STATE_FILE
from sami.core.migrate import checkpoint_prefixes, stamped, upgrade_config, version_of
from sami.train.config import TrainConfig, method_view

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint"  # a checkpoint folder is named checkpoint-<step>, whichever method wrote it
# Settings a resume may change: they extend the run, or only decide logging and checkpoint keeping.
RESUMABLE_CHANGES = ("max_steps", "epochs", "output_dir", "save_every", "keep_checkpoints", "log_every", "report_to")


TORCH_WRITE_FAILURES = ("file write failed", "unexpected pos")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, *, step: int, data_sha256: str, segments: list[dict]) -> None:
    """List every file of ``folder`` (recursively) with its size and hash, and what the run was given."""
    files = {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    record = {"step": step, "data_sha256": data_sha256, "segments": segments, "files": files}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(stamped(record), indent=1))
    tmp.replace(folder / MANIFEST)


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return {"files": None}
    return manifest if isinstance(manifest, dict) else {"files": None}


def damage(folder: Path) -> str | None:
    """What is wrong with ``folder`` against its manifest (the first damaged file), or None when it is intact.

    A checkpoint without a manifest (written before manifests existed, or the manifest lost) is checked as far
    as its weights say: each ``.safetensors`` file must be as long as its header says."""
    manifest = read_manifest(folder)
    if manifest is None:
        return next(filter(None, map(safetensors_damage, sorted(folder.rglob("*.safetensors")))), None)
    if not isinstance(manifest.get("files"), dict):
        return f"{folder / MANIFEST} is unreadable"
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{path} has {size} bytes, the manifest says {expected['bytes']}"
        if file_sha256(path) != expected["sha256"]:
            return f"{path} does not match its hash in the manifest"
    return None


def safetensors_damage(path: Path) -> str | None:
    """What is wrong with a ``.safetensors`` file by its own header (8-byte length, JSON header, tensors whose
    offsets end where the file ends), or None when it is whole."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if length > size - 8:
                raise ValueError("its header runs past the end")
            header = json.loads(f.read(length))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        return f"{path} is not a whole safetensors file ({err})"
    if 8 + length + end != size:
        return f"{path} has {size} bytes, its header says {8 + length + end}"
    return None


def latest_intact(complete: list[Path], *, move_aside: bool = True) -> Path | None:
    """The newest of ``complete`` (complete checkpoint folders, oldest first) that matches its manifest.

    Each damaged one newer than it is logged with its reason and, with ``move_aside`` (the main process),
    renamed ``damaged-<name>`` so that neither this run's rotation nor a later resume takes it for a
    checkpoint."""
    for folder in reversed(complete):
        problem = damage(folder)
        if problem is None:
            return folder
        logger.warning("checkpoint %s is damaged (%s); falling back to the one before", folder, problem)
        if move_aside:
            aside = folder.with_name(f"damaged-{folder.name}")
            shutil.rmtree(aside, ignore_errors=True)
            folder.rename(aside)
            logger.warning("moved the damaged checkpoint to %s", aside)
    return None


# ------------------------------------------------------------------------------------------ the folders


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint at ``step``, whichever method writes it."""
    return f"{CHECKPOINT_PREFIX}-{step}"


def former_names(step: int) -> list[str]:
    """The names older versions gave the checkpoint at ``step`` (``sami.core.migrate.checkpoint_prefixes``)."""
    return [f"{prefix}-{step}" for prefix in checkpoint_prefixes(CHECKPOINT_PREFIX)[1:]]


def has_former_name(folder: Path) -> bool:
    """Whether ``folder`` is named as an older version named checkpoints (SAMI's loop only, ``step-N``)."""
    return checkpoint_step(folder) is not None and folder.name.partition("-")[0] != CHECKPOINT_PREFIX


def checkpoint_step(folder: Path) -> int | None:
    """N of a folder named ``checkpoint-N`` (or a former name of it, ``sami.core.migrate.checkpoint_prefixes``);
    None for any other name (a copied ``checkpoint-6.bak``, ``damaged-checkpoint-4``)."""
    head, _, tail = folder.name.partition("-")
    named = head in checkpoint_prefixes(CHECKPOINT_PREFIX)
    return int(tail) if named and tail.isascii() and tail.isdigit() else None


def numbered_checkpoints(out: Path) -> list[Path]:
    """The checkpoint folders under ``out/checkpoints``, by step; finished or not."""
    found = [(checkpoint_step(p), p) for p in (Path(out) / CHECKPOINTS).glob("*-*") if p.is_dir()]
    return [p for step, p in sorted((s, p) for s, p in found if s is not None)]


def complete_checkpoints(out: Path) -> list[Path]:
    """The checkpoint folders that were finished (their state file written), oldest first."""
    return [p for p in numbered_checkpoints(out) if (p / STATE_FILE).is_file()]


def latest_checkpoint(out: Path) -> Path | None:
    complete = complete_checkpoints(out)
    return complete[-1] if complete else None


def saved_step(checkpoint: Path) -> int:
    """The optimiser steps done when ``checkpoint`` was written, from its state file (the HF Trainer's
    ``global_step``, SAMI's ``step``)."""
    state = json.loads((checkpoint / STATE_FILE).read_text())
    return state["global_step"] if "global_step" in state else state["step"]


# ------------------------------------------------------------------------------------------ resuming


def resume_point(cfg: TrainConfig, resume: bool, main: bool) -> tuple[Path | None, int, list[dict]]:
    """Where a run in ``cfg.output_dir`` continues from, checked before anything loads: the checkpoint (the
    newest intact finished one; None without ``resume`` or without checkpoints), its step (0 without one) and
    the run's segments so far (``check_resume``, which refuses changed settings or data).

    Every process verifies; the main one (``main``) moves damaged checkpoints aside. When every checkpoint is
    damaged the run does not silently start again from step 0: that is an error naming them."""
    if not resume:
        return None, 0, []
    complete = complete_checkpoints(Path(cfg.output_dir))
    if not complete:
        logger.warning("no checkpoint in %s: starting from step 0", cfg.output_dir)
        return None, 0, []
    checkpoint = latest_intact(complete, move_aside=main)
    if checkpoint is None:
        names = ", ".join(p.name for p in complete)
        raise CheckpointError(
            f"every checkpoint in {Path(cfg.output_dir) / CHECKPOINTS} is damaged ({names}; moved to "
            "damaged-<name>); nothing to resume from: train into another output_dir"
        )
    segments = check_resume(cfg, checkpoint, Path(cfg.output_dir) / CONFIG)
    return checkpoint, saved_step(checkpoint), segments


def data_sha256(cfg: TrainConfig) -> str:
    return file_sha256(Path(cfg.data))


def check_resume(cfg: TrainConfig, checkpoint: Path, fallback_config: Path) -> list[dict]:
    """Refuse to resume from ``checkpoint`` with settings or data other than those it was trained with.

    Only ``RESUMABLE_CHANGES`` may differ; keys the older config does not have (a newer version's additions)
    are not differences. Returns the run's segments so far (from the manifest; empty without one)."""
    saved = checkpoint / CONFIG if (checkpoint / CONFIG).is_file() else fallback_config
    manifest = read_manifest(checkpoint) or {}
    # a checkpoint's config was written with its manifest; the run's own may be older (version 0 reads either)
    version = version_of(manifest) if saved == checkpoint / CONFIG else 0
    previous = method_view(upgrade_config(TrainConfig, load_yaml(saved), version)) if saved.is_file() else None
    lines = []
    if previous is not None:
        diffs = config_differences(previous, method_view(to_dict(cfg)))
        known = flatten(previous)
        for key, (was, now) in diffs.items():
            if key.split(".")[0] in RESUMABLE_CHANGES or key not in known:
                continue
            lines.append(f"  {key}: {was!r} -> {now!r}")
    if manifest.get("data_sha256") and manifest["data_sha256"] != data_sha256(cfg):
        lines.append(f"  data: the content of {cfg.data} changed since {checkpoint.name} was written")
    if lines:
        raise ConfigError(
            f"cannot resume {cfg.output_dir} from {checkpoint.name} with changed settings (a resume may change "
            f"only {', '.join(RESUMABLE_CHANGES[:2])}):\n" + "\n".join(lines) + "\n"
            "resume with the settings it ran with, or train into another output_dir"
        )
    return list(manifest.get("segments") or [])


def segment(cfg: TrainConfig, start: int, steps: int, cuts: dict | None = None) -> dict:
    """One start or resume of a run: where it started, the length it was given, and how many prompts and
    responses its encoding cut to their token budgets (``sami.core.tokens.count_cuts``)."""
    record = {"from_step": start, "total_steps": steps, "max_steps": cfg.max_steps, "epochs": cfg.epochs}
    return {**record, "cut": cut_summary(cuts)} if cuts is not None else record


def cut_summary(cuts: dict) -> dict:
    return {k: int(cuts.get(k, 0)) for k in ("prompts", "prompts_seen", "responses", "responses_seen")}


def log_cuts(cuts: dict, cfg: TrainConfig) -> None:
    """Say how many prompts and responses were cut to ``max_prompt_tokens`` / ``max_response_tokens``."""
    c = cut_summary(cuts)
    if c["prompts"] or c["responses"]:
        logger.warning(
            "cut to their token budgets: %d of %d responses (max_response_tokens %s), %d of %d prompts "
            "(max_prompt_tokens %s)",
            c["responses"],
            c["responses_seen"],
            cfg.max_response_tokens,
            c["prompts"],
            c["prompts_seen"],
            cfg.max_prompt_tokens,
        )


def _no_space(err: BaseException, where: Path) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "No space left" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    # torch's writer reports a full disk as "file write failed" or "unexpected pos", without the OS error
    if any(text in str(err) for text in TORCH_WRITE_FAILURES):
        probe = where
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free < 64 << 20
    return False


def save_failed(err: BaseException, partial: Path, name: str, last: Path | None) -> CheckpointError:
    """Remove a checkpoint folder whose save failed, and the error that says why (disk full, or ``err``)."""
    # the disk is probed before what was written is removed: removing it frees the space whose lack stopped it
    cause = f"no space left on {partial.parent}" if _no_space(err, partial) else f"{type(err).__name__}: {err}"
    shutil.rmtree(partial, ignore_errors=True)
    return CheckpointError(
        f"could not write checkpoint {name}: {cause}; removed what was written; "
        f"last intact checkpoint: {last or 'none'}"
    )


def guarded_save(save: Callable[[], None], partial: Path, name: str, last: Callable[[], Path | None]) -> None:
    """Run ``save`` (which writes ``partial``); on failure remove ``partial`` and raise ``CheckpointError``."""
    try:
        save()
    except Exception as err:  # OSError, torch's RuntimeError, safetensors' own SafetensorError, ...
        raise save_failed(err, partial, name, last()) from err
