"""TRL's CPO (Contrastive Preference Optimization, Xu et al. 2024) as the training method ``cpo``.

    PYTHONPATH=examples/plugins sami --plugin cpo_method train --method cpo --data examples/example.jsonl

CPO trains on DPO's pairs (the positive response against the most flipped one): a preference loss on the
log-probability ratio of chosen over rejected, with no reference model, plus ``cpo_alpha`` times the NLL
of the chosen response. Its settings are ``sections.cpo`` (``-o sections.cpo.beta=0.2``).
"""

import math
from dataclasses import dataclass

from sami.train.methods import preference_line, register_trl_method
from sami.train.pairs import PROMPT_CONSTITUTIONS, REJECTED_CHOICES
from sami.train.registry import method_settings
from sami.train.trl_recipes import TrlRecipe, pair_rows, paired_trainer, sequence_length, trl_class


@dataclass
class CpoSettings:
    beta: float = 0.1  # scale of the log-probability ratio in the preference loss
    cpo_alpha: float = 1.0  # weight of the NLL term on the chosen response
    loss_type: str = "sigmoid"  # TRL's CPO loss: sigmoid | hinge | ipo
    prompt_constitution: str = "positive"  # positive | none, as dpo.prompt_constitution
    rejected: str = "most_flipped"  # most_flipped | each_other, as dpo.rejected

    def __post_init__(self) -> None:
        if not (0 < self.beta < math.inf and 0 <= self.cpo_alpha < math.inf):
            raise ValueError(f"beta must be positive and cpo_alpha non-negative, got {self.beta}, {self.cpo_alpha}")
        if self.loss_type not in ("sigmoid", "hinge", "ipo"):
            raise ValueError(f"loss_type must be sigmoid, hinge or ipo, got {self.loss_type!r}")
        if self.prompt_constitution not in PROMPT_CONSTITUTIONS:
            raise ValueError(
                f"prompt_constitution must be one of {PROMPT_CONSTITUTIONS}, got {self.prompt_constitution!r}"
            )
        if self.rejected not in REJECTED_CHOICES:
            raise ValueError(f"rejected must be one of {REJECTED_CHOICES}, got {self.rejected!r}")


def _settings(cfg) -> dict:
    s = method_settings(cfg)
    return dict(beta=s.beta, cpo_alpha=s.cpo_alpha, loss_type=s.loss_type, max_length=sequence_length(cfg))


CPO = TrlRecipe(
    config=trl_class("trl.experimental.cpo", "CPOConfig"),
    trainer=paired_trainer("trl.experimental.cpo", "CPOTrainer"),
    settings=_settings,
    rows=pair_rows,
)
register_trl_method("cpo", CpoSettings, CPO, preference_line("CPO"), "CPO", "CPO on pairs: preference loss + NLL")
