"""SFT and DPO through TRL, chains between methods, and config comparison, on tiny random models."""

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from sami.cli import main as cli_main
from sami.core.config import load_yaml
from sami.core.objective import sami_loss
from sami.data.records import read_records
from sami.models.loading import load_model, merged_weights
from sami.train.config import NOT_USED, compare_configs
from sami.train.encoding import encode_records
from sami.train.run import train
from sami.train.trl_runner import build_dataset, make_trainer
from tests.helpers import (
    EXAMPLE_DATA,
    assert_every_trainable_parameter_changes,
    assert_same_weights,
    launch_two_processes,
    make_cfg,
    metrics,
    one_query_data,
)


def sum_logp(model, prompt_ids, response_ids) -> float:
    """log p(response | prompt), summed over the response tokens (the closing token included)."""
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    logp = torch.log_softmax(logits[0, :-1], dim=-1)
    targets = ids[0, 1:]
    n = len(prompt_ids)
    return logp[n - 1 :, :].gather(1, targets[n - 1 :, None]).sum().item()


def test_sft_puts_no_loss_on_prompt_tokens(tmp_path, tiny_model_dir):
    cfg = make_cfg(tmp_path, tiny_model_dir, method="sft")
    trainer = make_trainer(cfg)
    rows = [trainer.train_dataset[i] for i in range(3)]
    batch = trainer.data_collator(rows)
    ours = build_dataset(cfg, read_records(cfg.data), trainer.processing_class)
    assert [r["input_ids"] for r in rows] == ours["input_ids"][:3]
    prompt_lengths = [mask.index(1) for mask in ours["completion_mask"][:3]]
    for k, n in enumerate(prompt_lengths):
        length = len(rows[k]["input_ids"])
        assert (batch["labels"][k, :n] == -100).all()  # prompt: masked
        assert torch.equal(batch["labels"][k, n:length], torch.tensor(rows[k]["input_ids"][n:]))  # completion: kept
        assert (batch["labels"][k, length:] == -100).all()  # padding: masked

    # TRL's loss is the mean negative log-likelihood of completion tokens, nothing else.
    model = trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, {k: v for k, v in batch.items()})
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    token_nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), reduction="none"
    )
    counted = batch["labels"][:, 1:].reshape(-1) != -100
    assert counted.sum() == sum(len(r["input_ids"]) - n for r, n in zip(rows, prompt_lengths, strict=True))
    assert loss.item() == pytest.approx(token_nll[counted].mean().item(), rel=1e-5)


def test_training_shows_the_progress_bar_but_prints_no_log_dicts(tmp_path, tiny_model_dir, capsys):
    """Each step's metrics go to metrics.jsonl only; HF's progress callback would also print them as dicts."""
    cfg = make_cfg(tmp_path, tiny_model_dir, method="sft", max_steps=2)
    capsys.readouterr()
    result = train(cfg)
    captured = capsys.readouterr()
    assert "'loss':" not in captured.out and "'train_runtime':" not in captured.out
    assert not [line for line in captured.out.splitlines() if line.lstrip().startswith("{")]
    assert "2/2" in captured.err  # the bar itself is kept
    logged = metrics(result.output_dir)
    assert [m["step"] for m in logged] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in logged)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_dpo_first_step_loss_is_log_2(tmp_path, tiny_model_dir, finetune):
    """At step 1 the policy is the reference: every implicit reward is 0 and -log sigmoid(0) = log 2.

    Full fine-tuning takes the precomputed reference log-probs; LoRA the network with adapters disabled.
    """
    cfg = make_cfg(tmp_path, tiny_model_dir, method="dpo", max_steps=2, model={"finetune": finetune})
    first, second = train(cfg).metrics
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards_margins"] == 0.0 and first["rewards_chosen"] == 0.0
    assert second["loss"] != pytest.approx(math.log(2), abs=1e-6)  # the policy moved away from the reference


