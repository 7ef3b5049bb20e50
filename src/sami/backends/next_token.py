"""Next-token probabilities of a few candidate tokens after a prompt and an assistant prefix.

A judge asked for a verdict letter can be read without letting it write anything: put the start of its
answer up to the letter (``...[[``) after the prompt and read the probabilities of ``A``, ``B`` and ``C`` at
that position. One forward pass per prompt, no generation, and from a local model never an unparseable verdict
(an endpoint can leave one unparseable, below).

- Local model (``TransformersBackend.next_token_probs_iter``): the chat prompt with its generation prompt,
  then the prefix, tokenised as one text; batched prefill with left padding (position ids from the
  attention mask, so a row gives what it gives alone) and logits at the last position only.
- vLLM's offline engine (``VLLMBackend.next_token_probs_iter``): the same tokens as the local model, one
  generated token with the top ``TOP_LOGPROBS`` log-probs of that position; the candidates are found among
  them by token id and renormalised as an endpoint's are (a candidate outside them counts 0).
- OpenAI-compatible endpoint (``OpenAIBackend.next_token_probs_iter``): one request per prompt with
  ``max_tokens`` 1 and the top ``TOP_LOGPROBS`` log-probs of that token. Chat messages go to
  ``/chat/completions`` with the prefix as a final assistant message and vLLM's ``continue_final_message``
  (the server renders its own chat template and continues that message instead of opening a new one);
  raw text goes to ``/completions`` with the prefix appended. A server must return top log-probs (a vLLM
  server does, up to its ``--max-logprobs``, default 20); hosted APIs that cannot continue an assistant
  message cannot be read this way. A candidate missing from the top log-probs counts as probability 0
  (it is below the smallest returned one); when none is there the result is None. Answers are cached
  on disk like every other request.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from sami.backends.tools import (
    Prompt,
    checked_answer,
    concurrent_iter,
    left_pad,
    progress_bar,
    prompt_ids,
    prompt_text,
)
from sami.core.errors import ConfigError, EndpointError

TOP_LOGPROBS = 20  # the most OpenAI's API and a default vLLM server return
VLLM_CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}  # vLLM extensions, extra_body


@dataclass(frozen=True)
class CandidateProbs:
    """Probabilities of the candidates renormalised over them (in candidate order), and ``mass``: the total
    probability the full next-token distribution gave them. ``probs`` None: an endpoint returned none."""

    probs: tuple[float, ...] | None
    mass: float | None


def candidate_probs(logits: torch.Tensor, candidate_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token logits (B, V) -> candidate probabilities renormalised over the candidates (B, K) and the
    probability mass the full softmax puts on them (B,). Computed in float32."""
    logits = logits.float()
    picked = logits[:, list(candidate_ids)]  # (B, K)
    mass = torch.exp(torch.logsumexp(picked, -1) - torch.logsumexp(logits, -1))
    return torch.softmax(picked, -1), mass


def from_top_logprobs(top: Sequence[tuple[str, float]], candidates: Sequence[str]) -> CandidateProbs:
    """Renormalise the candidates found (by exact token text) among an endpoint's top log-probs."""
    found = {c: 0.0 for c in candidates}
    for token, logprob in top:
        if token in found:
            found[token] += math.exp(logprob)
    mass = sum(found.values())
    if mass == 0:
        return CandidateProbs(None, None)
    return CandidateProbs(tuple(found[c] / mass for c in candidates), mass)


