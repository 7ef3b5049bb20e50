import json

import pytest
import torch

from sami.backends.base import BackendConfig, SamplingParams, make_backend
from sami.backends.openai_backend import OpenAIBackend, ResponseCache
from sami.backends.transformers_backend import TransformersBackend, load_inference_model
from tests.openai_server import serve_openai

PROMPTS = [
    "Human: Name three prime numbers.\n\nAssistant:",
    [{"role": "user", "content": "Write a haiku about rain on a tin roof, please."}],
    "Hi",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}],
    "Human: Explain, in several careful sentences, why the sky looks blue at noon and red at dusk.\n\nAssistant:",
]


@pytest.fixture
def backend(lively_model, tokenizer):
    return TransformersBackend(lively_model, tokenizer, batch_size=3)


def test_batched_greedy_equals_one_at_a_time(lively_model, tokenizer):
    params = SamplingParams(max_new_tokens=12)
    batched = TransformersBackend(lively_model, tokenizer, batch_size=4).generate(PROMPTS, params)
    single = TransformersBackend(lively_model, tokenizer, batch_size=1).generate(PROMPTS, params)
    assert [c[0].text for c in batched] == [c[0].text for c in single]
    assert all(len(c) == 1 and c[0].num_tokens == 12 and c[0].finish_reason == "length" for c in batched)
    assert len({c[0].text for c in batched}) == len(PROMPTS)  # the prompts really were different inputs


def test_stop_string_cuts_the_text(backend, lively_model, tokenizer):
    (free,) = backend.generate(["Hello there"], SamplingParams(max_new_tokens=16))
    text = free[0].text
    # The stop string: one generated token from the middle of the text, plain ASCII and found there first (a
    # byte-level token holding part of a multi-byte character decodes to U+FFFD, which no stop string matches).
    prompt = torch.tensor([backend.encode("Hello there")])
    ids = lively_model.generate(prompt, max_new_tokens=16, do_sample=False)[0, prompt.shape[1] :].tolist()
    starts = [len(tokenizer.decode(ids[:k], skip_special_tokens=True)) for k in range(len(ids))]
    usable = [
        k
        for k in range(2, len(ids) - 2)
        if (piece := tokenizer.decode([ids[k]], skip_special_tokens=True)).strip()
        and piece.isascii()
        and text.find(piece) == starts[k]
    ]
    k = min(usable, key=lambda k: abs(k - len(ids) // 2))
    stop = tokenizer.decode([ids[k]])
    (cut,) = backend.generate(["Hello there"], SamplingParams(max_new_tokens=16, stop=(stop,)))
    assert cut[0].text == text[: starts[k]]
    assert cut[0].finish_reason == "stop"
    assert cut[0].num_tokens == k + 1 < 16  # generation stopped at the token that completed the stop string


def test_end_token_finishes_with_stop(lively_model, tokenizer):
    backend = TransformersBackend(lively_model, tokenizer, batch_size=2)
    prompt = torch.tensor([backend.encode("Once")])
    ids = lively_model.generate(prompt, max_new_tokens=6, do_sample=False)[0, prompt.shape[1] :].tolist()
    backend.eos_ids = [ids[2]]  # pretend the third generated token ends a turn
    (ended,) = backend.generate(["Once"], SamplingParams(max_new_tokens=6))
    end = ids.index(ids[2])
    assert ended[0].finish_reason == "stop" and ended[0].num_tokens == end + 1
    assert ended[0].text == tokenizer.decode(ids[:end])


def test_sampling_n_is_reproducible(backend):
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=4, seed=3)
    first = backend.generate(PROMPTS[:2], params)
    again = backend.generate(PROMPTS[:2], params)
    assert [len(c) for c in first] == [4, 4]
    assert first == again
    assert len({c.text for c in first[0]}) > 1
    other = backend.generate(PROMPTS[:2], SamplingParams(max_new_tokens=8, temperature=1.0, n=4, seed=4))
    assert other != first


def test_generate_iter_yields_every_index_once(backend):
    seen = [i for i, _ in backend.generate_iter(PROMPTS, SamplingParams(max_new_tokens=2))]
    assert sorted(seen) == list(range(len(PROMPTS)))


def test_sampling_params_are_checked():
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(n=2)
    with pytest.raises(ValueError):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ValueError, match="base_url"):
        BackendConfig(kind="openai")
    with pytest.raises(ValueError, match="kind"):
        BackendConfig(kind="tgi")


