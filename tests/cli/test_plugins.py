"""Plugins: a user's module, written here into tmp_path, adds a checker and principles, a judge, a backend and a
suite, and what it computes reaches the stored results; entry-point plugins; the registries' own checks."""

import json
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

import sami.plugins as plugins
from sami.backends.base import BACKENDS, register_backend
from sami.cli import main
from sami.data.checkers import CHECKERS
from sami.data.principles import PLUGIN_LIBRARIES
from sami.eval.judges import JUDGES, Judge, JudgeItem, register_judge
from sami.eval.mtbench_data import Question
from sami.eval.run import SUITES, Suite, register_suite
from sami.eval.store import read_jsonl


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for plugin modules; every registry is restored afterwards."""
    saved = [dict(r) for r in (CHECKERS, JUDGES, SUITES, BACKENDS)]
    libraries, loaded = dict(PLUGIN_LIBRARIES), set(plugins._loaded)
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for registry, before in zip((CHECKERS, JUDGES, SUITES, BACKENDS), saved, strict=True):
        registry.clear()
        registry.update(before)
    PLUGIN_LIBRARIES.clear()
    PLUGIN_LIBRARIES.update(libraries)
    plugins._loaded.clear()
    plugins._loaded.update(loaded)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(folder)):
            del sys.modules[name]


def write_plugin(folder: Path, name: str, source: str) -> str:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return name


ASKING = """\
    verifiable:
      - name: asks_back
        strong: End your answer with a question to the user.
        weak: Try to end your answer with a question to the user.
        antithesis: Never ask the user a question.
        checker: {name: ends_with_question}
        antithesis_checker: {name: exclude_keyword, keyword: "?"}
"""

CHECKER_PLUGIN = """\
    from pathlib import Path

    from sami.data.checkers import register_checker
    from sami.data.principles import register_library


    @register_checker("ends_with_question")
    def ends_with_question(text):
        return text.rstrip().endswith("?")


    register_library(Path(__file__).with_name("asking.yaml"))
"""


def test_a_plugin_checker_and_principle_reach_the_adherence_results(plugin_dir, tmp_path, tiny_model_dir, capsys):
    from sami.eval.config import AdherenceConfig, EvalConfig
    from sami.eval.run import compute

    (plugin_dir / "asking.yaml").write_text(textwrap.dedent(ASKING))
    module = write_plugin(plugin_dir, "asking_plugin", CHECKER_PLUGIN)
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"query": f"Tell me about topic {k}."}) + "\n" for k in range(3)))
    out = tmp_path / "eval"
    args = ["eval", "adherence", f"tiny={tiny_model_dir}", "--queries", str(queries), "--output-dir", str(out)]
    args += ["-o", "adherence.principles=[asks_back]", "-o", "adherence.max_new_tokens=3"]
    assert main(args) == 2  # without the plugin the principle does not exist
    assert "asks_back" in capsys.readouterr().err
    assert main(["--plugin", module, *args]) == 0
    path = out / "adherence/answers/tiny.jsonl"
    rows = read_jsonl(path)
    assert len(rows) == 6 and "Try to end your answer with a question" in rows[0]["prompt"]
    # Known answers: under the principle 2 of 3 end with a question; under the antithesis 1 of 3 asks one.
    text = {
        ("principle", 0): "Why not?",
        ("principle", 1): "Is it?",
        ("principle", 2): "No.",
        ("antithesis", 0): "Fine.",
        ("antithesis", 1): "Sure?",
        ("antithesis", 2): "OK.",
    }
    for r in rows:
        r["answer"] = text[(r["side"], r["query_index"])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = EvalConfig(output_dir=str(out), models=[f"tiny={tiny_model_dir}"])
    cfg.adherence = AdherenceConfig(queries=str(queries), principles=["asks_back"])
    m = compute("adherence", cfg)["tiny"]["principles"]["asks_back"]
    assert m["checker"] == {"name": "ends_with_question"}
    assert m["checker_pass_under_principle"]["value"] == pytest.approx(2 / 3)
    assert m["checker_pass_under_antithesis"]["value"] == pytest.approx(1 / 3)
    assert m["contrast"]["value"] == pytest.approx((1 + 0 + 0) / 3)  # paired: (1-0), (1-1), (0-0)
    assert m["antithesis_checker_pass_under_antithesis"]["value"] == pytest.approx(2 / 3)
    assert main([*args, "--recompute", "--plugin", module]) == 0
    assert "asks_back" in capsys.readouterr().out


JUDGE_PLUGIN = """\
    from sami.eval.judges import Judge, register_judge


    def prompt(item):
        q, a, b = item.question.turns[0], item.answers_a[0], item.answers_b[0]
        name = "shorter-v1" + ("-with-reference" if item.question.reference else "")
        return name, [{"role": "user", "content": f"{q}\\nA: {a}\\nB: {b}\\nWhich answer is shorter?"}]


    def parse(text):
        return "A" if len(text) % 2 == 0 else "B"


    register_judge(Judge("shorter", turns="first", prompt=prompt, parse=parse, help="the shorter answer"))
    register_judge(Judge("shorter-ref", turns="first", reference=True, prompt=prompt, parse=parse))
