"""The whole study on tiny random models: every stage, resumption, reruns of changed stages, and a report
whose numbers equal those recomputed from the stored per-item files."""

import json
import math
import shutil
from pathlib import Path

import pytest

from sami.core.config import ConfigError
from sami.study.experiment import load_experiment_config, plan_experiment, run_experiment
from sami.study.stages import read_marker
from tests.helpers import save_tiny_model
from tests.smoke import write_config


@pytest.fixture(scope="module")
def student(tmp_path_factory, tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("student"), tokenizer, init_std=0.2)


def tiny_config(tmp_path, student, overrides=()):
    return load_experiment_config(write_config(tmp_path, student), list(overrides))


STAGES = [
    "mtbench/data",
    "mtbench/sft",
    "mtbench/sami",
    "mtbench/dpo",
    "mtbench/eval-mtbench",
    "mtbench/eval-mi",
    "mtbench/eval-adherence",
    "math/data",
    "math/sft",
    "math/sami",
    "math/sft+sami",
    "math/eval-gsm8k",
    "report",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, student):
    tmp = tmp_path_factory.mktemp("experiment")
    cfg = tiny_config(tmp, student)
    outcomes = run_experiment(cfg)
    return tmp, cfg, outcomes


def test_every_stage_runs_and_the_report_is_complete(finished):
    tmp, cfg, outcomes = finished
    assert [o.name for o in outcomes] == STAGES and {o.status for o in outcomes} == {"ran"}
    report = Path(cfg.output_dir) / "report"
    text = (report / "report.md").read_text()
    figures = ("mtbench_principle-aware.png", "mtbench_checker.png", "math_pass_at_k.png", "mi_bound.png")
    for figure in (*figures, "mtbench_principle-free.png", "adherence_contrast.png"):
        assert (report / "figures" / figure).stat().st_size > 1000
        assert f"figures/{figure}" in text
    summary = json.loads((report / "summary.json").read_text())
    pairs = summary["mtbench"]["eval"]["mtbench"]["pairwise"]["principle-aware"]
    assert list(pairs) == ["sami vs dpo", "sami vs sft", "dpo vs sft"]
    assert sorted(summary["math"]["eval"]["gsm8k"]) == ["base", "sami", "sft", "sft+sami"]
    assert "57.5%" in text  # the paper's number stands beside ours
    # the positive control: rewrite teacher, C = 4 over two principles, checker and probability judges, anchor
    assert summary["mtbench"]["data"]["teacher_mode"] == "rewrite"
    assert "## What this run shows" in text and "positive control" in text
    assert list(summary["mtbench"]["eval"]["mtbench"]["pairwise"]) == ["principle-aware", "principle-free", "checker"]
    for judge, by_pair in summary["mtbench"]["eval"]["mtbench"]["pairwise"].items():
        assert all(b["overall"]["unparseable"] == 0 for b in by_pair.values()), judge  # no verdict is lost
    # the headline comparison under per-question constitutions opens the findings, per judge; every judge of
    # three models gets a ranking and diagnostics, and the report shows them
    mt = summary["mtbench"]["eval"]["mtbench"]
    shows = text.split("## What this run shows")[1].split("\n## ")[0]
    judge_lines = [line for line in shows.splitlines() if line.startswith("- Judge `") and "its own" in line]
    assert [line.split("`")[1] for line in judge_lines] == ["principle-aware", "principle-free", "checker"]
    assert all("constitution of its own" in line and "sami vs dpo" in line for line in judge_lines)
    assert shows.index("- Judge `") < shows.index("Held-out MI bound")  # before the MI and adherence findings
    assert sorted(mt["ranking"]) == sorted(mt["judge_diagnostics"]) == ["checker", "principle-aware", "principle-free"]
    assert sorted(mt["ranking"]["checker"]["models"]) == ["dpo", "sami", "sft"]
    assert text.count("Bradley-Terry ranking over every judged item") == 3 and "style-controlled" in text
    answers = [json.loads(line) for line in (Path(cfg.output_dir) / "mtbench/eval/mtbench/answers/sami.jsonl").open()]
    assert all(len(a["constitution"]["principles"]) == 2 for a in answers)
    sami_metrics = [json.loads(line) for line in (Path(cfg.output_dir) / "mtbench/models/sami/metrics.jsonl").open()]
    # anchored: step 1's loss exceeds its plain SAMI part (the mean of row and column losses) by 0.2 x the NLL
    m = sami_metrics[0]
    assert m["loss"] == pytest.approx((m["row_loss"] + m["col_loss"]) / 2 - 0.2 * m["diag_logprob"], abs=1e-5)
    records = [json.loads(line) for line in (Path(cfg.output_dir) / "mtbench/data/train.jsonl").open()]
    assert records and all(len(r["responses"]) == 4 for r in records)
    # the DPO override is the one training difference the report must show
    diffs = summary["mtbench"]["training"]["config_differences"]
    assert diffs["optim.lr"] == {"sft": 1e-3, "sami": 1e-3, "dpo": 5e-4}
    assert "`optim.lr`" in text


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def test_report_numbers_equal_those_recomputed_by_hand_from_stored_files(finished):
    """The summary's numbers recomputed here from the per-item files, with the rules written out rather than
    through the evaluation's metric code: MT-Bench outcomes and soft win rate from each stored verdict, the MI
    bound from each stored matrix, checker pass rates from each stored answer, GSM8K rates from each text."""
    from sami.data.principles import load_library
    from sami.eval.degenerate import passes
    from sami.eval.gsm8k_data import extract_answer

    _, cfg, _ = finished
    root = Path(cfg.output_dir)
    summary = json.loads((root / "report" / "summary.json").read_text())
    mean = lambda values: sum(values) / len(values)  # noqa: E731

    # MT-Bench, principle-aware judge, sami vs dpo. Per question one verdict with sami shown first and one with
    # dpo first: sami wins when both orders prefer it, loses when both prefer dpo, and ties otherwise.
    stored = _rows(root / "mtbench/eval/mtbench/judgments/principle-aware/dpo__sami.jsonl")
    by_order = {(r["question_id"], r["first"]): r for r in stored}
    outcomes, soft = [], []
    for q in sorted({q for q, _ in by_order}):
        sami_first, dpo_first = by_order[(q, "sami")], by_order[(q, "dpo")]
        a = {"A": "win", "B": "loss"}.get(sami_first["verdict"], "tie")
        b = {"A": "loss", "B": "win"}.get(dpo_first["verdict"], "tie")
        outcomes.append(a if a == b else "tie")
        pa, pb = sami_first["probs"], dpo_first["probs"]  # P(A), P(B), P(tie)
        soft.append((pa[0] + pb[1]) / 2 + (pa[2] + pb[2]) / 4)
    block = summary["mtbench"]["eval"]["mtbench"]["pairwise"]["principle-aware"]["sami vs dpo"]["overall"]
    assert len(outcomes) == 2 and block["unparseable"] == 0
    assert [block[k] for k in ("win", "tie", "loss")] == [outcomes.count(k) for k in ("win", "tie", "loss")]
    won = mean([{"win": 1.0, "tie": 0.5, "loss": 0.0}[o] for o in outcomes])
    assert block["hard_win_rate"]["value"] == pytest.approx(won, abs=1e-12)
    assert block["soft_win_rate"]["value"] == pytest.approx(mean(soft), abs=1e-9)

    # MI: per record, log C minus the mean over columns of -log softmax over constitutions of the own entry
    for name in ("base", "sft", "sami", "dpo"):
        bounds = []
        for row in _rows(root / f"mtbench/eval/mi/{name}.jsonl"):
            m, c = row["matrix"], len(row["matrix"])
            columns = [math.log(sum(math.exp(m[i][j]) for i in range(c))) - m[j][j] for j in range(c)]
            bounds.append(math.log(c) - mean(columns))
        assert summary["mtbench"]["eval"]["mi"][name]["overall"]["mi_bound"]["value"] == pytest.approx(
            mean(bounds), abs=1e-6
        )

    # Adherence: the share of answers given under each principle that pass its checker
    library = load_library()
    for name in ("base", "sami"):
        answers = _rows(root / f"mtbench/eval/adherence/answers/{name}.jsonl")
        for principle in ("lowercase", "bullet_list"):
            under = [a["answer"] for a in answers if a["principle"] == principle and a["side"] == "principle"]
            rate = mean([passes(library.get(principle).checker, text) for text in under])
            got = summary["mtbench"]["eval"]["adherence"][name]["principles"][principle]
            assert got["checker_pass_under_principle"]["value"] == pytest.approx(rate, abs=1e-12)

    # GSM8K: greedy accuracy and the share of sampled texts with no extractable answer
    for name, got in summary["math"]["eval"]["gsm8k"].items():
        attempts = _rows(root / f"math/eval/gsm8k/attempts/{name}.jsonl")
        greedy = [r for r in attempts if r["kind"] == "greedy"]
        sampled = [t for r in attempts if r["kind"] == "sampled" for t in r["texts"]]
        assert got["problems"] == len(greedy) == 2 and len(sampled) == 4
        right = [extract_answer(r["texts"][0], got["extract"]) == r["gold"] for r in greedy]
        assert got["greedy_accuracy"]["value"] == pytest.approx(mean(right), abs=1e-12)
        unextracted = [extract_answer(t, got["extract"]) is None for t in sampled]
        assert got["sample_unextracted"]["value"] == pytest.approx(mean(unextracted), abs=1e-12)


