"""The study report: ``report.md``, ``summary.json``, ``figures/*.png`` and the page ``index.html``
(``sami.study.page``) from the stored evaluation files.

Every number is recomputed here from the per-item files (``sami.eval.run.compute``), never carried over
from the run that generated them, and written into ``summary.json``; ``report.md`` and the figures are drawn
from that summary only. The paper's reported numbers stand beside ours, labelled as such.

Rendering writes nothing: ``render_report`` turns a summary into ``Section``s, each its heading, its Markdown
lines and the figures they show as data (``sami.study.figures.Figure``, named from ``sami.core.layout``).
``write_report`` is the one place the report's files are written and its figures drawn.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sami.core.config import config_hash, to_dict
from sami.core.layout import (
    ADHERENCE_FIGURE,
    FIGURES,
    METRICS,
    MI_FIGURE,
    PASS_AT_K_FIGURE,
    REPORT,
    SUMMARY,
    judge_figure,
)
from sami.study import figures
from sami.study.figures import Figure
from sami.study.findings import CONSTITUTION_NOTES, findings, num, pct
from sami.study.page import data_uri, write_run_page
from sami.train.config import NOT_USED, compare_configs
from sami.train.registry import METHODS
from sami.train.runfolder import package_versions, read_metrics

# Numbers as the multi-task paper reports them (docs/PAPER_INDEX.md); shown for comparison only.
PAPER_MTBENCH = {
    "principle-aware": {"sami vs dpo": 0.575, "sami vs sft": 0.5815, "dpo vs sft": 0.565},
    "principle-free": "all three models within 49-51% of each other",
}
PAPER_MATH = {
    "gain over base, points (1 / 10 / 32 attempts)": {
        "sami": "+1.1 / +3.9 / +1.2",
        "sft": "+3.2 / +10.1 / +5.0",
        "sft+sami vs sft": "0 / +1.3 / 0",
    },
    "absolute accuracy ranges": "about 34-40% (1 attempt), 60-80% (10), 84-90% (32); Mistral-7B, GSM8K train split",
}


VERDICT_NOTES = {
    "probability": "Verdicts are read from the judge's probabilities of the letters A, B and C after the prompt (no "
    "generation; a local judge always gives one); both orders are judged. Hard: the most probable letter in each "
    "order, an item won only when both orders agree (else a tie). Soft: the probability of preferring the first "
    "model, averaged over the two orders, ties counted half.",
    "checker": "The checker judge uses no model: the answer that passes more of the shown principles' checkers "
    "wins (each principle checked on the side it was shown), equal counts tie. Soft equals hard here. Where every "
    "question is asked under the same positive constitution, a model that always writes that way (what SFT on the "
    "positive responses teaches) passes as many checkers as one that follows whatever constitution it is given; "
    "constitutions of their own per question, and the adherence contrast below, tell the two apart.",
    "text": "Verdicts are parsed from the judge's generated text; both orders are judged.",
}


STYLE_NOTE = (
    "Length-controlled: a logistic fit of the outcome on the log length ratio of the two answers, read at equal "
    "length. Style-controlled: the same with the differences in list items, headers and bold spans per word added, "
    "read at equal length and equal markdown density. A principle about format (a bulleted list) is itself style, "
    "so style control removes what such a principle asks for: read it as what remains beyond format."
)


def _training(trains: dict) -> dict:
    """Per method: steps done and the first and last logged loss, from metrics.jsonl."""
    out = {"methods": {}, "config_differences": {}}
    resolved = {}
    for method, cfg in trains.items():
        folder = Path(cfg.output_dir)
        metrics = read_metrics(folder / METRICS)
        losses = [m["loss"] for m in metrics if "loss" in m]
        out["methods"][method] = {
            "steps": metrics[-1]["step"] if metrics else 0,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "init_from": cfg.init_from,
            # steps whose gradient norm was exactly 0: nothing was learned (sami.train.runfolder.SaturationWatch)
            "saturated_steps": sum(1 for m in metrics if m.get("grad_norm") == 0.0),
        }
        for key in ("mi_bound", "diag_logprob"):  # SAMI's: the bound and the fluency beside it
            logged = [m[key] for m in metrics if key in m]
            if logged:
                out["methods"][method][f"first_{key}"], out["methods"][method][f"last_{key}"] = logged[0], logged[-1]
        resolved[method] = to_dict(cfg)
    out["config_differences"] = compare_configs(resolved)
    return out


def _data(part: dict) -> dict:
    """How a study's training data were made, and how many records there are."""
    gen = part["generate"]
    counts = {}
    for split in ("train", "heldout"):
        path = Path(gen.output).with_name(f"{split}.jsonl")
        if path.is_file():
            counts[split] = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    principles = gen.constitutions.principles
    return {
        "teacher_mode": gen.teacher_mode,
        "teacher": gen.teacher.model,
        "principles": principles,
        "strategy": gen.constitutions.strategy,
        "records": counts,
    }


