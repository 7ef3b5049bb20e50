"""The reference of anchored SAMI: the starting model's diagonal log-probs L_ref[i, i].

``sami.ref_weight`` penalises each diagonal response's drift from the model training started from
(``sami.core.objective.reference_penalty``). As with DPO's reference, LoRA needs no second model (the same
network with its adapters disabled) and full fine-tuning computes the reference once before training and
keeps C numbers per query. See docs/DESIGN.md, "Anchored SAMI and the reference".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from sami.core.logprobs import batch_logprob_matrices
from sami.core.tokens import QueryTokens
from sami.train.config import TrainConfig

Reference = Callable[[list[QueryTokens]], torch.Tensor]  # B queries of one C -> (B, C) diagonal log-probs


def diagonals(model, cfg: TrainConfig, group: list[QueryTokens], pad_id: int) -> torch.Tensor:
    """(B, C) diagonal log-probs L[i, i] of ``model`` as it is now: no gradient, eval mode (no dropout)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mats = batch_logprob_matrices(model, group, layout=cfg.sami.layout, pad_token_id=pad_id)
    finally:
        model.train(was_training)
    return torch.diagonal(mats, dim1=1, dim2=2)


def lora_reference(model, peft_model, cfg: TrainConfig, pad_id: int) -> Reference:
    """The reference of a LoRA run: the same network with its adapters disabled, evaluated on demand.

    ``model`` is what the loop calls (possibly DDP-wrapped), ``peft_model`` the PeftModel inside it. Adapters
    start at zero (LoRA's B matrix), so at step 1 the reference equals the policy and the anchor is 0.
    """

    def reference(group: list[QueryTokens]) -> torch.Tensor:
        with peft_model.disable_adapter():
            return diagonals(model, cfg, group, pad_id)

    return reference


def precomputed_reference(
    model, cfg: TrainConfig, queries: Sequence[QueryTokens], pad_id: int, agree: Callable[[int], int] | None = None
) -> Reference:
    """The reference of a full fine-tuning run: ``model``'s diagonal log-probs of ``queries``, computed now.

    Called before the first step (and, on resume, before the checkpoint is loaded), so ``model`` is the
    starting model; as DPO does with precomputed reference log-probs, no second copy stays in memory, only
    C numbers per query. Run it under the autocast the training steps use, so that at step 1 the reference
    equals the policy up to batching order. ``agree`` maps this process's number of forward passes to the
    number every process makes (a sharded model gathers its weights in each pass, from all processes); the
    extra passes repeat the last chunk.
    """
    table: dict[QueryTokens, torch.Tensor] = {}
    by_c: dict[int, list[QueryTokens]] = {}
    for q in dict.fromkeys(queries):  # identical records score identically
        by_c.setdefault(q.num_constitutions, []).append(q)
    chunks = [
        group[k : k + cfg.queries_per_device]
        for group in by_c.values()
        for k in range(0, len(group), cfg.queries_per_device)
    ]
    passes = agree(len(chunks)) if agree is not None else len(chunks)
    for chunk in chunks + chunks[-1:] * (passes - len(chunks)):
        table.update(zip(chunk, diagonals(model, cfg, chunk, pad_id), strict=True))

    def reference(group: list[QueryTokens]) -> torch.Tensor:
        return torch.stack([table[q] for q in group])

    return reference
