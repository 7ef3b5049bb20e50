import json
from pathlib import Path

import pytest

from sami.study.stages import Stage, fingerprint, read_marker, run_stages


class Interrupt(RuntimeError):
    pass


def make_plan(root, calls, cfg, fail_in=None):
    """gen -> (train_a, train_b) -> report; each stage appends its name to ``calls`` and writes a file."""

    def work(name, reads=()):
        def run(folder):
            calls.append(name)
            if name == fail_in:
                (folder / "partial").write_text("half")
                raise Interrupt(name)
            text = "+".join((root / r / "out.txt").read_text() for r in reads)
            (folder / "out.txt").write_text(f"{name}[{cfg.get(name, '')}]({text})")

        return run

    return [
        Stage("gen", root / "gen", {"n": cfg["gen"]}, work("gen")),
        Stage("train_a", root / "train_a", {"lr": cfg["train_a"]}, work("train_a", ["gen"]), after=["gen"]),
        Stage("train_b", root / "train_b", {"lr": cfg["train_b"]}, work("train_b", ["gen"]), after=["gen"]),
        Stage("report", root / "report", {}, work("report", ["train_a", "train_b"]), after=["train_a", "train_b"]),
    ]


CFG = {"gen": "10", "train_a": "1e-5", "train_b": "2e-5"}


def test_a_finished_plan_is_not_redone(tmp_path):
    calls = []
    run_stages(make_plan(tmp_path, calls, CFG))
    assert calls == ["gen", "train_a", "train_b", "report"]
    assert (
        tmp_path / "report" / "out.txt"
    ).read_text() == "report[](train_a[1e-5](gen[10]())+train_b[2e-5](gen[10]()))"
    calls.clear()
    outcomes = run_stages(make_plan(tmp_path, calls, CFG))
    assert calls == [] and {o.status for o in outcomes} == {"skipped"}


@pytest.mark.parametrize("stage", ["gen", "train_a", "train_b", "report"])
def test_an_interrupted_stage_resumes_and_finished_ones_are_kept(tmp_path, stage):
    calls = []
    with pytest.raises(Interrupt):
        run_stages(make_plan(tmp_path, calls, CFG, fail_in=stage))
    done_before = calls[: calls.index(stage)]
    assert read_marker(tmp_path / stage) is None and (tmp_path / stage / "partial").is_file()
    calls.clear()
    run_stages(make_plan(tmp_path, calls, CFG))
    order = ["gen", "train_a", "train_b", "report"]
    assert calls == [s for s in order if s not in done_before]
    assert (tmp_path / stage / "partial").is_file()  # the stage found its partial work in place


def test_a_changed_config_reruns_only_that_stage_and_its_readers(tmp_path):
    calls = []
    run_stages(make_plan(tmp_path, calls, CFG))
    calls.clear()
    outcomes = run_stages(make_plan(tmp_path, calls, CFG | {"train_b": "5e-5"}))
    assert calls == ["train_b", "report"]
    assert {o.name: o.status for o in outcomes} == {
        "gen": "skipped",
        "train_a": "skipped",
        "train_b": "reran",
        "report": "reran",
    }
    assert (
        tmp_path / "report" / "out.txt"
    ).read_text() == "report[](train_a[1e-5](gen[10]())+train_b[5e-5](gen[10]()))"
    stale = [p.name for p in tmp_path.iterdir() if ".stale-" in p.name]
    assert sorted(n.split(".")[0] for n in stale) == ["report", "train_b"]
    calls.clear()
    run_stages(make_plan(tmp_path, calls, CFG | {"gen": "20"}))
    assert calls == ["gen", "train_a", "train_b", "report"]


def test_plan_errors():
    noop = lambda folder: None  # noqa: E731
    with pytest.raises(ValueError, match="not listed before it"):
        run_stages([Stage("b", Path("/nonexistent"), {}, noop, after=["a"])])
    with pytest.raises(ValueError, match="two stages are named"):
        run_stages([Stage("a", Path("/x"), {}, noop), Stage("a", Path("/y"), {}, noop)])


def test_a_stage_finished_before_a_key_was_renamed_is_still_finished(tmp_path):
    """A marker written when the keys had their old names (its fingerprint over the old names) is this stage's,
    finished; a changed value under the new name still reruns it."""
    calls = []
    new = {"against": ["x"], "versus": ["x"], "phrasing": ["x"]}
    old = {"baseline": ["x"], "anchors": ["x"], "side": ["x"]}
    stage = Stage("eval", tmp_path / "eval", {"section": new}, lambda folder: calls.append("eval"))
    stage.folder.mkdir()
    (stage.folder / "stage.json").write_text(json.dumps({"fingerprint": fingerprint({"section": old}, [])}))
    assert [o.status for o in run_stages([stage])] == ["skipped"] and calls == []
    changed = Stage("eval", tmp_path / "eval", {"section": {**new, "versus": ["y"]}}, stage.run)
    assert [o.status for o in run_stages([changed])] == ["reran"] and calls == ["eval"]


def test_a_stage_finished_before_a_setting_was_added_is_still_finished(tmp_path):
    """A training stage finished before ``sharding`` existed (its marker's fingerprint over a config without it)
    is finished for a config that holds the setting at its old behaviour; ``sharding: fsdp`` reruns it."""
    calls = []
    before = {"train": {"method": "sami", "optim": {"lr": 1e-3}}}
    stage = Stage("sami", tmp_path / "sami", {"train": {**before["train"], "sharding": "none"}}, calls.append)
    stage.folder.mkdir()
    (stage.folder / "stage.json").write_text(json.dumps({"fingerprint": fingerprint(before, [])}))
    assert [o.status for o in run_stages([stage])] == ["skipped"] and calls == []
    sharded = Stage("sami", stage.folder, {"train": {**before["train"], "sharding": "fsdp"}}, calls.append)
    assert [o.status for o in run_stages([sharded])] == ["reran"] and len(calls) == 1
