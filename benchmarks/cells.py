"""Run one benchmark cell in a fresh Python process, so that memory peaks and allocator state do not leak
from one cell into the next, and a cell that dies (out of memory, a timeout) fails alone.

The parent runs ``python SCRIPT --worker SPEC_JSON``; the worker prints one line ``MARK{result JSON}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path


def run_cell(script: str | Path, spec: dict, *, mark: str, timeout: float, cwd: str | Path | None = None) -> dict:
    """The result dict the worker printed after ``mark``; always a dict, with ``"error"`` when the worker
    timed out, was killed, or exited without printing a result."""
    cmd = [sys.executable, str(Path(script).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(mark):
            return json.loads(line[len(mark) :])
    # A shell or container reports a SIGKILL (the kernel's out-of-memory killer) as exit code 137.
    signum = -proc.returncode if proc.returncode < 0 else proc.returncode - 128 if proc.returncode == 137 else None
    if signum is not None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return {"error": f"killed by {name}{', out of memory?' if name == 'SIGKILL' else ''}"}
    tail = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return {"error": f"exit {proc.returncode}: {tail[-1][:200] if tail else 'no output'}"}


def add_cell_options(parser, *, steps: int, timeout: float) -> None:
    """The options every cell-running benchmark takes: the hidden ``--worker``, steps per cell, a timeout per
    cell and a JSON copy of the results."""
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a cell's JSON spec, in the child process
    parser.add_argument("--steps", type=int, default=steps, help="optimiser steps per cell; the first is the warm-up")
    parser.add_argument("--timeout", type=float, default=timeout, help="seconds per cell")
    parser.add_argument("--json", help="also write the results here")


def answered_as_worker(args, worker, mark: str) -> bool:
    """In a worker process (``--worker``): run the cell, print its marked result, and say so. The parent checks
    ``--steps`` (the first step is a warm-up, so at least 2)."""
    if args.worker:
        print(mark + json.dumps(worker(json.loads(args.worker))), flush=True)
        return True
    if args.steps < 2:
        raise SystemExit("--steps must be at least 2 (the first step is the warm-up)")
    return False
