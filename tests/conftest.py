"""Fixtures shared by the test modules; plain helpers are in tests/helpers.py."""

import gc
import os
import shutil
import sys

import pytest

from tests.helpers import EXAMPLE_DATA, QUERIES, ROOT, save_tiny_model, small_tokenizer, tiny_llama, write_jsonl

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module", autouse=True)
def _long_lived_objects_out_of_the_collector_s_way():
    """Before each module, what is alive after a full collection (mostly the libraries imported so far: torch,
    transformers, TRL, ..., about half a million objects) moves to the collector's permanent generation. The
    evaluation and TRL's trainers call gc.collect() after each model, and Python's own full collections run
    as objects pile up; each then scans only what the tests made since, instead of the whole heap (about a
    second per collection). Measured: test_methods.py and test_eval_runs.py in half the time."""
    gc.collect()
    gc.freeze()
    yield


@pytest.fixture(scope="session", autouse=True)
def _merged_models_left_as_found():
    """The suite leaves the user's cache of merged LoRA chains (``cache_dir()/merged``, what the vLLM backend
    serves) as it found it: the chains the tests train are new each run, about 0.5 GB apiece for the embedded
    model, and would pile up there."""
    from sami.models.loading import cache_dir

    merged = cache_dir() / "merged"
    before = set(merged.iterdir()) if merged.is_dir() else set()
    yield
    for path in set(merged.iterdir()) - before if merged.is_dir() else ():
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def embedded_tokenizer():
    """The embedded model's real tokenizer, 49,152 tokens (converts the GGUF into the cache once per machine).
    For what depends on its vocabulary; tiny models use ``tokenizer``."""
    from sami.models.loading import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory, embedded_tokenizer):
    """The tiny models' tokenizer: ``helpers.small_tokenizer``, 512 tokens with the embedded tokenizer's
    special tokens and chat template."""
    return small_tokenizer(tmp_path_factory.mktemp("small-tokenizer"), embedded_tokenizer)


@pytest.fixture
def lively_model(tokenizer):
    """A tiny random model whose greedy generations are varied text, for generation tests."""
    model = tiny_llama(len(tokenizer), init_std=0.2)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


@pytest.fixture
def tiny_model(tokenizer):
    return tiny_llama(len(tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A saved tiny model folder with the small tokenizer, usable wherever a model path is."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), tokenizer)


@pytest.fixture
def example_records():
    from sami.data.records import read_records

    return read_records(EXAMPLE_DATA)


@pytest.fixture
def pool_file(tmp_path):
    """A query pool file of ``helpers.QUERIES`` (fields ``id``, ``cat``, ``text``)."""
    return write_jsonl(tmp_path / "pool.jsonl", [{"id": k, "cat": c, "text": q} for k, (c, q) in enumerate(QUERIES)])


@pytest.fixture
def registries_restored():
    """Every registry as it was before the test, and the plugin modules the test loaded forgotten (modules from
    examples/ or from a temporary folder), so that a later test can load them afresh."""
    import tempfile

    from sami import plugins
    from sami.backends.base import BACKENDS
    from sami.data.checkers import CHECKERS
    from sami.data.principles import PLUGIN_LIBRARIES
    from sami.data.rewrites import REWRITES
    from sami.eval.judges import JUDGES
    from sami.eval.run import SUITES
    from sami.train.registry import METHODS

    registries = (CHECKERS, REWRITES, JUDGES, SUITES, BACKENDS, METHODS, PLUGIN_LIBRARIES)
    saved, loaded = [dict(r) for r in registries], set(plugins._loaded)
    yield
    for registry, before in zip(registries, saved, strict=True):
        registry.clear()
        registry.update(before)
    plugins._loaded.clear()
    plugins._loaded.update(loaded)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith((str(ROOT / "examples"), tempfile.gettempdir())):
            del sys.modules[name]


@pytest.fixture
def method_plugins(monkeypatch, registries_restored):
    """examples/plugins on the import path, for ``--plugin cpo_method`` and the like."""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugins"))
    return ROOT / "examples" / "plugins"
