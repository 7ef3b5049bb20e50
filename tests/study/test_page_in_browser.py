"""The page in a real browser: Debian's chromium driven by Playwright, the network blocked (``make test-browser``).

Two pages: a whole tiny experiment's (tiny random models, so its answers are gibberish but every kind of stored
file is there) and the page ``sami eval import`` writes for the shipped FastChat files, whose outcomes were
worked out by hand (tests/eval/test_imports.py): 81/1 win, 81/2 tie with the orders disagreeing, 82/1 loss,
82/2 tie, 111/1 win, 111/2 unparseable, 112/1 win, 112/2 tie with the orders disagreeing; questions 81 and 82 are
writing, 111 and 112 math.
"""

import json
from collections import defaultdict
from pathlib import Path

import pytest

from sami.cli import main
from sami.study.experiment import load_experiment_config, run_experiment
from sami.study.screenshot import CHROMIUM, block_network
from tests.helpers import FASTCHAT, save_tiny_model
from tests.smoke import write_config

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no {CHROMIUM} (make test-browser installs it)"),
]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class Opened:
    """A page opened offline, with every console error, page error and request to a network it made."""

    def __init__(self, browser, path: Path):
        self.errors: list[str] = []
        self.network: list[str] = []
        self.page = browser.new_page(viewport={"width": 1300, "height": 900})
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def route(r):
            if not r.request.url.startswith(("file:", "data:")):
                self.network.append(r.request.url)
            block_network(r)

        self.page.route("**/*", route)
        self.page.goto(path.resolve().as_uri())

    def visible_questions(self, section: str = "section.browser") -> list[str]:
        cards = self.page.locator(f"{section} article.q")
        return sorted(c.get_attribute("data-qid") for c in cards.all() if c.is_visible())

    def choose(self, **values) -> list[str]:
        """Set the browser's filters (others back to "any") and return the ids of the questions left."""
        form = self.page.locator("section.browser form.filters").first
        for name in ("category", "pair", "judge", "flipped", "outcome"):
            select = form.locator(f"select[name={name}]")
            if name in values or select.is_visible():  # a folder without constitutions hides "principles flipped"
                select.select_option(str(values.get(name, "")))
        form.locator("input[name=disagree]").set_checked(bool(values.get("disagree")))
        form.locator("input[name=search]").fill(values.get("search", ""))
        return self.visible_questions()


@pytest.fixture(scope="module")
def run(tmp_path_factory, tokenizer):
    """One tiny experiment, every stage through the report (and so the page)."""
    tmp = tmp_path_factory.mktemp("run")
    student = save_tiny_model(tmp / "student", tokenizer, init_std=0.2)
    cfg = load_experiment_config(write_config(tmp, student))
    run_experiment(cfg)
    return Path(cfg.output_dir)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imported")
    assert main(["eval", "import", *map(str, FASTCHAT), "--output-dir", str(folder)]) == 0
    return folder


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def shown(text: str) -> str:
    """A stored text as the page's DOM holds it (the HTML parser turns CRLF into LF)."""
    return text.replace("\r\n", "\n").strip()


def test_the_run_page_loads_offline_with_no_console_errors(browser, run):
    opened = Opened(browser, run / "report" / "index.html")
    assert opened.errors == [] and opened.network == []
    answers = read(run / "mtbench" / "eval" / "mtbench" / "answers" / "sami.jsonl")
    count = opened.page.locator("section.browser .count").first.inner_text()
    questions = len({a["question_id"] for a in answers})
    assert count == f"{questions} of {questions} questions"
    for section in ("mtbench-mtbench", "mtbench-adherence", "mtbench-training", "math-gsm8k", "math-training"):
        assert opened.page.locator(f"#{section}").is_visible(), section
    images = opened.page.locator("img").all()
    assert len(images) >= 8  # the report's figures and the training curves
    assert all(img.evaluate("i => i.complete && i.naturalWidth > 0") for img in images)


