import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

import sami.train.sami_loop as loop_module
from sami.cli import build_parser, build_train_config
from sami.cli import main as cli_main
from sami.core.config import ConfigError, from_dict, load_yaml
from sami.models.loading import load_model
from sami.train.config import TrainConfig
from sami.train.encoding import encode_records
from sami.train.reference import lora_reference, precomputed_reference
from sami.train.run import train
from sami.train.runfolder import TrainingDiverged, metric_history
from tests.helpers import EXAMPLE_DATA, assert_same_weights, launch_two_processes, make_cfg, metrics, one_query_data


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_steps_on_one_query_lower_loss_and_change_every_parameter(tmp_path, tiny_model_dir, finetune):
    from accelerate.utils import set_seed
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = make_cfg(
        tmp_path,
        tiny_model_dir,
        data=str(one_query_data(tmp_path)),
        max_steps=6,
        model={"finetune": finetune, "lora": {"r": 4, "alpha": 8}},
        optim={"lr": 2e-2 if finetune == "lora" else 5e-3, "scheduler": "constant"},
    )
    set_seed(cfg.seed)  # train() seeds the same way before building the model
    before_model, _ = load_model(cfg.model)
    before = {n: p.detach().clone() for n, p in before_model.named_parameters() if p.requires_grad}

    result = train(cfg)
    losses = [m["loss"] for m in metrics(result.output_dir)]
    assert losses[-1] < losses[0] - 0.05, losses

    after_model = AutoModelForCausalLM.from_pretrained(result.model_dir if finetune == "full" else tiny_model_dir)
    if finetune == "lora":
        after_model = PeftModel.from_pretrained(after_model, result.model_dir)
    after = dict(after_model.named_parameters())
    assert before, "no trainable parameters"
    unchanged = [n for n, p in before.items() if torch.equal(p, after[n].detach())]
    assert not unchanged, f"parameters that did not change: {unchanged}"


def test_accumulation_1x4_equals_4x1(tmp_path, tiny_model_dir):
    a = train(make_cfg(tmp_path, tiny_model_dir, "a", queries_per_device=1, gradient_accumulation=4))
    b = train(make_cfg(tmp_path, tiny_model_dir, "b", queries_per_device=4, gradient_accumulation=1))
    assert_same_weights(a.model_dir, b.model_dir)
    for ma, mb in zip(metrics(a.output_dir), metrics(b.output_dir), strict=True):
        assert ma["loss"] == pytest.approx(mb["loss"], abs=1e-6)


def test_resume_equals_uninterrupted(tmp_path, tiny_model_dir, monkeypatch):
    kw = dict(max_steps=5, save_every=2, queries_per_device=2)
    whole = train(make_cfg(tmp_path, tiny_model_dir, "whole", **kw))

    cfg = make_cfg(tmp_path, tiny_model_dir, "interrupted", **kw)
    real = loop_module._step_metrics

    def crash_at_step_4(accelerator, step, *args):
        if step == 4:
            raise KeyboardInterrupt  # as if the job were killed during step 4
        return real(accelerator, step, *args)

    monkeypatch.setattr(loop_module, "_step_metrics", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(loop_module, "_step_metrics", real)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg)
    resumed = train(cfg, resume=True)

    assert_same_weights(whole.model_dir, resumed.model_dir)
    assert [m["step"] for m in resumed.metrics] == [3, 4, 5]  # restarted from the step-2 checkpoint
    for mw, mr in zip(whole.metrics[2:], resumed.metrics, strict=True):
        assert mw["loss"] == pytest.approx(mr["loss"], abs=1e-6)
        assert mw["lr"] == pytest.approx(mr["lr"])
    assert [m["step"] for m in metrics(resumed.output_dir)] == [1, 2, 3, 4, 5]  # step 3 once, not twice
    steps = sorted(p.name for p in (resumed.output_dir / "checkpoints").iterdir())
    assert steps == ["checkpoint-4", "checkpoint-5"]  # keep_checkpoints = 2


