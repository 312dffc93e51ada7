"""Paper figures: one print-ready style, plot functions that draw on a given ``ax``, layout helpers, one save function.

Every ``plot_*`` function takes its data and a matplotlib ``Axes``, draws on it and returns it, so figures
compose freely (records -> :mod:`evoexp.analysis` aggregation -> plotting). :func:`new_figure` makes a figure in
the house style at one- or two-column width, :func:`panel_grid` one whose height grows with its number of panels,
and :func:`save_figure` writes it as PDF (vector, TrueType fonts) and PNG. Colours come from the Okabe–Ito palette,
which stays distinguishable under the common colour-vision deficiencies; beyond eight series the line style changes
too. Data frames are those of :mod:`evoexp.analysis` (aggregated stats with ``mean``, ``ci_low``, ``ci_high``
columns). Bands are the 95 % percentile-bootstrap interval of the mean over seeds (:mod:`evoexp.stats`),
which stays inside the metric's range; sweep figures also draw every seed as a point, and the legend says so.
Accuracies are drawn in percent.

Layout: a plot function puts its legend on its axes, which suits a quick look; a figure with several series or
panels calls :func:`shared_legend`, which moves every legend into one legend below the axes, in as many columns as
fit the figure's width, and makes the figure taller by the legend's height, so that no legend covers data and the
axes keep their size whatever the number of series. :func:`figure_title` does the same for a (wrapped) title.
An axes without data says so in its middle. Legends and titles are words (:mod:`evoexp.labels`: ``atan, β = 5``),
not config keys. The module leaves the backend alone (notebooks keep theirs); the ``evoexp.job.analysis`` command
line selects the non-interactive Agg backend.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator, NullLocator

from evoexp import keys as schema
from evoexp.labels import config_label, layer_label, param_name, surrogate_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend
    from matplotlib.text import Text

    from evoexp.surrogate import SurrogateGradient

Width = Literal["single", "double"]

#: Okabe & Ito (2008) colour-blind-safe palette, yellow last (weakest on white).
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#000000",
    "#F0E442",
)
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Text widths in inches: one column of a two-column paper, and the full page width.
WIDTHS: dict[str, float] = {"single": 3.5, "double": 7.16}
FIGURE_FORMATS: tuple[str, ...] = ("pdf", "png")
CI_ALPHA = 0.2
POINT_ALPHA = 0.45
BAND_LABEL = "95% CI of the mean (bootstrap)"
POINT_LABEL = "one seed"
NO_DATA = "no data"
#: Panels per row of :func:`panel_grid`, and the height range of one row in inches.
MAX_PANEL_COLUMNS = 3
ROW_HEIGHT_RANGE: tuple[float, float] = (1.8, 2.6)
#: Height in inches of one row of the surrogate gallery (a derivative row or a primitive row).
GALLERY_ROW_HEIGHT = 1.3
GRAD_NORM_LABEL = "Gradient L2 norm of the layer\n(mean over the epoch's batches)"

STYLE: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.size": 8,
    "axes.titlesize": 8,
    "figure.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.4,
    "axes.prop_cycle": cycler(color=PALETTE),
    "legend.frameon": False,
    "figure.dpi": 150,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}

_SERIES_LABELS = {
    schema.SNN_TRAIN_ACC: "SNN train",
    schema.SNN_VAL_ACC: "SNN val",
    schema.ANN_TRAIN_ACC: "ANN train",
    schema.ANN_VAL_ACC: "ANN val",
    schema.SNN_TRAIN_LOSS: "SNN train",
    schema.SNN_VAL_LOSS: "SNN val",
    schema.ANN_TRAIN_LOSS: "ANN train",
    schema.ANN_VAL_LOSS: "ANN val",
}


def apply_style() -> None:
    """Set the house style in matplotlib's global ``rcParams`` (done by :func:`new_figure`)."""
    mpl.style.use(STYLE)


def figure_size(width: Width = "single", *, aspect: float = 0.75) -> tuple[float, float]:
    """Return ``(width, height)`` in inches for a one- or two-column figure.

    Args:
        width: ``"single"`` (one column) or ``"double"`` (page width).
        aspect: Height divided by width.

    Raises:
        ValueError: If ``width`` is unknown or ``aspect`` is not positive.
    """
    if width not in WIDTHS:
        raise ValueError(f"width must be one of {list(WIDTHS)}, got {width!r}")
    if not aspect > 0:
        raise ValueError(f"aspect must be > 0, got {aspect!r}")
    return WIDTHS[width], WIDTHS[width] * aspect


