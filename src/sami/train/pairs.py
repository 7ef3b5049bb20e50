"""What the TRL methods train on, made from the same records, templates and tokenisation as SAMI.

A record's constitution 0 is the positive one (it flips no principle; see docs/DATA.md). From a record:

- SFT takes one example: prompt = the training template with the positive constitution (or with none),
  completion = the positive response.
- DPO takes pairs: the same prompt; chosen = the positive response; rejected = the response written under
  the constitution that flips the most principles (``most_flipped``, one pair per record), or under each
  other constitution in turn (``each_other``, C - 1 pairs per record). ORPO and SimPO take the same pairs.
- KTO takes C unpaired examples after the same prompt: the positive response desirable, the response
  under each other constitution undesirable.

The text mappings are pure functions of the record and a few settings. Tokenisation then reuses SAMI's own
(``encode_prompt``, ``encode_responses``): prompt and response are tokenised separately and joined as ids,
the response is closed by the template's end token, and the same limits cut prompts and responses. TRL
receives ids, never text, so its own tokenisation (which tokenises prompt + completion as one string and
appends EOS as text) cannot make the baselines see different tokens from SAMI.
"""

from __future__ import annotations

from dataclasses import dataclass

from sami.core.errors import ConfigError, DataError
from sami.core.tokens import encode_prompt, encode_responses
from sami.data.records import Record
from sami.data.templates import build_prompt, render_constitution, response_end_token, response_text

POSITIVE = 0  # index of the positive constitution in every record
PROMPT_CONSTITUTIONS: tuple[str, ...] = ("positive", "none")
REJECTED_CHOICES: tuple[str, ...] = ("most_flipped", "each_other")


@dataclass(frozen=True)
class PromptSettings:
    """How a record's prompt is written; the same fields of ``TrainConfig`` drive SAMI's prompts."""

    template: str = "paper-v1"
    seed: int | None = 0  # principle-order seed; None keeps the stored order (shuffle_principles: false)
    prompt_constitution: str = "positive"  # positive | none


def training_prompt(record: Record, settings: PromptSettings, tokenizer=None) -> str:
    """The prompt under the positive constitution, principle order shuffled exactly as SAMI shuffles it."""
    if settings.prompt_constitution not in PROMPT_CONSTITUTIONS:
        raise ConfigError(f"prompt_constitution: one of {PROMPT_CONSTITUTIONS}, not {settings.prompt_constitution!r}")
    text = None
    if settings.prompt_constitution == "positive":
        text = render_constitution(record.constitutions[POSITIVE], seed=settings.seed, key=f"{record.id}:{POSITIVE}")
    return build_prompt(settings.template, text, record.query, tokenizer)


def most_flipped(record: Record) -> int:
    """Index of the constitution with the most principles flipped to their antitheses (the first on a tie).

    Counting needs principles marked with ``side``. A record of free-text constitutions has no such marks;
    with C = 2 the other constitution is the only choice, with more there is no defensible one.
    """
    if record.constitutions[POSITIVE].num_antitheses:
        raise DataError(
            f"record {record.id!r}: constitution {POSITIVE} flips principles; it must be the positive one "
            "(docs/DATA.md)"
        )
    counts = [c.num_antitheses for c in record.constitutions]
    if max(counts) == 0:
        if len(counts) == 2:
            return 1
        raise DataError(
            f"record {record.id!r}: no constitution marks flipped principles (side: antithesis), so the most "
            "flipped one is undefined; mark the principles or use dpo.rejected: each_other"
        )
    return max(range(1, len(counts)), key=lambda k: (counts[k], -k))


def sft_example(record: Record, settings: PromptSettings, tokenizer=None) -> dict[str, str]:
    """``{"prompt", "completion"}``: the positive prompt and the positive response (as scored after it)."""
    return {
        "prompt": training_prompt(record, settings, tokenizer),
        "completion": response_text(settings.template, record.responses[POSITIVE]),
    }


def dpo_pairs(record: Record, settings: PromptSettings, rejected: str = "most_flipped", tokenizer=None) -> list[dict]:
    """``[{"prompt", "chosen", "rejected"}]``: the positive response against the most flipped one, or each other."""
    if rejected not in REJECTED_CHOICES:
        raise ConfigError(f"rejected must be one of {REJECTED_CHOICES}, got {rejected!r}")
    prompt = training_prompt(record, settings, tokenizer)
    others = [most_flipped(record)] if rejected == "most_flipped" else range(1, len(record.responses))
    chosen = response_text(settings.template, record.responses[POSITIVE])
    return [
        {"prompt": prompt, "chosen": chosen, "rejected": response_text(settings.template, record.responses[k])}
        for k in others
    ]


def kto_examples(record: Record, settings: PromptSettings, tokenizer=None) -> list[dict]:
    """``[{"prompt", "completion", "label"}]``: the positive response desirable (``label`` True), the response
    under each other constitution (each flips at least one principle) undesirable, all after the same prompt."""
    prompt = training_prompt(record, settings, tokenizer)
    return [
        {"prompt": prompt, "completion": response_text(settings.template, r), "label": k == POSITIVE}
        for k, r in enumerate(record.responses)
    ]


def tokenize_sft(
    example: dict[str, str], tokenizer, *, template: str, max_prompt_tokens: int | None, max_response_tokens: int | None
) -> dict[str, list[int]]:
    """``{"input_ids", "completion_mask"}`` for TRL's SFTTrainer; the mask is 0 on prompt tokens."""
    prompt = encode_prompt(tokenizer, example["prompt"], max_prompt_tokens)
    (completion,) = encode_responses(
        tokenizer, [example["completion"]], max_response_tokens, response_end_token(template, tokenizer)
    )
    return {"input_ids": list(prompt + completion), "completion_mask": [0] * len(prompt) + [1] * len(completion)}


def tokenize_pair(
    pair: dict[str, str], tokenizer, *, template: str, max_prompt_tokens: int | None, max_response_tokens: int | None
) -> dict[str, list[int]]:
    """``{"prompt_ids", "chosen_ids", "rejected_ids"}``, the already-tokenised form TRL's DPO collator takes."""
    chosen, rejected = encode_responses(
        tokenizer, [pair["chosen"], pair["rejected"]], max_response_tokens, response_end_token(template, tokenizer)
    )
    return {
        "prompt_ids": list(encode_prompt(tokenizer, pair["prompt"], max_prompt_tokens)),
        "chosen_ids": list(chosen),
        "rejected_ids": list(rejected),
    }


def tokenize_unpaired(
    example: dict, tokenizer, *, template: str, max_prompt_tokens: int | None, max_response_tokens: int | None
) -> dict:
    """``{"prompt_ids", "completion_ids", "label"}``, the already-tokenised form TRL's KTO collator takes."""
    (completion,) = encode_responses(
        tokenizer, [example["completion"]], max_response_tokens, response_end_token(template, tokenizer)
    )
    return {
        "prompt_ids": list(encode_prompt(tokenizer, example["prompt"], max_prompt_tokens)),
        "completion_ids": list(completion),
        "label": bool(example["label"]),
    }
