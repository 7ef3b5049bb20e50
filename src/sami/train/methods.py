"""The training methods, one entry each: what a method takes from a record, what trains it, and the line
``sami train`` prints for one of its steps.

A method's settings are its section of ``TrainConfig`` (the field named after it, ``sami.train.config``); a
method TRL trains has its recipe in ``sami.train.trl_recipes``, from which its entry here is made. ``sami.train.run``
dispatches over this table, the CLI's summary lines come from it, and ``sami experiment`` trains whichever
of its methods a study lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sami.core.errors import ConfigError
from sami.data.records import Record
from sami.train.config import TrainConfig
from sami.train.encoding import encode_records
from sami.train.runfolder import TrainResult
from sami.train.sami_loop import train_sami
from sami.train.trl_recipes import RECIPES
from sami.train.trl_runner import train_baseline

NAN = float("nan")


@dataclass(frozen=True)
class Method:
    """``examples(record, cfg, tokenizer)``: the token ids the method trains on from one record;
    ``train(cfg, resume=...)``: the trainer (the output folder already checked and locked);
    ``step_line(metrics)``: one step's headline numbers from its metrics.jsonl record."""

    name: str
    examples: Callable[[Record, TrainConfig, object], list]
    train: Callable[..., TrainResult]
    step_line: Callable[[dict], str]


def _sami_line(m: dict) -> str:
    return (
        f"SAMI loss {m['loss']:.4f}, MI bound {m['mi_bound']:.4f} nats, "
        f"row/col accuracy {m['row_accuracy']:.2f}/{m['col_accuracy']:.2f}, "
        f"diagonal log-prob {m.get('diag_logprob', NAN):.3f} per token"
    )


def _preference_line(name: str) -> Callable[[dict], str]:
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


def _trl(name: str, step_line: Callable[[dict], str]) -> Method:
    return Method(name, RECIPES[name].rows, train_baseline, step_line)


METHODS: dict[str, Method] = {
    "sami": Method(
        "sami", lambda record, cfg, tokenizer: encode_records([record], tokenizer, cfg), train_sami, _sami_line
    ),  # fmt: skip
    "sft": _trl("sft", _sft_line),
    "dpo": _trl("dpo", _preference_line("DPO")),
    "kto": _trl("kto", _kto_line),
    "orpo": _trl("orpo", _orpo_line),
    "simpo": _trl("simpo", _preference_line("SimPO")),
}


def method_entry(name: str) -> Method:
    """The entry of method ``name``; an unknown name is an error naming the known ones."""
    if name not in METHODS:
        raise ConfigError(f"unknown training method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]
