"""``make smoke``: the whole experiment, both studies and every stage through the report, on a tiny
random-weight model in a minute or two, offline. The check to run after changing code; the numbers it
prints mean nothing (the model is random).

It saves a 2-layer Llama with the embedded tokenizer (``tests.helpers.save_tiny_model``; the test suite's
tiny models have a smaller vocabulary) into ``runs/smoke/model``, fills that folder into the tests' tiny
experiment config (``tests/files/experiment-tiny.yaml``) and runs ``sami experiment`` on it into
``runs/smoke/run``. Every call starts from an empty ``runs/smoke`` (a rerun of a finished experiment would
skip every stage and check nothing).

    python -m tests.smoke        # from the repository root; `make smoke` does the same
"""

import shutil
import sys
import time
from pathlib import Path

from tests.helpers import FILES, ROOT, save_tiny_model

TINY = FILES / "experiment-tiny.yaml"
FOLDER = ROOT / "runs" / "smoke"


def write_config(folder: Path, model: Path) -> Path:
    """The tests' tiny experiment with ``model`` as teacher, student and judge, writing into ``folder/run``."""
    text = TINY.read_text().replace("STUDENT", str(model)).replace("OUT", str(folder / "run"))
    path = folder / "experiment.yaml"
    path.write_text(text)
    return path


def main() -> int:
    from sami.cli import main as sami
    from sami.models.loading import load_tokenizer

    start = time.perf_counter()
    shutil.rmtree(FOLDER, ignore_errors=True)
    FOLDER.mkdir(parents=True)
    # init_std 0.2: generations vary from prompt to prompt, so every judge and filter sees distinct answers.
    model = save_tiny_model(FOLDER / "model", load_tokenizer("smollm2-135m"), init_std=0.2)
    code = sami(["experiment", str(write_config(FOLDER, model))])
    print(f"smoke: {'passed' if code == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