def test_chains_start_from_the_sft_model(finished):
    tmp, cfg, _ = finished
    root = Path(cfg.output_dir)
    for study, method in [("mtbench", "sami"), ("mtbench", "dpo"), ("math", "sft+sami")]:
        prov = json.loads((root / study / "models" / method / "model" / "provenance.json").read_text())
        assert prov["model"]["init_from"] == str(root / study / "models" / "sft" / "model")
    prov = json.loads((root / "math" / "models" / "sami" / "model" / "provenance.json").read_text())
    assert prov["model"]["init_from"] is None


def test_a_rerun_does_nothing_and_a_changed_setting_reruns_its_readers_only(finished, student):
    tmp, cfg, _ = finished
    again = run_experiment(cfg)
    assert {o.status for o in again} == {"skipped"}
    changed = tiny_config(tmp, student, ["math.gsm8k.samples=3"])
    outcomes = {o.name: o.status for o in run_experiment(changed)}
    assert outcomes.pop("math/eval-gsm8k") == "reran" and outcomes.pop("report") == "reran"
    assert set(outcomes.values()) == {"skipped"}
    back = {o.name: o.status for o in run_experiment(cfg)}  # and back: those two again, nothing else
    assert [n for n, s in back.items() if s != "skipped"] == ["math/eval-gsm8k", "report"]


