import json

from sami.cli import main
from tests.helpers import EXAMPLE_DATA


def test_check_data_summarises_a_valid_file(capsys):
    assert main(["check-data", str(EXAMPLE_DATA)]) == 0
    out = capsys.readouterr().out
    assert "16 valid records" in out and "C=2: 16" in out and "math: 2" in out
    assert "constitutions as free text: 0 of 32" in out


def test_check_data_reports_the_first_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    record = json.loads(EXAMPLE_DATA.read_text().splitlines()[0])
    record["constitutions"][1] = "free text"
    del record["query"]
    bad.write_text(json.dumps(record) + "\n")
    assert main(["check-data", str(bad)]) == 2
    assert f"{bad}:1: missing field(s) ['query']" in capsys.readouterr().err


def test_principles_lists_library_and_user_files(tmp_path, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "principles:\n  - {name: rhymes, strong: Rhyme., antithesis: Never rhyme.}\ncategories:\n  poetry: [rhymes]\n"
    )
    assert main(["principles", "--library", str(mine)]) == 0
    out = capsys.readouterr().out
    assert "[math]" in out and "step_by_step" in out and "[poetry]" in out and "rhymes" in out
    assert "concise: Answer in at most 60 words.  (checker max_words {'n': 60})" in out
    assert main(["principles", "--category", "nope"]) == 2
    assert "no principles for category 'nope'" in capsys.readouterr().err


def test_principles_lists_a_principle_in_no_category(tmp_path, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text("principles:\n  - {name: rhymes, strong: Always rhyme., antithesis: Never rhyme.}\n")
    assert main(["principles", "--library", str(mine)]) == 0
    out = capsys.readouterr().out
    assert "[in no category]\n  rhymes\n    strong:     Always rhyme." in out


def test_compare_configs_with_one_run_says_it_needs_two(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: sami\n")
    assert main(["compare-configs", str(run)]) == 2
    assert f"compare-configs compares two or more runs; got 1 ({run})" in capsys.readouterr().err
    assert main(["compare-configs", str(run), str(run)]) == 2