def test_a_run_folder_with_old_step_n_checkpoints_resumes(tmp_path, tiny_model_dir, monkeypatch):
    """SAMI named its checkpoints step-N before it wrote checkpoint-N as the TRL methods do: a folder of such
    checkpoints still refuses a fresh run, resumes from its newest one, rotates them away, and is still no
    model to start from."""
    kw = dict(max_steps=5, save_every=2, queries_per_device=2)
    whole = train(make_cfg(tmp_path, tiny_model_dir, "whole", **kw))

    cfg = make_cfg(tmp_path, tiny_model_dir, "old", **kw)
    real = loop_module._step_metrics

    def crash_at_step_5(accelerator, step, *args):
        if step == 5:
            raise KeyboardInterrupt
        return real(accelerator, step, *args)

    monkeypatch.setattr(loop_module, "_step_metrics", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(loop_module, "_step_metrics", real)
    checkpoints = Path(cfg.output_dir) / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    for step in (2, 4):  # as an earlier version left them: a manifest lists files by path inside the folder
        manifest = json.loads((checkpoints / f"checkpoint-{step}" / "manifest.json").read_text())
        assert manifest["step"] == step and not any("checkpoint-" in name for name in manifest["files"])
        (checkpoints / f"checkpoint-{step}").rename(checkpoints / f"step-{step}")

    with pytest.raises(FileExistsError, match=r"\(step-4\); pass --resume"):
        train(cfg)
    with pytest.raises(ValueError, match="training-state checkpoint"):
        load_model(cfg.model, init_from=str(checkpoints / "step-4"))
    resumed = train(cfg, resume=True)

    assert [m["step"] for m in resumed.metrics] == [5]  # from step-4, the newest
    assert_same_weights(whole.model_dir, resumed.model_dir)
    assert resumed.metrics[0]["loss"] == pytest.approx(whole.metrics[4]["loss"], abs=1e-6)
    assert resumed.metrics[0]["lr"] == pytest.approx(whole.metrics[4]["lr"])
    assert [m["step"] for m in metrics(resumed.output_dir)] == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-5", "step-4"]  # keep_checkpoints = 2


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path, tiny_model_dir, monkeypatch):
    cfg = make_cfg(tmp_path, tiny_model_dir, max_steps=4, save_every=2)
    real = loop_module._micro_loss
    calls = {"n": 0}

    def nan_on_third_step(*args):
        calls["n"] += 1
        loss, mats, refs = real(*args)
        return (loss * float("nan") if calls["n"] == 3 else loss), mats, refs

    monkeypatch.setattr(loop_module, "_micro_loss", nan_on_third_step)
    with pytest.raises(TrainingDiverged, match="step 3"):
        train(cfg)
    out = Path(cfg.output_dir)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert not (out / "model").exists()
    assert [m["step"] for m in metrics(out)] == [1, 2]
    # The good checkpoint still loads: resuming (without the NaN) finishes the run.
    monkeypatch.setattr(loop_module, "_micro_loss", real)
    result = train(cfg, resume=True)
    assert [m["step"] for m in result.metrics] == [3, 4]
    assert all(math.isfinite(m["loss"]) for m in result.metrics)


def test_resolved_config_is_written(tmp_path, tiny_model_dir):
    cfg = make_cfg(tmp_path, tiny_model_dir, max_steps=1)
    result = train(cfg)
    prov = json.loads((result.model_dir / "provenance.json").read_text())
    assert prov["steps"] == 1 and prov["versions"]["torch"] == torch.__version__
    assert prov["data"]["sha256"] == hashlib.sha256(EXAMPLE_DATA.read_bytes()).hexdigest()
    for path in (result.output_dir / "config.yaml", result.model_dir / "sami_config.yaml"):
        written = load_yaml(path)
        assert from_dict(TrainConfig, written) == cfg
        assert written["sami"]["layout"] == "shared"  # defaults are written out


