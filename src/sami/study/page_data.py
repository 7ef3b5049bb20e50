"""What the page shows, read from a run folder or an evaluation folder through the readers the report uses.

Every item comes from the stored files: answers and verdicts (``sami.eval.store.read_jsonl``), the combined
outcome of a pair's two orders (``sami.eval.mtbench.statistics.judged_items``, the same function the win rates
are computed from), each shown principle's checker rerun on each answer (``sami.eval.degenerate.passes``, as the
checker judge and the adherence suite run it), GSM8K answers extracted with the suite's rule, and each method's
``metrics.jsonl`` (``sami.train.runfolder.read_metrics``). Nothing is generated or judged here.

The result is plain data (dicts, lists, strings, numbers) for the templates of ``sami.study.page``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from sami.core.layout import answers_file, graded_judgments
from sami.data.principles import SIDES, load_library
from sami.eval.common import words
from sami.eval.config import EvalConfig
from sami.eval.degenerate import is_degenerate, passes
from sami.eval.gsm8k_data import extract_answer
from sami.eval.judges import JUDGES
from sami.eval.mtbench.answering import flipped, load_answers, read_shown
from sami.eval.mtbench.requests import pair_file, pairs
from sami.eval.mtbench.statistics import judged_items
from sami.eval.mtbench_data import load_questions
from sami.eval.store import read_jsonl
from sami.train.runfolder import METRICS, read_metrics

OUTCOMES = ("win", "tie", "loss", "unparseable")  # as seen from a pairing's first model
CURVES = {"loss": "training loss", "mi_bound": "MI lower bound, nats", "diag_logprob": "diagonal log-prob per token"}


def _questions(cfg: EvalConfig) -> dict:
    """Question id -> its turns' text, from the question file the suite read (empty when it cannot be read)."""
    try:
        questions, _ = load_questions(cfg.mtbench.questions, cfg.mtbench.references)
    except (FileNotFoundError, ValueError):  # an imported folder whose files gave no questions
        return {}
    return {str(q.question_id): list(q.turns) for q in questions}


def _constitution(stored, library) -> tuple[list[dict], list]:
    """A stored constitution as lines ``{name, side, text, flipped}`` and the ``Shown`` principles a checker can
    check (empty for free text)."""
    if not isinstance(stored, dict):
        return ([{"name": None, "side": None, "text": stored, "flipped": False}] if stored else []), []
    lines = [
        {
            "name": i.get("name"),
            "side": i.get("side"),
            "text": i.get("text", ""),
            "flipped": i.get("side") == "antithesis",
        }
        for i in stored["principles"]
    ]
    shown = read_shown(stored, library)
    return lines, shown if isinstance(shown, list) else []


def _checks(shown: list, answer: str) -> list[dict]:
    """Each shown principle's checker (of the side it was shown on) run on ``answer``."""
    out = []
    for s in shown:
        checker = s.principle.side_checker(s.side)
        if checker is not None:
            out.append({"principle": s.principle.name, "side": s.side, "passed": bool(passes(checker, answer))})
    return out


def _order(record: dict) -> dict:
    """One stored verdict in one order, as shown: who was first, the verdict letter, and what it came from."""
    return {
        "first": record["first"],
        "second": record["second"],
        "verdict": record.get("verdict"),
        "probs": record.get("probs"),
        "raw": record.get("raw"),
        "passes": record.get("passes"),
        "mirrored": bool(record.get("mirrored")),
    }


