"""Small pieces every suite shares: lazily built backends, constitution text, answer prompts, lengths, table
printing."""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Sequence
from typing import NamedTuple

import torch

from sami.backends.base import BackendConfig, close_backend, make_backend
from sami.core.stats import Estimate
from sami.data.principles import Constitution, ConstitutionItem, Phrasing, Principle, Side
from sami.data.templates import PAPER_TEMPLATE, build_prompt

logger = logging.getLogger(__name__)


class LazyBackend:
    """Builds (loads) the backend on first use only, so a resumed run with nothing left to generate never
    loads a model; ``close`` frees a local model before the next checkpoint is loaded."""

    def __init__(self, cfg: BackendConfig):
        self.cfg = cfg
        self._backend = None

    def get(self):
        if self._backend is None:
            logger.info("loading %s (%s)", self.cfg.model, self.cfg.kind)
            self._backend = make_backend(self.cfg)
        return self._backend

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def close(self) -> None:
        backend, self._backend = self._backend, None
        close_backend(backend)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class Shown(NamedTuple):
    """One principle of a constitution as the models were shown it: on ``side``, in ``phrasing`` on the principle
    side (None on the antithesis side)."""

    principle: Principle
    side: Side
    phrasing: Phrasing | None = None


def constitution_text(principles: Sequence[Principle], phrasing: Phrasing, flipped: str | None = None) -> str:
    """The numbered constitution of ``principles`` in ``phrasing``, in library order; the principle named
    ``flipped`` on its antithesis side."""
    return shown_text(
        [Shown(p, "antithesis") if p.name == flipped else Shown(p, "principle", phrasing) for p in principles]
    )


def shown_constitution(shown: Sequence[Shown]) -> Constitution:
    """The constitution of ``shown``, in the given order."""
    return Constitution(
        tuple(
            ConstitutionItem(s.principle.text(s.side, s.phrasing), s.principle.name, s.side, s.phrasing) for s in shown
        )
    )


def shown_text(shown: Sequence[Shown]) -> str:
    """The numbered constitution text of ``shown``, as the answering models see it."""
    return shown_constitution(shown).render()


# A raw-template answer ends where the model starts the next dialogue turn.
PAPER_STOP: tuple[str, ...] = ("\nHuman:",)


def answer_prompt(template: str, constitution: str, query: str):
    """The prompt a checkpoint answers under a constitution: the raw ``paper-v1`` text, or chat messages with
    the constitution as the system message (the backend applies the model's chat template)."""
    if template == PAPER_TEMPLATE:
        return build_prompt(PAPER_TEMPLATE, constitution, query)
    return [{"role": "system", "content": constitution}, {"role": "user", "content": query}]


def answer_stop(template: str) -> tuple[str, ...]:
    """Stop strings of an answer under ``template``: ``PAPER_STOP`` for the raw template, none for chat."""
    return PAPER_STOP if template == PAPER_TEMPLATE else ()


def words(text: str) -> int:
    """Length in whitespace-separated words: tokenizer-free, so lengths compare across models."""
    return len(text.split())


MARKDOWN = {  # what style control counts in an answer, per line (bold: per span)
    "list_items": re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])\s+\S", re.MULTILINE),
    "headers": re.compile(r"^\s*#{1,6}\s+\S", re.MULTILINE),
    "bold": re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),
}


def style(text: str) -> dict[str, float]:
    """An answer's length in words and its markdown density: list items, headers and bold spans per word."""
    n = words(text)
    return {"words": n, **{k: len(pattern.findall(text)) / max(n, 1) for k, pattern in MARKDOWN.items()}}


def fmt(est: dict | Estimate, percent: bool = True) -> str:
    e = est if isinstance(est, Estimate) else Estimate(**est)
    return e.percent() if percent else str(e)
