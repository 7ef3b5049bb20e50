"""``sami eval mtbench``: answers under a protocol, pairwise and single judging, and the metrics.

Files under ``<output_dir>/mtbench/`` (docs/EVALUATION.md):

    settings.json                         what was generated and judged; a rerun must match it
    answers/<model>.jsonl                 {question_id, category, turn, prompt, answer, num_tokens, finish_reason}
    judgments/<judge>/<x>__<y>.jsonl      {question_id, category, turn, first, second, prompt_name, verdict, and
                                          raw (text mode) | probs, mass, prefix (probability) | checked, passes}
    judgments/single/<model>.jsonl        {question_id, category, turn, prompt_name, raw, rating}
    metrics.json                          computed from the files above only (``mtbench_metrics``)

Every record is appended as soon as it exists, so an interrupted run resumes without regenerating or
re-judging anything finished.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

from sami.backends.base import BACKENDS, SamplingParams
from sami.core.errors import ConfigError, DataError
from sami.core.layout import graded_judgments, pair_judgments
from sami.core.stats import (
    bootstrap_mean,
    bounded_mean,
    bradley_terry,
    controlled_win_rate,
    length_controlled_win_rate,
    rate,
)
from sami.data.principles import STORED_SIDES, Constitution, ConstitutionItem, load_library
from sami.eval.common import (
    MARKDOWN,
    LazyBackend,
    Shown,
    answer_prompt,
    answer_stop,
    fmt,
    shown_constitution,
    shown_text,
    style,
    words,
)
from sami.eval.config import EvalConfig
from sami.eval.degenerate import is_degenerate
from sami.eval.judges import (
    JUDGES,
    RESERVED,
    VERDICT_LETTERS,
    VERDICT_PREFIX,
    Judge,
    JudgeItem,
    combine,
    hard_verdict,
    outcome_for,
    soft_preference,
    verdict_probs,
)
from sami.eval.mtbench_data import (
    FASTCHAT_TEMPERATURES,
    Question,
    load_judge_prompts,
    load_questions,
    select,
)
from sami.eval.store import JsonlStore, check_imported_protocol, check_settings, finish_suite, read_jsonl

logger = logging.getLogger(__name__)


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


def _turns(cfg: EvalConfig) -> tuple[int, ...]:
    return (1, 2) if cfg.mtbench.protocol == "fastchat" else (1,)


def _judged_turns(cfg: EvalConfig, judge: Judge) -> tuple[int, ...]:
    return (1,) if judge.turns == "first" else _turns(cfg)


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


def _pair_file(root: Path, judge: str, x: str, y: str) -> Path:
    a, b = sorted((x, y))
    return pair_judgments(root, judge, a, b)


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
    store = JsonlStore(root / "answers" / f"{name}.jsonl", ("question_id", "turn"))
    backend = LazyBackend(cfg.backend_for(model))
    try:
        for turn in _turns(cfg):
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


def _load_answers(root: Path, name: str) -> dict[tuple, dict]:
    return {(r["question_id"], r["turn"]): r for r in read_jsonl(root / "answers" / f"{name}.jsonl")}


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
            store = JsonlStore(_pair_file(root, judge.name, x, y), ("question_id", "turn", "first"))
            orders = [(x, y), (y, x)]
        else:
            store = JsonlStore(graded_judgments(root, judge.name, x), ("question_id", "turn"))
            orders = [(x, None)]
        for q in questions:
            question = q if judge.reference else dataclasses.replace(q, reference=None)
            for turn in _judged_turns(cfg, judge)[: len(q.turns)]:
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
    answers = {n: _load_answers(root, n) for n in names}
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


def _pair_block(items: list[dict]) -> dict:
    """Counts and rates for a list of combined items ``{outcome, soft, mass, words_x, words_y}``."""
    counts = {k: sum(i["outcome"] == k for i in items) for k in ("win", "tie", "loss", "unparseable")}
    scored = [i for i in items if i["outcome"] != "unparseable"]
    scores = [{"win": 1.0, "tie": 0.5, "loss": 0.0}[i["outcome"]] for i in scored]
    sized = [(s, i) for s, i in zip(scores, scored, strict=True) if None not in (i["words_x"], i["words_y"])]
    styled = [(s, i) for s, i in sized if None not in (i["style_x"], i["style_y"])]
    return {
        **counts,
        "n": len(items),
        "inconsistent": sum(i["inconsistent"] for i in items),
        "win_rate_adjusted": bounded_mean(scores).to_dict(),  # the hard win rate
        "soft_win_rate": bootstrap_mean([i["soft"] for i in scored]).to_dict(),
        "verdict_mass": bootstrap_mean([i["mass"] for i in items if i["mass"] is not None]).to_dict(),
        "length_controlled_win_rate": length_controlled_win_rate(
            [s for s, _ in sized], [i["words_x"] for _, i in sized], [i["words_y"] for _, i in sized]
        ).to_dict(),
        "style_controlled_win_rate": controlled_win_rate(
            [s for s, i in styled], [style_difference(i) for _, i in styled]
        ).to_dict(),
        "mean_words_x": bootstrap_mean([i["words_x"] for i in items if i["words_x"] is not None]).to_dict(),
        "mean_words_y": bootstrap_mean([i["words_y"] for i in items if i["words_y"] is not None]).to_dict(),
    }


def style_difference(item: dict) -> list[float]:
    """Style covariates of a judged pair (0 where the answers are alike): the log length ratio and the
    differences in list items, headers and bold spans per word (``sami.eval.common.style``)."""
    x, y = item["style_x"], item["style_y"]
    return [math.log(max(x["words"], 1) / max(y["words"], 1))] + [x[k] - y[k] for k in MARKDOWN]


def _verdict_source(records: list[dict]) -> str:
    """How the stored verdicts were obtained: ``probability``, ``checker`` or ``text``."""
    if any("probs" in r for r in records):
        return "probability"
    return "checker" if any("passes" in r for r in records) else "text"


def _answer_words(answers: dict, qid, turn: int, imported: int | None) -> int | None:
    """An answer's length in words: counted from the stored answer, else the length an imported verdict
    carries (``sami eval import`` of a table with lengths but no answers), else None (unknown)."""
    answer = answers.get((qid, turn))
    return words(answer["answer"]) if answer is not None else imported


def _answer_style(answers: dict, qid, turn: int) -> dict | None:
    answer = answers.get((qid, turn))
    return None if answer is None else style(answer["answer"])


def judged_items(records: list[dict], answers: dict[str, dict], x: str, y: str) -> tuple[list[dict], int]:
    """Every item of the pair judged in both orders, as seen from x (outcome, soft score, lengths, style, how many
    principles were flipped), and how many items still miss an order."""
    by_item: dict[tuple, dict] = defaultdict(dict)
    for r in records:
        by_item[(r["question_id"], r["turn"])][r["first"]] = r
    items = []
    pending = 0
    for (qid, turn), orders in sorted(by_item.items(), key=lambda kv: str(kv[0])):
        if x not in orders or y not in orders:
            pending += 1
            continue
        v_x, v_y = orders[x]["verdict"], orders[y]["verdict"]
        outcome = combine(v_x, v_y)
        masses = [orders[f]["mass"] for f in (x, y) if orders[f].get("mass") is not None]
        items.append(
            {
                "key": (qid, turn),
                "category": orders[x]["category"],
                "outcome": outcome,
                "soft": soft_preference(verdict_probs(orders[x]), verdict_probs(orders[y])),
                "mass": sum(masses) / 2 if len(masses) == 2 else None,
                "inconsistent": outcome != "unparseable" and outcome_for(v_x, True) != outcome_for(v_y, False),
                "words_x": _answer_words(answers[x], qid, turn, orders[x].get("words_first")),
                "words_y": _answer_words(answers[y], qid, turn, orders[x].get("words_second")),
                "style_x": _answer_style(answers[x], qid, turn),
                "style_y": _answer_style(answers[y], qid, turn),
                "flipped": flipped(orders[x].get("constitution")),
            }
        )
    return items, pending


def pairwise_metrics(records: list[dict], answers: dict[str, dict], x: str, y: str) -> dict:
    """Win/tie/loss (hard) and the soft score of x against y from stored verdicts (both orders per item)."""
    return pair_blocks(records, *judged_items(records, answers, x, y))


def pair_blocks(records: list[dict], items: list[dict], pending: int) -> dict:
    """A pair's numbers from its ``judged_items``: overall, per category and by principles flipped."""
    out = {"overall": _pair_block(items), "pending": pending, "per_category": {}}
    out["verdict_source"] = _verdict_source(records)
    for category in sorted({i["category"] for i in items}):
        out["per_category"][category] = _pair_block([i for i in items if i["category"] == category])
    counts = sorted({i["flipped"] for i in items if i["flipped"] is not None})
    if counts:  # by how many principles of the question's constitution were on their antithesis side
        out["per_flipped"] = {str(k): _pair_block([i for i in items if i["flipped"] == k]) for k in counts}
    return out


