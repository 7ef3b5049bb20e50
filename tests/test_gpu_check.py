"""The prepared GPU check (``benchmarks/gpu_check.py``) runs end to end at a tiny size on the CPU, so that the
script that is carried to a GPU machine is known to work there up to the device."""

import importlib
import json
import math

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_gpu_check_runs_every_cell_at_a_tiny_size(tmp_path, monkeypatch, capsys):
    """The script's own ``main``. Its first cell runs as on a GPU machine, in a fresh process
    (``benchmarks/cells.py``: the worker's marked result read back); the other five call the same worker
    function here, which spares five interpreters importing torch and TRL; the FSDP cell is an ``accelerate
    launch`` as always."""
    optimizer = importlib.import_module("torch.optim.optimizer")  # torch.optim hides the submodule's name

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    gpu_check = importlib.import_module("gpu_check")
    real_run_cell, real_register = gpu_check.run_cell, optimizer.register_optimizer_step_post_hook
    cells, hooks = [], []

    def first_in_a_process_then_here(script, spec, **kwargs):
        cells.append(spec)
        return real_run_cell(script, spec, **kwargs) if len(cells) == 1 else gpu_check.worker(spec)

    def register(hook):  # the worker's step timer, a global hook: removed again after the run
        hooks.append(real_register(hook))
        return hooks[-1]

    monkeypatch.setattr(gpu_check, "run_cell", first_in_a_process_then_here)
    monkeypatch.setattr(optimizer, "register_optimizer_step_post_hook", register)
    result = tmp_path / "gpu-check.json"
    try:
        code = gpu_check.main(["--tiny", "--steps", "2", "--json", str(result)])
    finally:
        for hook in hooks:
            hook.remove()
    assert code == 0 and len(cells) == 8 and len(hooks) == 5
    lines = capsys.readouterr().out.splitlines()
    header = next(k for k, line in enumerate(lines) if line.startswith("| method | layout | finetune |"))
    table = [line for line in lines[header + 2 :] if line.startswith("| ")]
    # six cells, the FSDP launch, and the sharded path at world size 1 and on the embedded model (GPU only)
    assert len(table) == 9 and not any("failed" in line for line in table)
    sharded = {r["name"]: r["result"] for r in json.loads(result.read_text())["sharded"]}
    world_1, embedded = sharded.values()
    assert world_1["steps"] == 2 and math.isfinite(world_1["loss"]) and world_1["peak_gib"] > 0
    assert embedded == {"skipped": "no GPU"} or embedded["steps"] == 2
    rows = json.loads(result.read_text())["rows"]
    assert sorted((r["method"], r["layout"], r["finetune"]) for r in rows) == sorted(gpu_check.CELLS)
    assert len(gpu_check.CELLS) == 6
    assert all(r["result"]["steps"] == 2 and r["result"]["peak_gib"] > 0 for r in rows)