"""


def _by_hand(rows: list[dict], x: str, y: str) -> Counter:
    """Win/tie/loss of x from both orders' verdicts, without the package's combination code."""
    by_question: dict = {}
    for r in rows:
        by_question.setdefault(r["question_id"], {})[r["first"]] = r["verdict"]
    counts = Counter()
    for v in by_question.values():
        x_first = {"A": 1, "B": -1, "tie": 0}[v[x]]  # +1: x preferred
        y_first = {"A": -1, "B": 1, "tie": 0}[v[y]]
        counts["win" if x_first == y_first == 1 else "loss" if x_first == y_first == -1 else "tie"] += 1
    return counts


def test_a_plugin_judge_judges_mtbench_and_its_verdicts_reach_the_metrics(
    plugin_dir, tmp_path, tiny_model_dir, lively_model, tokenizer, capsys
):
    module = write_plugin(plugin_dir, "shorter_judge", JUDGE_PLUGIN)
    judge_dir = tmp_path / "judge"  # varied text, so that the verdicts vary
    lively_model.save_pretrained(judge_dir)
    tokenizer.save_pretrained(judge_dir)
    out = tmp_path / "eval"
    args = ["eval", "mtbench", f"a={tiny_model_dir}", f"b={judge_dir}", "--judges", "shorter,shorter-ref"]
    args += ["--verdict", "text", "--judge", str(judge_dir), "--per-category", "2", "--output-dir", str(out)]
    args += ["-o", "mtbench.categories=[writing,math]", "-o", "mtbench.max_new_tokens=4"]
    args += ["-o", "mtbench.judge_max_new_tokens=9"]
    assert main(args) == 2 and "mtbench.judges" in capsys.readouterr().err  # unknown without the plugin
    assert main(["--plugin", module, *args]) == 0
    printed = capsys.readouterr().out
    rows = read_jsonl(out / "mtbench/judgments/shorter/a__b.jsonl")
    assert len(rows) == 4 * 2 and {r["prompt_name"] for r in rows} == {"shorter-v1"}  # never shown a reference
    with_reference = read_jsonl(out / "mtbench/judgments/shorter-ref/a__b.jsonl")  # math questions have one
    assert {(r["category"], r["prompt_name"]) for r in with_reference} == {
        ("math", "shorter-v1-with-reference"),
        ("writing", "shorter-v1"),
    }
    assert all(r["verdict"] == ("A" if len(r["raw"]) % 2 == 0 else "B") for r in rows)  # the plugin's parser
    metrics = json.loads((out / "mtbench/metrics.json").read_text())
    o = metrics["pairwise"]["shorter"]["a vs b"]["overall"]
    expected = _by_hand(rows, "a", "b")
    assert (o["win"], o["tie"], o["loss"], o["unparseable"]) == (expected["win"], expected["tie"], expected["loss"], 0)
    assert "[shorter] a vs b" in printed


BACKEND_PLUGIN = """\
    from sami.backends.base import Completion, register_backend


    class Canned:
        \"\"\"Answers every prompt with '#### <prompt length mod 10>'.\"\"\"

        def __init__(self, cfg):
            self.cfg = cfg

        def describe(self):
            return {"kind": "canned", "model": self.cfg.model}

        def generate_iter(self, prompts, params, *, desc=None, progress=True):
            for i, prompt in enumerate(prompts):
                yield i, [Completion(f"#### {len(prompt) % 10}", "stop", 2) for _ in range(params.n)]

        def generate(self, prompts, params, *, desc=None, progress=True):
            return [c for _, c in sorted(self.generate_iter(prompts, params))]


    register_backend("canned", help="fixed answers")(Canned)
