"""Fluency in ``sami eval mi``: each record's diagonal log-prob and the paired change from the origin checkpoint."""

import json

import pytest
import torch

from sami.core.objective import sami_metrics
from sami.eval.config import EvalConfig, MIConfig
from sami.eval.mi import mi_metrics, origin_checkpoint, print_mi
from sami.eval.run import compute, run
from sami.eval.store import read_jsonl
from tests.helpers import EXAMPLE_DATA, eval_cfg, write_jsonl


def _row(record_id: str, category: str, matrix: list[list[float]], *, stored_diag: bool = True) -> dict:
    row = {"id": record_id, "category": category, "constitutions": len(matrix), "matrix": matrix}
    row.update(sami_metrics(torch.tensor(matrix)))
    if not stored_diag:
        del row["diag_logprob"]  # as files written before the field existed
    return row


def test_diag_logprob_and_its_paired_change_from_base_by_hand(tmp_path, capsys):
    """base's diagonals: r1 (-1, -1) -> -1, r2 (-2, -3) -> -2.5; sami's: r1 (-1, -2) -> -1.5, r2 (-3, -4)
    -> -3.5. Paired changes -0.5 and -1.0, mean -0.75; base is listed second and is still the origin.
    sami's r2 row lacks diag_logprob and is recomputed from its stored matrix."""
    root = tmp_path / "eval" / "mi"
    root.mkdir(parents=True)
    write_jsonl(
        root / "base.jsonl", [_row("r1", "math", [[-1, -5], [-5, -1]]), _row("r2", "code", [[-2, -5], [-5, -3]])]
    )
    write_jsonl(
        root / "sami.jsonl",
        [_row("r1", "math", [[-1, -5], [-5, -2]]), _row("r2", "code", [[-3, -5], [-5, -4]], stored_diag=False)],
    )
    cfg = EvalConfig(output_dir=str(tmp_path / "eval"), models=["sami=x", "base=y"])
    m = mi_metrics(cfg)
    assert m["base"].overall.diag_logprob.value == pytest.approx(-1.75)
    assert m["base"].overall.diag_logprob_change is None and m["base"].diag_logprob_origin is None
    stored = {name: result.to_dict() for name, result in m.items()}  # metrics.json leaves out what does not apply
    assert "diag_logprob_change" not in stored["base"]["overall"] and "diag_logprob_origin" not in stored["base"]
    sami = m["sami"]
    assert sami.diag_logprob_origin == "base"
    assert sami.overall.diag_logprob.value == pytest.approx(-2.5)
    change = sami.overall.diag_logprob_change
    assert change.value == pytest.approx(-0.75) and change.n == 2
    assert -1.0 <= change.low <= change.high <= -0.5  # bootstrap over the two paired records
    assert sami.per_category["code"].diag_logprob_change.value == pytest.approx(-1.0)
    print_mi(stored)
    out = capsys.readouterr().out
    assert "diagonal log-prob per token -2.500" in out and "change from base -0.750" in out


def test_origin_is_base_else_the_first_checkpoint():
    assert origin_checkpoint(["sft", "base", "sami"]) == "base"
    assert origin_checkpoint(["sft", "sami"]) == "sft"


def test_eval_mi_stores_diag_logprob_and_recomputes_it_from_old_files(tmp_path, tiny_model_dir):
    """Both checkpoints are the same model: every paired change is exactly 0."""
    cfg = eval_cfg(tmp_path, tiny_model_dir, mi=MIConfig(data=str(EXAMPLE_DATA), limit=3))
    metrics = run("mi", cfg)
    path = tmp_path / "eval/mi/b.jsonl"
    rows = read_jsonl(path)
    for r in rows:
        assert r["diag_logprob"] == sum(r["matrix"][i][i] for i in range(r["constitutions"])) / r["constitutions"]
    assert metrics["b"]["diag_logprob_origin"] == "a"
    assert metrics["b"]["overall"]["diag_logprob_change"] == {
        "value": 0.0,
        "n": 3,
        "low": 0.0,
        "high": 0.0,
        "method": "bootstrap",
    }
    assert metrics["a"]["overall"]["diag_logprob"]["n"] == 3
    for r in rows:
        del r["diag_logprob"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert compute("mi", cfg) == metrics


def test_mi_layout_naive_stores_the_matrices_the_shared_layout_stores(tmp_path, tiny_model_dir, monkeypatch):
    """``mi.layout`` reaches the matrix computation, and the two layouts (C packed rows against C*C full rows)
    store the same matrices to float32 rounding."""
    import sami.eval.mi as mi_module

    used = []
    real = mi_module.batch_logprob_matrices

    def spy(*args, **kwargs):
        used.append(kwargs["layout"])
        return real(*args, **kwargs)

    monkeypatch.setattr(mi_module, "batch_logprob_matrices", spy)
    stored = {}
    for layout in ("shared", "naive"):
        cfg = eval_cfg(tmp_path / layout, tiny_model_dir, mi=MIConfig(data=str(EXAMPLE_DATA), limit=2, layout=layout))
        cfg.models = cfg.models[:1]
        run("mi", cfg)
        stored[layout] = [r["matrix"] for r in read_jsonl(tmp_path / layout / "eval/mi/a.jsonl")]
        assert json.loads((tmp_path / layout / "eval/mi/settings.json").read_text())["layout"] == layout
    assert used == ["shared", "shared", "naive", "naive"]
    assert len(stored["shared"]) == 2
    torch.testing.assert_close(torch.tensor(stored["naive"]), torch.tensor(stored["shared"]), atol=1e-5, rtol=0)
