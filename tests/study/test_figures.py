"""Each figure writes beside its PNG the values it shows, read back from the drawn bars, lines and bands; the
tests compare those with the values the estimates say should be drawn: the value, and whiskers or bands from
``low`` to ``high`` (an interval that does not contain the value ends at the value)."""

import json

import pytest

from sami.study.figures import attempts_curves, estimate_bars, save, winrate_bars


def drawn(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads(path.with_suffix(".json").read_text())


def expected(estimate):
    """[value, whisker start, whisker end] of one estimate, computed from its fields."""
    value = estimate.get("rate", estimate.get("value"))
    if value is None:
        return None
    return [value, min(estimate.get("low", value), value), max(estimate.get("high", value), value)]


def test_grouped_bars_draw_the_estimates_they_are_given(tmp_path):
    """Per group and bar: the estimate's value and interval ends; a missing estimate is drawn as nothing."""
    contrasts = {
        "sft": {
            "lowercase": {"value": 0.125, "low": 0.0, "high": 0.375},
            "bullet_list": {"value": -0.125, "low": -0.375, "high": 0.0},
        },
        "sami": {"lowercase": {"value": 0.875, "low": 0.625, "high": 1.0}},
    }
    path = save(winrate_bars(contrasts, reference=0.0, xlim=(-1, 1), xlabel="contrast"), tmp_path / "adherence.png")
    assert drawn(path) == {
        "bullet_list": {"sft": [-0.125, -0.375, 0.0]},
        "lowercase": {"sft": [0.125, 0.0, 0.375], "sami": [0.875, 0.625, 1.0]},
    }


def test_win_rate_bars_put_each_pairing_in_its_category(tmp_path):
    pairings = {
        "A vs B": {
            "math": {"rate": 0.6, "low": 0.3, "high": 0.85, "n": 10},
            "writing": {"rate": 0.25, "low": 0.1, "high": 0.5, "n": 8},
            "overall": {"rate": 0.45, "low": 0.3, "high": 0.6, "n": 18},
        },
        "A vs C": {"math": {"rate": 0.7, "low": 0.8, "high": 0.9, "n": 10}},  # low above the rate: no lower whisker
    }
    got = drawn(save(winrate_bars(pairings), tmp_path / "f" / "w.png"))
    want = {}
    for name, per in pairings.items():
        for category, estimate in per.items():
            want.setdefault(category, {})[name] = expected(estimate)
    assert got.keys() == want.keys()
    for category in want:
        assert got[category].keys() == want[category].keys()
        for name in want[category]:
            assert got[category][name] == pytest.approx(want[category][name])


def test_estimate_bars_draw_each_value_and_interval(tmp_path):
    values = {
        "base": {"value": 0.1, "low": 0.0, "high": 0.2},
        "sft": {"value": -0.3, "low": -0.45, "high": -0.05},
        "sami": {"value": None},
        "dpo": {"value": 0.75},  # no interval: whiskers of length 0
    }
    got = drawn(save(estimate_bars(values, title="MI", ylabel="nats"), tmp_path / "m.png"))
    assert list(got) == list(values)
    for name, estimate in values.items():
        assert got[name] == (None if estimate["value"] is None else pytest.approx(expected(estimate))), name


def test_attempts_curves_draw_each_variant_over_k_with_its_band(tmp_path):
    variants = {
        "base": {1: {"rate": 0.2, "low": 0.1, "high": 0.35}, 4: {"rate": 0.5, "low": 0.3, "high": 0.7}},
        "sft": {"1": {"rate": 0.3, "low": 0.2, "high": 0.4}, "4": {"rate": 0.6, "low": 0.4, "high": 0.75}},
    }
    got = drawn(save(attempts_curves(variants), tmp_path / "a.png"))
    assert got.keys() == variants.keys()
    for name, by_k in variants.items():
        assert got[name] == {str(k): pytest.approx(expected(e)) for k, e in by_k.items()}, name