def mtbench_metrics(cfg: EvalConfig) -> dict:
    """Every MT-Bench number, from the files under ``<output_dir>/mtbench`` only."""
    root = Path(cfg.output_dir) / "mtbench"
    names = [n for n, _ in cfg.checkpoints()]
    answers = {n: _load_answers(root, n) for n in names}
    out: dict = {"answers": {}, "pairwise": {}, "constitutions": cfg.mtbench.constitutions}
    for n in names:
        recs = list(answers[n].values())
        out["answers"][n] = {
            "count": len(recs),
            "mean_words": bootstrap_mean([words(r["answer"]) for r in recs]).to_dict(),
            "mean_tokens": bootstrap_mean([r["num_tokens"] for r in recs if r["num_tokens"] is not None]).to_dict(),
            "cut_by_length": sum(r["finish_reason"] == "length" for r in recs),
            "degenerate": rate([is_degenerate(r["answer"]) for r in recs]).to_dict(),
        }
    pairwise = [(j.name, False) for j in map(JUDGES.get, cfg.mtbench.judges) if j.pairwise]
    for name, imported in pairwise + [(name, True) for name in cfg.mtbench.imported_judges]:
        pairwise_judge(out, root, name, answers, pairs(cfg), imported=imported)
    for judge in (JUDGES[name] for name in cfg.mtbench.judges if not JUDGES[name].pairwise):
        # a grading judge's numbers sit under its own name, per checkpoint
        graded = {n: read_jsonl(graded_judgments(root, judge.name, n)) for n in names}
        out[judge.name] = {n: rating_metrics(records) for n, records in graded.items()}
    return out


