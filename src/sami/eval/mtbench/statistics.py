"""MT-Bench numbers, from the stored answers and verdicts only: a pair's win rates (hard, soft, length- and
style-controlled) overall, per category and by principles flipped; a judge's diagnostics and Bradley-Terry
ranking; a grading judge's ratings."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path

from sami.core.layout import graded_judgments
from sami.core.stats import (
    bootstrap_mean,
    bounded_mean,
    bradley_terry,
    controlled_win_rate,
    length_controlled_win_rate,
    rate,
)
from sami.eval.common import MARKDOWN, style, words
from sami.eval.config import EvalConfig
from sami.eval.degenerate import is_degenerate
from sami.eval.judges import JUDGES, combine, outcome_for, soft_preference, verdict_probs
from sami.eval.mtbench.answering import flipped, load_answers
from sami.eval.mtbench.requests import pair_file, pairs
from sami.eval.results import (
    AnswerStats,
    JudgeDiagnostics,
    MTBenchMetrics,
    PairBlock,
    PairResult,
    Ranking,
    Ratings,
)
from sami.eval.store import read_jsonl

SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}  # an item's outcome for the first named, as a score in [0, 1]


def pair_block(items: list[dict]) -> PairBlock:
    """Counts and rates for a list of combined items ``{outcome, soft, mass, words_x, words_y}``."""
    counts = {k: sum(i["outcome"] == k for i in items) for k in ("win", "tie", "loss", "unparseable")}
    scored = [i for i in items if i["outcome"] != "unparseable"]
    scores = [SCORE[i["outcome"]] for i in scored]
    sized = [(s, i) for s, i in zip(scores, scored, strict=True) if None not in (i["words_x"], i["words_y"])]
    styled = [(s, i) for s, i in sized if None not in (i["style_x"], i["style_y"])]
    return PairBlock(
        **counts,
        n=len(items),
        inconsistent=sum(i["inconsistent"] for i in items),
        hard_win_rate=bounded_mean(scores),
        soft_win_rate=bootstrap_mean([i["soft"] for i in scored]),
        verdict_mass=bootstrap_mean([i["mass"] for i in items if i["mass"] is not None]),
        length_controlled_win_rate=length_controlled_win_rate(
            [s for s, _ in sized], [i["words_x"] for _, i in sized], [i["words_y"] for _, i in sized]
        ),
        style_controlled_win_rate=controlled_win_rate([s for s, i in styled], [style_difference(i) for _, i in styled]),
        mean_words_x=bootstrap_mean([i["words_x"] for i in items if i["words_x"] is not None]),
        mean_words_y=bootstrap_mean([i["words_y"] for i in items if i["words_y"] is not None]),
    )


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


def pairwise_metrics(records: list[dict], answers: dict[str, dict], x: str, y: str) -> PairResult:
    """Win/tie/loss (hard) and the soft score of x against y from stored verdicts (both orders per item)."""
    return pair_result(records, *judged_items(records, answers, x, y))


def pair_result(records: list[dict], items: list[dict], pending: int) -> PairResult:
    """A pair's numbers from its ``judged_items``: overall, per category and by principles flipped."""
    categories = sorted({i["category"] for i in items})
    counts = sorted({i["flipped"] for i in items if i["flipped"] is not None})
    return PairResult(
        overall=pair_block(items),
        pending=pending,
        per_category={c: pair_block([i for i in items if i["category"] == c]) for c in categories},
        verdict_source=_verdict_source(records),
        # by how many principles of the question's constitution were on their antithesis side
        per_flipped={str(k): pair_block([i for i in items if i["flipped"] == k]) for k in counts} if counts else None,
    )


def answer_stats(records: list[dict]) -> AnswerStats:
    """One checkpoint's stored answers: how many, how long, how many cut by the token limit or degenerate."""
    return AnswerStats(
        count=len(records),
        mean_words=bootstrap_mean([words(r["answer"]) for r in records]),
        mean_tokens=bootstrap_mean([r["num_tokens"] for r in records if r["num_tokens"] is not None]),
        cut_by_length=sum(r["finish_reason"] == "length" for r in records),
        degenerate=rate([is_degenerate(r["answer"]) for r in records]),
    )


