"""The pictures read as a person expects: whole epochs on the curves' x axis, legends beside
the data rather than over it, one colour per engine and one marker per precision across both
latency charts, and a label that says what input was timed. Each check inspects the
matplotlib figure itself as it is saved."""

from __future__ import annotations

import warnings

import matplotlib.figure
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from res2net.bench.report import Measurement, plot
from res2net.plotting import training_curves


@pytest.fixture
def saved(monkeypatch) -> list:
    """The figures the package saves, kept (rendered, not written) for inspection."""
    figures = []

    def keep(fig, *args, **kwargs):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()  # lay it out as saving would
        RENDERERS[id(fig)] = canvas.get_renderer()
        figures.append(fig)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures


RENDERERS: dict = {}


def _legend_beside(ax) -> bool:
    legend = ax.get_legend()
    renderer = RENDERERS[id(ax.figure)]
    box, data = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    return box.x0 >= data.x1 or box.x1 <= data.x0 or box.y0 >= data.y1 or box.y1 <= data.y0


def test_two_epoch_curves_have_whole_epoch_ticks_and_legends_beside(saved, tmp_path):
    history = [
        {"epoch": 1, "train_loss": 2.0, "val_loss": 1.5, "val_top1": 0.6, "val_top5": 0.9},
        {"epoch": 2, "train_loss": 1.0, "val_loss": 0.9, "val_top1": 0.8, "val_top5": 0.95},
    ]
    training_curves(history, tmp_path / "curves.png")
    (fig,) = saved
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert _legend_beside(ax), ax.get_title()


def test_curves_without_validation_draw_no_empty_legend(saved, tmp_path):
    """A run without validation rows has nothing on the accuracy panel: no legend there,
    and no matplotlib warning about one."""
    history = [{"epoch": e, "train_loss": 1.0 / e} for e in (1, 2, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        training_curves(history, tmp_path / "curves.png")
    loss, acc = saved[0].axes
    assert loss.get_legend() is not None and acc.get_legend() is None


def _rows() -> list[Measurement]:
    rows = []
    for model, base in (("Res2Net50_26w_4s", 40.0), ("Res2Net101_vd_26w_4s", 80.0)):
        for engine, speed in (("eager", 1.0), ("openvino", 0.6), ("onnxruntime", 0.7)):
            for precision, factor in (("fp32", 1.0), ("int8", 0.4)):
                for batch in (1, 4):
                    ms = base * speed * factor * batch * 0.8
                    top1 = 0.79 if precision == "fp32" else None
                    rows.append(Measurement(model, engine, precision, batch, ms, ms, ms / batch,
                                            top1=top1, input_side=32))  # fmt: skip
    return rows


def _styles(fig) -> dict[str, tuple[str, str]]:
    """Legend label -> (colour, marker) of a latency chart."""
    legend = fig.axes[0].get_legend()
    return {
        text.get_text(): (handle.get_color(), handle.get_marker())
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }


def test_latency_charts_share_one_colour_per_engine_and_one_marker_per_precision(
    saved, tmp_path
):
    plot(_rows(), tmp_path / "latency.png", where="test machine")
    charts = [_styles(fig) for fig in saved]
    assert len(charts) == 2 and charts[0] == charts[1], charts
    styles = charts[0]
    assert len(styles) == 6
    colours = {label.split()[0]: set() for label in styles}
    markers = {label.split()[1]: set() for label in styles}
    for label, (colour, marker) in styles.items():
        engine, precision = label.split()
        colours[engine].add(colour)
        markers[precision].add(marker)
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({c for (c,) in colours.values()}) == 3  # engines told apart by colour
    assert all(len(m) == 1 for m in markers.values()), markers
    assert len({m for (m,) in markers.values()}) == 2  # precisions told apart by marker
    for fig in saved:
        assert _legend_beside(fig.axes[0])
    # The lines drawn carry the legend's styles, not only the legend.
    drawn = {(line.get_color(), line.get_marker()) for line in saved[1].axes[0].get_lines()}
    assert drawn == set(styles.values())


def test_latency_chart_says_what_input_was_timed(saved, tmp_path):
    plot(_rows(), tmp_path / "latency.png", where="test machine")
    assert "random 32x32 input" in saved[0].axes[-1].get_xlabel()
    assert "random 32x32 input" in saved[1].axes[0].get_title()