"""


def test_a_plugin_backend_answers_gsm8k_and_is_a_cli_choice(plugin_dir, tmp_path, capsys):
    from sami.cli import build_parser
    from sami.eval.gsm8k_data import gsm8k_prompt, load_problems

    module = write_plugin(plugin_dir, "canned_backend", BACKEND_PLUGIN)
    out = tmp_path / "eval"
    args = ["eval", "gsm8k", "m=not-a-model", "--limit", "4", "--samples", "0", "--output-dir", str(out)]
    args += ["-o", "backend.kind=canned"]
    assert main(args) == 2 and "kind must be one of" in capsys.readouterr().err
    assert main(["--plugin", module, *args]) == 0
    rows = read_jsonl(out / "gsm8k/attempts/m.jsonl")
    problems, _ = load_problems("gsm_symbolic", split="test", limit=4, seed=0)
    prompt = {p.id: gsm8k_prompt("paper-cot-v1", p.question) for p in problems}
    assert {r["id"]: r["texts"] for r in rows} == {i: [f"#### {len(p) % 10}"] for i, p in prompt.items()}
    accuracy = json.loads((out / "gsm8k/metrics.json").read_text())["m"]["greedy_accuracy"]["value"]
    assert accuracy == pytest.approx(sum(len(prompt[r["id"]]) % 10 == r["gold"] for r in rows) / 4)
    assert build_parser().parse_args(["generate", "--backend", "canned"]).backend == "canned"


SUITE_PLUGIN = """\
    import json
    from dataclasses import dataclass, field
    from pathlib import Path

    from sami.eval.run import Option, Suite, register_suite, settings


    @dataclass
    class LettersConfig:
        texts: list[str] = field(default_factory=lambda: ["ab"])
        scale: int = 1


    def run(cfg):
        s = settings(cfg, "letters")
        metrics = {name: s.scale * sum(len(t) for t in s.texts) for name, _ in cfg.checkpoints()}
        (Path(cfg.output_dir) / "letters" / "metrics.json").write_text(json.dumps(metrics))
        return metrics


    def recompute(cfg):
        return json.loads((Path(cfg.output_dir) / "letters" / "metrics.json").read_text())


    def show(metrics):
        for name, value in metrics.items():
            print(f"{name}: {value} letters")


    register_suite(Suite("letters", run, recompute, show, LettersConfig, "letters in the texts, scaled",
                         (Option("--scale", "sections.letters.scale", "multiplier", int),)))
