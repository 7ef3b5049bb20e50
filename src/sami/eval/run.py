"""Evaluation suites as data: one ``Suite`` entry per suite in ``SUITES`` (``register_suite``).

An entry names what the suite does: ``run`` generates/judges what is missing and computes the metrics from
the stored files; ``recompute`` only computes them (nothing is generated or judged; the built-in suites return
the typed records of ``sami.eval.results``, a plugin's suite may return a plain mapping: ``compute`` returns
either as ``metrics.json`` stores it); ``show`` prints them;
``section`` is its config dataclass; ``options`` are its ``sami eval SUITE`` command-line options, each
naming the config key it sets; ``report`` gives the Markdown lines of its section of an experiment's report
from its metrics (None: a table of its numbers per model, ``sami.study.report.plugin_section``). ``run``,
``compute`` and ``show`` below dispatch through the entry.

The four built-in suites keep their settings in ``EvalConfig``'s own sections (``mtbench:``, ``gsm8k:``, ...);
a suite a plugin adds keeps them under ``sections.<suite>:``, read with ``settings(cfg, suite)``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sami.backends.base import IMPORTED
from sami.core.config import ConfigError, from_dict, save_yaml
from sami.core.errors import InputMissing, PluginError
from sami.core.layout import CONFIG
from sami.core.registry import Registry
from sami.eval.adherence import adherence_metrics, print_adherence, run_adherence
from sami.eval.config import (
    PROTOCOLS,
    AdherenceConfig,
    EvalConfig,
    GSM8KConfig,
    MIConfig,
    MTBenchConfig,
)
from sami.eval.gsm8k import gsm8k_metrics, print_gsm8k, run_gsm8k
from sami.eval.gsm8k_data import EXTRACT_MODES, PROMPTS
from sami.eval.judges import JUDGES, VERDICT_MODES
from sami.eval.mi import mi_metrics, print_mi, run_mi
from sami.eval.mtbench import run_mtbench
from sami.eval.mtbench.printing import print_mtbench
from sami.eval.mtbench.statistics import mtbench_metrics
from sami.eval.results import Result, stored
from sami.eval.store import check_bindings, held_as_found
from sami.models.loading import content_key


@dataclass(frozen=True)
class Option:
    """One option of ``sami eval SUITE``: ``flag`` (``--source``), the dotted config ``key`` its value sets,
    argparse's ``type`` and ``choices`` (callables, like ``help`` may be, so that what plugins register
    later is listed), and ``apply`` when one key is not enough (value -> ``[(key, value), ...]``). An option
    ``renamed_to`` another flag is left out of ``--help``, and using it is a one-line error naming the new flag."""

    flag: str
    key: str | None
    help: str | Callable[[], str]
    type: Callable[[str], Any] = str
    choices: Callable[[], tuple] | None = None
    apply: Callable[[Any], list[tuple[str, Any]]] | None = None
    renamed_to: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def help_text(self) -> str:
        if self.renamed_to:
            return argparse.SUPPRESS
        return self.help() if callable(self.help) else self.help

    def settings(self, value: Any) -> list[tuple[str, Any]]:
        if self.renamed_to:
            raise ConfigError(f"{self.flag} was renamed to {self.renamed_to}")
        return self.apply(value) if self.apply else [(self.key, value)]


@dataclass(frozen=True)
class Suite:
    """One evaluation suite (see the module docstring)."""

    name: str
    run: Callable[[EvalConfig], dict]
    recompute: Callable[[EvalConfig], Result | dict]
    show: Callable[[dict], None]
    section: type
    help: str
    options: tuple[Option, ...] = ()
    report: Callable[[dict], list[str]] | None = None


SUITES: Registry[Suite] = Registry("evaluation suite")


def register_suite(suite: Suite) -> Suite:
    """Make ``suite`` available to ``sami eval`` and ``run``/``compute``/``show``."""
    if not dataclasses.is_dataclass(suite.section):
        raise PluginError(f"evaluation suite {suite.name!r}: section must be a config dataclass")
    return SUITES.register(suite.name, suite)


def _entry(suite: str) -> Suite:
    return SUITES.lookup(suite)


def _own_section(suite: str) -> bool:
    return suite in {f.name for f in dataclasses.fields(EvalConfig)}


def is_built_in(suite: str) -> bool:
    """Whether ``suite`` keeps its settings in ``EvalConfig``'s own field (the four original suites)."""
    return _own_section(suite)


def settings(cfg: EvalConfig, suite: str):
    """The suite's section of ``cfg``: its own field for a built-in suite, else ``sections.<suite>`` parsed
    into the entry's dataclass (defaults when absent)."""
    if _own_section(suite):
        return getattr(cfg, suite)
    return from_dict(_entry(suite).section, cfg.sections.get(suite), source=f"sections.{suite}")


