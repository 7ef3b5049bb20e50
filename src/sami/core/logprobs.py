"""The SAMI log-prob matrix: L[i, j] = mean log p(response_j | prompt_i) over response tokens.

Two layouts compute the same differentiable matrix:

- ``"naive"``: the C*C full sequences (prompt_i + response_j) as rows of one batch, full-vocabulary
  log-softmax over every position. This is how the original SAMI code does it; it stays as the reference.
- ``"shared"``: one row per constitution, ``[prompt_i | response_1 | ... | response_C]``, with a block
  attention mask so that response j sees prompt i and its own earlier tokens only, and position ids that
  restart after the prompt for every response. Each prompt is encoded once instead of C times, and the
  vocabulary projection runs only on the positions that predict response tokens.

The token ids come from ``sami.core.tokens`` (prompt and response tokenised apart, budgets, cuts); this module
only runs the model over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from sami.core.errors import ConfigError
from sami.core.tokens import QueryTokens, encode_query

Layout = Literal["shared", "naive"]
LAYOUTS: tuple[str, ...] = ("shared", "naive")


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _config(model):
    return getattr(getattr(model, "module", model), "config", None)  # DDP wraps the model in .module


def _attn_implementation(model) -> str:
    return getattr(_config(model), "_attn_implementation", None) or "sdpa"


def _pad_id(tokenizer_or_id) -> int:
    if isinstance(tokenizer_or_id, int):
        return tokenizer_or_id
    pad = tokenizer_or_id.pad_token_id
    return tokenizer_or_id.eos_token_id if pad is None else pad


def _naive(model, queries: Sequence[QueryTokens], pad_id: int, padding_side: str) -> torch.Tensor:
    """All C*C (prompt_i + response_j) sequences as rows; full log-softmax, as in the original code."""
    rows, starts = [], []
    for q in queries:
        for p in q.prompt_ids:
            for r in q.response_ids:
                rows.append(p + r)
                starts.append(len(p))
    length = max(len(r) for r in rows)
    n = len(rows)
    input_ids = torch.full((n, length), pad_id, dtype=torch.long)
    attention = torch.zeros((n, length), dtype=torch.long)
    response = torch.zeros((n, length), dtype=torch.bool)
    for k, (ids, start) in enumerate(zip(rows, starts, strict=True)):
        offset = length - len(ids) if padding_side == "left" else 0
        input_ids[k, offset : offset + len(ids)] = torch.tensor(ids)
        attention[k, offset : offset + len(ids)] = 1
        response[k, offset + start : offset + len(ids)] = True
    # Positions from the mask, so that left padding does not shift them.
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    device = _model_device(model)
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        position_ids=position_ids.to(device),
    ).logits  # (N, T, V)
    logp = torch.log_softmax(logits.float(), dim=-1)
    targets = input_ids[:, 1:].to(device)
    token_lp = logp[:, :-1].gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (N, T-1)
    mask = response[:, 1:].to(device)
    mean = (token_lp * mask).sum(-1) / mask.sum(-1)
    c = queries[0].num_constitutions
    return mean.view(len(queries), c, c)


def _sliding_window(model) -> int | None:
    config = _config(model)
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    return int(window)


def _block_mask(segment: torch.Tensor, eager: bool) -> torch.Tensor:
    """(R, 1, T, T) mask from segment ids (R, T): -1 padding, 0 prompt, j + 1 response j.

    A query position sees earlier prompt positions and earlier positions of its own response. Padding
    queries see themselves only, so no softmax row is empty. Built on ``segment``'s device.
    """
    t, device = segment.shape[1], segment.device
    causal = torch.ones(t, t, dtype=torch.bool, device=device).tril()
    key = segment[:, None, :]  # (R, 1, T)
    query = segment[:, :, None]  # (R, T, 1)
    allowed = causal & (key >= 0) & ((key == 0) | (key == query))
    allowed |= torch.eye(t, dtype=torch.bool, device=device)
    allowed = allowed.unsqueeze(1)
    if not eager:
        return allowed
    zero = torch.zeros((), dtype=torch.float32, device=device)
    return torch.where(allowed, zero, torch.finfo(torch.float32).min)


class _TokenLogProbs(torch.autograd.Function):
    """log softmax(logits[n, p])[t] for per-row (position p, target t) pairs, without a saved log-softmax.

    Autograd through ``log_softmax(logits)[...]`` keeps the full (N, K, V) log-softmax and, in the
    backward, zero-fills another full tensor for the indexing and a third for the softmax gradient. Here
    the backward writes the one dense gradient it needs, -softmax * (sum of incoming gradients per
    position), and adds the incoming gradients at the targets. Computed in float32.
    """

    @staticmethod
    def forward(ctx, logits, positions, targets):
        lse = torch.logsumexp(logits.float(), dim=-1)  # (N, K)
        rows = torch.arange(logits.shape[0], device=logits.device).unsqueeze(1).expand_as(positions)
        out = logits[rows, positions, targets].float() - lse.gather(1, positions)  # (N, T)
        ctx.save_for_backward(logits, lse, positions, targets)
        return out

    @staticmethod
    def backward(ctx, grad):  # grad: (N, T)
        logits, lse, positions, targets = ctx.saved_tensors
        per_position = grad.new_zeros(lse.shape).scatter_add_(1, positions, grad)  # (N, K)
        dense = (logits.float() - lse.unsqueeze(-1)).exp_().mul_(-per_position.unsqueeze(-1))
        rows = torch.arange(logits.shape[0], device=grad.device).unsqueeze(1).expand_as(positions)
        dense.index_put_((rows, positions, targets), grad, accumulate=True)
        return dense.to(logits.dtype), None, None


def token_logprobs(logits: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, T) float32 log-probabilities of ``targets[n, k]`` under ``logits[n, positions[n, k]]``.

    logits (N, K, V); positions and targets (N, T) integer tensors.
    """
    return _TokenLogProbs.apply(logits, positions, targets)


