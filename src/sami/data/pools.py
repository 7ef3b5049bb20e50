"""Prompt pools: category-tagged queries for the teacher to answer.

A pool is assembled from sources, each a ``PoolSource``:

- ``builtin``: the project's own prompts, 30 per MT-Bench category (``sami/data/pool.jsonl``), written for
  this project and checked against MT-Bench's questions, so that the test set never leaks into training.
- ``file``: a local JSONL or CSV file, a text field (or a ``template`` over several fields) and a category
  field or a fixed category.
- ``hf``: a Hugging Face dataset by name, subset and split (downloaded only when named).
- ``reasoning_gym``: a procedural generator of ``reasoning-gym`` (offline), e.g. ``gsm_symbolic``.
- ``multi-task-v1``: eight hub sources, one per category, capped at 3,000 each (``MULTI_TASK_V1``).

Every source can be capped; the pool is de-duplicated (whitespace- and case-insensitive), items whose
text is mostly non-ASCII are dropped (the multi-task paper's filter), and the order is a seeded shuffle.
Counts of what was dropped and why are returned with the items.
"""

from __future__ import annotations

import csv
import importlib.resources
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sami.core.errors import ConfigError
from sami.data.records import CATEGORIES, json_lines

POOL_KINDS: tuple[str, ...] = ("builtin", "file", "hf", "reasoning_gym", "multi-task-v1")


class PoolError(ConfigError):
    """A source that cannot be read as asked; the message names the source and, for files, the line."""


