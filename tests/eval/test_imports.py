"""``sami eval import``: other tools' answers and verdicts read into an MT-Bench folder, and the numbers that
come out checked against counts made by hand from the files' rows."""

import json

import pandas as pd
import pytest

from sami.cli import main
from sami.core.stats import bootstrap_mean, length_controlled_win_rate, wilson
from sami.eval.imports import ImportConfig, Rows, recognise
from tests.helpers import FASTCHAT, FILES

SHIPPED = FILES / "import"


def sami(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def judge_with_checker(capsys, config, *overrides) -> tuple[int, str, str]:
    """``sami eval mtbench --config CONFIG --judges checker``, each of ``overrides`` given as ``-o``."""
    options = [a for o in overrides for a in ("-o", o)]
    return sami(capsys, "eval", "mtbench", "--config", config, "--judges", "checker", *options)


def stored(folder, *parts) -> list[dict]:
    path = folder.joinpath("mtbench", *parts)
    return [json.loads(line) for line in path.read_text().splitlines()]


def metrics(folder) -> dict:
    return json.loads((folder / "mtbench" / "metrics.json").read_text())


@pytest.fixture
def fastchat(tmp_path, capsys):
    """The shipped FastChat files (docs/USAGE.md's example) imported into a fresh folder."""
    code, out, err = sami(capsys, "eval", "import", *FASTCHAT, "--output-dir", tmp_path)
    assert code == 0, err
    return tmp_path, out


def test_fastchat_files_give_the_counts_made_by_hand(fastchat):
    """gpt-4_pair.jsonl, game by game (g1: alpha shown first, g2: beta shown first; winners by model):

    81/1 alpha, alpha: win          81/2 alpha, beta: the orders disagree, tie
    82/1 beta, beta: loss           82/2 tie, tie: tie
    111/1 alpha, alpha: win         111/2 error, alpha: unparseable
    112/1 alpha, alpha: win         112/2 beta, tie: the orders disagree, tie

    win 3 / tie 3 / loss 1, 1 unparseable, 2 disagreeing; hard rate (3 + 3/2) / 7, writing (1 + 2/2) / 4, math
    (2 + 1/2) / 3, each with its Wilson interval.
    """
    folder, out = fastchat
    block = metrics(folder)["pairwise"]["gpt-4"]["alpha vs beta"]
    o = block["overall"]
    assert (o["win"], o["tie"], o["loss"], o["unparseable"], o["inconsistent"]) == (3, 3, 1, 1, 2)
    assert o["hard_win_rate"] == wilson(4.5, 7).to_dict()
    writing, math = block["per_category"]["writing"], block["per_category"]["math"]
    assert (writing["win"], writing["tie"], writing["loss"]) == (1, 2, 1)
    assert writing["hard_win_rate"] == wilson(2, 4).to_dict()
    assert (math["win"], math["tie"], math["unparseable"]) == (2, 1, 1)
    assert math["hard_win_rate"] == wilson(2.5, 3).to_dict()
    assert block["verdict_source"] == "imported" and block["mirrored"] == 0
    assert "[gpt-4] alpha vs beta (imported verdicts): win 3 / tie 3 / loss 1, unparseable 1" in out
    # game 2 shows beta first: its winner "model_2" (beta) is verdict A there, "model_1" (alpha) is B
    records = stored(folder, "judgments", "gpt-4", "alpha__beta.jsonl")
    verdicts = {(r["question_id"], r["turn"], r["first"]): r["verdict"] for r in records}
    assert verdicts[(82, 1, "alpha")] == "B" and verdicts[(82, 1, "beta")] == "A"
    assert verdicts[(81, 1, "beta")] == "B" and verdicts[(111, 2, "alpha")] is None
    answers = stored(folder, "answers", "alpha.jsonl")
    assert len(answers) == 8 and answers[0]["prompt"].startswith("Compose a short note")
    questions = stored(folder, "questions.jsonl")
    assert [q["question_id"] for q in questions] == [81, 82, 111, 112] and len(questions[0]["turns"]) == 2


def test_recompute_prints_and_computes_what_the_import_did(fastchat, capsys):
    folder, out = fastchat
    code, again, err = sami(capsys, "eval", "mtbench", "--config", folder / "mtbench" / "config.yaml", "--recompute")
    assert code == 0, err
    assert again.strip() in out
    from sami.core.config import from_dict, load_yaml
    from sami.eval.config import EvalConfig
    from sami.eval.run import compute

    cfg = from_dict(EvalConfig, load_yaml(folder / "mtbench" / "config.yaml"))
    assert compute("mtbench", cfg) == metrics(folder)


def test_the_checker_judges_imported_answers_without_loading_a_model(fastchat, capsys, monkeypatch):
    """alpha's first answers are lowercase bulleted lists of three, beta's are not: alpha passes both checkers
    and beta neither, so alpha wins all four first-turn items in both orders."""

    def no_model(cfg):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("sami.backends.base.make_backend", no_model)
    monkeypatch.setattr("sami.eval.common.make_backend", no_model)
    folder, _ = fastchat
    code, out, err = judge_with_checker(
        capsys, folder / "mtbench" / "config.yaml", "mtbench.principles=[lowercase,bullet_list]"
    )
    assert code == 0, err
    o = metrics(folder)["pairwise"]["checker"]["alpha vs beta"]["overall"]
    assert (o["win"], o["tie"], o["loss"], o["n"]) == (4, 0, 0, 4)
    assert metrics(folder)["pairwise"]["gpt-4"]["alpha vs beta"]["overall"]["win"] == 3  # still there


def test_an_answer_an_imported_model_lacks_is_not_generated_but_named(tmp_path, capsys):
    answers = tmp_path / "answers.jsonl"
    rows = [
        {"question": "Say hi.", "response": "hi", "model": "a"},
        {"question": "Say hi.", "response": "Hi!", "model": "b"},
        {"question": "Count to 3.", "response": "1 2 3", "model": "a"},
    ]
    pd.DataFrame(rows).to_json(answers, orient="records", lines=True)
    assert sami(capsys, "eval", "import", answers, "--output-dir", tmp_path / "out")[0] == 0
    config = tmp_path / "out" / "mtbench" / "config.yaml"
    code, _, err = judge_with_checker(capsys, config, "mtbench.principles=[lowercase]")
    assert code == 2 and "imported:" in err and "cannot be generated" in err


def test_alpaca_eval_annotations_count_each_row_once(tmp_path, capsys):
    """Preferences 1, 2, 1.5, 1.25 and none, for generator_1 (ref) against generator_2 (mine): win, loss, tie,
    win (P(output_1) = 0.75) and unparseable. Each row is one order, stored with its mirror, so no order
    disagrees. Hard (2 + 1/2) / 4; soft (1 + 0 + 1/2 + 3/4) / 4. Row k asks question k (no id column)."""
    prefs = [1, 2, 1.5, 1.25, None]
    rows = [
        {
            "instruction": f"q{k}",
            "output_1": f"ref answer {k}",
            "output_2": f"my answer number {k}",
            "generator_1": "ref",
            "generator_2": "mine",
            "dataset": "koala" if k < 2 else "oasst",
            "preference": p,
            "annotator": "weighted_gpt4",
        }
        for k, p in enumerate(prefs)
    ]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(rows))
    code, out, err = sami(capsys, "eval", "import", path, "--output-dir", tmp_path / "out")
    assert code == 0, err
    block = metrics(tmp_path / "out")["pairwise"]["weighted_gpt4"]["ref vs mine"]
    o = block["overall"]
    assert (o["win"], o["tie"], o["loss"], o["unparseable"], o["inconsistent"]) == (2, 1, 1, 1, 0)
    assert o["hard_win_rate"] == wilson(2.5, 4).to_dict()
    assert o["soft_win_rate"]["value"] == pytest.approx(2.25 / 4)
    assert block["mirrored"] == 5 and block["verdict_source"] == "imported one-order"
    assert set(block["per_category"]) == {"koala", "oasst"}
    assert "(imported one-order verdicts)" in out and "5 of 5 items were judged in one order only" in out
    records = stored(tmp_path / "out", "judgments", "weighted_gpt4", "mine__ref.jsonl")
    assert {(r["first"], r["verdict"], r["mirrored"]) for r in records if r["question_id"] == 2} == {
        ("ref", "B", False),
        ("mine", "A", True),
    }


