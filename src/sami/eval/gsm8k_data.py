"""GSM8K problems, prompts and answer extraction: the parts of ``sami eval gsm8k`` that need no model.

Sources: a local JSONL in the original format (``{"question", "answer"}`` with the gold after ``#### ``;
a file, or a folder holding ``<split>.jsonl``), the hub (``openai/gsm8k`` when a user names it; any hub id
with the same fields), and, offline, reasoning-gym's procedural generators: ``gsm_symbolic`` (the default,
GSM8K-derived) or any generator with numeric answers as ``reasoning_gym:NAME`` (e.g.
``reasoning_gym:basic_arithmetic``, easy enough for a 135M model to solve sometimes).

Procedural problems are generated with ``seed + EVAL_SEED_OFFSET``, so that a training pool drawn from the
same generator with a small seed does not hold the very same items; ``exclude`` drops any problem whose
question is one of the given texts (the experiment passes its training queries).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sami.core.errors import ConfigError, DataError, InputMissing
from sami.data.records import json_lines

Number = int | float
EXTRACT_MODES: tuple[str, ...] = ("strict", "flexible", "paper")


@dataclass(frozen=True)
class GsmPrompt:
    """A versioned prompt: raw text (``chat`` False) or one user message of a chat template."""

    version: str
    template: str  # formatted with {question}
    chat: bool
    stop: tuple[str, ...]
    extract: str  # the extraction mode that matches what the prompt asks for
    description: str


PROMPTS: dict[str, GsmPrompt] = {
    p.version: p
    for p in (
        GsmPrompt(
            "paper-cot-v1",
            "Q: {question}\nA: Let's think step by step. First,",
            chat=False,
            stop=("\nQ:",),
            extract="paper",
            description="the multi-task SAMI paper's zero-shot chain-of-thought prompt (raw text, base models)",
        ),
        GsmPrompt(
            "qa-v1",
            "Question: {question}\nAnswer:",
            chat=False,
            stop=("\nQuestion:",),
            extract="flexible",
            description="the standard zero-shot question/answer prompt of the GSM8K harnesses (raw text)",
        ),
        GsmPrompt(
            "chat-cot-v1",
            "{question}\n\nSolve the problem step by step. End your answer with a line of the form "
            '"The answer is N." where N is the final number.',
            chat=True,
            stop=(),
            extract="strict",
            description="zero-shot chain of thought for instruction-tuned models, as one user message",
        ),
    )
}


def gsm8k_prompt(version: str, question: str) -> str | list[dict[str, str]]:
    """A GSM8K question under prompt ``version`` (``PROMPTS``): the text, or one user message for a chat prompt.
    (The training prompt under a constitution is ``sami.data.templates.build_prompt``.)"""
    try:
        prompt = PROMPTS[version]
    except KeyError:
        raise ConfigError(f"unknown GSM8K prompt {version!r}; choose one of {sorted(PROMPTS)}") from None
    text = prompt.template.format(question=question)
    return [{"role": "user", "content": text}] if prompt.chat else text


# A number: optional sign (a minus not glued to a preceding word or digit, so "3-4" is not "-4"), optional
# currency, digits with thousands separators in groups of three (so a list "1,2,3" is three numbers) or
# plain digits, optional decimals.
_NUMBER = r"(?<![\w.])(-)?[$€£]?(-)?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
_NUMBER_RE = re.compile(_NUMBER)
_STRICT_RE = re.compile(r"(?:####|the (?:final )?answer is:?)[\s*]*" + _NUMBER, re.IGNORECASE)


def _to_number(sign: str | None, digits: str) -> Number:
    value = float(digits.replace(",", ""))
    if sign:
        value = -value
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def extract_answer(text: str, mode: str = "flexible") -> Number | None:
    """The final numeric answer in a model's text, or None when there is none.

    - ``strict``: the number after the last ``#### `` or "The answer is" (case-insensitive).
    - ``flexible``: the last number in the text; thousands commas and currency signs removed, negatives
      and decimals kept.
    - ``paper``: the multi-task SAMI paper's rule: the text after the last "=" (the whole text when there
      is none), commas removed, the last integer. Faithful to that rule, "= 2.5" gives 5.

    Integral values come back as ``int`` ("18.00" gives 18), others as ``float``.
    """
    if mode == "strict":
        matches = list(_STRICT_RE.finditer(text))
        if not matches:
            return None
        m = matches[-1]
        return _to_number(m.group(1) or m.group(2), m.group(3))
    if mode == "flexible":
        matches = list(_NUMBER_RE.finditer(text))
        if not matches:
            return None
        m = matches[-1]
        return _to_number(m.group(1) or m.group(2), m.group(3))
    if mode == "paper":
        tail = text.rsplit("=", 1)[-1].replace(",", "")
        integers = re.findall(r"(?<![\w])-?\d+|\d+", tail)
        return int(integers[-1]) if integers else None
    raise ConfigError(f"unknown extraction mode {mode!r}; choose one of {EXTRACT_MODES}")


def parse_gold(answer: str) -> Number:
    """The gold number of a GSM8K answer field: what follows ``#### ``, commas removed."""
    if "####" not in answer:
        raise DataError("no '####' marker in the answer")
    value = extract_answer(answer[answer.rindex("####") :], "strict")
    if value is None:
        raise DataError("no number after '####'")
    return value


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    gold: Number


