"""A refused command leaves its output as it found it, and every count and limit is checked (docs/RELIABILITY.md):
each case here was once accepted, or refused only after it had written what refused the corrected rerun."""

import pytest

import sami.eval.common
import sami.eval.mi
from sami.cli import main as cli_main
from tests.helpers import EXAMPLE_DATA


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()  # after any progress bar of what ran before
    assert err and err[-1].startswith("sami: error: ") and sum("sami: error" in line for line in err) == 1, err
    return err[-1]


def _snapshot(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_model(monkeypatch):
    """Any model an evaluation would load is a test failure (and keeps a wrongly accepted run short)."""

    def fail(*args, **kwargs):
        pytest.fail("a model was loaded")

    monkeypatch.setattr(sami.eval.common, "make_backend", fail)
    monkeypatch.setattr(sami.eval.mi, "make_backend", fail)
    monkeypatch.setattr(sami.eval.mi, "load_inference_model", fail)


@pytest.mark.parametrize(
    "suite, args, setting",
    [
        ("mtbench", ["-o", "mtbench.max_new_tokens=0"], "mtbench.max_new_tokens"),
        ("mtbench", ["-o", "mtbench.judge_max_new_tokens=-2"], "mtbench.judge_max_new_tokens"),
        ("mtbench", ["-o", "mtbench.principles=[lowercase,no_such_principle]"], "mtbench.principles"),
        ("mtbench", ["-o", "mtbench.categories=[]"], "mtbench.categories"),
        ("mtbench", ["-o", "mtbench.versus=[]"], "mtbench.versus"),
        ("mtbench", ["--against", "nobody"], "mtbench.against"),
        ("mtbench", ["-o", "mtbench.judge_prompts=no-such-prompts.jsonl"], "mtbench.judge_prompts"),
        ("adherence", ["-o", "adherence.max_new_tokens=0"], "adherence.max_new_tokens"),
        ("adherence", ["--limit", "0"], "adherence.limit"),
        ("adherence", ["--limit", "-1"], "adherence.limit"),
        ("adherence", ["-o", "adherence.principles=[]"], "adherence.principles"),
        ("mi", ["--limit", "0", "--data", str(EXAMPLE_DATA)], "mi.limit"),
        ("mi", ["--limit", "-1", "--data", str(EXAMPLE_DATA)], "mi.limit"),
        ("mi", ["-o", "mi.max_response_tokens=0", "--data", str(EXAMPLE_DATA)], "mi.max_response_tokens"),
        ("gsm8k", ["--limit", "0"], "gsm8k.limit"),
        ("gsm8k", ["-o", "gsm8k.max_new_tokens=0"], "gsm8k.max_new_tokens"),
        ("gsm8k", ["-o", "gsm8k.top_p=0"], "gsm8k.top_p"),
    ],
)
def test_a_refused_eval_setting_is_named_and_writes_nothing(
    tmp_path, tiny_model_dir, capsys, no_model, suite, args, setting
):
    out = tmp_path / "eval"
    assert cli_main(["eval", suite, f"a={tiny_model_dir}", "--output-dir", str(out), *args]) == 2
    assert setting in _one_error_line(capsys)
    assert not out.exists()


def test_the_checker_judge_refuses_a_principle_it_cannot_check(tmp_path, tiny_model_dir, capsys, no_model):
    out = tmp_path / "eval"
    args = [
        "eval",
        "mtbench",
        f"a={tiny_model_dir}",
        f"b={tiny_model_dir}",
        "--output-dir",
        str(out),
        "--judges",
        "checker",
        "--per-category",
        "1",
        "-o",
        "mtbench.categories=[writing]",
    ]
    assert cli_main([*args, "-o", "mtbench.principles=[lowercase,caring]"]) == 2
    line = _one_error_line(capsys)
    assert "checker judge cannot check ['caring (principle)']" in line and "mtbench.principles" in line
    assert not out.exists()  # refused after the config was written: put back as it was, so no folder


def test_an_eval_refused_after_it_began_leaves_its_folder_as_it_found_it(tmp_path, tiny_model_dir, capsys):
    """A finished run, then one refused for other settings (found only once the suite has read its data): the
    folder, config.yaml included, is byte for byte what the finished run left."""
    out = tmp_path / "eval"
    args = ["eval", "mi", f"a={tiny_model_dir}", "--data", str(EXAMPLE_DATA), "--output-dir", str(out)]
    assert cli_main([*args, "--limit", "2"]) == 0
    before = _snapshot(out)
    assert cli_main([*args, "--limit", "2", "-o", "mi.shuffle_principles=false"]) == 2
    assert "other settings (shuffle_principles: stored True, now False)" in _one_error_line(capsys)
    assert _snapshot(out) == before
    assert cli_main([*args, "--limit", "2"]) == 0  # the same settings still resume


@pytest.mark.parametrize(
    "override, setting",
    [
        ("sampling.max_new_tokens=0", "sampling.max_new_tokens"),
        ("sampling.temperature=-1", "sampling.temperature"),
        ("sampling.top_p=1.5", "sampling.top_p"),
        ("constitutions.principles=[lowercase,no_such_principle]", "constitutions.principles"),
        ("constitutions.principles=[]", "constitutions.principles"),
        ("constitutions.num=1", "constitutions.num"),
        ("queries_per_chunk=0", "queries_per_chunk"),
        ("queries_per_chunk=-1", "queries_per_chunk"),
        ("pool.max_chars=0", "pool.max_chars"),
        ("constitutions.num=9", "constitutions"),  # more than flip_all gives: found when drawing, before writing
    ],
)
def test_a_refused_generate_setting_is_named_and_leaves_no_config_behind(
    tmp_path, pool_file, tiny_model_dir, capsys, monkeypatch, override, setting
):
    import sami.generate.run

    monkeypatch.setattr(sami.generate.run, "make_backend", lambda cfg: pytest.fail("the teacher was loaded"))
    out = tmp_path / "gen" / "train.jsonl"
    pool = f"file:{pool_file},text_field=text,category=writing"
    args = [
        "generate",
        "--teacher",
        str(tiny_model_dir),
        "--pool",
        pool,
        "--out",
        str(out),
        "-o",
        "constitutions.principles=[lowercase,bullet_list]",
    ]
    assert cli_main([*args, "-o", override]) == 2
    assert setting in _one_error_line(capsys)
    assert not (tmp_path / "gen" / "train.generate.yaml").exists()


def test_eval_gsm8k_limit_is_checked_as_the_other_suites_are(tmp_path):
    """The same word in every suite: ``--limit N`` takes a positive N, or nothing for the suite's default."""
    from sami.core.config import ConfigError, from_dict
    from sami.eval.config import EvalConfig

    for suite in ("gsm8k", "mi", "adherence"):
        with pytest.raises(ConfigError, match=rf"{suite}\.limit must be at least 1, got -3"):
            from_dict(EvalConfig, {suite: {"limit": -3}})
        assert getattr(from_dict(EvalConfig, {suite: {"limit": None}}), suite).limit is None
