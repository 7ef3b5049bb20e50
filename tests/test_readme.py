import re

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_readme_python_example_runs():
    """The README's Python API example, executed as written (embedded model)."""
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["L"].shape == (2, 2)
    assert namespace["loss"].item() > 0


def test_readme_shows_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make quickstart" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
