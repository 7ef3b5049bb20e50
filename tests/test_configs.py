from pathlib import Path

import pytest

from sami.config import from_dict, load_yaml
from sami.train_config import TrainConfig
from tests.conftest import ROOT

TRAIN_CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=[p.name for p in TRAIN_CONFIGS])
def test_shipped_configs_validate_and_say_how_to_run(path: Path):
    cfg = from_dict(TrainConfig, load_yaml(path), source=str(path))
    assert path.read_text().startswith("# Run with:")
    assert (ROOT / cfg.data).is_file()


def test_defaults_are_the_papers():
    cfg = TrainConfig()
    assert (cfg.sami.row_weight, cfg.sami.col_weight, cfg.sami.temperature) == (1.0, 1.0, 1.0)
    assert cfg.sami.constitution_weights is None and cfg.sami.logprob_method == "shared"
    assert cfg.model.name_or_path == "smollm2-135m"


def test_config_differences_lists_every_changed_leaf():
    from sami.config import config_differences

    a = TrainConfig()
    b = from_dict(TrainConfig, {"optim": {"lr": 3e-5}, "model": {"finetune": "lora"}, "seed": 1})
    assert config_differences(a, b) == {
        "model.finetune": ("full", "lora"),
        "optim.lr": (1e-5, 3e-5),
        "seed": (0, 1),
    }
    assert config_differences(a, TrainConfig()) == {}
