"""``sami eval mtbench``: answers under a protocol, pairwise and single judging, and the metrics.

Files under ``<output_dir>/mtbench/`` (docs/EVALUATION.md):

    settings.json                         what was generated and judged; a rerun must match it
    answers/<model>.jsonl                 {question_id, category, turn, prompt, answer, num_tokens, finish_reason}
    judgments/<judge>/<x>__<y>.jsonl      {question_id, category, turn, first, second, prompt_name, raw, verdict}
    judgments/single/<model>.jsonl        {question_id, category, turn, prompt_name, raw, rating}
    metrics.json                          computed from the files above only (``mtbench_metrics``)

Every record is appended as soon as it exists, so an interrupted run resumes without regenerating or
re-judging anything finished.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from itertools import combinations
from pathlib import Path

from sami.backends import SamplingParams
from sami.eval.common import LazyBackend, constitution_text, fmt, words
from sami.eval.config import EvalConfig
from sami.eval.judges import (
    PAIRWISE,
    PRINCIPLE_AWARE_VERSION,
    combine,
    fastchat_prompt,
    fastchat_prompt_name,
    outcome_for,
    parse_pairwise,
    parse_rating,
    principle_aware_prompt,
)
from sami.eval.mtbench_data import FASTCHAT_TEMPERATURES, Question, load_judge_prompts, load_questions, select
from sami.eval.store import JsonlStore, check_settings, read_jsonl, write_json
from sami.metrics import bootstrap_mean, bounded_mean, length_controlled_win_rate
from sami.principles import load_library
from sami.templates import PAPER_TEMPLATE, build_prompt

logger = logging.getLogger(__name__)

PAPER_STOP = ("\nHuman:",)  # a raw-template answer ends where the model starts the next dialogue turn


def pairs(cfg: EvalConfig) -> list[tuple[str, str]]:
    names = [n for n, _ in cfg.checkpoints()]
    base = cfg.mtbench.baseline
    if base is not None:
        if base not in names:
            raise ValueError(f"mtbench.baseline {base!r} is not one of the checkpoints {names}")
        return [(n, base) for n in names if n != base]
    return list(combinations(names, 2))


def _turns(cfg: EvalConfig) -> tuple[int, ...]:
    return (1, 2) if cfg.mtbench.protocol == "fastchat" else (1,)


def _judged_turns(cfg: EvalConfig, judge: str) -> tuple[int, ...]:
    # The principle-aware judge sees the constitution of a single question; it judges the first turn only.
    return (1,) if judge == "principle-aware" else _turns(cfg)


def _pair_file(root: Path, judge: str, x: str, y: str) -> Path:
    a, b = sorted((x, y))
    return root / "judgments" / judge / f"{a}__{b}.jsonl"


def _answer_prompt(cfg: EvalConfig, q: Question, turn: int, constitution: str | None, earlier: list[str]):
    m = cfg.mtbench
    if m.protocol == "paper":
        if m.template == PAPER_TEMPLATE:
            return build_prompt(PAPER_TEMPLATE, constitution, q.turns[0])
        return [{"role": "system", "content": constitution}, {"role": "user", "content": q.turns[0]}]
    messages = []
    for k in range(turn - 1):
        messages += [{"role": "user", "content": q.turns[k]}, {"role": "assistant", "content": earlier[k]}]
    return messages + [{"role": "user", "content": q.turns[turn - 1]}]


def _params(cfg: EvalConfig, category: str) -> SamplingParams:
    m = cfg.mtbench
    if m.protocol == "paper":
        stop = PAPER_STOP if m.template == PAPER_TEMPLATE else ()
        return SamplingParams(max_new_tokens=m.max_new_tokens, stop=stop, seed=cfg.seed)
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
                for q in group:
                    constitution = None
                    if cfg.mtbench.protocol == "paper":
                        constitution = constitution_text(library.for_category(q.category), cfg.mtbench.side)
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
                        }
                    )
    finally:
        backend.close()


def _load_answers(root: Path, name: str) -> dict[tuple, dict]:
    return {(r["question_id"], r["turn"]): r for r in read_jsonl(root / "answers" / f"{name}.jsonl")}


def judge_all(cfg: EvalConfig, questions: list[Question], root: Path, library) -> None:
    """Build every missing judge request (all judges, pairs, orders, turns), judge them in one batched run."""
    m = cfg.mtbench
    prompts_by_name = load_judge_prompts(m.judge_prompts) if set(m.judges) & {"principle-free", "single"} else {}
    names = [n for n, _ in cfg.checkpoints()]
    answers = {n: _load_answers(root, n) for n in names}
    requests: list[tuple[JsonlStore, dict, list]] = []  # (store, record without raw/verdict, judge messages)
    for judge in m.judges:
        if judge in PAIRWISE:
            for x, y in pairs(cfg):
                store = JsonlStore(_pair_file(root, judge, x, y), ("question_id", "turn", "first"))
                for q in questions:
                    for turn in _judged_turns(cfg, judge)[: len(q.turns)]:
                        for first, second in ((x, y), (y, x)):
                            if store.done(q.question_id, turn, first):
                                continue
                            a = [answers[first][(q.question_id, t)]["answer"] for t in range(1, turn + 1)]
                            b = [answers[second][(q.question_id, t)]["answer"] for t in range(1, turn + 1)]
                            if judge == "principle-aware":
                                text = constitution_text(library.for_category(q.category), m.side)
                                messages = principle_aware_prompt(text, q.turns[0], a[0], b[0])
                                prompt_name = PRINCIPLE_AWARE_VERSION
                            else:
                                prompt_name = fastchat_prompt_name("pair", q, turn)
                                messages = fastchat_prompt(prompts_by_name[prompt_name], q, turn, a, b)
                            record = {"question_id": q.question_id, "category": q.category, "turn": turn}
                            record.update(first=first, second=second, prompt_name=prompt_name)
                            requests.append((store, record, messages))
        else:
            for n in names:
                store = JsonlStore(root / "judgments" / "single" / f"{n}.jsonl", ("question_id", "turn"))
                for q in questions:
                    for turn in _turns(cfg)[: len(q.turns)]:
                        if store.done(q.question_id, turn):
                            continue
                        a = [answers[n][(q.question_id, t)]["answer"] for t in range(1, turn + 1)]
                        prompt_name = fastchat_prompt_name("single", q, turn)
                        messages = fastchat_prompt(prompts_by_name[prompt_name], q, turn, a)
                        record = {"question_id": q.question_id, "category": q.category, "turn": turn}
                        record.update(model=n, prompt_name=prompt_name)
                        requests.append((store, record, messages))
    if not requests:
        return
    judge = LazyBackend(cfg.judge)
    params = SamplingParams(max_new_tokens=m.judge_max_new_tokens, seed=cfg.seed)
    try:
        stream = judge.get().generate_iter([r[2] for r in requests], params, desc="judging")
        for i, (c,) in stream:
            store, record, _ = requests[i]
            record = dict(record, raw=c.text, finish_reason=c.finish_reason)
            if "first" in record:
                record["verdict"] = parse_pairwise(c.text)
            else:
                record["rating"] = parse_rating(c.text)
            store.append(record)
    finally:
        judge.close()


def _pair_block(items: list[dict]) -> dict:
    """Counts and rates for a list of combined items ``{outcome, words_x, words_y}``."""
    counts = {k: sum(i["outcome"] == k for i in items) for k in ("win", "tie", "loss", "unparseable")}
    scored = [i for i in items if i["outcome"] != "unparseable"]
    scores = [{"win": 1.0, "tie": 0.5, "loss": 0.0}[i["outcome"]] for i in scored]
    return {
        **counts,
        "n": len(items),
        "inconsistent": sum(i["inconsistent"] for i in items),
        "win_rate_adjusted": bounded_mean(scores).to_dict(),
        "length_controlled_win_rate": length_controlled_win_rate(
            scores, [i["words_x"] for i in scored], [i["words_y"] for i in scored]
        ).to_dict(),
        "mean_words_x": bootstrap_mean([i["words_x"] for i in items]).to_dict(),
        "mean_words_y": bootstrap_mean([i["words_y"] for i in items]).to_dict(),
    }


def pairwise_metrics(records: list[dict], answers: dict[str, dict], x: str, y: str) -> dict:
    """Win/tie/loss of x against y from stored verdicts (both orders per question and turn)."""
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
        items.append(
            {
                "category": orders[x]["category"],
                "outcome": outcome,
                "inconsistent": outcome != "unparseable" and outcome_for(v_x, True) != outcome_for(v_y, False),
                "words_x": words(answers[x][(qid, turn)]["answer"]),
                "words_y": words(answers[y][(qid, turn)]["answer"]),
            }
        )
    out = {"overall": _pair_block(items), "pending": pending, "per_category": {}}
    for category in sorted({i["category"] for i in items}):
        out["per_category"][category] = _pair_block([i for i in items if i["category"] == category])
    return out


def mtbench_metrics(cfg: EvalConfig) -> dict:
    """Every MT-Bench number, from the files under ``<output_dir>/mtbench`` only."""
    root = Path(cfg.output_dir) / "mtbench"
    names = [n for n, _ in cfg.checkpoints()]
    answers = {n: _load_answers(root, n) for n in names}
    out: dict = {"answers": {}, "pairwise": {}, "single": {}}
    for n in names:
        recs = list(answers[n].values())
        out["answers"][n] = {
            "count": len(recs),
            "mean_words": bootstrap_mean([words(r["answer"]) for r in recs]).to_dict(),
            "mean_tokens": bootstrap_mean([r["num_tokens"] for r in recs if r["num_tokens"] is not None]).to_dict(),
            "cut_by_length": sum(r["finish_reason"] == "length" for r in recs),
        }
    for judge in cfg.mtbench.judges:
        if judge in PAIRWISE:
            out["pairwise"][judge] = {}
            for x, y in pairs(cfg):
                records = [r for r in read_jsonl(_pair_file(root, judge, x, y)) if {r["first"], r["second"]} == {x, y}]
                out["pairwise"][judge][f"{x} vs {y}"] = pairwise_metrics(records, answers, x, y)
        else:
            for n in names:
                records = read_jsonl(root / "judgments" / "single" / f"{n}.jsonl")
                ratings = [r["rating"] for r in records if r["rating"] is not None]
                per_category = {}
                for category in sorted({r["category"] for r in records}):
                    vals = [r["rating"] for r in records if r["category"] == category and r["rating"] is not None]
                    per_category[category] = bootstrap_mean(vals).to_dict()
                out["single"][n] = {
                    "score": bootstrap_mean(ratings).to_dict(),
                    "unparseable": sum(r["rating"] is None for r in records),
                    "n": len(records),
                    "per_category": per_category,
                }
    return out


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
                f"[{judge}] {pair}: win {o['win']} / tie {o['tie']} / loss {o['loss']}, unparseable "
                f"{o['unparseable']}, orders disagreeing {o['inconsistent']}, not yet judged {block['pending']}"
            )
            print(
                f"    adjusted win rate {fmt(o['win_rate_adjusted'])}; length-controlled "
                f"{fmt(o['length_controlled_win_rate'])}"
            )
            for category, c in block["per_category"].items():
                print(f"    {category:<11} {c['win']}/{c['tie']}/{c['loss']}  {fmt(c['win_rate_adjusted'])}")
    for n, s in metrics["single"].items():
        print(f"[single] {n}: mean rating {fmt(s['score'], False)}, unparseable {s['unparseable']} of {s['n']}")


def run_mtbench(cfg: EvalConfig) -> dict:
    m = cfg.mtbench
    root = Path(cfg.output_dir) / "mtbench"
    questions, provenance = load_questions(m.questions, m.references)
    questions = select(questions, m.categories, m.per_category)
    library = load_library(cfg.library)
    settings = {
        "questions": provenance,
        "question_ids": [q.question_id for q in questions],
        "protocol": m.protocol,
        "template": m.template,
        "side": m.side,
        "max_new_tokens": m.max_new_tokens,
        "judge_max_new_tokens": m.judge_max_new_tokens,
        "judge": cfg.judge.kind + ":" + cfg.judge.model,
        "judge_prompts": m.judge_prompts,
        "backend": {"kind": cfg.backend.kind, "dtype": cfg.backend.dtype},
        "seed": cfg.seed,
    }
    check_settings(root, settings)
    for name, model in cfg.checkpoints():
        generate_answers(cfg, name, model, questions, root, library)
    judge_all(cfg, questions, root, library)
    metrics = mtbench_metrics(cfg)
    write_json(root / "metrics.json", metrics)
    return metrics