def _check_sections(cfg: EvalConfig) -> None:
    for name in cfg.sections:
        if name not in SUITES or _own_section(name):
            added = [s for s in SUITES if not _own_section(s)]
            raise ConfigError(f"sections.{name}: not a suite added by a plugin; those are {added}")
        settings(cfg, name)


def _binding_key(model: str, cfg: EvalConfig) -> str:
    """What an eval name is bound to: its model's content key; for answers ``sami eval import`` read, no model
    exists, so the file they were read from, as named."""
    return model if model.startswith(IMPORTED) else content_key(model, cfg.backend.revision)


def run(suite: str, cfg: EvalConfig) -> dict:
    """Generate and judge whatever is missing, then compute metrics from the stored files."""
    entry = _entry(suite)
    _check_sections(cfg)
    checkpoints = cfg.checkpoints()  # names checked before anything is loaded
    folder = Path(cfg.output_dir) / suite
    for parent in (folder, *folder.parents):
        if parent.is_file():
            raise ConfigError(f"output_dir: {parent} is a file; expected a folder (or a path that does not exist)")
    bindings = {name: {"model": model, "key": _binding_key(model, cfg)} for name, model in checkpoints}
    with held_as_found(folder, what=f"this {suite} evaluation"):
        check_bindings(folder, bindings)
        save_yaml(cfg, folder / CONFIG)
        return stored(entry.run(cfg))


def compute(suite: str, cfg: EvalConfig) -> dict:
    """Metrics from the stored files only."""
    entry = _entry(suite)
    _check_sections(cfg)
    if not (Path(cfg.output_dir) / suite).is_dir():
        raise InputMissing(f"no stored {suite} results under {cfg.output_dir}")
    return stored(entry.recompute(cfg))


def show(suite: str, metrics: dict) -> None:
    _entry(suite).show(metrics)


def _limit(suite: str) -> Option:
    return Option("--limit", f"{suite}.limit", "evaluate only the first N problems, records or queries", int)


def _judge_url(url: str) -> list[tuple[str, Any]]:
    return [("judge.base_url", url), ("judge.kind", "openai")]


register_suite(
    Suite(
        "mtbench",
        run_mtbench,
        mtbench_metrics,
        print_mtbench,
        MTBenchConfig,
        "MT-Bench answers, judged pairwise or graded 1-10 by the judges of mtbench.judges (--judges)",
        (
            Option("--protocol", "mtbench.protocol", "answer protocol (default paper)", choices=lambda: PROTOCOLS),
            Option(
                "--judges",
                None,
                lambda: (
                    "comma-separated, of: "
                    + "; ".join(f"{j.name} ({j.help})" if j.help else j.name for j in JUDGES.values())
                ),
                apply=lambda text: [("mtbench.judges", text.split(","))],
            ),
            Option(
                "--verdict",
                "mtbench.verdict",
                "pairwise verdicts from the verdict letters' probabilities or from generated text (default auto)",
                choices=lambda: VERDICT_MODES,
            ),
            Option("--judge", "judge.model", "judge model: alias, hub id, folder, or the endpoint's model name"),
            Option(
                "--judge-url",
                None,
                "OpenAI-compatible endpoint of the judge (sets judge.kind=openai)",
                apply=_judge_url,
            ),
            Option("--against", "mtbench.against", "pair every other checkpoint with this one (default: every pair)"),
            Option("--baseline", None, "", renamed_to="--against"),
            Option("--per-category", "mtbench.per_category", "questions per category (default all)", int),
        ),
    )
)
register_suite(
    Suite(
        "gsm8k",
        run_gsm8k,
        gsm8k_metrics,
        print_gsm8k,
        GSM8KConfig,
        "GSM8K accuracy: one greedy and n sampled attempts per problem; pass@k, maj@k",
        (
            _limit("gsm8k"),
            Option(
                "--source",
                "gsm8k.source",
                "gsm_symbolic (default), reasoning_gym:NAME, a GSM8K JSONL file or folder, or openai/gsm8k",
            ),
            Option("--split", "gsm8k.split", "test (default) or train"),
            Option("--samples", "gsm8k.samples", "sampled attempts per problem besides the greedy one", int),
            Option("--prompt", "gsm8k.prompt", "prompt version", choices=lambda: tuple(PROMPTS)),
            Option("--extract", "gsm8k.extract", "answer extraction rule", choices=lambda: EXTRACT_MODES),
        ),
    )
)
register_suite(
    Suite(
        "mi",
        run_mi,
        mi_metrics,
        print_mi,
        MIConfig,
        "the SAMI mutual-information lower bound on held-out records",
        (_limit("mi"), Option("--data", "mi.data", "held-out records (docs/DATA.md)")),
    )
)
register_suite(
    Suite(
        "adherence",
        run_adherence,
        adherence_metrics,
        print_adherence,
        AdherenceConfig,
        "judge-free pass rates of the verifiable principles' checkers, principle vs antithesis",
        (
            _limit("adherence"),
            Option("--queries", "adherence.queries", "mtbench (default) or a JSONL file with a 'query' field per line"),
        ),
    )
)
