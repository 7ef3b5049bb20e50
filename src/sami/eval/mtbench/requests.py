"""MT-Bench judge requests: who is judged against whom, every request not yet stored (per judge, pair, order,
question and turn), and judging them in one batched run per kind of verdict."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

from sami.backends.base import BACKENDS, SamplingParams
from sami.core.errors import ConfigError, DataError
from sami.core.layout import graded_judgments, pair_judgments
from sami.eval.common import LazyBackend, Shown
from sami.eval.config import EvalConfig
from sami.eval.judges import JUDGES, VERDICT_LETTERS, VERDICT_PREFIX, Judge, JudgeItem, hard_verdict
from sami.eval.mtbench.answering import answered_turns, load_answers, question_constitution, read_shown
from sami.eval.mtbench_data import Question, load_judge_prompts
from sami.eval.store import JsonlStore


def pairs(cfg: EvalConfig) -> list[tuple[str, str]]:
    names = [n for n, _ in cfg.checkpoints()]
    against = cfg.mtbench.against
    if against is not None:
        if against not in names:
            raise ConfigError(f"mtbench.against {against!r} is not one of the checkpoints {names}")
        return [(n, against) for n in names if n != against]
    versus = cfg.mtbench.versus
    if versus is not None:
        missing = sorted(set(versus) - set(names))
        if missing:
            raise ConfigError(f"mtbench.versus {missing} are not among the checkpoints {names}")
        return [(x, y) for x, y in combinations(names, 2) if x in versus or y in versus]
    return list(combinations(names, 2))


def judged_turns(cfg: EvalConfig, judge: Judge) -> tuple[int, ...]:
    return (1,) if judge.turns == "first" else answered_turns(cfg)


def verdict_mode(cfg: EvalConfig) -> str:
    """``probability`` or ``text``: ``mtbench.verdict``, with ``auto`` resolved by the judge's backend kind
    (``BackendKind.verdict_probabilities``)."""
    mode, kind = cfg.mtbench.verdict, BACKENDS[cfg.judge.kind]
    if mode == "auto":
        return "probability" if kind.verdict_probabilities == "default" else "text"
    if mode == "probability" and kind.verdict_probabilities == "no":
        able = [k.name for k in BACKENDS.values() if k.verdict_probabilities != "no"]
        raise ConfigError(
            f"verdict probabilities come from a judge of kind {able}, not {kind.name!r} (a vLLM judge: serve it "
            "with vllm serve MODEL and use judge.kind: openai), or set mtbench.verdict: text"
        )
    return mode


def pair_file(root: Path, judge: str, x: str, y: str) -> Path:
    a, b = sorted((x, y))
    return pair_judgments(root, judge, a, b)


def _requests(
    cfg: EvalConfig, judge: Judge, questions: list[Question], answers: dict, root: Path, library, judge_prompts
):
    """``(store, record so far, JudgeItem)`` of every request of ``judge`` not yet stored: per pair and both
    orders for a pairwise judge, per checkpoint for a grading one; per question and judged turn.
    ``judge_prompts``: FastChat's judge prompts by name, read when a judge first asks for them."""

    def up_to(name: str | None, q: Question, turn: int) -> list[str] | None:
        return None if name is None else [answers[name][(q.question_id, t)]["answer"] for t in range(1, turn + 1)]

    def stored(first: str, second: str | None, q: Question):
        """The constitution stored with the first turn's answers (both must agree), or None."""
        found = {n: answers[n][(q.question_id, 1)].get("constitution") for n in (first, second) if n is not None}
        if len({json.dumps(c, sort_keys=True) for c in found.values()}) > 1:
            raise DataError(
                f"question {q.question_id}: the answers of {sorted(found)} were written under different "
                f"constitutions ({found}); a pair is judged under one"
            )
        return next(iter(found.values()))

    def constitution_of(kept, q: Question) -> Callable[[], list[Shown] | str]:
        """What the judge is shown: the stored constitution, or for answers stored without one, the question's."""
        return lambda: question_constitution(cfg, library, q) if kept is None else read_shown(kept, library)

    units = pairs(cfg) if judge.pairwise else [(n, None) for n, _ in cfg.checkpoints()]
    for x, y in units:
        if judge.pairwise:
            store = JsonlStore(pair_file(root, judge.name, x, y), ("question_id", "turn", "first"))
            orders = [(x, y), (y, x)]
        else:
            store = JsonlStore(graded_judgments(root, judge.name, x), ("question_id", "turn"))
            orders = [(x, None)]
        for q in questions:
            question = q if judge.reference else dataclasses.replace(q, reference=None)
            for turn in judged_turns(cfg, judge)[: len(q.turns)]:
                for first, second in orders:
                    if store.done(q.question_id, turn, *([first] if judge.pairwise else [])):
                        continue
                    record = {"question_id": q.question_id, "category": q.category, "turn": turn}
                    if judge.pairwise:
                        record.update(first=first, second=second)
                    else:
                        record["model"] = first
                    kept = stored(first, second, q)
                    if kept is not None:  # the verdict keeps the constitution the answers were written under
                        record["constitution"] = kept
                    item = JudgeItem(
                        question,
                        turn,
                        up_to(first, q, turn),
                        up_to(second, q, turn),
                        constitution_of(kept, q),
                        judge_prompts,
                    )
                    yield store, record, item


def judge_all(cfg: EvalConfig, questions: list[Question], root: Path, library) -> None:
    """Build every missing judge request (all judges, pairs, orders, turns) and judge them: model-free verdicts
    at once, model verdicts in one batched run per kind (generated text, verdict probabilities)."""
    mode = verdict_mode(cfg)
    names = [n for n, _ in cfg.checkpoints()]
    answers = {n: load_answers(root, n) for n in names}
    judge_prompts = functools.cache(lambda: load_judge_prompts(cfg.mtbench.judge_prompts))
    generated: list[tuple[Judge, JsonlStore, dict, list]] = []  # (judge, store, record so far, messages)
    read_probs: list[tuple[Judge, JsonlStore, dict, list]] = []  # pairwise verdicts from the letters' probabilities
    for judge in (JUDGES[name] for name in cfg.mtbench.judges):
        for store, record, item in _requests(cfg, judge, questions, answers, root, library, judge_prompts):
            if not judge.uses_model:
                store.append(dict(record, **judge.decide(item)))
                continue
            record["prompt_name"], messages = judge.prompt(item)
            by_probability = judge.pairwise and mode == "probability"
            (read_probs if by_probability else generated).append((judge, store, record, messages))
    if not generated and not read_probs:
        return
    backend = LazyBackend(cfg.judge)
    try:
        if generated:
            params = SamplingParams(max_new_tokens=cfg.mtbench.judge_max_new_tokens, seed=cfg.seed)
            for i, (c,) in backend.get().generate_iter([r[3] for r in generated], params, desc="judging"):
                judge, store, record, _ = generated[i]
                field = "verdict" if judge.pairwise else "rating"
                store.append(dict(record, raw=c.text, finish_reason=c.finish_reason, **{field: judge.parse(c.text)}))
        if read_probs:
            stream = backend.get().next_token_probs_iter(
                [r[3] for r in read_probs], VERDICT_PREFIX, VERDICT_LETTERS, desc="judging (verdict probabilities)"
            )
            for i, result in stream:
                _, store, record, _ = read_probs[i]
                verdict = None if result.probs is None else hard_verdict(result.probs)
                probs = None if result.probs is None else list(result.probs)
                store.append(dict(record, prefix=VERDICT_PREFIX, probs=probs, mass=result.mass, verdict=verdict))
    finally:
        backend.close()
