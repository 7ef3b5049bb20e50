import errno
import json

import pytest

from sami.cli import describe_error, main
from sami.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    EndpointError,
    InputMissing,
    ModelMissing,
    OutputBusy,
    OutputExists,
    PluginError,
    TrainingDiverged,
)
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


@pytest.mark.parametrize(
    "error",
    [KeyError("constitutions"), ValueError("could not convert string to float: 'x'"), TypeError("unhashable")],
    ids=["KeyError", "ValueError", "TypeError"],
)
def test_a_bare_library_error_inside_a_command_is_a_bug_with_the_debug_pointer(error, monkeypatch, capsys):
    """Only the project's own classes are bad input: a ``KeyError`` or ``ValueError`` that reaches the command
    line unconverted is our mistake, so it exits 1 naming its type and pointing at ``--debug``."""
    import sami.data.records

    def read_records(path):
        raise error

    monkeypatch.setattr(sami.data.records, "read_records", read_records)
    assert main(["check-data", str(EXAMPLE_DATA)]) == 1
    first = str(error.args[0])
    shown = repr(first) if isinstance(error, KeyError) else first  # str(KeyError('k')) is "'k'"
    assert capsys.readouterr().err == (
        f"sami: error: {type(error).__name__}: {shown} (run with --debug for the traceback)\n"
    )
    with pytest.raises(type(error)):
        main(["--debug", "check-data", str(EXAMPLE_DATA)])


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("c.yaml: optim.lr: expected a number"),
        DataError("d.jsonl:3: field 'query' is empty"),
        InputMissing("no such folder: m"),
        OutputBusy("r is in use by pid 1"),
        EndpointError("endpoint u: refused"),
        ModelMissing("m holds no model"),
        PluginError("plugin 'p' failed to import"),
        OutputExists("r already holds checkpoints"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_project_s_error_classes_are_bad_input_with_their_message(error):
    assert describe_error(error) == (2, str(error))


def test_os_errors_are_bad_input_only_when_they_name_a_path(tmp_path):
    named = FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "x"))
    assert describe_error(named) == (2, f"{tmp_path / 'x'}: No such file or directory")
    assert describe_error(OSError("socket closed"))[0] == 1
    assert describe_error(OSError(errno.ENOSPC, "No space left", str(tmp_path))) == (1, f"no space left on {tmp_path}")


def test_a_run_that_stopped_for_a_named_reason_exits_1_with_its_message_alone():
    assert describe_error(TrainingDiverged("step 3: loss is nan")) == (1, "step 3: loss is nan")
    assert describe_error(CheckpointError("every checkpoint is damaged")) == (1, "every checkpoint is damaged")


def test_the_error_classes_stay_importable_from_their_old_modules():
    from sami.backends.openai_backend import EndpointError as endpoint
    from sami.core.config import ConfigError as config
    from sami.core.locks import OutputBusy as busy
    from sami.data.records import DataError as data
    from sami.models.loading import EmbeddedModelMissing as embedded
    from sami.plugins import PluginError as plugin
    from sami.train.checkpoints import CheckpointError as checkpoint
    from sami.train.runfolder import TrainingDiverged as diverged

    assert (config, data, busy, endpoint, plugin, checkpoint, diverged) == (
        ConfigError,
        DataError,
        OutputBusy,
        EndpointError,
        PluginError,
        CheckpointError,
        TrainingDiverged,
    )
    assert issubclass(embedded, ModelMissing) and issubclass(config, ValueError) and issubclass(data, ValueError)


def test_every_subcommand_is_one_function_of_the_table():
    import argparse

    from sami.cli import COMMANDS, build_parser

    (subcommands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(subcommands.choices) == list(COMMANDS)


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
