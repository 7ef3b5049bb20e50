"""The report is rendered as data and written in one place: ``render_report`` turns a summary into sections of
text and figures described as data, writing and drawing nothing; ``write_report`` writes ``report.md`` and draws
each figure into the report folder, under the names ``sami.core.layout`` gives.

``tests/files/report/`` holds ``report.md`` and the figures' drawn values (``figures/*.json``) as the report
stage wrote them for ``summary()`` before rendering was separated from writing; the report must still be those
bytes."""

import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest

from sami.core.layout import (
    ADHERENCE_FIGURE,
    FIGURES,
    MI_FIGURE,
    PAGE,
    PASS_AT_K_FIGURE,
    REPORT,
    SUMMARY,
    judge_figure,
)
from sami.study import report as report_module
from sami.study.figures import Figure, winrate_bars
from sami.study.page import data_uri
from sami.study.report import Section, plugin_section, render_report, write_report
from tests.helpers import FILES

WRITTEN_BEFORE = FILES / "report"


def est(value, low, high, n=8):
    return {"value": value, "low": low, "high": high, "n": n}


def pairing(win, tie, loss, rate, flipped=True):
    overall = {
        "win": win,
        "tie": tie,
        "loss": loss,
        "unparseable": 1,
        "n": win + tie + loss + 1,
        "hard_win_rate": rate,
        "soft_win_rate": est(0.55, 0.5, 0.6),
        "length_controlled_win_rate": est(0.6, 0.3, 0.8),
        "style_controlled_win_rate": est(0.58, 0.3, 0.8),
    }
    block = {
        "overall": overall,
        "per_category": {"math": {**overall, "n": 4}, "writing": {**overall, "n": 4}},
        "verdict_source": "probability",
    }
    if flipped:
        block["per_flipped"] = {"0": {**overall, "n": 5}, "1": {**overall, "n": 3}}
    return block


def training(methods: dict) -> dict:
    out = {}
    for method, init in methods.items():
        out[method] = {"steps": 4, "first_loss": 2.5, "last_loss": 1.25, "init_from": init, "saturated_steps": 0}
    if "sami" in out:
        out["sami"].update(first_mi_bound=0.1, last_mi_bound=0.4, first_diag_logprob=-3.0, last_diag_logprob=-2.9)
    if "dpo" in out:
        out["dpo"]["saturated_steps"] = 2
    return {
        "methods": out,
        "config_differences": {
            "optim.lr": {m: 0.0005 if m == "dpo" else 0.001 for m in out},
            "dpo.beta": {m: 0.1 if m == "dpo" else "(not used)" for m in out},
            "method": {m: m for m in out},
        },
    }


def summary() -> dict:
    """Both studies with every table and figure the report draws, and one plugin suite in each."""
    answers = {"count": 8, "mean_words": est(40.0, 30.0, 50.0), "cut_by_length": 1, "degenerate": est(0.0, 0.0, 0.3)}
    principles = {
        "lowercase": {
            "contrast": est(0.5, 0.25, 0.75),
            "checker_pass_under_principle": est(0.75, 0.4, 0.9),
            "checker_pass_under_antithesis": est(0.25, 0.1, 0.6),
        },
        "bullet_list": {
            "contrast": est(-0.125, -0.375, 0.0),
            "checker_pass_under_principle": est(0.25, 0.1, 0.6),
            "checker_pass_under_antithesis": est(0.375, 0.1, 0.7),
        },
    }
    mi = {"overall": {"mi_bound": est(0.3, 0.2, 0.4), "col_accuracy": est(0.5, 0.3, 0.7)}}
    mi["overall"].update(row_accuracy=est(0.5, 0.3, 0.7), diag_logprob=est(-3.0, -3.2, -2.8))
    strength = {"strength": est(0.0, 0.0, 0.0), "win_rate_vs_origin": est(0.5, 0.5, 0.5)}
    mtbench = {
        "answers": {m: answers for m in ("sami", "dpo", "sft")},
        "pairwise": {
            "principle-aware": {
                "sami vs dpo": pairing(5, 2, 1, est(0.75, 0.45, 0.9)),
                "sami vs sft": pairing(3, 2, 3, est(0.5, 0.25, 0.75)),
            },
            "principle-free": {"sami vs sft": pairing(2, 2, 4, est(0.375, 0.15, 0.65), flipped=False)},
        },
        "constitutions": "sampled",
        "judge_diagnostics": {
            "principle-aware": {"order_agreement": est(0.8, 0.5, 0.9), "first_position": est(0.5, 0.3, 0.7)}
        },
        "ranking": {"principle-aware": {"origin": "sft", "models": {"sami": {**strength, "rank": 1}}}},
    }
    mtbench["judge_diagnostics"]["principle-aware"]["ties"] = est(0.25, 0.1, 0.5)
    gsm8k = {
        name: {
            "problems": 4,
            "greedy_accuracy": est(acc, 0.1, 0.9, 4),
            "pass_at_k": {str(k): est(min(acc * k, 1.0), 0.1, 1.0, 4) for k in (1, 2, 4)},
            "maj_at_k": {"4": est(acc, 0.1, 0.9, 4)},
        }
        for name, acc in (("base", 0.25), ("sami", 0.5))
    }
    return {
        "name": "tiny",
        "created": "2026-01-02T03:04:05+00:00",
        "config_hash": "0123456789abcdef",
        "versions": {"sami-align": "0.1.0", "torch": "2.0", "peft": None},
        "judge": {"kind": "transformers", "model": "judge-model"},
        "mtbench": {
            "training": training({"sft": None, "sami": "sft", "dpo": "sft"}),
            "data": {"teacher_mode": "rewrite"},
            "eval": {
                "mtbench": mtbench,
                "mi": {"base": mi, "sami": {"overall": {**mi["overall"], "diag_logprob_change": est(0.1, 0, 0.2)}}},
                "adherence": {"base": {"principles": principles, "degenerate": est(0.0, 0.0, 0.3)}},
                "words": {"base": 12.5, "sami": 10.0},
            },
        },
        "math": {
            "training": training({"sft": None, "sami": None}),
            "data": {"teacher_mode": "rewrite"},
            "eval": {"gsm8k": gsm8k, "notes": ["not a table"]},
        },
    }


