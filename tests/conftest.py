import json
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = ROOT / "examples" / "example.jsonl"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded model's real tokenizer (converts the GGUF into the cache once per machine)."""
    from sami.models.loading import load_tokenizer

    return load_tokenizer("smollm2-135m")


def tiny_llama(vocab_size: int, seed: int = 0, init_std: float | None = None, tied: bool = True):
    """A 2-layer random-weight Llama: the real architecture at a size that runs in milliseconds.

    With the default initialisation its greedy output repeats one token; ``init_std`` (e.g. 0.2) redraws the
    weight matrices wider so that generations vary from token to token and from prompt to prompt. ``tied``:
    input and output embeddings shared (as in the embedded model) or separate.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=tied,
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(config).float()
    if init_std is not None:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, init_std)
    return model


@pytest.fixture
def lively_model(tokenizer):
    """A tiny random model whose greedy generations are varied text, for generation tests."""
    model = tiny_llama(len(tokenizer), init_std=0.2)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


@pytest.fixture
def tiny_model(tokenizer):
    return tiny_llama(len(tokenizer))


def save_tiny_model(folder: Path, tokenizer, **kwargs) -> Path:
    """A tiny random model (``tiny_llama``'s options) saved with the embedded tokenizer into ``folder``: a model
    folder usable wherever a model path is."""
    model = tiny_llama(len(tokenizer), **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A saved tiny model folder with the embedded tokenizer, usable wherever a model path is."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), tokenizer)


@pytest.fixture
def example_records():
    from sami.data.records import read_records

    return read_records(EXAMPLE_DATA)


def write_jsonl(path: Path, objs) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path
