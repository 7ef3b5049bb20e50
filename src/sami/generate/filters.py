"""Filters applied to a freshly generated record; each returns the reason it drops a record, or None.

Generation writes dropped records to the filtered file with their reason, so nothing is lost without trace.
The math filters follow the multi-task paper's GSM8K experiment (docs/PAPER_INDEX.md): a step-by-step
response at least ``length_ratio`` times as long as the terse one, the terse one at least
``min_short_chars`` long, and openings that differ by an edit distance of at least ``opening_distance``
times the terse response's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sami.backends.base import Completion
from sami.data.principles import Constitution


@dataclass
class MathFilter:
    enabled: bool = False
    principle: str = "step_by_step"  # the principle whose two sides make the long and the short response
    length_ratio: float = 3.0
    min_short_chars: int = 50
    opening_distance: float = 0.5


@dataclass
class FilterConfig:
    unterminated: bool = True  # drop a record when any response hit the token limit
    empty: bool = True  # ... when any response is empty
    identical: bool = True  # ... when two responses of the query are the same text
    banned: list[str] = field(default_factory=list)  # ... when any response contains one (case-insensitive)
    math: MathFilter = field(default_factory=MathFilter)


def opening_distance(long: str, short: str) -> int:
    """Edit distance between the short response and the long one's opening of the same length."""
    import Levenshtein

    return Levenshtein.distance(long[: len(short)], short)


def math_reason(cfg: MathFilter, constitutions: Sequence[Constitution], responses: Sequence[str]) -> str | None:
    sides = []
    for constitution in constitutions:
        side = next((i.side for i in constitution.items if i.principle == cfg.principle), None)
        sides.append(side)
    long = [r for s, r in zip(sides, responses, strict=True) if s == "principle"]
    short = [r for s, r in zip(sides, responses, strict=True) if s == "antithesis"]
    if not long or not short:
        return f"math: no {cfg.principle} contrast"
    for lo in long:
        for sh in short:
            if len(sh) < cfg.min_short_chars:
                return "math: short response too short"
            if len(lo) < cfg.length_ratio * len(sh):
                return "math: length ratio"
            if opening_distance(lo, sh) < cfg.opening_distance * len(sh):
                return "math: similar openings"
    return None


def reject_reason(
    cfg: FilterConfig, constitutions: Sequence[Constitution], completions: Sequence[Completion]
) -> str | None:
    """Why the record is dropped (the first filter that fails, in the order of FilterConfig), or None."""
    texts = [c.text.strip() for c in completions]
    if cfg.unterminated and any(c.finish_reason == "length" for c in completions):
        return "unterminated"
    if cfg.empty and any(not t for t in texts):
        return "empty"
    if cfg.identical and len(set(texts)) < len(texts):
        return "identical"
    for banned in cfg.banned:
        if any(banned.lower() in t.lower() for t in texts):
            return f"banned: {banned}"
    if cfg.math.enabled:
        return math_reason(cfg.math, constitutions, texts)
    return None