def new_figure(
    nrows: int = 1, ncols: int = 1, *, width: Width = "single", aspect: float = 0.75, **kwargs: Any
) -> tuple[Figure, Any]:
    """Create a figure in the house style with a grid of axes (``plt.subplots`` with constrained layout).

    Args:
        nrows: Rows of axes.
        ncols: Columns of axes.
        width: ``"single"`` or ``"double"`` column width.
        aspect: Height of the whole figure divided by its width.
        **kwargs: Passed to :func:`matplotlib.pyplot.subplots` (e.g. ``sharex``, ``squeeze``).

    Returns:
        ``(figure, axes)`` as returned by ``plt.subplots``.
    """
    apply_style()
    return plt.subplots(nrows, ncols, figsize=figure_size(width, aspect=aspect), layout="constrained", **kwargs)


def panel_grid(n_panels: int, *, max_cols: int = MAX_PANEL_COLUMNS) -> tuple[Figure, list[Axes]]:
    """Create a figure with ``n_panels`` axes in rows of at most ``max_cols``, its height growing with the rows.

    One panel is one column wide (:data:`WIDTHS` ``"single"``), several fill the page width; each row is as tall as
    a panel needs to stay readable (:data:`ROW_HEIGHT_RANGE`), so that a figure of twelve facets is taller, not
    squeezed. Unused cells of the last row are hidden.

    Args:
        n_panels: Number of axes (>= 1).
        max_cols: Largest number of panels per row.

    Returns:
        ``(figure, axes)``, the axes as a flat list of length ``n_panels`` in reading order.

    Raises:
        ValueError: If ``n_panels`` or ``max_cols`` is below 1.
    """
    if n_panels < 1 or max_cols < 1:
        raise ValueError(f"n_panels and max_cols must be >= 1, got {n_panels!r} and {max_cols!r}")
    apply_style()
    ncols = min(max_cols, n_panels)
    nrows = math.ceil(n_panels / ncols)
    width = WIDTHS["single" if ncols == 1 else "double"]
    low, high = ROW_HEIGHT_RANGE
    row_height = min(high, max(low, 0.8 * width / ncols))
    fig, grid = plt.subplots(nrows, ncols, figsize=(width, nrows * row_height), layout="constrained", squeeze=False)
    cells = list(grid.flat)
    for ax in cells[n_panels:]:
        ax.set_visible(False)
    return fig, cells[:n_panels]


def _grow(fig: Figure, *, height: float = 0.0, width: float = 0.0) -> None:
    """Make ``fig`` taller (wider) by ``height`` (``width``) pixels at its dpi plus a pad: its axes keep their size."""
    if height:
        fig.set_figheight(fig.get_figheight() + height / fig.dpi + 0.05)
    if width:
        fig.set_figwidth(fig.get_figwidth() + width / fig.dpi + 0.05)


LegendPlace = Literal["auto", "below", "right"]


def _below(
    fig: Figure, handles: Sequence[Any], labels: Sequence[str], title: str | None, ncols: int | None
) -> tuple[Legend, int]:
    """A legend below the axes in as many columns as fit the figure's width (or ``ncols``), and its columns."""
    max_width = 0.98 * fig.get_figwidth() * fig.dpi
    columns = ncols or len(labels)
    legend = fig.legend(handles, labels, loc="outside lower center", ncols=columns, title=title)
    while not ncols and columns > 1 and legend.get_window_extent().width > max_width:
        legend.remove()
        columns -= 1
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=columns, title=title)
    balanced = math.ceil(len(labels) / math.ceil(len(labels) / columns))
    if not ncols and balanced != columns:
        legend.remove()
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=balanced, title=title)
        columns = balanced
    return legend, columns


def figure_legend(
    fig: Figure,
    handles: Sequence[Any],
    labels: Sequence[str],
    *,
    title: str | None = None,
    ncols: int | None = None,
    place: LegendPlace = "auto",
) -> Legend:
    """Put one legend outside the axes of ``fig`` and grow ``fig`` by the legend, so that the axes keep their size.

    Below the axes, the legend has as many columns as fit the figure's width; right of them, one column (two when
    one would be taller than the figure).

    Args:
        fig: The figure (constrained layout).
        handles: Legend handles.
        labels: Their labels.
        title: Legend title.
        ncols: Columns of a legend below (default: the most that fit the figure's width, balanced over the rows).
        place: ``"below"``, ``"right"`` or ``"auto"``: right of a one-column-wide figure whose legend would take more
            than two rows below it, else below.

    Returns:
        The figure legend.
    """
    if place not in ("auto", "below", "right"):
        raise ValueError(f"place must be 'auto', 'below' or 'right', got {place!r}")
    if place != "right":
        legend, columns = _below(fig, handles, labels, title, ncols)
        rows = math.ceil(len(labels) / columns)
        if place == "below" or rows <= 2 or fig.get_figwidth() > WIDTHS["single"] + 0.01:
            _grow(fig, height=legend.get_window_extent().height)
            return legend
        legend.remove()
    height = fig.get_figheight() * fig.dpi
    legend = fig.legend(handles, labels, loc="outside right upper", ncols=1, title=title)
    if legend.get_window_extent().height > 0.95 * height and len(labels) > 1:
        legend.remove()
        legend = fig.legend(handles, labels, loc="outside right upper", ncols=2, title=title)
    extent = legend.get_window_extent()
    _grow(fig, width=extent.width, height=max(0.0, extent.height - 0.95 * height))
    return legend


