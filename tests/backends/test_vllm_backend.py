"""The real vLLM engine and server on the embedded model (``make test-vllm``; skipped where vllm is absent).

Everything here runs float32 on both sides: vLLM's CPU kernels then agree with transformers to ~2e-5 in
log-prob, so greedy answers are compared for equality and log-probs at ``ATOL`` 1e-3 (summation order
differs between the engines; a real difference, such as a missing adapter of the chain, is far larger). In
bfloat16 the two engines' kernels round differently, so a near-tie can turn a greedy answer another way.

One engine (the LoRA chain, through ``materialize``) and one OpenAI-compatible server (what ``vllm serve``
starts; the embedded model) are started per module, one more engine by the ``sami generate`` that is killed
and two by ``eval mi`` through the engine; each takes about a minute on two shared cores. The engine core is a
spawned process, which pytest's own ``__main__`` guard allows.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("vllm", reason="the vLLM tier runs in make test-vllm's environment")

from sami.backends.base import BackendConfig, SamplingParams  # noqa: E402
from sami.backends.openai_backend import OpenAIBackend  # noqa: E402
from sami.backends.tools import prompt_ids  # noqa: E402
from sami.backends.transformers_backend import TransformersBackend  # noqa: E402
from sami.backends.vllm_backend import VLLMBackend  # noqa: E402
from sami.cli import main as cli_main  # noqa: E402
from sami.core.config import from_dict  # noqa: E402
from sami.core.logprobs import batch_logprob_matrices  # noqa: E402
from sami.data.records import read_records  # noqa: E402
from sami.eval.config import EvalConfig  # noqa: E402
from sami.eval.judges import VERDICT_LETTERS, VERDICT_PREFIX, principle_aware_prompt  # noqa: E402
from sami.eval.mi import engine_logprob_matrix, run_mi  # noqa: E402
from sami.generate.run import GenerateConfig, generate  # noqa: E402
from sami.models.loading import embedded_model_path, load_trained  # noqa: E402
from sami.train.config import TrainConfig  # noqa: E402
from sami.train.encoding import encode_records  # noqa: E402
from sami.train.run import train  # noqa: E402
from tests.helpers import EXAMPLE_DATA, QUERIES, make_cfg, vllm_server, write_jsonl  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache; the default would take a quarter of RAM
ENGINE = {"max_model_len": 1024, "enforce_eager": True, "seed": 0}
ATOL = 1e-3
PROMPTS = [
    [{"role": "user", "content": "How do plants drink water?"}],
    [{"role": "system", "content": "Answer in one sentence."}, {"role": "user", "content": "Why is the sky blue?"}],
    "Human: Name three prime numbers.\n\nAssistant:",
    "The capital of France is",
]
LORA = {"finetune": "lora", "lora": {"r": 4, "alpha": 8}}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """LoRA SFT on the embedded model, then LoRA SAMI from it (``init_from``): the run folder saves only
    the last adapter, so serving it needs the whole chain merged."""
    root = tmp_path_factory.mktemp("chain")
    base = embedded_model_path()
    fast = {"lr": 1e-2, "scheduler": "constant"}
    sft = train(make_cfg(root, base, "sft", method="sft", max_steps=2, model=LORA, optim=fast))
    return train(
        make_cfg(root, base, "sami", method="sami", max_steps=2, init_from=str(sft.output_dir), model=LORA, optim=fast)
    )


@pytest.fixture(scope="module")
def engine(chain):
    backend = VLLMBackend(BackendConfig(kind="vllm", model=str(chain.output_dir), dtype="float32", engine_args=ENGINE))
    yield backend
    backend.close()  # its engine core process ends now


@pytest.fixture(scope="module")
def local(chain):
    model, tokenizer = load_trained(chain.output_dir, dtype=torch.float32)
    return TransformersBackend(model.eval(), tokenizer, batch_size=4)


def test_vllm_greedy_answers_equal_the_transformers_backends(engine, local):
    """The chain served by vLLM (merged by ``materialize``) answers as ``load_trained`` + transformers does,
    token for token: chat and raw-text prompts, stop at the end token or the length limit."""
    params = SamplingParams(max_new_tokens=32)
    got, want = engine.generate(PROMPTS, params, progress=False), local.generate(PROMPTS, params, progress=False)
    assert [c[0].text for c in got] == [c[0].text for c in want]
    assert [c[0].finish_reason for c in got] == [c[0].finish_reason for c in want]
    assert [c[0].num_tokens for c in got] == [c[0].num_tokens for c in want]
    assert all(len(c[0].text.split()) >= 3 for c in got)  # real text, not an empty answer twice


def _local_logprobs(backend, prompt, response) -> list[float]:
    ids = torch.tensor([[*prompt, *response]])
    with torch.inference_mode():
        logp = torch.log_softmax(backend.model(ids).logits[0].float(), -1)
    return [logp[len(prompt) - 1 + t, token].item() for t, token in enumerate(response)]


def test_vllm_scores_the_chain_as_load_trained_does(engine, local, chain):
    """Response log-probs from vLLM's prompt log-probs equal the local model's, and the whole chain is in
    them: the SFT adapter alone (what the run's ``adapter_config.json`` base would give) is far off."""
    tok = local.tokenizer
    pairs = [
        (prompt_ids(tok, p), tok(" A short answer, given plainly.", add_special_tokens=False)["input_ids"])
        for p in PROMPTS
    ]
    got = engine.response_logprobs(pairs)
    for (prompt, response), lps in zip(pairs, got, strict=True):
        assert lps == pytest.approx(_local_logprobs(local, prompt, response), abs=ATOL)
    sft, _ = load_trained(Path(chain.output_dir).parent / "sft", dtype=torch.float32)
    sft_only = _local_logprobs(TransformersBackend(sft, tok), *pairs[0])
    assert max(abs(a - b) for a, b in zip(got[0], sft_only, strict=True)) > 50 * ATOL
    # the SAMI log-prob matrix of a training record: the engine's equals the local shared layout's
    record = read_records(EXAMPLE_DATA)[0]
    query = encode_records([record], tok, TrainConfig(max_prompt_tokens=48, max_response_tokens=24))[0]
    with torch.inference_mode():
        want = batch_logprob_matrices(local.model, [query], pad_token_id=tok.pad_token_id)
    torch.testing.assert_close(engine_logprob_matrix(engine, query), want, atol=ATOL, rtol=0)


JUDGE_PROMPTS = [
    principle_aware_prompt("Be concise.", "What is 2 + 2?", "4.", "Two plus two is four, as one can check."),
    principle_aware_prompt("Use a list.", "Name two fruits.", "- apple\n- pear", "Apples and pears."),
]


def test_vllm_verdict_probabilities_equal_the_local_prefills(engine, local):
    """The principle-aware judge's letters read from the engine's top 20 log-probs (renormalised over A, B, C)
    equal the local prefill's."""
    got = dict(engine.next_token_probs_iter(JUDGE_PROMPTS, VERDICT_PREFIX, VERDICT_LETTERS, progress=False))
    want = dict(local.next_token_probs_iter(JUDGE_PROMPTS, VERDICT_PREFIX, VERDICT_LETTERS, progress=False))
    for i in range(len(JUDGE_PROMPTS)):
        assert got[i].probs == pytest.approx(want[i].probs, abs=ATOL)
        assert got[i].mass == pytest.approx(want[i].mass, abs=ATOL)


def _generate_config(tmp_path, pool, output, chain) -> Path:
    data = {
        "output": str(output),
        "template": "gen-paper-v1",
        "queries_per_chunk": 2,
        "pool": {"sources": [{"kind": "file", "path": str(pool), "text_field": "text", "category_field": "cat"}]},
        "teacher": {"kind": "vllm", "model": str(chain.output_dir), "dtype": "float32", "engine_args": ENGINE},
        "sampling": {"max_new_tokens": 24},
        "filters": {"unterminated": False, "empty": False, "identical": False},  # every query gives a record
    }
    path = tmp_path / f"{Path(output).stem}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _load(path: Path) -> GenerateConfig:
    return from_dict(GenerateConfig, yaml.safe_load(path.read_text()))


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def test_a_generation_killed_and_resumed_through_vllm_loses_and_repeats_nothing(tmp_path, engine, chain):
    """``sami generate --backend vllm`` in its own process group, SIGKILLed (engine core included) once some
    records are written, then resumed: every query once, with the answers an uninterrupted run gives."""
    queries = [(c, f"{q} (Answer {k + 1}.)") for k in range(3) for c, q in QUERIES]  # distinct: the pool dedups
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": k, "cat": c, "text": q} for k, (c, q) in enumerate(queries)])
    output = tmp_path / "killed" / "train.jsonl"
    config = _generate_config(tmp_path, pool, output, chain)
    command = [str(Path(sys.executable).with_name("sami")), "generate", "--config", str(config)]
    log = tmp_path / "generate.log"
    with open(log, "wb") as out:  # a file, not a pipe: vLLM logs enough to fill a pipe and block
        proc = subprocess.Popen(command, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while _lines(output) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = _lines(output)
    assert 2 <= killed_at < len(queries)
    resumed = generate(_load(config), engine)
    assert resumed.already_done + resumed.written == len(queries) and resumed.written >= len(queries) - killed_at
    reference_out = tmp_path / "reference" / "train.jsonl"
    generate(_load(_generate_config(tmp_path, pool, reference_out, chain)), engine)
    got, want = read_records(output), read_records(reference_out)
    assert len(got) == len({r.id for r in got}) == len(queries)
    assert {r.id: r.responses for r in got} == {r.id: r.responses for r in want}


def test_eval_mi_through_the_engine_stops_each_engine_core_when_it_is_done(tmp_path):
    """``eval mi`` with the vllm backend builds one engine per checkpoint and closes it when that checkpoint is
    scored: its core process is gone before the next starts and when the suite returns. Left to the garbage
    collector, an engine in a reference cycle lived until exit, and its shutdown then raced the interpreter's
    (an abort, exit code -6, after everything was written)."""
    import psutil

    me = psutil.Process()
    before = set(me.children(recursive=True))
    started = []
    real_init = VLLMBackend.__init__

    def init(self, cfg):
        real_init(self, cfg)
        started.append(set(me.children(recursive=True)) - before)

    cfg = from_dict(
        EvalConfig,
        {
            "models": ["a=smollm2-135m", "b=smollm2-135m"],
            "mi": {"data": str(EXAMPLE_DATA), "limit": 1},
            "output_dir": str(tmp_path),
            "backend": {"kind": "vllm", "dtype": "float32", "engine_args": ENGINE},
        },
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(VLLMBackend, "__init__", init)
        run_mi(cfg)
    assert len(started) == 2
    helpers = started[0] & started[1]  # what the first engine started for the whole process (its resource tracker)
    engines = [s - helpers for s in started]
    assert all(engines) and not engines[0] & engines[1]  # each engine's core ran in processes of its own
    _, alive = psutil.wait_procs(list(engines[0] | engines[1]), timeout=30)
    assert alive == []


# ---------------------------------------------------------------- vllm serve


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """vLLM's OpenAI-compatible server on the embedded model's folder, under the alias's name (so that a client
    can load the same tokenizer locally), in float32, on a free loopback port; stopped at the end of the module."""
    with vllm_server(tmp_path_factory.mktemp("serve") / "vllm-serve.log", dtype="float32", timeout=600) as url:
        yield url


@pytest.fixture(scope="module")
def embedded():
    model, tokenizer = load_trained("smollm2-135m", dtype=torch.float32)
    return TransformersBackend(model.eval(), tokenizer, batch_size=4)


def _endpoint(server, tmp_path) -> BackendConfig:
    return BackendConfig(kind="openai", model="smollm2-135m", base_url=server, cache_dir=str(tmp_path / "http"))


def test_sami_generate_through_a_vllm_server(server, embedded, tmp_path, capsys):
    """``sami generate --backend openai`` against ``vllm serve``: the records hold the answers the local
    transformers backend gives the same (raw-text) generation prompts."""
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": k, "cat": c, "text": q} for k, (c, q) in enumerate(QUERIES)])
    out = tmp_path / "served" / "train.jsonl"
    argv = [
        "generate",
        "--teacher",
        "smollm2-135m",
        "--backend",
        "openai",
        "--base-url",
        server,
        "--pool",
        f"file:{pool},text_field=text,category_field=cat",
        "--out",
        str(out),
        "-o",
        "sampling.max_new_tokens=24",
        "-o",
        "filters.unterminated=false",
        "-o",
        "filters.identical=false",
        "-o",
        f"teacher.cache_dir={tmp_path / 'http'}",
    ]
    assert cli_main(argv) == 0
    assert f"wrote {len(QUERIES)} records" in capsys.readouterr().out
    records = read_records(out)
    assert records[0].provenance["teacher"]["kind"] == "openai"
    local_out = tmp_path / "local" / "train.jsonl"
    cfg = from_dict(
        GenerateConfig,
        {
            "output": str(local_out),
            "pool": {"sources": [{"kind": "file", "path": str(pool), "text_field": "text", "category_field": "cat"}]},
            "sampling": {"max_new_tokens": 24},
            "filters": {"unterminated": False, "identical": False},
        },
    )
    generate(cfg, embedded)
    assert {r.id: r.responses for r in records} == {r.id: r.responses for r in read_records(local_out)}


def test_principle_aware_verdict_probabilities_from_a_vllm_server(server, embedded, tmp_path):
    """The principle-aware judge's prompt, continued after ``My final verdict: [[`` by the server (top 20
    log-probs, renormalised over A, B, C) gives the local prefill's probabilities."""
    remote = OpenAIBackend(_endpoint(server, tmp_path))
    got = dict(remote.next_token_probs_iter(JUDGE_PROMPTS, VERDICT_PREFIX, VERDICT_LETTERS, progress=False))
    want = dict(embedded.next_token_probs_iter(JUDGE_PROMPTS, VERDICT_PREFIX, VERDICT_LETTERS, progress=False))
    for i in range(len(JUDGE_PROMPTS)):
        assert got[i].probs == pytest.approx(want[i].probs, abs=ATOL)
        assert got[i].mass == pytest.approx(want[i].mass, abs=ATOL)


def test_eval_mi_over_a_vllm_server_equals_the_local_bound(server, tmp_path):
    """``eval mi`` with an endpoint as the backend (prompt log-probs through ``echo``): the per-record MI
    bound and log-prob matrices equal the local model's within ``ATOL`` nats."""
    settings = {"models": ["base=smollm2-135m"], "mi": {"data": str(EXAMPLE_DATA), "limit": 3}}
    local = from_dict(EvalConfig, {**settings, "output_dir": str(tmp_path / "local")})
    served = from_dict(
        EvalConfig,
        {**settings, "output_dir": str(tmp_path / "served"), "backend": {**vars(_endpoint(server, tmp_path))}},
    )
    run_mi(local)
    run_mi(served)
    rows = {}
    for name in ("local", "served"):
        path = tmp_path / name / "mi" / "base.jsonl"
        rows[name] = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows["local"]) == len(rows["served"]) == 3
    for a, b in zip(rows["local"], rows["served"], strict=True):
        assert a["id"] == b["id"] and b["mi_bound"] == pytest.approx(a["mi_bound"], abs=ATOL)
        torch.testing.assert_close(torch.tensor(b["matrix"]), torch.tensor(a["matrix"]), atol=ATOL, rtol=0)