def test_lora_adapter_folder_is_merged(tmp_path, tiny_model_dir, tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([tokenizer("a short input")["input_ids"]])
    with torch.no_grad():
        expected = peft_model(ids).logits
        merged, tok = load_inference_model(str(tmp_path / "adapter"))
        got = merged(ids).logits
    assert not hasattr(merged, "peft_config")
    assert torch.allclose(got, expected, atol=1e-5)
    assert tok.pad_token_id is not None


def test_make_backend_loads_a_model_folder(tiny_model_dir):
    backend = make_backend(BackendConfig(model=str(tiny_model_dir), batch_size=2))
    assert backend.describe()["batch_size"] == 2
    (out,) = backend.generate(["Hi"], SamplingParams(max_new_tokens=3))
    assert out[0].num_tokens == 3


BUILD_EVERY_KIND = """
import json, sys
from sami.backends.base import BACKENDS, BackendConfig, make_backend

built = {"kinds": sorted(BACKENDS)}
local = make_backend(BackendConfig(model=sys.argv[1], batch_size=2))
built["transformers"] = [type(local).__name__, local.describe()["batch_size"]]
url = "http://127.0.0.1:9/v1"
endpoint = make_backend(BackendConfig(kind="openai", model="m", base_url=url, cache_dir=sys.argv[2]))
built["openai"] = [type(endpoint).__name__, endpoint.describe()["base_url"]]
try:
    built["vllm"] = type(make_backend(BackendConfig(kind="vllm", model=sys.argv[1]))).__name__
except ImportError as err:  # registered, but vLLM is not installed in this environment
    built["vllm"] = str(err)
print(json.dumps(built))
"""


def test_base_alone_builds_every_built_in_kind(tiny_model_dir, tmp_path):
    """A fresh interpreter that imports only ``sami.backends.base`` finds all three built-in kinds registered
    (the package's ``__init__`` imports their modules) and builds them."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", BUILD_EVERY_KIND, str(tiny_model_dir), str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    built = json.loads(done.stdout.splitlines()[-1])
    assert built["kinds"] == ["openai", "transformers", "vllm"]
    assert built["transformers"] == ["TransformersBackend", 2]
    assert built["openai"] == ["OpenAIBackend", "http://127.0.0.1:9/v1"]
    assert built["vllm"] == "VLLMBackend" or "the vllm backend needs vLLM" in built["vllm"]


def _http_backend(base_url, tmp_path, **kw):
    cfg = BackendConfig(kind="openai", model="tiny", base_url=base_url, cache_dir=str(tmp_path / "cache"), **kw)
    return OpenAIBackend(cfg)


def test_http_backend_returns_the_served_models_generations(backend, tmp_path):
    params = SamplingParams(max_new_tokens=10)
    local = backend.generate(PROMPTS, params)
    with serve_openai(backend) as server:
        remote = _http_backend(server.base_url, tmp_path, concurrency=3).generate(PROMPTS, params)
    assert [c[0].text for c in remote] == [c[0].text for c in local]
    assert [c[0].finish_reason for c in remote] == ["length"] * len(PROMPTS)
    chat = [body for body in server.requests if "messages" in body]
    assert len(chat) == 2 and len(server.requests) == len(PROMPTS)


def test_http_backend_retries_429_then_succeeds(backend, tmp_path):
    with serve_openai(backend, faults=["429", "500"]) as server:
        (out,) = _http_backend(server.base_url, tmp_path, concurrency=1).generate(["Hi"], SamplingParams(8))
    assert len(server.requests) == 3
    assert out[0].text == backend.generate(["Hi"], SamplingParams(8))[0][0].text


def test_http_backend_retries_after_a_timeout(backend, tmp_path):
    with serve_openai(backend, faults=[("sleep", 2.0)]) as server:
        remote = _http_backend(server.base_url, tmp_path, concurrency=1, timeout=0.5, max_retries=2)
        (out,) = remote.generate(["Hi"], SamplingParams(8))
    assert len(server.requests) == 2
    assert out[0].num_tokens == 8


def test_http_backend_gives_up_after_its_retries(backend, tmp_path):
    import openai

    from sami.backends.openai_backend import EndpointError

    with serve_openai(backend, faults=["500"] * 3) as server:
        remote = _http_backend(server.base_url, tmp_path, max_retries=1)
        with pytest.raises(EndpointError, match=rf"endpoint {server.base_url} .*HTTP 500") as caught:
            remote.generate(["Hi"], SamplingParams(8))
    assert isinstance(caught.value.__cause__, openai.InternalServerError)
    assert len(server.requests) == 2


def test_an_endpoint_answering_200_with_a_page_is_retried_then_named(backend, tmp_path):
    from sami.backends.openai_backend import EndpointError

    with serve_openai(backend, faults=["html"]) as server:  # once: the retry gets the completion
        (out,) = _http_backend(server.base_url, tmp_path, max_retries=2).generate(["Hi"], SamplingParams(8))
    assert len(server.requests) == 2 and out[0].text == backend.generate(["Hi"], SamplingParams(8))[0][0].text
    with serve_openai(backend, faults=["html"] * 3) as server:
        remote = _http_backend(server.base_url, tmp_path / "other", max_retries=1)
        with pytest.raises(EndpointError) as caught:
            remote.generate(["Hi"], SamplingParams(8))
    assert len(server.requests) == 2
    message = str(caught.value)
    assert message.startswith(f"endpoint {server.base_url} (model 'tiny'): answered with no completion (not JSON")
    assert "upstream busy" in message and len(message.splitlines()) == 1


def test_unreachable_endpoint_is_one_line_naming_the_url(tmp_path, capsys):
    from sami.cli import main
    from tests.helpers import free_port, generate_against

    url = f"http://127.0.0.1:{free_port()}/v1"  # a port nobody listens on
    code = main(generate_against(url, tmp_path / "d.jsonl"))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]  # no bars
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"sami: error: endpoint {url} (model 'm'): cannot connect after 0 retries")


def test_http_cache_hit_sends_no_request_and_key_is_never_stored(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMI_TEST_KEY", "sk-secret-123")
    params = SamplingParams(max_new_tokens=6, temperature=0.7, n=2, seed=1)
    with serve_openai(backend) as server:
        first = _http_backend(server.base_url, tmp_path, api_key_env="SAMI_TEST_KEY")
        a = first.generate(PROMPTS[:2], params)
        assert first.requests_sent == 2
        second = _http_backend(server.base_url, tmp_path, api_key_env="SAMI_TEST_KEY")
        b = second.generate(PROMPTS[:2], params)
        assert second.requests_sent == 0 and len(server.requests) == 2
        c = second.generate(PROMPTS[:1], SamplingParams(max_new_tokens=6, temperature=0.7, n=2, seed=2))
        assert second.requests_sent == 1 and len(server.requests) == 3  # another seed is another request
    assert a == b and c != a[:1]
    stored = "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    assert stored and "sk-secret" not in stored
    assert "sk-secret" not in json.dumps(second.describe())


def test_response_cache_ignores_a_damaged_entry(tmp_path):
    cache = ResponseCache(tmp_path)
    key = cache.key({"a": 1})
    cache.put(key, {"choices": []})
    assert cache.get(key) == {"choices": []}
    cache.path(key).write_text("{not json")
    assert cache.get(key) is None