def shared_legend(fig: Figure, *, ncols: int | None = None, place: LegendPlace = "auto") -> Legend | None:
    """Replace the legends of all axes of ``fig`` by one below them (see :func:`figure_legend`).

    The entries are the union of the axes' legend entries (by label, in order of first appearance), so panels that
    draw the same series (training curves: accuracy, error, loss; a metric on its whole range and zoomed) share one
    legend, and a series keeps its colour across them. The title is the first axes legend's title.

    Args:
        fig: The figure.
        ncols: Columns of a legend below the axes (default: as many as fit the figure's width).
        place: Where the legend goes (see :func:`figure_legend`).

    Returns:
        The figure legend, or None when no axes had a legend.
    """
    handles: list[Any] = []
    labels: list[str] = []
    title: str | None = None
    for ax in fig.get_axes():
        legend = ax.get_legend()
        if legend is None:
            continue
        title = title or legend.get_title().get_text() or None
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            if text.get_text() not in labels:
                handles.append(handle)
                labels.append(text.get_text())
        legend.remove()
    if not labels:
        return None
    return figure_legend(fig, handles, labels, title=title, ncols=ncols, place=place)


def figure_title(fig: Figure, text: str) -> Text:
    """Title ``fig`` with ``text``, wrapped to the figure's width, and make ``fig`` taller by the title's height."""
    width = 0.98 * fig.get_figwidth() * fig.dpi
    chars = max(20, len(text))
    title = fig.suptitle(text)
    while title.get_window_extent().width > width and chars > 20:
        chars = int(chars * 0.9)
        title.set_text(textwrap.fill(text, chars))
    _grow(fig, height=title.get_window_extent().height)
    return title


def mark_no_data(ax: Axes, text: str = NO_DATA) -> Axes:
    """Write ``text`` (e.g. ``"no alignment values"``) in the middle of an axes that has nothing to draw."""
    background = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85}
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.35", bbox=background)
    return ax


