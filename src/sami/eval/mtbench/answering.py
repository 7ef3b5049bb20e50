"""MT-Bench answers: the constitution each question is answered under, its prompt and sampling, and the answers
of one checkpoint appended to ``answers/<model>.jsonl`` as they are generated."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from sami.backends.base import SamplingParams
from sami.core.errors import ConfigError
from sami.core.layout import answers_file
from sami.data.principles import STORED_SIDES, Constitution, ConstitutionItem
from sami.eval.common import LazyBackend, Shown, answer_prompt, answer_stop, shown_constitution, shown_text
from sami.eval.config import EvalConfig
from sami.eval.mtbench_data import FASTCHAT_TEMPERATURES, Question
from sami.eval.store import JsonlStore, read_jsonl


def answered_turns(cfg: EvalConfig) -> tuple[int, ...]:
    return (1, 2) if cfg.mtbench.protocol == "fastchat" else (1,)


def question_constitution(cfg: EvalConfig, library, q: Question) -> list[Shown]:
    """The constitution a question is answered and judged under.

    Its principles are ``mtbench.principles`` when set, else the question's category's. With
    ``mtbench.constitutions: positive`` every principle is shown on its principle side in ``mtbench.phrasing``;
    with ``sampled`` each one is shown so or flipped to its antithesis by a fair coin drawn from the seed and the
    question id alone, so every model answers a question under the same constitution.
    """
    names = cfg.mtbench.principles
    if not names and q.category not in library.categories:  # e.g. imported answers of a question of no category
        raise ConfigError(
            f"question {q.question_id}: its category {q.category!r} has no principles; set "
            "mtbench.principles (or add the category to a library, --library)"
        )
    principles = [library.get(n) for n in names] if names else library.for_category(q.category)
    if cfg.mtbench.constitutions == "positive":
        return [Shown(p, "principle", cfg.mtbench.phrasing) for p in principles]
    rng = random.Random(f"mtbench-constitution:{cfg.seed}:{q.question_id}")  # a str seed hashes the same everywhere
    return [
        Shown(p, "antithesis") if rng.random() < 0.5 else Shown(p, "principle", cfg.mtbench.phrasing)
        for p in principles
    ]


def read_shown(stored: str | dict, library) -> list[Shown] | str:
    """A constitution stored with an answer (``Constitution.to_json``) as the principles shown; its text when it
    is free text or names a principle the library does not hold."""
    if isinstance(stored, str):
        return stored
    items = stored["principles"]
    if all(i.get("name") in library.principles and i.get("side") in STORED_SIDES for i in items):
        lines = [ConstitutionItem.from_stored(i["text"], i["name"], i["side"]) for i in items]
        return [Shown(library.get(line.principle), line.side, line.phrasing) for line in lines]
    return Constitution(tuple(ConstitutionItem(i["text"], i.get("name")) for i in items)).render()


def flipped(stored: str | dict | None) -> int | None:
    """How many principles of a stored constitution are on their antithesis side (None when unknown)."""
    if not isinstance(stored, dict):
        return None
    return sum(i.get("side") == "antithesis" for i in stored["principles"])


def _answer_prompt(cfg: EvalConfig, q: Question, turn: int, constitution: str | None, earlier: list[str]):
    if cfg.mtbench.protocol == "paper":
        return answer_prompt(cfg.mtbench.template, constitution, q.turns[0])
    messages = []
    for k in range(turn - 1):
        messages += [{"role": "user", "content": q.turns[k]}, {"role": "assistant", "content": earlier[k]}]
    return messages + [{"role": "user", "content": q.turns[turn - 1]}]


def _params(cfg: EvalConfig, category: str) -> SamplingParams:
    m = cfg.mtbench
    if m.protocol == "paper":
        return SamplingParams(max_new_tokens=m.max_new_tokens, stop=answer_stop(m.template), seed=cfg.seed)
    return SamplingParams(
        max_new_tokens=m.max_new_tokens, temperature=FASTCHAT_TEMPERATURES.get(category, 0.0), seed=cfg.seed
    )


def generate_answers(cfg: EvalConfig, name: str, model: str, questions: list[Question], root: Path, library) -> None:
    store = JsonlStore(answers_file(root, name), ("question_id", "turn"))
    backend = LazyBackend(cfg.backend_for(model))
    try:
        for turn in answered_turns(cfg):
            todo = [q for q in questions if not store.done(q.question_id, turn) and len(q.turns) >= turn]
            groups: dict[SamplingParams, list[Question]] = defaultdict(list)
            for q in todo:
                groups[_params(cfg, q.category)].append(q)
            for params, group in groups.items():
                prompts = []
                shown = {}  # question id -> the stored constitution (paper protocol)
                for q in group:
                    constitution = None
                    if cfg.mtbench.protocol == "paper":
                        principles_shown = question_constitution(cfg, library, q)
                        constitution = shown_text(principles_shown)
                        shown[q.question_id] = shown_constitution(principles_shown).to_json()
                    earlier = [store.get(q.question_id, k)["answer"] for k in range(1, turn)]
                    prompts.append(_answer_prompt(cfg, q, turn, constitution, earlier))
                desc = f"{name} answers, turn {turn} (T={params.temperature})"
                for i, (c,) in backend.get().generate_iter(prompts, params, desc=desc):
                    q = group[i]
                    store.append(
                        {
                            "question_id": q.question_id,
                            "category": q.category,
                            "turn": turn,
                            "prompt": prompts[i],
                            "answer": c.text,
                            "num_tokens": c.num_tokens,
                            "finish_reason": c.finish_reason,
                            "temperature": params.temperature,
                            **({"constitution": shown[q.question_id]} if q.question_id in shown else {}),
                        }
                    )
    finally:
        backend.close()


def load_answers(root: Path, name: str) -> dict[tuple, dict]:
    return {(r["question_id"], r["turn"]): r for r in read_jsonl(answers_file(root, name))}
