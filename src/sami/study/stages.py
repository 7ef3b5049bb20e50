"""Stages of a study that rerun exactly when their inputs changed.

A ``Stage`` has a name, the part of the configuration it depends on, the stages it reads from, and a
function that does the work inside the stage's folder. Its fingerprint is a hash of its configuration and
of the fingerprints of the stages it reads from, so a change anywhere upstream changes every fingerprint
downstream and nothing else. When a stage finishes, ``stage.json`` (fingerprint, configuration, time taken)
is written into its folder, last.

Running a plan (``run_stages``), each stage is

- skipped when its ``stage.json`` holds the current fingerprint (finished, same inputs);
- started afresh when its ``stage.json`` holds another fingerprint (finished, but with other inputs): the
  folder is moved aside to ``<folder>.stale-<old fingerprint>`` (not deleted) and the stage runs again;
- run otherwise (never started, or interrupted): the stage's own resumption continues from what its folder
  holds (generation skips finished queries, training continues from its last checkpoint, evaluation from its
  stored answers and verdicts). An interrupted stage whose configuration changed since is not detected here;
  ``stage.json`` is written only on success, so each stage function must itself refuse or handle a folder
  written under another configuration (generation and training do).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sami.core.errors import ConfigError
from sami.core.layout import STAGE_MARKER
from sami.core.migrate import hash_form, stamped

logger = logging.getLogger(__name__)
MARKER = STAGE_MARKER


@dataclass
class Stage:
    name: str
    folder: Path
    config: dict  # what the stage depends on besides its upstream stages (JSON-serialisable)
    run: Callable[[Path], object]
    after: Sequence[str] = ()  # names of the stages whose outputs it reads
    fingerprint: str = field(default="", init=False)


@dataclass
class StageOutcome:
    name: str
    status: str  # skipped | ran | reran
    seconds: float


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def fingerprint(config: dict, upstream: Sequence[str]) -> str:
    """A hash of ``config`` (in the names of the first layout, ``sami.core.migrate.hash_form``) and ``upstream``."""
    blob = json.dumps({"config": hash_form(config), "upstream": list(upstream)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan(stages: Sequence[Stage]) -> list[Stage]:
    """Stages with their fingerprints, checked: unique names, upstream stages listed before their readers."""
    by_name: dict[str, Stage] = {}
    for stage in stages:
        if stage.name in by_name:
            raise ConfigError(f"two stages are named {stage.name!r}")
        missing = [a for a in stage.after if a not in by_name]
        if missing:
            raise ConfigError(f"stage {stage.name!r} reads {missing}, which are not listed before it")
        stage.fingerprint = fingerprint(stage.config, [by_name[a].fingerprint for a in stage.after])
        by_name[stage.name] = stage
    return list(stages)


def read_marker(folder: Path) -> dict | None:
    path = folder / MARKER
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def run_stages(stages: Sequence[Stage], *, only: Sequence[str] | None = None) -> list[StageOutcome]:
    """Run every stage that is not finished with its current fingerprint, in order."""
    outcomes = []
    for stage in plan(stages):
        if only is not None and stage.name not in only:
            continue
        marker = read_marker(stage.folder)
        if marker and marker.get("fingerprint") == stage.fingerprint:
            outcomes.append(StageOutcome(stage.name, "skipped", 0.0))
            continue
        status = "ran"
        if marker and _world_size() > 1:
            raise RuntimeError(
                f"stage {stage.name}: its inputs changed since it finished; rerun it once in a single process "
                "so that its old output is moved aside before several processes write there"
            )
        if marker:
            stale = stage.folder.with_name(f"{stage.folder.name}.stale-{marker.get('fingerprint', 'unknown')}")
            logger.info("stage %s: its inputs changed; moving its old output to %s", stage.name, stale)
            if stale.exists():
                shutil.rmtree(stale)
            stage.folder.rename(stale)
            status = "reran"
        stage.folder.mkdir(parents=True, exist_ok=True)
        logger.info("stage %s: running", stage.name)
        start = time.perf_counter()
        stage.run(stage.folder)
        seconds = time.perf_counter() - start
        record = {
            "stage": stage.name,
            "fingerprint": stage.fingerprint,
            "config": stage.config,
            "after": list(stage.after),
            "seconds": round(seconds, 2),
        }
        if _rank() == 0:  # under `accelerate launch` every process runs the stage; one writes its marker
            tmp = stage.folder / f".{MARKER}.tmp"
            tmp.write_text(json.dumps(stamped(record), indent=2, default=str))
            tmp.replace(stage.folder / MARKER)
        outcomes.append(StageOutcome(stage.name, status, seconds))
    return outcomes
