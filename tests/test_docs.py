"""The docs name only things that exist: every dotted ``sami.`` name they write in backticks imports and
resolves, every test they name is a test function or test module in tests/, and every source, test, config
or docs file they name is there. Names move when code does; this is what says which page to update."""

import ast
import importlib
import re
from functools import cache

from tests.helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SRC = ROOT / "src" / "sami"

# A dotted name in a code span or block: `sami.` not part of a longer dotted name (`mtbench.train.sami.x` is a
# config key path) and followed by identifiers; what follows it (call parentheses, an index) is not part of it.
DOTTED = re.compile(r"(?<![\w.])sami(?:\.[A-Za-z_]\w*)+")
TEST_NAME = re.compile(r"(?<![\w.])test_\w+")
# Paths the docs write relative to the repository root, or to src/ (`sami/train/run.py`).
FOLDERS = "src/sami|sami|tests|configs|benchmarks|examples|docs"
PATH = re.compile(rf"(?<![\w/.-])((?:{FOLDERS})/[\w./+-]*\.(?:py|yaml|jsonl|md))")
# The entry-point group plugins register under: a name of installed distributions' metadata, not a module
# (that `sami/plugins.py` exists too is beside the point: renaming the module would not rename the group).
ENTRY_POINT_GROUPS = {"sami.plugins"}


def code_text(path) -> str:
    """The page's code: its fenced blocks and inline code spans, joined (prose is left out)."""
    text = path.read_text()
    blocks = re.findall(r"^```\w*\n(.*?)^```", text, re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```\w*\n.*?^```", "", text, flags=re.S | re.M))
    return "\n".join(blocks + spans)


@cache
def top_level_names() -> frozenset[str]:
    """The packages and modules directly under ``sami``: the first part of a dotted name that is code.
    A config key has a field of a section there instead (`sami.nll_weight`, `sami.layout: naive`)."""
    return frozenset(p.stem for p in SRC.iterdir() if (p.suffix == ".py" and p.stem != "__init__") or p.is_dir())


def dotted_names() -> dict[str, set[str]]:
    """Dotted names of code in the docs, each with the pages that write it."""
    found: dict[str, set[str]] = {}
    for page in DOCS:
        for name in DOTTED.findall(code_text(page)):
            if name.split(".")[1] in top_level_names() and name not in ENTRY_POINT_GROUPS:
                found.setdefault(name, set()).add(page.name)
    return found


def resolves(name: str) -> bool:
    """The longest importable module prefix of ``name``, then attributes for the rest."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@cache
def known_test_names() -> frozenset[str]:
    """Every test module's name and every test function defined under tests/ (methods of test classes
    included)."""
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.add(path.stem)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                names.add(node.name)
    return frozenset(names)


def test_the_rules_tell_code_from_config_keys():
    assert DOTTED.findall("`sami.train.run.train(cfg)` and `-o mtbench.train.sami.nll_weight=0`") == [
        "sami.train.run.train"
    ]
    assert "train" in top_level_names() and "cli" in top_level_names() and "nll_weight" not in top_level_names()
    assert resolves("sami.train.run.train") and resolves("sami.core.objective.sami_loss")
    assert not resolves("sami.train.FluencyWatch") and not resolves("sami.nowhere.thing")
    assert "test_dpo_first_step_loss_is_log_2" in known_test_names() and "test_imports" in known_test_names()


def test_every_dotted_sami_name_in_the_docs_exists():
    names = dotted_names()
    assert len(names) >= 40, sorted(names)  # the rule still finds what the docs write
    missing = sorted(f"{name} ({', '.join(sorted(pages))})" for name, pages in names.items() if not resolves(name))
    assert not missing, "the docs name code that does not exist:\n" + "\n".join(missing)


def test_every_test_the_docs_name_exists():
    named = {name: page.name for page in DOCS for name in TEST_NAME.findall(page.read_text())}
    assert len(named) >= 60, sorted(named)
    missing = sorted(f"{name} ({page})" for name, page in named.items() if name not in known_test_names())
    assert not missing, "the docs name tests that do not exist:\n" + "\n".join(missing)


def test_every_file_the_docs_name_exists():
    named = {path: page.name for page in DOCS for path in PATH.findall(page.read_text())}
    assert len(named) >= 60, sorted(named)
    missing = sorted(
        f"{path} ({page})"
        for path, page in named.items()
        if not (ROOT / path).exists() and not (ROOT / "src" / path).exists()
    )
    assert not missing, "the docs name files that do not exist:\n" + "\n".join(missing)
