"""The SAMI objective: a symmetric InfoNCE loss over a constitution x response log-prob matrix.

Source: Fränken et al. 2024, "Self-Supervised Alignment with Mutual Information" (arXiv 2404.14313),
section 2, and its multi-task follow-up (arXiv 2410.01704). See docs/PAPER_INDEX.md.

For one query, ``L[i, j]`` is the length-normalised log-likelihood of response ``j`` when the policy is
prompted with constitution ``i``. The row loss asks "which response is mine?" (softmax over j), the column
loss "which constitution produced me?" (softmax over i). ``log C - col_loss`` is the InfoNCE lower bound on
the conditional mutual information I(Y; C | X) in nats.

InfoNCE only compares likelihoods with each other: it is maximised just as well by pushing every entry of L
down, which on a small model turns answers into gibberish. Two optional anchors on the diagonal (each
response under its own constitution) counter that; they are this project's addition, not the papers'
(docs/PAPER_INDEX.md): the diagonal NLL (:func:`diagonal_nll`) and a penalty on the log-ratio to the
starting model (:func:`reference_penalty`). With both weights zero the loss is plain SAMI, bit for bit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _as_batch(logprobs: torch.Tensor) -> torch.Tensor:
    if logprobs.dim() == 2:
        logprobs = logprobs.unsqueeze(0)
    if logprobs.dim() != 3 or logprobs.shape[-1] != logprobs.shape[-2]:
        raise ValueError(f"expected a (C, C) or (B, C, C) tensor, got shape {tuple(logprobs.shape)}")
    if logprobs.shape[-1] < 2:
        raise ValueError("SAMI needs at least two constitutions per query (C >= 2)")
    return logprobs


def _weighted_ce(scores: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of each row of ``scores`` (B, C, C) against the diagonal, averaged per query.

    Returns (B,). ``weights`` (B, C) weigh the C rows of each query (normalised to sum to one).
    """
    b, c, _ = scores.shape
    target = torch.arange(c, device=scores.device).expand(b, c)
    ce = F.cross_entropy(scores.reshape(b * c, c), target.reshape(-1), reduction="none").view(b, c)
    if weights is None:
        return ce.mean(dim=-1)
    return (ce * weights).sum(dim=-1) / weights.sum(dim=-1)


def diagonal_nll(logprobs: torch.Tensor) -> torch.Tensor:
    """Mean NLL per token of each response under its own constitution: ``-mean_{b, i} L[b, i, i]``; scalar.

    ``L[i, i]`` is already a per-token mean, so this is the SFT loss of the diagonal responses with every
    response weighted equally (not every token). Its gradient is ``-1 / (B C)`` on each diagonal entry and
    0 elsewhere: it raises the matched likelihoods without comparing them with anything. Float32.
    """
    return -torch.diagonal(_as_batch(logprobs).float(), dim1=1, dim2=2).mean()


