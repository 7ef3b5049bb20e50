"""The ``openai`` backend: any OpenAI-compatible endpoint, with an on-disk cache of its answers."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from sami.backends.base import BackendConfig, Completion, SamplingParams, cut_at_stop, in_order, register_backend
from sami.backends.next_token import endpoint_next_token_probs_iter
from sami.backends.tools import MalformedAnswer, Prompt, checked_answer, concurrent_iter
from sami.core.config import redact_url
from sami.core.errors import ConfigError, EndpointError

logger = logging.getLogger(__name__)


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
            {
                "model": self.cfg.model,
                "prompt": [*p, *r],
                "max_tokens": 1,
                "temperature": 0.0,
                "echo": True,
                "logprobs": 0,
            }
            for p, r in pairs
        ]
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
        choice = checked_answer(self.client.completions.create(**body)).choices[0]
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

            for attempt in range(self.cfg.max_retries + 1):
                with self._lock:
                    self.requests_sent += 1
                try:
                    value = send(body)
                    break
                except openai.APIError as err:
                    raise _endpoint_error(err, self.cfg) from err
                except MalformedAnswer as err:
                    where = f"endpoint {self.cfg.base_url} (model {self.cfg.model!r})"
                    if attempt == self.cfg.max_retries:
                        raise EndpointError(redact_url(f"{where}: {err}, {attempt + 1} tries")) from None
                    logger.warning("%s: %s; retrying", redact_url(where), err)
                    time.sleep(min(0.5 * 2**attempt, 8.0))
            self.cache.put(key, value)
        return value

    def _call(self, body: dict) -> dict:
        return self.cached(body, self._send)

    def _send(self, body: dict) -> dict:
        if "messages" in body:
            response = checked_answer(self.client.chat.completions.create(**body))
            texts = [(c.message.content or "") for c in response.choices]
        else:
            response = checked_answer(self.client.completions.create(**body))
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
            text, _ = cut_at_stop(choice["text"], params.stop)
            reason = "length" if choice["finish_reason"] == "length" else "stop"
            out.append(Completion(text=text, finish_reason=reason, num_tokens=per_choice))
        return out

    def generate(self, prompts, params, *, desc=None, progress=True):
        return in_order(len(prompts), self.generate_iter(prompts, params, desc=desc, progress=progress))

    def generate_iter(self, prompts, params, *, desc=None, progress=True):
        calls = [functools.partial(self._call, self.request(p, params)) for p in prompts]
        for i, response in concurrent_iter(calls, self.cfg.concurrency, desc, progress):
            yield i, self._completions(response, params)


def _needs_base_url(cfg: BackendConfig) -> None:
    if not cfg.base_url:
        raise ConfigError("an openai backend needs base_url (e.g. http://localhost:8000/v1)")


register_backend(
    "openai", check=_needs_base_url, verdict_probabilities="possible", help="an OpenAI-compatible endpoint (base_url)"
)(OpenAIBackend)
