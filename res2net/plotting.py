"""Every picture the package draws, in one style: the latency charts and the training curves.

matplotlib, rendered to files only (the ``Agg`` backend: no display needed). One style for
all figures (fonts, grid, colours) lives in :data:`STYLE`; the callers pass plain values,
so this module knows nothing of engines, checkpoints or benchmarks.

Charts:

* :func:`latency_accuracy`: latency (x, log scale) against top-1 (y), the layout
  PaddleClas's and timm's model-zoo charts use. Each point is labelled with its model's
  name; one line per engine/precision joins its models in order of latency; peers dashed.
  Points without a measured accuracy go on a strip below, on the same latency axis.
* :func:`batch_scaling`: per-image latency against batch size, one line per
  engine/precision.
* :func:`training_curves`: loss (log scale) and validation accuracy against whole epochs.

On both latency charts a colour means one engine and a marker shape one precision; a caller
drawing both passes the same :class:`SeriesStyle` to each, so they agree. Every legend sits
outside the axes, never over the data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One style for every figure; matplotlib rc keys.
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.grid": True,
    "axes.grid.which": "both",
    "grid.alpha": 0.25,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.4,
    "lines.markersize": 6,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
}
# Colour-blind-safe palette (Okabe & Ito), in the order series are first met.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000",
           "#999999", "#882255", "#AA9900")  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


PRECISION_MARKERS = {"fp32": "o", "bf16": "s", "fp16": "D", "int8": "^"}


@dataclass(frozen=True)
class LatencyPoint:
    """One model in one engine and precision on a latency chart."""

    model: str
    engine: str
    precision: str
    latency_ms: float
    top1: float | None = None  # a fraction; None where no accuracy was measured
    peer: bool = False
    batch: int = 1

    @property
    def series(self) -> str:
        """The line this point is on: its engine and precision."""
        return f"{self.engine} {self.precision}"


@dataclass(frozen=True)
class SeriesStyle:
    """A colour per engine and a marker per precision, shared by the charts of one run."""

    colours: dict[str, str]
    markers: dict[str, str]

    @classmethod
    def of(cls, engines: Sequence[str], precisions: Sequence[str]) -> SeriesStyle:
        """Colours in the order engines are first met; markers fixed per known precision."""
        others = [m for m in MARKERS if m not in PRECISION_MARKERS.values()]
        extra = iter(others)
        markers = {p: PRECISION_MARKERS.get(p) or next(extra, "o") for p in _unique(precisions)}
        return cls(_colours(_unique(engines)), markers)

    @classmethod
    def of_points(cls, points: Sequence[LatencyPoint]) -> SeriesStyle:
        """The style of a chart drawn alone."""
        return cls.of([p.engine for p in points], [p.precision for p in points])


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def _colours(names: Sequence[str]) -> dict[str, str]:
    return {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _plain_log_ticks(axis: Any) -> None:
    """Log-scale tick labels as plain numbers (40, 60, 100), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _legend_outside(ax: Any, handles: list | None = None, title: str | None = None) -> None:
    """A legend to the right of the axes, never over the data."""
    ax.legend(handles=handles, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0, frameon=False)  # fmt: skip


def _series_lines(ax: Any, points: Sequence[LatencyPoint], style: SeriesStyle, y) -> None:
    """One line per engine/precision through its points in order of latency (peers dashed),
    in the engine's colour with the precision's marker."""
    for series in _unique([p.series for p in points]):
        pts = sorted((p for p in points if p.series == series), key=lambda p: p.latency_ms)
        ax.plot([p.latency_ms for p in pts], [y(p) for p in pts],
                "--" if pts[0].peer else "-", color=style.colours[pts[0].engine],
                marker=style.markers[pts[0].precision], markeredgecolor="white",
                markeredgewidth=0.6, zorder=1)  # fmt: skip


def legend_handles(points: Sequence[LatencyPoint], style: SeriesStyle) -> list:
    """The legend of a latency chart: one entry per engine/precision, as drawn."""
    from matplotlib.lines import Line2D

    handles = []
    for series in _unique([p.series for p in points]):
        first = next(p for p in points if p.series == series)
        handles.append(Line2D([], [], color=style.colours[first.engine],
                              marker=style.markers[first.precision],
                              linestyle="--" if first.peer else "-",
                              label=series + (" (peer)" if first.peer else "")))  # fmt: skip
    return handles


