"""Evaluation statistics as pure functions: pass@k, maj@k, intervals, length-controlled win rate.

Every number the evaluation suite prints is an :class:`Estimate`: the value, the count it rests on and a
95% interval. Which interval fits which number (docs/EVALUATION.md):

- a rate, or any mean of per-item scores in [0, 1] (greedy accuracy, maj@k, a checker's pass rate, the
  adjusted win rate with ties as 0.5, pass@k averaged over problems): the Wilson score interval. It stays
  inside [0, 1] and keeps its coverage at the small counts of MT-Bench categories (10 items), where the
  normal approximation and the bootstrap collapse to a point at 0/10 or 10/10. For fractional scores it
  uses the binomial variance p(1 - p), the largest variance a [0, 1] score with mean p can have, so it
  is conservative there;
- any other mean (MI bounds, ratings, lengths, paired differences): percentile bootstrap over items with a
  fixed seed, so that recomputing a metric from the stored files gives exactly the printed interval.

An estimate over no items has value None (JSON null), never NaN.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with the number of items it averages and its 95% interval ``[low, high]``."""

    value: float | None
    n: int
    low: float | None
    high: float | None
    method: str  # wilson | bootstrap

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.value is None:
            return f"n/a (n={self.n})"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"

    def percent(self) -> str:
        if self.value is None:
            return f"n/a (n={self.n})"
        return f"{100 * self.value:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}] (n={self.n})"


def _empty(method: str) -> Estimate:
    return Estimate(None, 0, None, None, method)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from n samples of which c are correct: ``1 - C(n-c, k) / C(n, k)``.

    Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", eq. 1): the probability that at
    least one of k samples drawn without replacement from the n is correct. Exact integer binomials, so
    no cancellation at large n.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority(answers: Sequence[Hashable | None], k: int | None = None) -> Hashable | None:
    """The most frequent of the first ``k`` answers (all when None), None ignored, ties to the earliest.

    None when no answer among the first k could be extracted. Numbers compare by value (18 == 18.0).
    """
    first = [a for a in (answers if k is None else answers[:k]) if a is not None]
    if not first:
        return None
    counts = Counter(first)
    best = max(counts.values())
    return next(a for a in first if counts[a] == best)


def maj_at_k(answers: Sequence[Hashable | None], gold: Hashable, k: int) -> bool:
    """Whether the majority vote of the first k extracted answers equals ``gold`` (see :func:`majority`)."""
    if k < 1 or k > len(answers):
        raise ValueError(f"k must be in 1..{len(answers)}, got {k}")
    return majority(answers, k) == gold


def wilson(successes: float, n: int, z: float = Z95) -> Estimate:
    """Rate ``successes / n`` with its Wilson score interval (Wilson 1927).

    ``successes`` may be fractional (a sum of scores in [0, 1]); see the module docstring.
    """
    if n < 0 or not (0 <= successes <= n):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return _empty("wilson")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval touches 0 (or 1) exactly when no (or every) outcome succeeded; say so without float noise.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(p, n, low, high, "wilson")


def rate(outcomes: Sequence[bool]) -> Estimate:
    """Fraction of true outcomes, Wilson interval."""
    return wilson(sum(bool(o) for o in outcomes), len(outcomes))


def bounded_mean(scores: Sequence[float]) -> Estimate:
    """Mean of per-item scores in [0, 1] (a win scored 1, a tie 0.5, a loss 0; pass@k), Wilson interval."""
    if any(not 0 <= s <= 1 for s in scores):
        raise ValueError("bounded_mean takes scores in [0, 1]")
    return wilson(float(sum(scores)), len(scores))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bootstrap_mean(
    values: Sequence[float], *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = 0.95
) -> Estimate:
    """Mean with a percentile bootstrap interval over items; deterministic for a given ``seed``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return _empty("bootstrap")
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return Estimate(mean, int(x.size), mean, mean, "bootstrap")
    idx = _rng(seed).integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Estimate(mean, int(x.size), float(low), float(high), "bootstrap")


def _logistic_intercept(outcome: np.ndarray, x: np.ndarray, ridge: float) -> float:
    """Intercept of a logistic fit ``logit p = a + b x`` to fractional outcomes in [0, 1] (Newton/IRLS).

    A Gaussian penalty ``ridge/2 * (a^2 + b^2)`` keeps the fit finite when every outcome is a win or a
    loss (complete separation), which happens at MT-Bench category sizes.
    """
    design = np.stack([np.ones_like(x), x], axis=1)  # (n, 2)
    beta = np.zeros(2)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(design @ beta)))
        grad = design.T @ (outcome - p) - ridge * beta
        hess = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(beta[0])


def length_controlled_win_rate(
    scores: Sequence[float],
    lengths_a: Sequence[float],
    lengths_b: Sequence[float],
    *,
    ridge: float = 0.1,
    seed: int = 0,
    resamples: int = 2_000,
) -> Estimate:
    """Win rate of A over B had both answers been equally long, with a bootstrap interval.

    ``scores`` are per-item outcomes for A (1 win, 0.5 tie, 0 loss). A logistic regression of the outcome
    on the log length ratio ``log(len_a / len_b)`` is fitted and evaluated at ratio 1 (log ratio 0):
    ``sigmoid(intercept)``. The log ratio is scale-free and symmetric in A and B, so the number does not
    depend on the length unit or on which side is called A. Lengths are in words (a length of 0 counts as 1).
    """
    y = np.asarray(scores, dtype=np.float64)
    la, lb = (np.maximum(np.asarray(v, dtype=np.float64), 1.0) for v in (lengths_a, lengths_b))
    if not (y.size == la.size == lb.size):
        raise ValueError("scores and both length lists must have the same size")
    if y.size == 0:
        return _empty("bootstrap")
    x = np.log(la / lb)

    def fit(idx: np.ndarray) -> float:
        return 1 / (1 + math.exp(-_logistic_intercept(y[idx], x[idx], ridge)))

    value = fit(np.arange(y.size))
    if y.size == 1:
        return Estimate(value, 1, value, value, "bootstrap")
    idx = _rng(seed).integers(0, y.size, size=(resamples, y.size))
    fits = np.array([fit(row) for row in idx])
    low, high = np.quantile(fits, [0.025, 0.975])
    return Estimate(value, int(y.size), float(low), float(high), "bootstrap")
