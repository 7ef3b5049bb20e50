"""What the evaluation suites compute, as typed records: the schema of every suite's ``metrics.json``
(docs/EVALUATION.md, "metrics.json schema").

The suites build these (``sami.eval.mtbench.statistics``, ``gsm8k``, ``mi``, ``adherence``); ``to_dict()`` is what
``metrics.json`` stores and what ``sami.eval.run.compute`` returns, and ``from_dict()`` reads it back, refusing an
unknown or missing key. A field that is None is left out of the stored form (it did not apply: no principles
were flipped, the verdicts were not imported, no sampled attempts). Every number with an interval is a
:class:`~sami.core.stats.Estimate` (``value, n, low, high, method``).

Metrics are always recomputed from the stored answers and verdicts, never read back from a ``metrics.json``; the
one stored copy read back is the report's ``summary.json``, through ``sami.core.migrate.upgrade_summary``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from sami.core.config import from_dict
from sami.core.stats import Estimate

R = TypeVar("R", bound="Result")


class Result:
    """``to_dict`` and ``from_dict`` for the records below."""

    def to_dict(self) -> dict:
        return _stored(self)

    @classmethod
    def from_dict(cls: type[R], data: dict) -> R:
        return from_dict(cls, data, source=f"{cls.__name__} record")


def _stored(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {
            f.name: _stored(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (getattr(value, f.name) is None and f.default is None)  # an optional field that did not apply
        }
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_stored(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ MT-Bench


@dataclass(frozen=True)
class AnswerStats(Result):
    """One checkpoint's stored MT-Bench answers (every turn)."""

    count: int  # answers stored
    mean_words: Estimate  # words per answer, bootstrap
    mean_tokens: Estimate  # generated tokens per answer (imported answers without a count left out), bootstrap
    cut_by_length: int  # answers that stopped at the token limit
    degenerate: Estimate  # share of empty, run-on or looping answers (``sami.eval.degenerate``), Wilson


@dataclass(frozen=True)
class PairBlock(Result):
    """The numbers of items of a pair ``x vs y`` judged in both orders, seen from x (the first named)."""

    win: int  # items x won: both orders for x, or one for x and the other a tie
    tie: int  # items tied, or whose two orders disagree
    loss: int  # items y won
    unparseable: int  # items with a verdict that could not be read in an order; left out of every rate
    n: int  # items: win + tie + loss + unparseable
    inconsistent: int  # items whose two orders picked different answers
    hard_win_rate: Estimate  # (win + tie / 2) / (win + tie + loss), Wilson
    soft_win_rate: Estimate  # mean soft score (verdict probabilities; the hard outcome per order otherwise), bootstrap
    verdict_mass: Estimate  # probability on the verdict letters before renormalising (probability verdicts only)
    length_controlled_win_rate: Estimate  # the win rate at equal answer lengths (logistic fit), bootstrap
    style_controlled_win_rate: Estimate  # at equal length and markdown (lists, headers, bold), bootstrap
    mean_words_x: Estimate  # x's answer length in words, bootstrap
    mean_words_y: Estimate  # y's answer length in words, bootstrap


@dataclass(frozen=True)
class PairResult(Result):
    """One judge's numbers for one pair ``x vs y``: overall, per category and by principles flipped."""

    overall: PairBlock
    pending: int  # items judged in one order so far
    per_category: dict[str, PairBlock]  # MT-Bench category -> its items' block
    verdict_source: str  # probability | text | checker | imported [one-order | partly one-order]
    per_flipped: dict[str, PairBlock] | None = None  # how many principles were on their antithesis side -> block
    mirrored: int | None = None  # imported verdicts judged in one order only, stored with their mirror


@dataclass(frozen=True)
class JudgeDiagnostics(Result):
    """How one pairwise judge behaves over all its stored verdicts (mirrored imported ones left out)."""

    order_agreement: Estimate  # items whose two orders agree (``sami.eval.judges.combine``), Wilson
    first_position: Estimate  # of the verdicts that pick an answer, those picking the one shown first, Wilson
    ties: Estimate  # of the parsed verdicts, the ties, Wilson
    verdicts: int  # verdicts stored


@dataclass(frozen=True)
class RankedModel(Result):
    """A model's place in a Bradley-Terry fit (``sami.core.stats.bradley_terry``)."""

    strength: Estimate  # logits above the origin (0 for the origin), bootstrap over questions
    win_rate_vs_origin: Estimate  # sigmoid(strength): the expected win rate against the origin
    rank: int  # 1 = strongest, by the point estimate