def latency_accuracy(
    points: Sequence[LatencyPoint],
    path: str | os.PathLike,
    *,
    title: str,
    xlabel: str,
    ylabel: str = "ImageNet top-1 (%)",
    style: SeriesStyle | None = None,
) -> Path:
    """Write the latency (log x) vs top-1 (y) chart; see the module docstring."""
    plt = _pyplot()
    style = style or SeriesStyle.of_points(points)
    rated = [p for p in points if p.top1 is not None]
    unrated = [p for p in points if p.top1 is None]
    strip = _unique([p.series for p in unrated])
    with plt.rc_context(STYLE):
        rows = 2 if strip and rated else 1
        ratios = [3, max(1, 0.35 * len(strip))] if rows == 2 else [1]
        fig, axes = plt.subplots(rows, 1, sharex=True, squeeze=False,
                                 figsize=(9, 4.2 + (0.3 * len(strip) if rows == 2 else 0)),
                                 gridspec_kw={"height_ratios": ratios})  # fmt: skip
        axes = list(axes[:, 0])
        if rated:
            _rated_axes(axes[0], rated, style, ylabel)
        if strip:
            ax = axes[-1]
            level = {s: i for i, s in enumerate(strip)}
            _series_lines(ax, unrated, style, lambda p: level[p.series])
            for p in unrated:  # no top-1 to tell the models apart: name each point
                ax.annotate(p.model, (p.latency_ms, level[p.series]), xytext=(0, 5),
                            textcoords="offset points", ha="center", fontsize=6)  # fmt: skip
            ax.set_yticks(range(len(strip)), strip)
            ax.set_ylim(-0.6, len(strip) - 0.4)
            if rated:
                ax.set_title("no top-1 measured here (latency only)", fontsize=8, loc="left")
        axes[-1].set_xscale("log")
        _plain_log_ticks(axes[-1].xaxis)
        axes[-1].set_xlabel(xlabel)
        _legend_outside(axes[0], legend_handles(points, style), "engine precision")
        fig.suptitle(title)
        return _save(fig, path)


def _rated_axes(ax: Any, rated: Sequence[LatencyPoint], style: SeriesStyle, ylabel: str) -> None:
    """The top-1 panel: the lines, and each model's name once beside its fastest point."""
    top = lambda p: 100 * p.top1  # noqa: E731
    _series_lines(ax, rated, style, top)
    for model in _unique([p.model for p in sorted(rated, key=lambda p: p.latency_ms)]):
        first = min((p for p in rated if p.model == model), key=lambda p: p.latency_ms)
        ax.annotate(model, (first.latency_ms, top(first)), xytext=(-6, 6),
                    textcoords="offset points", ha="right", fontsize=8)  # fmt: skip
    ax.set_ylabel(ylabel)
    low, high = min(map(top, rated)), max(map(top, rated))
    ax.set_ylim(low - 0.3 - 0.1 * (high - low), high + 0.3 + 0.1 * (high - low))


def batch_scaling(
    points: Sequence[LatencyPoint],
    path: str | os.PathLike,
    *,
    title: str,
    style: SeriesStyle | None = None,
) -> Path:
    """Write per-image latency (log y) against batch size, one line per engine/precision
    (peers dashed).

    :param points: one model's, one per engine/precision and ``batch``; ``latency_ms`` is
        the time per image.
    """
    plt = _pyplot()
    style = style or SeriesStyle.of_points(points)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.2))
        for series in _unique([p.series for p in points]):
            pts = sorted((p for p in points if p.series == series), key=lambda p: p.batch)
            ax.plot([p.batch for p in pts], [p.latency_ms for p in pts],
                    "--" if pts[0].peer else "-", marker=style.markers[pts[0].precision],
                    color=style.colours[pts[0].engine])  # fmt: skip
        sizes = sorted({p.batch for p in points})
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.minorticks_off()
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set(xlabel="batch size", ylabel="median latency per image (ms)")
        _legend_outside(ax, legend_handles(points, style), "engine precision")
        ax.set_title(title)
        return _save(fig, path)


def training_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write loss (log scale) and validation accuracy against epochs, from per-epoch rows.

    Epoch ticks are whole numbers; each panel's legend sits to its right, outside the data.
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    with plt.rc_context(STYLE):
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
        colours = _colours(["train_loss", "val_loss", "val_top1", "val_top5", "val_agreement"])
        losses = _plot_keys(ax_loss, history, epochs, ("train_loss", "val_loss"), colours)
        _plot_keys(ax_acc, history, epochs, ("val_top1", "val_top5", "val_agreement"), colours)
        if losses and min(losses) > 0 and max(losses) > 5 * min(losses):
            # A first epoch far above the rest would flatten every later change on a linear
            # axis; on a log axis each keeps its share of the height.
            ax_loss.set_yscale("log")
        ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
        ax_acc.set(xlabel="epoch", ylabel="fraction", title="validation accuracy", ylim=(0, 1))
        for ax in (ax_loss, ax_acc):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.get_legend_handles_labels()[0]:  # a panel with no data gets no legend
                _legend_outside(ax)
        fig.tight_layout()
        return _save(fig, path)


def _plot_keys(ax: Any, history, epochs: list, keys: Sequence[str], colours: dict) -> list:
    """One line per key that any row has; the values drawn."""
    drawn = []
    for key in keys:
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            ax.plot(epochs, values, marker="o", color=colours[key], label=key)
            drawn += [v for v in values if v is not None]
    return drawn
