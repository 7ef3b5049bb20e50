"""One entry point per suite: ``run`` generates/judges what is missing and computes the metrics from the
stored files; ``compute`` only computes them (nothing is generated or judged); ``show`` prints them."""

from __future__ import annotations

from pathlib import Path

from sami.config import save_yaml
from sami.eval.adherence import adherence_metrics, print_adherence, run_adherence
from sami.eval.config import SUITES, EvalConfig
from sami.eval.gsm8k import gsm8k_metrics, print_gsm8k, run_gsm8k
from sami.eval.mi import mi_metrics, print_mi, run_mi
from sami.eval.mtbench import mtbench_metrics, print_mtbench, run_mtbench
from sami.locks import hold

_RUN = {"mtbench": run_mtbench, "gsm8k": run_gsm8k, "mi": run_mi, "adherence": run_adherence}
_COMPUTE = {"mtbench": mtbench_metrics, "gsm8k": gsm8k_metrics, "mi": mi_metrics, "adherence": adherence_metrics}
_SHOW = {"mtbench": print_mtbench, "gsm8k": print_gsm8k, "mi": print_mi, "adherence": print_adherence}


def _check(suite: str) -> None:
    if suite not in SUITES:
        raise ValueError(f"unknown evaluation suite {suite!r}; choose one of {SUITES}")


def run(suite: str, cfg: EvalConfig) -> dict:
    """Generate and judge whatever is missing, then compute metrics from the stored files."""
    _check(suite)
    cfg.checkpoints()  # names checked before anything is loaded
    folder = Path(cfg.output_dir) / suite
    for parent in (folder, *folder.parents):
        if parent.is_file():
            raise ValueError(f"output_dir: {parent} is a file; expected a folder (or a path that does not exist)")
    with hold(folder, folder=True, what=f"this {suite} evaluation"):
        save_yaml(cfg, folder / "config.yaml")
        return _RUN[suite](cfg)


def compute(suite: str, cfg: EvalConfig) -> dict:
    """Metrics from the stored files only."""
    _check(suite)
    if not (Path(cfg.output_dir) / suite).is_dir():
        raise FileNotFoundError(f"no stored {suite} results under {cfg.output_dir}")
    return _COMPUTE[suite](cfg)


def show(suite: str, metrics: dict) -> None:
    _check(suite)
    _SHOW[suite](metrics)
