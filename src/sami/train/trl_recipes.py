"""The methods TRL trains for us, one recipe each: TRL's config and trainer, the method's own settings, and the
token-id rows it takes from a record.

SFT, DPO and KTO are TRL's stable trainers; ORPO and SimPO live in ``trl.experimental`` in TRL 1.16 (SimPO is
the CPO trainer with ``loss_type="simpo"`` and its NLL term off). Every trainer here receives token ids made
by ``sami.train.pairs`` (SAMI's own tokenisation), never text: each is a small subclass that skips TRL's own
tokenisation, which would tokenise prompt + completion as one string and append EOS as text. For DPO and
KTO that means overriding the private ``_prepare_dataset``; for ORPO and CPO the public ``tokenize_row``.
Both are why TRL is pinned to 1.16.x; the tests check the tokens and the step-1 losses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from sami.data.records import Record
from sami.train.config import TrainConfig
from sami.train.pairs import (
    PromptSettings,
    dpo_pairs,
    kto_examples,
    sft_example,
    tokenize_pair,
    tokenize_sft,
    tokenize_unpaired,
)
from sami.train.registry import method_settings


@dataclass(frozen=True)
class TrlRecipe:
    """How one method is trained by TRL.

    ``config`` and ``trainer`` return TRL's classes (imported when first needed); ``settings`` the method's own
    fields of TRL's config, from its section of ``TrainConfig``; ``rows`` the token-id rows one record gives;
    ``frozen_reference`` whether full fine-tuning keeps a frozen copy of the starting model as reference;
    ``shuffle`` whether rows are shuffled once (seeded) because TRL reads them in order.
    """

    config: Callable[[], type]
    trainer: Callable[[], type]
    settings: Callable[[TrainConfig], dict]
    rows: Callable[[Record, TrainConfig, object], list[dict]]
    frozen_reference: Callable[[TrainConfig], bool] = lambda cfg: False
    shuffle: bool = False


def prompt_settings(cfg: TrainConfig) -> PromptSettings:
    """How the prompt is written, from the shared fields and the method's own section."""
    return PromptSettings(
        template=cfg.template,
        seed=cfg.seed if cfg.shuffle_principles else None,
        prompt_constitution=method_settings(cfg).prompt_constitution,
    )


def _limits(cfg: TrainConfig) -> dict:
    return dict(
        template=cfg.template, max_prompt_tokens=cfg.max_prompt_tokens, max_response_tokens=cfg.max_response_tokens
    )


def _sft_rows(record: Record, cfg: TrainConfig, tokenizer) -> list[dict]:
    return [tokenize_sft(sft_example(record, prompt_settings(cfg), tokenizer), tokenizer, **_limits(cfg))]


def pair_rows(record: Record, cfg: TrainConfig, tokenizer) -> list[dict]:
    rejected = method_settings(cfg).rejected
    pairs = dpo_pairs(record, prompt_settings(cfg), rejected, tokenizer)
    return [tokenize_pair(pair, tokenizer, **_limits(cfg)) for pair in pairs]


def _kto_rows(record: Record, cfg: TrainConfig, tokenizer) -> list[dict]:
    examples = kto_examples(record, prompt_settings(cfg), tokenizer)
    return [tokenize_unpaired(e, tokenizer, **_limits(cfg)) for e in examples]


def sequence_length(cfg: TrainConfig) -> int | None:
    """TRL's ``max_length`` where a trainer insists on one: rows arrive cut by our own limits already."""
    if cfg.max_prompt_tokens is None or cfg.max_response_tokens is None:
        return None
    return cfg.max_prompt_tokens + cfg.max_response_tokens


def _with_reference(section) -> Callable[[TrainConfig], bool]:
    return lambda cfg: cfg.model.finetune == "full" and not getattr(cfg, section).precompute_ref_logps


# ------------------------------------------------------------------------------------------ trainers


@functools.cache
def _sft_trainer() -> type:
    from trl import SFTTrainer

    return SFTTrainer  # takes input_ids / completion_mask rows as they are


@functools.cache
def _dpo_trainer() -> type:
    from trl import DPOTrainer

    class TokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer fed ``prompt_ids``/``chosen_ids``/``rejected_ids``; its collator takes them directly."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    return TokenizedDPOTrainer


