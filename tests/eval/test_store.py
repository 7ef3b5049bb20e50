import json

import pytest

from sami.eval.store import JsonlStore, check_settings, read_jsonl


def test_a_torn_last_line_is_dropped_and_cut_off(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "tex')  # a crash in the middle of the third write
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}]
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n'  # so the next append starts on a fresh line
    store = JsonlStore(path, ("id",))
    store.append({"id": 3, "text": "x"})
    assert [r["id"] for r in read_jsonl(path)] == [1, 2, 3] and store.done(3) and not store.done(4)


def test_a_complete_last_line_without_its_newline_gets_it_back(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}')  # killed between a record and its newline
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}]
    JsonlStore(path, ("id",)).append({"id": 3})
    assert [r["id"] for r in read_jsonl(path)] == [1, 2, 3]


def test_a_bad_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\nnot json\n{"id": 3}\n')
    with pytest.raises(ValueError, match=r"a.jsonl:2: invalid JSON"):
        read_jsonl(path)
    path.write_text('{"id": 1}\n{"other": 2}\n')
    with pytest.raises(ValueError, match="missing key field"):
        JsonlStore(path, ("id",))


def test_settings_must_match_to_add_to_a_directory(tmp_path):
    check_settings(tmp_path, {"prompt": "paper-cot-v1", "stop": ("\nQ:",)}, "gsm8k")
    check_settings(tmp_path, {"prompt": "paper-cot-v1", "stop": ("\nQ:",)}, "gsm8k")  # tuples read back as lists
    with pytest.raises(ValueError, match=r"prompt: stored 'paper-cot-v1', now 'qa-v1'"):
        check_settings(tmp_path, {"prompt": "qa-v1", "stop": ("\nQ:",)}, "gsm8k")
    assert json.loads((tmp_path / "settings.json").read_text())["prompt"] == "paper-cot-v1"


def test_settings_added_later_read_as_their_old_value(tmp_path):
    """A folder written before ``constitution`` existed (no layout version) reads as holding its old behaviour;
    a folder written since that lacks it is a difference."""
    from sami.core.config import ConfigError

    (tmp_path / "settings.json").write_text(json.dumps({"queries": "mtbench"}))  # as the older version wrote it
    check_settings(tmp_path, {"queries": "mtbench", "constitution": "separate"}, "adherence")
    with pytest.raises(ConfigError, match="constitution: stored 'separate', now 'together'"):
        check_settings(tmp_path, {"queries": "mtbench", "constitution": "together"}, "adherence")
    with pytest.raises(ConfigError, match="verdict: stored None"):  # not added in adherence's history: a difference
        check_settings(tmp_path, {"queries": "mtbench", "constitution": "separate", "verdict": "text"}, "adherence")
    current = tmp_path / "now"
    check_settings(current, {"queries": "mtbench"}, "adherence")  # written by this version: nothing to upgrade
    with pytest.raises(ConfigError, match="constitution: stored None, now 'separate'"):
        check_settings(current, {"queries": "mtbench", "constitution": "separate"}, "adherence")


def test_a_setting_stored_under_its_old_name_reads_under_the_new_one(tmp_path):
    """A folder written when the phrasing was stored as ``side`` resumes with the same phrasing; another is
    refused under the new name."""
    from sami.core.config import ConfigError

    (tmp_path / "settings.json").write_text(json.dumps({"queries": "mtbench", "side": "weak"}))
    now = {"queries": "mtbench", "constitution": "separate"}  # (added since, at the value the folder holds)
    check_settings(tmp_path, {**now, "phrasing": "weak"}, "adherence")
    with pytest.raises(
        ConfigError, match=r"holds results made with other settings \(phrasing: stored 'weak', now 'strong'\)"
    ):
        check_settings(tmp_path, {**now, "phrasing": "strong"}, "adherence")
    with pytest.raises(ConfigError, match="phrasing: stored None"):  # not renamed in gsm8k's history: a difference
        check_settings(tmp_path, {"queries": "mtbench", "phrasing": "weak"}, "gsm8k")


def test_a_record_its_reader_would_refuse_is_not_appended(tmp_path):
    store = JsonlStore(tmp_path / "a.jsonl", key=("model", "question_id"))
    store.append({"model": "m", "question_id": 1})
    with pytest.raises(ValueError, match=r"without key field\(s\) \['question_id'\]"):
        store.append({"model": "m"})
    assert len(JsonlStore(tmp_path / "a.jsonl", key=("model", "question_id"))) == 1