def pairwise_judge(
    out: dict, root: Path, judge: str, answers: dict, pair_list: list[tuple[str, str]], *, imported: bool
) -> None:
    """One pairwise judge's numbers into ``out``: every pair's block under ``pairwise``, the judge's
    ``judge_diagnostics`` and, where three or more models met, its ``ranking``.

    ``imported``: the verdicts were read from another tool's files by ``sami eval import``; only pairs with a
    judgment file count, and a verdict judged in one order only is stored with its mirror (``mirrored: true``)
    and counts as one judgement (``verdict_source`` and the block's ``mirrored`` say so)."""
    blocks, stored, battles = {}, [], []
    for x, y in pair_list:
        path = _pair_file(root, judge, x, y)
        if imported and not path.is_file():
            continue
        records = [r for r in read_jsonl(path) if {r["first"], r["second"]} == {x, y}]
        items, pending = judged_items(records, answers, x, y)
        block = blocks[f"{x} vs {y}"] = pair_blocks(records, items, pending)
        if imported:
            mirrored = block["mirrored"] = sum(bool(r.get("mirrored")) for r in records)
            kind = "one-order " if 2 * mirrored == len(records) else "partly one-order " if mirrored else ""
            block["verdict_source"] = f"imported {kind}".strip()
        stored += records
        battles += [(x, y, i) for i in items]
    out["pairwise"][judge] = blocks
    out.setdefault("judge_diagnostics", {})[judge] = judge_diagnostics(stored)
    if len({m for x, y, _ in battles for m in (x, y)}) >= 3:
        out.setdefault("ranking", {})[judge] = ranking(battles, origin=pair_list[0][0])


