r"""The figures of a sweep, built from its records: run frame (and metric histories) -> seed aggregates -> Figure.

The builders here are pure: no MLflow, no files. :mod:`evoexp.job.analysis.pipeline` loads the records, calls them and
saves what they return; tests and notebooks call them on any frame of the same columns. Each builder lays out its
figure for any number of series and panels (:func:`evoexp.figures.panel_grid`, one shared legend below the axes)
and raises :class:`NoData` with a one-line reason when the records hold nothing to draw, so that a sweep of diverged
or failed jobs, or one without some check, skips that figure instead of failing.

Figures (file stems of :data:`FIGURE_STEMS`):

* ``accuracy_vs_slope``: SNN test accuracy (%) against the surrogate slope β, one line per shape (mean over seeds,
  95% bootstrap interval, every seed a point), chance level dotted; the whole 0–100% range and zoomed in, or one
  panel per value of any other varying parameter.
* ``alignment_vs_slope``: the cosine between the surrogate gradient and the gradient of the smoothed loss, per slope.
* ``accuracy_vs_scale``: SNN test accuracy (%) against the surrogate's scale.
* ``surrogate_gallery``: the pseudo-derivative :math:`g / \max g` and the primitive (rescaled to [0, 1]) of every
  shape of the sweep at its smallest, middle and largest slope.
* ``training_curves`` and ``grad_norm_per_layer``: per-epoch accuracy, error, loss and per-layer gradient L2 norms of
  one configuration (:func:`select_configuration`), the title saying which, over how many seeds, and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from evoexp import figures
from evoexp import keys as schema
from evoexp.analysis.aggregate import aggregate
from evoexp.labels import config_label
from evoexp.surrogate import available_surrogates

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_STEMS",
    "NoData",
    "Selection",
    "accuracy_vs_scale_figure",
    "accuracy_vs_slope_figure",
    "alignment_vs_slope_figure",
    "chance_level",
    "grad_norm_figure",
    "select_configuration",
    "surrogate_gallery_figure",
    "training_curves_figure",
]

FIGURE_STEMS = (
    "accuracy_vs_slope",
    "alignment_vs_slope",
    "accuracy_vs_scale",
    "surrogate_gallery",
    "training_curves",
    "grad_norm_per_layer",
)
NAME_COL = schema.param(schema.SURROGATE_NAME_PARAM)
SLOPE_COL = schema.param(schema.SURROGATE_SLOPE_PARAM)
SCALE_COL = schema.param(schema.SURROGATE_SCALE_PARAM)
ACCURACY = schema.metric(schema.SNN_TEST_ACC)
ALIGNMENT = schema.metric(schema.ALIGNMENT_COSINE)
ACCURACY_CURVES = (schema.SNN_VAL_ACC, schema.ANN_VAL_ACC, schema.SNN_TRAIN_ACC, schema.ANN_TRAIN_ACC)
LOSS_CURVES = (schema.SNN_VAL_LOSS, schema.ANN_VAL_LOSS, schema.SNN_TRAIN_LOSS, schema.ANN_TRAIN_LOSS)
CURVE_KEYS = (*ACCURACY_CURVES, *LOSS_CURVES)
"""Per-epoch metrics of :func:`training_curves_figure` (same order in every panel: a series keeps its colour)."""
GALLERY_SLOPES = (1.0, 10.0, 100.0)
"""Slopes of the gallery when the runs have none."""

Plot = Callable[["Axes", pd.DataFrame, pd.DataFrame, "float | None"], object]


class NoData(ValueError):
    """The records hold nothing that a figure could draw; the message says what is missing, in one line."""


def chance_level(runs: pd.DataFrame) -> float | None:
    """Chance-level accuracy ``1 / n_classes`` (a fraction) of the runs' dataset; None unless one class count."""
    column = schema.param(schema.N_CLASSES_PARAM)
    if column not in runs.columns:
        return None
    counts = pd.to_numeric(runs[column], errors="coerce").dropna().unique()
    return 1.0 / float(counts[0]) if len(counts) == 1 and counts[0] >= 1 else None


def _require(runs: pd.DataFrame, metric: str, what: str) -> None:
    if metric not in runs.columns or runs[metric].notna().sum() == 0:
        raise NoData(f"no {what} values ({schema.strip_prefix(metric)}) in the runs")


def _check_columns(runs: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in runs.columns]
    if missing:
        raise NoData(f"the runs have no param {[schema.strip_prefix(c) for c in missing]}")


def _select(frame: pd.DataFrame, values: dict[str, object]) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in values.items():
        mask &= (frame[column].isna() if pd.isna(value) else frame[column] == value).to_numpy(dtype=bool)
    return frame[mask]