def mtbench_items(cfg: EvalConfig, metrics: dict) -> dict:
    """The MT-Bench browser's data: every question with every model's answers, every pairwise judge's verdicts
    in both orders with the combined outcome, and the checker's per-principle results per answer."""
    root = Path(cfg.output_dir) / "mtbench"
    names = [n for n, _ in cfg.checkpoints()]
    library = load_library(cfg.library)
    answers = {n: load_answers(root, n) for n in names}
    texts = _questions(cfg)
    judges = list(metrics.get("pairwise", {}))
    pair_list = pairs(cfg)
    questions: dict[str, dict] = {}

    def question(qid, category) -> dict:
        key = str(qid)
        if key not in questions:
            questions[key] = {"id": key, "category": category, "turns": {}, "constitution": [], "flipped": None}
        return questions[key]

    def turn(q: dict, number: int) -> dict:
        if number not in q["turns"]:
            shown = texts.get(q["id"], [])
            text = shown[number - 1] if 0 < number <= len(shown) else None
            q["turns"][number] = {"turn": number, "question": text, "answers": {}, "verdicts": []}
        return q["turns"][number]

    for name in names:
        for (qid, number), record in answers[name].items():
            q = question(qid, record.get("category", "unknown"))
            lines, shown = _constitution(record.get("constitution"), library)
            if lines and not q["constitution"]:
                q["constitution"], q["flipped"] = lines, flipped(record.get("constitution"))
            turn(q, number)["answers"][name] = {
                "text": record["answer"],
                "words": words(record["answer"]),  # as the length control counts them
                "degenerate": is_degenerate(record["answer"]),
                "finish_reason": record.get("finish_reason"),
                "checks": _checks(shown, record["answer"]),
                "ratings": [],
            }
    for judge in (j for j in cfg.mtbench.judges if j in JUDGES and not JUDGES[j].pairwise):
        for name in names:  # a grading judge's 1-10 rating of each answer, with its text
            for r in read_jsonl(graded_judgments(root, judge, name)):
                answer = turn(question(r["question_id"], r["category"]), r["turn"])["answers"].get(name)
                if answer is not None:
                    answer["ratings"].append({"judge": judge, "rating": r.get("rating"), "raw": r.get("raw")})
    for judge in judges:
        for x, y in pair_list:
            path = pair_file(root, judge, x, y)
            if not path.is_file():
                continue
            records = [r for r in read_jsonl(path) if {r["first"], r["second"]} == {x, y}]
            by_key = defaultdict(dict)
            for r in records:
                by_key[(r["question_id"], r["turn"])][r["first"]] = r
            items, _ = judged_items(records, answers, x, y)
            for item in items:
                qid, number = item["key"]
                orders = by_key[(qid, number)]
                q = question(qid, item["category"])
                turn(q, number)["verdicts"].append(
                    {
                        "judge": judge,
                        "pair": f"{x} vs {y}",
                        "outcome": item["outcome"],
                        "disagree": bool(item["inconsistent"]),
                        "orders": [_order(orders[x]), _order(orders[y])],
                    }
                )
    for q in questions.values():
        q["turns"] = [q["turns"][k] for k in sorted(q["turns"])]
        # what the browser's filters read: every (judge, pairing, outcome, disagreement) of the question
        q["verdict_keys"] = [
            {k: v[k] for k in ("judge", "pair", "outcome", "disagree")} for t in q["turns"] for v in t["verdicts"]
        ]
    ordered = sorted(questions.values(), key=lambda q: (q["category"], _sortable(q["id"])))
    return {
        "models": names,
        "judges": judges,
        "pairs": [f"{x} vs {y}" for x, y in pair_list],
        "categories": sorted({q["category"] for q in ordered}),
        "flipped_counts": sorted({q["flipped"] for q in ordered if q["flipped"] is not None}),
        "questions": ordered,
    }


def _sortable(qid: str) -> tuple:
    return (0, int(qid), "") if qid.lstrip("-").isdigit() else (1, 0, qid)


def adherence_items(cfg: EvalConfig) -> dict:
    """Per verifiable principle and query: the prompt and every model's answer under the principle and under its
    antithesis, with the principle's checker run on each."""
    from sami.eval.adherence import answer_key

    root = Path(cfg.output_dir) / "adherence"
    names = [n for n, _ in cfg.checkpoints()]
    rows = {
        n: {(r["principle"], r["side"], r["query_index"]): r for r in read_jsonl(answers_file(root, n))} for n in names
    }
    blocks = []
    principles = _verifiable(cfg)
    for p in principles:
        ks = sorted({k for by_key in rows.values() for (_, _, k) in by_key})
        for k in ks:
            sides = {}
            for side in SIDES:
                key = answer_key(cfg, p.name, side, k)
                stored = {n: rows[n][key] for n in names if key in rows[n]}
                if not stored:
                    continue
                prompt = next(iter(stored.values())).get("prompt", "")
                sides[side] = {
                    "prompt": prompt if isinstance(prompt, str) else str(prompt),
                    "answers": {
                        n: {"text": r["answer"], "passed": bool(passes(p.checker, r["answer"]))}
                        for n, r in stored.items()
                    },
                }
            if sides:
                blocks.append({"principle": p.name, "query_index": k, "sides": sides})
    return {"models": names, "principles": [p.name for p in principles], "items": blocks}


def _verifiable(cfg: EvalConfig) -> list:
    """The principles the adherence suite checked: ``adherence.principles``, else every verifiable one."""
    verifiable = {p.name: p for p in load_library(cfg.library).verifiable}
    return [verifiable[n] for n in cfg.adherence.principles or verifiable]


def gsm8k_items(cfg: EvalConfig) -> dict:
    """Per problem: the gold answer and every model's attempts, each with the answer extracted by the suite's
    rule and whether it is correct."""
    root = Path(cfg.output_dir) / "gsm8k"
    mode = cfg.gsm8k.extract_mode
    names = [n for n, _ in cfg.checkpoints()]
    problems: dict[str, dict] = {}
    for name in names:
        for r in read_jsonl(root / "attempts" / f"{name}.jsonl"):
            p = problems.setdefault(str(r["id"]), {"id": str(r["id"]), "gold": r["gold"], "models": {}})
            attempts = [{"text": t, "extracted": extract_answer(t, mode)} for t in r["texts"]]
            for a in attempts:
                a["correct"] = a["extracted"] is not None and a["extracted"] == r["gold"]
            p["models"].setdefault(name, {})[r["kind"]] = attempts
    return {"models": names, "extract": mode, "problems": list(problems.values())}


def training_curves(trains: dict) -> dict:
    """Per logged quantity (``CURVES``): method -> [(step, value), ...] from each method's metrics.jsonl."""
    out: dict[str, dict] = {key: {} for key in CURVES}
    for method, cfg in trains.items():
        for m in read_metrics(Path(cfg.output_dir) / METRICS):
            for key in CURVES:
                if m.get(key) is not None:
                    out[key].setdefault(method, []).append((m["step"], m[key]))
    return {key: series for key, series in out.items() if series}