@dataclass
class _Packed:
    """The shared layout's rows: one per (query, constitution), a left-padded prompt then the query's C
    responses; ``gathers`` per query: (predictor index, target id, response index) per response token, and
    the responses' lengths."""

    input_ids: torch.Tensor  # (B*C, L)
    position_ids: torch.Tensor  # (B*C, L): restart after the prompt for every response
    segment: torch.Tensor  # (B*C, L): -1 padding, 0 prompt, j + 1 response j
    gathers: list[tuple[list[int], list[int], list[int], list[int]]]
    r_max: int  # the longest query's response tokens: logits are kept for the last r_max + 1 positions


def _pack(queries: Sequence[QueryTokens], pad_id: int) -> _Packed:
    c = queries[0].num_constitutions
    p_max = max(len(p) for q in queries for p in q.prompt_ids)
    r_max = max(sum(len(r) for r in q.response_ids) for q in queries)
    length = p_max + r_max
    n = len(queries) * c
    input_ids = torch.full((n, length), pad_id, dtype=torch.long)
    position_ids = torch.zeros((n, length), dtype=torch.long)
    segment = torch.full((n, length), -1, dtype=torch.long)
    gathers = []
    for b, q in enumerate(queries):
        for i, p in enumerate(q.prompt_ids):
            row = b * c + i
            input_ids[row, p_max - len(p) : p_max] = torch.tensor(p)
            position_ids[row, p_max - len(p) : p_max] = torch.arange(len(p))
            segment[row, p_max - len(p) : p_max] = 0
            offset = p_max
            for j, r in enumerate(q.response_ids):
                input_ids[row, offset : offset + len(r)] = torch.tensor(r)
                position_ids[row, offset : offset + len(r)] = len(p) + torch.arange(len(r))
                segment[row, offset : offset + len(r)] = j + 1
                offset += len(r)
        # Kept logits are positions p_max - 1 .. length - 1, index m = position - (p_max - 1). Token k of a
        # response at offset o is predicted by the last prompt token (m = 0) when k = 0, else by the token
        # before it (m = o + k).
        predictor, target, which = [], [], []
        offset = 0
        for j, r in enumerate(q.response_ids):
            predictor += [0] + [offset + k for k in range(1, len(r))]
            target += list(r)
            which += [j] * len(r)
            offset += len(r)
        gathers.append((predictor, target, which, [len(r) for r in q.response_ids]))
    return _Packed(input_ids, position_ids, segment, gathers, r_max)


