"""Paper figures: one print-ready style, plot functions that draw on a given ``ax``, one save function.

Every ``plot_*`` function takes its data and a matplotlib ``Axes``, draws on it and returns it, so figures
compose freely; :func:`new_figure` makes a figure in the house style at one- or two-column width and
:func:`save_figure` writes it as PDF (vector, TrueType fonts) and PNG. Colours come from the Okabe–Ito
palette, which stays distinguishable under the common colour-vision deficiencies; beyond eight series the
line style changes too. Data frames are those of :mod:`evoexp.analysis` (aggregated stats with ``mean``,
``ci_low``, ``ci_high`` columns). Bands are the 95 % percentile-bootstrap interval of the mean over seeds
(:mod:`evoexp.stats`), which stays inside the metric's range; sweep figures also draw every seed as a point,
and the legend says so. Legends and titles are words (:mod:`evoexp.labels`: ``atan, β = 5``), not config
keys. The module leaves the backend alone (notebooks keep theirs); the ``evoexp.job.analysis`` command line selects the
non-interactive Agg backend.
"""

from __future__ import annotations

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
from matplotlib.ticker import MaxNLocator

from evoexp import keys as schema
from evoexp.labels import config_label, param_name, surrogate_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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

STYLE: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.size": 8,
    "axes.titlesize": 8,
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
    mpl.rcParams.update(STYLE)


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


def series_style(index: int) -> dict[str, str]:
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
    style: Mapping[str, str] | None = None,
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


def _legend_entries(ax: Axes, *, points: bool) -> tuple[list[Any], list[str]]:
    """The series of ``ax`` plus grey proxies that say what the band (and the points) are."""
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Patch(color="0.5", alpha=CI_ALPHA * 2, linewidth=0))
    labels.append(BAND_LABEL)
    if points:
        handles.append(Line2D([], [], linestyle="", marker="o", color="0.4", alpha=POINT_ALPHA))
        labels.append(POINT_LABEL)
    return handles, labels


def _uncertainty_legend(ax: Axes, *, points: bool, title: str | None, ncols: int = 1) -> None:
    """Legend of the series plus grey proxies that say what the band (and the points) are."""
    handles, labels = _legend_entries(ax, points=points)
    ax.legend(handles, labels, title=title, ncols=ncols)