def build_summary(cfg, parts: dict) -> dict:
    """Everything the report shows, recomputed from the stored files."""
    from sami.eval.run import compute

    summary: dict = {
        "name": cfg.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_hash": config_hash(cfg),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "versions": package_versions(("sami-align", "torch", "transformers", "trl", "peft", "accelerate")),
        "judge": to_dict(cfg.judge),
        "paper": {"mtbench": PAPER_MTBENCH, "math": PAPER_MATH},
    }
    for study, part in parts.items():
        block = {"training": _training(part["trains"]), "eval": {}, "data": _data(part)}
        for suite, ev in part["evals"].items():
            block["eval"][suite] = compute(suite, ev)
        summary[study] = block
    return summary


SELF_EVIDENT = ("method", "output_dir", "init_from")  # differ between any two trained methods


@dataclass(frozen=True)
class Section:
    """One section of the report: its heading (``level`` 1 to 3 ``#``), the Markdown lines under it, and the
    figures those lines show (each a ``Figure``: data, drawn only when the report is written)."""

    title: str
    lines: list[str]
    figures: list[Figure] = field(default_factory=list)
    level: int = 3

    def markdown(self) -> list[str]:
        return ["#" * self.level + " " + self.title, "", *self.lines]


@dataclass(frozen=True)
class Report:
    """The report as rendered from a summary: its sections in order. ``text`` is ``report.md``; ``figures`` are
    the files its figure lines name, under ``FIGURES``."""

    sections: list[Section]

    @property
    def text(self) -> str:
        return "\n".join(line for section in self.sections for line in section.markdown()) + "\n"

    @property
    def figures(self) -> list[Figure]:
        return [figure for section in self.sections for figure in section.figures]

    def images(self, folder: Path | None = None) -> dict[str, str]:
        """Each figure's link (``link``) -> its image as a data URI, drawn once; with ``folder``, each is also saved
        there with its values (the report stage), else drawn in memory only to be inlined (``sami view``)."""
        return {link(f): data_uri(f.save(folder) if folder else f.image(), f.name) for f in self.figures}


def link(figure: Figure) -> str:
    """Where the report's text finds a figure: its file under ``FIGURES``, beside ``report.md``."""
    return f"{FIGURES}/{figure.name}"


def _shown(alt: str, figure: Figure) -> list[str]:
    """The lines that show ``figure`` in the text."""
    return ["", f"![{alt}]({link(figure)})", ""]


def label(method: str) -> str:
    """How a method is named in headings: its registered label (``SimPO``), else its name in capitals."""
    entry = METHODS.get(method)
    return entry.title if entry is not None else method.upper()


