"""Principles, constitutions and the sampler that builds C distinct constitutions per query.

A principle has two sides: the principle itself, in a strong phrasing (used to generate and train) or a weak one
(used at evaluation time), and its antithesis (its opposite). A constitution is a short numbered list of
principles, each on one side; the constitutions of one query differ by which principles are flipped to their
antithesis.

The built-in library (``sami/data/principles.yaml``) holds the nine principles of the multi-task
experiments, mapped to the eight MT-Bench categories, and a set of *verifiable* principles whose
adherence a program can check (see ``sami.data.checkers``). Users add or override principles with their own
YAML files in the same format, given per run or added once by a plugin (``register_library``, ``sami.plugins``).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from sami.core.config import load_yaml
from sami.core.errors import ConfigError, InputMissing
from sami.core.registry import Registry
from sami.data.checkers import CheckerSpec
from sami.data.rewrites import RewriteSpec

Side = Literal["principle", "antithesis"]
SIDES: tuple[str, ...] = ("principle", "antithesis")
Phrasing = Literal["strong", "weak"]
PHRASINGS: tuple[str, ...] = ("strong", "weak")  # the words of a principle on its principle side
# A constitution line in a file (docs/DATA.md) names its words in one field, ``side``: the phrasing of a principle on
# its principle side, or ``antithesis``. Files keep the field and values they had before side and phrasing were
# told apart, so files written by any version read alike.
STORED_SIDES: tuple[str, ...] = (*PHRASINGS, "antithesis")
STRATEGIES: tuple[str, ...] = ("flip_one", "flip_all", "all_combinations")


@dataclass(frozen=True)
class Principle:
    name: str
    strong: str
    weak: str
    antithesis: str
    checker: CheckerSpec | None = None  # passes when a response follows the principle side
    antithesis_checker: CheckerSpec | None = None  # passes when it follows the antithesis
    rewrite: RewriteSpec | None = None  # turns an answer into one that follows the principle (rewrite teacher)
    antithesis_rewrite: RewriteSpec | None = None  # ... into one that follows the antithesis

    def text(self, side: Side, phrasing: Phrasing | None) -> str:
        """The principle's words on ``side``: its antithesis, or the principle in ``phrasing``."""
        if side == "antithesis":
            return self.antithesis
        _check_side(side)
        if phrasing not in PHRASINGS:
            raise ConfigError(f"phrasing must be one of {PHRASINGS}, got {phrasing!r}")
        return self.strong if phrasing == "strong" else self.weak

    @property
    def verifiable(self) -> bool:
        return self.checker is not None

    @property
    def rewritable(self) -> bool:
        """Both sides declare a rewrite and a checker, so the rewrite teacher can make and verify either."""
        return None not in (self.rewrite, self.antithesis_rewrite, self.checker, self.antithesis_checker)

    def side_rewrite(self, side: Side) -> RewriteSpec:
        _check_side(side)
        spec = self.antithesis_rewrite if side == "antithesis" else self.rewrite
        if spec is None:
            raise ConfigError(f"principle {self.name!r} declares no rewrite for its {side} side")
        return spec

    def side_checker(self, side: Side) -> CheckerSpec | None:
        """The checker that passes when a response follows ``side``."""
        _check_side(side)
        return self.antithesis_checker if side == "antithesis" else self.checker


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ConfigError(f"side must be one of {SIDES}, got {side!r}")


@dataclass(frozen=True)
class ConstitutionItem:
    """One line of a constitution: the words of principle ``principle`` (its name) on ``side``, in ``phrasing`` on
    the principle side (None on the antithesis side). All three are None for free text a user wrote."""

    text: str
    principle: str | None = None
    side: Side | None = None
    phrasing: Phrasing | None = None

    def __post_init__(self) -> None:
        if self.side is not None:
            _check_side(self.side)
        if not (self.phrasing in PHRASINGS if self.side == "principle" else self.phrasing is None):
            raise ValueError(
                f"a line on the principle side has a phrasing {PHRASINGS}, others none; got side {self.side!r}, "
                f"phrasing {self.phrasing!r}"
            )

    @classmethod
    def from_stored(cls, text: str, principle: str | None, stored_side: str | None) -> ConstitutionItem:
        """A line as files store it: ``stored_side`` one of ``STORED_SIDES`` or None."""
        if stored_side in PHRASINGS:
            return cls(text, principle, "principle", stored_side)
        return cls(text, principle, stored_side)

    @property
    def stored_side(self) -> str | None:
        """The ``side`` field a file stores for this line (``STORED_SIDES``): the phrasing on the principle side."""
        return self.phrasing if self.side == "principle" else self.side


