"""`make docs`: rewrite the blocks of README.md and docs/*.md that quote runs, from the runs' own files, so
that every number the docs publish is one a command in this repository wrote.

A block sits between two HTML comments (invisible on the rendered page):

    <!-- from runs/quickstart/report/report.md section="What this run shows" lines="^- Held-out MI" -->
    ...rewritten...
    <!-- end -->

- ``from FILE`` with a ``report.md``: the body of the first heading named ``section`` (the whole report when
  none) up to its first line that matches ``until``, only its lines that match the regular expression
  ``lines`` (all non-blank ones when none). Bullets
  come out in a ``text`` block wrapped at 110 columns; ``as="markdown"`` keeps the lines as they are (a
  table renders as a table).
- ``from RUN stages``: the time each stage of an experiment run took (its ``stage.json``), with the 2048^3
  float32 matmul rate of the machine it ran on, from ``RUN/machine.json``. A time is never published without
  that rate: ``make quickstart`` records it right after its run, on the same machine; for another run,
  ``python docs/regenerate.py --record-machine RUN`` (``--note`` adds a line, e.g. what else was running).

A block whose file is missing is left as it is, and the script says so (exit code 0: a page may quote runs
that only some machines have); but a report missing from a run whose stage times are published (it holds
machine.json) is an error: its times would stand beside another run's excerpts. Every block of every page is
rendered before any page is written: a file that cannot be read (an empty report, a machine.json that is not
JSON, a stage.json without its fields) stops the script with one line naming it (exit code 2), and no page
changes. Paths are relative to the repository root.

It then remakes the screenshots of run pages the docs show (``SHOTS``) in headless Chromium, offline, where
the page exists and Chromium with Playwright is installed (``make test-browser`` installs both); otherwise it
says why and leaves the picture as it is; so it does where the page lacks what a picture shows (its selector) or
the browser fails, and goes on to the next picture. ``--check`` compares text only.

    python docs/regenerate.py                 # rewrite every block whose run exists (make docs)
    python docs/regenerate.py --check         # exit 1 if a rewrite would change a page
    python docs/regenerate.py --record-machine runs/quickstart
"""

import argparse
import json
import platform
import re
import shlex
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- from (?P<spec>.*?) -->\n)(?P<body>.*?)(<!-- end -->)", re.S)
WIDTH = 110
MACHINE = "machine.json"


# The pictures of run pages the docs show, relative to the repository: PNG -> (the page, the CSS selector of the
# part shown, None: the top).
SHOTS = {
    "docs/page-quickstart.png": ("runs/quickstart/report/index.html", None),
    "docs/page-quickstart-question.png": ("runs/quickstart/report/index.html", "#mtbench-q83"),
    "docs/page-methods.png": ("runs/methods/report/index.html", None),
}


class Missing(Exception):
    """The block's run file is not on this machine."""


class BlockError(ValueError):
    """A block cannot be rendered from its file; the message names the file."""


def shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def read_json(path: Path, fields: tuple[str, ...]) -> dict:
    """A run's JSON file (machine.json, stage.json) holding ``fields``; else ``BlockError`` naming it."""
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BlockError(f"{shown(path)}: not JSON ({err})") from None
    missing = [f for f in fields if not isinstance(value, dict) or f not in value]
    if missing:
        raise BlockError(f"{shown(path)}: no {', '.join(missing)}; expected an object with {', '.join(fields)}")
    return value


