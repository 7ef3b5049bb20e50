"""Pieces shared by the generation backends (``sami.backends``) and next-token reading
(``sami.backends.next_token``): the prompt type, chat text, left padding, progress bars and bounded
concurrency. Nothing here loads a model."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Union

import torch
from tqdm.auto import tqdm

from sami.core.errors import ConfigError

Prompt = Union[str, list]  # raw text, or chat messages [{"role": ..., "content": ...}, ...]


def chat_text(tokenizer, messages: list) -> str:
    """Chat messages as the text the model reads: its chat template with the assistant turn opened."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("chat messages need a tokenizer with a chat template; pass raw text instead")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_text(tokenizer, prompt: Prompt) -> str:
    """A raw-text prompt as given; chat messages through the chat template."""
    return chat_text(tokenizer, prompt) if isinstance(prompt, list) else prompt


def prompt_ids(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids of a prompt: chat messages through the chat template; BOS added unless already there (a
    chat template that writes BOS itself would otherwise get a second one). Every local engine encodes this
    way, so the transformers and vLLM backends read the same tokens."""
    text = prompt_text(tokenizer, prompt)
    bos = tokenizer.bos_token
    return tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]


def progress_bar(total: int, desc: str | None, enabled: bool = True):
    return tqdm(
        total=total, desc=desc or "generating", unit="prompt", dynamic_ncols=True, disable=not enabled or total == 0
    )


def left_pad(batch: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, longest): each row's tokens at the right end, so that the next
    token of every row is read or generated at the last position."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention[row, width - len(ids) :] = 1
    return input_ids, attention


def concurrent_iter(calls, concurrency: int, desc, progress: bool):
    """(index, result) of each zero-argument call as it finishes, at most ``concurrency`` at a time, with a
    progress bar; an error, or the consumer stopping early, cancels the calls not yet started."""
    bar = progress_bar(len(calls), desc, progress)
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = {pool.submit(call): i for i, call in enumerate(calls)}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
                    bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        bar.close()


class MalformedAnswer(Exception):
    """An endpoint answered (HTTP 200) with something that is not a completion: an HTML page from a proxy, a
    JSON document without ``choices``; retried like a 5xx answer."""


def checked_answer(response):
    """``response`` of the ``openai`` client when it holds completions; else ``MalformedAnswer`` (the client
    hands a body that is not JSON back as text)."""
    if isinstance(response, (str, bytes)):
        raise MalformedAnswer(f"answered with no completion (not JSON: {str(response)[:80]!r})")
    if not isinstance(getattr(response, "choices", None), list):
        raise MalformedAnswer(f"answered with no completion (a {type(response).__name__} without choices)")
    if not response.choices:
        raise MalformedAnswer("answered with an empty list of choices")
    return response