def test_a_judgments_table_with_lengths_gives_the_length_controlled_rate(tmp_path, capsys):
    """a/b/tie and 1/0/0.5 outcomes for model_a; the answers were not imported, the lengths are the table's."""
    table = pd.DataFrame(
        {
            "question_id": [1, 2, 3, 4, 5, 6],
            "model_a": ["x"] * 6,
            "model_b": ["y"] * 6,
            "outcome": ["a", "b", "tie", 1, 0, 1],
            "words_a": [30, 12, 20, 50, 8, 40],
            "words_b": [10, 30, 20, 10, 16, 20],
            "category": ["c1"] * 3 + ["c2"] * 3,
        }
    )
    path = tmp_path / "verdicts.csv"
    table.to_csv(path, index=False)
    code, out, err = sami(capsys, "eval", "import", path, "--output-dir", tmp_path / "out", "--judge", "people")
    assert code == 0, err
    o = metrics(tmp_path / "out")["pairwise"]["people"]["x vs y"]["overall"]
    scores = [1, 0, 0.5, 1, 0, 1]
    assert (o["win"], o["tie"], o["loss"]) == (3, 1, 2)
    assert o["hard_win_rate"] == wilson(3.5, 6).to_dict()
    expected = length_controlled_win_rate(scores, table["words_a"].tolist(), table["words_b"].tolist())
    assert o["length_controlled_win_rate"] == expected.to_dict()
    assert o["mean_words_x"] == bootstrap_mean(table["words_a"].tolist()).to_dict()
    c2 = metrics(tmp_path / "out")["pairwise"]["people"]["x vs y"]["per_category"]["c2"]
    assert (c2["win"], c2["loss"]) == (2, 1)


