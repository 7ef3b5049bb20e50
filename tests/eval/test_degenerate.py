"""The degenerate-text measure on hand-written answers."""

import pytest

from sami.eval.degenerate import degenerate_reason

ORDINARY = [
    "The capital of France is Paris. It has been the capital since the tenth century.",
    "- preheat the oven\n- mix the flour and the eggs\n- bake for twenty minutes",
    'def reverse(xs):\n    return xs[::-1]\n\n{"answer": "use slicing"}',
    "42",
    "WATER EXPANDS WHEN IT FREEZES, SO ICE FLOATS.",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_answers_are_not_degenerate(text):
    assert degenerate_reason(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("  ... !!! --- ", "empty"),
        ("akecrasableortunately<clearible>easy</aire> ok", "run-on tokens"),  # 1 of 2 tokens over 20 chars
        ("the cat sat " * 6, "looping"),  # 18 words, 3 distinct trigrams of 16
    ],
)
def test_collapsed_answers_are_degenerate(text, reason):
    assert degenerate_reason(text) == reason


def test_thresholds_sit_where_documented():
    five = "one two three four five"
    assert degenerate_reason(five + " " + "x" * 21) is None  # 1 long token of 6: 17% <= 20%
    assert degenerate_reason("a b c " + "x" * 21) == "run-on tokens"  # 1 of 4: 25%