def _metric_figure(
    runs: pd.DataFrame,
    *,
    metric: str,
    what: str,
    by: Sequence[str],
    facet_by: Sequence[str],
    plot: Plot,
    zoomed: Plot | None,
    confidence: float,
) -> Figure:
    """One panel per value combination of ``facet_by`` (titled in words), or the whole range and zoomed in.

    Raises:
        NoData: The runs lack a column of ``by`` or ``facet_by``, or every value of ``metric`` (``what``, in words).
    """
    _check_columns(runs, [*by, *facet_by])
    _require(runs, metric, what)
    stats = aggregate(runs, by=[*facet_by, *by], metrics=[metric], confidence=confidence)
    if not facet_by and zoomed is not None:
        fig, axes = figures.panel_grid(2)
        for ax, draw, title in zip(axes, (plot, zoomed), ("Whole range", "Zoomed in")):
            draw(ax, stats, runs, chance_level(runs))
            ax.set_title(title)
    else:
        facets = list(stats.groupby(list(facet_by), dropna=False, sort=True)) if facet_by else [((), stats)]
        fig, axes = figures.panel_grid(len(facets))
        for ax, (key, facet) in zip(axes, facets):
            values = dict(zip(facet_by, key if isinstance(key, tuple) else (key,)))
            points = _select(runs, values)
            plot(ax, facet, points, chance_level(points))
            if values:
                ax.set_title(config_label(values))
    figures.shared_legend(fig)
    return fig


def _accuracy(ax: Axes, stats: pd.DataFrame, points: pd.DataFrame, chance: float | None, *, full: bool) -> None:
    figures.plot_accuracy_vs_slope(ax, stats, points=points, full_range=full, chance=chance)


def accuracy_vs_slope_figure(runs: pd.DataFrame, *, facet_by: Sequence[str] = (), confidence: float = 0.95) -> Figure:
    """SNN test accuracy (%) against the slope, one line per shape; chance level dotted.

    Args:
        runs: A run frame (params ``surrogate.name``, ``surrogate.slope``, metric ``snn/test/acc_best``).
        facet_by: Other varying params: one panel per value combination (on the 0–100% range); without them, two
            panels, the whole range and zoomed in on the data.
        confidence: Coverage of the bootstrap bands.

    Raises:
        NoData: Without the params or any accuracy value.
    """
    return _metric_figure(
        runs,
        metric=ACCURACY,
        what="SNN test accuracy",
        by=[NAME_COL, SLOPE_COL],
        facet_by=facet_by,
        plot=partial(_accuracy, full=True),
        zoomed=partial(_accuracy, full=False),
        confidence=confidence,
    )


def _alignment(ax: Axes, stats: pd.DataFrame, points: pd.DataFrame, _chance: float | None) -> None:
    figures.plot_alignment_vs_slope(ax, stats, points=points)


def alignment_vs_slope_figure(runs: pd.DataFrame, *, facet_by: Sequence[str] = (), confidence: float = 0.95) -> Figure:
    """Gradient alignment (cosine of surrogate and smoothed-loss gradients) against the slope, one line per shape.

    Raises:
        NoData: Without the params or any alignment value (the sweep ran no alignment check).
    """
    return _metric_figure(
        runs,
        metric=ALIGNMENT,
        what="gradient alignment",
        by=[NAME_COL, SLOPE_COL],
        facet_by=facet_by,
        plot=_alignment,
        zoomed=None,
        confidence=confidence,
    )


def _scale(
    ax: Axes, stats: pd.DataFrame, points: pd.DataFrame, chance: float | None, *, series: Sequence[str], full: bool
) -> None:
    figures.plot_accuracy_vs_scale(ax, stats, series=series, points=points, full_range=full, chance=chance)


def accuracy_vs_scale_figure(
    runs: pd.DataFrame,
    *,
    series: Sequence[str] = (NAME_COL,),
    facet_by: Sequence[str] = (),
    confidence: float = 0.95,
) -> Figure:
    """SNN test accuracy (%) against the surrogate's scale, one line per value of ``series``; chance level dotted.

    Raises:
        NoData: Without the params or any accuracy value.
    """
    return _metric_figure(
        runs,
        metric=ACCURACY,
        what="SNN test accuracy",
        by=[*series, SCALE_COL],
        facet_by=facet_by,
        plot=partial(_scale, series=series, full=True),
        zoomed=partial(_scale, series=series, full=False),
        confidence=confidence,
    )