FIGURE_NAMES = [
    judge_figure("principle-aware"),
    judge_figure("principle-free"),
    MI_FIGURE,
    ADHERENCE_FIGURE,
    PASS_AT_K_FIGURE,
]


def test_rendering_writes_and_draws_nothing(tmp_path, monkeypatch):
    """Rendered from the working folder of an empty folder: no file appears and no figure is drawn; the figures
    come back as data, named from the layout."""
    monkeypatch.chdir(tmp_path)
    plt.close("all")
    report = render_report(summary())
    assert list(tmp_path.iterdir()) == [] and plt.get_fignums() == []
    assert [f.name for f in report.figures] == FIGURE_NAMES
    assert report.text == "\n".join(line for s in report.sections for line in s.markdown()) + "\n"
    assert render_report(summary()) == report  # the same summary renders the same sections, as values


def test_a_written_report_is_the_rendered_one_byte_for_byte(tmp_path, monkeypatch):
    """``write_report`` writes the rendered text as it was written before (``tests/files/report``), draws each
    figure as its file with the values the figure showed then beside it, and the page inlines those same
    images."""
    monkeypatch.setattr(report_module, "build_summary", lambda cfg, parts: summary())
    folder = tmp_path / "report"
    path = write_report(SimpleNamespace(name="tiny", output_dir=str(tmp_path)), {}, folder)
    assert path == folder / REPORT
    assert path.read_text() == (WRITTEN_BEFORE / REPORT).read_text() == render_report(summary()).text
    assert json.loads((folder / SUMMARY).read_text()) == summary()
    written = sorted(p.name for p in (folder / FIGURES).iterdir())
    assert written == sorted([*FIGURE_NAMES, *(n.replace(".png", ".json") for n in FIGURE_NAMES)])
    for name in FIGURE_NAMES:
        drawn = (folder / FIGURES / name).with_suffix(".json")
        assert json.loads(drawn.read_text()) == json.loads((WRITTEN_BEFORE / FIGURES / drawn.name).read_text()), name
    page = (folder / PAGE).read_text()
    for figure in render_report(summary()).figures:
        image = (folder / FIGURES / figure.name).read_bytes()
        assert image[:8] == b"\x89PNG\r\n\x1a\n" and image == figure.image(), figure.name
        assert data_uri(image, figure.name) in page, figure.name


def test_each_judge_is_a_section_with_its_figure():
    sections = render_report(summary()).sections
    judge = next(s for s in sections if s.title == "Judge: principle-free (probability verdicts)")
    assert judge.level == 3 and [f.name for f in judge.figures] == [judge_figure("principle-free")]
    assert judge.lines[-3:] == ["", f"![principle-free win rates]({FIGURES}/{judge_figure('principle-free')})", ""]
    (figure,) = judge.figures
    pair = summary()["mtbench"]["eval"]["mtbench"]["pairwise"]["principle-free"]["sami vs sft"]
    rate = pair["overall"]["hard_win_rate"]
    drawn = {"sami vs sft": {"math": rate, "writing": rate, "overall": rate}}
    assert figure == Figure(
        judge_figure("principle-free"), winrate_bars, drawn, {"title": "MT-Bench, principle-free judge"}
    )
    assert [(s.level, s.title) for s in sections] == [
        (1, "Report: tiny"),
        (2, "What this run shows"),
        (2, "Experiment 1: SAMI vs DPO vs SFT on MT-Bench"),
        (3, "Judge: principle-aware (probability verdicts)"),
        (3, "Judge: principle-free (probability verdicts)"),
        (3, "Mutual-information bound on held-out records, and fluency beside it"),
        (3, "Principle adherence (judge-free checkers)"),
        (3, "Training"),
        (3, "words"),
        (2, "Experiment 2: math accuracy with one and many attempts"),
        (3, "Training"),
        (3, "notes"),
    ]


@pytest.mark.parametrize(
    "metrics, lines",
    [
        ({"base": 12.5, "sami": 10.0}, ["| model | value |", "|---|---|", "| base | 12.5 |", "| sami | 10 |", ""]),
        (
            {"base": {"rate": {"value": 0.5, "low": 0.25, "high": 0.75}, "note": "x"}},
            ["| model | rate | note |", "|---|---|---|", "| base | 0.500 [0.250, 0.750] | x |", ""],
        ),
        (["not a table"], ["```json", '[\n  "not a table"\n]', "```", ""]),
    ],
)
def test_a_plugin_suite_is_a_section_like_any_other(metrics, lines):
    assert plugin_section("words", metrics) == Section("words", lines)