def finished_run(path: Path) -> Path | None:
    """The run folder above ``path`` whose stage times the docs publish (it holds ``machine.json``), else None."""
    for folder in path.parents:
        if folder == ROOT or not folder.is_relative_to(ROOT):
            return None
        if (folder / MACHINE).is_file():
            return folder
    return None


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``FILE key="value" ...`` (shell quoting) into the file and its options."""
    words = shlex.split(spec)
    options = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        options[key] = value if sep else ""
    return words[0], options


def section(text: str, heading: str | None) -> list[str]:
    """The lines under the first heading named ``heading`` up to the next heading of its level or higher."""
    lines = text.splitlines()
    if heading is None:
        return lines
    for i, line in enumerate(lines):
        match = re.match(r"(#+) (.*)", line)
        if match and match.group(2).strip() == heading:
            level = len(match.group(1))
            end = next(
                (j for j in range(i + 1, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[j])),
                len(lines),
            )
            return lines[i + 1 : end]
    raise BlockError(f"no heading {heading!r}")


def wrap(line: str) -> str:
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(line, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def excerpt(path: Path, options: dict[str, str]) -> str:
    if not path.is_file():
        run = finished_run(path)
        if run is not None:  # its stage times would be published beside an older report's excerpts
            raise BlockError(f"{shown(path)} is missing, but {shown(run)} has its stage times; rerun its report")
        raise Missing(path)
    text = path.read_text()
    if not text.strip():
        raise BlockError(f"{shown(path)}: empty")
    try:
        body = section(text, options.get("section"))
    except BlockError as err:
        raise BlockError(f"{shown(path)}: {err}") from None
    if "until" in options:
        body = body[: next((i for i, line in enumerate(body) if re.search(options["until"], line)), len(body))]
    pattern = re.compile(options["lines"]) if "lines" in options else None
    kept = [(i, line) for i, line in enumerate(body) if line.strip() and (pattern is None or pattern.search(line))]
    if not kept:
        raise BlockError(f"no line of {shown(path)} matches {options}")
    if options.get("as") == "markdown":
        # lines that were apart in the report stay apart, so that two tables do not run into one
        out = [line if i == 0 or kept[i - 1][0] == n - 1 else "\n" + line for i, (n, line) in enumerate(kept)]
        return "\n" + "\n".join(out) + "\n\n"  # blank lines: the comments cannot run into the table
    return "```text\n" + "\n".join(wrap(line) for _, line in kept) + "\n```\n"


def stage_times(run: Path) -> str:
    """Each finished stage of the run with its minutes, in the order the run wrote them, and the machine."""
    machine_file = run / MACHINE
    if not machine_file.is_file():
        raise Missing(machine_file)
    found = [p for p in run.rglob("stage.json") if ".stale-" not in p.as_posix()]  # folders moved aside
    markers = [read_json(p, ("stage", "seconds")) | {"_mtime": p.stat().st_mtime} for p in found]
    if not markers:
        raise Missing(run / "*/stage.json")
    markers.sort(key=lambda m: m["_mtime"])
    machine = read_json(machine_file, ("cpus", "torch", "matmul_gflops", "measured"))
    lines = [f"{m['stage']:<24} {m['seconds'] / 60:5.1f} min" for m in markers]
    total = sum(m["seconds"] for m in markers) / 60
    lines.append(f"{'all stages':<24} {total:5.1f} min")
    lines.append(
        f"on {machine['cpus']} CPUs, {machine['torch']}; 2048^3 float32 matmul {machine['matmul_gflops']:.0f}"
        f" GFLOP/s (best of 5), measured {machine['measured']}"
    )
    if machine.get("note"):
        lines.append(machine["note"])
    return "```text\n" + "\n".join(lines) + "\n```\n"


def render(spec: str) -> str:
    target, options = parse_spec(spec)
    path = ROOT / target
    if "stages" in options:
        return stage_times(path)
    return excerpt(path, options)


def regenerate(text: str, page: str, say=print) -> str:
    """The page with every block whose run file exists rewritten; the others as they were."""

    def replace(match: re.Match) -> str:
        try:
            body = render(match.group("spec"))
        except Missing as missing:
            say(f"{page}: a block left as it is: {shown(Path(missing.args[0]))} is missing")
            return match.group(0)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The best of ``repeats`` float32 ``n^3`` matmuls on the CPU, in GFLOP/s (2 n^3 operations each)."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def record_machine(run: Path, note: str | None = None) -> dict | None:
    """Measure this machine into ``run/machine.json``, unless it is there already and no stage has finished
    since (a rerun that skipped every stage ran nothing, so the times are still the recorded machine's)."""
    import datetime
    import os

    import torch

    path = run / MACHINE
    stages = [p.stat().st_mtime for p in run.rglob("stage.json") if ".stale-" not in p.as_posix()]
    if path.is_file() and path.stat().st_mtime >= max(stages, default=0.0):
        return None
    machine = {
        "matmul_gflops": round(matmul_gflops(), 1),
        "cpus": os.cpu_count(),
        "torch": f"torch {torch.__version__}",
        "platform": platform.platform(),
        "measured": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if note:
        machine["note"] = note
    path.write_text(json.dumps(machine, indent=2) + "\n")
    return machine


def remake_shots(say=print) -> None:
    """Each picture of ``SHOTS`` from its page, where the page and a browser are here."""
    try:
        from sami.study.screenshot import CHROMIUM, screenshot
    except ImportError as err:  # the docs can be regenerated without the package's dependencies
        say(f"screenshots: left as they are ({err})")
        return
    for png, (page, selector) in SHOTS.items():
        png, page = ROOT / png, ROOT / page
        if not page.is_file():
            say(f"{shown(png)}: left as it is ({shown(page)} is not on this machine)")
        elif not Path(CHROMIUM).is_file():
            say(f"{shown(png)}: left as it is (no {CHROMIUM}; make test-browser installs it)")
        else:
            try:
                screenshot(page, png, height=1100, selector=selector)
            except Exception as err:  # the page lacks what the picture shows, or the browser failed: say which
                text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                say(f"{shown(png)}: left as it is (could not draw it from {shown(page)}: {text})")
                continue
            say(f"{shown(png)}: remade from {shown(page)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page would change")
    parser.add_argument("--record-machine", metavar="RUN", help="measure this machine into RUN/machine.json")
    parser.add_argument("--note", help="with --record-machine: a line published under the times (e.g. the load)")
    args = parser.parse_args(argv)
    if args.record_machine:
        run = ROOT / args.record_machine
        if not run.is_dir():
            parser.error(f"{run} is not a run folder")
        machine = record_machine(run, args.note)
        if machine is None:
            print(f"machine: {run / MACHINE} already describes the machine of the latest stages")
        else:
            print(f"machine: 2048^3 float32 matmul {machine['matmul_gflops']:.0f} GFLOP/s, in {run / MACHINE}")
        return 0
    rewritten = {}
    for page in PAGES:  # every block of every page first: a page is written only when all of them can be
        old = page.read_text()
        try:
            new = regenerate(old, shown(page))
        except BlockError as err:
            print(f"regenerate.py: error: {shown(page)}: {err}; no page was written", file=sys.stderr)
            return 2
        if new != old:
            rewritten[page] = new
    stale = [shown(page) for page in rewritten]
    if not args.check:
        for page, new in rewritten.items():
            page.write_text(new)
    verb = "would change" if args.check else "rewrote"
    print(f"{verb}: {', '.join(stale) if stale else 'nothing'}")
    if not args.check:
        remake_shots()
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