def shared_legend(fig: Figure, ax: Axes, *, points: bool = False, ncols: int | None = None) -> None:
    """Replace the legends of all axes of ``fig`` by one below them, with the entries of ``ax``.

    For panels that draw the same series (training curves: accuracy, error, loss; a metric on its whole range and
    zoomed), so that no legend covers a curve.

    Args:
        fig: The figure.
        ax: The axes whose series the legend lists.
        points: Also explain the seed points.
        ncols: Legend columns (default: all entries in one row).
    """
    handles, labels = _legend_entries(ax, points=points)
    title = ax.get_legend().get_title().get_text() if ax.get_legend() is not None else None
    for panel in fig.get_axes():
        if panel.get_legend() is not None:
            panel.get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols or len(labels), title=title or None)


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
        log_x: Logarithmic x axis.
        legend_title: Title of the legend.
        ylim: Fixed y range (after ``scale``), e.g. ``(0, 100)`` so that a flat accuracy looks flat; None: automatic.

    Returns:
        ``ax``.

    Raises:
        ValueError: If columns are missing, ``metric`` has no rows, or a ``(series, x)`` combination has several
            rows (aggregate over the other params first).
    """
    keys = [*series, x]
    missing = [c for c in (*keys, "metric", "mean", "ci_low", "ci_high") if c not in stats.columns]
    if missing:
        raise ValueError(f"stats: missing columns {missing}")
    data = stats[stats["metric"] == metric]
    if data.empty:
        raise ValueError(f"metric: no rows for {metric!r} in stats")
    if data.duplicated(keys).any():
        raise ValueError(f"stats: several rows per {keys}; filter the other params or aggregate them")
    groups = list(data.groupby(list(series), sort=True)) if series else [((), data)]
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
            mask = np.ones(len(points), dtype=bool)
            for column, value in values.items():
                mask &= (points[column] == value).to_numpy()
            runs = points[mask & points[metric].notna().to_numpy()]
            jitter = 1.0 + 0.04 * (i - (len(groups) - 1) / 2) / max(1, len(groups))
            at = runs[x].to_numpy(dtype=np.float64)
            ax.scatter(
                at * jitter if log_x else at,
                runs[metric].to_numpy(dtype=np.float64) * scale,
                s=6,
                color=style["color"],
                alpha=POINT_ALPHA,
                linewidths=0,
                zorder=3,
            )
    if log_x:
        ax.set_xscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel if xlabel is not None else param_name(x))
    ax.set_ylabel(ylabel)
    _uncertainty_legend(ax, points=points is not None, title=legend_title, ncols=2 if len(groups) > 4 else 1)
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
    )


def plot_accuracy_vs_slope(
    ax: Axes,
    stats: pd.DataFrame,
    *,
    metric: str = schema.metric(schema.SNN_TEST_ACC),
    points: pd.DataFrame | None = None,
    full_range: bool = True,
    **kwargs: str,
) -> Axes:
    """Plot SNN test accuracy (%) against the slope per surrogate shape; see :func:`plot_metric_vs_slope`.

    ``full_range`` fixes the y axis to 0–100, so that a flat accuracy looks flat; False zooms in on the data.
    """
    ylim = (0.0, 100.0) if full_range else None
    return plot_metric_vs_slope(
        ax, stats, metric=metric, ylabel="Test accuracy (%)", scale=100.0, points=points, ylim=ylim, **kwargs
    )


def plot_alignment_vs_slope(
    ax: Axes,
    stats: pd.DataFrame,
    *,
    metric: str = schema.metric(schema.ALIGNMENT_COSINE),
    points: pd.DataFrame | None = None,
    **kwargs: str,
) -> Axes:
    """Plot gradient alignment (cosine) against the slope per surrogate shape; see :func:`plot_metric_vs_slope`."""
    return plot_metric_vs_slope(ax, stats, metric=metric, ylabel="Gradient alignment (cosine)", points=points, **kwargs)


def plot_accuracy_vs_scale(
    ax: Axes,
    stats: pd.DataFrame,
    *,
    series: Sequence[str] = (schema.param(schema.SURROGATE_NAME_PARAM), schema.param(schema.SURROGATE_SLOPE_PARAM)),
    metric: str = schema.metric(schema.SNN_TEST_ACC),
    points: pd.DataFrame | None = None,
    full_range: bool = True,
) -> Axes:
    """Plot SNN test accuracy (%) against the surrogate's scale (log x), one line per shape (and slope).

    See :func:`plot_metric_vs` (``x = params.surrogate.scale``); ``full_range`` fixes the y axis to 0–100.
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
    )


def default_surrogate_grid() -> np.ndarray:
    """The x grid of the surrogate gallery: 801 points on [-2, 2] (membrane minus threshold)."""
    return np.linspace(-2.0, 2.0, 801)