@dataclass
class PoolSource:
    """One source of prompts. Which fields matter depends on ``kind`` (see the module docstring).

    path: file path (``file``). name: dataset name (``hf``) or generator name (``reasoning_gym``).
    subset / split: ``hf`` configuration and split. text_field: the prompt's field; ``template`` (a Python
    format string such as ``"{instruction}\\n\\n{context}"``) combines several fields instead.
    category_field / category: where the category comes from, or one fixed category.
    where: keep only rows whose fields equal these values (e.g. ``{category: creative_writing}``).
    max: at most this many items from this source (after filtering; a seeded choice).
    size: items a ``reasoning_gym`` generator makes; options: that generator's settings (e.g. ``{max_digits: 1}``).
    categories: ``builtin`` only these categories.
    """

    kind: str = "builtin"
    path: str | None = None
    name: str | None = None
    subset: str | None = None
    split: str = "train"
    text_field: str = "prompt"
    template: str | None = None
    category_field: str | None = None
    category: str | None = None
    where: dict[str, str] = field(default_factory=dict)
    max: int | None = None
    size: int = 100
    options: dict[str, Any] = field(default_factory=dict)
    categories: list[str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in POOL_KINDS:
            raise ValueError(f"pool source kind must be one of {POOL_KINDS}, got {self.kind!r}")
        if self.kind == "file" and not self.path:
            raise ValueError("a file pool source needs path")
        if self.kind in ("hf", "reasoning_gym") and not self.name:
            raise ValueError(f"a {self.kind} pool source needs name")
        if self.kind in ("file", "hf") and not (self.category or self.category_field):
            raise ValueError(f"a {self.kind} pool source needs category or category_field")
        for c in [self.category] + list(self.categories or []):
            if c is not None and c not in CATEGORIES:
                raise ValueError(f"category {c!r} is not one of {CATEGORIES}")
        if self.max is not None and self.max < 1:
            raise ValueError("max must be at least 1 (or null for no cap)")
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")

    def label(self) -> str:
        return {"builtin": "builtin", "file": f"file:{self.path}", "multi-task-v1": "multi-task-v1"}.get(
            self.kind, f"{self.kind}:{self.name}"
        )


@dataclass
class PoolConfig:
    sources: list[PoolSource] = field(default_factory=lambda: [PoolSource()])
    seed: int = 0
    dedupe: bool = True
    max_non_ascii: float = 0.1  # drop items whose text has a larger fraction of non-ASCII characters
    max_chars: int | None = 4000  # drop very long prompts (None keeps all)

    def __post_init__(self) -> None:  # 0 or less would drop every prompt, and the run would go on with none
        if self.max_chars is not None and self.max_chars < 1:
            raise ValueError(f"pool.max_chars must be at least 1 (or null to keep all), got {self.max_chars}")
        if not 0 <= self.max_non_ascii <= 1:
            raise ValueError(f"pool.max_non_ascii must be a fraction in [0, 1], got {self.max_non_ascii}")


@dataclass(frozen=True)
class PoolItem:
    id: str
    category: str
    prompt: str
    source: str


# One public source per category, capped at 3,000 each, as the multi-task experiment describes its pool.
# The paper's text does not list its exact datasets; these are well-known stand-ins (see docs/DATA.md).
MULTI_TASK_V1: tuple[PoolSource, ...] = (
    PoolSource(
        kind="hf", name="HuggingFaceH4/no_robots", where={"category": "Generation"}, category="writing", max=3000
    ),
    PoolSource(kind="hf", name="HuggingFaceH4/no_robots", where={"category": "Chat"}, category="roleplay", max=3000),
    PoolSource(kind="hf", name="tau/commonsense_qa", text_field="question", category="reasoning", max=3000),
    PoolSource(kind="hf", name="openai/gsm8k", subset="main", text_field="question", category="math", max=3000),
    PoolSource(kind="hf", name="sahil2801/CodeAlpaca-20k", text_field="instruction", category="coding", max=3000),
    PoolSource(
        kind="hf",
        name="databricks/databricks-dolly-15k",
        where={"category": "information_extraction"},
        template="{instruction}\n\n{context}",
        category="extraction",
        max=3000,
    ),
    PoolSource(kind="hf", name="allenai/sciq", text_field="question", category="stem", max=3000),
    PoolSource(
        kind="hf",
        name="databricks/databricks-dolly-15k",
        where={"category": "open_qa"},
        text_field="instruction",
        category="humanities",
        max=3000,
    ),
)


def _rows_from_file(path: Path) -> list[tuple[str, dict]]:
    """(``file:line``, row) pairs of a JSONL or CSV file."""
    if not path.is_file():
        raise PoolError(f"{path}: no such file")
    rows = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            try:
                for n, row in enumerate(csv.DictReader(f), start=2):  # line 1 is the header
                    rows.append((f"{path}:{n}", row))
            except UnicodeDecodeError:
                raw = path.read_bytes()
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as err:  # the reader decodes ahead: find the line from the bytes
                    line = raw[: err.start].count(b"\n") + 1
                    raise PoolError(f"{path}:{line}: not UTF-8 text ({err.reason})") from None
                raise
        return rows
    return [(f"{path}:{n}", row) for n, row in json_lines(path)]


def _rows_from_hub(src: PoolSource) -> list[tuple[str, dict]]:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a dependency
        raise PoolError("hf pool sources need the datasets package") from err
    try:
        ds = datasets.load_dataset(src.name, src.subset, split=src.split)
    except Exception as err:
        raise PoolError(f"{src.label()}: could not load split {src.split!r}: {err}") from err
    return [(f"{src.label()}[{i}]", row) for i, row in enumerate(ds)]


def _text(src: PoolSource, row: dict, where: str) -> str:
    try:
        text = src.template.format(**row) if src.template else row[src.text_field]
    except KeyError as err:
        raise PoolError(f"{where}: missing field {err.args[0]!r} (fields: {sorted(row)})") from None
    if not isinstance(text, str):
        raise PoolError(f"{where}: field {src.text_field!r} is not text")
    return text.strip()


def _category(src: PoolSource, row: dict, where: str) -> str:
    if src.category_field:
        if src.category_field not in row:
            raise PoolError(f"{where}: missing field {src.category_field!r}")
        category = str(row[src.category_field]).strip().lower()
        if category not in CATEGORIES:
            raise PoolError(f"{where}: {src.category_field} {category!r} is not one of {CATEGORIES}")
        return category
    return src.category  # type: ignore[return-value]


def builtin_items(categories: list[str] | None = None) -> list[PoolItem]:
    with importlib.resources.as_file(importlib.resources.files("sami").joinpath("data/pool.jsonl")) as path:
        rows = [row for _, row in json_lines(path, what="built-in pool")]
    return [
        PoolItem(f"builtin-{row['id']}", row["category"], row["prompt"], "builtin")
        for row in rows
        if categories is None or row["category"] in categories
    ]


def _reasoning_gym_items(src: PoolSource, seed: int) -> list[PoolItem]:
    import reasoning_gym

    try:
        ds = reasoning_gym.create_dataset(src.name, size=src.size, seed=seed, **src.options)
    except Exception as err:
        raise PoolError(f"{src.label()}: {err}") from err
    category = src.category or ("math" if "gsm" in src.name or "arith" in src.name else "reasoning")
    return [PoolItem(f"{src.name}-{seed}-{i}", category, ds[i]["question"], src.label()) for i in range(len(ds))]


def source_items(src: PoolSource, seed: int = 0) -> list[PoolItem]:
    """All items of one source, before caps, de-duplication and filters."""
    if src.kind == "builtin":
        return builtin_items(src.categories)
    if src.kind == "reasoning_gym":
        return _reasoning_gym_items(src, seed)
    rows = _rows_from_file(Path(src.path)) if src.kind == "file" else _rows_from_hub(src)
    items = []
    for where, row in rows:
        if any(str(row.get(k)) != v for k, v in src.where.items()):
            continue
        row_id = row.get("id", where.rsplit(":", 1)[-1].strip("[]"))
        items.append(
            PoolItem(f"{src.label()}#{row_id}", _category(src, row, where), _text(src, row, where), src.label())
        )
    return items


def non_ascii_fraction(text: str) -> float:
    return sum(1 for ch in text if ord(ch) > 127) / max(len(text), 1)


def load_pool(cfg: PoolConfig) -> tuple[list[PoolItem], Counter]:
    """The pool's items in a seeded order, and a count of dropped items per reason."""
    sources = [s for src in cfg.sources for s in (MULTI_TASK_V1 if src.kind == "multi-task-v1" else (src,))]
    rng = random.Random(cfg.seed)
    dropped: Counter = Counter()
    seen: set[str] = set()
    items: list[PoolItem] = []
    for src in sources:
        kept = []
        for item in source_items(src, cfg.seed):
            if not item.prompt:
                dropped["empty"] += 1
            elif non_ascii_fraction(item.prompt) > cfg.max_non_ascii:
                dropped["non-ascii"] += 1
            elif cfg.max_chars is not None and len(item.prompt) > cfg.max_chars:
                dropped["too long"] += 1
            elif cfg.dedupe and (key := " ".join(item.prompt.lower().split())) in seen:
                dropped["duplicate"] += 1
            else:
                if cfg.dedupe:
                    seen.add(key)
                kept.append(item)
        if src.max is not None and len(kept) > src.max:
            dropped["over source cap"] += len(kept) - src.max
            kept = rng.sample(kept, src.max)
        items.extend(kept)
    ids = Counter(item.id for item in items)
    if repeated := [i for i, n in ids.items() if n > 1]:
        raise PoolError(f"pool item ids repeat across sources: {repeated[:5]}")
    rng.shuffle(items)
    return items, dropped


def parse_pool_spec(spec: str) -> PoolSource:
    """``KIND[:ARG][,key=value...]`` from the command line, e.g. ``builtin``, ``builtin,categories=math``,
    ``file:prompts.jsonl,text_field=text,category=math``, ``hf:openai/gsm8k,subset=main,text_field=question,
    category=math``, ``reasoning_gym:gsm_symbolic,size=50``, ``multi-task-v1``."""
    head, *pairs = spec.split(",")
    kind, _, arg = head.partition(":")
    values: dict = {"kind": kind}
    if arg:
        values["path" if kind == "file" else "name"] = arg
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise PoolError(f"pool spec {spec!r}: expected key=value, got {pair!r}")
        if key in ("max", "size"):
            values[key] = int(value)
        elif key == "categories":
            values[key] = value.split("+")
        elif key.startswith("where."):
            values.setdefault("where", {})[key.removeprefix("where.")] = value
        elif key.startswith("options."):  # a generator setting, read as YAML: max_digits=1 is a number
            values.setdefault("options", {})[key.removeprefix("options.")] = yaml.safe_load(value)
        else:
            values[key] = value
    from sami.core.config import from_dict

    return from_dict(PoolSource, values, source=f"pool spec {spec!r}")