"""


def test_a_plugin_suite_runs_from_the_cli_with_its_own_options_and_section(plugin_dir, tmp_path, capsys):
    module = write_plugin(plugin_dir, "letters_suite", SUITE_PLUGIN)
    out = tmp_path / "eval"
    args = ["eval", "letters", "m=x", "--scale", "3", "--output-dir", str(out), "-o", "sections.letters.texts=[ab,cde]"]
    with pytest.raises(SystemExit):  # not a suite without the plugin: argparse refuses the choice
        main(args)
    capsys.readouterr()
    assert main(["--plugin", module, *args]) == 0
    assert capsys.readouterr().out == "m: 15 letters\n"  # 3 x (2 + 3)
    assert json.loads((out / "letters/metrics.json").read_text()) == {"m": 15}
    assert main(["--plugin", module, *args[:-2], "-o", "sections.letters.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "sections.letters" in err and "bogus" in err
    assert main(["--plugin", module, *args[:-2], "-o", "sections.mtbench.limit=1"]) == 2
    assert "not a suite added by a plugin" in capsys.readouterr().err


def test_a_plugin_that_fails_to_import_is_one_error_line_naming_it(plugin_dir, capsys):
    write_plugin(plugin_dir, "broken_plugin", "raise RuntimeError('boom')\n")
    assert main(["--plugin", "broken_plugin", "principles"]) == 2
    err = capsys.readouterr().err
    assert err == "sami: error: plugin 'broken_plugin' failed to import (RuntimeError: boom)\n"
    assert main(["principles", "--plugin", "no_such_plugin_module"]) == 2  # anywhere on the line
    assert "plugin 'no_such_plugin_module' failed to import (ModuleNotFoundError" in capsys.readouterr().err


def test_experiment_config_loads_its_plugins_before_the_rest(plugin_dir, tmp_path):
    from sami.study.experiment import load_experiment_config

    module = write_plugin(plugin_dir, "shorter_judge_2", JUDGE_PLUGIN)
    path = tmp_path / "experiment.yaml"
    body = "mtbench:\n  mtbench:\n    judges: [shorter]\n"
    path.write_text(body)
    with pytest.raises(ValueError, match="mtbench.judges"):
        load_experiment_config(path)
    path.write_text(f"plugins: [{module}]\n" + body)
    cfg = load_experiment_config(path)
    assert cfg.plugins == [module] and cfg.mtbench.mtbench.judges == ["shorter"]


ENTRY_POINT_PLUGIN = """\
    from pathlib import Path


    def setup():
        from sami.data.checkers import register_checker
        from sami.data.principles import register_library

        register_checker("shouting")(lambda text: text.isupper())
        register_library(Path(__file__).with_name("shout.yaml"))
"""

SHOUT = """\
    verifiable:
      - name: shout
        strong: Answer in capital letters.
        antithesis: Never use capital letters.
        checker: {name: shouting}
