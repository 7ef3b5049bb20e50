"""The built-in training methods, each registered as a ``sami.train.registry.Method``: what it takes from a
record, what trains it, and the line ``sami train`` prints for one of its steps. A plugin adds a method through
the same call, ``register_method``, or ``register_trl_method`` for a method TRL trains
(``examples/plugins/cpo_method.py``).

A built-in method's settings are its section of ``TrainConfig`` (the field named after it, ``sami.train.config``);
a method TRL trains has its recipe in ``sami.train.trl_recipes``, from which its entry here is made.
``sami.train.run`` dispatches over the registry, the CLI's summary lines come from it, and ``sami experiment``
trains whichever of its methods a study lists.
"""

from __future__ import annotations

from collections.abc import Callable

from sami.train.config import DpoConfig, KtoConfig, OrpoConfig, SamiConfig, SftConfig, SimpoConfig
from sami.train.encoding import encode_records
from sami.train.registry import METHODS, Method, register_method
from sami.train.sami_loop import train_sami
from sami.train.trl_recipes import RECIPES, TrlRecipe
from sami.train.trl_runner import train_baseline

NAN = float("nan")


def _sami_line(m: dict) -> str:
    return (
        f"SAMI loss {m['loss']:.4f}, MI bound {m['mi_bound']:.4f} nats, "
        f"row/col accuracy {m['row_accuracy']:.2f}/{m['col_accuracy']:.2f}, "
        f"diagonal log-prob {m.get('diag_logprob', NAN):.3f} per token"
    )


def preference_line(name: str) -> Callable[[dict], str]:
    """The step line of a method trained on pairs, from the reward metrics TRL's pair trainers log."""

    def line(m: dict) -> str:
        return (
            f"{name} loss {m['loss']:.4f}, reward accuracy {m.get('rewards_accuracies', NAN):.2f}, "
            f"reward margin {m.get('rewards_margins', NAN):.4f}"
        )

    return line


def _sft_line(m: dict) -> str:
    return f"SFT loss {m['loss']:.4f}, token accuracy {m.get('mean_token_accuracy', NAN):.2f}"


def _kto_line(m: dict) -> str:
    return (
        f"KTO loss {m['loss']:.4f}, KL estimate {m.get('kl', NAN):.4f}, "
        f"reward chosen/rejected {m.get('rewards_chosen', NAN):.4f}/{m.get('rewards_rejected', NAN):.4f}"
    )


def _orpo_line(m: dict) -> str:
    return (
        f"ORPO loss {m['loss']:.4f}, NLL {m.get('nll_loss', NAN):.4f}, "
        f"log odds ratio {m.get('log_odds_ratio', NAN):.4f}, reward accuracy {m.get('rewards_accuracies', NAN):.2f}"
    )


def register_trl_method(
    name: str, section: type | None, recipe: TrlRecipe, step_line: Callable[[dict], str], label: str = "", help=""
) -> Method:
    """Register a method TRL trains: ``recipe`` gives TRL's config and trainer classes, the method's settings
    for TRL's config (from ``method_settings(cfg)``, its ``section``) and the rows it takes from a record."""
    return register_method(Method(name, section, recipe.rows, train_baseline, step_line, label, help, recipe))


register_method(
    Method(
        "sami",
        SamiConfig,
        lambda record, cfg, tokenizer: encode_records([record], tokenizer, cfg),
        train_sami,
        _sami_line,
        help="SAMI's InfoNCE over the C x C matrix of constitutions and responses",
    )
)
register_trl_method("sft", SftConfig, RECIPES["sft"], _sft_line, help="fine-tuning on the positive responses")
register_trl_method("dpo", DpoConfig, RECIPES["dpo"], preference_line("DPO"), help="DPO on pairs of responses")
register_trl_method("kto", KtoConfig, RECIPES["kto"], _kto_line, help="KTO on unpaired responses")
register_trl_method("orpo", OrpoConfig, RECIPES["orpo"], _orpo_line, help="ORPO on pairs, no reference")
register_trl_method(
    "simpo", SimpoConfig, RECIPES["simpo"], preference_line("SimPO"), "SimPO", "SimPO on pairs, no reference"
)


def method_entry(name: str) -> Method:
    """The entry of method ``name``; an unknown name is an error naming the known ones."""
    return METHODS.lookup(name)
