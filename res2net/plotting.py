"""Every picture the package draws, in one style: the latency charts and the training curves.

matplotlib, rendered to files only (the ``Agg`` backend: no display needed). One style for
all figures (fonts, grid, colours) lives in :data:`STYLE`; the callers pass plain values,
so this module knows nothing of engines, checkpoints or benchmarks.

Charts:

* :func:`latency_accuracy`: latency (x, log scale) against top-1 (y), the layout
  PaddleClas's and timm's model-zoo charts use. One marker shape per model, labelled with
  its name; one line per engine/precision joining its models in order of latency; peers
  dashed. Points without a measured accuracy go on a strip below, on the same latency axis.
* :func:`batch_scaling`: per-image latency against batch size, one line per engine.
* :func:`training_curves`: loss (log scale) and validation accuracy against epochs.
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


@dataclass(frozen=True)
class LatencyPoint:
    """One model in one engine/precision (``series``) on a latency chart."""

    model: str
    series: str
    latency_ms: float
    top1: float | None = None  # a fraction; None where no accuracy was measured
    peer: bool = False


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


def _series_lines(ax: Any, points: Sequence[LatencyPoint], colours: dict, y) -> None:
    """One line per series through its points in order of latency; peers dashed."""
    for series in _unique([p.series for p in points]):
        pts = sorted((p for p in points if p.series == series), key=lambda p: p.latency_ms)
        style = "--" if pts[0].peer else "-"
        ax.plot([p.latency_ms for p in pts], [y(p) for p in pts], style,
                color=colours[series], zorder=1)  # fmt: skip


def _model_markers(ax: Any, points, colours: dict, markers: dict, y) -> None:
    for p in points:
        ax.scatter(p.latency_ms, y(p), marker=markers[p.model], color=colours[p.series],
                   edgecolors="white", linewidths=0.6, s=42, zorder=2)  # fmt: skip


def latency_accuracy(
    points: Sequence[LatencyPoint],
    path: str | os.PathLike,
    *,
    title: str,
    xlabel: str,
    ylabel: str = "ImageNet top-1 (%)",
) -> Path:
    """Write the latency (log x) vs top-1 (y) chart; see the module docstring."""
    from matplotlib.lines import Line2D

    plt = _pyplot()
    series = _unique([p.series for p in points])
    colours = _colours(series)
    models = _unique([p.model for p in sorted(points, key=lambda p: p.latency_ms)])
    markers = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}
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
            ax = axes[0]
            top = lambda p: 100 * p.top1  # noqa: E731
            _series_lines(ax, rated, colours, top)
            _model_markers(ax, rated, colours, markers, top)
            for model in models:  # the name once, beside the model's fastest point
                mine = [p for p in rated if p.model == model]
                if mine:
                    first = min(mine, key=lambda p: p.latency_ms)
                    ax.annotate(model, (first.latency_ms, top(first)), xytext=(-6, 6),
                                textcoords="offset points", ha="right", fontsize=8)  # fmt: skip
            ax.set_ylabel(ylabel)
            low, high = min(map(top, rated)), max(map(top, rated))
            ax.set_ylim(low - 0.3 - 0.1 * (high - low), high + 0.3 + 0.1 * (high - low))
        if strip:
            ax = axes[-1]
            level = {s: i for i, s in enumerate(strip)}
            place = lambda p: level[p.series]  # noqa: E731
            _series_lines(ax, unrated, colours, place)
            _model_markers(ax, unrated, colours, markers, place)
            ax.set_yticks(range(len(strip)), strip)
            ax.set_ylim(-0.6, len(strip) - 0.4)
            if rated:
                ax.set_title("no top-1 measured here (latency only)", fontsize=8, loc="left")
        axes[-1].set_xscale("log")
        _plain_log_ticks(axes[-1].xaxis)
        axes[-1].set_xlabel(xlabel)
        handles = [Line2D([], [], color=colours[s], linestyle="--" if _is_peer(points, s)
                          else "-", label=s + (" (peer)" if _is_peer(points, s) else ""))
                   for s in series]  # fmt: skip
        handles += [Line2D([], [], color="#444", marker=markers[m], linestyle="", label=m)
                    for m in models]  # fmt: skip
        _legend_outside(axes[0], handles, "engine / model")
        fig.suptitle(title)
        return _save(fig, path)


def _is_peer(points: Sequence[LatencyPoint], series: str) -> bool:
    return any(p.peer for p in points if p.series == series)


def batch_scaling(
    per_image_ms: dict[str, dict[int, float]],
    path: str | os.PathLike,
    *,
    title: str,
    peers: Sequence[str] = (),
) -> Path:
    """Write per-image latency (log y) against batch size, one line per series (peers dashed).

    :param per_image_ms: series name -> {batch size: ms per image}.
    """
    plt = _pyplot()
    colours = _colours(list(per_image_ms))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.2))
        for name, by_batch in per_image_ms.items():
            sizes = sorted(by_batch)
            ax.plot(sizes, [by_batch[b] for b in sizes], "--" if name in peers else "-",
                    marker="o", color=colours[name],
                    label=name + (" (peer)" if name in peers else ""))  # fmt: skip
        sizes = sorted({b for by_batch in per_image_ms.values() for b in by_batch})
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.minorticks_off()
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set(xlabel="batch size", ylabel="median latency per image (ms)")
        _legend_outside(ax, title="engine")
        ax.set_title(title)
        return _save(fig, path)


def training_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write loss (log scale) and validation accuracy against epochs, from per-epoch rows."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    with plt.rc_context(STYLE):
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
        colours = _colours(["train_loss", "val_loss", "val_top1", "val_top5", "val_agreement"])
        losses = []
        for key in ("train_loss", "val_loss"):
            values = [row.get(key) for row in history]
            if any(v is not None for v in values):
                ax_loss.plot(epochs, values, marker="o", color=colours[key], label=key)
                losses += [v for v in values if v is not None]
        for key in ("val_top1", "val_top5", "val_agreement"):
            if any(key in row for row in history):
                ax_acc.plot(epochs, [row.get(key) for row in history], marker="o",
                            color=colours[key], label=key)  # fmt: skip
        if losses and min(losses) > 0 and max(losses) > 5 * min(losses):
            # A first epoch far above the rest would flatten every later change on a linear
            # axis; on a log axis each keeps its share of the height.
            ax_loss.set_yscale("log")
        ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
        ax_acc.set(xlabel="epoch", ylabel="fraction", title="validation accuracy", ylim=(0, 1))
        for ax in (ax_loss, ax_acc):
            ax.legend(frameon=False)
        fig.tight_layout()
        return _save(fig, path)
