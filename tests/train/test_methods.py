"""The method table, and the methods TRL trains beside SFT and DPO (KTO, ORPO, SimPO, DPO's loss variants), on
tiny random models: step-1 losses derived by hand or from log-probs computed here, every trainable parameter
changing, TRL's resolved config carrying the shared settings, the CLI and resumption."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from datasets import load_from_disk

from sami.cli import main as cli_main
from sami.core.config import ConfigError, from_dict
from sami.data.records import read_records
from sami.models.loading import load_model
from sami.train.config import DPO_LOSS_TYPES, TRAIN_METHODS, TrainConfig
from sami.train.encoding import encode_records
from sami.train.methods import METHODS, method_entry
from sami.train.run import train
from sami.train.trl_recipes import RECIPES
from sami.train.trl_runner import DATASET, trl_args
from tests.helpers import (
    EXAMPLE_DATA,
    assert_every_trainable_parameter_changes,
    make_cfg,
    metrics,
    one_query_data,
    response_logps,
)

NEW = ("kto", "orpo", "simpo")


def sequence_nll(model, ids) -> float:
    """Mean negative log-likelihood per token of a whole sequence (every token after the first)."""
    ids = torch.tensor([list(ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()[0, :-1]
    return F.cross_entropy(logits, ids[0, 1:]).item()


# ------------------------------------------------------------------------------------------ the table


def test_every_method_has_one_entry_and_a_config_section():
    assert tuple(METHODS) == TRAIN_METHODS
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(TRAIN_METHODS) <= fields  # a method's section is the field named after it
    assert set(RECIPES) == set(TRAIN_METHODS) - {"sami"}  # every other method is trained by TRL


def test_an_unknown_method_is_an_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match="method must be one of") as err:
        from_dict(TrainConfig, {"method": "ppo"})
    assert all(name in str(err.value) for name in TRAIN_METHODS)
    with pytest.raises(ValueError, match="unknown training method 'ppo'; known: sami, sft, dpo, kto, orpo, simpo"):
        method_entry("ppo")


def test_step_lines_come_from_the_table():
    """Each method's line names it and shows its own numbers; none falls through to another's."""
    m = {
        "loss": 0.5,
        "mi_bound": 0.25,
        "row_accuracy": 1.0,
        "col_accuracy": 0.5,
        "kl": 0.125,
        "nll_loss": 2.0,
        "log_odds_ratio": -0.75,
        "rewards_chosen": 0.0625,
        "rewards_rejected": -0.0625,
    }
    lines = {name: entry.step_line(m) for name, entry in METHODS.items()}
    assert lines["kto"].startswith("KTO loss 0.5000") and "KL estimate 0.1250" in lines["kto"]
    assert "0.0625/-0.0625" in lines["kto"]
    assert lines["orpo"].startswith("ORPO loss 0.5000") and "NLL 2.0000" in lines["orpo"]
    assert "log odds ratio -0.7500" in lines["orpo"]
    assert lines["simpo"].startswith("SimPO loss") and lines["dpo"].startswith("DPO loss")
    assert lines["sami"].startswith("SAMI loss 0.5000, MI bound 0.2500")


def test_kto_rows_are_the_positive_response_desirable_and_every_other_undesirable(tmp_path, tokenizer):
    """Prompt and responses carry exactly the ids SAMI scores for constitution 0 (sami.train.encoding)."""
    cfg = make_cfg(tmp_path, "unused", method="kto", queries_per_device=2)
    record = read_records(EXAMPLE_DATA)[0]
    rows = METHODS["kto"].examples(record, cfg, tokenizer)
    (sami,) = encode_records([record], tokenizer, cfg)
    assert [r["label"] for r in rows] == [True] + [False] * (len(record.responses) - 1)
    for k, row in enumerate(rows):
        assert tuple(row["prompt_ids"]) == sami.prompt_ids[0]
        assert tuple(row["completion_ids"]) == sami.response_ids[k]


# ------------------------------------------------------------------------------------------ configuration


@pytest.mark.parametrize("method", [m for m in TRAIN_METHODS if m != "sami"])
def test_the_resolved_trl_config_carries_the_shared_settings(tmp_path, method):
    cfg = make_cfg(
        tmp_path,
        "unused",
        method=method,
        seed=7,
        queries_per_device=3,
        gradient_accumulation=2,
        max_steps=5,
        optim={
            "lr": 3e-4,
            "weight_decay": 0.05,
            "betas": [0.8, 0.95],
            "eps": 1e-7,
            "scheduler": "linear",
            "warmup_steps": 2,
            "max_grad_norm": 0.4,
        },
        save_every=2,
        keep_checkpoints=3,
        model={"gradient_checkpointing": False},
    )
    args = trl_args(cfg, "no")
    assert (
        type(args).__name__
        == {"sft": "SFTConfig", "dpo": "DPOConfig", "kto": "KTOConfig", "orpo": "ORPOConfig", "simpo": "CPOConfig"}[
            method
        ]
    )
    shared = {
        "learning_rate": 3e-4,
        "weight_decay": 0.05,
        "adam_beta1": 0.8,
        "adam_beta2": 0.95,
        "adam_epsilon": 1e-7,
        "warmup_steps": 2,
        "max_grad_norm": 0.4,
        "per_device_train_batch_size": 3,
        "gradient_accumulation_steps": 2,
        "max_steps": 5,
        "seed": 7,
        "data_seed": 7,
        "bf16": False,
        "fp16": False,
        "logging_steps": 1,
        "save_steps": 2,
        "save_total_limit": 3,
    }
    assert {k: getattr(args, k) for k in shared} == shared
    assert getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type) == "linear"
    checkpointing = getattr(args, "activation_checkpointing", None)
    assert (args.gradient_checkpointing if checkpointing is None else checkpointing) is False
    assert trl_args(cfg, "bf16").bf16 is True


def test_each_method_s_own_section_reaches_trl(tmp_path):
    kto = trl_args(
        make_cfg(
            tmp_path,
            "m",
            method="kto",
            queries_per_device=2,
            kto={"beta": 0.3, "desirable_weight": 1.5, "undesirable_weight": 0.5},
        ),
        "no",
    )
    assert (kto.beta, kto.desirable_weight, kto.undesirable_weight, kto.loss_type) == (0.3, 1.5, 0.5, "kto")
    assert kto.precompute_ref_log_probs is True
    orpo = trl_args(make_cfg(tmp_path, "m", method="orpo", orpo={"beta": 0.25}), "no")
    assert orpo.beta == 0.25 and orpo.max_length == 48 + 24  # rows arrive cut by our own limits
    simpo = trl_args(make_cfg(tmp_path, "m", method="simpo", simpo={"beta": 2.5, "gamma": 0.75}), "no")
    assert (simpo.loss_type, simpo.beta, simpo.simpo_gamma, simpo.cpo_alpha) == ("simpo", 2.5, 0.75, 0.0)
    dpo = trl_args(make_cfg(tmp_path, "m", method="dpo", dpo={"loss_type": ["ipo", "sft"]}), "no")
    assert dpo.loss_type == ["ipo", "sft"]


def test_dpo_loss_types_are_checked_when_the_config_loads():
    with pytest.raises(ConfigError, match=r"dpo.loss_type: \['sigmiod'\] not among TRL's DPO losses"):
        from_dict(TrainConfig, {"method": "dpo", "dpo": {"loss_type": ["sigmiod"]}})
    with pytest.raises(ConfigError, match="exo_pair"):  # needs label smoothing, which this config does not set
        from_dict(TrainConfig, {"method": "dpo", "dpo": {"loss_type": ["exo_pair"]}})
    from trl import DPOConfig

    names = {f.name: f for f in dataclasses.fields(DPOConfig)}["loss_type"].metadata["help"]
    assert all(f"'{t}'" in names for t in DPO_LOSS_TYPES)  # every name we accept is one TRL 1.16 knows


def test_kto_with_one_example_per_device_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match="kto needs queries_per_device of at least 2"):
        from_dict(TrainConfig, {"method": "kto"})
    for bad in (
        {"kto": {"beta": 0}},
        {"kto": {"undesirable_weight": -1}},
        {"simpo": {"gamma": -0.5}},
        {"orpo": {"rejected": "worst"}},
    ):
        with pytest.raises(ConfigError):
            from_dict(TrainConfig, {"method": "kto", "queries_per_device": 2, **bad})


# ------------------------------------------------------------------------------------------ step-1 losses


@pytest.mark.parametrize(
    "loss_type, expected",
    [
        ("hinge", 1.0),  # relu(1 - beta * 0)
        ("ipo", (1 / (2 * 0.1)) ** 2),  # (0 - 1 / (2 beta))^2 = 25
        ("nca_pair", 2 * math.log(2)),  # -log s(0) - 0.5 log s(0) - 0.5 log s(0)
        ("bco_pair", 2 * math.log(2)),  # -log s(0) - log s(-0)
        ("sppo_hard", 2 * (0.5 / 0.1) ** 2),  # (0 - 1/(2 beta))^2 + (0 + 1/(2 beta))^2 = 50
        ("apo_zero", 1.0),  # (1 - s(0)) + s(0)
    ],
)
def test_dpo_loss_variants_at_step_1(tmp_path, tiny_model_dir, loss_type, expected):
    """At step 1 the policy is the reference: every log-ratio is 0 and each loss has the closed form above."""
    cfg = make_cfg(tmp_path, tiny_model_dir, method="dpo", max_steps=1, dpo={"loss_type": [loss_type]})
    (first,) = train(cfg).metrics
    assert first["loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_kto_first_step_loss_is_half_the_weight_of_each_example(tmp_path, tiny_model_dir, finetune):
    """At step 1 the policy is the reference: every log-ratio and the KL estimate are 0, so each desirable
    example's loss is 1 - s(0) = 1/2 and each undesirable one's 1 - s(0) = 1/2, times its weight; the step's
    loss is their mean over the first device batch (TRL reads the shuffled rows in order)."""
    weights = {"desirable_weight": 1.0, "undesirable_weight": 0.25}
    cfg = make_cfg(
        tmp_path,
        tiny_model_dir,
        method="kto",
        max_steps=2,
        queries_per_device=4,
        kto=weights,
        model={"finetune": finetune},
    )
    first, second = train(cfg).metrics
    labels = load_from_disk(str(tmp_path / "run" / DATASET))["label"][:4]
    assert 0 < sum(labels) < 4, labels  # the seeded shuffle mixed records and sides
    expected = sum(0.5 * (1.0 if desirable else 0.25) for desirable in labels) / 4
    assert first["loss"] == pytest.approx(expected, abs=1e-6)
    assert first["kl"] == 0.0 and first["rewards_chosen"] == 0.0 and first["rewards_rejected"] == 0.0
    assert second["loss"] != pytest.approx(first["loss"], abs=1e-6)


def _one_pair(tmp_path, tiny_model_dir, method, **section):
    data = str(one_query_data(tmp_path))
    cfg = make_cfg(tmp_path, tiny_model_dir, method=method, data=data, max_steps=1, **section)
    (first,) = train(cfg).metrics
    (pair,) = load_from_disk(str(tmp_path / "run" / DATASET))
    model, _ = load_model(cfg.model, prepare=False)
    chosen = response_logps(model, pair["prompt_ids"], pair["chosen_ids"]).mean().item()
    rejected = response_logps(model, pair["prompt_ids"], pair["rejected_ids"]).mean().item()
    return first, pair, model, chosen, rejected


def test_orpo_first_step_loss_from_log_probs_computed_here(tmp_path, tiny_model_dir):
    """ORPO (TRL 1.16): NLL of prompt + chosen minus beta * log s(log odds), with the log odds of the mean
    per-token log-probs of the responses, log(p/(1-p)) for chosen minus for rejected."""
    first, pair, model, chosen, rejected = _one_pair(tmp_path, tiny_model_dir, "orpo", orpo={"beta": 0.5})
    log_odds = (chosen - rejected) - (math.log(-math.expm1(chosen)) - math.log(-math.expm1(rejected)))
    nll = sequence_nll(model, pair["prompt_ids"] + pair["chosen_ids"])
    assert first["nll_loss"] == pytest.approx(nll, abs=1e-4)
    assert first["log_odds_ratio"] == pytest.approx(F.logsigmoid(torch.tensor(log_odds)).item(), abs=1e-4)
    assert first["loss"] == pytest.approx(nll - 0.5 * F.logsigmoid(torch.tensor(log_odds)).item(), abs=1e-4)


def test_simpo_first_step_loss_from_log_probs_computed_here(tmp_path, tiny_model_dir):
    """SimPO: -log s(beta * (mean log-prob per token of chosen - of rejected) - gamma), no NLL term."""
    first, _, _, chosen, rejected = _one_pair(tmp_path, tiny_model_dir, "simpo", simpo={"beta": 2.0, "gamma": 0.5})
    expected = -F.logsigmoid(torch.tensor(2.0 * (chosen - rejected) - 0.5)).item()
    assert first["loss"] == pytest.approx(expected, abs=1e-4)
    assert first["logps_chosen"] == pytest.approx(chosen, abs=1e-4)


# ------------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("method", NEW)
@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_each_new_method_changes_every_trainable_parameter(tmp_path, tiny_model_dir, method, finetune):
    cfg = make_cfg(
        tmp_path,
        tiny_model_dir,
        method=method,
        max_steps=3,
        queries_per_device=2,
        model={"finetune": finetune, "lora": {"r": 4, "alpha": 8}},
        optim={"lr": 1e-2, "scheduler": "constant"},
    )
    assert_every_trainable_parameter_changes(cfg, finetune)


@pytest.mark.parametrize("method", NEW)
def test_cli_trains_the_new_methods(tmp_path, tiny_model_dir, capsys, method):
    code = cli_main(
        ["train", "--method", method, "--data", str(EXAMPLE_DATA), "--model", str(tiny_model_dir)]
        + ["--output-dir", str(tmp_path / "o"), "--max-steps", "1", "-o", "max_prompt_tokens=48"]
        + ["-o", "queries_per_device=2"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"step     1: {METHODS[method].step_line(metrics(tmp_path / 'o')[0])}" in out