def test_every_stored_answer_is_on_the_page(browser, run):
    opened = Opened(browser, run / "report" / "index.html")
    text = opened.page.evaluate("document.body.textContent")
    texts = []
    for path in (run / "mtbench" / "eval" / "mtbench" / "answers").glob("*.jsonl"):
        texts += [r["answer"] for r in read(path)]
    for path in (run / "mtbench" / "eval" / "adherence" / "answers").glob("*.jsonl"):
        texts += [r["answer"] for r in read(path)]
    for path in (run / "math" / "eval" / "gsm8k" / "attempts").glob("*.jsonl"):
        texts += [t for r in read(path) for t in r["texts"]]
    assert len(texts) > 20
    missing = [t for t in texts if shown(t) not in text]
    assert missing == []


def test_the_run_page_filters_leave_the_questions_the_stored_files_say(browser, run):
    root = run / "mtbench" / "eval" / "mtbench"
    answers = read(root / "answers" / "sami.jsonl")
    by_category, by_flipped = defaultdict(set), defaultdict(set)
    for a in answers:
        by_category[a["category"]].add(str(a["question_id"]))
        flipped = sum(p["side"] == "antithesis" for p in a["constitution"]["principles"])
        by_flipped[flipped].add(str(a["question_id"]))
    opened = Opened(browser, run / "report" / "index.html")
    everyone = sorted({str(a["question_id"]) for a in answers})
    assert opened.choose() == everyone
    for category, ids in by_category.items():
        assert opened.choose(category=category) == sorted(ids)
    for k, ids in by_flipped.items():
        assert opened.choose(flipped=k) == sorted(ids)
    # the tiny random judge's verdicts: per outcome, the questions with at least one item of that outcome
    records = read(root / "judgments" / "checker" / "dpo__sami.jsonl")  # stored as dpo__sami, judged sami vs dpo
    verdict = {(r["question_id"], r["first"]): r["verdict"] for r in records}
    outcomes = defaultdict(set)
    for qid in {r["question_id"] for r in records}:
        sami_first, dpo_first = verdict[(qid, "sami")], verdict[(qid, "dpo")]
        won = {"A": 1, "B": 0}.get(sami_first, 0.5), {"A": 0, "B": 1}.get(dpo_first, 0.5)
        outcome = "win" if won == (1, 1) else "loss" if won == (0, 0) else "tie"
        outcomes[outcome].add(str(qid))
    for outcome in ("win", "tie", "loss"):
        assert opened.choose(judge="checker", pair="sami vs dpo", outcome=outcome) == sorted(outcomes[outcome])
    # inside the questions, only the chosen judge's verdicts on the chosen pairing stay
    opened.choose(judge="checker", pair="sami vs dpo")
    rows = [r for r in opened.page.locator("section.browser table.verdicts tbody tr").all() if r.is_visible()]
    assert len(rows) == len({r["question_id"] for r in records})  # the checker judges the first turn only
    assert {(r.get_attribute("data-judge"), r.get_attribute("data-pair")) for r in rows} == {("checker", "sami vs dpo")}
    columns = opened.page.locator("section.browser .answer").all()
    visible_models = {a.get_attribute("data-model") for a in columns if a.is_visible()}
    assert visible_models == {"sami", "dpo"}  # the pairing's two answers side by side, sft's out of the way
    tables = opened.page.locator("section.browser table.verdicts").all()
    assert sum(t.is_visible() for t in tables) == len(rows)  # one per judged turn; none left empty
    opened.choose()
    every = opened.page.locator("section.browser table.verdicts tbody tr")
    assert all(r.is_visible() for r in every.all()) and every.count() > len(rows)
    assert all(a.is_visible() for a in opened.page.locator("section.browser .answer").all())
    word = shown(answers[0]["answer"]).split()[0]
    expected = sorted(
        {
            str(a["question_id"])
            for path in (root / "answers").glob("*.jsonl")
            for a in read(path)
            if word.lower() in a["answer"].lower()
        }
    )
    assert str(answers[0]["question_id"]) in expected
    assert set(opened.choose(search=word)) >= set(expected)