@dataclass(frozen=True)
class Constitution:
    items: tuple[ConstitutionItem, ...]

    @classmethod
    def from_text(cls, text: str) -> Constitution:
        return cls((ConstitutionItem(text),))

    @property
    def num_antitheses(self) -> int:
        return sum(item.side == "antithesis" for item in self.items)

    def render(self, rng: random.Random | None = None) -> str:
        """The text shown to a model: items numbered, in stored order or shuffled by ``rng``.

        A constitution given as one free text is returned unchanged.
        """
        items = list(self.items)
        if len(items) == 1 and items[0].principle is None:
            return items[0].text
        if rng is not None:
            rng.shuffle(items)
        return "\n".join(f"{k}. {item.text}" for k, item in enumerate(items, 1))

    def to_json(self) -> str | dict:
        if len(self.items) == 1 and self.items[0].principle is None:
            return self.items[0].text
        return {"principles": [{"name": i.principle, "side": i.stored_side, "text": i.text} for i in self.items]}


@dataclass
class PrincipleLibrary:
    principles: dict[str, Principle] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> Principle:
        try:
            return self.principles[name]
        except KeyError:
            raise ConfigError(f"unknown principle {name!r}; known: {sorted(self.principles)}") from None

    def check_names(self, names: Sequence[str] | None, setting: str) -> None:
        """A config's list of principle names (``setting``, e.g. ``mtbench.principles``) names only principles
        the library holds; checked before anything is written."""
        unknown = [n for n in names or () if n not in self.principles]
        if unknown:
            raise ConfigError(f"{setting}: unknown principle(s) {unknown}; known: {sorted(self.principles)}")

    def for_category(self, category: str) -> list[Principle]:
        if category not in self.categories:
            raise ConfigError(f"no principles for category {category!r}; known: {sorted(self.categories)}")
        return [self.get(name) for name in self.categories[category]]

    @property
    def verifiable(self) -> list[Principle]:
        return [p for p in self.principles.values() if p.verifiable]

    def update(self, other: PrincipleLibrary) -> None:
        self.principles.update(other.principles)
        self.categories.update(other.categories)

    @classmethod
    def from_yaml(cls, path: str | Path) -> PrincipleLibrary:
        return cls.from_dict(load_yaml(path, "principle library"), source=str(path))  # a path or a package resource

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> PrincipleLibrary:
        unknown = set(data) - {"version", "principles", "verifiable", "categories"}
        if unknown:
            raise ConfigError(f"{source}: unknown top-level keys {sorted(unknown)}")
        library = cls()
        for key in ("principles", "verifiable"):
            for k, entry in enumerate(data.get(key) or []):
                principle = _parse_principle(entry, f"{source}: {key}[{k}]")
                if key == "verifiable" and principle.checker is None:
                    raise ConfigError(
                        f"{source}: {key}[{k}] ({principle.name}): a verifiable principle needs a checker"
                    )
                library.principles[principle.name] = principle
        for category, names in (data.get("categories") or {}).items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConfigError(f"{source}: categories.{category}: expected a list of principle names")
            library.categories[category] = list(names)
        return library

    def validate(self) -> None:
        for category, names in self.categories.items():
            for name in names:
                if name not in self.principles:
                    raise ConfigError(f"category {category!r} names unknown principle {name!r}")