def _answers_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt_text": ["Name a colour.", "Name a fruit.", "Name a colour.", "Name a fruit."],
            "completion": ["blue", "an apple", "Red.", "Pear."],
            "system": ["m1", "m1", "m2", "m2"],
            "topic": ["easy", "easy", "easy", "easy"],
            "rules": ["Answer in lowercase.", None, "Answer in lowercase.", None],
        }
    )


@pytest.mark.parametrize("layout", ["jsonl", "records", "columns", "csv"])
def test_an_answers_table_in_any_layout_with_its_own_column_names(tmp_path, capsys, layout):
    """No id column: a question's id is the row number of the first row asking it (rows 1 and 2 here)."""
    frame = _answers_frame()
    path = tmp_path / f"answers.{'csv' if layout == 'csv' else 'json'}"
    if layout == "csv":
        frame.to_csv(path, index=False)
    elif layout == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif layout == "records":
        frame.to_json(path, orient="records")
    else:
        frame.to_json(path)  # pandas' default: {"column": {"0": value, ...}}
    code, out, err = sami(
        capsys,
        "eval",
        "import",
        path,
        "--output-dir",
        tmp_path / "out",
        "--question-col",
        "prompt_text",
        "--response-col",
        "completion",
        "--model-col",
        "system",
        "--category-col",
        "topic",
        "--constitution-col",
        "rules",
    )
    assert code == 0, err
    m2 = stored(tmp_path / "out", "answers", "m2.jsonl")
    assert [(a["question_id"], a["answer"], a["category"]) for a in m2] == [(1, "Red.", "easy"), (2, "Pear.", "easy")]
    assert m2[0]["constitution"] == "Answer in lowercase." and "constitution" not in m2[1]
    questions = stored(tmp_path / "out", "questions.jsonl")
    assert questions == [
        {"question_id": 1, "category": "easy", "turns": ["Name a colour."]},
        {"question_id": 2, "category": "easy", "turns": ["Name a fruit."]},
    ]
    assert "m1: 2 answers" in out and "m2: 2 answers" in out


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (SHIPPED / "question.jsonl", "fastchat-question"),
        (SHIPPED / "model_answer" / "alpha.jsonl", "fastchat-answer"),
        (SHIPPED / "model_judgment" / "gpt-4_pair.jsonl", "fastchat-pair"),
    ],
)
def test_the_format_is_recognised_from_the_content(path, expected):
    assert recognise(Rows(path, ImportConfig(files=[str(path)]))) == expected


def test_tables_are_recognised_by_their_columns(tmp_path):
    cases = {
        "alpaca-eval": {
            "instruction": ["q"],
            "output_1": ["a"],
            "output_2": ["b"],
            "generator_1": ["x"],
            "generator_2": ["y"],
            "preference": [1],
        },
        "judgments": {"model_a": ["x"], "model_b": ["y"], "outcome": ["a"]},
        "answers": {"question": ["q"], "answer": ["a"]},
    }
    for expected, columns in cases.items():
        path = tmp_path / f"{expected}.data"  # the suffix says nothing
        pd.DataFrame(columns).to_json(path, orient="records", lines=True)
        assert recognise(Rows(path, ImportConfig(files=[str(path)]))) == expected


