"""One writer per output: a lock on every run folder and output file, taken before any model loads.

``hold(target, folder=...)`` takes an exclusive lock (``filelock``) on ``<folder>/.sami.lock`` for a run
folder, or ``<file>.lock`` beside an output file, and writes who holds it (pid, host, start time, command)
next to it. A second run on the same target fails at once with ``OutputBusy``, naming that holder. The
operating system drops the lock of a killed process; the next run takes it over and says whose lock it was.

Under ``accelerate launch`` only the global main process (``RANK`` 0) locks: the other ranks of the same
job write to the same folder by design, and a refused job is stopped as a whole by the launcher.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from sami.core.errors import OutputBusy

logger = logging.getLogger(__name__)


def lock_path(target: str | Path, folder: bool) -> Path:
    """Where the lock of ``target`` lives: inside a folder, beside a file."""
    target = Path(target)
    return target / ".sami.lock" if folder else target.with_name(target.name + ".lock")


def _holder_path(lock: Path) -> Path:
    return lock.with_name(lock.name + ".holder")


def lock_files(folder: str | Path) -> tuple[str, str]:
    """The names of the files a lock on ``folder`` (``hold(folder, folder=True)``) keeps inside it."""
    lock = lock_path(folder, folder=True)
    return lock.name, _holder_path(lock).name


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another process (no holder recorded)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {started} ({holder.get('command', '?')})"


def _read_holder(lock: Path) -> dict | None:
    try:
        return json.loads(_holder_path(lock).read_text())
    except (OSError, ValueError):
        return None


def is_main_rank() -> bool:
    """The global main process of an ``accelerate launch`` or torchrun job, or a plain process."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def hold(target: str | Path, *, folder: bool, what: str = "this output") -> Iterator[None]:
    """Hold the lock of ``target`` (a run folder, or an output file) for the duration of the block;
    ``OutputBusy`` at once if another run has it."""
    if not is_main_rank():
        yield
        return
    lock = lock_path(target, folder)
    lock.parent.mkdir(parents=True, exist_ok=True)
    flock = FileLock(str(lock), timeout=0)
    try:
        flock.acquire()
    except Timeout:
        raise OutputBusy(
            f"{target} is in use by {_describe(_read_holder(lock))}; wait for that run to finish, or write "
            f"{what} elsewhere"
        ) from None
    previous = _read_holder(lock)
    if previous:  # its process died without releasing: the OS dropped its lock, which we now hold
        logger.warning(
            "%s: taking over the lock of a run that stopped without releasing it (%s)", target, _describe(previous)
        )
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
        "command": " ".join(["sami", *sys.argv[1:]]) if sys.argv else "?",
    }
    try:
        _holder_path(lock).write_text(json.dumps(holder))
    except OSError as err:  # a full disk: no empty holder file is left to confuse the next run
        with contextlib.suppress(OSError):
            _holder_path(lock).unlink()
        flock.release()
        raise OSError(err.errno, err.strerror, str(_holder_path(lock))) from err
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            _holder_path(lock).unlink()
        flock.release()
