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

import logging
from collections import defaultdict
from itertools import combinations
from pathlib import Path

from sami.backends import SamplingParams
from sami.eval.common import LazyBackend, constitution_text, fmt, words
from sami.eval.config import EvalConfig
from sami.eval.fluency import is_degenerate
from sami.eval.judges import (
    CHECKER_VERSION,
    CONSTITUTION_JUDGES,
    PAIRWISE,
    PRINCIPLE_AWARE_VERSION,
    VERDICT_LETTERS,
    VERDICT_PREFIX,
    checked_principles,
    checker_verdict,
    combine,
    fastchat_prompt,
    fastchat_prompt_name,
    hard_verdict,
    outcome_for,
    parse_pairwise,
    parse_rating,
    principle_aware_prompt,
    soft_preference,
    verdict_probs,
)
from sami.eval.mtbench_data import FASTCHAT_TEMPERATURES, Question, load_judge_prompts, load_questions, select
from sami.eval.store import JsonlStore, check_settings, read_jsonl, write_json
from sami.metrics import bootstrap_mean, bounded_mean, length_controlled_win_rate, rate
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
    anchors = cfg.mtbench.anchors
    if anchors is not None:
        missing = sorted(set(anchors) - set(names))
        if missing:
            raise ValueError(f"mtbench.anchors {missing} are not among the checkpoints {names}")
        return [(x, y) for x, y in combinations(names, 2) if x in anchors or y in anchors]
    return list(combinations(names, 2))


def _turns(cfg: EvalConfig) -> tuple[int, ...]:
    return (1, 2) if cfg.mtbench.protocol == "fastchat" else (1,)


def _judged_turns(cfg: EvalConfig, judge: str) -> tuple[int, ...]:
    # The principle-aware and checker judges see the constitution of a single question: first turn only.
    return (1,) if judge in CONSTITUTION_JUDGES else _turns(cfg)


def _constitution(cfg: EvalConfig, library, q: Question) -> list:
    """The principles shown for a question: ``mtbench.principles`` when set, else its category's."""
    names = cfg.mtbench.principles
    return [library.get(n) for n in names] if names else library.for_category(q.category)


def verdict_mode(cfg: EvalConfig) -> str:
    """``probability`` or ``text``: ``mtbench.verdict``, with ``auto`` resolved by the judge's kind."""
    mode, kind = cfg.mtbench.verdict, cfg.judge.kind
    if mode == "auto":
        return "probability" if kind == "transformers" else "text"
    if mode == "probability" and kind == "vllm":
        raise ValueError(
            "verdict probabilities come from a transformers judge or an OpenAI-compatible endpoint with "
            "log-probs; serve a vLLM judge (vllm serve MODEL) and use judge.kind: openai, or set mtbench.verdict: text"
        )
    return mode


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
                        constitution = constitution_text(_constitution(cfg, library, q), cfg.mtbench.side)
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
    """Build every missing judge request (all judges, pairs, orders, turns) and judge them: checker verdicts
    at once, model verdicts in one batched run per kind (generated text, verdict probabilities)."""
    m = cfg.mtbench
    mode = verdict_mode(cfg)
    prompts_by_name = load_judge_prompts(m.judge_prompts) if set(m.judges) & {"principle-free", "single"} else {}
    names = [n for n, _ in cfg.checkpoints()]
    answers = {n: _load_answers(root, n) for n in names}
    generated: list[tuple[JsonlStore, dict, list]] = []  # (store, record so far, judge messages): text, ratings
    read_probs: list[tuple[JsonlStore, dict, list]] = []  # pairwise verdicts read from the letters' probabilities
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
                            record = {"question_id": q.question_id, "category": q.category, "turn": turn}
                            record.update(first=first, second=second)
                            if judge == "checker":
                                verdict = checker_verdict(_constitution(cfg, library, q), a[0], b[0])
                                store.append(dict(record, prompt_name=CHECKER_VERSION, **verdict))
                                continue
                            if judge == "principle-aware":
                                text = constitution_text(_constitution(cfg, library, q), m.side)
                                messages = principle_aware_prompt(text, q.turns[0], a[0], b[0])
                                record["prompt_name"] = PRINCIPLE_AWARE_VERSION
                            else:
                                record["prompt_name"] = fastchat_prompt_name("pair", q, turn)
                                messages = fastchat_prompt(prompts_by_name[record["prompt_name"]], q, turn, a, b)
                            (read_probs if mode == "probability" else generated).append((store, record, messages))
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
                        generated.append((store, record, messages))
    if not generated and not read_probs:
        return
    judge = LazyBackend(cfg.judge)
    try:
        if generated:
            params = SamplingParams(max_new_tokens=m.judge_max_new_tokens, seed=cfg.seed)
            for i, (c,) in judge.get().generate_iter([r[2] for r in generated], params, desc="judging"):
                store, record, _ = generated[i]
                record = dict(record, raw=c.text, finish_reason=c.finish_reason)
                if "first" in record:
                    record["verdict"] = parse_pairwise(c.text)
                else:
                    record["rating"] = parse_rating(c.text)
                store.append(record)
        if read_probs:
            stream = judge.get().next_token_probs_iter(
                [r[2] for r in read_probs], VERDICT_PREFIX, VERDICT_LETTERS, desc="judging (verdict probabilities)"
            )
            for i, result in stream:
                store, record, _ = read_probs[i]
                verdict = None if result.probs is None else hard_verdict(result.probs)
                probs = None if result.probs is None else list(result.probs)
                store.append(dict(record, prefix=VERDICT_PREFIX, probs=probs, mass=result.mass, verdict=verdict))
    finally:
        judge.close()


