"""Records to token ids for SAMI: every constitution prompt and every response of a record, tokenised once.

Shared by SAMI's training loop and ``sami eval mi`` (the bound is computed on exactly the tokens SAMI trains
on), so evaluation does not import a trainer. The baselines' examples are tokenised by the same functions
(``sami.core.tokens.encode_prompt`` / ``encode_responses``) in ``sami.train.pairs``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sami.core.tokens import QueryTokens, encode_query
from sami.data.records import Record
from sami.data.templates import build_prompt, render_constitution, response_end_token, response_text
from sami.train.config import TrainConfig


def encode_records(records: Sequence[Record], tokenizer, cfg: TrainConfig) -> list[QueryTokens]:
    """Apply the training template to every record and tokenise it (C prompts, C responses per record)."""
    end_token = response_end_token(cfg.template, tokenizer)
    queries = []
    for record in records:
        prompts = [
            build_prompt(
                cfg.template,
                render_constitution(c, seed=cfg.seed if cfg.shuffle_principles else None, key=f"{record.id}:{i}"),
                record.query,
                tokenizer,
            )
            for i, c in enumerate(record.constitutions)
        ]
        responses = [response_text(cfg.template, r) for r in record.responses]
        queries.append(
            encode_query(
                tokenizer,
                prompts,
                responses,
                max_prompt_tokens=cfg.max_prompt_tokens,
                max_response_tokens=cfg.max_response_tokens,
                end_token_id=end_token,
            )
        )
    return queries
