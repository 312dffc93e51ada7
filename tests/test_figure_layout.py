"""Every figure of the analysis survives any number of shapes, an all-NaN panel and a single seed.

Each figure is built by the builders the analysis uses (:mod:`evoexp.analysis.plots`), saved as PNG, and measured in
the saved image's pixels: every visible axes is large enough to read, no legend covers an axes, no two tick labels
overprint, and nothing lies outside the image.
"""

from __future__ import annotations

import io
import itertools
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from evoexp.analysis import plots
from evoexp.analysis.aggregate import aggregate_history
from evoexp.surrogate import available_surrogates

NAME, SLOPE, SEED = "params.surrogate.name", "params.surrogate.slope", "params.seed"
ACC, COS = "metrics.snn/test/acc_best", "metrics.alignment/cosine"
CLASSES, FACET = "params.dataset.n_classes", "params.debug.diverge"
DEFAULT_SHAPES = ("atan", "fast_sigmoid", "sigmoid", "superspike", "triangular")
DEFAULT_SLOPES = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0)
SHAPES12 = tuple(available_surrogates()[:12])
DPI = 100
MIN_AXES_INCHES = (1.2, 0.8)  # width, height of every visible axes in the saved image


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def sweep_runs(
    shapes: tuple[str, ...] | list[str],
    slopes: tuple[float, ...],
    seeds: int,
    *,
    facets: tuple[bool, ...] = (False,),
) -> pd.DataFrame:
    """A run frame like a surrogate sweep's; with two ``facets`` the second one's runs all diverged (NaN metrics)."""
    rows = []
    for (k, name), (j, slope), seed, diverged in itertools.product(
        enumerate(shapes), enumerate(slopes), range(seeds), facets
    ):
        acc = min(1.0, max(0.2, 0.95 - 0.06 * j * (k % 3) + 0.01 * seed))
        cos = 0.7 - 0.05 * j * (1 + k % 2) + 0.02 * seed
        rows.append(
            {
                NAME: name,
                SLOPE: slope,
                SEED: seed,
                CLASSES: 5,
                FACET: diverged,
                ACC: math.nan if diverged else acc,
                COS: math.nan if diverged else cos,
            }
        )
    return pd.DataFrame(rows)


def curves(seeds: int, epochs: int = 30) -> pd.DataFrame:
    """Aggregated per-epoch curves of one configuration (accuracies, losses, two layers' gradient norms)."""
    keys = {
        "snn/val/acc": lambda e: 0.2 + 0.75 * (1 - math.exp(-e / 5)),
        "ann/val/acc": lambda e: 0.2 + 0.79 * (1 - math.exp(-e / 4)),
        "snn/train/acc": lambda e: 0.2 + 0.78 * (1 - math.exp(-e / 5)),
        "ann/train/acc": lambda e: 0.2 + 0.8 * (1 - math.exp(-e / 4)),
        "snn/val/loss": lambda e: 1.6 * math.exp(-e / 8) + 0.1,
        "snn/train/loss": lambda e: 1.6 * math.exp(-e / 7) + 0.05,
        "snn/grad_norm/hidden.0": lambda e: 5.0 * math.exp(-e / 20),
        "snn/grad_norm/readout": lambda e: 1.5 * math.exp(-e / 15),
    }
    rows = [
        {"run_id": f"r{seed}", "key": key, "step": epoch, "value": f(epoch) * (1 + 0.01 * seed)}
        for seed in range(seeds)
        for key, f in keys.items()
        for epoch in range(epochs)
    ]
    return aggregate_history(pd.DataFrame(rows))


def _area(box: Bbox) -> float:
    return max(0.0, box.width) * max(0.0, box.height)


def _overlap(a: Bbox, b: Bbox) -> float:
    return _area(Bbox.intersection(a, b) or Bbox([[0, 0], [0, 0]]))