def test_format_forces_how_a_file_is_read(tmp_path, capsys):
    """AlpacaEval annotations read as an answers table: generator_1's answers only, no verdicts."""
    rows = [
        {"instruction": "q", "output_1": "a", "output_2": "b", "generator_1": "x", "generator_2": "y", "preference": 1}
    ]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(rows))
    code, out, err = sami(
        capsys,
        "eval",
        "import",
        path,
        "--output-dir",
        tmp_path / "out",
        "--format",
        "answers",
        "--response-col",
        "output_1",
        "--model-col",
        "generator_1",
    )
    assert code == 0, err
    assert metrics(tmp_path / "out")["pairwise"] == {}
    assert [a["answer"] for a in stored(tmp_path / "out", "answers", "x.jsonl")] == ["a"]


def test_a_bad_row_is_named_by_file_row_and_field(tmp_path, capsys):
    rows = [
        {
            "instruction": f"q{k}",
            "output_1": "a",
            "output_2": "b",
            "generator_1": "x",
            "generator_2": "y",
            "preference": p,
        }
        for k, p in enumerate([1, 2, "maybe"])
    ]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(rows))
    code, _, err = sami(capsys, "eval", "import", path, "--output-dir", tmp_path / "out")
    assert code == 2
    assert err.startswith(f"sami: error: {path}: row 3: field 'preference': expected a number in [1, 2], got 'maybe'")
    assert len(err.strip().splitlines()) == 1
    bad = tmp_path / "pair.jsonl"
    line = json.loads((SHIPPED / "model_judgment" / "gpt-4_pair.jsonl").read_text().splitlines()[0])
    bad.write_text(json.dumps(line) + "\n" + json.dumps({**line, "g2_winner": "A"}) + "\n")
    code, _, err = sami(capsys, "eval", "import", bad, "--output-dir", tmp_path / "out2")
    assert code == 2 and f"{bad}:2: field 'g2_winner'" in err  # JSON Lines: named by its line


def test_a_table_that_judged_both_orders_keeps_both(tmp_path, capsys):
    """Question 1 judged with x first (x wins) and with y first (y wins): the orders disagree, a tie. Question 2
    judged with x first only (x wins): mirrored, a win. A mirror never replaces a verdict given in its order."""
    rows = [
        {"question_id": 1, "model_a": "x", "model_b": "y", "outcome": "a"},
        {"question_id": 1, "model_a": "y", "model_b": "x", "outcome": "a"},
        {"question_id": 2, "model_a": "x", "model_b": "y", "outcome": "a"},
    ]
    path = tmp_path / "verdicts.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    code, out, err = sami(capsys, "eval", "import", path, "--output-dir", tmp_path / "out")
    assert code == 0, err
    block = metrics(tmp_path / "out")["pairwise"]["verdicts"]["x vs y"]
    o = block["overall"]
    assert (o["win"], o["tie"], o["loss"], o["inconsistent"]) == (1, 1, 0, 1)
    assert block["mirrored"] == 1 and block["verdict_source"] == "imported partly one-order"
    assert "(imported partly one-order verdicts)" in out


