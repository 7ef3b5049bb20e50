import itertools

import pytest

from sami.core.stats import (
    bootstrap_mean,
    bounded_mean,
    bradley_terry,
    controlled_win_rate,
    length_controlled_win_rate,
    logistic_fit,
    maj_at_k,
    majority,
    pass_at_k,
    wilson,
)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_pass_at_k_equals_brute_force_enumeration(n):
    """For every c and k: the fraction of k-subsets of n samples (c correct) holding a correct one."""
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)


def test_pass_at_k_edges_and_errors():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the plain fraction correct
    assert 0 < pass_at_k(1000, 1, 500) < 1  # exact integer binomials: no overflow, no cancellation
    for bad in [(3, 4, 1), (3, 1, 0), (3, 1, 4), (3, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_majority_ignores_none_and_breaks_ties_to_the_earliest():
    assert majority([None, 3, 5, 5, 3]) == 3  # 3 and 5 tie twice each; 3 came first
    assert majority([None, 5, 3, 3, 5]) == 5
    assert majority([7, 1, 1]) == 1  # a clear majority wins over the first answer
    assert majority([None, None]) is None
    assert majority([2, 4, 4], k=2) == 2  # only the first k count: 2 and 4 tie, 2 first
    assert majority([18, 18.0, 3]) == 18  # numbers compare by value


def test_maj_at_k():
    answers = [None, 4, 7, 7, 4, 4]
    assert maj_at_k(answers, 4, 2)  # only 4 among the first two
    assert not maj_at_k(answers, 7, 3)  # 4 and 7 tie once each; 4 came first
    assert maj_at_k(answers, 7, 4)  # 7 twice
    assert not maj_at_k(answers, 4, 4)
    assert maj_at_k(answers, 4, 6)  # 4 three times, 7 twice
    assert not maj_at_k([None, None], 1, 2)  # nothing extracted: never right
    with pytest.raises(ValueError):
        maj_at_k(answers, 4, 7)


def test_wilson_interval_known_values():
    # Wilson (1927) for 8 of 10 at z = 1.96: centre (0.8 + 0.19208) / 1.38415, half-width 0.24789 / 1.38415
    est = wilson(8, 10)
    assert est.value == 0.8 and est.n == 10
    assert est.low == pytest.approx(0.4902, abs=1e-4) and est.high == pytest.approx(0.9433, abs=1e-4)
    zero = wilson(0, 10)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.2775, abs=1e-4)
    assert wilson(10, 10).high == 1.0
    assert wilson(0, 0).value is None and wilson(0, 0).n == 0
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_bootstrap_mean_is_deterministic_and_covers_the_mean():
    values = [0, 0.5, 1, 1, 0, 1, 0.5, 1, 1, 0]
    a, b = bootstrap_mean(values, seed=3), bootstrap_mean(values, seed=3)
    assert a == b
    assert a.low < 0.6 < a.high and a.value == pytest.approx(0.6)
    assert 0 <= a.low and a.high <= 1
    # The interval's width shrinks like 1/sqrt(n): four copies of the data give about half the width.
    wide, narrow = bootstrap_mean(values), bootstrap_mean(values * 4)
    ratio = (narrow.high - narrow.low) / (wide.high - wide.low)
    assert 0.4 < ratio < 0.6
    constant = bootstrap_mean([2.0, 2.0])
    assert (constant.low, constant.high) == (2.0, 2.0)


def test_length_controlled_win_rate_removes_a_pure_length_effect():
    """A wins exactly when its answer is longer: the raw win rate is 0.75, equal lengths give about 0.5."""
    la = [100, 200, 100, 300, 50, 400, 100, 250] * 5
    lb = [50, 100, 200, 100, 100, 100, 50, 100] * 5
    scores = [1.0 if a > b else 0.0 for a, b in zip(la, lb, strict=True)]
    assert sum(scores) / len(scores) == 0.75
    lc = length_controlled_win_rate(scores, la, lb)
    assert abs(lc.value - 0.5) < 0.15 and lc.low < 0.5 < lc.high
    # Without a length difference the intercept carries the whole effect: 30 wins, 10 losses, same lengths.
    even = length_controlled_win_rate([1.0] * 30 + [0.0] * 10, [100] * 40, [100] * 40)
    assert even.value == pytest.approx(0.75, abs=0.02)
    # All wins (complete separation) stays finite thanks to the ridge penalty.
    assert 0.5 < length_controlled_win_rate([1.0] * 10, [10] * 10, [10] * 10).value < 1.0


def test_bounded_mean_is_wilson_and_wider_than_the_bootstrap_for_ties():
    scores = [1.0, 0.5, 0.5, 0.0, 1.0, 0.5, 1.0, 0.5, 0.5, 1.0]  # hard win rate 0.65
    est = bounded_mean(scores)
    assert est.value == pytest.approx(0.65) and est.method == "wilson"
    assert (est.low, est.high) == pytest.approx((wilson(6.5, 10).low, wilson(6.5, 10).high))
    boot = bootstrap_mean(scores)
    assert est.low < boot.low and est.high > boot.high  # conservative: ties have less variance than p(1-p)
    all_wins = bounded_mean([1.0] * 10)
    assert all_wins.high == 1.0 and all_wins.low < 0.75  # not a point, unlike the bootstrap's [1, 1]
    assert bounded_mean([]).value is None
    with pytest.raises(ValueError):
        bounded_mean([1.5])


def test_logistic_fit_equals_statsmodels_binomial_glm():
    """Without separation and with the ridge near 0, the Newton fit is the maximum-likelihood logistic
    regression; statsmodels' binomial GLM (fractional outcomes allowed) is the reference. Counts as weights
    equal repeating the rows."""
    import numpy as np
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(60), rng.normal(size=60), rng.normal(size=60)])
    y = (rng.random(60) < 1 / (1 + np.exp(-(0.3 + X[:, 1] - 0.5 * X[:, 2])))).astype(float)
    y[:6] = 0.5  # ties
    reference = sm.GLM(y, X, family=sm.families.Binomial()).fit().params
    assert logistic_fit(X, y, ridge=1e-10) == pytest.approx(reference, abs=1e-6)
    counts = rng.integers(0, 3, size=60)
    repeated = sm.GLM(np.repeat(y, counts), np.repeat(X, counts, axis=0), family=sm.families.Binomial()).fit()
    assert logistic_fit(X, y, counts, ridge=1e-10) == pytest.approx(repeated.params, abs=1e-6)
    batched = logistic_fit(X, y, np.stack([counts, np.ones(60)]), ridge=1e-10)
    assert batched[0] == pytest.approx(repeated.params, abs=1e-6) and batched[1] == pytest.approx(reference, abs=1e-6)


