import json

from sami.figures import attempts_curves, estimate_bars, winrate_bars


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_figures_are_written_from_plain_estimates(tmp_path):
    est = {"rate": 0.6, "low": 0.3, "high": 0.85, "n": 10}
    w = winrate_bars({"A vs B": {"math": est, "overall": est}, "A vs C": {"math": est}}, tmp_path / "f" / "w.png")
    a = attempts_curves({"base": {1: est, 10: est}, "sft": {"1": est, "10": est}}, tmp_path / "a.png")
    nan = {"value": None}
    m = estimate_bars({"base": {"value": 0.1, "low": 0.0, "high": 0.2}, "sami": nan}, tmp_path / "m.png", title="MI",
                      ylabel="nats")  # fmt: skip
    for path in (w, a, m):
        width, height = png_size(path)
        assert width > 300 and height > 200


def test_grouped_bars_draw_the_estimates_they_are_given(tmp_path):
    """The values drawn (written beside the PNG) are the estimates' values and interval ends, per group and bar;
    a missing estimate is drawn as nothing."""
    contrasts = {
        "sft": {
            "lowercase": {"value": 0.125, "low": 0.0, "high": 0.375},
            "bullet_list": {"value": -0.125, "low": -0.375, "high": 0.0},
        },
        "sami": {"lowercase": {"value": 0.875, "low": 0.625, "high": 1.0}},
    }
    path = winrate_bars(contrasts, tmp_path / "adherence.png", reference=0.0, xlim=(-1, 1), xlabel="contrast")
    drawn = json.loads(path.with_suffix(".json").read_text())
    assert drawn == {
        "bullet_list": {"sft": [-0.125, -0.375, 0.0]},
        "lowercase": {"sft": [0.125, 0.0, 0.375], "sami": [0.875, 0.625, 1.0]},
    }
    assert png_size(path)[0] > 300