def mtbench_metrics(cfg: EvalConfig) -> MTBenchMetrics:
    """Every MT-Bench number, from the files under ``<output_dir>/mtbench`` only."""
    root = Path(cfg.output_dir) / "mtbench"
    names = [n for n, _ in cfg.checkpoints()]
    answers = {n: load_answers(root, n) for n in names}
    pairwise, diagnostics, rankings = {}, {}, {}
    judges = [(j.name, False) for j in map(JUDGES.get, cfg.mtbench.judges) if j.pairwise]
    for name, imported in judges + [(name, True) for name in cfg.mtbench.imported_judges]:
        pairwise[name], diagnostics[name], fit = pairwise_judge(root, name, answers, pairs(cfg), imported=imported)
        if fit is not None:
            rankings[name] = fit
    ratings = {}
    for judge in (JUDGES[name] for name in cfg.mtbench.judges if not JUDGES[name].pairwise):
        ratings[judge.name] = {n: rating_metrics(read_jsonl(graded_judgments(root, judge.name, n))) for n in names}
    return MTBenchMetrics(
        answers={n: answer_stats(list(answers[n].values())) for n in names},
        pairwise=pairwise,
        constitutions=cfg.mtbench.constitutions,
        judge_diagnostics=diagnostics,
        ranking=rankings,
        ratings=ratings,
    )


def pairwise_judge(
    root: Path, judge: str, answers: dict, pair_list: list[tuple[str, str]], *, imported: bool
) -> tuple[dict[str, PairResult], JudgeDiagnostics, Ranking | None]:
    """One pairwise judge's numbers: every pair's result by ``"x vs y"``, the judge's diagnostics and, where three
    or more models met, its ranking.

    ``imported``: the verdicts were read from another tool's files by ``sami eval import``; only pairs with a
    judgment file count, and a verdict judged in one order only is stored with its mirror (``mirrored: true``)
    and counts as one judgement (``verdict_source`` and the block's ``mirrored`` say so)."""
    blocks, stored, battles = {}, [], []
    for x, y in pair_list:
        path = pair_file(root, judge, x, y)
        if imported and not path.is_file():
            continue
        records = [r for r in read_jsonl(path) if {r["first"], r["second"]} == {x, y}]
        items, pending = judged_items(records, answers, x, y)
        block = pair_result(records, items, pending)
        if imported:
            mirrored = sum(bool(r.get("mirrored")) for r in records)
            kind = "one-order " if 2 * mirrored == len(records) else "partly one-order " if mirrored else ""
            block = dataclasses.replace(block, verdict_source=f"imported {kind}".strip(), mirrored=mirrored)
        blocks[f"{x} vs {y}"] = block
        stored += records
        battles += [(x, y, i) for i in items]
    met = len({m for x, y, _ in battles for m in (x, y)}) >= 3
    return blocks, judge_diagnostics(stored), ranking(battles, origin=pair_list[0][0]) if met else None


def judge_diagnostics(records: list[dict]) -> JudgeDiagnostics:
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
    return JudgeDiagnostics(
        order_agreement=rate(agree),
        first_position=rate(picks),
        ties=rate([r["verdict"] == "tie" for r in parsed]),
        verdicts=len(records),
    )


def ranking(battles: list[tuple[str, str, dict]], origin: str) -> Ranking:
    """A Bradley-Terry fit over every judged item of every pair (``sami.core.stats.bradley_terry``), items that a
    verdict could not be read for left out; strengths relative to ``origin`` (strength 0)."""
    kept = [(x, y, i) for x, y, i in battles if i["outcome"] in SCORE]
    fit = bradley_terry([(x, y, SCORE[i["outcome"]]) for x, y, i in kept], [i["key"] for _, _, i in kept], origin)
    return Ranking.from_dict({"origin": origin, "models": fit})


def rating_metrics(records: list[dict]) -> Ratings:
    """Mean rating overall and per category of one checkpoint's graded items; unparseable ratings counted."""
    ratings = [r["rating"] for r in records if r["rating"] is not None]
    per_category = {}
    for category in sorted({r["category"] for r in records}):
        vals = [r["rating"] for r in records if r["category"] == category and r["rating"] is not None]
        per_category[category] = bootstrap_mean(vals)
    return Ratings(
        score=bootstrap_mean(ratings),
        unparseable=sum(r["rating"] is None for r in records),
        n=len(records),
        per_category=per_category,
    )
