"""One loader for trained checkpoints: evaluation sees a LoRA chain exactly as training built it.

A chain LoRA SFT -> LoRA SAMI (or DPO) saves only the last adapter, trained on the merged SFT model. Loading
it onto the original base (what peft's ``AutoPeftModelForCausalLM`` does, from ``base_model_name_or_path``)
silently drops the SFT step; ``load_trained`` rebuilds the chain. The runs use a large learning rate so that
every adapter moves the logits far more than the tolerance of the comparisons.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

import sami.models.loading as models
from sami.backends.transformers_backend import load_inference_model
from sami.cli import main as cli_main
from sami.eval.store import read_jsonl
from sami.models.loading import load_trained, materialize
from sami.train.run import train
from tests.helpers import EXAMPLE_DATA, make_cfg

LORA = {"finetune": "lora", "lora": {"r": 4, "alpha": 8}}
FAST = {"lr": 3e-2, "scheduler": "constant"}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_model_dir):
    """Three real runs: LoRA SFT, then LoRA SAMI and LoRA DPO each with ``init_from`` the SFT run folder."""
    root = tmp_path_factory.mktemp("chain")
    sft = train(make_cfg(root, tiny_model_dir, "sft", method="sft", max_steps=3, model=LORA, optim=FAST))
    runs = {"sft": sft}
    for method in ("sami", "dpo"):
        start = str(sft.output_dir)
        kw = dict(method=method, max_steps=3, init_from=start, model=LORA, optim=FAST)
        cfg = make_cfg(root, tiny_model_dir, method, **kw)
        runs[method] = train(cfg)
    return runs


def _logits(model, ids):
    with torch.no_grad():
        return model.to("cpu")(input_ids=ids).logits.float()


def _merged(base, *adapters):
    """The chain built by hand: each adapter merged, in order, into what the previous ones gave."""
    from peft import PeftModel

    for adapter in adapters:
        base = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    return base


def _base(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


@pytest.fixture
def ids(tokenizer):
    return torch.tensor([tokenizer("Human: How do plants drink?\n\nAssistant: Through their roots.")["input_ids"]])


@pytest.mark.parametrize("method", ["sami", "dpo"])
def test_evaluation_loads_the_whole_chain(chain, tiny_model_dir, ids, method):
    run, sft = chain[method], chain["sft"]
    assert (run.model_dir / "adapter_config.json").is_file()
    expected = _logits(_merged(_base(tiny_model_dir), sft.model_dir, run.model_dir), ids)
    last_only = _logits(_merged(_base(tiny_model_dir), run.model_dir), ids)  # what AutoPeftModel gave
    sft_only = _logits(_merged(_base(tiny_model_dir), sft.model_dir), ids)
    assert (expected - last_only).abs().max() > 0.05  # the SFT step matters ...
    assert (expected - sft_only).abs().max() > 0.05  # ... and so does the last one
    for ref in (run.output_dir, run.model_dir):
        model, tokenizer = load_inference_model(str(ref))
        torch.testing.assert_close(_logits(model, ids), expected, atol=1e-5, rtol=1e-5)
        assert not hasattr(model, "peft_config") and tokenizer.pad_token_id is not None


def test_training_and_evaluation_load_the_same_model(chain, ids, tiny_model_dir):
    """``init_from`` (training) and the evaluation loader are one path: same weights, same tokenizer."""
    run = chain["sami"]
    cfg = models.ModelConfig(name_or_path=str(tiny_model_dir), finetune="lora")
    trained, tok_a = models.load_model(cfg, init_from=str(run.output_dir), prepare=False)
    evaluated, tok_b = load_inference_model(str(run.model_dir))
    torch.testing.assert_close(_logits(trained, ids), _logits(evaluated, ids), atol=0, rtol=0)
    assert tok_a.get_vocab() == tok_b.get_vocab()


def test_an_adapter_without_a_tokenizer_takes_the_chains(chain, tmp_path, ids, tiny_model_dir):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors", "sami_config.yaml"):
        shutil.copy(chain["sami"].model_dir / name, bare / name)
    model, tokenizer = load_trained(bare)
    reference, _ = load_trained(chain["sami"].model_dir)
    torch.testing.assert_close(_logits(model, ids), _logits(reference, ids), atol=0, rtol=0)
    assert tokenizer.name_or_path == str(chain["sft"].model_dir)  # the chain's own, the nearest one saved


def test_what_is_not_a_model_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing")):
        load_trained(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_trained("runs/nothing/here")  # a relative path, not a hub lookup
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'} holds no model"):
        load_inference_model(str(tmp_path / "empty"))


def test_materialize_merges_a_chain_once_and_reuses_it(chain, tiny_model_dir, ids, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("SAMI_CACHE", str(tmp_path / "cache"))
    assert materialize(str(tiny_model_dir)) == str(tiny_model_dir)  # full weights: the folder itself
    assert materialize("org/some-model") == "org/some-model"  # a hub id: unchanged, nothing loaded
    run = chain["sami"]
    path = materialize(str(run.output_dir))
    assert path.startswith(str(tmp_path / "cache" / "merged"))
    saved = AutoModelForCausalLM.from_pretrained(path)
    assert not (Path(path) / "adapter_config.json").exists()
    expected = _logits(_merged(_base(tiny_model_dir), chain["sft"].model_dir, run.model_dir), ids)
    torch.testing.assert_close(_logits(saved, ids), expected, atol=1e-5, rtol=1e-5)
    assert load_trained(path)[1].get_vocab() == load_trained(run.model_dir)[1].get_vocab()

    def no_merge(*args, **kwargs):
        raise AssertionError("merged again")

    monkeypatch.setattr(models, "load_trained", no_merge)
    assert materialize(str(run.model_dir)) == path  # the same adapter by another name: the cached folder


def test_materialize_key_follows_the_adapter_and_its_parents(chain, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMI_CACHE", str(tmp_path / "cache"))
    key = models._content_key
    sft, sami = chain["sft"].model_dir, chain["sami"].model_dir
    assert key(sft, str(sft), None) != key(sami, str(sami), None)
    copy = tmp_path / "copy"
    shutil.copytree(sami, copy)
    assert key(copy, str(copy), None) == key(sami, str(sami), None)  # content, not location
    config = json.loads((copy / "adapter_config.json").read_text())
    config["lora_alpha"] = 16
    (copy / "adapter_config.json").write_text(json.dumps(config))
    assert key(copy, str(copy), None) != key(sami, str(sami), None)
    assert materialize(str(sft)) != materialize(str(sami)) != materialize(str(sami), dtype=torch.bfloat16)


def test_eval_mi_takes_a_run_folder(chain, tmp_path, tiny_model_dir):
    """``sami eval mi NAME=RUN_FOLDER`` scores the chain as trained; before, only RUN_FOLDER/model loaded."""
    run = chain["sami"]
    out = tmp_path / "eval"
    argv = ["eval", "mi", f"run={run.output_dir}", f"model={run.model_dir}", f"base={tiny_model_dir}"]
    argv += ["--data", str(EXAMPLE_DATA), "--limit", "2", "--output-dir", str(out)]
    argv += ["-o", "mi.max_prompt_tokens=48", "-o", "mi.max_response_tokens=24"]
    cli_main(argv)
    rows = {name: read_jsonl(out / "mi" / f"{name}.jsonl") for name in ("run", "model", "base")}
    assert [r["matrix"] for r in rows["run"]] == [r["matrix"] for r in rows["model"]]
    assert len(rows["run"]) == 2 and rows["run"][0]["matrix"] != rows["base"][0]["matrix"]