def _tick_labels(ax: matplotlib.axes.Axes, axis: str) -> list[Bbox]:
    owner = ax.xaxis if axis == "x" else ax.yaxis
    low, high = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    boxes = []
    for minor in (False, True):
        for tick in owner.get_major_ticks() if not minor else owner.get_minor_ticks():
            label = tick.label1
            if label.get_visible() and label.get_text() and low <= tick.get_loc() <= high:
                boxes.append(label.get_window_extent())
    return boxes


def check_layout(fig: Figure) -> None:
    """Save ``fig`` as PNG and measure its axes, legends and tick labels in the image's pixels."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)  # draws the figure: the extents below are those of the saved image
    scale = DPI / fig.dpi
    width_px, height_px = fig.get_figwidth() * fig.dpi, fig.get_figheight() * fig.dpi
    axes = [ax for ax in fig.get_axes() if ax.get_visible()]
    assert axes
    legends = [*fig.legends, *(ax.get_legend() for ax in axes if ax.get_legend() is not None)]
    for ax in axes:
        box = ax.get_window_extent()
        assert box.width * scale >= MIN_AXES_INCHES[0] * DPI, f"axes {ax.get_title()!r}: {box.width * scale:.0f} px"
        assert box.height * scale >= MIN_AXES_INCHES[1] * DPI, f"axes {ax.get_title()!r}: {box.height * scale:.0f} px"
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width_px + 1 and box.y1 <= height_px + 1
        for legend in legends:
            covered = _overlap(legend.get_window_extent(), box) / _area(box)
            assert covered < 0.05, f"a legend covers {covered:.0%} of axes {ax.get_title()!r}"
        for axis in ("x", "y"):
            labels = _tick_labels(ax, axis)
            for a, b in itertools.combinations(labels, 2):
                assert _overlap(a, b) <= 1.0, f"{axis} tick labels overprint on axes {ax.get_title()!r}"
    for legend in legends:
        extent = legend.get_window_extent()
        assert extent.x0 >= -1 and extent.x1 <= width_px + 1 and extent.y0 >= -1, "legend outside the figure"


def _default() -> pd.DataFrame:
    return sweep_runs(DEFAULT_SHAPES, DEFAULT_SLOPES, 3)


@pytest.mark.parametrize(
    ("case", "runs"),
    [
        ("default sweep", _default),
        ("one shape", lambda: sweep_runs(["atan"], DEFAULT_SLOPES, 3)),
        ("12 shapes", lambda: sweep_runs(SHAPES12, (1.0, 10.0, 100.0), 3)),
        ("single seed", lambda: sweep_runs(DEFAULT_SHAPES, DEFAULT_SLOPES, 1)),
    ],
)
def test_slope_figures_lay_out(case: str, runs) -> None:
    frame = runs()
    for build in (plots.accuracy_vs_slope_figure, plots.alignment_vs_slope_figure):
        check_layout(build(frame))


def test_slope_figures_with_an_all_nan_panel() -> None:
    runs = sweep_runs(DEFAULT_SHAPES, (1.0, 10.0, 100.0), 2, facets=(False, True))
    for build in (plots.accuracy_vs_slope_figure, plots.alignment_vs_slope_figure):
        fig = build(runs, facet_by=[FACET])
        titles = [ax.get_title() for ax in fig.get_axes() if ax.get_visible()]
        assert titles == ["diverge = false", "diverge = true"]
        empty = fig.get_axes()[1]
        assert [t.get_text() for t in empty.texts][-1].startswith("no ")  # the all-NaN panel says so
        check_layout(fig)


def test_seven_facets_make_three_rows_of_readable_panels() -> None:
    tau = "params.model.tau_mem"
    runs = pd.concat(
        [sweep_runs(DEFAULT_SHAPES, (1.0, 10.0, 100.0), 2).assign(**{tau: value}) for value in range(5, 40, 5)]
    )
    fig = plots.accuracy_vs_slope_figure(runs, facet_by=[tau])
    panels = [ax for ax in fig.get_axes() if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [f"τ_mem = {value}" for value in range(5, 40, 5)]
    assert len({round(ax.get_position().y0, 3) for ax in panels}) == 3  # rows of three, the figure grows taller
    check_layout(fig)


def test_default_sweep_accuracy_figure_marks_chance_and_keeps_one_legend() -> None:
    fig = plots.accuracy_vs_slope_figure(_default())
    assert [ax.get_title() for ax in fig.get_axes()] == ["Whole range", "Zoomed in"]
    assert all(ax.get_legend() is None for ax in fig.get_axes())
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:5] == ["atan", "fast sigmoid", "sigmoid", "SuperSpike (asymptotic)", "triangular"]
    assert "chance level (20%)" in labels  # 5 classes
    whole = fig.get_axes()[0]
    assert any(line.get_linestyle() == ":" and set(line.get_ydata()) == {20.0} for line in whole.lines)


def test_twelve_shapes_make_a_larger_figure_not_smaller_axes() -> None:
    few = plots.alignment_vs_slope_figure(sweep_runs(["atan"], (1.0, 10.0), 2))
    many = plots.alignment_vs_slope_figure(sweep_runs(SHAPES12, (1.0, 10.0), 2))
    check_layout(few)
    check_layout(many)
    assert many.get_figwidth() * many.get_figheight() > 1.3 * few.get_figwidth() * few.get_figheight()
    box_few, box_many = (fig.get_axes()[0].get_window_extent() for fig in (few, many))
    assert box_many.width == pytest.approx(box_few.width, rel=0.15)
    assert box_many.height == pytest.approx(box_few.height, rel=0.15)


@pytest.mark.parametrize("shapes", [("atan",), DEFAULT_SHAPES, SHAPES12])
def test_surrogate_gallery_lays_out(shapes: tuple[str, ...]) -> None:
    fig = plots.surrogate_gallery_figure(sweep_runs(shapes, (1.0, 10.0, 100.0), 1))
    check_layout(fig)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [r"$\beta$ = 1", r"$\beta$ = 10", r"$\beta$ = 100"]


def test_surrogate_gallery_shows_every_slope_on_a_common_scale() -> None:
    fig = plots.surrogate_gallery_figure(sweep_runs(["fast_sigmoid", "atan"], (1.0, 10.0), 1))
    derivative = fig.get_axes()[0]
    peaks = [float(np.max(line.get_ydata())) for line in derivative.lines]
    assert peaks == pytest.approx([1.0, 1.0])  # β = 1 is as tall as β = 10
    primitive = fig.get_axes()[2]
    for line in primitive.lines:
        assert (float(np.min(line.get_ydata())), float(np.max(line.get_ydata()))) == pytest.approx((0.0, 1.0))


@pytest.mark.parametrize("seeds", [1, 3])
def test_curve_figures_lay_out_and_say_which_configuration(seeds: int) -> None:
    title = "Training curves, atan, β = 5 (mean over 3 seeds): the best mean SNN test accuracy (95.0%) of 35"
    for fig in (
        plots.training_curves_figure(curves(seeds), title=title),
        plots.grad_norm_figure(curves(seeds), title=title),
    ):
        check_layout(fig)
        assert fig.get_suptitle().replace("\n", " ") == title


def test_figures_without_data_raise_no_data() -> None:
    diverged = sweep_runs(DEFAULT_SHAPES, DEFAULT_SLOPES, 2).assign(**{ACC: math.nan, COS: math.nan})
    with pytest.raises(plots.NoData, match="no SNN test accuracy values"):
        plots.accuracy_vs_slope_figure(diverged)
    with pytest.raises(plots.NoData, match="alignment"):
        plots.alignment_vs_slope_figure(diverged.drop(columns=[COS]))
    with pytest.raises(plots.NoData, match="gradient norms"):
        plots.grad_norm_figure(curves(2).query("not key.str.startswith('snn/grad_norm/')"), title="t")
    with pytest.raises(plots.NoData, match="every run diverged"):
        plots.select_configuration(diverged, diverged[[NAME, SLOPE]].drop_duplicates(), pd.Series([math.nan] * 3))
    with pytest.raises(plots.NoData, match="registered"):
        plots.surrogate_gallery_figure(diverged.assign(**{NAME: "snntorch:atan"}))