def test_dpo_with_a_kept_reference_model_matches_precomputed(tmp_path, tiny_model_dir):
    kept = make_cfg(tmp_path, tiny_model_dir, "kept", method="dpo", max_steps=2, dpo={"precompute_ref_logps": False})
    pre = make_cfg(tmp_path, tiny_model_dir, "pre", method="dpo", max_steps=2)
    for a, b in zip(train(kept).metrics, train(pre).metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


@pytest.mark.parametrize("method, finetune", [("sft", "full"), ("sft", "lora"), ("dpo", "full"), ("dpo", "lora")])
def test_each_method_changes_every_trainable_parameter(tmp_path, tiny_model_dir, method, finetune):
    cfg = make_cfg(
        tmp_path,
        tiny_model_dir,
        method=method,
        data=str(one_query_data(tmp_path)),
        max_steps=3,
        model={"finetune": finetune, "lora": {"r": 4, "alpha": 8}},
        optim={"lr": 1e-2, "scheduler": "constant"},
    )
    assert_every_trainable_parameter_changes(cfg, finetune)


def test_sft_then_dpo_starts_from_the_merged_sft_adapter(tmp_path, tiny_model_dir, caplog):
    """DPO's first-step log-probs are the SFT model's (base + merged adapter) on the one training pair."""
    data = str(one_query_data(tmp_path))
    lora = {"finetune": "lora", "lora": {"r": 4, "alpha": 8}}
    sft = train(make_cfg(tmp_path, tiny_model_dir, "sft", method="sft", data=data, max_steps=4, model=lora))
    assert (sft.model_dir / "adapter_config.json").is_file()

    cfg = make_cfg(
        tmp_path, tiny_model_dir, "dpo", method="dpo", data=data, max_steps=1, init_from=str(sft.output_dir), model=lora
    )
    cfg.optim.weight_decay = 0.125  # the one shared setting that differs from the SFT run
    with caplog.at_level(logging.INFO, logger="sami.train.runfolder"):
        dpo = train(cfg)
    # the log names the shared setting that differs, not what differs in every chain (method, each method's
    # own section); the returned differences keep those too
    logged = caplog.text.split("settings that differ:", 1)[1]
    assert "optim.weight_decay:" in logged and "this run (dpo)=0.125" in logged
    assert "dpo.beta" not in caplog.text and "method:" not in caplog.text

    start, tokenizer = load_model(cfg.model, init_from=str(sft.model_dir), prepare=False)
    base, _ = load_model(cfg.model, prepare=False)
    (pair,) = build_dataset(cfg, read_records(data), tokenizer)
    chosen = sum_logp(start, pair["prompt_ids"], pair["chosen_ids"])
    rejected = sum_logp(start, pair["prompt_ids"], pair["rejected_ids"])
    assert abs(chosen - sum_logp(base, pair["prompt_ids"], pair["chosen_ids"])) > 1e-3  # SFT changed the model
    (first,) = dpo.metrics
    assert first["logps_chosen"] == pytest.approx(chosen, abs=1e-3)
    assert first["logps_rejected"] == pytest.approx(rejected, abs=1e-3)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)  # the reference is the SFT model too

    # A chain of chains: the DPO adapter was trained on the merged SFT model, and is merged onto it again.
    again = merged_weights(dpo.model_dir)
    assert sum_logp(again, pair["prompt_ids"], pair["chosen_ids"]) != pytest.approx(chosen, abs=1e-4)


def test_sft_then_sami_starts_from_the_sft_model(tmp_path, tiny_model_dir):
    """SAMI's first-step loss is the SAMI loss of the fully fine-tuned SFT model, not of the base."""
    data = str(one_query_data(tmp_path))
    sft = train(make_cfg(tmp_path, tiny_model_dir, "sft", method="sft", data=data, max_steps=3))
    cfg = make_cfg(tmp_path, tiny_model_dir, "sami", data=data, max_steps=1, init_from=str(sft.model_dir))
    result = train(cfg)

    def loss_of(model, tokenizer):
        (query,) = encode_records(read_records(data), tokenizer, cfg)
        from sami.core.logprobs import batch_logprob_matrices

        with torch.no_grad():
            return sami_loss(batch_logprob_matrices(model, [query], pad_token_id=tokenizer.pad_token_id)).item()

    start, tokenizer = load_model(cfg.model, init_from=cfg.init_from)
    base, _ = load_model(cfg.model)
    assert result.metrics[0]["loss"] == pytest.approx(loss_of(start, tokenizer), abs=1e-5)
    assert abs(loss_of(start, tokenizer) - loss_of(base, tokenizer)) > 1e-4


