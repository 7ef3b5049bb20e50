"""The report's figures (matplotlib, saved as PNG; the page's training curves inlined as SVG). Every estimate
is drawn with its 95% interval.

Inputs are plain mappings of estimates, ``{"rate": r, "low": l, "high": h, "n": n}`` (``value`` in place of
``rate`` for means), so a figure can be redrawn from ``summary.json`` alone. Each drawing function returns the
matplotlib figure with the values it shows, read back from its drawn bars, lines and bands (not from the
inputs), as ``[value, low, high]`` triples; ``save`` writes them beside the image as ``<name>.json``, so that
what a reader sees can be checked against the estimates. ``Figure`` is a figure as data (a file name and what
to draw), which the report's sections carry until the report is written.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

Estimate = Mapping[str, float]
Drawing = tuple[plt.Figure, dict]  # a drawn figure and the values it shows
DPI = 120


@dataclass(frozen=True)
class Figure:
    """A figure as data: the file it is saved as (``name``, from ``sami.core.layout``; its suffix is the format)
    and what it shows, ``draw(data, **options)`` with ``draw`` one of this module's drawing functions. Nothing is
    drawn until it is saved or asked for its image."""

    name: str
    draw: Callable[..., Drawing]
    data: Mapping
    options: Mapping = field(default_factory=dict)

    def save(self, folder: Path) -> bytes:
        """Draw it as ``folder / name``, with the values it shows beside it; returns the image's bytes, drawn once
        for the file and for whoever inlines it."""
        return write(self.draw(self.data, **self.options), folder / self.name)

    def image(self) -> bytes:
        """Draw it in memory: the bytes ``save`` would write as ``name``."""
        return image(self.draw(self.data, **self.options), Path(self.name).suffix.lstrip("."))


def _point(e: Estimate) -> tuple[float, float, float]:
    value = e.get("rate", e.get("value"))
    if value is None:
        return float("nan"), 0.0, 0.0
    low, high = e.get("low", value), e.get("high", value)
    return value, max(value - low, 0.0), max(high - value, 0.0)


def winrate_bars(
    pairings: Mapping[str, Mapping[str, Estimate]],
    *,
    title: str = "Hard win rate",
    reference: float = 0.5,
    xlim: tuple[float, float] = (0, 1),
    xlabel: str = "hard win rate (wins + ties/2) / n, 95% interval",
) -> Drawing:
    """Grouped horizontal bars: one group per category (``overall`` last), one bar per pairing, 95% whiskers,
    and a dashed line at ``reference`` (for win rates 50%, no preference). Also used for adherence
    contrasts: one group per principle, one bar per checkpoint, the line at 0. Values: group -> bar -> [value,
    low, high] as drawn; a missing estimate is drawn as nothing."""
    categories = sorted({c for per in pairings.values() for c in per if c != "overall"})
    if any("overall" in per for per in pairings.values()):
        categories.append("overall")
    names = list(pairings)
    height = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(categories) * max(len(names), 1) + 1.5))
    for k, name in enumerate(names):
        ys, values, errors = [], [], ([], [])
        for i, category in enumerate(categories):
            if category not in pairings[name]:
                continue
            value, lo, hi = _point(pairings[name][category])
            ys.append(i + (k - (len(names) - 1) / 2) * height)
            values.append(value)
            errors[0].append(lo)
            errors[1].append(hi)
        ax.barh(ys, values, height=height * 0.95, xerr=errors, capsize=2, label=name)
    ax.axvline(reference, color="black", linewidth=0.8, linestyle="--")
    labels = []
    for category in categories:
        counts = {int(per[category].get("n", 0)) for per in pairings.values() if category in per}
        labels.append(f"{category} (n={'/'.join(str(c) for c in sorted(counts))})")
    ax.set_yticks(range(len(categories)), labels)
    ax.invert_yaxis()
    ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    drawn: dict[str, dict] = {}
    for name, label, triple in _drawn_bars(ax, horizontal=True):
        drawn.setdefault(label.rsplit(" (n=", 1)[0], {})[name] = triple
    return fig, drawn


def attempts_curves(
    variants: Mapping[str, Mapping[int, Estimate]], *, title: str = "Accuracy with k attempts", ylabel: str = "pass@k"
) -> Drawing:
    """One line per variant over the number of attempts k (log scale), with a shaded 95% band. Values: variant
    -> k -> [value, low, high] as drawn."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, by_k in variants.items():
        ks = sorted(int(k) for k in by_k)
        points = [_point(by_k[k] if k in by_k else by_k[str(k)]) for k in ks]
        values = [p[0] for p in points]
        ax.plot(ks, values, marker="o", label=name)
        lows = [v - p[1] for v, p in zip(values, points, strict=True)]
        highs = [v + p[2] for v, p in zip(values, points, strict=True)]
        ax.fill_between(ks, lows, highs, alpha=0.15)
    ax.set_xscale("log", base=2)
    ticks = sorted({int(k) for by_k in variants.values() for k in by_k})
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    ax.set_xlabel("attempts k")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig, _drawn_curves(ax)