def _mtbench_sections(s: dict) -> list[Section]:
    """Experiment 1: the answers, one section per judge, the MI bound, adherence and training."""
    m = s["eval"]["mtbench"]
    methods = list(s["training"]["methods"])
    shown = ["sami"] + [x for x in methods if x not in ("sami", "sft")] + ["sft"]  # as judged: SAMI first, SFT last
    lines = []
    for name, a in m["answers"].items():
        lines.append(
            f"- {name}: {a['count']} answers, mean {num(a['mean_words'], 1)} words, "
            f"{a['cut_by_length']} cut by the token limit, degenerate {pct(a.get('degenerate'))}"
        )
    lines.append("")
    title = f"Experiment 1: {' vs '.join(label(x) for x in shown if x in methods)} on MT-Bench"
    sections = [Section(title, lines, level=2)]
    sections += [_judge_section(m, judge, by_pair) for judge, by_pair in m["pairwise"].items()]
    if "mi" in s["eval"]:
        sections.append(_mi_section(s["eval"]["mi"]))
    if "adherence" in s["eval"]:
        sections.append(_adherence_section(s["eval"]["adherence"]))
    return sections + [_training_section(s["training"])]


def _judge_section(m: dict, judge: str, by_pair: dict) -> Section:
    """One pairwise judge's win rates per pairing and category, its diagnostics and its figure."""
    source = next(iter(by_pair.values()), {}).get("verdict_source", "text")
    lines = [f"Answers and verdicts: {CONSTITUTION_NOTES.get(m.get('constitutions', 'positive'), '')}.", ""]
    header = "| pairing | n | win / tie / loss | unparseable | hard win rate (95%) | soft win rate (95%) |"
    lines += [header + " length-controlled (95%) | style-controlled (95%) | paper |", "|---" * 9 + "|"]
    for pair, block in by_pair.items():
        o = block["overall"]
        paper = PAPER_MTBENCH.get(judge, {})
        ref = f"{100 * paper[pair]:.1f}%" if isinstance(paper, dict) and pair in paper else "-"
        lines.append(
            f"| {pair} | {o['n']} | {o['win']} / {o['tie']} / {o['loss']} | {o['unparseable']} | "
            f"{pct(o['hard_win_rate'])} | {pct(o.get('soft_win_rate'))} | "
            f"{pct(o['length_controlled_win_rate'])} | {pct(o.get('style_controlled_win_rate'))} | {ref} |"
        )
    lines += ["", VERDICT_NOTES.get(source, ""), "", STYLE_NOTE]
    lines += _flips_table(by_pair)
    lines += _judge_table(m, judge)
    bad = sum(b["overall"]["unparseable"] for b in by_pair.values())
    total = sum(b["overall"]["n"] for b in by_pair.values())
    if bad:
        lines.append(
            f"\n{bad} of {total} judged items had a verdict that could not be parsed in at least one order; they "
            "are counted here and left out of the rates (the raw judge text is in the stored judgments)."
        )
    if judge == "principle-free":
        lines.append(f"\nPaper, principle-free judge: {PAPER_MTBENCH['principle-free']}.")
    categories = sorted({c for b in by_pair.values() for c in b["per_category"]})
    lines += ["", "| category | " + " | ".join(by_pair) + " |", "|---|" + "---|" * len(by_pair)]
    for c in categories:
        cells = []
        for block in by_pair.values():
            pc = block["per_category"].get(c)
            cells.append(f"{pct(pc['hard_win_rate'])} (n={pc['n']})" if pc else "-")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    rates = {
        pair: {
            **{c: {**b["hard_win_rate"]} for c, b in block["per_category"].items()},
            "overall": block["overall"]["hard_win_rate"],
        }
        for pair, block in by_pair.items()
    }
    figure = Figure(judge_figure(judge), figures.winrate_bars, rates, {"title": f"MT-Bench, {judge} judge"})
    lines += _shown(f"{judge} win rates", figure)
    return Section(f"Judge: {judge} ({source} verdicts)", lines, [figure])