@dataclass(frozen=True)
class Ranking(Result):
    """A Bradley-Terry ranking over every judged item of every pair of one judge (three or more models)."""

    origin: str  # the model of strength 0: the first model of the first pair
    models: dict[str, RankedModel]


@dataclass(frozen=True)
class Ratings(Result):
    """A grading judge's 1-10 ratings of one checkpoint's answers."""

    score: Estimate  # mean rating, unparseable ratings left out, bootstrap
    unparseable: int  # ratings that could not be read
    n: int  # answers rated
    per_category: dict[str, Estimate]  # MT-Bench category -> mean rating


@dataclass(frozen=True)
class MTBenchMetrics(Result):
    """Everything ``sami eval mtbench`` computes (``sami.eval.mtbench.statistics.mtbench_metrics``)."""

    answers: dict[str, AnswerStats]  # checkpoint -> its answers
    pairwise: dict[str, dict[str, PairResult]]  # pairwise judge -> "x vs y" -> the pair's numbers
    constitutions: str  # positive | sampled: the constitutions the questions were answered under
    judge_diagnostics: dict[str, JudgeDiagnostics]  # pairwise judge -> how it behaves
    ranking: dict[str, Ranking]  # pairwise judge -> its ranking, where three or more models met
    ratings: dict[str, dict[str, Ratings]]  # grading judge -> checkpoint -> its ratings


# ------------------------------------------------------------------------------------------ the other suites


@dataclass(frozen=True)
class GSM8KResult(Result):
    """One checkpoint's GSM8K attempts (``sami.eval.gsm8k.attempt_metrics``)."""

    problems: int  # problems with a greedy attempt
    extract: str  # the answer extraction rule
    greedy_accuracy: Estimate  # greedy answers equal to the gold answer, Wilson
    greedy_unextracted: Estimate  # greedy attempts with no answer found, Wilson
    sampled_problems: int | None = None  # problems with every sampled attempt (none when no samples)
    sample_unextracted: Estimate | None = None  # sampled attempts with no answer found, Wilson
    pass_at_k: dict[str, Estimate] | None = None  # "k" -> unbiased pass@k averaged over problems, Wilson
    maj_at_k: dict[str, Estimate] | None = None  # "k" -> majority vote of the first k attempts correct, Wilson


@dataclass(frozen=True)
class MIBlock(Result):
    """The held-out MI bound and its neighbours over a set of scored records (``sami.eval.mi``)."""

    mi_bound: Estimate  # the SAMI mutual-information lower bound, nats, bootstrap
    col_accuracy: Estimate  # records whose response is most likely under its own constitution (columns), Wilson
    row_accuracy: Estimate  # the same along rows, Wilson
    diag_logprob: Estimate  # mean log-prob per token of each response under its own constitution, bootstrap
    constitutions: list[int]  # the numbers of constitutions C per record
    upper_limit: list[float]  # log C for each: the bound cannot exceed it
    diag_logprob_change: Estimate | None = None  # paired change in diag_logprob from the origin checkpoint


@dataclass(frozen=True)
class MIResult(Result):
    """One checkpoint's MI bound, overall and per category."""

    overall: MIBlock
    per_category: dict[str, MIBlock]
    diag_logprob_origin: str | None = None  # the checkpoint the change is measured from (none for that one)


@dataclass(frozen=True)
class PrincipleAdherence(Result):
    """A principle's checker over answers written under the principle and under its antithesis."""

    checker: dict[str, Any]  # the checker's name and parameters
    pairs: int  # queries answered under both
    checker_pass_under_principle: Estimate  # Wilson
    checker_pass_under_antithesis: Estimate  # Wilson
    contrast: Estimate  # per query, pass under the principle minus under the antithesis, bootstrap
    antithesis_checker_pass_under_antithesis: Estimate | None = None  # where the antithesis has its own checker
    antithesis_checker_pass_under_principle: Estimate | None = None


@dataclass(frozen=True)
class AdherenceResult(Result):
    """One checkpoint's adherence (``sami.eval.adherence``)."""

    principles: dict[str, PrincipleAdherence]
    answers: int  # answers stored
    degenerate: Estimate  # share of empty, run-on or looping answers, Wilson


def stored(metrics: Result | dict | Any) -> Any:
    """A suite's metrics as ``metrics.json`` stores them: a record's ``to_dict``; per checkpoint where a suite
    computes one record per checkpoint; a plugin suite's mapping as it is."""
    if isinstance(metrics, Result):
        return metrics.to_dict()
    if not isinstance(metrics, dict):  # a plugin suite's list or number, stored as it is
        return metrics
    return {k: v.to_dict() if isinstance(v, Result) else v for k, v in metrics.items()}
