"""Configuration of ``sami train``: shared fields at the top, method-specific fields under the method."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sami.core.config import flatten, from_dict, to_dict
from sami.core.errors import ConfigError
from sami.core.logprobs import LAYOUTS
from sami.core.migrate import upgrade_config
from sami.data.templates import TEMPLATES
from sami.models.loading import ModelConfig
from sami.train.pairs import PROMPT_CONSTITUTIONS, REJECTED_CHOICES
from sami.train.registry import BUILT_IN_SECTIONS, METHODS, own_section

# The built-in methods, each with its section below; how each trains is its entry in sami.train.methods. The
# methods a run may name are those registered (sami.train.registry.METHODS), plugins' included.
TRAIN_METHODS: tuple[str, ...] = BUILT_IN_SECTIONS
# TRL 1.16's DPOConfig.loss_type names this config can run (several are summed). Not exo_pair: it needs label
# smoothing, which this config does not set.
DPO_LOSS_TYPES: tuple[str, ...] = (
    "sigmoid",
    "hinge",
    "ipo",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)
SCHEDULERS: tuple[str, ...] = ("constant", "constant_with_warmup", "linear", "cosine")
PRECISIONS: tuple[str, ...] = ("auto", "no", "bf16", "fp16")
SHARDINGS: tuple[str, ...] = ("none", "fsdp")  # sami.train.sharding


def in_range(value: float, low: float, strict: bool) -> bool:
    """``value`` is finite and above ``low`` (``strict``) or at least ``low``."""
    return math.isfinite(value) and (value > low if strict else value >= low)


@dataclass
class OptimConfig:
    """AdamW and its schedule, shared by every method."""

    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    scheduler: str = "cosine"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0  # 0 disables clipping; the multi-task paper used 0.4

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        for name, low, strict in (
            ("lr", 0, True),
            ("eps", 0, True),
            ("weight_decay", 0, False),
            ("max_grad_norm", 0, False),
        ):
            if not in_range(getattr(self, name), low, strict):
                kind = "positive" if strict else "non-negative"
                raise ValueError(f"optim.{name} must be a {kind} finite number, got {getattr(self, name)!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be non-negative, got {self.warmup_steps!r}")


@dataclass
class SamiConfig:
    """SAMI objective and how its matrix is computed (docs/PAPER_INDEX.md; defaults are the paper's)."""

    layout: str = "shared"  # of the log-prob matrix: shared | naive (the original C*C rows, kept as reference)
    row_weight: float = 1.0
    col_weight: float = 1.0
    temperature: float = 1.0
    constitution_weights: list[float] | None = None  # one weight per constitution index of a record
    # Anchors against collapse (not in the papers; docs/PAPER_INDEX.md), both 0: plain SAMI exactly.
    nll_weight: float = 0.0  # + nll_weight * mean NLL per token of the diagonal responses, -mean_i L[i, i]
    # + ref_weight * mean_i (L[i, i] - L_ref[i, i])^2 / 2 against the starting model: with LoRA the same
    # network with adapters disabled, with full fine-tuning diagonals computed once before training
    ref_weight: float = 0.0
    # Warn once when diag_logprob (mean_i L[i, i]), averaged over the latest 8 steps, falls this many nats per
    # token below its average over the first 8 steps; 0 or null: no warning
    fluency_margin: float | None = 0.5

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"sami.layout must be one of {LAYOUTS}, got {self.layout!r}")
        # the objective checks these too (sami.core.objective.sami_loss), but only after the model has loaded
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"sami.temperature must be a positive number, got {self.temperature!r}")
        weights = (self.row_weight, self.col_weight)
        if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) == 0:
            raise ValueError(f"sami.row_weight and sami.col_weight must be non-negative and not both 0, got {weights}")
        if self.constitution_weights is not None and not all(in_range(w, 0, False) for w in self.constitution_weights):
            raise ValueError(
                f"sami.constitution_weights must be non-negative finite numbers, got {self.constitution_weights}"
            )
        for name in ("nll_weight", "ref_weight", "fluency_margin"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"sami.{name} must be a non-negative number, got {value!r}")


@dataclass
class SftConfig:
    """SFT baseline (TRL's SFTTrainer): the positive response after the prompt, loss on the response only."""

    prompt_constitution: str = "positive"  # positive | none: the prompt carries the positive constitution or none

    def __post_init__(self) -> None:
        if self.prompt_constitution not in PROMPT_CONSTITUTIONS:
            raise ValueError(f"prompt_constitution: one of {PROMPT_CONSTITUTIONS}, not {self.prompt_constitution!r}")


