"""Prompt templates that turn (constitution, query) into the text a model is conditioned on.

Templates are versioned: the version is written into provenance and into every training config, so a
result can always be traced to the exact prompt text. At training time the principle order of a
constitution is reshuffled with a seed derived from the record, independently of the order the teacher
saw at generation time, as in the SAMI papers (with two principles it stays the same half of the time).
"""

from __future__ import annotations

import random

from sami.core.errors import ConfigError
from sami.data.principles import Constitution

PAPER_TEMPLATE = "paper-v1"
CHAT_TEMPLATE = "chat-v1"
TEMPLATES: tuple[str, ...] = (PAPER_TEMPLATE, CHAT_TEMPLATE)


def render_constitution(constitution: Constitution, *, seed: int | None, key: str) -> str:
    """Numbered principle list; shuffled deterministically from (seed, key) unless seed is None."""
    rng = None if seed is None else random.Random(f"{seed}:{key}")
    return constitution.render(rng)


def build_prompt(template: str, constitution_text: str | None, query: str, tokenizer=None) -> str:
    """The conditioning prompt. The response that follows is joined as ids, never as text.

    ``paper-v1``: ``Assistant System Instructions: {constitution}\\n\\nHuman: {query}\\n\\nAssistant:``
    (a raw template that works for base models). ``chat-v1``: the tokenizer's chat template with the
    constitution as system message, the query as user message and the assistant turn opened.
    ``constitution_text=None`` leaves the constitution out (``Human: {query}\\n\\nAssistant:``, or no system
    message): the prompt of a baseline trained without principles in its context.
    """
    if template == PAPER_TEMPLATE:
        if constitution_text is None:
            return f"Human: {query}\n\nAssistant:"
        return f"Assistant System Instructions: {constitution_text}\n\nHuman: {query}\n\nAssistant:"
    if template == CHAT_TEMPLATE:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"template {CHAT_TEMPLATE!r} needs a tokenizer with a chat template")
        messages = [{"role": "user", "content": query}]
        if constitution_text is not None:
            messages.insert(0, {"role": "system", "content": constitution_text})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    raise ConfigError(f"unknown template {template!r}; choose one of {TEMPLATES}")


def response_text(template: str, response: str) -> str:
    """The response as scored after the prompt: after ``Assistant:`` a single space leads the answer."""
    response = response.strip()
    return " " + response if template == PAPER_TEMPLATE else response


def response_end_token(template: str, tokenizer) -> int:
    """The token that closes a response under ``template``: EOS, or the chat template's end of turn.

    For ``chat-v1`` a dummy assistant turn is rendered and the first token after its content is taken
    (``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3): the first special token there, else the first token.
    """
    if template != CHAT_TEMPLATE:
        return tokenizer.eos_token_id
    marker = "SAMI-RESPONSE-MARKER"
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    if marker not in rendered:
        raise ConfigError("the tokenizer's chat template dropped the assistant message; use template paper-v1")
    # Some templates put a space before the end token (Llama 2: " </s>"); the special token is what ends.
    suffix = rendered[rendered.index(marker) + len(marker) :].lstrip()
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    special = set(tokenizer.all_special_ids)
    return next((i for i in ids if i in special), ids[0] if ids else tokenizer.eos_token_id)


# Generation templates: how the teacher is asked. Versioned separately from the training templates above;
# the principle order the teacher sees is shuffled independently of the order used in training.
GEN_CHAT_TEMPLATE = "gen-chat-v1"
GEN_PAPER_TEMPLATE = "gen-paper-v1"
GENERATION_TEMPLATES: tuple[str, ...] = (GEN_CHAT_TEMPLATE, GEN_PAPER_TEMPLATE)


def generation_prompt(template: str, constitution_text: str | None, query: str) -> str | list[dict[str, str]]:
    """What the teacher receives for (constitution, query); ``None``: the query alone (the rewrite teacher).

    ``gen-chat-v1``: chat messages, the constitution in the system message (for instruction-tuned teachers and
    chat endpoints). ``gen-paper-v1``: the raw ``paper-v1`` text (for base-model teachers and completion endpoints).
    """
    if template == GEN_CHAT_TEMPLATE:
        user = {"role": "user", "content": query}
        if constitution_text is None:
            return [user]
        return [{"role": "system", "content": f"Follow these principles in every answer:\n{constitution_text}"}, user]
    if template == GEN_PAPER_TEMPLATE:
        return build_prompt(PAPER_TEMPLATE, constitution_text, query)
    raise ConfigError(f"unknown generation template {template!r}; choose one of {GENERATION_TEMPLATES}")