def test_init_from_refuses_what_is_not_a_model(tmp_path, tiny_model_dir):
    cfg = make_cfg(tmp_path, tiny_model_dir, max_steps=1, save_every=1)
    result = train(cfg)
    with pytest.raises(ValueError, match="training-state checkpoint"):
        load_model(cfg.model, init_from=str(result.output_dir / "checkpoints" / "checkpoint-1"))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_model(cfg.model, init_from=str(tmp_path / "missing"))


def test_config_differences_between_methods_are_reported(tmp_path, tiny_model_dir, capsys):
    sft = make_cfg(tmp_path, tiny_model_dir, "sft", method="sft", optim={"lr": 2e-3})
    dpo = make_cfg(tmp_path, tiny_model_dir, "dpo", method="dpo", dpo={"beta": 0.2})
    from sami.core.config import to_dict

    diffs = compare_configs({"sft": to_dict(sft), "dpo": to_dict(dpo)})
    assert diffs["optim.lr"] == {"sft": 2e-3, "dpo": 1e-3}
    assert diffs["method"] == {"sft": "sft", "dpo": "dpo"}
    assert diffs["dpo.beta"] == {"sft": NOT_USED, "dpo": 0.2}
    assert diffs["sft.prompt_constitution"] == {"sft": "positive", "dpo": NOT_USED}
    assert not any(k.startswith("sami.") for k in diffs)  # neither trained SAMI
    assert "optim.scheduler" not in diffs and "model.name_or_path" not in diffs

    # From trained runs, on the command line.
    runs = [train(c).output_dir for c in (sft, dpo)]
    assert cli_main(["compare-configs", str(runs[0]), str(runs[1] / "model")]) == 0
    out = capsys.readouterr().out
    assert f"optim.lr: {runs[0]}=0.002, {runs[1] / 'model'}=0.001" in out and "dpo.beta" in out
    assert cli_main(["compare-configs", str(runs[0]), str(runs[0] / "config.yaml")]) == 0
    assert "agree on every setting" in capsys.readouterr().out


