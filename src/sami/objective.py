"""The SAMI objective: a symmetric InfoNCE loss over a constitution x response log-prob matrix.

Source: Fränken et al. 2024, "Self-Supervised Alignment with Mutual Information" (arXiv 2404.14313),
section 2, and its multi-task follow-up (arXiv 2410.01704). See docs/PAPER_INDEX.md.

For one query, ``L[i, j]`` is the length-normalised log-likelihood of response ``j`` when the policy is
prompted with constitution ``i``. The row loss asks "which response is mine?" (softmax over j), the column
loss "which constitution produced me?" (softmax over i). ``log C - col_loss`` is the InfoNCE lower bound on
the conditional mutual information I(Y; C | X) in nats.
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


def sami_loss(
    logprobs: torch.Tensor,
    *,
    row_weight: float = 1.0,
    col_weight: float = 1.0,
    temperature: float = 1.0,
    constitution_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """SAMI loss of a (C, C) or (B, C, C) log-prob matrix; scalar, mean over the B queries.

    loss = (row_weight * row_loss + col_weight * col_loss) / (row_weight + col_weight), where
    row_loss = mean_i CE(softmax_j L[i, :] / T, i) and col_loss = mean_j CE(softmax_i L[:, j] / T, j).
    The paper's defaults (equal weights, T = 1, unweighted constitutions) give (row + col) / 2.

    ``constitution_weights`` (C,) or (B, C) weigh constitution i's row term and column term i; this is the
    principle weighting the multi-task paper proposes (e.g. up-weight the step-by-step constitution).
    The log-sum-exps run in float32 whatever the input dtype.
    """
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
    return loss.mean()


@torch.no_grad()
def sami_metrics(logprobs: torch.Tensor) -> dict[str, float]:
    """Plain-number diagnostics of a (C, C) or (B, C, C) matrix, at temperature 1, unweighted.

    - ``row_loss`` / ``col_loss``: the two cross-entropies of :func:`sami_loss`, mean over queries;
    - ``row_accuracy``: fraction of constitutions whose own response scores highest in their row;
    - ``col_accuracy``: fraction of responses whose own constitution scores highest in their column;
    - ``mi_bound``: log C - col_loss, the InfoNCE lower bound on I(Y; C | X) in nats (at most log C).
    """
    scores = _as_batch(logprobs).float()
    b, c, _ = scores.shape
    diag = torch.arange(c, device=scores.device)
    row = _weighted_ce(scores, None).mean()
    col = _weighted_ce(scores.transpose(1, 2), None).mean()
    return {
        "row_loss": row.item(),
        "col_loss": col.item(),
        "row_accuracy": (scores.argmax(dim=2) == diag).float().mean().item(),
        "col_accuracy": (scores.argmax(dim=1) == diag).float().mean().item(),
        "mi_bound": math.log(c) - col.item(),
    }
