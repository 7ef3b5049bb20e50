"""``sami generate``: a teacher writes C constitution-conditioned responses for every query of a pool.

For each pool item the constitutions are drawn from its category's principles (or a fixed list), each is
rendered in a principle order shuffled for generation (training shuffles again, independently), the teacher
answers every (constitution, query) prompt, the filters decide, and the record is appended to the output
(or, with its reason, to the filtered file ``<output stem>.filtered.jsonl``).

Two teacher modes (``teacher_mode``):

- ``constitution`` (the papers'): the teacher answers each (constitution, query) prompt.
- ``rewrite``: the teacher answers the query once, with no constitution, and each constitution's response is
  that answer put through the deterministic rewrite each principle declares for its side
  (``sami.data.rewrites``), in the order the principles are listed; every response must then pass its sides'
  checkers (else the record is dropped, reason ``rewrite: <principle> (<side> side) fails its checker``). The C
  responses say the same thing and differ exactly where the constitutions differ: a positive control for
  models too small to follow the constitution themselves. The provenance records the mode, the teacher's
  answer and the rewrites applied.

Resumable: records are appended chunk by chunk (one backend batch of queries); a rerun reads the ids
already in the output and the filtered file and generates only the rest, so it never writes a duplicate and a
killed run loses at most the chunk in flight. A trailing partial line left by a kill is cut off first.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from sami.backends.base import Backend, BackendConfig, Completion, SamplingParams, close_backend, make_backend
from sami.core.config import (
    ConfigError,
    config_differences,
    config_hash,
    load_yaml,
    redacted,
    save_yaml,
    to_dict,
)
from sami.core.locks import hold
from sami.core.migrate import upgrade_config
from sami.data.pools import PoolConfig, PoolItem, load_pool
from sami.data.principles import PHRASINGS, STRATEGIES, load_library, sample_constitutions
from sami.data.records import DataError, parse_record, read_appended
from sami.data.rewrites import APPLIED_LAST
from sami.data.templates import (
    GEN_CHAT_TEMPLATE,
    GENERATION_TEMPLATES,
    generation_prompt,
    render_constitution,
)
from sami.generate.filters import FilterConfig, reject_reason

logger = logging.getLogger(__name__)

# Fields that may change between runs writing the same output without changing what a record holds.
RESUMABLE_CHANGES = ("output", "num_queries", "queries_per_chunk")
TEACHER_MODES: tuple[str, ...] = ("constitution", "rewrite")


@dataclass
class ConstitutionSettings:
    """How each query's constitutions are drawn (``sami.data.principles.sample_constitutions``).

    principles: names of the principles to use for every query; None uses each query's category principles.
    library: extra principle YAML files (they add to or override the built-in library).
    """

    strategy: str = "flip_all"
    num: int | None = None
    phrasing: str = "strong"  # of the principles not flipped
    principles: list[str] | None = None
    library: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.phrasing not in PHRASINGS:
            raise ValueError(f"phrasing must be 'strong' or 'weak', got {self.phrasing!r}")
        if self.principles is not None and not self.principles:
            raise ConfigError(
                "constitutions.principles must name at least one principle (or be null for each query's category's)"
            )
        if self.num is not None and self.num < 2:
            raise ConfigError(f"constitutions.num must be at least 2 (constitutions per query), got {self.num}")


@dataclass
class GenSampling:
    max_new_tokens: int = 256
    temperature: float = 0.0  # greedy by default; the multi-task paper's math data used 0.4
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:  # checked when the config is read: a refused value is never saved
        if self.max_new_tokens < 1:
            raise ConfigError(f"sampling.max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"sampling.temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling.top_p must be in (0, 1], got {self.top_p}")


@dataclass
class GenerateConfig:
    """Everything ``sami generate`` needs. ``num_queries`` takes the first N of the shuffled pool after
    skipping ``skip_queries`` (``sami iterate`` gives each round fresh queries that way)."""

    output: str = "runs/generate/data/train.jsonl"
    seed: int = 0
    num_queries: int | None = None
    skip_queries: int = 0
    template: str = GEN_CHAT_TEMPLATE
    teacher_mode: str = "constitution"  # or "rewrite": one answer per query, rewritten per constitution
    queries_per_chunk: int | None = None  # queries generated and written together (None: one backend batch)
    teacher: BackendConfig = field(default_factory=BackendConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    constitutions: ConstitutionSettings = field(default_factory=ConstitutionSettings)
    sampling: GenSampling = field(default_factory=GenSampling)
    filters: FilterConfig = field(default_factory=FilterConfig)

    def __post_init__(self) -> None:
        if self.template not in GENERATION_TEMPLATES:
            raise ValueError(f"template must be one of {GENERATION_TEMPLATES}, got {self.template!r}")
        if self.teacher_mode not in TEACHER_MODES:
            raise ValueError(f"teacher_mode must be one of {TEACHER_MODES}, got {self.teacher_mode!r}")
        if self.num_queries is not None and self.num_queries < 1:
            raise ValueError("num_queries must be at least 1 (or null for the whole pool)")
        if self.skip_queries < 0:
            raise ValueError("skip_queries must be non-negative")
        if self.queries_per_chunk is not None and self.queries_per_chunk < 1:  # 0 read as the default, -1 as none
            raise ConfigError(
                f"queries_per_chunk must be at least 1 (or null for one backend batch), got {self.queries_per_chunk}"
            )


@dataclass
class GenerateResult:
    output: Path
    rejected_path: Path
    written: int  # records written by this run
    already_done: int  # queries found finished in the output or filtered file
    rejected: Counter  # by reason, this run
    pool_dropped: Counter  # items the pool left out, by reason
    seconds: float
    tokens: int


def rejected_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.stem + ".filtered.jsonl")


def config_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.stem + ".generate.yaml")


def _finished_ids(path: Path) -> set[str]:
    """Ids of the records already in an output or filtered file (an unfinished last line is cut off)."""
    ids = set()
    for n, obj in enumerate(read_appended(path), 1):
        if not isinstance(obj.get("id"), str):
            raise DataError(f"{path}: record {n} has no id; is this the right output file?")
        ids.add(obj["id"])
    return ids


def _check_same_config(cfg: GenerateConfig) -> None:
    path = config_path(cfg.output)
    if not path.is_file():
        return
    previous = upgrade_config(GenerateConfig, load_yaml(path))  # as this version names its keys
    diffs = {
        k: v
        for k, v in config_differences(previous, redacted(to_dict(cfg))).items()
        if k.split(".")[0] not in RESUMABLE_CHANGES
    }
    if diffs:
        lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in diffs.items())
        raise ConfigError(
            f"{cfg.output} was generated with a different configuration ({path}):\n{lines}\n"
            "write to another output, or delete the old files to start over"
        )


def select_queries(cfg: GenerateConfig) -> tuple[list[PoolItem], Counter]:
    items, dropped = load_pool(cfg.pool)
    end = None if cfg.num_queries is None else cfg.skip_queries + cfg.num_queries
    chosen = items[cfg.skip_queries : end]
    if cfg.num_queries is not None and len(chosen) < cfg.num_queries:
        logger.warning(
            "the pool has %d items after skipping %d; asked for %d", len(chosen), cfg.skip_queries, cfg.num_queries
        )
    return chosen, dropped


def _principles(cfg: GenerateConfig, library, item: PoolItem):
    names = cfg.constitutions.principles
    return [library.get(n) for n in names] if names else library.for_category(item.category)


def plan_record(cfg: GenerateConfig, library, item: PoolItem):
    """The constitutions of one query and the teacher prompts (deterministic in seed and item id): C prompts,
    one per constitution, or in ``rewrite`` mode the one query without a constitution."""
    principles = _principles(cfg, library, item)
    rng = random.Random(f"{cfg.seed}:{item.id}")
    constitutions = sample_constitutions(
        principles, cfg.constitutions.strategy, num=cfg.constitutions.num, phrasing=cfg.constitutions.phrasing, rng=rng
    )
    if cfg.teacher_mode == "rewrite":
        return constitutions, [generation_prompt(cfg.template, None, item.prompt)]
    prompts = [
        generation_prompt(
            cfg.template, render_constitution(c, seed=cfg.seed, key=f"generate:{item.id}:{j}"), item.prompt
        )
        for j, c in enumerate(constitutions)
    ]
    return constitutions, prompts


def check_rewritable(cfg: GenerateConfig, library) -> None:
    """In rewrite mode every principle a query can get must declare a rewrite and a checker for both sides."""
    if cfg.teacher_mode != "rewrite":
        return
    known = f"(rewritable: {[p.name for p in library.verifiable if p.rewritable]})"
    if not cfg.constitutions.principles:
        raise ConfigError(
            f"teacher_mode: rewrite needs constitutions.principles: a list of principles that declare rewrites {known}"
        )
    for name in cfg.constitutions.principles:
        if not library.get(name).rewritable:
            raise ConfigError(
                f"constitutions.principles: {name!r} does not declare rewrite, antithesis_rewrite, checker and "
                f"antithesis_checker, which teacher_mode: rewrite needs {known}"
            )


def rewrite_responses(principles, constitutions, answer: Completion) -> tuple[list[Completion], list, str | None]:
    """Each constitution's response made from the one ``answer``: per principle, in ``principles``' order
    (case rewrites last, ``sami.data.rewrites.APPLIED_LAST``), the rewrite of the side that constitution gives it.
    Returns the completions (finish reason and token count of the answer), the rewrites applied per response,
    and the reason to drop the record (the first side whose checker the result fails) or None."""
    completions, applied, reason = [], [], None
    for constitution in constitutions:
        lines = {item.principle: item for item in constitution.items}
        text, steps = answer.text.strip(), []
        specs = {p.name: p.side_rewrite(lines[p.name].side) for p in principles}
        for principle in sorted(principles, key=lambda p: specs[p.name].name in APPLIED_LAST):  # stable
            spec = specs[principle.name]
            text = spec(text)
            # the line's side as data files store it (docs/DATA.md)
            steps.append({"principle": principle.name, "side": lines[principle.name].stored_side, "rewrite": spec.name})
        for principle in principles:
            side = lines[principle.name].side
            if reason is None and not principle.side_checker(side)(text):
                reason = f"rewrite: {principle.name} ({side} side) fails its checker"
        completions.append(Completion(text, answer.finish_reason, answer.num_tokens))
        applied.append(steps)
    return completions, applied, reason


def _unreadable(record: dict) -> str | None:
    """Why the data reader would refuse ``record`` (checked with its own schema), or None: with filters
    turned off, a record the reader refuses goes to the filtered file instead of breaking the output."""
    try:
        parse_record(record, f"record {record['id']}")
    except DataError as err:
        return f"invalid: {str(err).split(': ', 1)[-1]}"
    return None


def _chunk_size(cfg: GenerateConfig, backend: Backend, num_constitutions: int) -> int:
    if cfg.queries_per_chunk:
        return cfg.queries_per_chunk
    per_call = getattr(backend, "batch_size", None) or 4 * cfg.teacher.concurrency
    return max(1, math.ceil(per_call / num_constitutions))


def check_output(output: Path) -> None:
    """The output must be a file path (its folder is created); checked before the teacher loads."""
    if output.is_dir():
        raise ConfigError(f"output: {output} is a folder; expected a JSONL file path")
    for parent in output.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"output: {parent} is a file, so {output} cannot be created")


def generate(cfg: GenerateConfig, backend: Backend | None = None) -> GenerateResult:
    """Run (or resume) generation into ``cfg.output``, which no other run may write meanwhile
    (``sami.core.locks``). ``backend`` overrides ``cfg.teacher`` (tests, iterate)."""
    check_output(Path(cfg.output))
    if backend is None and cfg.teacher.kind != "openai":
        from sami.models.loading import check_reference

        check_reference(cfg.teacher.model)
    with hold(cfg.output, folder=False, what="this generation"):
        return _generate(cfg, backend)


def _generate(cfg: GenerateConfig, backend: Backend | None) -> GenerateResult:
    start = time.perf_counter()
    output, rejected = Path(cfg.output), rejected_path(cfg.output)
    _check_same_config(cfg)
    library = load_library(cfg.constitutions.library)
    library.check_names(cfg.constitutions.principles, "constitutions.principles")
    check_rewritable(cfg, library)
    items, pool_dropped = select_queries(cfg)
    done = _finished_ids(output) | _finished_ids(rejected)
    todo = [item for item in items if item.id not in done]
    plans = _plans(cfg, library, todo)  # every query's constitutions, drawn before anything is written
    output.parent.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, config_path(output))
    result = GenerateResult(output, rejected, 0, len(items) - len(todo), Counter(), pool_dropped, 0.0, 0)
    if todo and backend is not None:
        _generate_chunks(cfg, library, todo, plans, backend, result, start)
    elif todo:  # a teacher built here is closed here (a vLLM engine's core process stops now, not at exit)
        teacher = make_backend(cfg.teacher)
        try:
            _generate_chunks(cfg, library, todo, plans, teacher, result, start)
        finally:
            close_backend(teacher)
    else:
        output.touch()
    result.seconds = time.perf_counter() - start
    return result


def _sampling_params(cfg: GenerateConfig) -> SamplingParams:
    s = cfg.sampling
    return SamplingParams(
        max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, stop=tuple(s.stop), seed=cfg.seed
    )


def _provenance(cfg: GenerateConfig, backend: Backend) -> dict:
    """What every record of this run shares in its ``provenance`` (the pool source is added per record)."""
    return {
        "teacher": backend.describe(),
        "generation_template": cfg.template,
        "teacher_mode": cfg.teacher_mode,
        "sampling": to_dict(cfg.sampling),
        "constitutions": {k: v for k, v in to_dict(cfg.constitutions).items() if k != "library"},
        "seed": cfg.seed,
        "config_hash": config_hash(cfg),
    }


def _plans(cfg: GenerateConfig, library, todo: list[PoolItem]) -> dict[str, tuple]:
    """``plan_record`` of every query to do, by id; constitutions that cannot be drawn are a config error."""
    plans = {}
    for item in todo:
        try:
            plans[item.id] = plan_record(cfg, library, item)
        except ConfigError as err:  # the library and the draw name what is wrong; say which query met it
            raise ConfigError(f"constitutions: {err} (query {item.id}, category {item.category!r})") from None
    return plans


def _generate_chunks(
    cfg: GenerateConfig,
    library,
    todo: list[PoolItem],
    plans: dict,
    backend: Backend,
    result: GenerateResult,
    start: float,
) -> None:
    """Generate the records of ``todo`` one chunk of queries at a time, appending each chunk to the output and
    the filtered file before the next one starts; counts go into ``result``."""
    params, provenance = _sampling_params(cfg), _provenance(cfg, backend)
    rewritten = [library.get(n) for n in cfg.constitutions.principles or ()]  # rewrite mode: the same for all
    num_c = max(len(prompts) for _, prompts in plans.values())  # prompts per query: C, or 1 for rewrites
    chunk = _chunk_size(cfg, backend, num_c)
    bar = tqdm(total=len(todo), desc="generate", unit="query", dynamic_ncols=True)
    try:
        with (
            result.output.open("a", encoding="utf-8") as out,
            result.rejected_path.open("a", encoding="utf-8") as dropped,
        ):
            for lo in range(0, len(todo), chunk):
                batch = todo[lo : lo + chunk]
                completions = backend.generate([p for item in batch for p in plans[item.id][1]], params, progress=False)
                offset = 0
                for item in batch:
                    constitutions, own = plans[item.id]
                    got = [c[0] for c in completions[offset : offset + len(own)]]
                    offset += len(own)
                    result.tokens += sum(c.num_tokens or 0 for c in got)
                    record, reason, finish = _make_record(cfg, item, constitutions, got, provenance, rewritten)
                    _append(out, dropped, record, reason, finish, result)
                out.flush()
                dropped.flush()
                bar.update(len(batch))
                tok_s = f"{result.tokens / (time.perf_counter() - start):.1f}"
                bar.set_postfix(kept=result.written, dropped=sum(result.rejected.values()), tok_s=tok_s)
    except OSError as err:  # a full disk: say where (a write's error names no file); a rerun cuts the torn line
        if err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror, f"{result.output} (or {result.rejected_path.name})") from err
    finally:
        bar.close()


def _make_record(
    cfg: GenerateConfig, item: PoolItem, constitutions, got: list[Completion], provenance: dict, rewritten: list
) -> tuple[dict, str | None, list]:
    """One query's record from the teacher's completions (rewritten per constitution in rewrite mode), the
    reason it is dropped (rewrite checker, filters, or the data reader's schema) or None, and the finish
    reasons of its responses."""
    extra, reason = {}, None
    if cfg.teacher_mode == "rewrite":
        answer = got[0]
        got, applied, reason = rewrite_responses(rewritten, constitutions, answer)
        extra = {"teacher_answer": answer.text.strip(), "rewrites": applied}
    record = {
        "id": item.id,
        "category": item.category,
        "query": item.prompt,
        "constitutions": [c.to_json() for c in constitutions],
        "responses": [c.text.strip() for c in got],
        "provenance": {**provenance, "source": item.source, **extra},
    }
    reason = reason or reject_reason(cfg.filters, constitutions, got) or _unreadable(record)
    return record, reason, [c.finish_reason for c in got]


def _append(out, dropped, record: dict, reason: str | None, finish_reasons: list, result: GenerateResult) -> None:
    """A kept record to the output; a dropped one, with its reason, to the filtered file."""
    if reason is None:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        result.written += 1
    else:
        line = {"id": record["id"], "reason": reason, "finish_reasons": finish_reasons, "record": record}
        dropped.write(json.dumps(line) + "\n")
        result.rejected[reason] += 1