def _mi_section(mi: dict) -> Section:
    lines = [
        "| checkpoint | MI bound, nats (95%) | column accuracy | row accuracy | diagonal log-prob per token "
        "| change from base |",
        "|---|---|---|---|---|---|",
    ]
    for name, block in mi.items():
        o = block["overall"]
        lines.append(
            f"| {name} | {num(o['mi_bound'])} | {pct(o['col_accuracy'])} | {pct(o['row_accuracy'])} "
            f"| {num(o.get('diag_logprob'))} | {num(o.get('diag_logprob_change'))} |"
        )
    lines += [
        "",
        "The MI bound is at most log C. The diagonal log-prob is the mean per-token log-probability of "
        "each held-out teacher response under its own constitution: InfoNCE can raise the bound by making "
        "every response unlikely, so a bound that rises while this falls is not alignment.",
    ]
    figure = Figure(
        MI_FIGURE,
        figures.estimate_bars,
        {n: b["overall"]["mi_bound"] for n, b in mi.items()},
        {"title": "MI lower bound, held-out records", "ylabel": "nats"},
    )
    lines += _shown("MI bound", figure)
    return Section("Mutual-information bound on held-out records, and fluency beside it", lines, [figure])


def _adherence_section(ad: dict) -> Section:
    principles = sorted({p for m in ad.values() for p in m["principles"]})
    lines = [
        "Contrast = checker pass rate under the principle minus under its antithesis (95% interval); "
        "in brackets the pass rates under each. Degenerate: answers that are empty, run-on tokens or "
        "loops (docs/EVALUATION.md).",
        "",
    ]
    lines += [
        "| checkpoint | " + " | ".join(principles) + " | degenerate |",
        "|---|" + "---|" * (len(principles) + 1),
    ]
    for name, m in ad.items():
        cells = []
        for p in principles:
            b = m["principles"].get(p)
            if b is None:
                cells.append("-")
                continue
            under = f"{pct(b['checker_pass_under_principle'])} / {pct(b['checker_pass_under_antithesis'])}"
            cells.append(f"{num(b['contrast'], 2)} ({under})")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {pct(m.get('degenerate'))} |")
    contrasts = {
        name: {p: m["principles"][p]["contrast"] for p in principles if p in m["principles"]} for name, m in ad.items()
    }
    figure = Figure(
        ADHERENCE_FIGURE,
        figures.winrate_bars,
        contrasts,
        {
            "title": "Principle adherence",
            "reference": 0.0,
            "xlim": (-1, 1),
            "xlabel": "checker pass rate under the principle minus under its antithesis, 95% interval",
        },
    )
    lines += _shown("adherence contrast", figure)
    return Section("Principle adherence (judge-free checkers)", lines, [figure])


def _flips_table(by_pair: dict) -> list[str]:
    """Hard win rates by how many principles of the question's constitution were flipped."""
    counts = sorted({k for b in by_pair.values() for k in b.get("per_flipped", {})}, key=int)
    if len(counts) < 2:  # one constitution for every question: nothing to split
        return []
    lines = [
        "",
        "Hard win rate by how many principles of the question's constitution were flipped to their antithesis:",
        "",
        "| principles flipped | " + " | ".join(by_pair) + " |",
        "|---|" + "---|" * len(by_pair),
    ]
    for k in counts:
        cells = []
        for block in by_pair.values():
            b = block.get("per_flipped", {}).get(k)
            cells.append(f"{pct(b['hard_win_rate'])} (n={b['n']})" if b else "-")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return lines


def _judge_table(m: dict, judge: str) -> list[str]:
    """The judge's order agreement and position preference, and the Bradley-Terry ranking when there is one."""
    lines = []
    d = m.get("judge_diagnostics", {}).get(judge)
    if d:
        lines += [
            "",
            f"The judge's two orders of an item agree in {pct(d['order_agreement'])} of items; of its "
            f"verdicts that pick an answer, {pct(d['first_position'])} pick the one shown first (50% is no "
            f"position preference); {pct(d['ties'])} of its verdicts are ties.",
        ]
    fit = m.get("ranking", {}).get(judge)
    if fit:
        lines += [
            "",
            f"Bradley-Terry ranking over every judged item of every pairing (bootstrap over questions; "
            f"strength in logits over {fit['origin']}):",
            "",
            f"| rank | model | strength (95%) | expected win rate against {fit['origin']} (95%) |",
            "|---|---|---|---|",
        ]
        for name, r in sorted(fit["models"].items(), key=lambda kv: kv[1]["rank"]):
            lines.append(f"| {r['rank']} | {name} | {num(r['strength'], 2)} | {pct(r['win_rate_vs_origin'])} |")
    return lines