def step_curves(series: Mapping[str, list[tuple[int, float]]], *, title: str, ylabel: str) -> Drawing:
    """One line per method over training steps (``series``: method -> [(step, value), ...]); the page inlines it
    as SVG. Values: method -> step -> value as drawn."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name, points in series.items():
        ax.plot(
            [s for s, _ in points],
            [v for _, v in points],
            marker="o" if len(points) < 30 else None,
            markersize=3,
            label=name,
        )
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    drawn = {
        line.get_label(): {str(int(x)): float(y) for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)}
        for line in ax.get_lines()
    }
    return fig, drawn


def estimate_bars(values: Mapping[str, Estimate], *, title: str, ylabel: str) -> Drawing:
    """Vertical bars, one per checkpoint (or principle), with 95% whiskers. Values: name -> [value, low, high]
    as drawn (null for an estimate with no value, drawn as nothing)."""
    names = list(values)
    points = [_point(values[n]) for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.8))
    ax.bar(range(len(names)), [p[0] for p in points], yerr=([p[1] for p in points], [p[2] for p in points]), capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.axhline(0, color="black", linewidth=0.6)
    fig.tight_layout()
    return fig, {label: triple for _, label, triple in _drawn_bars(ax, horizontal=False)}


def _drawn_bars(ax, *, horizontal: bool) -> list[tuple[str, str, list | None]]:
    """Every bar of ``ax`` as drawn: (its series' legend label, the label of the tick it sits at, [length,
    whisker start, whisker end]; None for a bar of no length, which draws nothing)."""
    ticks = ax.get_yticklabels() if horizontal else ax.get_xticklabels()
    at_tick = {round(t.get_position()[1 if horizontal else 0]): t.get_text() for t in ticks}
    out = []
    for container in ax.containers:
        if not isinstance(container, BarContainer):
            continue
        segments = container.errorbar.lines[2][0].get_segments()  # one whisker per bar, empty where none
        for bar, whisker in zip(container.patches, segments, strict=True):
            axis = 0 if horizontal else 1
            length = bar.get_width() if horizontal else bar.get_height()
            middle = bar.get_y() + bar.get_height() / 2 if horizontal else bar.get_x() + bar.get_width() / 2
            ends = sorted(float(point[axis]) for point in whisker)
            triple = None if math.isnan(length) or not ends else [float(length), ends[0], ends[-1]]
            out.append((container.get_label(), at_tick[round(middle)], triple))
    return out


def _drawn_curves(ax) -> dict[str, dict[str, list]]:
    """Every line of ``ax`` with the band drawn around it (the k-th band of ``ax.collections`` belongs to the
    k-th line): label -> x -> [y, band low, band high]."""
    out = {}
    for line, band in zip(ax.get_lines(), ax.collections, strict=True):
        outline = band.get_paths()[0].vertices  # (x, y) around the band
        points = out.setdefault(line.get_label(), {})
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
            ys = sorted(float(v) for u, v in outline if u == x)
            points[str(int(x))] = [float(y), ys[0], ys[-1]]
    return out


def save(drawing: Drawing, path: str | Path) -> Path:
    """The figure as ``path`` (the format follows its suffix) and the values it shows beside it as JSON."""
    write(drawing, Path(path))
    return Path(path)


def write(drawing: Drawing, path: Path) -> bytes:
    """``save``, returning the image's bytes: drawn once, for the file and for a page that inlines it."""
    data = image(drawing, path.suffix.lstrip("."))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.with_suffix(".json").write_text(json.dumps(drawing[1], indent=1))
    return data


def image(drawing: Drawing, fmt: str) -> bytes:
    """The figure drawn in memory as ``fmt`` (``png``, ``svg``): the bytes ``save`` writes, without the values."""
    fig, _ = drawing
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()
