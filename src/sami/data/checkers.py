"""Programmatic checkers for verifiable principles: pure functions ``(text, **params) -> bool``.

They let adherence be measured without any judge. Users register their own with
:func:`register_checker` and name them in a principle's YAML (``checker: {name: ..., param: ...}``).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from sami.core.errors import ConfigError
from sami.core.registry import Registry

CHECKERS: Registry[Callable[..., bool]] = Registry("checker")


def register_checker(name: str):
    """Decorator: register ``fn(text, **params) -> bool`` as the checker ``name``."""
    return CHECKERS.decorator(name)


@dataclass(frozen=True)
class NamedCall:
    """A registered function by name with its parameters, as written in YAML; subclasses name the registry."""

    name: str
    params: dict = field(default_factory=dict, hash=False)

    registry: ClassVar[Registry[Callable]] = Registry("function")
    kind: ClassVar[str] = "function"

    @classmethod
    def parse(cls, entry: dict, where: str):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: expected a mapping with a 'name', e.g. {{name: {cls.example}}}")
        spec = cls(entry["name"], {k: v for k, v in entry.items() if k != "name"})
        cls.registry.lookup(spec.name, where)
        try:
            inspect.signature(cls.registry[spec.name]).bind("", **spec.params)
        except TypeError as err:
            raise ConfigError(f"{where}: bad parameters for {cls.kind} {spec.name!r}: {err}") from None
        return spec

    example: ClassVar[str] = "NAME"

    def __call__(self, text: str):
        return self.registry[self.name](text, **self.params)


class CheckerSpec(NamedCall):
    """A registered checker by name with its parameters, as written in YAML."""

    registry = CHECKERS
    kind = "checker"
    example = "max_words, n: 60"


def _words(text: str) -> int:
    return len(text.split())


_BULLET = re.compile(r"^\s*[-*\u2022]\s+\S", re.MULTILINE)
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+\S", re.MULTILINE)


@register_checker("max_words")
def max_words(text: str, n: int) -> bool:
    return 0 < _words(text) <= n


@register_checker("min_words")
def min_words(text: str, n: int) -> bool:
    return _words(text) >= n


@register_checker("bullet_list")
def bullet_list(text: str, min_items: int = 3) -> bool:
    return len(_BULLET.findall(text)) >= min_items


@register_checker("numbered_list")
def numbered_list(text: str, min_items: int = 3) -> bool:
    return len(_NUMBERED.findall(text)) >= min_items


@register_checker("no_list")
def no_list(text: str) -> bool:
    return not _BULLET.search(text) and not _NUMBERED.search(text)


@register_checker("all_lowercase")
def all_lowercase(text: str) -> bool:
    return any(c.isalpha() for c in text) and text == text.lower()


@register_checker("all_uppercase")
def all_uppercase(text: str) -> bool:
    return any(c.isalpha() for c in text) and text == text.upper()


@register_checker("include_keyword")
def include_keyword(text: str, keyword: str) -> bool:
    return keyword.lower() in text.lower()


@register_checker("exclude_keyword")
def exclude_keyword(text: str, keyword: str) -> bool:
    return keyword.lower() not in text.lower()


def _strip_fence(text: str) -> str:
    text = text.strip()
    match = re.fullmatch(r"```(?:json)?\s*\n(.*?)\n?```", text, re.DOTALL)
    return match.group(1) if match else text


@register_checker("json_format")
def json_format(text: str) -> bool:
    """The whole answer is one JSON object or array (a surrounding ```json fence is allowed)."""
    try:
        return isinstance(json.loads(_strip_fence(text)), (dict, list))
    except ValueError:
        return False


@register_checker("not_json")
def not_json(text: str) -> bool:
    return bool(text.strip()) and not json_format(text)
