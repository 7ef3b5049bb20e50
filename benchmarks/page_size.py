"""Size and render time of the page (``sami view``) for a large MT-Bench folder: 80 questions, 6 models, 3 judges.

The folder is synthetic but in the real formats of ``sami eval mtbench`` (``sami.eval.mtbench``): the package's
80 MT-Bench questions with both turns, each under a constitution of its own drawn as the suite draws it
(``question_constitution``, two verifiable principles, so the checker judge can check them); per model an
answer of ``--words`` words per turn (random words from the question, with a bulleted list in some answers);
every pair of the 6 models judged in both orders by a probability judge (``principle-aware``: letter
probabilities), a text judge (``principle-free``: a generated judgement of about 120 words) on both turns, and
the checker on the first turn (its verdicts computed by ``checker_verdict`` on the synthetic answers). The page is
then written from those files as ``sami view`` writes it: the metrics recomputed (``sami.eval.run.compute``, timed
apart: in a run the report has computed them already), then the page.

Reported: the seconds to recompute the metrics and to write the page, its size in MB (target at most 20), and
the seconds headless Chromium (Playwright, /usr/bin/chromium, network blocked) takes to open it until its load
event, then to apply one filter (median of ``--rounds``; target under 3 s to load).

    flock /tmp/sami-bench.lock python benchmarks/page_size.py            # from the repository root
    python benchmarks/page_size.py --questions 32 --models 3 --words 25  # about the quickstart's size
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from itertools import combinations
from pathlib import Path

from sami.core.config import from_dict, load_yaml, save_yaml
from sami.data.principles import load_library
from sami.eval.common import shown_constitution
from sami.eval.config import EvalConfig
from sami.eval.judges import checker_verdict, hard_verdict
from sami.eval.mtbench.answering import question_constitution
from sami.eval.mtbench_data import load_questions, select
from sami.eval.run import compute
from sami.eval.store import write_json
from sami.study.screenshot import CHROMIUM, block_network
from sami.study.view import write_eval_page

MODELS = ["base", "sft", "sami", "dpo", "kto", "orpo"]


def _answer(rng: random.Random, question: str, words: int) -> str:
    vocab = [w.strip(".,?!:;\"'()") for w in question.split()] + ["the", "and", "because", "answer", "so", "we"]
    text = " ".join(rng.choice(vocab) for _ in range(words))
    if rng.random() < 0.4:  # some answers are bulleted lists
        text = "\n".join(f"- {line}" for line in text.split(" and "))
    return text.upper() if rng.random() < 0.3 else text


def write_folder(folder: Path, words: int, models: list[str], questions: int, seed: int = 0) -> Path:
    """The synthetic MT-Bench folder described above, as ``<folder>/mtbench``: ``questions`` of the package's (10
    per category at 80), each answered by every one of ``models``."""
    rng = random.Random(seed)
    cfg = from_dict(
        EvalConfig,
        {
            "output_dir": str(folder),
            "models": [f"{m}=synthetic/{m}" for m in models],
            "mtbench": {
                "principles": ["lowercase", "bullet_list"],
                "constitutions": "sampled",
                "judges": ["principle-aware", "principle-free", "checker"],
            },
        },
    )
    root = folder / "mtbench"
    library = load_library()
    questions = select(load_questions("package")[0], None, max(questions // 8, 1))
    shown = {q.question_id: question_constitution(cfg, library, q) for q in questions}
    answers: dict[str, dict] = {m: {} for m in models}
    for m in models:
        rows = []
        for q in questions:
            for turn, text in enumerate(q.turns, 1):
                answer = _answer(rng, text, words)
                answers[m][(q.question_id, turn)] = answer
                rows.append(
                    {
                        "question_id": q.question_id,
                        "category": q.category,
                        "turn": turn,
                        "prompt": text,
                        "answer": answer,
                        "num_tokens": words,
                        "finish_reason": "stop",
                        "temperature": 0.7,
                        "constitution": shown_constitution(shown[q.question_id]).to_json(),
                    }
                )
        _write(root / "answers" / f"{m}.jsonl", rows)
    for x, y in combinations(models, 2):
        by_judge: dict[str, list] = {"principle-aware": [], "principle-free": [], "checker": []}
        for q in questions:
            stored = shown_constitution(shown[q.question_id]).to_json()
            for turn in range(1, len(q.turns) + 1):
                for first, second in ((x, y), (y, x)):
                    base = {
                        "question_id": q.question_id,
                        "category": q.category,
                        "turn": turn,
                        "first": first,
                        "second": second,
                        "constitution": stored,
                    }
                    probs = [rng.random() for _ in range(3)]
                    probs = [p / sum(probs) for p in probs]
                    verdict = hard_verdict(tuple(probs))
                    by_judge["principle-aware"].append(
                        {
                            **base,
                            "prompt_name": "principle-aware-v1",
                            "mass": 0.9,
                            "prefix": "My final verdict: [[",
                            "probs": probs,
                            "verdict": verdict,
                        }
                    )
                    letter = rng.choice("ABC")
                    raw = " ".join(rng.choice(q.turns[0].split()) for _ in range(120)) + f" [[{letter}]]"
                    by_judge["principle-free"].append(
                        {
                            **base,
                            "prompt_name": "pair-v2",
                            "raw": raw,
                            "finish_reason": "stop",
                            "verdict": {"C": "tie"}.get(letter, letter),
                        }
                    )
                    if turn == 1:
                        a, b = answers[first][(q.question_id, 1)], answers[second][(q.question_id, 1)]
                        by_judge["checker"].append(
                            {**base, "prompt_name": "checker-v1", **checker_verdict(shown[q.question_id], a, b)}
                        )
        for judge, rows in by_judge.items():
            _write(root / "judgments" / judge / f"{'__'.join(sorted((x, y)))}.jsonl", rows)
    save_yaml(cfg, root / "config.yaml")
    write_json(root / "models.json", {m: {"model": f"synthetic/{m}", "key": m} for m in models})
    return root


def _write(path: Path, rows: list[dict]) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def render_seconds(page: Path, rounds: int) -> tuple[float, float]:
    """Median seconds to open the page until its load event, and to apply one filter after that."""
    from playwright.sync_api import sync_playwright

    loads, filters = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for _ in range(rounds):
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            tab.route("**/*", block_network)
            start = time.perf_counter()
            tab.goto(page.resolve().as_uri(), wait_until="load")
            loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            tab.locator("select[name=outcome]").first.select_option("win")
            tab.evaluate("new Promise(r => requestAnimationFrame(() => r()))")
            filters.append(time.perf_counter() - start)
            tab.close()
        browser.close()
    return statistics.median(loads), statistics.median(filters)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=250, help="words per answer")
    parser.add_argument("--questions", type=int, default=80, help="MT-Bench questions, 10 per category at 80")
    parser.add_argument("--models", type=int, default=6, help=f"models, at most {len(MODELS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", help="write the folder here instead of a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        models = MODELS[: args.models]
        root = write_folder(folder, args.words, models, args.questions)
        cfg = from_dict(EvalConfig, load_yaml(root / "config.yaml"))
        start = time.perf_counter()
        metrics = compute("mtbench", cfg)  # what the report has already done in a run
        computed = time.perf_counter() - start
        start = time.perf_counter()
        page = write_eval_page(folder, {"mtbench": cfg}, {"mtbench": metrics})
        built = time.perf_counter() - start
        size = page.stat().st_size / 1e6
        print(f"{args.questions} questions x 2 turns, {len(models)} models, 3 judges, {args.words} words per answer")
        print(f"metrics recomputed in {computed:.1f} s; page written in {built:.1f} s: {size:.1f} MB (target <= 20 MB)")
        load, apply = render_seconds(page, args.rounds)
        print(
            f"headless Chromium: loaded in {load:.2f} s (target < 3 s), one filter applied in {apply:.2f} s "
            f"(median of {args.rounds})"
        )


if __name__ == "__main__":
    main()
