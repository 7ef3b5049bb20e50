"""Deterministic rewrites that put a response on one side of a verifiable principle.

The rewrite teacher (``sami generate`` with ``teacher_mode: rewrite``) asks the teacher for one answer per
query, without any constitution, and makes each constitution's response from it by applying, principle by
principle, the rewrite its side declares in the principle library (``rewrite`` for the principle,
``antithesis_rewrite`` for its antithesis). The C responses of a query then say the same thing and differ
exactly in what the constitutions ask for: a positive control, in which the constitution demonstrably
determines the response and a method is given a learnable signal that it must find.

Rewrites are pure functions ``(text, **params) -> str``, registered by name like the checkers
(``sami.data.checkers``); a principle's rewrite must make the answer pass that side's checker, which generation
verifies for every response it writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from sami.core.registry import Registry
from sami.data.checkers import NamedCall

REWRITES: Registry[Callable[..., str]] = Registry("rewrite")
APPLIED_LAST: set[str] = set()  # rewrites of the whole text's form (case) that must see every other rewrite's words


def register_rewrite(name: str, *, last: bool = False):
    """Register ``fn(text, **params) -> str`` under ``name``; ``last``: apply it after the rewrites that are not
    (case changes: "in summary" added by another rewrite must end up in the case asked for)."""

    def wrap(fn: Callable[..., str]) -> Callable[..., str]:
        REWRITES.register(name, fn)
        if last:
            APPLIED_LAST.add(name)
        return fn

    return wrap


class RewriteSpec(NamedCall):
    """A registered rewrite by name with its parameters, as written in YAML (``{name: bullets, min_items: 3}``)."""

    registry = REWRITES
    kind = "rewrite"
    example = "bullets, min_items: 3"


_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|#+)\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_CLAUSE = re.compile(r"(?<=[,;:])\s+(?=\S)")


@register_rewrite("lowercase", last=True)
def lowercase(text: str) -> str:
    return text.lower()


@register_rewrite("uppercase", last=True)
def uppercase(text: str) -> str:
    return text.upper()


@register_rewrite("prose")
def prose(text: str) -> str:
    """One paragraph: list markers and heading marks removed from the starts of lines, lines joined."""
    lines = [_MARKER.sub("", line).strip() for line in text.splitlines()]
    return " ".join(line for line in lines if line)


def _items(text: str, min_items: int) -> list[str]:
    """The answer cut into at least ``min_items`` pieces: sentences, then clauses of the longest piece, then
    words, in that order of preference; fewer only when the answer has fewer words than ``min_items``."""
    items = [s for s in _SENTENCE_END.split(prose(text)) if s]
    while len(items) < min_items:
        longest = max(range(len(items)), key=lambda k: len(items[k]), default=None)
        if longest is None:
            return items
        parts = [p for p in _CLAUSE.split(items[longest]) if p]
        if len(parts) < 2:
            words = items[longest].split()
            if len(words) < 2:
                return items
            half = len(words) // 2
            parts = [" ".join(words[:half]), " ".join(words[half:])]
        items[longest : longest + 1] = parts
    return items


@register_rewrite("bullets")
def bullets(text: str, min_items: int = 3) -> str:
    """A bulleted list (``- item`` lines) of the answer's sentences (split further when there are too few)."""
    return "\n".join(f"- {item}" for item in _items(text, min_items))


@register_rewrite("numbered")
def numbered(text: str, min_items: int = 3) -> str:
    return "\n".join(f"{k}. {item}" for k, item in enumerate(_items(text, min_items), 1))


@register_rewrite("add_phrase")
def add_phrase(text: str, phrase: str) -> str:
    """The answer followed by a closing line that starts with ``phrase`` and repeats its first sentence."""
    first = _SENTENCE_END.split(prose(text))[0] if text.strip() else ""
    return f"{text.rstrip()}\n\n{phrase[:1].upper()}{phrase[1:]}, {first}".rstrip()


@register_rewrite("remove_phrase")
def remove_phrase(text: str, phrase: str) -> str:
    return re.sub(r"\s*" + re.escape(phrase) + r",?", "", text, flags=re.IGNORECASE).strip()


@register_rewrite("json_object")
def json_object(text: str, key: str = "answer") -> str:
    return json.dumps({key: text}, ensure_ascii=False)