def plot_surrogate(
    ax: Axes,
    surrogates: Sequence[SurrogateGradient],
    *,
    kind: Literal["derivative", "primitive"] = "derivative",
    x: np.ndarray | None = None,
) -> Axes:
    r"""Plot the pseudo-derivative :math:`g` or the primitive :math:`P` of surrogates, one line per object.

    Args:
        ax: Axes to draw on.
        surrogates: Surrogate objects (typically one shape at several slopes); each needs ``derivative``,
            ``primitive``, ``slope`` and ``name``.
        kind: ``"derivative"`` or ``"primitive"``.
        x: Grid (default :func:`default_surrogate_grid`).

    Returns:
        ``ax``, titled with the shape name(s) in words, legend labels ``β = <slope>``.
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
        ax.plot(grid, values, label=rf"$\beta$ = {surrogate.slope:g}", **{**series_style(i), "marker": ""})
    ax.set_title(", ".join(dict.fromkeys(surrogate_label(s.name) for s in surrogates)))
    ax.set_xlabel(r"$x = U - \vartheta$")
    ax.set_ylabel(r"$g(x)$" if kind == "derivative" else r"$P(x)$")
    return ax


def surrogate_gallery(
    names: Sequence[str] | None = None,
    slopes: Sequence[float] = (2.0, 5.0, 20.0),
    *,
    ncols: int = 4,
    x: np.ndarray | None = None,
) -> Figure:
    """Page-width gallery of registered surrogate shapes: derivative panel above primitive panel per shape.

    Args:
        names: Registry names (default: every registered shape).
        slopes: Slopes drawn in each panel.
        ncols: Shapes per row.
        x: Grid (default :func:`default_surrogate_grid`).

    Returns:
        The figure (``2 * ceil(len(names) / ncols)`` rows of axes; unused cells hidden).
    """
    from evoexp.surrogate import available_surrogates, get_surrogate

    names = available_surrogates() if names is None else list(names)
    if not names:
        raise ValueError("names: need at least one surrogate name")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols!r}")
    ncols = min(ncols, len(names))
    blocks = -(-len(names) // ncols)
    fig, axes = new_figure(2 * blocks, ncols, width="double", aspect=0.3 * blocks * 4 / max(ncols, 4), squeeze=False)
    for cell in range(blocks * ncols):
        top, bottom = axes[2 * (cell // ncols), cell % ncols], axes[2 * (cell // ncols) + 1, cell % ncols]
        if cell >= len(names):
            top.set_visible(False)
            bottom.set_visible(False)
            continue
        shapes = [get_surrogate(names[cell], slope=float(s)) for s in slopes]
        plot_surrogate(top, shapes, kind="derivative", x=x)
        plot_surrogate(bottom, shapes, kind="primitive", x=x)
        bottom.set_title("")
        top.set_xlabel("")
    axes[0, 0].legend()
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
        curves = curves.assign(mean=1.0 - curves["mean"], ci_low=low, ci_high=high)
    banded = _plot_curves(ax, curves, keys, {**_SERIES_LABELS, **(labels or {})}, scale)
    if error:
        ax.set_yscale("log")
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    if banded:
        _uncertainty_legend(ax, points=False, title=None)
    else:
        ax.legend()
    return ax


def plot_grad_norm_per_layer(
    ax: Axes, curves: pd.DataFrame, *, prefix: str = schema.GRAD_NORM_LAYER_PREFIX, log: bool = True
) -> Axes:
    """Plot the gradient norm of each layer over training (mean and interval band over seeds), log y by default.

    Args:
        ax: Axes to draw on.
        curves: Output of :func:`evoexp.analysis.aggregate.aggregate_history` holding keys
            ``<prefix><layer>``.
        prefix: Key prefix of the per-layer gradient norms; the rest of the key is the legend label.
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
    banded = _plot_curves(ax, curves, keys, {k: k[len(prefix) :] for k in keys}, 1.0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Gradient norm")
    if banded:
        _uncertainty_legend(ax, points=False, title="Layer")
    else:
        ax.legend(title="Layer")
    return ax


def plot_run_curves(ax: Axes, curves: Mapping[str, Mapping[int, float]], *, ylabel: str) -> Axes:
    """Plot per-epoch curves of single runs (no seed aggregation), one line per label.

    Args:
        ax: Axes to draw on.
        curves: ``{label: {epoch: value}}``, e.g. the SNN's and the ANN's validation accuracy (epoch 0 = before
            training).
        ylabel: Label of the y axis.

    Returns:
        ``ax`` with epochs on the x axis and a legend.
    """
    for i, (label, values) in enumerate(curves.items()):
        epochs = sorted(values)
        ax.plot(epochs, [values[e] for e in epochs], label=label, **series_style(i))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


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