def judge_diagnostics(records: list[dict]) -> dict:
    """How a pairwise judge behaves over all its stored verdicts: how often the two orders of an item agree
    (``combine``), and how often, of the verdicts that pick an answer, it picks the one shown first (1/2 for a
    judge without a position preference); with Wilson intervals."""
    records = [r for r in records if not r.get("mirrored")]  # an imported one-order verdict has no second order
    by_item: dict[tuple, list] = defaultdict(list)
    for r in records:
        by_item[(r["question_id"], r["turn"], *sorted((r["first"], r["second"])))].append(r)
    agree = []
    for orders in by_item.values():
        if len(orders) == 2 and None not in (orders[0]["verdict"], orders[1]["verdict"]):
            agree.append(outcome_for(orders[0]["verdict"], True) == outcome_for(orders[1]["verdict"], False))
    picks = [r["verdict"] == "A" for r in records if r["verdict"] in ("A", "B")]
    parsed = [r for r in records if r["verdict"] is not None]
    return {
        "order_agreement": rate(agree).to_dict(),
        "first_position": rate(picks).to_dict(),
        "ties": rate([r["verdict"] == "tie" for r in parsed]).to_dict(),
        "verdicts": len(records),
    }


def ranking(battles: list[tuple[str, str, dict]], origin: str) -> dict:
    """A Bradley-Terry fit over every judged item of every pair (``sami.core.stats.bradley_terry``), items that a
    verdict could not be read for left out; strengths relative to ``origin`` (strength 0)."""
    score = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    kept = [(x, y, i) for x, y, i in battles if i["outcome"] in score]
    fit = bradley_terry([(x, y, score[i["outcome"]]) for x, y, i in kept], [i["key"] for _, _, i in kept], origin)
    return {"origin": origin, "models": fit}


def rating_metrics(records: list[dict]) -> dict:
    """Mean rating overall and per category of one checkpoint's graded items; unparseable ratings counted."""
    ratings = [r["rating"] for r in records if r["rating"] is not None]
    per_category = {}
    for category in sorted({r["category"] for r in records}):
        vals = [r["rating"] for r in records if r["category"] == category and r["rating"] is not None]
        per_category[category] = bootstrap_mean(vals).to_dict()
    return {
        "score": bootstrap_mean(ratings).to_dict(),
        "unparseable": sum(r["rating"] is None for r in records),
        "n": len(records),
        "per_category": per_category,
    }


