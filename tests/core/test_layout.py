"""The folder and file names the stages write are spelled once, in ``sami/core/layout.py``."""

import ast

from sami.core import layout
from tests.helpers import ROOT

NAMES = {
    layout.CONFIG,
    layout.MODEL_CONFIG,
    layout.METRICS,
    layout.CHECKPOINTS,
    layout.STATE_FILE,
    layout.MANIFEST,
    layout.PROVENANCE,
    layout.OPTIMIZER,
    layout.SCHEDULER,
    layout.TRAINING_ARGS,
    layout.SETTINGS,
    layout.MODELS,
    layout.SUITE_METRICS,
    layout.ANSWERS,
    layout.JUDGMENTS,
    layout.IMPORT,
    layout.STAGE_MARKER,
    layout.REPORT,
    layout.SUMMARY,
    layout.PAGE,
    layout.FIGURES,
    layout.MI_FIGURE,
    layout.ADHERENCE_FIGURE,
    layout.PASS_AT_K_FIGURE,
    layout.SHARDS,
}


def spelled(source: str) -> set[str]:
    """The names of ``NAMES`` that ``source`` writes in a string literal: a file name (``config.yaml``) whole or
    as a path part (``f"{run}/stage.json"``); a folder name (``checkpoints``) where it joins a path (``root /
    "judgments"``), so that a format that happens to be called ``judgments`` is not one."""
    found = set()
    tree = ast.parse(source)
    joined = {
        id(n)
        for b in ast.walk(tree)
        if isinstance(b, ast.BinOp) and isinstance(b.op, ast.Div)
        for n in (b.left, b.right)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            parts = {node.value} | set(node.value.split("/"))
            found |= {n for n in NAMES & parts if "." in n or id(node) in joined or "/" in node.value}
    return found


def test_the_spelling_check_sees_names_in_paths_and_not_in_prose():
    assert spelled('"""Writes config.yaml."""\npath = folder / "config.yaml"\n') == {"config.yaml"}
    assert spelled('x = "judgments/a__b.jsonl"\ny = f"{a}/stage.json"\n') == {"judgments", "stage.json"}
    assert spelled('x = root / "checkpoints"\nformat = "judgments"\n') == {"checkpoints"}


def test_no_module_but_layout_spells_a_run_or_eval_folder_name():
    offenders = {}
    for path in sorted((ROOT / "src" / "sami").rglob("*.py")):
        if path.name == "layout.py" and path.parent.name == "core":
            continue
        names = spelled(path.read_text())
        if names:
            offenders[str(path.relative_to(ROOT))] = sorted(names)
    assert offenders == {}
