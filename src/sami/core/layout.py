"""The names of the files and folders the stages write, in one place: every stage may import this module, and
no other module spells these names (``tests/core/test_layout.py`` holds ``src/`` to that).

A training run's output folder (``sami train``)::

    config.yaml                      CONFIG: the resolved training config
    metrics.jsonl                    METRICS: one line per optimiser step
    checkpoints/checkpoint-N/        CHECKPOINTS: each with trainer_state.json (STATE_FILE, written last),
                                     manifest.json (MANIFEST) and, for TRL, optimizer.pt and friends
    model/                           MODEL: the final model, with sami_config.yaml (MODEL_CONFIG) and
                                     provenance.json (PROVENANCE)

An evaluation suite's folder (``<output_dir>/<suite>``): config.yaml, settings.json (SETTINGS), models.json
(MODELS), metrics.json (SUITE_METRICS), answers/ (ANSWERS) and, for MT-Bench, judgments/ (JUDGMENTS). A study
stage's folder holds stage.json (STAGE_MARKER); the report's, report.md, summary.json, the page index.html and
figures/ with the report's figures.
"""

from __future__ import annotations

from pathlib import Path

# ------------------------------------------------------------------------------------------ training runs
CONFIG = "config.yaml"  # the resolved config of a run, a checkpoint, an eval suite or an experiment
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"  # every method's checkpoint folders, under the output folder
STATE_FILE = "trainer_state.json"  # written last into a finished checkpoint
MANIFEST = "manifest.json"  # each checkpoint file's size and SHA-256
MODEL = "model"  # the final model of a run
MODEL_CONFIG = "sami_config.yaml"  # the training config beside a final model
PROVENANCE = "provenance.json"
# What a TRL checkpoint holds beside the model: resuming state that does not change the weights (rng_state
# is a prefix: one file per process).
OPTIMIZER, SCHEDULER, TRAINING_ARGS, RNG_STATE = "optimizer.pt", "scheduler.pt", "training_args.bin", "rng_state"
TRAINING_STATE: tuple[str, ...] = (OPTIMIZER, SCHEDULER, STATE_FILE, TRAINING_ARGS, RNG_STATE)
# What a sharded SAMI checkpoint holds beside its manifest: the torch.distributed.checkpoint folder of model and
# optimiser shards, the scheduler (SCHEDULER) and one random-state file per process.
SHARDS, RNG_SHARD = "shards", "rng-{rank}.pt"

# ------------------------------------------------------------------------------------------ evaluation
SETTINGS = "settings.json"  # what a suite's stored rows were made with; a rerun that differs is refused
MODELS = "models.json"  # each checkpoint name bound to its model's content
SUITE_METRICS = "metrics.json"  # a suite's metrics, computed from its stored files
ANSWERS = "answers"  # each checkpoint's answers, <checkpoint>.jsonl
JUDGMENTS = "judgments"
IMPORT = "import"  # an imported folder's own settings.json: what it was imported from, under which protocol

# ------------------------------------------------------------------------------------------ studies
STAGE_MARKER = "stage.json"  # written into a stage's folder when it finished
REPORT_DIR, REPORT, SUMMARY = "report", "report.md", "summary.json"
FIGURES = "figures"  # the report's figures, beside report.md: each <name>.png with <name>.json, the values drawn
MI_FIGURE, ADHERENCE_FIGURE, PASS_AT_K_FIGURE = "mi_bound.png", "adherence_contrast.png", "math_pass_at_k.png"
PAGE = "index.html"  # the page beside the report (a run's, or an evaluation folder's own report/)


def run_configs(folder: Path) -> tuple[Path, Path]:
    """Where a training run folder records its config: its own ``config.yaml``, else its model's."""
    return folder / CONFIG, folder / MODEL / MODEL_CONFIG


def answers_file(root: Path, model: str) -> Path:
    """An evaluation folder's stored answers of ``model`` (MT-Bench and adherence)."""
    return root / ANSWERS / f"{model}.jsonl"


def pair_judgments(root: Path, judge: str, first: str, second: str) -> Path:
    """An MT-Bench folder's verdicts of ``judge`` on ``first`` (shown first) against ``second``."""
    return root / JUDGMENTS / judge / f"{first}__{second}.jsonl"


def graded_judgments(root: Path, judge: str, model: str) -> Path:
    """An MT-Bench folder's 1-10 grades of ``judge`` for ``model``."""
    return root / JUDGMENTS / judge / f"{model}.jsonl"


def judge_figure(judge: str) -> str:
    """The report's figure of one MT-Bench judge's win rates, per category and overall."""
    return f"mtbench_{judge}.png"