def _check_window(model, position_ids: torch.Tensor) -> None:
    window = _sliding_window(model)
    if window is not None and int(position_ids.max()) >= window:
        # A custom 4D mask replaces the model's own, sliding window included; sequences within the
        # window are unaffected, longer ones would be scored wrongly.
        raise ConfigError(
            f"a prompt plus response reaches position {int(position_ids.max())}, past the model's sliding "
            f"window of {window}; the shared layout does not apply sliding windows: use layout='naive' "
            "(sami.layout: naive) or shorter max_prompt_tokens / max_response_tokens"
        )


def _gather(logits: torch.Tensor, gathers: list, c: int) -> torch.Tensor:
    """The (B, C, C) matrix from the kept logits: each response token's log-prob, averaged per response."""
    device, n = logits.device, logits.shape[0]
    # One call over all rows (slicing the logits per query would zero-fill a full copy in the backward);
    # rows of shorter queries are padded with (position 0, token 0) pairs that no matrix entry reads.
    t_max = max(len(g[0]) for g in gathers)
    positions = torch.zeros((n, t_max), dtype=torch.long)
    targets = torch.zeros((n, t_max), dtype=torch.long)
    for b, (predictor, target, _, _) in enumerate(gathers):
        positions[b * c : (b + 1) * c, : len(predictor)] = torch.tensor(predictor)
        targets[b * c : (b + 1) * c, : len(target)] = torch.tensor(target)
    token_lp = token_logprobs(logits, positions.to(device), targets.to(device))  # (B*C, t_max)
    matrices = []
    for b, (predictor, _, which, lengths) in enumerate(gathers):
        lp = token_lp[b * c : (b + 1) * c, : len(predictor)]  # (C, T_b)
        sums = lp.new_zeros(c, c).index_add(1, torch.tensor(which, device=device), lp)
        matrices.append(sums / torch.tensor(lengths, device=device, dtype=sums.dtype))
    return torch.stack(matrices)  # (B, C, C)


def _shared(model, queries: Sequence[QueryTokens], pad_id: int) -> torch.Tensor:
    """One packed row per (query, constitution) through the model once; the (B, C, C) matrix gathered from it."""
    packed = _pack(queries, pad_id)
    _check_window(model, packed.position_ids)
    device = _model_device(model)
    logits = model(
        input_ids=packed.input_ids.to(device),
        attention_mask=_block_mask(packed.segment.to(device), _attn_implementation(model) == "eager"),
        position_ids=packed.position_ids.to(device),
        logits_to_keep=packed.r_max + 1,
    ).logits  # (B*C, r_max + 1, V)
    return _gather(logits, packed.gathers, queries[0].num_constitutions)


def batch_logprob_matrices(
    model,
    queries: Sequence[QueryTokens],
    *,
    layout: Layout = "shared",
    pad_token_id: int = 0,
    padding_side: str = "right",
) -> torch.Tensor:
    """(B, C, C) float32 log-prob matrices for B queries with the same C, in one forward pass.

    ``layout`` is ``"shared"`` (one packed row per constitution) or ``"naive"`` (C*C full rows); see the
    module docstring. Both give the same matrix."""
    if not queries:
        raise ValueError("no queries given")
    sizes = {q.num_constitutions for q in queries}
    if len(sizes) != 1:
        raise ValueError(f"queries of one batch must have the same number of constitutions, got {sorted(sizes)}")
    if layout == "shared":
        return _shared(model, queries, pad_token_id)
    if layout == "naive":
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        return _naive(model, queries, pad_token_id, padding_side)
    raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")


def logprob_matrix(
    model,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    layout: Layout = "shared",
) -> torch.Tensor:
    """Differentiable (C, C) matrix for one query: L[i, j] = mean log p(responses[j] | prompts[i]).

    ``prompts[i]`` is the full prompt under constitution i (template applied); ``responses[j]`` is the text
    generated under constitution j. Mean over response tokens, EOS included; float32.
    """
    query = encode_query(tokenizer, prompts, responses)
    return batch_logprob_matrices(
        model,
        [query],
        layout=layout,
        pad_token_id=_pad_id(tokenizer),
        padding_side=getattr(tokenizer, "padding_side", "right") or "right",
    )[0]