def test_newer_rendering_code_rewrites_only_the_report(finished, student, tmp_path, monkeypatch):
    """The report stage's fingerprint holds a hash of the code that reads stored files into the report: a change
    there (in sami.study or sami.eval) reruns the report of a finished run and nothing else; a change elsewhere
    (training code) changes no fingerprint."""
    import sami
    from sami.study import experiment

    tmp, cfg, _ = finished
    copy = tmp_path / "sami"
    shutil.copytree(Path(sami.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sami, "__file__", str(copy / "__init__.py"))
    same = experiment.renderer_digest()
    with open(copy / "train" / "sami_loop.py", "a") as f:
        f.write("\n# training code\n")
    assert experiment.renderer_digest() == same
    with open(copy / "study" / "findings.py", "a") as f:
        f.write("\n# a new finding\n")
    assert experiment.renderer_digest() != same
    outcomes = {o.name: o.status for o in run_experiment(cfg)}
    assert outcomes.pop("report") == "reran" and set(outcomes.values()) == {"skipped"}
    monkeypatch.undo()  # and back to the code that runs: the report once more, for the tests after this one
    assert [o.name for o in run_experiment(cfg) if o.status != "skipped"] == ["report"]


def test_a_sami_only_setting_changes_the_sami_stage_not_sft_or_dpo(tmp_path, student):
    """Stages are fingerprinted on their own settings (readers then follow through ``after``)."""

    def fingerprints(overrides):
        stages, _ = plan_experiment(tiny_config(tmp_path, student, overrides))
        return {s.name: s for s in stages}

    before, after = fingerprints([]), fingerprints(["mtbench.train.sami.nll_weight=0.5"])
    changed = {name for name in before if before[name].config != after[name].config}
    assert changed == {"mtbench/sami"}
    shared = fingerprints(["mtbench.train.optim.weight_decay=0.5"])  # a shared setting changes every trained model
    assert {n for n in before if before[n].config != shared[n].config} >= {"mtbench/sft", "mtbench/sami", "mtbench/dpo"}


def test_an_interrupted_stage_resumes_on_rerun(tmp_path, student):
    """One experiment interrupted in turn at the start of a data, a training and two evaluation stages: each
    rerun skips every stage that had finished, runs the interrupted one to its end, and goes on."""
    from sami.study.stages import run_stages

    cfg = tiny_config(tmp_path, student, ["mtbench.adherence=null"])
    interrupted = ["mtbench/data", "mtbench/dpo", "mtbench/eval-mtbench", "math/eval-gsm8k"]

    class Interrupt(RuntimeError):
        pass

    stages, _ = plan_experiment(cfg)
    started: list[str] = []  # every call of a stage's run, in order

    def interruptible(stage):
        def run(folder, _run=stage.run):
            started.append(stage.name)
            if stage.name in interrupted and started.count(stage.name) == 1:
                raise Interrupt(stage.name)
            return _run(folder)

        return run

    for stage in stages:
        stage.run = interruptible(stage)
    finished = lambda: [s.name for s in stages if read_marker(s.folder)]  # noqa: E731
    previous = None
    for stage in interrupted:
        before, calls = finished(), len(started)
        with pytest.raises(Interrupt, match=stage):
            run_stages(stages)
        assert stage not in finished() and started[-1] == stage
        assert not set(started[calls:]) & set(before)  # what had finished was skipped
        if previous:
            assert started[calls] == previous and previous in finished()  # the interrupted one ran to its end
        previous = stage
    before = finished()
    outcomes = {o.name: o.status for o in run_stages(stages)}
    assert all(outcomes[name] == "skipped" for name in before)
    assert outcomes[previous] == "ran" and previous in finished() and outcomes["report"] == "ran"


def test_cli_lists_stages_and_prints_the_report_path(finished, capsys):
    from sami.cli import main

    tmp, cfg, _ = finished
    path = str(tmp / "experiment.yaml")
    assert main(["experiment", path, "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == STAGES and all(line.split()[1] == "done" for line in listed)
    assert main(["experiment", path]) == 0
    out = capsys.readouterr().out.splitlines()
    # the console ends with the headline findings, the report's path and the page's path
    report = Path(cfg.output_dir) / "report"
    assert out[-2].startswith(f"report: {report / 'report.md'}") and out[-1] == f"page: {report / 'index.html'}"
    assert (report / "index.html").is_file()
    summary = json.loads((report / "summary.json").read_text())
    heads = out[len(STAGES) : -2]
    assert 3 <= len(heads) <= 6 and heads[0].startswith("MT-Bench, principle-aware judge")
    rate = summary["mtbench"]["eval"]["mtbench"]["pairwise"]["principle-aware"]["sami vs dpo"]["overall"]
    assert f"sami vs dpo {100 * rate['hard_win_rate']['value']:.0f}%" in heads[0]
    assert not any("not used" in line for line in out)
    # the setting differences are in the report: where the methods that use a setting differ, and only those
    text = (report / "report.md").read_text()
    settings = text.split("Every setting that differs between the methods that use it")[1].split("\n\n")[1]
    assert settings.splitlines() == ["- `optim.lr`: sft = 0.001, sami = 0.001, dpo = 0.0005"]
    assert "not used" not in text
    assert main(["experiment", path, "--only", "nope"]) == 2
    assert "unknown stage" in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage", ["report.md deleted", "summary.json deleted", "summary.json not JSON", "index.html deleted"]
)
def test_a_finished_report_whose_files_are_lost_is_written_again(finished, capsys, damage):
    """A report stage marked finished whose report.md, summary.json or page is gone (or damaged) is not finished:
    the rerun lists it as missing, writes it again (nothing else runs), and the console ends with its path, exit
    0."""
    from sami.cli import main

    tmp, cfg, _ = finished
    report = Path(cfg.output_dir) / "report"
    name, how = damage.split(" ", 1)
    (report / name).unlink() if how == "deleted" else (report / name).write_text("{")
    path = str(tmp / "experiment.yaml")
    assert main(["experiment", path, "--list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[:2] == ["report", "missing"]
    assert main(["experiment", path]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.splitlines()
    statuses = dict(line.split()[:2] for line in out[: len(STAGES)])
    assert statuses.pop("report") == "ran" and set(statuses.values()) == {"skipped"}
    assert out[-2].startswith(f"report: {report / 'report.md'}") and (report / "report.md").is_file()
    assert isinstance(json.loads((report / "summary.json").read_text()), dict)
    assert "<html" in (report / "index.html").read_text()


def test_view_of_a_run_stopped_before_its_last_evaluation_names_the_finished_ones(finished, tmp_path, capsys):
    """A copy of the run without its math evaluation (stopped there) and report: one line saying the run is not
    finished, with the evaluation folder whose page can be viewed; nothing is written into the run."""
    import shutil

    from sami.cli import main

    _, cfg, _ = finished
    run = tmp_path / "run"
    shutil.copytree(cfg.output_dir, run)
    shutil.rmtree(run / "math" / "eval")
    shutil.rmtree(run / "report")
    assert main(["view", str(run)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"sami: error: {run}: the run is not finished (no stored gsm8k results")
        and len(err.strip().splitlines()) == 1
    ), err
    assert f"sami view {run / 'mtbench' / 'eval'} shows the evaluations it has" in err
    assert not (run / "report").exists()


def test_view_of_a_finished_run_writes_only_its_page_with_the_reports_figures(finished, tmp_path):
    """``sami view`` of a copy of the finished run renders the report again and draws its figures in memory: the
    page holds the very images the report stage drew into ``report/figures``, and nothing but the page is
    written."""
    import shutil

    from sami.cli import main
    from sami.study.page import data_uri

    _, cfg, _ = finished
    run = tmp_path / "run"
    shutil.copytree(cfg.output_dir, run)
    page = run / "report" / "index.html"
    page.unlink()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["view", str(run)]) == 0
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert set(after) == {*before, page} and all(after[p] == b for p, b in before.items())
    images = sorted((run / "report" / "figures").glob("*.png"))
    assert len(images) == 6 and all(data_uri(p.read_bytes(), p.name) in page.read_text() for p in images)


def test_a_study_of_every_method_judges_each_against_sami_and_sft_and_reports_its_rows(tmp_path, student):
    """KTO, ORPO and SimPO beside SFT, SAMI and DPO: each trained from SFT on the same data, judged against both
    (and no pair of two others), with its training row, MI and adherence rows in the report data."""
    methods = ["sft", "sami", "dpo", "kto", "orpo", "simpo"]
    cfg = tiny_config(
        tmp_path,
        student,
        [
            "math.enabled=false",
            "mtbench.mtbench.judges=[checker]",
            f"mtbench.methods={json.dumps(methods)}",
            'mtbench.overrides.kto={"queries_per_device": 2}',
        ],
    )
    outcomes = run_experiment(cfg)
    assert [o.name for o in outcomes][:7] == ["mtbench/data"] + [f"mtbench/{m}" for m in methods]
    root = Path(cfg.output_dir)
    summary = json.loads((root / "report" / "summary.json").read_text())
    block = summary["mtbench"]
    pairs = block["eval"]["mtbench"]["pairwise"]["checker"]
    assert list(pairs) == [
        "sami vs dpo",
        "sami vs kto",
        "sami vs orpo",
        "sami vs simpo",
        "sami vs sft",
        "dpo vs sft",
        "kto vs sft",
        "orpo vs sft",
        "simpo vs sft",
    ]
    assert all(p["overall"]["n"] == 2 for p in pairs.values())  # math and writing, one question each
    training = block["training"]["methods"]
    assert list(training) == methods
    for m in methods:
        logged = [json.loads(line) for line in (root / "mtbench" / "models" / m / "metrics.jsonl").open()]
        assert training[m]["steps"] == 1 and training[m]["first_loss"] == logged[0]["loss"]
        expected_start = None if m == "sft" else str(root / "mtbench" / "models" / "sft" / "model")
        assert training[m]["init_from"] == expected_start
    # KTO's first step from the SFT model, which is its reference: each example's loss is 1 - s(0) = 1/2
    assert training["kto"]["first_loss"] == pytest.approx(0.5, abs=1e-6)
    for suite in ("mi", "adherence"):
        assert list(block["eval"][suite]) == ["base", *methods]
    diffs = block["training"]["config_differences"]
    assert diffs["queries_per_device"] == {m: 2 if m == "kto" else 1 for m in methods}
    assert diffs["simpo.gamma"] == {m: 1.0 if m == "simpo" else "(not used)" for m in methods}
    text = (root / "report" / "report.md").read_text()
    # a setting only one method uses (simpo.gamma) differs from nothing; one every method uses is listed
    assert "- `queries_per_device`: " + ", ".join(f"{m} = {2 if m == 'kto' else 1}" for m in methods) in text
    assert "simpo.gamma" not in text and "not used" not in text
    assert "## Experiment 1: SAMI vs DPO vs KTO vs ORPO vs SimPO vs SFT on MT-Bench" in text
    for m in methods:
        assert f"| {m} | " in text  # its training row
    assert "- `queries_per_device`: sft = 1, sami = 1, dpo = 1, kto = 2, orpo = 1, simpo = 1" in text


def test_study_methods_are_checked_when_the_config_loads(tmp_path, student):
    from sami.core.config import ConfigError

    for bad, message in [
        ('["sami", "dpo"]', r"include \('sami', 'sft'\), which every method is judged against"),
        ('["sft", "sami", "ppo"]', "not training methods"),
        ('["sft", "sami", "sami"]', "once"),
    ]:
        with pytest.raises(ConfigError, match=message):
            tiny_config(tmp_path, student, [f"mtbench.methods={bad}"])


def test_an_experiment_that_loads_a_method_plugin_trains_and_evaluates_it_beside_the_others(
    tmp_path, student, method_plugins
):
    """``plugins: [cpo_method]`` (examples/plugins) makes ``cpo`` a method a study can list: trained from SFT on
    the same data, judged against SAMI and SFT, scored for MI and adherence, and named in the report, with its
    own section's settings among the differences between the methods."""
    methods = ["sft", "sami", "cpo"]
    cfg = tiny_config(
        tmp_path,
        student,
        [
            "plugins=[cpo_method]",
            "math.enabled=false",
            "mtbench.mtbench.judges=[checker]",
            f"mtbench.methods={json.dumps(methods)}",
            'mtbench.overrides={"cpo": {"sections.cpo.beta": 0.5}}',
        ],
    )
    outcomes = run_experiment(cfg)
    assert [o.name for o in outcomes][:4] == ["mtbench/data", "mtbench/sft", "mtbench/sami", "mtbench/cpo"]
    root = Path(cfg.output_dir)
    block = json.loads((root / "report" / "summary.json").read_text())["mtbench"]
    assert list(block["eval"]["mtbench"]["pairwise"]["checker"]) == ["sami vs cpo", "sami vs sft", "cpo vs sft"]
    assert block["training"]["methods"]["cpo"]["init_from"] == str(root / "mtbench" / "models" / "sft" / "model")
    for suite in ("mi", "adherence"):
        assert list(block["eval"][suite]) == ["base", *methods]
    assert block["training"]["config_differences"]["sections.cpo.beta"] == {
        "sft": "(not used)",
        "sami": "(not used)",
        "cpo": 0.5,
    }
    text = (root / "report" / "report.md").read_text()
    assert "## Experiment 1: SAMI vs CPO vs SFT on MT-Bench" in text and "| cpo | " in text


SUITE_PLUGIN = '''
import json
from dataclasses import dataclass
from pathlib import Path

from sami.eval.run import Suite, register_suite, settings


@dataclass
class WordsConfig:
    word: str = "the"


def run(cfg):
    """Per checkpoint: how many characters its name has, and whether it holds the word (a stand-in measure)."""
    word = settings(cfg, "words").word
    metrics = {name: {"letters": len(name), "has_word": word in name} for name, _ in cfg.checkpoints()}
    (Path(cfg.output_dir) / "words" / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def recompute(cfg):
    return json.loads((Path(cfg.output_dir) / "words" / "metrics.json").read_text())


register_suite(Suite("words", run, recompute, print, WordsConfig, "letters of each checkpoint's name"))
'''


def test_a_suite_from_a_plugin_runs_as_a_stage_and_gets_a_report_section(
    tmp_path, student, registries_restored, monkeypatch
):
    """A suite a plugin registers, named in a study's ``suites:``, runs on base and every trained model as
    ``<study>/eval-<suite>``, and the report shows what it returned as a table per model."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "words_suite.py").write_text(SUITE_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    with pytest.raises(ConfigError, match="suites.words: not a suite added by a plugin"):
        tiny_config(tmp_path, student, ["mtbench.enabled=false", "math.suites={words: {word: sa}}"])
    overrides = ["plugins=[words_suite]", "mtbench.enabled=false", "math.suites={words: {word: sa}}"]
    cfg = tiny_config(tmp_path, student, overrides)
    assert cfg.math.suites == {"words": {"word": "sa"}}
    outcomes = run_experiment(cfg)
    assert [o.name for o in outcomes][-2:] == ["math/eval-words", "report"]
    root = Path(cfg.output_dir)
    expected = {m: {"letters": len(m), "has_word": "sa" in m} for m in ("base", "sft", "sami", "sft+sami")}
    assert json.loads((root / "report" / "summary.json").read_text())["math"]["eval"]["words"] == expected
    text = (root / "report" / "report.md").read_text()
    section = text[text.index("### words: letters of each checkpoint's name") :].splitlines()
    table = ["| model | letters | has_word |", "|---|---|---|", "| base | 4 | False |", "| sft | 3 | False |"]
    assert section[2:8] == [*table, "| sami | 4 | True |", "| sft+sami | 8 | True |"]


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "mtbench.mtbench.principles=[lowercase,lowercsae]",
            r"mtbench.mtbench.principles: unknown principle\(s\) \['lowercsae'\]",
        ),
        (
            "mtbench.adherence.principles=[lowercase,caring]",
            r"mtbench.adherence.principles: \['caring'\] have no checker",
        ),
    ],
)
def test_a_misspelt_evaluation_principle_stops_the_study_before_any_stage(
    tmp_path, student, monkeypatch, override, message
):
    import sami.study.experiment
    from sami.core.config import ConfigError

    monkeypatch.setattr(sami.study.experiment, "run_stages", lambda *a, **k: pytest.fail("a stage ran"))
    cfg = tiny_config(tmp_path, student, [override])
    with pytest.raises(ConfigError, match=message):
        run_experiment(cfg)
    assert not Path(cfg.output_dir).exists()