def _candidate_ids(tokenizer, candidates: Sequence[str]) -> list[int]:
    ids = []
    for c in candidates:
        encoded = tokenizer(c, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ConfigError(f"candidate {c!r} is {len(encoded)} tokens for this tokenizer; it must be one")
        ids.append(encoded[0])
    return ids


def local_next_token_probs_iter(
    backend, prompts: Sequence[Prompt], prefix: str, candidates: Sequence[str], *, desc=None, progress=True
) -> Iterator[tuple[int, CandidateProbs]]:
    """(prompt index, CandidateProbs) per batch of a ``TransformersBackend``, longest prompts first."""
    ids = _candidate_ids(backend.tokenizer, candidates)
    texts = [prompt_text(backend.tokenizer, p) + prefix for p in prompts]
    encoded = [backend.encode(t) for t in texts]
    if texts and backend.encode(texts[0] + candidates[0]) != encoded[0] + ids[:1]:
        # the letter must follow the prefix as its own token, or its probability is not the verdict's
        raise ConfigError(f"after the prefix {prefix!r} the tokenizer merges {candidates[0]!r} into another token")
    model = backend.model
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    bar = progress_bar(len(texts), desc or "verdict probabilities", progress)
    try:
        for b in range(0, len(order), backend.batch_size):
            batch = order[b : b + backend.batch_size]
            input_ids, attention = left_pad([encoded[i] for i in batch], backend.pad_id)
            positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift the positions
            with torch.inference_mode():
                out = model(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    position_ids=positions.to(device),
                    use_cache=False,
                    logits_to_keep=1,
                )
                probs, mass = candidate_probs(out.logits[:, -1], ids)
            for row, i in enumerate(batch):
                yield i, CandidateProbs(tuple(probs[row].tolist()), float(mass[row]))
            bar.update(len(batch))
    finally:
        bar.close()


def engine_next_token_probs_iter(
    backend, prompts: Sequence[Prompt], prefix: str, candidates: Sequence[str], *, desc=None, progress=True
) -> Iterator[tuple[int, CandidateProbs]]:
    """(prompt index, CandidateProbs) of a ``VLLMBackend``: all prompts scheduled at once by the engine."""
    from vllm import SamplingParams as VllmSampling

    ids = _candidate_ids(backend.tokenizer, candidates)
    texts = [prompt_text(backend.tokenizer, p) + prefix for p in prompts]
    requests = [{"prompt_token_ids": prompt_ids(backend.tokenizer, t)} for t in texts]
    sampling = VllmSampling(max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS)
    outputs = backend.llm.generate(requests, sampling, use_tqdm=progress)
    for i, output in enumerate(outputs):
        top = output.outputs[0].logprobs[0]  # token id -> Logprob, the top ones and the generated one
        found = [math.exp(top[t].logprob) if t in top else 0.0 for t in ids]
        mass = sum(found)
        yield i, CandidateProbs(tuple(f / mass for f in found), mass) if mass > 0 else CandidateProbs(None, None)


def endpoint_request(model: str, prompt: Prompt, prefix: str) -> dict:
    """The request body for one prompt (also its cache key, with the endpoint)."""
    body: dict = {"model": model, "max_tokens": 1, "temperature": 0.0}
    if isinstance(prompt, list):
        body["messages"] = [*prompt, {"role": "assistant", "content": prefix}]
        body.update(logprobs=True, top_logprobs=TOP_LOGPROBS, **VLLM_CONTINUE)
    else:
        body.update(prompt=prompt + prefix, logprobs=TOP_LOGPROBS)
    return body


def _endpoint_top(backend, body: dict) -> list[list]:
    """``[[token, logprob], ...]`` of the one generated position, from the cache or the endpoint."""
    return backend.cached(body, lambda b: {"top_logprobs": _request_top(backend, b)})["top_logprobs"]


def _request_top(backend, body: dict) -> list[list]:

    top = None
    if "messages" in body:
        standard = {k: v for k, v in body.items() if k not in VLLM_CONTINUE}
        extra = {k: body[k] for k in VLLM_CONTINUE}
        response = checked_answer(backend.client.chat.completions.create(**standard, extra_body=extra))
        logprobs = response.choices[0].logprobs
        if logprobs is not None and logprobs.content:
            top = [[t.token, t.logprob] for t in logprobs.content[0].top_logprobs]
    else:
        response = checked_answer(backend.client.completions.create(**body))
        logprobs = response.choices[0].logprobs
        if logprobs is not None and logprobs.top_logprobs:
            top = [[t, lp] for t, lp in logprobs.top_logprobs[0].items()]
    if not top:
        raise EndpointError(
            f"{backend.cfg.base_url} returned no top log-probs; verdict probabilities need them (a vLLM server "
            "gives them); use mtbench.verdict: text for this judge"
        )
    return top


def endpoint_next_token_probs_iter(
    backend, prompts: Sequence[Prompt], prefix: str, candidates: Sequence[str], *, desc=None, progress=True
) -> Iterator[tuple[int, CandidateProbs]]:
    """(prompt index, CandidateProbs) as each request of an ``OpenAIBackend`` finishes, in any order."""
    bodies = [endpoint_request(backend.cfg.model, p, prefix) for p in prompts]
    calls = [functools.partial(_endpoint_top, backend, body) for body in bodies]
    for i, top in concurrent_iter(calls, backend.cfg.concurrency, desc or "verdict probabilities", progress):
        yield i, from_top_logprobs(top, candidates)
