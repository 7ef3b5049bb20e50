"""The training-method registry: a method from a plugin (examples/plugins/cpo_method.py, TRL's CPO) is one
registration, trains through ``sami train`` like a built-in, and keeps its settings in ``sections.<method>``."""

import json

import pytest
import torch.nn.functional as F
import yaml
from datasets import load_from_disk

from sami.cli import main as cli_main
from sami.core.config import ConfigError, from_dict
from sami.core.errors import PluginError
from sami.models.loading import load_model
from sami.train.config import TrainConfig, compare_configs
from sami.train.registry import METHODS, Method, method_settings, register_method
from sami.train.trl_runner import DATASET
from tests.helpers import metrics, one_query_data, response_logps


def test_the_built_in_methods_are_registered_in_order_with_their_sections():
    assert METHODS.names()[:6] == ("sami", "sft", "dpo", "kto", "orpo", "simpo")
    assert [METHODS[m].title for m in ("sami", "simpo")] == ["SAMI", "SimPO"]
    assert all(METHODS[m].section is type(getattr(TrainConfig(), m)) for m in METHODS.names()[:6])
    with pytest.raises(ConfigError, match="unknown training method 'cpo'; known: sami, sft, dpo"):
        METHODS.lookup("cpo")
    with pytest.raises(PluginError, match="already registered"):
        register_method(METHODS["dpo"])
    with pytest.raises(PluginError, match="config dataclass"):
        register_method(Method("odd", dict, list, print, str))


def test_train_s_help_lists_every_method_with_its_line_a_plugin_s_too(method_plugins, capsys):
    with pytest.raises(SystemExit):
        cli_main(["--plugin", "cpo_method", "train", "--help"])
    listed = capsys.readouterr().out.split("methods (--method; a plugin's too):\n")[1].splitlines()
    assert [line.split()[0] for line in listed] == ["sami", "sft", "dpo", "kto", "orpo", "simpo", "cpo"]
    assert listed[-1].split(None, 1)[1] == METHODS.lookup("cpo").help == "CPO on pairs: preference loss + NLL"


def test_a_plugin_method_s_section_is_checked_and_written_out_with_its_defaults(method_plugins):
    with pytest.raises(ConfigError, match="method must be one of"):
        from_dict(TrainConfig, {"method": "cpo"})
    cli_main(["--plugin", "cpo_method", "principles", "--category", "math"])  # loads it as the CLI does
    cfg = from_dict(TrainConfig, {"method": "cpo", "sections": {"cpo": {"beta": 0.5}}})
    assert cfg.sections == {
        "cpo": {
            "beta": 0.5,
            "cpo_alpha": 1.0,
            "loss_type": "sigmoid",
            "prompt_constitution": "positive",
            "rejected": "most_flipped",
        }
    }
    assert method_settings(cfg).beta == 0.5 and from_dict(TrainConfig, {"method": "cpo"}).sections["cpo"]["beta"] == 0.1
    with pytest.raises(ConfigError, match="sections.cpo: beta: expected a number"):
        from_dict(TrainConfig, {"method": "cpo", "sections": {"cpo": {"beta": "high"}}})
    with pytest.raises(ConfigError, match="loss_type must be sigmoid, hinge or ipo"):
        from_dict(TrainConfig, {"method": "cpo", "sections": {"cpo": {"loss_type": "simpo"}}})
    with pytest.raises(ConfigError, match=r"sections.dpo: not a training method added by a plugin; those are \['cpo"):
        from_dict(TrainConfig, {"sections": {"dpo": {}}})
    # another method's run does not carry cpo's section into its comparisons, and cpo's reads "(not used)" there
    diffs = compare_configs(
        {"dpo": {"method": "dpo", "dpo": {"beta": 0.1}}, "cpo": {"method": "cpo", "sections": {"cpo": {"beta": 0.5}}}}
    )
    assert diffs["sections.cpo.beta"] == {"dpo": "(not used)", "cpo": 0.5}


@pytest.mark.parametrize(
    "setting, message",
    [
        ("beta=-1", "sections.cpo: beta must be positive"),
        ("rejected=bogus", "sections.cpo: rejected must be one of"),
        ("prompt_constitution=bogus", "sections.cpo: prompt_constitution must be one of"),
        ("nope=1", "sections.cpo: unknown key(s) ['nope']"),
    ],
)
def test_a_bad_plugin_method_setting_is_one_line_naming_it_before_any_model_loads(
    tmp_path, method_plugins, capsys, setting, message
):
    """Every ``sections.cpo.*`` setting is checked when the config is read: the message names the section once
    (no ``top level:``), and the model (a folder that does not exist) is never reached."""
    args = ["--plugin", "cpo_method", "train", "--method", "cpo", "--data", str(one_query_data(tmp_path))]
    args += [
        "--model",
        str(tmp_path / "no-model"),
        "--output-dir",
        str(tmp_path / "o"),
        "-o",
        f"sections.cpo.{setting}",
    ]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sami: error: {message}") and "top level" not in err, err
    assert not (tmp_path / "o").exists()


def test_cpo_from_a_plugin_trains_through_sami_train_with_its_first_step_loss_by_hand(
    tmp_path, tiny_model_dir, method_plugins, capsys
):
    """CPO, loss_type sigmoid: -log s(beta * (sum log p(chosen) - sum log p(rejected))) + cpo_alpha * NLL, the
    NLL being the mean over the chosen response's tokens (the prompt is masked), with log-probs computed here
    from the starting model on the one pair the record gives."""
    data = one_query_data(tmp_path)
    args = ["--plugin", "cpo_method", "train", "--method", "cpo", "--data", str(data), "--model", str(tiny_model_dir)]
    args += ["--output-dir", str(tmp_path / "o"), "--max-steps", "1", "-o", "max_prompt_tokens=48"]
    args += ["-o", "max_response_tokens=24", "-o", "sections.cpo.beta=0.5", "-o", "sections.cpo.cpo_alpha=0.3"]
    assert cli_main(args) == 0, capsys.readouterr().err
    (first,) = metrics(tmp_path / "o")
    assert "CPO loss" in capsys.readouterr().out
    (pair,) = load_from_disk(str(tmp_path / "o" / DATASET))
    model, _ = load_model(from_dict(TrainConfig, {"model": {"name_or_path": str(tiny_model_dir)}}).model, prepare=False)
    chosen = response_logps(model, pair["prompt_ids"], pair["chosen_ids"])
    rejected = response_logps(model, pair["prompt_ids"], pair["rejected_ids"])
    expected = -F.logsigmoid(0.5 * (chosen.sum() - rejected.sum())).item() - 0.3 * chosen.mean().item()
    assert first["loss"] == pytest.approx(expected, abs=1e-4)
    assert first["nll_loss"] == pytest.approx(-chosen.mean().item(), abs=1e-4)
    saved = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())
    assert saved["method"] == "cpo" and saved["sections"]["cpo"]["cpo_alpha"] == 0.3
    assert json.loads((tmp_path / "o" / "model" / "provenance.json").read_text())["steps"] == 1
