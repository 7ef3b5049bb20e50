"""The test suite's own layout: the test folders mirror the packages of src/sami, and shared code lives in
plain helper modules, never in a test module or a conftest.py, so that a test module can be moved, renamed
or run alone without breaking another."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src" / "sami"


def test_the_test_folders_mirror_the_packages():
    """A folder of tests per package of sami (tests/train/ for sami/train/), one for the commands (tests/cli/),
    and no other; each a Python package, so that two folders can hold test modules of the same name."""
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and any(p.rglob("test_*.py"))}
    assert packages >= {"core", "data", "models", "backends", "generate", "train", "eval", "study"}
    assert folders == packages | {"cli"}
    assert all((TESTS / folder / "__init__.py").is_file() for folder in folders)


def _is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def imported_modules(path: Path, source: str | None = None) -> list[str]:
    """Every module the file at ``path`` (or ``source``, as if it were there) imports, relative imports
    resolved against its package under tests/."""
    package = ["tests", *path.parent.relative_to(TESTS).parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append(module)
            found += [f"{module}.{alias.name}" for alias in node.names]  # ``from tests import test_x``
    return found


def test_no_test_module_imports_another_test_module_or_a_conftest():
    offenders = [
        f"{path.relative_to(TESTS)} imports {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in ("tests", "conftest") or module.startswith("test_")
        if _is_test_module(module)
    ]
    assert not offenders, offenders


def test_the_import_check_sees_every_form_of_import():
    source = (
        "import tests.test_train\n"
        "from tests.conftest import ROOT\n"
        "from tests import test_generate\n"
        "from .test_runs import eval_cfg\n"
        "from ..helpers import make_cfg\n"
        "from tests.helpers import QUERIES\n"
    )
    found = [m for m in imported_modules(TESTS / "eval" / "sample.py", source) if _is_test_module(m)]
    assert found == ["tests.test_train", "tests.conftest", "tests.test_generate", "tests.eval.test_runs"]
