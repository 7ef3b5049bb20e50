"""One process of a multi-process training launch for tests: ``torchrun --nproc_per_node N -m
tests.sharded_worker PLAN.json`` trains the plan's runs in turn, so that one launch checks several cases.

A plan is a list of jobs: ``{"config": {...}, "resume": bool}`` trains that config (``sami.train.run.train``);
a ``ConfigError`` is written to ``<output_dir>.refused`` (the main process) and the next job runs; a job with
``"kill_rank": r, "kill_step": s`` has process r SIGKILL itself as it starts step s (1-based), which ends the
launch, so such a job comes last.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import sami.train.sami_loop as loop
from sami.core.config import ConfigError, from_dict
from sami.train.config import TrainConfig
from sami.train.run import train


def kill_at(rank: int, step: int) -> None:
    original = loop._optimizer_step

    def step_or_die(run, index):
        if index + 1 == step and run.accelerator.process_index == rank:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(run, index)

    loop._optimizer_step = step_or_die


def main(plan_path: str) -> None:
    for job in json.loads(Path(plan_path).read_text()):
        cfg = from_dict(TrainConfig, job["config"])
        if "kill_rank" in job:
            kill_at(job["kill_rank"], job["kill_step"])
        try:
            train(cfg, resume=job.get("resume", False))
        except ConfigError as err:
            if int(os.environ.get("RANK", "0")) == 0:
                Path(f"{cfg.output_dir}.refused").write_text(str(err))


if __name__ == "__main__":
    main(sys.argv[1])
