"""Evaluation statistics as pure functions: pass@k, maj@k, intervals, length-controlled win rate.

Every number the evaluation suite prints is an :class:`Estimate`: the value, the count it rests on and a
95% interval. Which interval fits which number (docs/EVALUATION.md):

- a rate of independent yes/no outcomes (greedy accuracy, maj@k, a checker's pass rate): Wilson score
  interval, which stays inside [0, 1] and keeps its coverage at the small counts of MT-Bench categories
  (10 items) where the normal approximation does not;
- a mean of bounded per-item scores (adjusted win rate with ties as 0.5, pass@k averaged over problems, MI
  bounds, paired differences): percentile bootstrap over items with a fixed seed, so that recomputing a
  metric from the stored files gives exactly the printed interval.
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

    value: float
    n: int
    low: float
    high: float
    method: str  # wilson | bootstrap | none

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}] (n={self.n})"

    def percent(self) -> str:
        return f"{100 * self.value:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}] (n={self.n})"


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


def wilson(successes: int, n: int, z: float = Z95) -> Estimate:
    """Rate ``successes / n`` with its Wilson score interval (Wilson 1927)."""
    if n < 0 or not (0 <= successes <= n):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return Estimate(math.nan, 0, math.nan, math.nan, "wilson")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval touches 0 (or 1) exactly when no (or every) outcome succeeded; say so without float noise.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(p, n, low, high, "wilson")


def rate(outcomes: Sequence[bool]) -> Estimate:
    return wilson(sum(bool(o) for o in outcomes), len(outcomes))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bootstrap_mean(
    values: Sequence[float], *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = 0.95
) -> Estimate:
    """Mean with a percentile bootstrap interval over items; deterministic for a given ``seed``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Estimate(math.nan, 0, math.nan, math.nan, "bootstrap")
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
        return Estimate(math.nan, 0, math.nan, math.nan, "bootstrap")
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
