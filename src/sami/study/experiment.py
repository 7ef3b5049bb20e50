"""``sami experiment``: a whole study, from prompt pool to report, in one run directory.

Two studies, each optional, reproduce the multi-task SAMI paper's experiments (docs/PAPER_INDEX.md):

- ``mtbench`` (experiment 1): teacher generation over the category pool -> SFT of the student on the positive
  responses -> each other method of ``mtbench.methods`` (SAMI and DPO by default; KTO, ORPO, SimPO on
  request), all from the SFT checkpoint and on the same data -> MT-Bench answers and pairwise judging of every
  method against SAMI and against SFT (with the default methods: SAMI vs DPO, SAMI vs SFT and DPO vs SFT;
  principle-aware and principle-free) -> MI bound on held-out records and judge-free principle adherence for
  base and every method.
- ``math`` (experiment 2): generation under the step-by-step and LaTeX principles with the math filters ->
  SFT, SAMI (from the base) and SFT+SAMI -> GSM8K accuracy with one greedy attempt and n sampled attempts for
  base, SFT, SAMI and SFT+SAMI.

Layout::

    OUTPUT_DIR/config.yaml                       the resolved experiment config
    OUTPUT_DIR/<study>/data/                     train.jsonl, heldout.jsonl (+ .filtered.jsonl, .generate.yaml)
    OUTPUT_DIR/<study>/models/<method>/          sami train outputs (config.yaml, metrics.jsonl, model/)
    OUTPUT_DIR/<study>/eval/<suite>/             stored answers, verdicts, metrics (sami eval)
    OUTPUT_DIR/report/                           report.md, summary.json, figures/*.png

Every folder is one stage (``sami.study.stages``): a rerun skips finished stages, resumes an interrupted one, and
reruns a stage whose settings changed together with the stages that read it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sami.backends.base import BackendConfig
from sami.core.config import from_dict, load_yaml, parse_override, save_yaml, set_path, to_dict
from sami.core.errors import ConfigError
from sami.core.layout import CONFIG, MODEL, PAGE, REPORT, REPORT_DIR, SUMMARY
from sami.core.locks import hold
from sami.core.migrate import LAYOUT_VERSION, upgrade_summary, version_of
from sami.eval.config import AdherenceConfig, EvalConfig, GSM8KConfig, MIConfig, MTBenchConfig
from sami.generate.run import GenerateConfig
from sami.plugins import load_plugins
from sami.study.stages import MARKER, Stage, StageOutcome, read_marker, run_stages
from sami.train.config import TrainConfig, method_view
from sami.train.registry import METHODS

logger = logging.getLogger(__name__)

MTBENCH_METHODS = ("sft", "sami", "dpo")  # the default; sft and sami are always trained
MTBENCH_VERSUS = ("sami", "sft")  # every method is judged against these (mtbench.versus)
MATH_METHODS = ("sft", "sami", "sft+sami")


def plugin_suites(suites: dict[str, Any]) -> dict[str, Any]:
    """A study's ``suites:``: evaluation suites plugins add (``plugins:``), each run as a stage on the base model
    and every trained model of the study, with its settings (``sections.<suite>`` of its eval config) parsed by
    its dataclass and written out with every default; its metrics get a section of the report."""
    from sami.eval.run import SUITES, is_built_in

    out = {}
    for name, section in suites.items():
        if name not in SUITES or is_built_in(name):
            added = [s for s in SUITES if not is_built_in(s)]
            raise ValueError(f"suites.{name}: not a suite added by a plugin; those loaded are {added}")
        out[name] = to_dict(from_dict(SUITES[name].section, section or {}, source=f"suites.{name}"))
    return out


@dataclass
class MTBenchStudy:
    """Experiment 1. ``methods`` are trained on the same data, SFT from the base and every other from the SFT
    model; they must include ``sft`` and ``sami``, which every method is judged against. ``train`` is shared by
    all of them (the experiment sets method, data, output and starting point); ``overrides`` changes a setting
    for one method only, e.g. ``{dpo: {optim.lr: 5e-6}}``; every difference between the methods' resolved
    configs is printed in the report."""

    enabled: bool = True
    methods: list[str] = field(default_factory=lambda: list(MTBENCH_METHODS))
    queries: int = 16  # training queries asked of the teacher (before filtering)
    heldout: int = 8  # further queries, generated the same way, kept out of training for the MI bound
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    mtbench: MTBenchConfig = field(default_factory=MTBenchConfig)
    mi: bool = True
    adherence: AdherenceConfig | None = field(default_factory=AdherenceConfig)
    suites: dict[str, Any] = field(default_factory=dict)  # suites plugins add: name -> settings (plugin_suites)

    def __post_init__(self) -> None:
        if self.queries < 1 or self.heldout < 0:
            raise ValueError("queries must be at least 1 and heldout non-negative")
        self.suites = plugin_suites(self.suites)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"methods: {unknown} are not training methods; known: {METHODS.names()}")
        if len(set(self.methods)) != len(self.methods) or not set(MTBENCH_VERSUS) <= set(self.methods):
            raise ValueError(
                f"methods must name each method once and include {MTBENCH_VERSUS}, which every method is judged against"
            )
        unknown = sorted(set(self.overrides) - set(self.methods))
        if unknown:
            raise ValueError(f"overrides name methods {unknown}; the study trains {self.methods}")


@dataclass
class MathStudy:
    """Experiment 2: base, SFT, SAMI (from the base) and SFT+SAMI, evaluated on GSM8K-style problems."""

    enabled: bool = True
    queries: int = 16
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    gsm8k: GSM8KConfig = field(default_factory=GSM8KConfig)
    suites: dict[str, Any] = field(default_factory=dict)  # suites plugins add: name -> settings (plugin_suites)

    def __post_init__(self) -> None:
        if self.queries < 1:
            raise ValueError("queries must be at least 1")
        self.suites = plugin_suites(self.suites)
        unknown = sorted(set(self.overrides) - set(MATH_METHODS))
        if unknown:
            raise ValueError(f"overrides name methods {unknown}; the study trains {MATH_METHODS}")


@dataclass
class ExperimentConfig:
    """A whole study. ``backend`` is how the trained checkpoints generate during evaluation (its ``model``
    is replaced by each checkpoint); ``judge`` judges MT-Bench answers."""

    name: str = "experiment"
    output_dir: str = "runs/experiment"
    plugins: list[str] = field(default_factory=list)  # modules imported before the rest is read (sami.plugins)
    seed: int = 0
    backend: BackendConfig = field(default_factory=BackendConfig)
    judge: BackendConfig = field(default_factory=BackendConfig)
    mtbench: MTBenchStudy = field(default_factory=MTBenchStudy)
    math: MathStudy = field(default_factory=MathStudy)


def load_experiment_config(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    data = load_yaml(path)
    for text in overrides:
        set_path(data, *parse_override(text))
    load_plugins(data.get("plugins") or [])  # first: the config may name the judges, suites, backends they add
    source = f"{path} with -o overrides" if overrides else str(path)
    return from_dict(ExperimentConfig, data, source=source)


def _with_overrides(cfg: TrainConfig, overrides: dict[str, Any], where: str) -> TrainConfig:
    data = to_dict(cfg)
    for key, value in overrides.items():
        set_path(data, key, value)
    return from_dict(TrainConfig, data, source=where)


def train_config(study, root: Path, method: str, base_model: str, seed: int) -> TrainConfig:
    """The resolved config of one trained model of a study: shared settings, the method's overrides, and
    the chain (every method of experiment 1 but SFT, and SFT+SAMI, start from the study's SFT model)."""
    cfg = copy.deepcopy(study.train)
    cfg.method = "sami" if method == "sft+sami" else method
    cfg.data = str(root / "data" / "train.jsonl")
    cfg.output_dir = str(root / "models" / method)
    cfg.seed = seed
    cfg.model.name_or_path = base_model
    from_sft = method == "sft+sami" or (isinstance(study, MTBenchStudy) and method != "sft")
    cfg.init_from = str(root / "models" / "sft" / MODEL) if from_sft else None
    return _with_overrides(cfg, study.overrides.get(method, {}), f"{method} overrides")


def eval_config(cfg: ExperimentConfig, root: Path, models: list[str], **sections) -> EvalConfig:
    ev = EvalConfig(output_dir=str(root / "eval"), models=models, seed=cfg.seed, backend=cfg.backend, judge=cfg.judge)
    for key, value in sections.items():
        setattr(ev, key, value)
    return from_dict(EvalConfig, to_dict(ev))  # validated like a file would be


def generate_config(study, root: Path, seed: int) -> GenerateConfig:
    """The resolved generation config of a study's training data."""
    gen = copy.deepcopy(study.generate)
    gen.seed = seed
    gen.output = str(root / "data" / "train.jsonl")
    gen.num_queries, gen.skip_queries = study.queries, 0
    return gen


def _generate_stage(gen: GenerateConfig, root: Path, heldout: int) -> Stage:
    """Training records with ``gen``, then ``heldout`` further queries of the same pool into heldout.jsonl."""
    from sami.generate.run import generate

    held = copy.deepcopy(gen)
    held.output = str(root / "data" / "heldout.jsonl")
    held.num_queries, held.skip_queries = heldout, gen.num_queries

    def run(folder: Path) -> None:
        result = generate(gen)
        if result.written + result.already_done == 0:
            raise ConfigError(f"every generated training record was filtered out; see {result.rejected_path}")
        if heldout:
            generate(held)

    config = {"train": to_dict(gen), "heldout": to_dict(held) if heldout else None}
    return Stage(f"{root.name}/data", root / "data", config, run)


def _train_stage(cfg_train: TrainConfig, name: str, after: list[str]) -> Stage:
    from sami.train.run import train

    def run(folder: Path) -> None:
        train(cfg_train, resume=True)

    # fingerprinted on what this method uses: a SAMI-only setting does not rerun SFT, nor the DPO that reads it
    return Stage(name, Path(cfg_train.output_dir), method_view(to_dict(cfg_train)), run, after=after)


def _eval_stage(ev: EvalConfig, suite: str, name: str, after: list[str]) -> Stage:
    from sami.eval.run import run as run_eval
    from sami.eval.run import settings

    def run(folder: Path) -> None:
        run_eval(suite, ev)

    section = to_dict(settings(ev, suite))
    config = {"suite": suite, "models": ev.models, "backend": to_dict(ev.backend), "section": section}
    if suite == "mtbench":
        config["judge"] = to_dict(ev.judge)
    return Stage(name, Path(ev.output_dir) / suite, config, run, after=after)


def mtbench_stages(cfg: ExperimentConfig) -> tuple[list[Stage], dict]:
    study, root = cfg.mtbench, Path(cfg.output_dir) / "mtbench"
    base = study.train.model.name_or_path
    gen = generate_config(study, root, cfg.seed)
    stages = [_generate_stage(gen, root, study.heldout)]
    order = ["sft"] + [m for m in study.methods if m != "sft"]  # SFT first: the others start from it
    trains = {m: train_config(study, root, m, base, cfg.seed) for m in order}
    for m in order:
        stages.append(
            _train_stage(trains[m], f"mtbench/{m}", ["mtbench/data"] + ([] if m == "sft" else ["mtbench/sft"]))
        )
    model = {m: f"{m}={trains[m].output_dir}/{MODEL}" for m in order}
    trained = [f"mtbench/{m}" for m in order]
    # every method against SAMI and against SFT, in the order SAMI vs each, each vs SFT: with the default
    # methods SAMI vs DPO, SAMI vs SFT, DPO vs SFT (the paper's figure)
    judged = ["sami"] + [m for m in study.methods if m not in MTBENCH_VERSUS] + ["sft"]
    mtbench = copy.deepcopy(study.mtbench)
    if mtbench.against is None:
        mtbench.versus = list(MTBENCH_VERSUS)
    ev = eval_config(cfg, root, [model[m] for m in judged], mtbench=mtbench)
    stages.append(_eval_stage(ev, "mtbench", "mtbench/eval-mtbench", trained))
    everyone = [f"base={base}"] + [model[m] for m in study.methods]
    evals = {"mtbench": ev}
    if study.mi and study.heldout:
        mi_cfg = MIConfig(
            data=str(root / "data" / "heldout.jsonl"),
            template=study.train.template,
            max_prompt_tokens=study.train.max_prompt_tokens,
            max_response_tokens=study.train.max_response_tokens,
        )
        evals["mi"] = eval_config(cfg, root, everyone, mi=mi_cfg)
        stages.append(_eval_stage(evals["mi"], "mi", "mtbench/eval-mi", ["mtbench/data", *trained]))
    if study.adherence is not None:
        evals["adherence"] = eval_config(cfg, root, everyone, adherence=study.adherence)
        stages.append(_eval_stage(evals["adherence"], "adherence", "mtbench/eval-adherence", trained))
    stages += _plugin_suite_stages(cfg, study, root, everyone, evals, ["mtbench/data", *trained])
    return stages, {"trains": trains, "evals": evals, "generate": gen}


def _plugin_suite_stages(cfg, study, root: Path, models: list[str], evals: dict, after: list[str]) -> list[Stage]:
    """One stage per suite of the study's ``suites:`` (added by plugins), on ``models``; ``evals`` gains each."""
    stages = []
    for suite, section in study.suites.items():
        evals[suite] = eval_config(cfg, root, models, sections={suite: section})
        stages.append(_eval_stage(evals[suite], suite, f"{root.name}/eval-{suite}", after))
    return stages


def math_stages(cfg: ExperimentConfig) -> tuple[list[Stage], dict]:
    study, root = cfg.math, Path(cfg.output_dir) / "math"
    base = study.train.model.name_or_path
    gen = generate_config(study, root, cfg.seed)
    stages = [_generate_stage(gen, root, 0)]
    trains = {m: train_config(study, root, m, base, cfg.seed) for m in MATH_METHODS}
    stages.append(_train_stage(trains["sft"], "math/sft", ["math/data"]))
    stages.append(_train_stage(trains["sami"], "math/sami", ["math/data"]))
    stages.append(_train_stage(trains["sft+sami"], "math/sft+sami", ["math/data", "math/sft"]))
    models = [f"base={base}"] + [f"{m}={trains[m].output_dir}/{MODEL}" for m in MATH_METHODS]
    gsm8k = copy.deepcopy(study.gsm8k)
    gsm8k.exclude_queries_from = [
        *gsm8k.exclude_queries_from,
        str(root / "data" / "train.jsonl"),
    ]  # never a training item
    ev = eval_config(cfg, root, models, gsm8k=gsm8k)
    trained = ["math/sft", "math/sami", "math/sft+sami"]
    stages.append(_eval_stage(ev, "gsm8k", "math/eval-gsm8k", trained))
    evals = {"gsm8k": ev}
    stages += _plugin_suite_stages(cfg, study, root, models, evals, ["math/data", *trained])
    return stages, {"trains": trains, "evals": evals, "generate": gen}


def plan_experiment(cfg: ExperimentConfig) -> tuple[list[Stage], dict]:
    """Every stage of the experiment, in order, and the configs the report needs."""
    stages, parts = [], {}
    if cfg.mtbench.enabled:
        s, parts["mtbench"] = mtbench_stages(cfg)
        stages += s
    if cfg.math.enabled:
        s, parts["math"] = math_stages(cfg)
        stages += s
    if not stages:
        raise ConfigError("both studies are disabled: enable mtbench or math")
    from sami.study.report import write_report

    def run_report(folder: Path) -> None:
        write_report(cfg, parts, folder)

    report_config = {"name": cfg.name, "renderer": renderer_digest()}
    stages.append(
        Stage("report", Path(cfg.output_dir) / REPORT_DIR, report_config, run_report, after=[s.name for s in stages])
    )
    return stages, parts


# besides sami/eval and sami/study: the modules the report reads runs and settings through
RENDERER_FILES = (
    "core/stats.py",
    "core/layout.py",
    "core/config.py",
    "train/config.py",
    "train/runfolder.py",
    "train/registry.py",
)


def renderer_digest() -> str:
    """A hash of the code that turns stored files into the report: the statistics (``sami.eval``, ``sami.core.stats``),
    the rendering (``sami.study``, its templates) and what they read runs with (``RENDERER_FILES``: folder and
    figure names, the settings table, the methods' labels). It is part of the report stage's
    fingerprint, so a newer version rewrites the report of a finished run (seconds) and never quotes an older
    version's reading of the same files; the stages that generate, train and judge are untouched."""
    import hashlib

    import sami

    package = Path(sami.__file__).parent
    files = [package / name for name in RENDERER_FILES] + sorted((package / "eval").rglob("*.py"))
    files += sorted(
        p for p in (package / "study").rglob("*") if p.is_file() and p.suffix in (".py", ".j2", ".js", ".css")
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def check_principle_names(cfg: ExperimentConfig) -> None:
    """The principles the evaluation stages name exist (adherence's with checkers), checked before any stage runs:
    a misspelt one would otherwise stop the study at its first evaluation, after generation and training."""
    from sami.data.principles import load_library

    if not cfg.mtbench.enabled:
        return
    library = load_library([])
    library.check_names(cfg.mtbench.mtbench.principles, "mtbench.mtbench.principles")
    if cfg.mtbench.adherence is not None:
        names = cfg.mtbench.adherence.principles or []
        library.check_names(names, "mtbench.adherence.principles")
        unchecked = [n for n in names if not library.get(n).verifiable]
        if unchecked:
            raise ConfigError(f"mtbench.adherence.principles: {unchecked} have no checker (not verifiable)")


def run_experiment(cfg: ExperimentConfig, *, only: list[str] | None = None) -> list[StageOutcome]:
    """Run the study's stages that are not finished; one experiment at a time per output folder."""
    stages, _ = plan_experiment(cfg)
    if only:
        unknown = sorted(set(only) - {s.name for s in stages})
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; stages: {[s.name for s in stages]}")
    check_principle_names(cfg)
    root = Path(cfg.output_dir)
    for stage in stages:  # a file where a stage's folder (or one above it) goes: say so before anything runs
        for folder in (stage.folder, *stage.folder.parents):
            if folder.is_file():
                raise ConfigError(f"output_dir: {folder} is a file; stage {stage.name} needs a folder there")
    with hold(root, folder=True, what="this experiment"):
        save_yaml(cfg, root / CONFIG)
        lost = report_files_lost(root / REPORT_DIR)
        if lost and (root / REPORT_DIR / MARKER).is_file():  # its files are what the report stage made: make them again
            logger.warning("report: %s; writing the report again", lost)
            (root / REPORT_DIR / MARKER).unlink(missing_ok=True)  # every process of a launch sees it
        return run_stages(stages, only=only)


def read_summary(folder: Path) -> dict:
    """The ``summary.json`` of the report stage in ``folder``, its metrics under today's names. ``sami experiment``
    rewrites a report an older version finished before it reads it (``renderer_digest``); a run not rerun since
    (read by a script, say) is read as the layout version in its ``stage.json`` stored it
    (``sami.core.migrate.upgrade_summary``), and one without a ``stage.json`` as this version writes it."""
    import json

    summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    marker = read_marker(folder)
    return upgrade_summary(summary, version_of(marker) if marker is not None else LAYOUT_VERSION)


def report_files_lost(folder: Path) -> str | None:
    """What is wrong with a finished report stage's files in ``folder`` (report.md, summary.json, the page), or
    None: a file deleted, or a summary that is not a JSON object, leaves the stage unfinished."""
    import json

    missing = [name for name in (REPORT, SUMMARY, PAGE) if not (folder / name).is_file()]
    if missing:
        return f"{', '.join(str(folder / name) for name in missing)} missing"
    try:
        summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        summary = None
    return None if isinstance(summary, dict) else f"{folder / SUMMARY} is not a JSON object"