def _snapshot(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda p: p.write_text('{"question": "a", "response": "b"}\n{"question": "c", response: 1}\n'), "{}:2: "),
        (lambda p: p.write_text(""), "{}: empty file"),
        (
            lambda p: p.write_bytes(b'{"question": "a", "response": "b"}\n{"question": "caf\xe9"}\n'),
            "{}:2: not UTF-8 text",
        ),
        (
            lambda p: p.write_bytes(b"PAR1\x15\x04\x15\x10\x15\x14L\x15\x02\x15\x00\x12\x00\x00\x08\x1c\xff\xfe"),
            "{}:1: not UTF-8 text",
        ),
        (lambda p: p.mkdir(), "{} is a folder"),
        (lambda p: p.write_text('[{"question": "a", "response": "b"}, 3]'), "{}: row 2: expected an object"),
    ],
    ids=["malformed-line", "empty", "latin-1", "parquet", "folder", "json-list-of-numbers"],
)
def test_an_unreadable_file_is_one_line_naming_file_and_line(tmp_path, capsys, make, expect):
    path = tmp_path / "answers.jsonl"
    make(path)
    code, _, err = sami(capsys, "eval", "import", path, "--output-dir", tmp_path / "out")
    assert code == 2 and err.startswith(f"sami: error: {expect.format(path)}") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_verdicts_on_answers_no_file_holds_are_left_out_of_the_rates_and_named(tmp_path, capsys, caplog):
    """Answers of a and b to questions 1 and 2; verdicts (a judgments table, one order each): a beats b on 1 and
    2, b beats a on 3 (no answer of either), a beats c on 1 (no answers of c). Only the first two count."""
    answers = write_rows(
        tmp_path / "answers.jsonl",
        [{"question_id": q, "question": f"q{q}", "model": m, "response": f"{m} {q}"} for q in (1, 2) for m in "ab"],
    )
    verdicts = write_rows(
        tmp_path / "verdicts.jsonl",
        [
            {"question_id": 1, "model_a": "a", "model_b": "b", "outcome": "a"},
            {"question_id": 2, "model_a": "a", "model_b": "b", "outcome": "a"},
            {"question_id": 3, "model_a": "a", "model_b": "b", "outcome": "b"},
            {"question_id": 1, "model_a": "a", "model_b": "c", "outcome": "a"},
        ],
    )
    code, _, err = sami(capsys, "eval", "import", answers, verdicts, "--output-dir", tmp_path / "out")
    assert code == 0, err
    block = metrics(tmp_path / "out")["pairwise"]["verdicts"]
    assert list(block) == ["a vs b"]
    o = block["a vs b"]["overall"]
    assert (o["win"], o["loss"], o["n"]) == (2, 0, 2)
    assert (
        f"{verdicts}:3: verdict left out of the rates: question 3 turn 1 has no imported answer of 'a' or 'b'"
        in caplog.text
    )
    assert f"{verdicts}:4: verdict left out of the rates: no answers of 'c' were imported" in caplog.text


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_an_imported_folder_takes_no_generated_answers_and_a_mixed_one_no_import(fastchat, tiny_model_dir, capsys):
    folder, _ = fastchat
    before = _snapshot(folder)
    code, _, err = sami(
        capsys,
        "eval",
        "mtbench",
        f"t={tiny_model_dir}",
        "--output-dir",
        folder,
        "--judges",
        "checker",
        "-o",
        "mtbench.principles=[lowercase]",
    )
    assert code == 2 and "holds imported answers" in err and "t would be generated" in err, err
    assert _snapshot(folder) == before  # config.yaml and metrics.json keep the imported judge's tables
    # a folder an earlier version let mix: a generated model bound beside the imported ones
    models = folder / "mtbench" / "models.json"
    models.write_text(json.dumps({**json.loads(models.read_text()), "t": {"model": "t", "key": "0" * 64}}))
    code, _, err = sami(capsys, "eval", "import", *FASTCHAT, "--output-dir", folder)
    assert code == 2 and "holds answers generated by sami eval mtbench (t)" in err, err


def test_judging_imported_answers_of_no_category_asks_for_the_principles(tmp_path, capsys):
    answers = write_rows(
        tmp_path / "answers.jsonl",
        [{"question": "Say hi.", "response": r, "model": m} for m, r in (("a", "hi"), ("b", "Hi!"))],
    )
    assert sami(capsys, "eval", "import", answers, "--output-dir", tmp_path / "out")[0] == 0
    before = _snapshot(tmp_path / "out")
    config = tmp_path / "out" / "mtbench" / "config.yaml"
    code, _, err = judge_with_checker(capsys, config)
    assert code == 2 and "question 1: its category 'unknown' has no principles; set mtbench.principles" in err, err
    assert _snapshot(tmp_path / "out") == before


def test_a_run_on_an_imported_folder_keeps_its_protocol(fastchat, capsys):
    """The shipped answers have second turns: imported under the fastchat protocol, which a judging run keeps."""
    folder, _ = fastchat
    before = _snapshot(folder)
    code, _, err = judge_with_checker(
        capsys, folder / "mtbench" / "config.yaml", "mtbench.principles=[lowercase]", "mtbench.protocol=paper"
    )
    assert code == 2 and "holds answers imported under the fastchat protocol, not paper" in err, err
    assert _snapshot(folder) == before