def _as_diagonal(ref_logprobs: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    b, c, _ = batch.shape
    ref = ref_logprobs.to(batch.device, torch.float32)
    if ref.dim() == 1:
        ref = ref.unsqueeze(0)
    if ref.shape != (b, c):
        raise ValueError(f"ref_logprobs must be (C,) or (B, C) = ({b}, {c}), got {tuple(ref_logprobs.shape)}")
    return ref


def reference_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Squared log-ratio of each diagonal response to the reference model: ``mean_{b,i} r^2 / 2``; scalar.

    ``r[b, i] = L[b, i, i] - ref_logprobs[b, i]``, the per-token mean log-ratio log pi / pi_ref of response
    i under constitution i, with ``ref_logprobs`` (C,) or (B, C) the same quantity under the starting
    model (a constant: no gradient flows into it). ``r^2 / 2`` is the "k2" approximation of a KL divergence
    (Schulman 2020, "Approximating KL divergence"): 0 with zero gradient at the start, gradient ``r / (B C)``
    on each diagonal entry, so it pulls back in either direction in proportion to the drift. It is used on
    the teacher's responses rather than on samples of the policy, where the unbiased KL estimators do not
    apply, and on the per-response mean (the matrix holds no per-token values), so it bounds how far each
    response's average likelihood moves, not each token's. Float32.
    """
    batch = _as_batch(logprobs).float()
    ratio = torch.diagonal(batch, dim1=1, dim2=2) - _as_diagonal(ref_logprobs, batch).detach()  # (B, C)
    return 0.5 * ratio.square().mean()


def sami_loss(
    logprobs: torch.Tensor,
    *,
    row_weight: float = 1.0,
    col_weight: float = 1.0,
    temperature: float = 1.0,
    constitution_weights: torch.Tensor | None = None,
    nll_weight: float = 0.0,
    ref_weight: float = 0.0,
    ref_logprobs: torch.Tensor | None = None,
) -> torch.Tensor:
    """SAMI loss of a (C, C) or (B, C, C) log-prob matrix; scalar, mean over the B queries.

    loss = (row_weight * row_loss + col_weight * col_loss) / (row_weight + col_weight), where
    row_loss = mean_i CE(softmax_j L[i, :] / T, i) and col_loss = mean_j CE(softmax_i L[:, j] / T, j).
    The paper's defaults (equal weights, T = 1, unweighted constitutions) give (row + col) / 2.

    ``constitution_weights`` (C,) or (B, C) weigh constitution i's row term and column term i; this is the
    principle weighting the multi-task paper proposes (e.g. up-weight the step-by-step constitution).
    The log-sum-exps run in float32 whatever the input dtype.

    Anchors (this project's addition; they see the raw L, not L / T, and no constitution weights):
    ``+ nll_weight * diagonal_nll(L)`` and ``+ ref_weight * reference_penalty(L, ref_logprobs)``, where
    ``ref_logprobs`` (C,) or (B, C) are the starting model's diagonal log-probs (needed when ref_weight > 0).
    A zero weight adds nothing at all, so both zero give plain SAMI exactly, gradients included.
    """
    if nll_weight < 0 or ref_weight < 0:
        raise ValueError(f"nll_weight and ref_weight must be non-negative, got {nll_weight} and {ref_weight}")
    if ref_weight > 0 and ref_logprobs is None:
        raise ValueError("ref_weight > 0 needs ref_logprobs, the reference model's diagonal log-probs")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if row_weight < 0 or col_weight < 0 or row_weight + col_weight == 0:
        raise ValueError("row_weight and col_weight must be non-negative and not both zero")
    scores = _as_batch(logprobs).float() / temperature  # (B, C, C)
    weights = None
    if constitution_weights is not None:
        weights = constitution_weights.to(scores.device, torch.float32)
        weights = weights.expand(scores.shape[0], scores.shape[1])
        if (weights < 0).any() or (weights.sum(dim=-1) == 0).any():
            raise ValueError("constitution_weights must be non-negative with a positive sum per query")
    row = _weighted_ce(scores, weights)  # rows: softmax over responses j
    col = _weighted_ce(scores.transpose(1, 2), weights)  # columns: softmax over constitutions i
    loss = (row_weight * row + col_weight * col) / (row_weight + col_weight)
    loss = loss.mean()
    if nll_weight > 0:
        loss = loss + nll_weight * diagonal_nll(logprobs)
    if ref_weight > 0:
        loss = loss + ref_weight * reference_penalty(logprobs, ref_logprobs)
    return loss


@torch.no_grad()
def sami_metrics(logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None = None) -> dict[str, float]:
    """Plain-number diagnostics of a (C, C) or (B, C, C) matrix, at temperature 1, unweighted.

    - ``row_loss`` / ``col_loss``: the two cross-entropies of :func:`sami_loss`, mean over queries;
    - ``row_accuracy``: fraction of constitutions whose own response scores highest in their row;
    - ``col_accuracy``: fraction of responses whose own constitution scores highest in their column;
    - ``mi_bound``: log C - col_loss, the InfoNCE lower bound on I(Y; C | X) in nats (at most log C);
    - ``diag_logprob``: mean_{b, i} L[b, i, i], the mean per-token log-prob of each response under its own
      constitution (fluency: InfoNCE can rise while this collapses);

    and with ``ref_logprobs`` (the reference's diagonal, (C,) or (B, C)):

    - ``ref_log_ratio``: mean_{b, i} (L[b, i, i] - ref[b, i]), signed, nats per token;
    - ``ref_penalty``: :func:`reference_penalty`.
    """
    scores = _as_batch(logprobs).float()
    b, c, _ = scores.shape
    diag = torch.arange(c, device=scores.device)
    row = _weighted_ce(scores, None).mean()
    col = _weighted_ce(scores.transpose(1, 2), None).mean()
    out = {
        "row_loss": row.item(),
        "col_loss": col.item(),
        "row_accuracy": (scores.argmax(dim=2) == diag).float().mean().item(),
        "col_accuracy": (scores.argmax(dim=1) == diag).float().mean().item(),
        "mi_bound": math.log(c) - col.item(),
        "diag_logprob": -diagonal_nll(scores).item(),
    }
    if ref_logprobs is not None:
        ratio = torch.diagonal(scores, dim1=1, dim2=2) - _as_diagonal(ref_logprobs, scores)
        out["ref_log_ratio"] = ratio.mean().item()
        out["ref_penalty"] = reference_penalty(scores, ref_logprobs).item()
    return out