def gallery_slopes(runs: pd.DataFrame) -> list[float]:
    """The smallest, middle and largest slope of the runs (:data:`GALLERY_SLOPES` when they have none)."""
    if SLOPE_COL not in runs.columns or not pd.api.types.is_numeric_dtype(runs[SLOPE_COL]):
        return list(GALLERY_SLOPES)
    found = np.unique(runs[SLOPE_COL].dropna().to_numpy(dtype=np.float64))
    if not found.size:
        return list(GALLERY_SLOPES)
    return sorted({float(found[0]), float(found[found.size // 2]), float(found[-1])})


def surrogate_gallery_figure(runs: pd.DataFrame) -> Figure:
    """The gallery (:func:`evoexp.figures.surrogate_gallery`) of the evoexp shapes in the runs at their slopes.

    Raises:
        NoData: If no run used a registered evoexp shape (e.g. a sweep of peer-library surrogates).
    """
    _check_columns(runs, [NAME_COL])
    names = sorted(set(runs[NAME_COL].dropna().astype(str)) & set(available_surrogates()))
    if not names:
        raise NoData("no run used a registered evoexp surrogate shape")
    return figures.surrogate_gallery(names, gallery_slopes(runs))


@dataclass(frozen=True)
class Selection:
    """The configuration whose curves are drawn, and why.

    Attributes:
        runs: Its runs (one per seed).
        label: The configuration in words (``atan, β = 5``; empty when the sweep has one configuration).
        reason: Why this one, e.g. ``chosen for the best mean SNN test accuracy (95.0%) of 35 configurations``.
    """

    runs: pd.DataFrame
    label: str
    reason: str

    def title(self, what: str) -> str:
        """A figure title: what it shows, of which configuration, over how many seeds, and why this one."""
        n = len(self.runs)
        seeds = f"mean over {n} seeds (band: 95% CI of the mean)" if n > 1 else "one seed"
        subject = f"{what} of {self.label}" if self.label else what
        return f"{subject}, {seeds}; {self.reason}"


def select_configuration(runs: pd.DataFrame, rows: pd.DataFrame, means: pd.Series) -> Selection:
    """The configuration (a row of a table) with the best finite mean SNN test accuracy.

    Args:
        runs: The run frame.
        rows: Row keys of a table (one configuration per row; columns are run-frame params).
        means: Mean SNN test accuracy (fraction) of each row, NaN where every run diverged.

    Raises:
        NoData: If no configuration has a test accuracy (every run diverged or failed).
    """
    values = means.to_numpy(dtype=np.float64)
    if not np.isfinite(values).any():
        raise NoData("no configuration has an SNN test accuracy (every run diverged or failed)")
    best = int(np.nanargmax(values))
    config = {column: rows[column].iloc[best] for column in rows.columns}
    selected = _select(runs, config)
    accuracy = f"{100.0 * values[best]:.1f}%"
    if len(rows) > 1:
        reason = f"chosen for the best mean SNN test accuracy ({accuracy}) of {len(rows)} configurations"
    else:
        reason = f"the sweep's only configuration (SNN test accuracy {accuracy})"
    return Selection(runs=selected, label=config_label(config), reason=reason)


def training_curves_figure(curves: pd.DataFrame, *, title: str) -> Figure:
    """Accuracy (%), error (%, log scale) and loss per epoch of one configuration, SNN and ANN, train and val.

    Args:
        curves: :func:`evoexp.analysis.aggregate.aggregate_history` of the configuration's runs.
        title: The figure's title (:meth:`Selection.title`).

    Raises:
        NoData: Without any per-epoch accuracy or loss.
    """
    present = set(curves[schema.HISTORY_KEY]) if schema.HISTORY_KEY in curves.columns else set()
    panels = [
        (ACCURACY_CURVES, "Accuracy (%)", 100.0, False),
        (ACCURACY_CURVES, "Error (%), log scale", 100.0, True),
        (LOSS_CURVES, "Loss (cross-entropy)", 1.0, False),
    ]
    panels = [p for p in panels if present.intersection(p[0])]
    if not panels:
        raise NoData("no per-epoch accuracy or loss (snn/val/acc, snn/train/loss, ...) in the runs' history")
    fig, axes = figures.panel_grid(len(panels))
    for ax, (keys, ylabel, scale, error) in zip(axes, panels):
        figures.plot_training_curves(ax, curves, keys=keys, ylabel=ylabel, scale=scale, error=error)
    figures.figure_title(fig, title)
    figures.shared_legend(fig)
    return fig


def grad_norm_figure(curves: pd.DataFrame, *, title: str) -> Figure:
    r"""Per-layer gradient L2 norm :math:`\|\partial L/\partial\theta_l\|_2` per epoch of one configuration.

    Args:
        curves: :func:`evoexp.analysis.aggregate.aggregate_history` of the configuration's runs.
        title: The figure's title (:meth:`Selection.title`).

    Raises:
        NoData: Without any ``snn/grad_norm/<layer>`` curve (e.g. every run of the configuration diverged).
    """
    prefix = schema.GRAD_NORM_LAYER_PREFIX
    keys = curves[schema.HISTORY_KEY].astype(str) if schema.HISTORY_KEY in curves.columns else pd.Series(dtype=str)
    if not keys.str.startswith(prefix).any():
        raise NoData(f"no per-layer gradient norms ({prefix}<layer>) in the runs' history")
    fig, axes = figures.panel_grid(1)
    figures.plot_grad_norm_per_layer(axes[0], curves)
    figures.figure_title(fig, title)
    figures.shared_legend(fig)
    return fig