def test_baseline_output_folder_and_resume(tmp_path, tiny_model_dir):
    kw = dict(method="dpo", max_steps=3, optim={"scheduler": "constant"})
    whole = train(make_cfg(tmp_path, tiny_model_dir, "whole", **kw))
    cfg = make_cfg(tmp_path, tiny_model_dir, "parts", save_every=1, **{**kw, "max_steps": 2})
    train(cfg)
    out = Path(cfg.output_dir)
    shown = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # .sami.lock: sami.core.locks
    assert shown == ["checkpoints", "config.yaml", "dataset", "metrics.jsonl", "model"]
    assert {"provenance.json", "sami_config.yaml", "model.safetensors"} <= {p.name for p in (out / "model").iterdir()}
    assert json.loads((out / "model" / "provenance.json").read_text())["method"] == "dpo"
    assert load_yaml(out / "config.yaml")["dpo"]["rejected"] == "most_flipped"

    longer = make_cfg(tmp_path, tiny_model_dir, "parts", save_every=1, **kw)
    with pytest.raises(FileExistsError, match="--resume"):
        train(longer)
    resumed = train(longer, resume=True)
    assert [m["step"] for m in resumed.metrics] == [3]
    assert [m["step"] for m in metrics(out)] == [1, 2, 3]
    for a, b in zip(metrics(whole.output_dir), metrics(out), strict=True):
        assert {"step", "loss", "lr", "grad_norm"} <= set(b)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_cli_summary(tmp_path, tiny_model_dir, capsys, method):
    code = cli_main(
        ["train", "--method", method, "--data", str(one_query_data(tmp_path)), "--model", str(tiny_model_dir)]
        + ["--output-dir", str(tmp_path / "o"), "--max-steps", "1", "-o", "max_prompt_tokens=48"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"step     1: {method.upper()} loss" in out and "trained 1 steps" in out


@pytest.mark.distributed
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_two_processes_match_one(tmp_path, tiny_model_dir, method):
    """`accelerate launch` with two gloo processes, one example each per step, equals one process with two."""
    one = train(make_cfg(tmp_path, tiny_model_dir, "one", method=method, queries_per_device=2, max_steps=3))
    out = tmp_path / "two"
    proc = launch_two_processes(
        ["--method", method, "--data", str(EXAMPLE_DATA), "--model", str(tiny_model_dir)]
        + ["--output-dir", str(out), "--max-steps", "3", "-o", "max_prompt_tokens=48", "-o", "max_response_tokens=24"]
        + ["-o", "queries_per_device=1", "-o", "optim.lr=1e-3"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_weights(one.model_dir, out / "model")
    for m1, m2 in zip(metrics(one.output_dir), metrics(out), strict=True):
        assert m1["loss"] == pytest.approx(m2["loss"], abs=1e-5)


@pytest.mark.slow
def test_two_steps_of_each_method_on_the_embedded_model_with_lora(tmp_path):
    """SFT, DPO and SAMI each train two LoRA steps of the embedded model: finite losses, non-zero gradients, an
    adapter saved; DPO starts at log 2 and SAMI's first losses lie between 0 and 5 (log 4 at chance)."""
    data = {
        "data": str(EXAMPLE_DATA),
        "max_steps": 2,
        "max_prompt_tokens": 48,
        "max_response_tokens": 24,
        "model": {"finetune": "lora", "lora": {"r": 8, "alpha": 16}},
        "optim": {"lr": 1e-4},
    }
    from sami.core.config import from_dict
    from sami.train.config import TrainConfig

    for method in ("sft", "dpo", "sami"):
        cfg = from_dict(TrainConfig, {**data, "method": method, "output_dir": str(tmp_path / method)})
        result = train(cfg)
        assert [m["step"] for m in result.metrics] == [1, 2], method
        assert all(math.isfinite(m["loss"]) and m["grad_norm"] > 0 for m in result.metrics), method
        assert (result.model_dir / "adapter_model.safetensors").is_file()
    assert metrics(tmp_path / "dpo")[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert all(0 < m["loss"] < 5 for m in metrics(tmp_path / "sami"))


def test_a_plain_peft_adapter_is_merged_into_the_base_it_names(tmp_path, tiny_model_dir):
    """Without a sami_config.yaml the base comes from the adapter's own base_model_name_or_path."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from sami.models.loading import ModelConfig, lora_config

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(base, lora_config(ModelConfig(finetune="lora")))
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # a trained-looking adapter (B starts at zero)
    peft.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = peft(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
        merged = merged_weights(tmp_path / "adapter")(input_ids=ids).logits
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(merged, plain, atol=1e-3)


def test_non_finite_loss_stops_before_the_step_is_checkpointed(tmp_path):
    from transformers import TrainerControl, TrainerState

    from sami.train.runfolder import TrainingDiverged
    from sami.train.trl_runner import _metrics_callback

    callback = _metrics_callback(tmp_path / "metrics.jsonl")
    state = TrainerState(global_step=3)
    callback.on_log(None, state, TrainerControl(), logs={"loss": 0.5, "grad_norm": 1.0, "learning_rate": 1e-3})
    with pytest.raises(TrainingDiverged, match="step 3"):
        callback.on_log(None, state, TrainerControl(), logs={"loss": float("nan"), "grad_norm": 1.0})
    with pytest.raises(TrainingDiverged):
        callback.on_log(None, state, TrainerControl(), logs={"loss": 0.5, "grad_norm": float("inf")})
    fp16 = _metrics_callback(tmp_path / "fp16.jsonl", fp16=True)  # the grad scaler skips such a step
    fp16.on_log(None, state, TrainerControl(), logs={"loss": 0.5, "grad_norm": float("inf")})
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [3]
