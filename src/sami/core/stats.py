"""Evaluation statistics as pure functions: pass@k, maj@k, intervals, length- and style-controlled win rates,
a Bradley-Terry ranking.

Every number the evaluation suite prints is an :class:`Estimate`: the value, the count it rests on and a
95% interval. Which interval fits which number (docs/EVALUATION.md):

- a rate, or any mean of per-item scores in [0, 1] (greedy accuracy, maj@k, a checker's pass rate, the
  hard win rate with ties as 0.5, pass@k averaged over problems): the Wilson score interval. It stays
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

    def __post_init__(self) -> None:
        # a mean over a NaN (a model whose log-probs overflowed, say) is no number: stored and shown as n/a
        if any(isinstance(v, float) and math.isnan(v) for v in (self.value, self.low, self.high)):
            for name in ("value", "low", "high"):
                object.__setattr__(self, name, None)

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


def logistic_fit(
    design: np.ndarray, outcome: np.ndarray, weights: np.ndarray | None = None, *, ridge: float
) -> np.ndarray:
    """Coefficients of ``logit p = design @ beta`` fitted to outcomes in [0, 1] (ties as 1/2), by Newton's method.

    design: (n, k); outcome: (n,); weights: (n,) or (R, n) item counts, one fit per row (a bootstrap resample
    is a row of counts), None for one fit with every item once. Returns (k,) or (R, k). The maximised
    objective is ``sum_i w_i [y_i log p_i + (1 - y_i) log(1 - p_i)] - ridge/2 |beta|^2``: a Gaussian prior that
    keeps the fit finite under complete separation (every item a win), which happens at the sizes MT-Bench
    categories have. With ``ridge`` near 0 it is the maximum-likelihood logistic regression (checked against
    statsmodels' binomial GLM in the tests); written out here because the bootstrap needs thousands of these
    small fits, which one batched Newton iteration does at once.
    """
    X = np.asarray(design, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    w = np.ones((1, y.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    beta = np.zeros((w.shape[0], X.shape[1]))  # (R, k)
    eye = ridge * np.eye(X.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-(beta @ X.T)))  # (R, n)
        grad = (w * (y - p)) @ X - ridge * beta  # (R, k)
        hess = np.einsum("rn,nk,nl->rkl", w * p * (1 - p), X, X) + eye  # (R, k, k)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta[0] if weights is None or np.ndim(weights) == 1 else beta


def _resample_counts(n: int, seed: int, resamples: int) -> np.ndarray:
    """(resamples, n) counts of each item in bootstrap resamples of n items drawn with replacement."""
    idx = _rng(seed).integers(0, n, size=(resamples, n))
    return np.stack([np.bincount(row, minlength=n) for row in idx])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def controlled_win_rate(
    scores: Sequence[float], covariates, *, ridge: float = 0.1, seed: int = 0, resamples: int = 2_000
) -> Estimate:
    """Win rate of A over B had the two answers been equal in every covariate, with a bootstrap interval.

    ``scores`` are per-item outcomes for A (1 win, 0.5 tie, 0 loss); ``covariates`` (n, k) are per-item
    differences between A and B that are 0 when the two are alike (a log length ratio, a difference in
    markdown density). A logistic regression of the outcome on them (``logistic_fit``) is read where they are
    all 0: ``sigmoid(intercept)``. The idea of AlpacaEval's length control and of style control in pairwise
    model rankings, reduced to one pair of models.
    """
    y = np.asarray(scores, dtype=np.float64)
    if y.size == 0:
        return _empty("bootstrap")
    z = np.asarray(covariates, dtype=np.float64).reshape(y.size, -1)
    # each covariate divided by its root mean square (not centred: 0 must stay "alike"), so that the ridge pulls
    # on a density difference of 0.05 as on a length ratio of 2; the intercept does not depend on the scale
    rms = np.sqrt(np.mean(z**2, axis=0))
    design = np.concatenate([np.ones((y.size, 1)), z / np.where(rms > 0, rms, 1.0)], axis=1)
    value = float(_sigmoid(logistic_fit(design, y, ridge=ridge)[0]))
    if y.size == 1:
        return Estimate(value, 1, value, value, "bootstrap")
    fits = _sigmoid(logistic_fit(design, y, _resample_counts(y.size, seed, resamples), ridge=ridge)[:, 0])
    low, high = np.quantile(fits, [0.025, 0.975])
    return Estimate(value, int(y.size), float(low), float(high), "bootstrap")


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

    ``controlled_win_rate`` with one covariate, the log length ratio ``log(len_a / len_b)``: scale-free and
    symmetric in A and B, so the number does not depend on the length unit or on which answer is called A.
    Lengths are in words (a length of 0 counts as 1).
    """
    la, lb = (np.maximum(np.asarray(v, dtype=np.float64), 1.0) for v in (lengths_a, lengths_b))
    if not (len(scores) == la.size == lb.size):
        raise ValueError("scores and both length lists must have the same size")
    return controlled_win_rate(scores, np.log(la / lb), ridge=ridge, seed=seed, resamples=resamples)


def bradley_terry(
    battles: Sequence[tuple[str, str, float]],
    groups: Sequence[Hashable],
    origin: str,
    *,
    ridge: float = 0.01,
    seed: int = 0,
    resamples: int = 1_000,
) -> dict[str, dict]:
    """A Bradley-Terry ranking of every model in ``battles`` with percentile bootstrap intervals.

    battles: ``(a, b, score of a)`` with score 1 (a won), 0.5 (tie) or 0; groups: one key per battle (the
    question and turn), resampled together, so the battles of one question stay together as Arena-Hard-Auto
    resamples them. ``P(a beats b) = sigmoid(s_a - s_b)`` with the strength of ``origin`` fixed at 0, fitted by
    ``logistic_fit`` (``ridge`` keeps an unbeaten model finite). Per model: ``strength`` (logits above the
    origin), ``win_rate_vs_origin`` (``sigmoid(strength)``, what the fit expects of it against the origin on
    an average question) and ``rank`` (1 = strongest, by the point estimate).
    """
    models = list(dict.fromkeys([origin] + [m for a, b, _ in battles for m in (a, b)]))
    if len(battles) == 0:
        return {}
    column = {m: k - 1 for k, m in enumerate(models)}  # the origin has no column: its strength is 0
    design = np.zeros((len(battles), len(models) - 1))
    for row, (a, b, _) in enumerate(battles):
        if a != origin:
            design[row, column[a]] += 1
        if b != origin:
            design[row, column[b]] -= 1
    y = np.array([s for _, _, s in battles], dtype=np.float64)
    point = np.concatenate([[0.0], logistic_fit(design, y, ridge=ridge)])
    keys = list(dict.fromkeys(groups))
    of_group = np.array([keys.index(g) for g in groups])
    counts = _resample_counts(len(keys), seed, resamples)[:, of_group]  # (R, battles): a group's count each
    boot = np.concatenate([np.zeros((resamples, 1)), logistic_fit(design, y, counts, ridge=ridge)], axis=1)
    low, high = np.quantile(boot, [0.025, 0.975], axis=0)
    order = sorted(range(len(models)), key=lambda k: -point[k])
    out = {}
    for k, m in enumerate(models):
        strength = Estimate(float(point[k]), len(keys), float(low[k]), float(high[k]), "bootstrap")
        versus = Estimate(
            float(_sigmoid(point[k])), len(keys), float(_sigmoid(low[k])), float(_sigmoid(high[k])), "bootstrap"
        )
        out[m] = {"strength": strength.to_dict(), "win_rate_vs_origin": versus.to_dict(), "rank": order.index(k) + 1}
    return out
