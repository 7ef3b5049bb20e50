"""Every ``sami eval`` command end to end on the embedded model at tiny sizes (the judge is the same model)."""

import json

import pytest

from sami.cli import main
from tests.helpers import EXAMPLE_DATA

pytestmark = pytest.mark.slow

COMMANDS = {
    "mtbench": [
        "a=smollm2-135m",
        "b=smollm2-135m",
        "--per-category",
        "1",
        "--judges",
        "principle-aware,principle-free,single",
        "--judge",
        "smollm2-135m",
        "-o",
        "mtbench.categories=[math]",
        "-o",
        "mtbench.max_new_tokens=24",
        "-o",
        "mtbench.judge_max_new_tokens=32",
    ],
    "gsm8k": ["smollm2-135m", "--limit", "2", "--samples", "2", "-o", "gsm8k.max_new_tokens=24"],
    "mi": ["smollm2-135m", "--data", str(EXAMPLE_DATA), "--limit", "2"],
    "adherence": [
        "smollm2-135m",
        "--limit",
        "1",
        "-o",
        "adherence.principles=[lowercase,concise]",
        "-o",
        "adherence.max_new_tokens=24",
    ],
}


@pytest.mark.parametrize("suite", list(COMMANDS))
def test_every_eval_command_end_to_end(suite, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", suite, *COMMANDS[suite], "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.strip()
    metrics = json.loads((out / suite / "metrics.json").read_text())
    assert (out / suite / "config.yaml").is_file() and (out / suite / "settings.json").is_file()
    # Recomputing from the stored files prints exactly what the run printed.
    assert main(["eval", suite, *COMMANDS[suite], "--output-dir", str(out), "--recompute"]) == 0
    assert capsys.readouterr().out == printed
    if suite == "mtbench":
        block = metrics["pairwise"]["principle-aware"]["a vs b"]["overall"]
        # the embedded judge's verdict probabilities: never unparseable
        assert block["n"] == 1 and block["unparseable"] == 0 and block["soft_win_rate"]["n"] == 1
        assert "[principle-aware] a vs b (probability verdicts): win" in printed
        assert "[single] b: mean rating" in printed
    elif suite == "gsm8k":
        assert metrics["smollm2-135m"]["greedy_accuracy"]["n"] == 2 and "pass@2" in printed
    elif suite == "mi":
        assert metrics["smollm2-135m"]["overall"]["mi_bound"]["n"] == 2
    else:
        assert set(metrics["smollm2-135m"]["principles"]) == {"lowercase", "concise"}
        assert metrics["smollm2-135m"]["answers"] == 4 and "degenerate answers" in printed