def _read_local(path: Path, split: str) -> tuple[list[Problem], str]:
    if path.is_dir():
        path = path / f"{split}.jsonl"
    problems = []
    for number, obj in json_lines(path, "GSM8K file"):
        where = f"{path}:{number}"
        for key in ("question", "answer"):
            if not isinstance(obj.get(key), str):
                raise DataError(f"{where}: field {key!r} must be a string")
        try:
            gold = parse_gold(obj["answer"])
        except ValueError as err:
            raise DataError(f"{where}: field 'answer': {err}") from None
        problems.append(Problem(f"{path.stem}-{len(problems)}", obj["question"], gold))
    return problems, str(path)


def _read_hub(name: str, split: str, config: str) -> list[Problem]:
    try:
        import datasets
    except ImportError:
        raise ImportError("loading GSM8K from the hub needs the 'datasets' package: pip install datasets") from None
    rows = datasets.load_dataset(name, config, split=split)
    problems = []
    for k, row in enumerate(rows):
        try:
            problems.append(Problem(f"{split}-{k}", row["question"], parse_gold(row["answer"])))
        except (KeyError, ValueError) as err:
            raise DataError(f"{name} ({config}, {split}) row {k}: {err}") from None
    return problems


EVAL_SEED_OFFSET = 1_000_003  # evaluation items of a generator are drawn apart from a pool's (seed 0, 1, ...)
RG_PREFIX = "reasoning_gym:"


def _read_reasoning_gym(name: str, size: int, seed: int, options: dict) -> list[Problem]:
    import reasoning_gym

    try:
        dataset = reasoning_gym.create_dataset(name, size=size, seed=seed, **options)
    except Exception as err:
        raise ConfigError(f"reasoning-gym generator {name!r}: {err}") from None
    problems = []
    for k, entry in enumerate(dataset):
        gold = extract_answer(str(entry["answer"]), "flexible")
        if gold is None:
            raise DataError(f"{name} (seed {seed}) item {k}: non-numeric answer {entry['answer']!r}")
        problems.append(Problem(f"{name}-{seed}-{k}", entry["question"], gold))
    return problems


def load_problems(
    source: str = "gsm_symbolic",
    *,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    hub_config: str = "main",
    exclude: frozenset[str] = frozenset(),
    options: dict | None = None,
) -> tuple[list[Problem], dict]:
    """Problems and a provenance dict.

    ``source``: ``gsm_symbolic`` or ``reasoning_gym:NAME`` (offline, generated with ``seed +
    EVAL_SEED_OFFSET`` and the generator's ``options``; ``limit`` items, default 100; the split does not
    apply), an existing file or folder (original GSM8K JSONL), or a hub dataset id (``openai/gsm8k``; needs
    the network). Problems whose question is in ``exclude`` are dropped (counted in the provenance);
    ``limit`` keeps the first N of the rest.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    generated = source == "gsm_symbolic" or source.startswith(RG_PREFIX)
    if options and not generated:
        raise ConfigError(f"{source}: generator options apply to reasoning_gym sources only")
    if generated:
        name = source.removeprefix(RG_PREFIX)
        size, rg_seed = (limit or 100) + len(exclude), seed + EVAL_SEED_OFFSET
        problems = _read_reasoning_gym(name, size, rg_seed, options or {})
        kept = [p for p in problems if p.question not in exclude]
        provenance = {"source": source, "size": size, "seed": rg_seed, "excluded": len(problems) - len(kept)}
        if options:
            provenance["options"] = options
        return kept[: limit or 100], provenance
    path = Path(source).expanduser()
    if path.exists():
        problems, where = _read_local(path, split)
        provenance = {"source": where, "split": split}
    elif "/" in source and not source.startswith((".", "/")):
        problems = _read_hub(source, split, hub_config)
        provenance = {"source": f"hub:{source}", "config": hub_config, "split": split}
    else:
        raise InputMissing(f"GSM8K source {source!r} is neither gsm_symbolic, an existing path nor a hub id")
    kept = [p for p in problems if p.question not in exclude]
    provenance["excluded"] = len(problems) - len(kept)
    if not kept:
        raise ConfigError(f"{source}: no problems")
    return kept[:limit] if limit else kept, provenance
