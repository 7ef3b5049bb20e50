"""The page: ``index.html``, one self-contained file rendered from the Jinja2 templates beside this module.

Styles and scripts are included into the file, figures are data URIs, and the data are rendered into the HTML
by the template engine (every text escaped by it), so the page opens from disk with no server and fetches
nothing. The script (``templates/page.js``, plain JavaScript) only shows and hides what is already there: the
filters and the text search of the MT-Bench browser.

The report's findings and tables are the report's own text (``report.md`` as ``sami.study.report.render_report``
renders it), split into headings, paragraphs, lists, tables and figures (``report_blocks``), so the page and the
report can never show different numbers. Its figures come as data URIs keyed by where the text links them; the
training curves are drawn in memory. Nothing but the page is written.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from sami.core.layout import PAGE
from sami.eval.results import MTBenchMetrics
from sami.study import figures
from sami.study.findings import pct
from sami.study.page_data import CURVES, OUTCOMES, adherence_items, gsm8k_items, mtbench_items, training_curves

TEMPLATES = Path(__file__).parent / "templates"
_INLINE = re.compile(r"(`[^`]+`|\*\*[^*]+\*\*|\*[^*\s][^*]*\*)")
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")


@dataclass
class Study:
    """One part of the page: a study of a run (``mtbench``, ``math``) or the suites of one evaluation folder.
    ``evals``: suite -> its ``EvalConfig``; ``metrics``: suite -> its metrics (``sami.eval.run.compute``);
    ``trains``: method -> its ``TrainConfig``."""

    name: str
    evals: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    trains: dict = field(default_factory=dict)


def data_uri(data: bytes, name: str) -> str:
    """``data`` inlined as a URI, its type read from the suffix of ``name``."""
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def inline(text: str) -> list[tuple[str, str]]:
    """A line of the report as ``(kind, text)`` segments: ``code``, ``bold``, ``em`` or ``text``."""
    out = []
    for part in _INLINE.split(text):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(("code", part[1:-1]))
        elif part.startswith("**") and part.endswith("**") and len(part) > 3:
            out.append(("bold", part[2:-2]))
        elif part.startswith("*") and part.endswith("*") and len(part) > 2:
            out.append(("em", part[1:-1]))
        elif part:
            out.append(("text", part))
    return out


def _cells(line: str) -> list[list[tuple[str, str]]]:
    return [inline(c.strip()) for c in line.strip().strip("|").split("|")]


def report_blocks(markdown: str, images: Mapping[str, str] | None) -> list[dict]:
    """The report's Markdown (as ``render_report`` renders it: headings, paragraphs, ``- `` lists, pipe tables and
    figure lines) as blocks for the template; a figure line shows ``images``' data URI of what it links to, and
    is left out where there is none."""
    blocks: list[dict] = []
    for line in markdown.splitlines():
        stripped = line.strip()
        last = blocks[-1] if blocks else {}
        if not stripped:
            blocks.append({"kind": "break"})
        elif stripped.startswith("#"):
            level = len(stripped) - len(stripped.lstrip("#"))
            blocks.append({"kind": "heading", "level": min(level + 1, 6), "text": stripped[level:].strip()})
        elif stripped.startswith("|"):
            if re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", stripped):
                continue  # the separator under a table's header
            if last.get("kind") == "table":
                last["rows"].append(_cells(stripped))
            else:
                blocks.append({"kind": "table", "header": _cells(stripped), "rows": []})
        elif stripped.startswith("- "):
            if last.get("kind") == "list":
                last["items"].append(inline(stripped[2:]))
            else:
                blocks.append({"kind": "list", "items": [inline(stripped[2:])]})
        elif (image := _IMAGE.match(stripped)) is not None:
            if image["src"] in (images or {}):
                blocks.append({"kind": "figure", "alt": image["alt"], "src": images[image["src"]]})
        elif last.get("kind") == "paragraph":
            last["lines"].append(inline(stripped))
        else:
            blocks.append({"kind": "paragraph", "lines": [inline(stripped)]})
    return [b for b in blocks if b["kind"] != "break"]


def scoreboard(metrics: dict) -> list[dict]:
    """Every pairwise judge's numbers per pairing, from the suite's metrics (``MTBenchMetrics.to_dict``), for the
    browser's table."""
    rows = []
    for judge, by_pair in MTBenchMetrics.from_dict(metrics).pairwise.items():
        for pair, block in by_pair.items():
            o = block.overall
            rows.append(
                {
                    "judge": judge,
                    "pair": pair,
                    "source": block.verdict_source,
                    "n": o.n,
                    **{k: getattr(o, k) for k in OUTCOMES},
                    "hard": pct(o.hard_win_rate),
                    "soft": pct(o.soft_win_rate),
                }
            )
    return rows


def _curve_figures(trains: dict, study: str) -> list[dict]:
    out = []
    for key, series in training_curves(trains).items():
        svg = figures.image(figures.step_curves(series, title=f"{study}: {CURVES[key]}", ylabel=CURVES[key]), "svg")
        out.append({"key": key, "title": CURVES[key], "src": data_uri(svg, "curve.svg")})
    return out


def study_context(study: Study) -> dict:
    """Everything one study shows: its MT-Bench browser, adherence, GSM8K attempts and training curves."""
    out: dict = {"name": study.name, "mtbench": None, "adherence": None, "gsm8k": None, "curves": None}
    if "mtbench" in study.evals and "mtbench" in study.metrics:
        out["mtbench"] = mtbench_items(study.evals["mtbench"], study.metrics["mtbench"])
        out["mtbench"]["scoreboard"] = scoreboard(study.metrics["mtbench"])
    if "adherence" in study.evals:
        out["adherence"] = adherence_items(study.evals["adherence"])
    if "gsm8k" in study.evals:
        out["gsm8k"] = gsm8k_items(study.evals["gsm8k"])
    if study.trains:
        out["curves"] = _curve_figures(study.trains, study.name)
    return out


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def write_page(
    path: Path,
    *,
    title: str,
    studies: list[Study],
    report_md: str | None = None,
    images: Mapping[str, str] | None = None,
    source: str = "",
) -> Path:
    """Render the page into ``path``. ``images``: the data URI of each figure ``report_md`` links to."""
    context = {
        "title": title,
        "source": source,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "report": report_blocks(report_md, images) if report_md else [],
        "studies": [study_context(s) for s in studies],
        "outcomes": OUTCOMES,
    }
    html = environment().get_template("index.html.j2").render(**context)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a file of its own for each writer: `sami view` may write a run's page while its report stage does
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as f:
        f.write(html)
    try:
        os.chmod(f.name, 0o644)  # as a page written in place would be, not the private mode of a temporary file
        Path(f.name).replace(path)
    finally:
        Path(f.name).unlink(missing_ok=True)
    return path


def run_studies(parts: dict, summary: dict) -> list[Study]:
    """A run's studies as the page shows them: the eval configs and trained methods of ``plan_experiment``'s
    parts, with the metrics ``build_summary`` recomputed."""
    return [
        Study(name, evals=part["evals"], metrics=summary[name]["eval"], trains=part["trains"])
        for name, part in parts.items()
        if name in summary
    ]


def write_run_page(
    cfg, parts: dict, summary: dict, report_md: str, images: Mapping[str, str], report_dir: Path
) -> Path:
    """The page of a run, beside its report (``report_dir``); ``images`` as ``write_page`` takes them."""
    return write_page(
        report_dir / PAGE,
        title=f"Run: {cfg.name}",
        studies=run_studies(parts, summary),
        report_md=report_md,
        images=images,
        source=str(cfg.output_dir),
    )
