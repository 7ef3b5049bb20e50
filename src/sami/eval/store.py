"""Append-only JSONL files that make every evaluation stage resumable and its metrics recomputable.

A record is appended (and flushed) as soon as it is finished, so an interrupted run loses at most the
records in flight. On restart the finished keys are read back and only the rest is generated or judged.
A last line cut off mid-write by a crash is removed with a warning; any other bad line is an error that
names the file and line. Every suite ends the same way (``finish_suite``): its metrics computed from those
files only, written to ``metrics.json`` beside them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sami.backends.base import IMPORTED
from sami.core.config import ConfigError, config_differences
from sami.core.errors import DataError
from sami.core.layout import ANSWERS, CONFIG, IMPORT, MODELS, SETTINGS, SUITE_METRICS
from sami.core.locks import hold, lock_files
from sami.core.migrate import stamped, upgrade_settings
from sami.data.records import read_appended as read_jsonl  # noqa: F401 (the evaluation modules read through here)
from sami.eval.results import Result, stored

if TYPE_CHECKING:
    from sami.eval.config import EvalConfig

logger = logging.getLogger(__name__)

METRICS_FILE = SUITE_METRICS  # a suite's metrics, in its folder <output_dir>/<suite>
# what a run writes before its first result: put back as they were when it stops before storing one
BOOKKEEPING = (CONFIG, MODELS, SETTINGS, f"{IMPORT}/{SETTINGS}")


def _results(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file of an eval folder but its bookkeeping and lock files, with its size and modification time."""
    if not folder.is_dir():
        return {}
    out, skipped = {}, (*BOOKKEEPING, *lock_files(folder))
    for path in folder.rglob("*"):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name not in skipped:
            stat = path.stat()
            out[name] = (stat.st_size, stat.st_mtime_ns)
    return out