@dataclass
class DpoConfig:
    """DPO baseline (TRL's DPOTrainer) on pairs made from each record (docs/DATA.md, "SFT and DPO examples").

    With LoRA the reference is the same network with its adapters disabled. With full fine-tuning the
    reference log-probs are computed once before training (``precompute_ref_logps``), so no second model
    stays in memory; ``false`` keeps a frozen copy of the starting model instead.
    """

    beta: float = 0.1
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"])  # TRL's names; several are summed
    prompt_constitution: str = "positive"  # positive | none
    rejected: str = "most_flipped"  # most_flipped: one pair per record | each_other: C - 1 pairs per record
    precompute_ref_logps: bool = True  # full fine-tuning only; LoRA never needs a second model

    def __post_init__(self) -> None:
        if self.prompt_constitution not in PROMPT_CONSTITUTIONS:
            raise ValueError(f"prompt_constitution: one of {PROMPT_CONSTITUTIONS}, not {self.prompt_constitution!r}")
        if self.rejected not in REJECTED_CHOICES:
            raise ValueError(f"rejected must be one of {REJECTED_CHOICES}, got {self.rejected!r}")
        if not in_range(self.beta, 0, True):
            raise ValueError(f"dpo.beta must be a positive finite number, got {self.beta!r}")
        if not self.loss_type:
            raise ValueError("dpo.loss_type must be a non-empty list")
        unknown = [t for t in self.loss_type if t not in DPO_LOSS_TYPES]
        if unknown:
            raise ValueError(f"dpo.loss_type: {unknown} not among TRL's DPO losses {DPO_LOSS_TYPES}")


def _check_pairs_section(name: str, section) -> None:
    if section.prompt_constitution not in PROMPT_CONSTITUTIONS:
        raise ValueError(
            f"{name}.prompt_constitution: one of {PROMPT_CONSTITUTIONS}, not {section.prompt_constitution!r}"
        )
    if section.rejected not in REJECTED_CHOICES:
        raise ValueError(f"{name}.rejected must be one of {REJECTED_CHOICES}, got {section.rejected!r}")
    if not (math.isfinite(section.beta) and section.beta > 0):
        raise ValueError(f"{name}.beta must be a positive number, got {section.beta!r}")