def test_cli_reports_malformed_data_with_file_and_line(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    lines = EXAMPLE_DATA.read_text().splitlines()[:2]
    record = json.loads(lines[1])
    record["responses"] = record["responses"][:1]
    bad.write_text(lines[0] + "\n" + json.dumps(record) + "\n")
    code = cli_main(["train", "--data", str(bad), "--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: field 'responses'" in err


def test_cli_config_overrides(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data: x.jsonl\noptim: {lr: 1.0e-4}\n")
    args = build_parser().parse_args(
        ["train", "--config", str(cfg_file), "--max-steps", "3", "-o", "optim.lr=2e-5", "-o", "model.finetune=lora"]
    )

    cfg = build_train_config(args)
    assert cfg.max_steps == 3 and cfg.optim.lr == 2e-5 and cfg.model.finetune == "lora" and cfg.data == "x.jsonl"
    cfg_file.write_text("optim: {learning_rate: 1.0e-4}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: optim: unknown key\(s\) \['learning_rate'\]"):
        build_train_config(build_parser().parse_args(["train", "--config", str(cfg_file)]))
    with pytest.raises(ConfigError, match="optim.lr: expected a number"):
        build_train_config(build_parser().parse_args(["train", "-o", "optim.lr=fast"]))
    with pytest.raises(ConfigError, match="finetune"):
        build_train_config(build_parser().parse_args(["train", "-o", "model.finetune=half"]))


@pytest.mark.distributed
def test_two_processes_match_one(tmp_path, tiny_model_dir):
    """Two gloo processes with one query each per step equal one process with two queries per step."""
    one = train(make_cfg(tmp_path, tiny_model_dir, "one", queries_per_device=2, max_steps=3))
    out = tmp_path / "two"
    proc = launch_two_processes(
        ["--data", str(EXAMPLE_DATA), "--model", str(tiny_model_dir), "--output-dir", str(out), "--max-steps", "3"]
        + ["-o", "max_prompt_tokens=48", "-o", "max_response_tokens=24", "-o", "queries_per_device=1"]
        + ["-o", "optim.lr=1e-3"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Two processes sum gradients in another order (gloo all-reduce, one thread each): on this CPU that left
    # one weight 2.2e-5 away after three AdamW steps; one step of a real difference moves weights by ~lr = 1e-3.
    assert_same_weights(one.model_dir, out / "model", atol=1e-4)
    for m1, m2 in zip(metrics(one.output_dir), metrics(out), strict=True):
        assert m1["loss"] == pytest.approx(m2["loss"], abs=1e-5)
        assert m1["tokens"] == m2["tokens"]


def test_bf16_autocast_and_gradient_checkpointing_train(tmp_path, tiny_model_dir):
    """bf16 autocast changes the first loss by rounding only; checkpointing changes nothing."""
    plain = train(make_cfg(tmp_path, tiny_model_dir, "fp32", max_steps=1)).metrics[0]["loss"]
    ckpt = train(make_cfg(tmp_path, tiny_model_dir, "ckpt", max_steps=1, model={"gradient_checkpointing": True}))
    bf16 = train(make_cfg(tmp_path, tiny_model_dir, "bf16", max_steps=1, precision="bf16"))
    assert ckpt.metrics[0]["loss"] == pytest.approx(plain, abs=1e-6)
    assert bf16.metrics[0]["loss"] != plain  # autocast really computed in bf16
    assert bf16.metrics[0]["loss"] == pytest.approx(plain, abs=2e-2)


def test_micro_batch_mixing_constitution_counts_averages_per_query(tokenizer, tiny_model):
    from sami import encode_query, sami_loss
    from sami.core.logprobs import batch_logprob_matrices

    cfg = TrainConfig()
    two = [encode_query(tokenizer, [f"p{i} {k}" for i in range(2)], [f" r{i} {k}" for i in range(2)]) for k in range(2)]
    three = encode_query(tokenizer, [f"q{i}" for i in range(3)], [f" s{i}" for i in range(3)])
    loss, mats, refs = loop_module._micro_loss(tiny_model, cfg, [two[0], three, two[1]], tokenizer.pad_token_id)
    pad = tokenizer.pad_token_id
    expected = (
        2 * sami_loss(batch_logprob_matrices(tiny_model, two, pad_token_id=pad))
        + sami_loss(batch_logprob_matrices(tiny_model, [three], pad_token_id=pad))
    ) / 3
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert sorted(m.shape for m in mats) == [(1, 3, 3), (2, 2, 2)] and refs == [None, None]
    with pytest.raises(ValueError, match="constitution_weights has 2 entries; records have C = 3"):
        loop_module._micro_loss(
            tiny_model, from_dict(TrainConfig, {"sami": {"constitution_weights": [1, 2]}}), [three], pad
        )


def test_non_finite_gradient_stops_training(tmp_path, tiny_model_dir, monkeypatch):
    real_load = loop_module.load_model
    calls = {"n": 0}

    def load_with_poisoned_gradient(*args, **kwargs):
        model, tokenizer = real_load(*args, **kwargs)

        def poison(grad):
            calls["n"] += 1
            return grad * float("inf") if calls["n"] == 2 else grad

        model.get_input_embeddings().weight.register_hook(poison)
        return model, tokenizer

    monkeypatch.setattr(loop_module, "load_model", load_with_poisoned_gradient)
    cfg = make_cfg(tmp_path, tiny_model_dir, max_steps=3, save_every=1, optim={"max_grad_norm": 0.0})
    with pytest.raises(TrainingDiverged, match="gradient norm at step 2"):
        train(cfg)
    assert sorted(p.name for p in (Path(cfg.output_dir) / "checkpoints").iterdir()) == ["checkpoint-1"]


def test_anchored_sami_trains_and_logs_fluency(tmp_path, tiny_model_dir):
    """nll_weight > 0: the run logs diag_logprob each step, and its loss is plain SAMI's plus
    nll_weight * -diag_logprob (at step 1, where both runs have the same weights)."""
    plain = train(make_cfg(tmp_path, tiny_model_dir, "plain", max_steps=1))
    anchored = train(make_cfg(tmp_path, tiny_model_dir, "nll", max_steps=3, sami={"nll_weight": 0.2}))
    logged = metrics(anchored.output_dir)
    assert [m["step"] for m in logged] == [1, 2, 3]
    for m in logged:
        assert m["diag_logprob"] < 0
        assert "ref_penalty" not in m
    first, base = logged[0], metrics(plain.output_dir)[0]
    assert base["diag_logprob"] == pytest.approx(first["diag_logprob"], abs=1e-6)
    assert first["loss"] == pytest.approx(base["loss"] - 0.2 * first["diag_logprob"], abs=1e-5)


def test_lora_reference_is_the_network_with_adapters_disabled(tokenizer, tiny_model):
    from peft import get_peft_model

    from sami import encode_query
    from sami.core.logprobs import batch_logprob_matrices
    from sami.models.loading import lora_config

    cfg = from_dict(TrainConfig, {"model": {"finetune": "lora", "lora": {"r": 4, "alpha": 8}}})
    group = [
        encode_query(tokenizer, [f"p{i} {k}" for i in range(2)], [f" r{i} {k}" for i in range(2)]) for k in range(2)
    ]
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        base = torch.diagonal(batch_logprob_matrices(tiny_model, group, pad_token_id=pad), dim1=1, dim2=2)
    peft_model = get_peft_model(tiny_model, lora_config(cfg.model))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)  # adapters that change the outputs
        adapted = torch.diagonal(batch_logprob_matrices(peft_model, group, pad_token_id=pad), dim1=1, dim2=2)
    reference = lora_reference(peft_model, peft_model, cfg, pad)(group)
    assert not torch.allclose(adapted, base, atol=1e-3)
    torch.testing.assert_close(reference, base, atol=1e-6, rtol=0)
    assert peft_model.training  # the reference pass puts the model back in training mode


def test_lora_ref_anchor_is_zero_at_step_1_then_grows(tmp_path, tiny_model_dir):
    """LoRA's B matrices start at zero, so at step 1 the policy is exactly its reference: log-ratio 0."""
    cfg = make_cfg(
        tmp_path,
        tiny_model_dir,
        max_steps=3,
        model={"finetune": "lora", "lora": {"r": 4, "alpha": 8}},
        optim={"lr": 2e-2, "scheduler": "constant"},
        sami={"ref_weight": 1.0},
    )
    logged = metrics(train(cfg).output_dir)
    assert logged[0]["ref_log_ratio"] == 0.0 and logged[0]["ref_penalty"] == 0.0
    assert logged[-1]["ref_penalty"] > 0


def test_full_finetuning_reference_is_the_starting_model_even_on_resume(tmp_path, tiny_model_dir, tokenizer):
    from sami.core.logprobs import batch_logprob_matrices
    from sami.data.records import read_records

    kw = dict(max_steps=3, optim={"scheduler": "constant"}, sami={"ref_weight": 1.0})
    cfg = make_cfg(tmp_path, tiny_model_dir, "whole", **kw)
    model, _ = load_model(cfg.model)
    queries = encode_records(read_records(cfg.data), tokenizer, cfg)
    reference = precomputed_reference(model, cfg, queries, tokenizer.pad_token_id)
    for q in queries[:3]:
        with torch.no_grad():
            own = torch.diagonal(batch_logprob_matrices(model, [q], pad_token_id=tokenizer.pad_token_id)[0])
        torch.testing.assert_close(reference([q])[0], own, atol=1e-6, rtol=0)

    whole = metrics(train(cfg).output_dir)
    assert abs(whole[0]["ref_log_ratio"]) < 1e-5 and whole[0]["ref_penalty"] < 1e-10  # batching order only
    assert whole[-1]["ref_penalty"] > 1e-8
    # Stop after 2 steps, resume to 3: the reference is recomputed from the starting model, not the checkpoint.
    part = make_cfg(tmp_path, tiny_model_dir, "part", save_every=1, **{**kw, "max_steps": 2})
    train(part)
    part.max_steps = 3
    resumed = train(part, resume=True).metrics
    assert resumed[0]["step"] == 3
    assert resumed[0]["ref_penalty"] == pytest.approx(whole[2]["ref_penalty"], rel=1e-3, abs=1e-12)


def test_queries_read_are_those_of_every_micro_batch():
    cfg = from_dict(TrainConfig, {"queries_per_device": 2, "gradient_accumulation": 3})
    for rank in range(2):
        expected = {
            i for step in range(4) for micro in range(3) for i in loop_module.micro_batch(cfg, 7, step, micro, rank, 2)
        }
        assert loop_module.queries_read(cfg, 7, 4, rank, 2) == sorted(expected)
    assert loop_module.queries_read(cfg, 50, 1, 0, 1) != list(range(50))  # one step reads only 6 of 50


def test_fluency_watch_compares_windows_and_warns_once(caplog):
    watch = loop_module.FluencyWatch(0.5, window=2)
    with caplog.at_level("WARNING", logger="sami.train.sami_loop"):
        assert not watch.update(1, -1.0)
        assert not watch.update(2, -1.2)  # first window: mean -1.1
        assert not watch.update(3, -2.5)  # one noisy step does not warn: fewer than two windows yet
        assert not watch.update(4, 0.0)  # last window mean -1.25: 0.15 below
        assert not watch.update(5, -1.5)  # -0.75
        assert watch.update(6, -1.8)  # -1.65: 0.55 below -1.1
        assert not watch.update(7, -9.0)  # once only
    assert len(caplog.records) == 1 and "step 6: diag_logprob over the last 2 steps is -1.650" in caplog.text
    assert not loop_module.FluencyWatch(0.0, window=1).update(1, -1.0)
    assert not loop_module.FluencyWatch(None, [-1.0], window=1).update(2, -9.0)
    resumed = loop_module.FluencyWatch(0.5, [-1.0, -1.2, -1.4], window=2)  # read back from metrics.jsonl
    assert resumed.update(4, -1.9)  # last two -1.4, -1.9: mean -1.65


def test_logged_history_is_read_back_in_step_order(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "diag_logprob": -2.0}\n{"step": 1, "diag_logprob": -1.0}\n{"step": 3}\n')
    assert metric_history(path, "diag_logprob") == [-1.0, -2.0]
    assert metric_history(tmp_path / "missing.jsonl", "diag_logprob") == []


@pytest.mark.parametrize("key", ["nll_weight", "ref_weight", "fluency_margin"])
def test_anchor_options_are_validated(key):
    with pytest.raises(ValueError, match=f"sami.{key} must be a non-negative number"):
        from_dict(TrainConfig, {"sami": {key: -0.1}})
    assert from_dict(TrainConfig, {"sami": {"fluency_margin": None}}).sami.fluency_margin is None


def test_metrics_file_reader_skips_only_a_cut_last_line(tmp_path):
    """The one reader of metrics.jsonl: a line cut by a kill is the last one and is left out (and removed on
    resume); any other unreadable line is an error naming the file and line."""
    from sami.train.runfolder import append_metrics, read_metrics, truncate_metrics

    path = tmp_path / "metrics.jsonl"
    for step in (1, 2, 3):
        append_metrics(path, {"step": step, "loss": step / 2})
    with path.open("a") as f:
        f.write('{"step": 4, "lo')  # killed while writing step 4
    assert [r["loss"] for r in read_metrics(path)] == [0.5, 1.0, 1.5]
    truncate_metrics(path, 2)
    assert path.read_text() == '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 1.0}\n'
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a metrics record"):
        read_metrics(path)
    assert read_metrics(tmp_path / "missing.jsonl") == []
