"""``make rehearsal``: the paper's MT-Bench configuration rehearsed end to end on the CPU, through vLLM.

It runs ``configs/mtbench-llama31-8b-toy.yaml`` (the toy twin of ``configs/mtbench-llama31-8b.yaml``: the same
stages, backends and launch lines, the embedded model, a few queries and questions) with the launch lines the
paper config documents, each as its own command, into ``runs/rehearsal`` (emptied first; each command's output
in ``runs/rehearsal/logs/``):

1. ``sami experiment CONFIG --only mtbench/data``: the teacher writes the training data through vLLM's engine;
2. ``accelerate launch --config_file configs/accelerate/fsdp-8gpu.yaml --num_processes 2 -m sami.cli experiment
   CONFIG --only mtbench/sft`` (then ``mtbench/dpo``): the TRL methods as 2 CPU processes;
3. ``torchrun --nproc_per_node 2 -m sami.cli experiment CONFIG --only mtbench/sami``: SAMI as 2 CPU processes;
4. vLLM's OpenAI-compatible server (what ``vllm serve`` starts) on the embedded model, on a free loopback port,
   as the judge, for ``sami experiment CONFIG --only mtbench/eval-mtbench`` (MT-Bench answered through the
   engine, judged through the server); the server is stopped however that ends;
5. ``sami experiment CONFIG``: the MI bound and adherence through the engine, and the report.

Then it checks what a finished run must hold: every stage's ``stage.json`` with the fingerprint the plan
expects, each trained model written by 2 processes with the steps its config asks for, training records and
answers from vLLM, every judge request of both judges answered by the server, and the report. It prints the
wall time of each step and exits non-zero on the first failure.

    .venv-vllm/bin/python -m tests.rehearsal      # from the repository root; `make rehearsal` does the same
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import ServerFailed, vllm_server

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/mtbench-llama31-8b-toy.yaml"
FSDP = "configs/accelerate/fsdp-8gpu.yaml"
PROCESSES = 2
SERVED_NAME = "smollm2-135m"  # the judge's model in the config: the name the server serves


class RehearsalFailed(RuntimeError):
    pass


def _bin(name: str) -> str:
    """A console script of the running environment (sami, accelerate, torchrun)."""
    path = Path(sys.executable).with_name(name)
    if not path.is_file():
        raise RehearsalFailed(f"{path} is missing: run this with the Python of the environment that has vLLM")
    return str(path)


def _run(label: str, command: list[str], log: Path, times: dict[str, float]) -> None:
    print(f"rehearsal: {label}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    with open(log, "ab") as out:
        code = subprocess.call(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    times[label] = time.perf_counter() - start
    print(f"rehearsal: {label}: exit {code} in {times[label]:.0f} s (log: {log})", flush=True)
    if code != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise RehearsalFailed(f"{label} exited with {code}; the end of {log}:\n{tail}")


@contextmanager
def judge_server(log: Path, *, timeout: float):
    """vLLM's OpenAI-compatible server on the embedded model, in bf16 as the config's engines, under the judge's
    served name; yields its base URL and stops it on the way out, whatever happened inside."""
    say = lambda line: print(f"rehearsal: judge server: {line}", flush=True)  # noqa: E731
    try:
        with vllm_server(log, dtype="bfloat16", timeout=timeout, name=SERVED_NAME, say=say) as url:
            yield url
    except ServerFailed as err:
        raise RehearsalFailed(str(err)) from None


@contextmanager
def disk_watch(folder: Path, every: float = 2.0):
    """Samples the free space of ``folder``'s disk while the rehearsal runs; yields a dict whose "least" is the
    smallest free space seen (bytes), so that the report can say how much the run took at its peak."""
    import threading

    seen = {"start": shutil.disk_usage(folder).free}
    seen["least"] = seen["start"]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            seen["least"] = min(seen["least"], shutil.disk_usage(folder).free)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def _jsonl(path: Path) -> list[dict]:
    from sami.data.records import json_lines

    return [row for _, row in json_lines(path)]


def check(config: str, overrides: list[str]) -> list[str]:
    """What a finished rehearsal must hold; returns the lines of what was found (raises on the first miss)."""
    from sami.core.config import load_yaml
    from sami.core.layout import (
        ANSWERS,
        CHECKPOINTS,
        CONFIG,
        JUDGMENTS,
        METRICS,
        MODEL,
        PROVENANCE,
        REPORT,
        REPORT_DIR,
        SETTINGS,
        SHARDS,
    )
    from sami.study.experiment import load_experiment_config, plan_experiment
    from sami.study.stages import plan, read_marker
    from sami.train.sami_loop import total_steps

    cfg = load_experiment_config(ROOT / config, overrides)
    stages, parts = plan_experiment(cfg)
    found = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise RehearsalFailed(f"check failed: {what}")
        found.append(what)

    for stage in plan(stages):
        marker = read_marker(stage.folder)
        need(marker is not None and marker["fingerprint"] == stage.fingerprint, f"stage {stage.name} finished")
    root = Path(cfg.output_dir)
    records = _jsonl(root / "mtbench" / "data" / "train.jsonl")
    teachers = {r["provenance"]["teacher"]["kind"] for r in records}
    need(len(records) > 0 and teachers == {"vllm"}, f"{len(records)} training records, written by vLLM's engine")
    for method, train in parts["mtbench"]["trains"].items():
        record = json.loads((Path(train.output_dir) / MODEL / PROVENANCE).read_text())
        steps = total_steps(train, len(records), PROCESSES)  # one query, or one pair (dpo: most_flipped), each
        logged = len(_jsonl(Path(train.output_dir) / METRICS))  # every method logs one line per step
        need(
            record["num_processes"] == PROCESSES and record["steps"] == steps == logged,
            f"{method}: {record['steps']} steps by {record['num_processes']} processes, model saved",
        )
    sami = Path(parts["mtbench"]["trains"]["sami"].output_dir)
    shards = sorted(p.name for p in (sami / CHECKPOINTS).glob(f"*/{SHARDS}/*.distcp"))
    need(
        load_yaml(sami / CONFIG)["sharding"] == "fsdp" and len(shards) >= PROCESSES,
        f"sami: sharded with FSDP2, its checkpoints in {len(shards)} shards written by the processes",
    )
    ev = parts["mtbench"]["evals"]["mtbench"]
    mtbench = Path(ev.output_dir) / "mtbench"  # the MT-Bench suite's folder of the study's evaluation
    settings = json.loads((mtbench / SETTINGS).read_text())
    need(
        settings["backend"]["kind"] == "vllm" and settings["judge"] == f"openai:{SERVED_NAME}",
        f"MT-Bench answered through {settings['backend']['kind']}, judged by {settings['judge']}",
    )
    answers = {path.stem: _jsonl(path) for path in sorted((mtbench / ANSWERS).glob("*.jsonl"))}
    sizes = {len(rows) for rows in answers.values()}
    need(
        sorted(answers) == ["dpo", "sami", "sft"]
        and len(sizes) == 1
        and sizes != {0}
        and all(any(r["answer"].strip() for r in rows) for rows in answers.values()),
        f"{next(iter(sizes))} MT-Bench answers (question turns) of each of {sorted(answers)}",
    )
    for judge in ev.mtbench.judges:
        files = sorted((mtbench / JUDGMENTS / judge).glob("*.jsonl"))
        rows = [r for f in files for r in _jsonl(f)]
        need(
            len(files) == 3 and len(rows) == 2 * 3 * next(iter(sizes)) and any(r["raw"].strip() for r in rows),
            f"judge {judge}: {len(rows)} judgments (3 pairs, both orders) written by the served judge",
        )
    report = root / REPORT_DIR / REPORT
    need(report.is_file() and report.stat().st_size > 0, f"report {report}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--output-dir", default="runs/rehearsal", help="emptied first")
    parser.add_argument("--server-timeout", type=float, default=600, help="seconds to wait for the judge server")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the config's paths, and --output-dir, are relative to the repository root
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB per engine; the default takes a quarter of RAM
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped rehearsal still stops its server

    start = time.perf_counter()
    out = ROOT / args.output_dir
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    logs, times = out / "logs", {}  # each command's output
    logs.mkdir()
    print(f"rehearsal: {shutil.disk_usage(out).free / 2**30:.1f} GiB free on the disk of {out}", flush=True)
    overrides = ["-o", f"output_dir={args.output_dir}"]
    experiment = ["-m", "sami.cli", "experiment", args.config, *overrides]
    with disk_watch(out) as disk:
        try:
            _run(
                "mtbench/data",
                [_bin("sami"), "experiment", args.config, *overrides, "--only", "mtbench/data"],
                logs / "data.log",
                times,
            )
            accelerate = [_bin("accelerate"), "launch", "--config_file", FSDP, "--num_processes", str(PROCESSES)]
            _run("mtbench/sft", [*accelerate, *experiment, "--only", "mtbench/sft"], logs / "sft.log", times)
            torchrun = [_bin("torchrun"), "--nproc_per_node", str(PROCESSES)]
            _run("mtbench/sami", [*torchrun, *experiment, "--only", "mtbench/sami"], logs / "sami.log", times)
            _run("mtbench/dpo", [*accelerate, *experiment, "--only", "mtbench/dpo"], logs / "dpo.log", times)
            sami = [_bin("sami"), "experiment", args.config, *overrides]
            with judge_server(logs / "judge-server.log", timeout=args.server_timeout) as url:
                # the judge's address is part of the MT-Bench stage's settings: the last line passes it too
                sami += ["-o", f"judge.base_url={url}"]
                _run(
                    "mtbench/eval-mtbench", [*sami, "--only", "mtbench/eval-mtbench"], logs / "eval-mtbench.log", times
                )
            _run("the other evaluations and the report", sami, logs / "evaluation.log", times)
            found = check(args.config, [f"output_dir={args.output_dir}", f"judge.base_url={url}"])
        except RehearsalFailed as err:
            lowest = disk["least"] / 2**30
            print(
                f"rehearsal: FAILED after {time.perf_counter() - start:.0f} s (the disk's free space at its lowest: "
                f"{lowest:.1f} GiB): {err}",
                file=sys.stderr,
            )
            return 1
    for line in found:
        print(f"rehearsal: ok: {line}")
    print(
        f"rehearsal: passed in {time.perf_counter() - start:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
        + f"); the disk's free space fell by at most {(disk['start'] - disk['least']) / 2**30:.1f} GiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