def _training_section(t: dict) -> Section:
    lines = [
        "| method | starts from | steps | first loss | last loss | MI bound, first -> last "
        "| diagonal log-prob, first -> last |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, m in t["methods"].items():
        fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
        mi = f"{fmt(m['first_mi_bound'])} -> {fmt(m['last_mi_bound'])}" if "last_mi_bound" in m else "-"
        diag = f"{fmt(m['first_diag_logprob'])} -> {fmt(m['last_diag_logprob'])}" if "last_diag_logprob" in m else "-"
        lines.append(
            f"| {method} | {m['init_from'] or 'base'} | {m['steps']} | {fmt(m['first_loss'])} | "
            f"{fmt(m['last_loss'])} | {mi} | {diag} |"
        )
    for method, m in t["methods"].items():
        if m.get("saturated_steps"):
            lines += [
                "",
                f"**{method} saturated:** {m['saturated_steps']} of its {m['steps']} steps had a gradient "
                "norm of exactly 0, so those steps changed nothing (the learning rate was too high, or the "
                "data give no signal).",
            ]
    # a setting shows where the methods that use it differ, with those methods' values only; each run's method,
    # folder and starting point differ by construction (the table above names them)
    differ = {}
    for key, values in t["config_differences"].items():
        used = {m: v for m, v in values.items() if v != NOT_USED}
        if key not in SELF_EVIDENT and len({json.dumps(v, default=str) for v in used.values()}) > 1:
            differ[key] = used
    lines += [
        "",
        "Every setting that differs between the methods that use it (each method's whole resolved config is "
        "`<study>/models/<method>/config.yaml`):",
        "",
    ]
    lines += [f"- `{key}`: " + ", ".join(f"{m} = {v}" for m, v in used.items()) for key, used in differ.items()]
    lines += ["- none", ""] if not differ else [""]
    return Section("Training", lines)


def _math_sections(s: dict) -> list[Section]:
    """Experiment 2: pass@k and maj@k per variant, the paper's gains beside them, and training."""
    g = s["eval"]["gsm8k"]
    ks = sorted({int(k) for m in g.values() for k in m.get("pass_at_k", {})})
    shown = [k for k in ks if k in (1, 2, 4, 8, 10, 16, 32) or k == ks[-1]] if ks else []
    header = "| variant | problems | greedy accuracy | " + " | ".join(f"pass@{k}" for k in shown)
    header += " | " + " | ".join(f"maj@{k}" for k in shown[-1:]) + " |"
    lines = [header, "|---|---|---|" + "---|" * (len(shown) + len(shown[-1:]))]
    for name, m in g.items():
        cells = [pct(m.get("pass_at_k", {}).get(str(k))) for k in shown]
        cells += [pct(m.get("maj_at_k", {}).get(str(k))) for k in shown[-1:]]
        lines.append(f"| {name} | {m['problems']} | {pct(m['greedy_accuracy'])} | " + " | ".join(cells) + " |")
    drawn = []
    if ks:
        curves = {name: {int(k): e for k, e in m["pass_at_k"].items()} for name, m in g.items() if "pass_at_k" in m}
        drawn = [Figure(PASS_AT_K_FIGURE, figures.attempts_curves, curves, {"title": "pass@k over attempts"})]
        lines += _shown("pass@k", drawn[0])
    lines += ["Paper (Mistral-7B, GSM8K train split), for comparison:", ""]
    for key, value in PAPER_MATH["gain over base, points (1 / 10 / 32 attempts)"].items():
        lines.append(f"- {key}: {value} accuracy points")
    lines += [f"- {PAPER_MATH['absolute accuracy ranges']}", ""]
    section = Section("Experiment 2: math accuracy with one and many attempts", lines, drawn, level=2)
    return [section, _training_section(s["training"])]


def _cell(value) -> str:
    """One number of a plugin suite's table: an estimate with its interval, a plain number, or the value as is."""
    if isinstance(value, dict) and {"value", "low", "high"} <= set(value):
        return num(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plugin_section(suite: str, metrics) -> Section:
    """The report's section of a suite a plugin added: the lines its entry's ``report`` gives, else a table of
    its numbers per model (``{model: number}`` or ``{model: {name: number or estimate}}``), else its metrics as
    JSON."""
    from sami.eval.run import SUITES

    entry = SUITES.get(suite)
    title = suite + (f": {entry.help}" if entry is not None and entry.help else "")
    if entry is not None and entry.report is not None:
        return Section(title, list(entry.report(metrics)) + [""])
    rows = metrics if isinstance(metrics, dict) and metrics else None
    if rows is not None and all(not isinstance(v, dict) for v in rows.values()):
        rows = {model: {"value": value} for model, value in rows.items()}
    if rows is not None and all(isinstance(v, dict) for v in rows.values()):
        columns = list(dict.fromkeys(k for values in rows.values() for k in values))
        lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        for model, values in rows.items():
            lines.append(f"| {model} | " + " | ".join(_cell(values.get(c, "")) for c in columns) + " |")
        return Section(title, lines + [""])
    return Section(title, ["```json", json.dumps(metrics, indent=2, default=str), "```", ""])


def _plugin_sections(block: dict) -> list[Section]:
    from sami.eval.run import is_built_in

    return [plugin_section(suite, metrics) for suite, metrics in block["eval"].items() if not is_built_in(suite)]


def _opening(summary: dict) -> list[Section]:
    """The title with what made the run, and "What this run shows" when the numbers show anything."""
    lines = [
        f"Created {summary['created']}, config hash `{summary['config_hash']}`, "
        + ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if v)
        + ".",
        "",
        f"Judge: `{summary['judge']['kind']}` `{summary['judge']['model']}`. Intervals are 95% (Wilson for rates, "
        "bootstrap for means; docs/EVALUATION.md). Numbers labelled *paper* are the multi-task SAMI paper's "
        "reported results at 7-8B scale, for comparison; a small model on a small sample is not expected to "
        "match them, and the intervals say how much a difference can be trusted.",
        "",
    ]
    sections = [Section(f"Report: {summary['name']}", lines, level=1)]
    shows = findings(summary)
    if shows:
        lines = [
            "Generated from the numbers below; two estimates are called different "
            "only when their 95% intervals do not overlap.",
            "",
        ]
        lines += [f"- {sentence}" for sentence in shows] + [""]
        sections.append(Section("What this run shows", lines, level=2))
    return sections


def render_report(summary: dict) -> Report:
    """The report of ``summary``: its text and the figures the text shows, as data. Nothing is written or drawn."""
    sections = _opening(summary)
    if "mtbench" in summary:
        sections += _mtbench_sections(summary["mtbench"]) + _plugin_sections(summary["mtbench"])
    if "math" in summary:
        sections += _math_sections(summary["math"]) + _plugin_sections(summary["math"])
    return Report(sections)


def write_report(cfg, parts: dict, folder: Path) -> Path:
    """The report stage: ``summary.json``, the figures, ``report.md`` and the page, in ``folder``. The one place
    the report is written."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = build_summary(cfg, parts)
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
    report = render_report(summary)
    images = report.images(folder / FIGURES)
    path = folder / REPORT
    path.write_text(report.text)
    write_run_page(cfg, parts, summary, report.text, images, folder)  # the page beside the report: index.html
    return path
