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