class PlainLogFormatter(LogFormatter):
    """Matplotlib's log-axis labels (which thin out minor labels) as plain numbers: ``0.1``, ``20``, not ``1e-01``."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def _plain_log_y(ax: Axes) -> None:
    """Log y axis labelled with plain numbers (``0.5``, ``20``), minor ticks labelled when the range is short."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def series_style(index: int) -> dict[str, Any]:
    """Colour, line style and marker of the ``index``-th series (colour varies fastest)."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index!r}")
    return {
        "color": PALETTE[index % len(PALETTE)],
        "linestyle": LINESTYLES[(index // len(PALETTE)) % len(LINESTYLES)],
        "marker": MARKERS[index % len(MARKERS)],
    }


def plot_mean_ci(
    ax: Axes,
    x: Sequence[float] | np.ndarray,
    mean: Sequence[float] | np.ndarray,
    low: Sequence[float] | np.ndarray,
    high: Sequence[float] | np.ndarray,
    *,
    label: str | None = None,
    style: Mapping[str, Any] | None = None,
    markers: bool = True,
) -> Axes:
    """Draw a mean line and a shaded confidence band (the band is omitted where the bounds are NaN).

    Args:
        ax: Axes to draw on.
        x: Abscissae.
        mean: Means.
        low: Lower interval bounds.
        high: Upper interval bounds.
        label: Legend label.
        style: Keyword arguments of ``ax.plot`` (``color``, ``linestyle``, ``marker``).
        markers: Draw the marker of ``style``.

    Returns:
        ``ax``.
    """
    line_kw = dict(style or {})
    if not markers:
        line_kw.pop("marker", None)
    (line,) = ax.plot(x, mean, label=label, **line_kw)
    lo, hi = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=CI_ALPHA, linewidth=0, where=np.isfinite(lo + hi))
    return ax


def _legend(ax: Axes, *, band: bool, points: bool, title: str | None = None, ncols: int = 1) -> None:
    """Legend of the series of ``ax`` plus grey proxies that say what the band and the points are (when drawn)."""
    handles, labels = ax.get_legend_handles_labels()
    if band:
        handles.append(Patch(color="0.5", alpha=CI_ALPHA * 2, linewidth=0))
        labels.append(BAND_LABEL)
    if points:
        handles.append(Line2D([], [], linestyle="", marker="o", color="0.4", alpha=POINT_ALPHA))
        labels.append(POINT_LABEL)
    if labels:
        ax.legend(handles, labels, title=title, ncols=ncols)


def _plain_number(value: float, _position: object = None) -> str:
    return f"{value:g}"


def _log_axis(ax: Axes, values: np.ndarray) -> None:
    """Log x axis over the tested ``values`` (padded), ticks at the tested values when few, plain numbers."""
    ax.set_xscale("log")
    finite = np.unique(values[np.isfinite(values) & (values > 0)])
    if finite.size == 0:
        return
    pad = 1.35 if finite.size > 1 else 2.0
    ax.set_xlim(finite[0] / pad, finite[-1] * pad)
    if finite.size <= 8:
        ax.set_xticks(finite)
        ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))


def _metric_rows(stats: pd.DataFrame, metric: str, keys: list[str]) -> pd.DataFrame:
    """The rows of ``stats`` for ``metric``; ``ValueError`` on missing columns, no rows or duplicate ``keys``."""
    missing = [c for c in (*keys, "metric", "mean", "ci_low", "ci_high") if c not in stats.columns]
    if missing:
        raise ValueError(f"stats: missing columns {missing}")
    data = stats[stats["metric"] == metric]
    if data.empty:
        raise ValueError(f"metric: no rows for {metric!r} in stats")
    if data.duplicated(keys).any():
        raise ValueError(f"stats: several rows per {keys}; filter the other params or aggregate them")
    return data


def _scatter_runs(
    ax: Axes,
    points: pd.DataFrame,
    values: dict[str, Any],
    *,
    metric: str,
    x: str,
    scale: float,
    jitter: float,
    color: Any,
) -> bool:
    """Draw the runs of one series (rows of ``points`` matching ``values``) as points; whether any was drawn."""
    mask = np.ones(len(points), dtype=bool)
    for column, value in values.items():
        mask &= (points[column] == value).to_numpy()
    runs = points[mask & points[metric].notna().to_numpy()]
    ax.scatter(
        runs[x].to_numpy(dtype=np.float64) * jitter,
        runs[metric].to_numpy(dtype=np.float64) * scale,
        s=6,
        color=color,
        alpha=POINT_ALPHA,
        linewidths=0,
        zorder=3,
    )
    return len(runs) > 0


def plot_metric_vs(
    ax: Axes,
    stats: pd.DataFrame,
    *,
    metric: str,
    x: str,
    series: Sequence[str],
    ylabel: str,
    xlabel: str | None = None,
    scale: float = 1.0,
    points: pd.DataFrame | None = None,
    log_x: bool = True,
    legend_title: str | None = None,
    ylim: tuple[float, float] | None = None,
    reference: tuple[float, str] | None = None,
) -> Axes:
    """Plot a metric against one parameter, one line (mean over seeds) with its interval band per series.

    Args:
        ax: Axes to draw on.
        stats: Output of :func:`evoexp.analysis.aggregate.aggregate` grouped by ``[*series, x]``.
        metric: Value of the ``metric`` column to plot (e.g. ``"metrics.snn/test/acc_best"``).
        x: Column of the abscissa (e.g. ``params.surrogate.slope``).
        series: Columns whose value combinations make the lines; legend entries say them in words.
        ylabel: Y-axis label.
        xlabel: X-axis label (default: the words for ``x``).
        scale: Factor applied to the values (100 for percent).
        points: Optional run frame (one row per run) holding ``series``, ``x`` and ``metric``: every run is drawn
            as a point in its series' colour, slightly jittered along x.
        log_x: Logarithmic x axis (ticks at the tested values when there are at most eight).
        legend_title: Title of the legend.
        ylim: Fixed y range (after ``scale``), e.g. ``(0, 100)`` so that a flat accuracy looks flat; None: automatic.
        reference: ``(y, label)`` of a dotted horizontal reference line (after ``scale``), e.g. chance level.

    Returns:
        ``ax``; an axes whose metric is NaN everywhere says "no data" in its middle.

    Raises:
        ValueError: If columns are missing, ``metric`` has no rows, or a ``(series, x)`` combination has several
            rows (aggregate over the other params first).
    """
    data = _metric_rows(stats, metric, [*series, x])
    groups = list(data.groupby(list(series), sort=True)) if series else [((), data)]
    drew_points = False
    for i, (key, rows) in enumerate(groups):
        values = dict(zip(series, key if isinstance(key, tuple) else (key,)))
        rows = rows.sort_values(x)
        style = series_style(i)
        abscissa = rows[x].to_numpy(dtype=np.float64)
        plot_mean_ci(
            ax,
            abscissa,
            rows["mean"].to_numpy(dtype=np.float64) * scale,
            rows["ci_low"].to_numpy(dtype=np.float64) * scale,
            rows["ci_high"].to_numpy(dtype=np.float64) * scale,
            label=config_label(values) or None,
            style=style,
        )
        if points is not None:
            jitter = 1.0 + 0.04 * (i - (len(groups) - 1) / 2) / max(1, len(groups)) if log_x else 1.0
            drawn = _scatter_runs(
                ax, points, values, metric=metric, x=x, scale=scale, jitter=jitter, color=style["color"]
            )
            drew_points = drew_points or drawn
    if reference is not None:
        ax.axhline(reference[0], color="0.3", linestyle=":", linewidth=1.0, label=reference[1], zorder=1)
    if log_x:
        _log_axis(ax, data[x].to_numpy(dtype=np.float64))
    if ylim is not None:
        ax.set_ylim(*ylim)
    if not np.isfinite(data["mean"].to_numpy(dtype=np.float64)).any():
        mark_no_data(ax, f"no {ylabel.split(' (')[0].lower()} values")
        if ylim is None:
            ax.set_yticks([])
    ax.set_xlabel(xlabel if xlabel is not None else param_name(x))
    ax.set_ylabel(ylabel)
    band = bool(np.isfinite(data["ci_low"].to_numpy(dtype=np.float64)).any())
    _legend(ax, band=band, points=drew_points, title=legend_title, ncols=2 if len(groups) > 4 else 1)
    return ax


def plot_metric_vs_slope(
    ax: Axes,
    stats: pd.DataFrame,
    *,
    metric: str,
    ylabel: str,
    scale: float = 1.0,
    surrogate_col: str = schema.param(schema.SURROGATE_NAME_PARAM),
    slope_col: str = schema.param(schema.SURROGATE_SLOPE_PARAM),
    points: pd.DataFrame | None = None,
    ylim: tuple[float, float] | None = None,
    reference: tuple[float, str] | None = None,
) -> Axes:
    """Plot a metric against the surrogate slope (log x), one line with its band per surrogate shape.

    See :func:`plot_metric_vs` (``x = slope_col``, ``series = [surrogate_col]``).
    """
    return plot_metric_vs(
        ax,
        stats,
        metric=metric,
        x=slope_col,
        series=[surrogate_col],
        ylabel=ylabel,
        xlabel=r"Surrogate slope $\beta$",
        scale=scale,
        points=points,
        legend_title="Surrogate",
        ylim=ylim,
        reference=reference,
    )


def chance_reference(chance: float | None) -> tuple[float, str] | None:
    """The reference line of chance-level accuracy ``chance`` (a fraction, e.g. 1/5), in percent; None for None."""
    if chance is None or not math.isfinite(chance):
        return None
    return 100.0 * chance, f"chance level ({100.0 * chance:.3g}%)"


def plot_accuracy_vs_slope(
    ax: Axes,
    stats: pd.DataFrame,
    *,
    metric: str = schema.metric(schema.SNN_TEST_ACC),
    points: pd.DataFrame | None = None,
    full_range: bool = True,
    chance: float | None = None,
    surrogate_col: str = schema.param(schema.SURROGATE_NAME_PARAM),
    slope_col: str = schema.param(schema.SURROGATE_SLOPE_PARAM),
) -> Axes:
    """Plot SNN test accuracy (%) against the slope per surrogate shape; see :func:`plot_metric_vs_slope`.

    ``full_range`` fixes the y axis to 0–100, so that a flat accuracy looks flat; False zooms in on the data.
    ``chance`` (a fraction: 1 / number of classes) draws chance level as a dotted line.
    """
    ylim = (0.0, 100.0) if full_range else None
    return plot_metric_vs_slope(
        ax,
        stats,
        metric=metric,
        ylabel="Test accuracy (%)",
        scale=100.0,
        points=points,
        ylim=ylim,
        reference=chance_reference(chance),
        surrogate_col=surrogate_col,
        slope_col=slope_col,
    )


ALIGNMENT_LABEL = "Gradient alignment (cosine)\nsurrogate vs smoothed loss"


def plot_alignment_vs_slope(
    ax: Axes,
    stats: pd.DataFrame,
    *,
    metric: str = schema.metric(schema.ALIGNMENT_COSINE),
    points: pd.DataFrame | None = None,
    surrogate_col: str = schema.param(schema.SURROGATE_NAME_PARAM),
    slope_col: str = schema.param(schema.SURROGATE_SLOPE_PARAM),
) -> Axes:
    """Plot gradient alignment (cosine) against the slope per surrogate shape; see :func:`plot_metric_vs_slope`.

    The alignment is the cosine between the surrogate gradient and the gradient of the Gaussian-smoothed loss
    (``alignment/cosine``; 1: same direction, 0: orthogonal).
    """
    return plot_metric_vs_slope(
        ax,
        stats,
        metric=metric,
        ylabel=ALIGNMENT_LABEL,
        points=points,
        surrogate_col=surrogate_col,
        slope_col=slope_col,
    )


def plot_accuracy_vs_scale(
    ax: Axes,
    stats: pd.DataFrame,
    *,
    series: Sequence[str] = (schema.param(schema.SURROGATE_NAME_PARAM), schema.param(schema.SURROGATE_SLOPE_PARAM)),
    metric: str = schema.metric(schema.SNN_TEST_ACC),
    points: pd.DataFrame | None = None,
    full_range: bool = True,
    chance: float | None = None,
) -> Axes:
    """Plot SNN test accuracy (%) against the surrogate's scale (log x), one line per shape (and slope).

    See :func:`plot_metric_vs` (``x = params.surrogate.scale``); ``full_range`` fixes the y axis to 0–100 and
    ``chance`` (a fraction) draws chance level.
    """
    return plot_metric_vs(
        ax,
        stats,
        metric=metric,
        x=schema.param(schema.SURROGATE_SCALE_PARAM),
        series=series,
        ylabel="Test accuracy (%)",
        xlabel="Surrogate scale (multiplier of the pseudo-derivative)",
        scale=100.0,
        points=points,
        ylim=(0.0, 100.0) if full_range else None,
        reference=chance_reference(chance),
    )


def default_surrogate_grid() -> np.ndarray:
    """The x grid of the surrogate gallery: 801 points on [-2, 2] (membrane minus threshold)."""
    return np.linspace(-2.0, 2.0, 801)


def _normalised(values: np.ndarray, kind: str) -> np.ndarray:
    """``g / max g`` of a derivative; ``(P - min P) / (max P - min P)`` of a primitive (on the grid)."""
    if kind == "derivative":
        top = float(np.nanmax(np.abs(values)))
        return values / top if top > 0 else values
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    return (values - low) / (high - low) if high > low else values - low


def plot_surrogate(
    ax: Axes,
    surrogates: Sequence[SurrogateGradient],
    *,
    kind: Literal["derivative", "primitive"] = "derivative",
    x: np.ndarray | None = None,
    normalise: bool = False,
    title: str | None = None,
) -> Axes:
    r"""Plot the pseudo-derivative :math:`g` or the primitive :math:`P` of surrogates, one line per object.

    Args:
        ax: Axes to draw on.
        surrogates: Surrogate objects (typically one shape at several slopes); each needs ``derivative``,
            ``primitive``, ``slope`` and ``name``.
        kind: ``"derivative"`` or ``"primitive"``.
        x: Grid (default :func:`default_surrogate_grid`).
        normalise: Draw each curve on a common scale: :math:`g / \max g` (the peaks are written in the panel), and
            :math:`P` rescaled to [0, 1]; so that a slope of 1 stays visible next to a slope of 100, whose peak is
            a hundred times higher.
        title: Axes title (default: the shape name(s) in words).

    Returns:
        ``ax``, legend labels ``β = <slope>``.
    """
    import torch

    if kind not in ("derivative", "primitive"):
        raise ValueError(f"kind must be 'derivative' or 'primitive', got {kind!r}")
    if not surrogates:
        raise ValueError("surrogates: need at least one surrogate")
    grid = default_surrogate_grid() if x is None else np.asarray(x, dtype=np.float64)
    xt = torch.as_tensor(grid, dtype=torch.float64)
    for i, surrogate in enumerate(surrogates):
        values = getattr(surrogate, kind)(xt).detach().cpu().numpy()
        if normalise:
            values = _normalised(values, kind)
        ax.plot(grid, values, label=rf"$\beta$ = {surrogate.slope:g}", **{**series_style(i), "marker": ""})
    ax.set_title(title if title is not None else ", ".join(dict.fromkeys(surrogate_label(s.name) for s in surrogates)))
    ax.set_xlabel(r"$x = U - \vartheta$")
    if kind == "derivative":
        ax.set_ylabel(r"$g(x)\,/\,\max g$" if normalise else r"$g(x)$")
        if normalise:
            peaks = " | ".join(f"{float(s.peak):.3g}" for s in surrogates)
            ax.set_ylim(-0.05, 1.4)
            ax.set_yticks([0.0, 0.5, 1.0])
            ax.text(0.5, 0.97, rf"$\max g$: {peaks}", transform=ax.transAxes, ha="center", va="top", fontsize=6)
    else:
        ax.set_ylabel(r"$P(x)$, to [0, 1]" if normalise else r"$P(x)$")
    return ax


def surrogate_gallery(
    names: Sequence[str] | None = None,
    slopes: Sequence[float] = (1.0, 10.0, 100.0),
    *,
    ncols: int = 4,
    x: np.ndarray | None = None,
    normalise: bool = True,
) -> Figure:
    r"""Page-width gallery of registered surrogate shapes: derivative panel above primitive panel per shape.

    Args:
        names: Registry names (default: every registered shape).
        slopes: Slopes drawn in each panel.
        ncols: Shapes per row.
        x: Grid (default :func:`default_surrogate_grid`).
        normalise: Draw :math:`g / \max g` and :math:`P` rescaled to [0, 1] (see :func:`plot_surrogate`), so that
            every slope is legible; the peaks :math:`\max g` are written in each derivative panel.

    Returns:
        The figure (``2 * ceil(len(names) / ncols)`` rows of axes, :data:`GALLERY_ROW_HEIGHT` inches each; unused
        cells hidden) with one legend of the slopes below the panels.
    """
    from evoexp.surrogate import available_surrogates, get_surrogate

    names = available_surrogates() if names is None else list(names)
    if not names:
        raise ValueError("names: need at least one surrogate name")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols!r}")
    ncols = min(ncols, len(names))
    blocks = -(-len(names) // ncols)
    apply_style()
    size = (WIDTHS["double"] * max(ncols, 2) / 4, 2 * blocks * GALLERY_ROW_HEIGHT)
    fig, axes = plt.subplots(2 * blocks, ncols, figsize=size, layout="constrained", squeeze=False)
    for cell in range(blocks * ncols):
        top, bottom = axes[2 * (cell // ncols), cell % ncols], axes[2 * (cell // ncols) + 1, cell % ncols]
        if cell >= len(names):
            top.set_visible(False)
            bottom.set_visible(False)
            continue
        shapes = [get_surrogate(names[cell], slope=float(s)) for s in slopes]
        plot_surrogate(top, shapes, kind="derivative", x=x, normalise=normalise)
        plot_surrogate(bottom, shapes, kind="primitive", x=x, normalise=normalise, title="")
        top.set_xlabel("")
        if cell % ncols:
            top.set_ylabel("")
            bottom.set_ylabel("")
    axes[0, 0].legend()
    shared_legend(fig)
    return fig


def _check_curves(curves: pd.DataFrame) -> None:
    needed = (schema.HISTORY_KEY, schema.HISTORY_STEP, "mean", "ci_low", "ci_high")
    missing = [c for c in needed if c not in curves.columns]
    if missing:
        raise ValueError(f"curves: missing columns {missing} (use aggregate_history)")


def _plot_curves(ax: Axes, curves: pd.DataFrame, keys: Sequence[str], labels: Mapping[str, str], scale: float) -> bool:
    """Draw one mean line with its band per key; return whether any band was drawn (at least two runs)."""
    present = [k for k in keys if (curves[schema.HISTORY_KEY] == k).any()]
    if not present:
        raise ValueError(f"keys: none of {list(keys)} is in the curves")
    for i, key in enumerate(present):
        rows = curves[curves[schema.HISTORY_KEY] == key].sort_values(schema.HISTORY_STEP)
        plot_mean_ci(
            ax,
            rows[schema.HISTORY_STEP].to_numpy(dtype=np.float64),
            rows["mean"].to_numpy(dtype=np.float64) * scale,
            rows["ci_low"].to_numpy(dtype=np.float64) * scale,
            rows["ci_high"].to_numpy(dtype=np.float64) * scale,
            label=labels.get(key, key),
            style=series_style(i),
            markers=len(rows) <= 30,
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    band = curves[curves[schema.HISTORY_KEY].isin(present)]
    if not np.isfinite(band["mean"].to_numpy(dtype=np.float64)).any():
        mark_no_data(ax)
    return bool(np.isfinite(band["ci_low"].to_numpy(dtype=np.float64)).any())


def plot_training_curves(
    ax: Axes,
    curves: pd.DataFrame,
    *,
    keys: Sequence[str] = (schema.SNN_VAL_ACC, schema.ANN_VAL_ACC),
    ylabel: str = "Validation accuracy (%)",
    scale: float = 100.0,
    labels: Mapping[str, str] | None = None,
    error: bool = False,
) -> Axes:
    """Plot SNN vs ANN training curves (mean and interval band over seeds) against the epoch.

    Args:
        ax: Axes to draw on.
        curves: Output of :func:`evoexp.analysis.aggregate.aggregate_history` for the runs of one
            configuration.
        keys: Metric keys to draw (those absent from ``curves`` are skipped).
        ylabel: Y-axis label.
        scale: Factor applied to the values (100 for accuracies in percent; 1 for losses).
        labels: Legend label per key (default: "SNN val", "ANN val", ...).
        error: Plot the error ``1 - value`` (times ``scale``) of accuracy curves on a log axis, which resolves the
            last percent that a linear accuracy axis hides (an error of exactly 0 is left out of a log axis).

    Returns:
        ``ax``.

    Raises:
        ValueError: If columns are missing or none of ``keys`` is present.
    """
    _check_curves(curves)
    if error:
        low, high = 1.0 - curves["ci_high"], 1.0 - curves["ci_low"]
        mean = 1.0 - curves["mean"]
        curves = curves.assign(mean=mean.where(mean > 0), ci_low=low.where(low > 0), ci_high=high.where(high > 0))
    banded = _plot_curves(ax, curves, keys, {**_SERIES_LABELS, **(labels or {})}, scale)
    if error:
        _plain_log_y(ax)
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    _legend(ax, band=banded, points=False)
    return ax


def plot_grad_norm_per_layer(
    ax: Axes, curves: pd.DataFrame, *, prefix: str = schema.GRAD_NORM_LAYER_PREFIX, log: bool = True
) -> Axes:
    r"""Plot the gradient norm of each layer over training (mean and interval band over seeds), log y by default.

    The norm is the L2 norm :math:`\|\partial L / \partial \theta_l\|_2` of the loss gradient with respect to all
    parameters :math:`\theta_l` of layer :math:`l` (weights and bias), before clipping, averaged over the epoch's
    batches (``snn/grad_norm/<layer>``, :mod:`evoexp.training`).

    Args:
        ax: Axes to draw on.
        curves: Output of :func:`evoexp.analysis.aggregate.aggregate_history` holding keys
            ``<prefix><layer>``.
        prefix: Key prefix of the per-layer gradient norms; the rest of the key names the layer in the legend.
        log: Logarithmic y axis.

    Returns:
        ``ax``.

    Raises:
        ValueError: If columns are missing or no key starts with ``prefix``.
    """
    _check_curves(curves)
    keys = sorted(k for k in curves[schema.HISTORY_KEY].unique() if str(k).startswith(prefix))
    if not keys:
        raise ValueError(f"prefix: no curve key starts with {prefix!r}")
    banded = _plot_curves(ax, curves, keys, {k: layer_label(k[len(prefix) :]) for k in keys}, 1.0)
    if log:
        _plain_log_y(ax)
    ax.set_xlabel("Epoch")
    ax.set_ylabel(GRAD_NORM_LABEL)
    _legend(ax, band=banded, points=False, title="Layer")
    return ax


def plot_run_curves(ax: Axes, curves: Mapping[str, Mapping[int, float]], *, ylabel: str, scale: float = 1.0) -> Axes:
    """Plot per-epoch curves of single runs (no seed aggregation), one line per label.

    Args:
        ax: Axes to draw on.
        curves: ``{label: {epoch: value}}``, e.g. the SNN's and the ANN's validation accuracy (epoch 0 = before
            training).
        ylabel: Label of the y axis.
        scale: Factor applied to the values (100 for accuracies in percent).

    Returns:
        ``ax`` with epochs on the x axis and a legend.
    """
    for i, (label, values) in enumerate(curves.items()):
        epochs = sorted(values)
        ax.plot(epochs, [values[e] * scale for e in epochs], label=label, **series_style(i))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    if curves:
        ax.legend()
    else:
        mark_no_data(ax)
    return ax


def run_figures(
    surrogate: SurrogateGradient, val_acc: Mapping[str, Mapping[int, float]], *, title: str
) -> dict[str, Figure]:
    """One run's figures: its surrogate's pseudo-derivative and its validation accuracy (%) per epoch.

    Args:
        surrogate: The run's surrogate.
        val_acc: ``{model: {epoch: accuracy as a fraction}}``, e.g. ``{"SNN": {...}, "ANN": {...}}``.
        title: The run's configuration in words (e.g. ``fast sigmoid, β = 25, seed 0``), the title of both figures.

    Returns:
        ``{"surrogate": figure, "training_curves": figure}``.
    """
    surrogate_fig, ax = new_figure()
    plot_surrogate(ax, [surrogate], title=title)
    curves_fig, ax = new_figure()
    plot_run_curves(ax, val_acc, ylabel="Validation accuracy (%)", scale=100.0)
    ax.set_title(title)
    return {"surrogate": surrogate_fig, "training_curves": curves_fig}


def save_run_figures(
    directory: str | Path,
    surrogate: SurrogateGradient,
    val_acc: Mapping[str, Mapping[int, float]],
    *,
    title: str,
) -> list[Path]:
    """Save :func:`run_figures` as ``<directory>/surrogate.png`` and ``<directory>/training_curves.png``."""
    figures = run_figures(surrogate, val_acc, title=title)
    return [p for name, fig in figures.items() for p in save_figure(fig, Path(directory) / name, formats=("png",))]


def save_figure(
    fig: Figure, path: str | Path, *, formats: Sequence[str] = FIGURE_FORMATS, close: bool = True
) -> list[Path]:
    """Save ``fig`` as ``<path>.<fmt>`` for each format (PDF and PNG by default), then close it.

    Args:
        fig: The figure.
        path: Output path without suffix (a suffix in ``formats`` is replaced); parents are created.
        formats: Any of ``"pdf"``, ``"png"``, ``"svg"``.
        close: Close the figure afterwards to free memory.

    Returns:
        The written paths.

    Raises:
        ValueError: If a format is not supported.
    """
    supported = ("pdf", "png", "svg")
    unknown = [f for f in formats if f not in supported]
    if unknown:
        raise ValueError(f"formats: unsupported figure format(s) {unknown}; choose from {list(supported)}")
    stem = Path(path)
    if stem.suffix.lstrip(".") in supported:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        target = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(target, format=fmt)
        paths.append(target)
    if close:
        plt.close(fig)
    return paths