def test_style_controlled_win_rate_removes_a_pure_markdown_effect():
    """A wins the 30 items where it has more list items per word and is otherwise alike; on the 10 items where the
    two answers are alike it wins 5 and loses 5. Raw: 35/40 = 0.875; at equal style about 1/2."""
    covariates = [[0.0, 0.3]] * 30 + [[0.0, 0.0]] * 10  # (log length ratio, list-item density difference)
    scores = [1.0] * 30 + [1.0, 0.0] * 5
    controlled = controlled_win_rate(scores, covariates)
    assert sum(scores) / 40 == 0.875
    assert abs(controlled.value - 0.5) < 0.1 and controlled.low < 0.5 < controlled.high
    # the same data without the covariate is the plain win rate, up to the ridge's pull toward 1/2
    assert controlled_win_rate(scores, [[0.0]] * 40).value == pytest.approx(0.875, abs=0.01)


def test_bradley_terry_strengths_by_hand():
    """Two models, b wins 12 of 16 against the origin a: the likelihood is maximised at sigmoid(s_b) = 12/16, so
    s_b = log(12 / 4) = log 3. Three models: statsmodels' GLM without intercept on the same design is the
    reference. Battles of one group are resampled together: in a single group every resample is the data."""
    import math

    import numpy as np
    import statsmodels.api as sm

    battles = [("a", "b", 0.0)] * 12 + [("a", "b", 1.0)] * 4
    fit = bradley_terry(battles, list(range(16)), "a", ridge=1e-10)
    assert fit["b"]["strength"]["value"] == pytest.approx(math.log(3), abs=1e-6)
    assert fit["b"]["win_rate_vs_origin"]["value"] == pytest.approx(0.75, abs=1e-6)
    assert (fit["b"]["rank"], fit["a"]["rank"]) == (1, 2) and fit["a"]["strength"]["value"] == 0
    low, high = fit["b"]["strength"]["low"], fit["b"]["strength"]["high"]
    assert low < math.log(3) < high
    one_group = bradley_terry(battles, [0] * 16, "a", ridge=1e-10)["b"]["strength"]
    assert one_group["low"] == pytest.approx(math.log(3), abs=1e-6) == pytest.approx(one_group["high"], abs=1e-6)

    three = [("a", "b", 1.0)] * 5 + [("a", "b", 0.0)] * 3 + [("b", "c", 1.0)] * 6 + [("b", "c", 0.5)] * 2
    three += [("b", "c", 0.0)] * 2 + [("a", "c", 1.0)] * 4 + [("a", "c", 0.0)] * 2 + [("c", "a", 1.0)]
    design = np.array([[(a == "b") - (b == "b"), (a == "c") - (b == "c")] for a, b, _ in three], dtype=float)
    reference = sm.GLM(np.array([s for *_, s in three]), design, family=sm.families.Binomial()).fit().params
    fit = bradley_terry(three, list(range(len(three))), "a", ridge=1e-10)
    assert [fit[m]["strength"]["value"] for m in "bc"] == pytest.approx(list(reference), abs=1e-6)
    assert [m for m in sorted(fit, key=lambda m: fit[m]["rank"])] == ["a", "b", "c"]