def print_mtbench(metrics: dict) -> None:
    for n, a in metrics["answers"].items():
        print(
            f"{n}: {a['count']} answers, mean words {fmt(a['mean_words'], False)}, "
            f"mean tokens {fmt(a['mean_tokens'], False)}, cut by the token limit {a['cut_by_length']}"
        )
    for judge, by_pair in metrics["pairwise"].items():
        for pair, block in by_pair.items():
            o = block["overall"]
            print(
                f"[{judge}] {pair} ({block['verdict_source']} verdicts): win {o['win']} / tie {o['tie']} / loss "
                f"{o['loss']}, unparseable {o['unparseable']}, orders disagreeing {o['inconsistent']}, "
                f"not yet judged {block['pending']}"
            )
            print(
                f"    hard win rate {fmt(o['win_rate_adjusted'])}; soft {fmt(o['soft_win_rate'])}; "
                f"length-controlled {fmt(o['length_controlled_win_rate'])}; "
                f"style-controlled {fmt(o['style_controlled_win_rate'])}"
            )
            if o["verdict_mass"]["n"]:
                print(f"    probability on the verdict letters before renormalising {fmt(o['verdict_mass'], False)}")
            for category, c in block["per_category"].items():
                print(
                    f"    {category:<11} {c['win']}/{c['tie']}/{c['loss']}/{c['unparseable']}  hard "
                    f"{fmt(c['win_rate_adjusted'])}  soft {fmt(c['soft_win_rate'])}"
                )
            for k, c in block.get("per_flipped", {}).items():
                print(
                    f"    {k} flipped   {c['win']}/{c['tie']}/{c['loss']}/{c['unparseable']}  hard "
                    f"{fmt(c['win_rate_adjusted'])}  soft {fmt(c['soft_win_rate'])}"
                )
    for judge, d in metrics.get("judge_diagnostics", {}).items():
        print(
            f"[{judge}] the two orders agree {fmt(d['order_agreement'])}; of the verdicts that pick an answer, "
            f"the one shown first {fmt(d['first_position'])}; ties {fmt(d['ties'])}"
        )
    for judge, fit in metrics.get("ranking", {}).items():
        print(
            f"[{judge}] Bradley-Terry ranking (strength in logits over {fit['origin']}; expected win rate against it):"
        )
        for m, r in sorted(fit["models"].items(), key=lambda kv: kv[1]["rank"]):
            print(f"    {r['rank']}. {m:<12} {fmt(r['strength'], False)}  {fmt(r['win_rate_vs_origin'])}")
    for judge, by_model in metrics.items():
        if judge in RESERVED:
            continue
        for n, s in by_model.items():
            print(f"[{judge}] {n}: mean rating {fmt(s['score'], False)}, unparseable {s['unparseable']} of {s['n']}")


def run_mtbench(cfg: EvalConfig) -> dict:
    m = cfg.mtbench
    root = Path(cfg.output_dir) / "mtbench"
    questions, provenance = load_questions(m.questions, m.references)
    questions = select(questions, m.categories, m.per_category)
    library = load_library(cfg.library)
    library.check_names(m.principles, "mtbench.principles")
    pairs(cfg)  # an unknown mtbench.against or versus name, before any answer is generated
    check_imported_protocol(root, m.protocol)
    if m.judge_prompts != "package" and not Path(m.judge_prompts).expanduser().is_file():
        raise ConfigError(f"mtbench.judge_prompts: no such file: {m.judge_prompts}")
    settings = {
        "questions": provenance,
        "question_ids": [q.question_id for q in questions],
        "protocol": m.protocol,
        "template": m.template,
        "phrasing": m.phrasing,
        "principles": m.principles,
        "constitutions": m.constitutions,
        "verdict": verdict_mode(cfg),
        "max_new_tokens": m.max_new_tokens,
        "judge_max_new_tokens": m.judge_max_new_tokens,
        "judge": cfg.judge.kind + ":" + cfg.judge.model,
        "judge_prompts": m.judge_prompts,
        "backend": {"kind": cfg.backend.kind, "dtype": cfg.backend.dtype},
        "seed": cfg.seed,
    }
    for judge in (JUDGES[name] for name in m.judges):  # fail before answering when a judge could not judge
        if judge.check_principles is not None:
            for q in questions:
                judge.check_principles(question_constitution(cfg, library, q))
    check_settings(root, settings, "mtbench")
    for name, model in cfg.checkpoints():
        generate_answers(cfg, name, model, questions, root, library)
    judge_all(cfg, questions, root, library)
    return finish_suite(cfg, "mtbench", mtbench_metrics)