@dataclass
class KtoConfig:
    """KTO (TRL's KTOTrainer) on unpaired examples from each record: the positive response desirable, the
    response under every other constitution undesirable (``sami.train.pairs``). The reference is handled as DPO's.

    KTO estimates its KL term from the other examples of a device batch, so ``queries_per_device`` (examples
    per device here) must be at least 2; TRL then reads examples in order, so they are shuffled once, seeded.
    """

    beta: float = 0.1
    desirable_weight: float = 1.0  # loss weight of desirable examples (lambda_D in the KTO paper)
    undesirable_weight: float = 1.0  # lambda_U; with C constitutions there are C - 1 undesirable per desirable
    prompt_constitution: str = "positive"  # positive | none
    precompute_ref_logps: bool = True  # full fine-tuning only; LoRA never needs a second model

    def __post_init__(self) -> None:
        if self.prompt_constitution not in PROMPT_CONSTITUTIONS:
            raise ValueError(
                f"kto.prompt_constitution: one of {PROMPT_CONSTITUTIONS}, not {self.prompt_constitution!r}"
            )
        for name in ("beta", "desirable_weight", "undesirable_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"kto.{name} must be a positive number, got {value!r}")


@dataclass
class OrpoConfig:
    """ORPO (TRL's experimental ORPOTrainer) on DPO's pairs: NLL of the chosen sequence minus ``beta`` times
    the log-sigmoid of the log odds ratio of chosen over rejected; no reference model."""

    beta: float = 0.1  # lambda in the ORPO paper
    prompt_constitution: str = "positive"  # positive | none
    rejected: str = "most_flipped"  # most_flipped | each_other, as dpo.rejected

    def __post_init__(self) -> None:
        _check_pairs_section("orpo", self)


@dataclass
class SimpoConfig:
    """SimPO (TRL's experimental CPOTrainer with ``loss_type: simpo`` and no NLL term) on DPO's pairs:
    -log sigmoid(beta * (mean log-prob per token of chosen - of rejected) - gamma); no reference model."""

    beta: float = 2.0  # the SimPO paper's setting
    gamma: float = 1.0  # target reward margin (TRL's simpo_gamma), within the range the SimPO paper tunes over
    prompt_constitution: str = "positive"  # positive | none
    rejected: str = "most_flipped"  # most_flipped | each_other, as dpo.rejected

    def __post_init__(self) -> None:
        _check_pairs_section("simpo", self)
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise ValueError(f"simpo.gamma must be a non-negative number, got {self.gamma!r}")


@dataclass
class TrainConfig:
    """Everything ``sami train`` needs, for every method. Steps are optimiser steps.

    Shared fields (optimiser, schedule, batch, epochs, precision, seed, model, template) mean the same for
    every method; the section named after the method holds what only that method has. One optimiser step
    consumes ``queries_per_device * gradient_accumulation * num_processes`` training examples: a query (its
    whole C x C block) for SAMI and SFT, a pair for DPO, ORPO and SimPO (one per query with ``rejected:
    most_flipped``), one response (C per query) for KTO.
    """

    method: str = "sami"
    data: str = ""
    output_dir: str = "runs/train"
    init_from: str | None = None  # a trained model or run folder of any method (a LoRA adapter is merged)
    seed: int = 0
    template: str = "paper-v1"
    shuffle_principles: bool = True  # training order of principles differs from the generation order
    max_prompt_tokens: int | None = 1024  # longer prompts keep their start and end (see encode_query)
    max_response_tokens: int | None = 1024  # counts the closing EOS; a cut response has no EOS
    queries_per_device: int = 1
    gradient_accumulation: int = 1
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    precision: str = "auto"  # auto: bf16 on a GPU that has it, else full precision
    # none | fsdp: SAMI's model, gradients and optimiser state sharded across the launched processes with torch's
    # FSDP2, on CPUs and GPUs alike (sami.train.sharding); the TRL methods shard through the accelerate config
    sharding: str = "none"
    save_every: int = 0  # checkpoint every N steps (0: only at the end)
    keep_checkpoints: int = 2
    log_every: int = 1
    report_to: list[str] = field(default_factory=list)  # tensorboard, wandb
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sami: SamiConfig = field(default_factory=SamiConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    dpo: DpoConfig = field(default_factory=DpoConfig)
    kto: KtoConfig = field(default_factory=KtoConfig)
    orpo: OrpoConfig = field(default_factory=OrpoConfig)
    simpo: SimpoConfig = field(default_factory=SimpoConfig)
    # settings of the methods plugins add, one mapping per method (``sections.cpo.beta``), every default written out
    sections: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS.names()}, got {self.method!r}")
        self._resolve_sections()
        if self.template not in TEMPLATES:
            raise ValueError(f"template must be one of {TEMPLATES}, got {self.template!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.queries_per_device < 1 or self.gradient_accumulation < 1 or self.log_every < 1:
            raise ValueError("queries_per_device, gradient_accumulation and log_every must be at least 1")
        if not math.isfinite(self.epochs) or (self.epochs <= 0 and not self.max_steps):
            raise ValueError(f"epochs must be a positive finite number (or set max_steps), got {self.epochs!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if self.keep_checkpoints < 1 or self.save_every < 0:
            raise ValueError("keep_checkpoints must be at least 1 and save_every non-negative")
        for name in ("max_prompt_tokens", "max_response_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2 (or null for no limit)")
        if self.method == "kto" and self.queries_per_device < 2:
            raise ValueError(
                "kto needs queries_per_device of at least 2: KTO estimates its KL term by pairing each example's "
                f"prompt with another example's response in the same device batch (got {self.queries_per_device})"
            )
        if self.sharding not in SHARDINGS:
            raise ConfigError(f"sharding must be one of {SHARDINGS}, got {self.sharding!r}")
        if self.sharding == "fsdp" and self.method != "sami":
            raise ConfigError(
                f"sharding: fsdp is the SAMI loop's; {self.method} shards through the Hugging Face Trainer's FSDP "
                "(accelerate launch --config_file configs/accelerate/fsdp-8gpu.yaml on GPUs): set sharding: none"
            )
        if self.precision == "fp16" and self.model.dtype == "float16":
            raise ValueError("precision fp16 needs float32 master weights: set model.dtype to auto or float32")

    def _resolve_sections(self) -> None:
        """Each plugin method's section parsed by its dataclass and written back with its defaults; the running
        method's section is written out even when the config gives none."""
        added = [name for name in METHODS if not own_section(name)]
        for name in self.sections:
            if name not in added:
                raise ValueError(f"sections.{name}: not a training method added by a plugin; those are {added}")
        if self.method in added:
            self.sections.setdefault(self.method, {})
        for name in list(self.sections):
            section = METHODS[name].section
            if section is not None:
                self.sections[name] = to_dict(from_dict(section, self.sections[name], source=f"sections.{name}"))


NOT_USED = "(not used)"


def method_view(config: dict) -> dict:
    """A resolved training config without the sections of the methods it did not train (built-in sections
    and ``sections.<method>`` of plugin methods alike; an empty ``sections`` is left out)."""
    method = config.get("method")
    view = {k: v for k, v in config.items() if k not in BUILT_IN_SECTIONS or k == method}
    sections = {k: v for k, v in (view.pop("sections", None) or {}).items() if k == method}
    return {**view, "sections": sections} if sections else view


def compare_configs(configs: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """Every setting that is not the same in all ``configs`` (name -> resolved config as a dict).

    Returns ``{"optim.lr": {name: value, ...}}``. Each config is first reduced to its own method's section
    (``method_view``), so a setting of one method shows as ``(not used)`` in runs of another; a run an older
    version wrote compares under today's names (``sami.core.migrate.upgrade_config``).
    """
    flat = {name: flatten(method_view(upgrade_config(TrainConfig, config))) for name, config in configs.items()}
    keys = sorted(set().union(*flat.values()))
    out = {}
    for key in keys:
        values = {name: f.get(key, NOT_USED) for name, f in flat.items()}
        if len({repr(v) for v in values.values()}) > 1:
            out[key] = values
    return out
