"""The prepared GPU check (``benchmarks/gpu_check.py``) runs end to end at a tiny size on the CPU, so that the
script that is carried to a GPU machine is known to work there up to the device."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_gpu_check_runs_every_cell_at_a_tiny_size(tmp_path):
    result = tmp_path / "gpu-check.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--tiny", "--steps", "2", "--json", str(result)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    header = next(k for k, line in enumerate(lines) if line.startswith("| method | layout | finetune |"))
    cells = [line for line in lines[header + 2 :] if line.startswith("| ")]
    assert len(cells) == 7 and not any("failed" in line for line in cells)  # six cells and the FSDP launch
    rows = json.loads(result.read_text())["rows"]
    assert {(r["method"], r["layout"], r["finetune"]) for r in rows} == {
        ("sami", "shared", "lora"), ("sami", "naive", "lora"), ("dpo", "-", "lora"),
        ("sami", "shared", "full"), ("sami", "naive", "full"), ("dpo", "-", "full"),
    }  # fmt: skip
    assert all(r["result"]["steps"] == 2 and r["result"]["peak_gib"] > 0 for r in rows)