"""


def test_an_installed_entry_point_plugin_loads_without_being_named(plugin_dir, monkeypatch, capsys):
    import importlib

    monkeypatch.setattr(plugins, "_entry_points_loaded", False)  # as in a fresh process
    assert main(["principles"]) == 0
    assert "shout" not in capsys.readouterr().out  # not installed: not there

    # a distribution as pip would install it, on sys.path: a module and its dist-info
    (plugin_dir / "shout_plugin.py").write_text(textwrap.dedent(ENTRY_POINT_PLUGIN))
    (plugin_dir / "shout.yaml").write_text(textwrap.dedent(SHOUT))
    info = plugin_dir / "shout_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sami.plugins]\nshout = shout_plugin:setup\n")
    importlib.invalidate_caches()
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    assert main(["principles"]) == 0
    assert "shout: Answer in capital letters.  (checker shouting {})" in capsys.readouterr().out


def test_registries_refuse_malformed_and_repeated_entries(plugin_dir):
    with pytest.raises(ValueError, match="either prompt and parse"):
        Judge("half", prompt=lambda item: ("x", []))  # a model judge needs a parser
    with pytest.raises(ValueError, match="either prompt and parse"):
        Judge("both", prompt=lambda item: ("x", []), parse=str, decide=lambda item: {})
    with pytest.raises(ValueError, match="turns"):
        Judge("late", turns="second", decide=lambda item: {})
    with pytest.raises(ValueError, match="judge name"):
        Judge("Two Words", decide=lambda item: {})  # a judge's name names its judgments folder
    with pytest.raises(ValueError, match="already registered"):
        register_judge(Judge("checker", decide=lambda item: {}))
    with pytest.raises(ValueError, match="already registered"):
        register_backend("openai")(object)
    with pytest.raises(ValueError, match="already registered"):
        register_suite(SUITES["mi"])
    with pytest.raises(ValueError, match="config dataclass"):
        register_suite(Suite("odd", dict, dict, print, dict, "no section"))


def test_every_suite_option_sets_a_real_config_key():
    """A built-in suite's options point at fields that exist (a misspelt key would be refused at run time); a
    renamed one only names its new flag."""
    import dataclasses
    import typing

    from sami.eval.config import EvalConfig

    options = [option for suite in SUITES.values() for option in suite.options]
    keys = [key for option in options if not option.renamed_to for key, _ in option.settings("x")]
    assert [o.renamed_to for o in options if o.renamed_to] == ["--against"]
    assert "mtbench.per_category" in keys and "judge.kind" in keys and "gsm8k.limit" in keys
    for key in keys:
        node = EvalConfig
        for part in key.split("."):
            assert dataclasses.is_dataclass(node) and part in typing.get_type_hints(node), key
            node = typing.get_type_hints(node)[part]


def test_the_documented_plugin_example_loads_and_registers(plugin_dir):
    from sami.data.principles import load_library
    from tests.helpers import ROOT

    text = (ROOT / "docs" / "EVALUATION.md").read_text()
    (plugin_dir / "documented_plugin.py").write_text(text.split("# my_module.py\n", 1)[1].split("```", 1)[0])
    (plugin_dir / "asking.yaml").write_text(text.split("# asking.yaml\n", 1)[1].split("```", 1)[0])
    plugins.load_plugins(["documented_plugin"])
    assert CHECKERS["ends_with_question"]("Really?") and not CHECKERS["ends_with_question"]("Really.")
    assert load_library().get("asks_back").checker.name == "ends_with_question"
    name, messages = JUDGES["shorter"].prompt(
        JudgeItem(Question(1, "writing", ("Why?",)), 1, ["long answer"], ["short"], list, dict)
    )
    assert name == "shorter-v1" and "A: long answer" in messages[0]["content"]
    assert JUDGES["shorter"].parse("so [[B]]") == "B"


def test_a_plugin_that_calls_sys_exit_is_one_error_line_naming_it(plugin_dir, capsys):
    write_plugin(plugin_dir, "exiting_plugin", "import sys\nsys.exit(3)\n")
    assert main(["--plugin", "exiting_plugin", "principles"]) == 2
    assert capsys.readouterr().err == "sami: error: plugin 'exiting_plugin' called sys.exit(3) while importing\n"


def test_view_of_a_plugin_suite_s_results_without_the_plugin_says_to_load_it(plugin_dir, tmp_path, capsys):
    """Results of a suite a plugin adds, viewed without that plugin (as a later ``sami view`` would): one line
    saying which folder holds them and to load the plugin, instead of "neither a run folder nor ..."."""
    module = write_plugin(plugin_dir, "letters_suite", SUITE_PLUGIN)
    out = tmp_path / "eval"
    assert main(["--plugin", module, "eval", "letters", "m=x", "--output-dir", str(out)]) == 0
    without = {k: v for k, v in SUITES.items() if k != "letters"}  # the next command, which loads no plugin
    SUITES.clear()
    SUITES.update(without)
    capsys.readouterr()
    for target in (out, out / "letters"):
        assert main(["view", str(target)]) == 2
        err = capsys.readouterr().err
        assert f"{target}: letters hold(s) results of a suite no loaded plugin adds" in err and "--plugin" in err
        assert not (target / "report").exists()