def pct_text(estimate: dict) -> str:
    return f"{100 * estimate['value']:.1f}% [{100 * estimate['low']:.1f}, {100 * estimate['high']:.1f}]"


def test_the_numbers_on_the_page_equal_metrics_json(browser, run):
    metrics = json.loads((run / "mtbench" / "eval" / "mtbench" / "metrics.json").read_text())
    opened = Opened(browser, run / "report" / "index.html")
    checked = 0
    for judge, by_pair in metrics["pairwise"].items():
        for pair, block in by_pair.items():
            o = block["overall"]
            row = opened.page.locator(f'#mtbench-mtbench table.scoreboard tr[data-judge="{judge}"][data-pair="{pair}"]')
            cell = lambda field: row.locator(f'td[data-field="{field}"]').inner_text()  # noqa: B023, E731
            assert [int(cell(k)) for k in ("n", "win", "tie", "loss", "unparseable")] == [
                o[k] for k in ("n", "win", "tie", "loss", "unparseable")
            ]
            assert cell("hard") == pct_text(o["hard_win_rate"])
            assert cell("soft") == pct_text(o["soft_win_rate"])
            checked += 1
    assert checked == 9  # three judges, three pairings
    # the report's own table on the page: the GSM8K greedy accuracy of each model
    gsm8k = json.loads((run / "math" / "eval" / "gsm8k" / "metrics.json").read_text())
    table = opened.page.locator("#report table", has=opened.page.locator("th:text-is('greedy accuracy')"))
    assert table.count() == 1
    for name, m in gsm8k.items():
        row = table.locator("tr", has=opened.page.locator(f"td:text-is('{name}')"))
        assert row.locator("td").nth(2).inner_text() == pct_text(m["greedy_accuracy"])


def test_the_imported_folder_page_shows_its_answers_verdicts_and_filters(browser, imported):
    opened = Opened(browser, imported / "report" / "index.html")
    assert opened.errors == [] and opened.network == []
    text = opened.page.evaluate("document.body.textContent")
    for name in ("alpha", "beta"):
        for r in read(imported / "mtbench" / "answers" / f"{name}.jsonl"):
            assert shown(r["answer"]) in text
    assert opened.choose() == ["111", "112", "81", "82"]
    assert not opened.page.locator("select[name=flipped]").is_visible()  # no constitution in FastChat's files
    assert opened.choose(category="writing") == ["81", "82"]
    assert opened.choose(category="math") == ["111", "112"]
    assert opened.choose(outcome="win") == ["111", "112", "81"]
    assert opened.choose(outcome="loss") == ["82"]
    assert opened.choose(outcome="tie") == ["112", "81", "82"]
    assert opened.choose(outcome="unparseable") == ["111"]
    assert opened.choose(disagree=True) == ["112", "81"]
    assert opened.choose(disagree=True, category="writing") == ["81"]
    assert opened.choose(judge="gpt-4", pair="alpha vs beta", outcome="loss") == ["82"]
    assert opened.page.locator("section.browser .count").inner_text() == "1 of 4 questions"
    first = read(imported / "mtbench" / "answers" / "beta.jsonl")[0]
    word = max(shown(first["answer"]).split(), key=len).lower()
    texts = [
        (r["question_id"], r["answer"])
        for n in ("alpha", "beta")
        for r in read(imported / "mtbench" / "answers" / f"{n}.jsonl")
    ]
    texts += [(q["question_id"], turn) for q in read(imported / "mtbench" / "questions.jsonl") for turn in q["turns"]]
    expected = sorted({str(qid) for qid, t in texts if word in t.lower()})
    assert str(first["question_id"]) in expected and len(expected) < 4
    assert opened.choose(search=word) == expected
    assert opened.choose(search="no such words anywhere") == []
    metrics = json.loads((imported / "mtbench" / "metrics.json").read_text())
    o = metrics["pairwise"]["gpt-4"]["alpha vs beta"]["overall"]
    row = opened.page.locator('table.scoreboard tr[data-judge="gpt-4"]')
    assert row.locator('td[data-field="hard"]').inner_text() == pct_text(o["hard_win_rate"])
