"""The training methods' registry: one ``Method`` entry per method, built-in or added by a plugin.

An entry says everything the rest of the package needs to know about a method: its settings (a config
dataclass), the examples it takes from a record (how its data are paired), what trains it (a TRL recipe run
by ``sami.train.trl_runner``, or a trainer of its own), and how ``sami train`` and the report name it and its
steps. The built-in methods register in ``sami.train.methods``, a plugin's through the same
``register_method`` (or ``sami.train.methods.register_trl_method`` for a method TRL trains).

A built-in method keeps its settings in ``TrainConfig``'s field of its name (``sami:``, ``dpo:``, ...); a
method a plugin adds keeps them under ``sections.<method>:`` (``-o sections.cpo.beta=0.2``), read with
``method_settings``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sami.core.config import from_dict
from sami.core.errors import PluginError
from sami.core.registry import Registry


@dataclass(frozen=True)
class Method:
    """One training method.

    section: its settings dataclass (every field with a default); ``None`` when it has none.
    examples: ``(record, cfg, tokenizer) -> list``: the token-id examples (rows, pairs) it trains on from one
        record, as its trainer reads them.
    train: ``(cfg, resume=...) -> TrainResult``: trains, the output folder already checked and locked
        (``sami.train.trl_runner.train_baseline`` for a method with a ``recipe``).
    step_line: one step's headline numbers from its ``metrics.jsonl`` record, for the console.
    label: its name in headings and the report (``SimPO``); empty: the name in capitals.
    recipe: how TRL trains it (``sami.train.trl_recipes.TrlRecipe``), for a method TRL trains.
    """

    name: str
    section: type | None
    examples: Callable[..., list]
    train: Callable[..., Any]
    step_line: Callable[[dict], str]
    label: str = ""
    help: str = ""
    recipe: Any = None

    @property
    def title(self) -> str:
        return self.label or self.name.upper()


METHODS: Registry[Method] = Registry("training method")
BUILT_IN_SECTIONS: tuple[str, ...] = ("sami", "sft", "dpo", "kto", "orpo", "simpo")  # TrainConfig's own fields


def register_method(method: Method) -> Method:
    """Make ``method`` available to ``sami train --method``, ``TrainConfig.method`` and experiment studies."""
    if method.section is not None and not dataclasses.is_dataclass(method.section):
        raise PluginError(f"training method {method.name!r}: section must be a config dataclass")
    if method.name in ("sections", "method", "model", "optim") or "+" in method.name:
        raise PluginError(f"training method {method.name!r}: a name of a TrainConfig field or with '+' is taken")
    return METHODS.register(method.name, method)


def own_section(name: str) -> bool:
    """Whether method ``name`` keeps its settings in ``TrainConfig``'s field of its name."""
    return name in BUILT_IN_SECTIONS


def method_settings(cfg, name: str | None = None):
    """The settings of method ``name`` (default ``cfg.method``) in ``cfg`` (a ``TrainConfig``): its own field
    for a built-in method, else ``sections.<name>`` parsed into the entry's dataclass (defaults when absent)."""
    name = cfg.method if name is None else name
    if own_section(name):
        return getattr(cfg, name)
    entry = METHODS.lookup(name, "method")
    if entry.section is None:
        return None
    return from_dict(entry.section, cfg.sections.get(name), source=f"sections.{name}")
