import re
from pathlib import Path

import pytest

from sami.core.config import from_dict, load_yaml
from sami.train.config import TrainConfig
from tests.helpers import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def config_class(command: str):
    from sami.generate.run import GenerateConfig
    from sami.study.experiment import ExperimentConfig
    from sami.study.iterate import IterateConfig

    classes = {"train": TrainConfig, "generate": GenerateConfig, "iterate": IterateConfig}
    return {**classes, "experiment": ExperimentConfig}[command]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate_and_say_how_to_run(path: Path):
    first = path.read_text().splitlines()[0]
    match = re.search(r"sami (\w+) (--config )?configs/" + re.escape(path.name), first)
    assert first.startswith("# Run with:") and match, first
    cfg = from_dict(config_class(match.group(1)), load_yaml(path), source=str(path))
    if isinstance(cfg, TrainConfig):
        assert (ROOT / cfg.data).is_file()
    if match.group(1) == "experiment":  # resolved into stages, nothing run
        from sami.study.experiment import plan_experiment

        stages, _ = plan_experiment(cfg)
        assert stages[-1].name == "report" and len({s.name for s in stages}) == len(stages)


def test_defaults_are_the_papers():
    cfg = TrainConfig()
    assert (cfg.sami.row_weight, cfg.sami.col_weight, cfg.sami.temperature) == (1.0, 1.0, 1.0)
    assert cfg.sami.constitution_weights is None and cfg.sami.layout == "shared"
    assert cfg.sami.nll_weight == 0.0 and cfg.sami.ref_weight == 0.0  # the anchors are off: plain SAMI
    assert cfg.model.name_or_path == "smollm2-135m"


def test_config_differences_lists_every_changed_leaf():
    from sami.core.config import config_differences

    a = TrainConfig()
    b = from_dict(TrainConfig, {"optim": {"lr": 3e-5}, "model": {"finetune": "lora"}, "seed": 1})
    assert config_differences(a, b) == {
        "model.finetune": ("full", "lora"),
        "optim.lr": (1e-5, 3e-5),
        "seed": (0, 1),
    }
    assert config_differences(a, TrainConfig()) == {}


@pytest.mark.parametrize(
    "argv, old, new",
    [
        (["train", "-o", "sami.logprob_method=naive"], "sami.logprob_method", "sami.layout"),
        (
            ["eval", "mi", "m=tiny", "--data", "x.jsonl", "-o", "mi.logprob_method=naive"],
            "mi.logprob_method",
            "mi.layout",
        ),
        (["eval", "mtbench", "a=tiny", "b=tiny", "--baseline", "a"], "--baseline", "--against"),
        (["eval", "mtbench", "a=tiny", "b=tiny", "-o", "mtbench.baseline=a"], "mtbench.baseline", "mtbench.against"),
        (["eval", "mtbench", "a=tiny", "b=tiny", "-o", "mtbench.anchors=[a]"], "mtbench.anchors", "mtbench.versus"),
        (["eval", "mtbench", "a=tiny", "-o", "mtbench.side=weak"], "mtbench.side", "mtbench.phrasing"),
        (["eval", "adherence", "a=tiny", "-o", "adherence.side=weak"], "adherence.side", "adherence.phrasing"),
        (["generate", "-o", "constitutions.side=weak"], "constitutions.side", "constitutions.phrasing"),
        (
            ["experiment", str(ROOT / "configs" / "quickstart.yaml"), "-o", "mtbench.mtbench.anchors=[sami]"],
            "mtbench.mtbench.anchors",
            "mtbench.mtbench.versus",
        ),
    ],
)
def test_an_old_key_is_a_one_line_error_naming_the_new_key(argv, old, new, capsys):
    from sami.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sami: error: ") and err.endswith(f"{old} was renamed to {new}\n") and err.count("\n") == 1


def test_the_layout_key_sets_the_layout_and_a_file_with_the_old_key_is_named(tmp_path):
    from sami.core.config import ConfigError
    from sami.eval.config import EvalConfig

    assert from_dict(TrainConfig, {"sami": {"layout": "naive"}}).sami.layout == "naive"
    assert from_dict(EvalConfig, {"mi": {"layout": "naive"}}).mi.layout == "naive"
    path = tmp_path / "old.yaml"
    path.write_text("sami:\n  logprob_method: naive\n")
    with pytest.raises(ConfigError) as err:
        from_dict(TrainConfig, load_yaml(path), source=str(path))
    assert str(err.value) == f"{path}: sami.logprob_method was renamed to sami.layout"
    with pytest.raises(ConfigError, match=r"sami.layout must be one of \('shared', 'naive'\)"):
        from_dict(TrainConfig, {"sami": {"layout": "fast"}})


def test_a_run_written_before_the_layout_rename_resumes_and_a_changed_layout_does_not(tmp_path):
    """A run folder's config.yaml from before the rename holds sami.logprob_method: read under its new name, the
    same layout is no change, and a different one still refuses the resume."""
    import yaml

    from sami.core.config import ConfigError, to_dict
    from sami.train.checkpoints import check_resume

    cfg = TrainConfig(data=str(ROOT / "examples" / "example.jsonl"), output_dir=str(tmp_path))
    old = to_dict(cfg)
    old["sami"]["logprob_method"] = old["sami"].pop("layout")
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert check_resume(cfg, tmp_path / "checkpoint", tmp_path / "config.yaml") == []
    cfg.sami.layout = "naive"
    with pytest.raises(ConfigError, match=r"sami.layout: 'shared' -> 'naive'"):
        check_resume(cfg, tmp_path / "checkpoint", tmp_path / "config.yaml")