@contextlib.contextmanager
def held_as_found(folder: str | Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock (``sami.core.locks.hold``) for a run that, when it stops (refused, failed or
    interrupted) before it stored any answer, verdict or metric, leaves the folder as it found it: its
    ``BOOKKEEPING`` files are put back (or removed), and a folder it created is removed again. Otherwise a
    refused value written to ``settings.json`` would refuse the corrected rerun, although nothing was made under
    it."""
    folder = Path(folder)
    created = next((p for p in reversed((folder, *folder.parents)) if not p.exists()), None)
    put_back = False
    try:
        with hold(folder, folder=True, what=what):
            kept = {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in BOOKKEEPING}
            results = _results(folder)
            try:
                yield
            except BaseException:
                put_back = _results(folder) == results
                if put_back:
                    _put_back(folder, kept)
                raise
    finally:
        if put_back and created is not None and created.is_dir():
            locks = lock_files(folder)  # all that a refused run may leave in a folder it created
            if not any(p.is_file() and p.name not in locks for p in created.rglob("*")):
                shutil.rmtree(created, ignore_errors=True)


def _put_back(folder: Path, kept: dict[str, bytes | None]) -> None:
    with contextlib.suppress(OSError):
        for name, content in kept.items():
            path = folder / name
            if content is None:
                path.unlink(missing_ok=True)
            elif not path.is_file() or path.read_bytes() != content:
                path.write_bytes(content)


class JsonlStore:
    """Records keyed by a tuple of fields; ``done`` tells what is already stored."""

    def __init__(self, path: str | Path, key: Sequence[str]):
        self.path = Path(path)
        self.key_fields = tuple(key)
        self.records: dict[tuple, dict] = {}
        for number, record in enumerate(read_jsonl(self.path), 1):
            missing = [k for k in self.key_fields if k not in record]
            if missing:
                raise DataError(f"{self.path}: record {number}: missing key field(s) {missing}")
            self.records[self.key(record)] = record

    def key(self, record: dict) -> tuple:
        return tuple(record[k] for k in self.key_fields)

    def done(self, *key) -> bool:
        return tuple(key) in self.records

    def get(self, *key) -> dict | None:
        return self.records.get(tuple(key))

    def append(self, record: dict) -> None:
        self.append_many([record])

    def append_many(self, records: Iterable[dict]) -> None:
        records = list(records)
        if not records:
            return
        for r in records:  # what the reader (``__init__``) will require of every line
            missing = [k for k in self.key_fields if k not in r]
            if missing:
                raise ValueError(f"{self.path}: refusing to append a record without key field(s) {missing}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = self.path.stat().st_size if self.path.exists() else 0
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:  # a full disk: nothing half-written stays, and the error names the file
            with contextlib.suppress(OSError):
                os.truncate(self.path, size)
            raise OSError(err.errno, err.strerror, str(self.path)) from err
        for r in records:
            self.records[self.key(r)] = r

    def __len__(self) -> int:
        return len(self.records)

    def values(self) -> list[dict]:
        return list(self.records.values())


def check_settings(directory: str | Path, settings: dict, suite: str) -> None:
    """Refuse to add to a directory whose stored records were produced under different settings.

    ``settings`` are the values that change what is generated or judged (prompts, sampling, data);
    the first run writes them to ``settings.json`` with the layout version; later runs must match (checkpoints
    may be added). Settings an older version stored (under other names, without a setting added since, a value
    recorded another way) read as this version records them, ``sami.core.migrate.upgrade_settings`` with
    ``suite`` (``import`` for an imported folder's).
    """
    path = Path(directory) / SETTINGS
    settings = json.loads(json.dumps(settings))  # tuples become lists, as they read back
    if path.is_file():
        stored = upgrade_settings(suite, json.loads(path.read_text()), settings, what=str(path))
        diff = config_differences(stored, settings)
        if diff:
            lines = "; ".join(f"{k}: stored {a!r}, now {b!r}" for k, a, b in ((k, *v) for k, v in diff.items()))
            raise ConfigError(
                f"{directory} holds results made with other settings ({lines}); use another output directory "
                "or the same settings"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamped(settings), indent=1, sort_keys=True) + "\n")


def check_bindings(directory: str | Path, bindings: dict[str, dict]) -> None:
    """Each checkpoint name in an evaluation folder stays bound to the model it was first evaluated as.

    ``bindings``: name -> ``{"model": reference, "key": content key}`` (``sami.models.loading.content_key``). A name
    whose key changed (another model, or one retrained in place) is refused, naming both, before anything
    is loaded or written: its stored rows would otherwise be reported as the new model's. New names are
    recorded in ``models.json``."""
    path = Path(directory) / MODELS
    stored = json.loads(path.read_text()) if path.is_file() else {}
    _one_kind(Path(directory), stored, bindings)
    clashes = [
        f"'{name}' was {stored[name]['model']} (content {stored[name]['key'][:12]}), now {now['model']} "
        f"(content {now['key'][:12]})"
        for name, now in bindings.items()
        if name in stored and stored[name]["key"] != now["key"]
    ]
    if clashes:
        raise ConfigError(
            f"{directory} holds results of other models under these names: {'; '.join(clashes)}; evaluate them "
            "under other names (name=model) or into another output_dir"
        )
    if any(name not in stored for name in bindings):
        write_json(path, {**stored, **bindings})


def _one_kind(directory: Path, stored: dict[str, dict], bindings: dict[str, dict]) -> None:
    """An evaluation folder holds answers ``sami eval import`` read or answers generated here, not both: their
    protocols, prompts and judges differ, and a table over both would compare them as if they did not."""

    def imported(binding: dict) -> bool:
        return str(binding["key"]).startswith(IMPORTED)

    was_imported = (directory / IMPORT / SETTINGS).is_file() or any(map(imported, stored.values()))
    was_generated = any(not imported(b) for b in stored.values())
    mixed = [
        name for name, b in bindings.items() if (was_imported and not imported(b)) or (was_generated and imported(b))
    ]
    if mixed:
        held, added = ("imported", "generated") if was_imported else ("generated", "imported")
        raise ConfigError(
            f"{directory} holds {held} answers (sami eval {'import' if was_imported else 'mtbench'}); the answers of "
            f"{', '.join(mixed)} would be {added} beside them, and an eval folder holds one kind: evaluate "
            f"{'them' if len(mixed) > 1 else 'it'} into another output_dir"
        )


def write_json(path: str | Path, obj) -> None:
    """Write atomically (temporary file, then rename) so a reader never sees half a metrics file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def finish_suite(cfg: EvalConfig, suite: str, metrics_of: Callable[[EvalConfig], Result | dict]) -> dict:
    """The end of every suite's run: ``metrics_of(cfg)`` (its metrics from the stored files only, what
    ``sami eval SUITE --recompute`` runs alone) written to ``<output_dir>/<suite>/metrics.json`` and returned in
    that stored form (``sami.eval.results.stored``)."""
    metrics = stored(metrics_of(cfg))
    write_json(Path(cfg.output_dir) / suite / METRICS_FILE, metrics)
    return metrics


def check_imported(root: Path) -> None:
    """An eval folder holds imported or generated results, not both: importing into a folder with answers that
    ``sami eval mtbench`` generated is refused (``sami.eval.store.check_bindings`` refuses the other way)."""
    models = root / MODELS
    bound = json.loads(models.read_text()) if models.is_file() else {}
    generated = sorted(name for name, b in bound.items() if not str(b.get("key")).startswith(IMPORTED))
    if not generated and (root / ANSWERS).is_dir() and not (root / IMPORT / SETTINGS).is_file():
        generated = sorted(p.stem for p in (root / ANSWERS).glob("*.jsonl"))
    if generated:
        raise ConfigError(
            f"{root} holds answers generated by sami eval mtbench ({', '.join(generated)}); an eval folder holds "
            "imported or generated results, not both: import into another --output-dir"
        )


def check_imported_protocol(root: Path, protocol: str) -> None:
    """A run on an imported folder keeps the protocol the imported answers were made under (``fastchat`` when
    any answer is a second turn), which the import recorded."""
    path = root / IMPORT / SETTINGS
    stored = json.loads(path.read_text()).get("protocol") if path.is_file() else None
    if stored is not None and stored != protocol:
        raise ConfigError(
            f"mtbench.protocol: {root} holds answers imported under the {stored} protocol, not "
            f"{protocol}; an eval folder holds one protocol"
        )