@functools.cache
def _kto_trainer() -> type:
    from accelerate.state import PartialState
    from trl import KTOTrainer

    class TokenizedKTOTrainer(KTOTrainer):
        """KTOTrainer fed ``prompt_ids``/``completion_ids``/``label``.

        Of TRL's preparation only the KL completions are kept: each example's prompt is paired with the
        previous example's response within its device batch (the last with the first), as TRL does, so the
        KL estimate compares responses that do not belong to their prompts.
        """

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if not self.calculate_KL:
                return dataset

            def mismatched(batch):
                return {"KL_completion_ids": batch["completion_ids"][-1:] + batch["completion_ids"][:-1]}

            with PartialState().main_process_first():
                return dataset.map(mismatched, batched=True, batch_size=args.per_device_train_batch_size)

    return TokenizedKTOTrainer


def _paired_row(feature: dict) -> dict:
    """ORPO's and CPO's tokenised pair: prompt, prompt + chosen, prompt + rejected, labels -100 on the prompt."""
    prompt = list(feature["prompt_ids"])
    row = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for which in ("chosen", "rejected"):
        response = list(feature[f"{which}_ids"])
        row[f"{which}_input_ids"] = prompt + response
        row[f"{which}_attention_mask"] = [1] * (len(prompt) + len(response))
        row[f"{which}_labels"] = [-100] * len(prompt) + response
    return row


def paired_trainer(module: str, name: str) -> Callable[[], type]:
    """A TRL pair trainer (ORPO, CPO) fed the DPO pairs' ids: ``tokenize_row`` is what its constructor maps
    over the data. The subclass is made once, on first use (``trl.experimental`` imports only then)."""

    @functools.cache
    def load() -> type:
        base = trl_class(module, name)()

        def tokenize_row(self, feature, model=None):
            return _paired_row(feature)

        return type(f"Tokenized{name}", (base,), {"tokenize_row": tokenize_row})

    return load


def trl_class(module: str, name: str) -> Callable[[], type]:
    def load() -> type:
        import importlib

        return getattr(importlib.import_module(module), name)

    return load


# ------------------------------------------------------------------------------------------ recipes


RECIPES: dict[str, TrlRecipe] = {
    "sft": TrlRecipe(
        config=trl_class("trl", "SFTConfig"),
        trainer=_sft_trainer,
        settings=lambda cfg: dict(completion_only_loss=True, packing=False),
        rows=_sft_rows,
    ),
    "dpo": TrlRecipe(
        config=trl_class("trl", "DPOConfig"),
        trainer=_dpo_trainer,
        settings=lambda cfg: dict(
            beta=cfg.dpo.beta,
            loss_type=list(cfg.dpo.loss_type),
            precompute_ref_log_probs=cfg.dpo.precompute_ref_logps and cfg.model.finetune == "full",
        ),
        rows=pair_rows,
        frozen_reference=_with_reference("dpo"),
    ),
    "kto": TrlRecipe(
        config=trl_class("trl", "KTOConfig"),
        trainer=_kto_trainer,
        settings=lambda cfg: dict(
            beta=cfg.kto.beta,
            desirable_weight=cfg.kto.desirable_weight,
            undesirable_weight=cfg.kto.undesirable_weight,
            precompute_ref_log_probs=cfg.kto.precompute_ref_logps and cfg.model.finetune == "full",
        ),
        rows=_kto_rows,
        frozen_reference=_with_reference("kto"),
        shuffle=True,
    ),
    "orpo": TrlRecipe(
        config=trl_class("trl.experimental.orpo", "ORPOConfig"),
        trainer=paired_trainer("trl.experimental.orpo", "ORPOTrainer"),
        settings=lambda cfg: dict(beta=cfg.orpo.beta, max_length=sequence_length(cfg)),
        rows=pair_rows,
    ),
    "simpo": TrlRecipe(
        config=trl_class("trl.experimental.cpo", "CPOConfig"),
        trainer=paired_trainer("trl.experimental.cpo", "CPOTrainer"),
        settings=lambda cfg: dict(
            loss_type="simpo",
            cpo_alpha=0.0,  # SimPO has no NLL term; TRL's CPO default (1.0) would add one
            beta=cfg.simpo.beta,
            simpo_gamma=cfg.simpo.gamma,
            max_length=sequence_length(cfg),
        ),
        rows=pair_rows,
    ),
}
