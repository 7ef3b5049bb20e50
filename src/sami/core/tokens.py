"""Tokenisation policy: how a prompt and a response become the token ids every method trains on and every
log-prob is computed over (``sami.core.logprobs`` runs the forward pass over them).

Prompt and response are tokenised separately and joined as ids, so no token merges across the boundary. A
prompt over its budget keeps its start and its end; a response over its budget is cut and gets no closing
token; a text far longer than its budget is cut to characters before it is tokenised (``CHARS_PER_TOKEN``);
a SentencePiece-style tokenizer's word-start marker replaces a response's leading space
(``adds_dummy_prefix``); ``count_cuts`` counts, in a block, what was cut.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sami.core.errors import ConfigError


@dataclass(frozen=True)
class QueryTokens:
    """Token ids of one query's C prompts (one per constitution) and C responses."""

    prompt_ids: tuple[tuple[int, ...], ...]
    response_ids: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if len(self.prompt_ids) != len(self.response_ids):
            raise ValueError(
                f"{len(self.prompt_ids)} prompts but {len(self.response_ids)} responses; need one per constitution"
            )
        if len(self.prompt_ids) < 2:
            raise ValueError("a SAMI query needs at least two constitutions")
        if any(len(p) == 0 for p in self.prompt_ids) or any(len(r) == 0 for r in self.response_ids):
            raise ValueError("empty prompt or response after tokenisation")

    @property
    def num_constitutions(self) -> int:
        return len(self.prompt_ids)

    def num_tokens(self, layout: str = "shared") -> int:
        """Tokens the forward pass of ``layout`` processes for this query (padding excluded)."""
        prompts = sum(len(p) for p in self.prompt_ids)
        responses = sum(len(r) for r in self.response_ids)
        c = self.num_constitutions
        if layout == "naive":
            return c * prompts + c * responses
        return prompts + c * responses


@functools.lru_cache(maxsize=8)
def adds_dummy_prefix(tokenizer) -> bool:
    """True for tokenizers (SentencePiece style) that put a word-start marker on text they tokenise alone.

    For them a response tokenised as " Word" would start with a lone space token that the model never
    produces after ``Assistant:``; the leading space is dropped instead, since the marker already says it.
    """
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    spaced = tokenizer(" a", add_special_tokens=False)["input_ids"]
    return len(spaced) > len(plain) and spaced[-len(plain) :] == plain


def encode_query(
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    max_prompt_tokens: int | None = None,
    max_response_tokens: int | None = None,
    end_token_id: int | None = None,
) -> QueryTokens:
    """Tokenise one query's prompts and responses separately.

    Prompts get the tokenizer's special tokens (e.g. BOS) unless the text already starts with BOS (a
    rendered chat template); responses get none and are closed by ``end_token_id`` (default EOS; a chat
    template's end-of-turn token where that differs), which is scored: that is how the student learns
    where an answer ends. ``max_response_tokens`` counts that token; a response cut by it did not end
    there, so it gets none. A prompt longer than ``max_prompt_tokens`` keeps the first and the last half of
    that budget (BOS and the constitution's start; the query's end and the assistant cue) and loses the middle.
    """
    prompt_ids = [encode_prompt(tokenizer, text, max_prompt_tokens) for text in prompts]
    response_ids = encode_responses(tokenizer, responses, max_response_tokens, end_token_id)
    return QueryTokens(tuple(prompt_ids), tuple(response_ids))


# A token is far shorter than this many characters: a text longer than budget * CHARS_PER_TOKEN is cut to that
# many characters before it is tokenised (a 50 MB response would otherwise be tokenised whole), and the ids
# are the same as the whole text's up to the budget (checked: the cut piece must still exceed it).
CHARS_PER_TOKEN = 32
_cuts: contextvars.ContextVar[Counter | None] = contextvars.ContextVar("cuts", default=None)


@contextlib.contextmanager
def count_cuts() -> Iterator[Counter]:
    """Count, inside the block, the prompts and responses cut to their token budgets (``prompts``,
    ``responses``) and how many were encoded (``prompts_seen``, ``responses_seen``)."""
    counter: Counter = Counter()
    token = _cuts.set(counter)
    try:
        yield counter
    finally:
        _cuts.reset(token)


def _count(key: str, cut: bool) -> None:
    counter = _cuts.get()
    if counter is not None:
        counter[f"{key}_seen"] += 1
        counter[key] += int(cut)


def _token_ids(tokenizer, text: str, budget: int | None, *, special: bool, from_end: bool = False) -> list[int]:
    """The ids of ``text``, or, when it is far longer than ``budget`` tokens, of its first (``from_end``: last)
    ``budget * CHARS_PER_TOKEN`` characters, which still hold more than ``budget`` tokens."""
    if budget is not None and len(text) > budget * CHARS_PER_TOKEN:
        n = budget * CHARS_PER_TOKEN
        piece = text[-n:] if from_end else text[:n]
        ids = tokenizer(piece, add_special_tokens=special and not from_end)["input_ids"]
        if len(ids) > budget + 1:  # the token at the cut may differ from the whole text's: it is not kept
            return ids
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def encode_prompt(tokenizer, text: str, max_prompt_tokens: int | None = None) -> tuple[int, ...]:
    """One prompt's ids, as ``encode_query`` makes them (the SFT and DPO baselines share this tokenisation)."""
    bos = tokenizer.bos_token
    special = not (bos and text.startswith(bos))
    limit = max_prompt_tokens
    if limit is not None and len(text) > limit * CHARS_PER_TOKEN:
        head = limit // 2
        first = _token_ids(tokenizer, text, limit, special=special)
        last = _token_ids(tokenizer, text, limit, special=special, from_end=True)
        if len(first) > limit + 1 and len(last) > limit + 1:
            _count("prompts", True)
            return tuple(first[:head] + last[len(last) - (limit - head) :])
    ids = tokenizer(text, add_special_tokens=special)["input_ids"]
    _count("prompts", limit is not None and len(ids) > limit)
    if limit is not None and len(ids) > limit:
        head = limit // 2
        ids = ids[:head] + ids[len(ids) - (limit - head) :]
    return tuple(ids)


def encode_responses(
    tokenizer, responses: Sequence[str], max_response_tokens: int | None = None, end_token_id: int | None = None
) -> list[tuple[int, ...]]:
    """Responses' ids, each closed by ``end_token_id`` unless cut, as ``encode_query`` makes them.

    Responses that are compared with each other (a query's C responses, a DPO pair) are encoded in one call:
    whether a leading space is dropped is decided once for all of them.
    """
    end = tokenizer.eos_token_id if end_token_id is None else end_token_id
    if end is None:
        raise ConfigError("the tokenizer has no eos_token_id; SAMI scores the token that closes each response")
    strip_space = any(r.startswith(" ") for r in responses) and adds_dummy_prefix(tokenizer)
    out = []
    for text in responses:
        text = text.lstrip(" ") if strip_space else text
        ids = _token_ids(tokenizer, text, max_response_tokens, special=False)
        cut = max_response_tokens is not None and len(ids) >= max_response_tokens
        _count("responses", cut)
        out.append(tuple(ids[:max_response_tokens] if cut else ids + [end]))
    return out