def _parse_principle(entry: dict, where: str) -> Principle:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(entry).__name__}")
    fields = {"name", "strong", "weak", "antithesis", "checker", "antithesis_checker", "rewrite", "antithesis_rewrite"}
    unknown = set(entry) - fields
    if unknown:
        raise ConfigError(f"{where}: unknown fields {sorted(unknown)}")
    for key in ("name", "strong", "antithesis"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ConfigError(f"{where}: field {key!r} must be a non-empty string")
    checker = CheckerSpec.parse(entry["checker"], f"{where}.checker") if entry.get("checker") else None
    anti = entry.get("antithesis_checker")
    rewrites = {
        key: RewriteSpec.parse(entry[key], f"{where}.{key}") if entry.get(key) else None
        for key in ("rewrite", "antithesis_rewrite")
    }
    return Principle(
        name=entry["name"],
        strong=entry["strong"].strip(),
        weak=(entry.get("weak") or entry["strong"]).strip(),
        antithesis=entry["antithesis"].strip(),
        checker=checker,
        antithesis_checker=CheckerSpec.parse(anti, f"{where}.antithesis_checker") if anti else None,
        **rewrites,
    )


# principle files plugins added (``register_library``), by path, read after the built-in one in this order
PLUGIN_LIBRARIES: Registry[Path] = Registry("principle library")


def register_library(path: str | Path) -> None:
    """Add a principle YAML file to every library ``load_library`` builds (a plugin's principles)."""
    path = Path(path)
    if not path.is_file():
        raise InputMissing(f"principle library not found: {path}")
    if str(path) not in PLUGIN_LIBRARIES:  # a second registration of the same file changes nothing
        PLUGIN_LIBRARIES.register(str(path), path)


def load_library(extra: Sequence[str | Path] = ()) -> PrincipleLibrary:
    """The built-in library, extended (and overridden by name) with the files plugins registered, then with
    the user's YAML files in order."""
    library = PrincipleLibrary.from_yaml(resources.files("sami") / "data" / "principles.yaml")
    for path in [*PLUGIN_LIBRARIES.values(), *extra]:
        library.update(PrincipleLibrary.from_yaml(path))
    library.validate()
    return library


def sample_constitutions(
    principles: Sequence[Principle],
    strategy: str = "flip_all",
    *,
    num: int | None = None,
    phrasing: Phrasing = "strong",
    rng: random.Random | None = None,
) -> list[Constitution]:
    """Distinct constitutions over ``principles``; the first one flips nothing (the positive one). Principles
    not flipped are in ``phrasing``.

    Strategies: ``flip_all`` gives the positive and the all-antithesis constitution (C = 2); ``flip_one``
    gives the positive one plus one constitution per principle with only that principle flipped
    (C = P + 1); ``all_combinations`` gives every subset of flips (C = 2**P), ordered by number of flips.
    ``num`` keeps the positive constitution and a random choice of the others. ``rng`` shuffles the
    principle order inside each constitution (and draws the choice); pass a seeded one.
    """
    if not principles:
        raise ConfigError("need at least one principle to build constitutions")
    names = [p.name for p in principles]
    if len(set(names)) != len(names):
        raise ConfigError(f"principles repeat: {names}")
    if phrasing not in PHRASINGS:
        raise ConfigError(f"phrasing (of the principles not flipped) must be one of {PHRASINGS}, got {phrasing!r}")
    rng = rng or random.Random(0)
    p = len(principles)
    if strategy == "flip_all":
        flips = [(), tuple(range(p))]
    elif strategy == "flip_one":
        flips = [()] + [(k,) for k in range(p)]
    elif strategy == "all_combinations":
        flips = [c for n in range(p + 1) for c in itertools.combinations(range(p), n)]
    else:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    if num is not None:
        if num < 2 or num > len(flips):
            raise ConfigError(
                f"strategy {strategy!r} over {p} principles gives {len(flips)} constitutions; asked for {num}"
            )
        keep = sorted(rng.sample(range(1, len(flips)), num - 1))
        flips = [flips[0]] + [flips[k] for k in keep]
    constitutions = []
    for flipped in flips:
        items = [
            ConstitutionItem(pr.antithesis, pr.name, "antithesis")
            if k in flipped
            else ConstitutionItem(pr.text("principle", phrasing), pr.name, "principle", phrasing)
            for k, pr in enumerate(principles)
        ]
        rng.shuffle(items)
        constitutions.append(Constitution(tuple(items)))
    return constitutions
