"""The typed metrics of ``sami.eval.results``: what ``metrics.json`` stores reads back as the same record, an
optional field that does not apply is left out, and a stored form with a key missing or unknown is refused."""

import json

import pytest

from sami.core.config import ConfigError
from sami.eval.gsm8k import attempt_metrics
from sami.eval.mtbench.statistics import pairwise_metrics
from sami.eval.results import GSM8KResult, PairResult, stored


def _pair_records():
    """Three writing questions, both orders: x wins q0 (A then B), q1 is a tie in both orders, y wins q2."""
    verdicts = {0: ("A", "B"), 1: ("tie", "tie"), 2: ("B", "A")}
    rows = []
    for q, (x_first, y_first) in verdicts.items():
        for first, second, v in (("x", "y", x_first), ("y", "x", y_first)):
            row = {"question_id": q, "category": "writing", "turn": 1, "first": first, "second": second}
            rows.append({**row, "verdict": v})
    answers = {m: {(q, 1): {"answer": "one two three"} for q in verdicts} for m in ("x", "y")}
    return rows, answers


def test_a_pair_result_reads_back_from_its_json_with_the_same_numbers():
    """1 win, 1 tie, 1 loss: hard win rate (1 + 0.5) / 3 = 0.5; no constitutions stored, so no blocks by
    principles flipped, and nothing imported, so nothing mirrored: both are left out of the stored form."""
    result = pairwise_metrics(*_pair_records(), "x", "y")
    data = json.loads(json.dumps(result.to_dict()))
    assert (data["overall"]["win"], data["overall"]["tie"], data["overall"]["loss"]) == (1, 1, 1)
    assert data["overall"]["hard_win_rate"]["value"] == pytest.approx(0.5)
    assert "per_flipped" not in data and "mirrored" not in data
    again = PairResult.from_dict(data)
    assert again == result
    assert again.overall.hard_win_rate.value == pytest.approx(0.5) and again.per_flipped is None


def test_a_stored_form_with_a_key_missing_or_unknown_is_refused():
    data = pairwise_metrics(*_pair_records(), "x", "y").to_dict()
    old = dict(data, overall={**data["overall"], "win_rate_adjusted": data["overall"]["hard_win_rate"]})
    del old["overall"]["hard_win_rate"]
    with pytest.raises(ConfigError, match=r"win_rate_adjusted"):
        PairResult.from_dict(old)  # an old name is read through sami.core.migrate, never here
    with pytest.raises(ConfigError, match=r"pending"):
        PairResult.from_dict({k: v for k, v in data.items() if k != "pending"})


def test_per_checkpoint_records_are_stored_per_checkpoint_and_a_plain_mapping_as_it_is():
    records = [
        {"id": "p0", "kind": "greedy", "gold": 5, "texts": ["#### 5"]},
        {"id": "p1", "kind": "greedy", "gold": 7, "texts": ["#### 6"]},
    ]
    result = attempt_metrics(records, "strict", 0)
    assert stored({"base": result}) == {"base": result.to_dict()}
    assert GSM8KResult.from_dict(stored({"base": result})["base"]).greedy_accuracy.value == 0.5
    assert stored({"base": {"score": 0.25}}) == {"base": {"score": 0.25}}  # a plugin suite's own numbers


def test_a_mean_over_a_value_that_is_not_a_number_is_stored_and_read_as_n_a():
    from sami.core.stats import bootstrap_mean

    e = bootstrap_mean([float("nan"), 1.0, 2.0])
    assert (e.value, e.low, e.high, e.n) == (None, None, None, 3)
    assert bootstrap_mean([1.0, 2.0]).value == 1.5


def test_a_plugin_suite_s_list_or_number_is_stored_as_it_is():
    assert stored(0.5) == 0.5
    assert stored([1, 2]) == [1, 2]