def _pair_block(items: list[dict]) -> dict:
    """Counts and rates for a list of combined items ``{outcome, soft, mass, words_x, words_y}``."""
    counts = {k: sum(i["outcome"] == k for i in items) for k in ("win", "tie", "loss", "unparseable")}
    scored = [i for i in items if i["outcome"] != "unparseable"]
    scores = [{"win": 1.0, "tie": 0.5, "loss": 0.0}[i["outcome"]] for i in scored]
    return {
        **counts,
        "n": len(items),
        "inconsistent": sum(i["inconsistent"] for i in items),
        "win_rate_adjusted": bounded_mean(scores).to_dict(),  # the hard win rate
        "soft_win_rate": bootstrap_mean([i["soft"] for i in scored]).to_dict(),
        "verdict_mass": bootstrap_mean([i["mass"] for i in items if i["mass"] is not None]).to_dict(),
        "length_controlled_win_rate": length_controlled_win_rate(
            scores, [i["words_x"] for i in scored], [i["words_y"] for i in scored]
        ).to_dict(),
        "mean_words_x": bootstrap_mean([i["words_x"] for i in items]).to_dict(),
        "mean_words_y": bootstrap_mean([i["words_y"] for i in items]).to_dict(),
    }


def _verdict_source(records: list[dict]) -> str:
    """How the stored verdicts were obtained: ``probability``, ``checker`` or ``text``."""
    if any("probs" in r for r in records):
        return "probability"
    return "checker" if any("passes" in r for r in records) else "text"


def pairwise_metrics(records: list[dict], answers: dict[str, dict], x: str, y: str) -> dict:
    """Win/tie/loss (hard) and the soft score of x against y from stored verdicts (both orders per item)."""
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
                "category": orders[x]["category"],
                "outcome": outcome,
                "soft": soft_preference(verdict_probs(orders[x]), verdict_probs(orders[y])),
                "mass": sum(masses) / 2 if len(masses) == 2 else None,
                "inconsistent": outcome != "unparseable" and outcome_for(v_x, True) != outcome_for(v_y, False),
                "words_x": words(answers[x][(qid, turn)]["answer"]),
                "words_y": words(answers[y][(qid, turn)]["answer"]),
            }
        )
    out = {"overall": _pair_block(items), "pending": pending, "per_category": {}}
    out["verdict_source"] = _verdict_source(records)
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
            "degenerate": rate([is_degenerate(r["answer"]) for r in recs]).to_dict(),
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
                f"[{judge}] {pair} ({block['verdict_source']} verdicts): win {o['win']} / tie {o['tie']} / loss "
                f"{o['loss']}, unparseable {o['unparseable']}, orders disagreeing {o['inconsistent']}, "
                f"not yet judged {block['pending']}"
            )
            print(
                f"    hard win rate {fmt(o['win_rate_adjusted'])}; soft {fmt(o['soft_win_rate'])}; "
                f"length-controlled {fmt(o['length_controlled_win_rate'])}"
            )
            if o["verdict_mass"]["n"]:
                print(f"    probability on the verdict letters before renormalising {fmt(o['verdict_mass'], False)}")
            for category, c in block["per_category"].items():
                print(
                    f"    {category:<11} {c['win']}/{c['tie']}/{c['loss']}/{c['unparseable']}  hard "
                    f"{fmt(c['win_rate_adjusted'])}  soft {fmt(c['soft_win_rate'])}"
                )
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
        "principles": m.principles,
        "verdict": verdict_mode(cfg),
        "max_new_tokens": m.max_new_tokens,
        "judge_max_new_tokens": m.judge_max_new_tokens,
        "judge": cfg.judge.kind + ":" + cfg.judge.model,
        "judge_prompts": m.judge_prompts,
        "backend": {"kind": cfg.backend.kind, "dtype": cfg.backend.dtype},
        "seed": cfg.seed,
    }
    if "checker" in m.judges:  # fail before answering when the checker judge has nothing to check
        for q in questions:
            checked_principles(_constitution(cfg, library, q))
    # folders written before these settings existed: each category's principles, text verdicts
    check_settings(root, settings, added={"principles": None, "verdict": "text"})
    for name, model in cfg.checkpoints():
        generate_answers(cfg, name, model, questions, root, library)
    judge_all(cfg, questions, root, library)
    metrics = mtbench_metrics(cfg)
    write_json(root / "metrics.json", metrics)
    return metrics
