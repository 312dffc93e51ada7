"""One-call analysis of a sweep: load runs, write tables and figures, attach them to the sweep's MLflow run.

:func:`run_analysis` is what ``python -m evoexp.job.analysis`` calls; it is usable from Python as well.
Tables and figures that the runs hold no data for are skipped (and listed in the result), so the same
command serves a single-configuration experiment and a surrogate × slope sweep.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from evoexp import keys as schema
from evoexp.analysis.aggregate import aggregate, aggregate_history
from evoexp.analysis.tables import (
    TABLE_FORMATS,
    Table,
    best_slope_table,
    snn_vs_ann_table,
    surrogate_slope_table,
)
from evoexp.job.analysis.load import experiment_id, get_client, load_history, load_runs, metric_keys
from evoexp.job.analysis.select import NEWEST, select_runs
from evoexp.labels import config_label
from evoexp.surrogate import available_surrogates

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

ALL_FORMATS = (*TABLE_FORMATS, "pdf", "png")
SUMMARY_ARTIFACT_DIR = "analysis"
CURVE_KEYS = (
    schema.SNN_TRAIN_ACC,
    schema.SNN_VAL_ACC,
    schema.ANN_TRAIN_ACC,
    schema.ANN_VAL_ACC,
    schema.SNN_TRAIN_LOSS,
    schema.SNN_VAL_LOSS,
    schema.ANN_TRAIN_LOSS,
    schema.ANN_VAL_LOSS,
)


@dataclass
class AnalysisResult:
    """What :func:`run_analysis` produced.

    Attributes:
        runs: The job runs (one row per run).
        tables: Tables by name (``snn_vs_ann``, ``surrogate_slope``, ``best_slope``) that had data.
        files: Every written file.
        skipped: Human-readable reasons for tables and figures that were not made.
        summary_run_id: The MLflow summary run the files were logged to, if any.
        dropped: What the analysis left out: runs of other code, older duplicates of a config, unfinished runs.
    """

    runs: pd.DataFrame
    tables: dict[str, Table] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    summary_run_id: str | None = None

    @property
    def main_table(self) -> Table | None:
        """The SNN-vs-ANN table, else the first table made."""
        return self.tables.get("snn_vs_ann", next(iter(self.tables.values()), None))


def _check_formats(formats: Sequence[str]) -> None:
    unknown = [f for f in formats if f not in ALL_FORMATS]
    if unknown:
        raise ValueError(f"formats: unknown format(s) {unknown}; choose from {list(ALL_FORMATS)}")


def _label(rows: pd.DataFrame, i: int) -> str:
    return config_label({c: rows[c].iloc[i] for c in rows.columns})


def _make_tables(runs: pd.DataFrame, result: AnalysisResult, confidence: float, ignore: Sequence[str]) -> None:
    builders = {
        "snn_vs_ann": snn_vs_ann_table,
        "surrogate_slope": surrogate_slope_table,
        "best_slope": best_slope_table,
    }
    for name, build in builders.items():
        try:
            result.tables[name] = build(runs, confidence=confidence, ignore=ignore)
        except ValueError as err:
            result.skipped.append(f"table {name}: {err}")


def _facet_figure(
    runs: pd.DataFrame,
    stem: str,
    metric: str,
    by: Sequence[str],
    facet_by: Sequence[str],
    plots: Sequence[Callable[[Axes, pd.DataFrame], object]],
    out: Path,
    formats: Sequence[str],
    confidence: float,
) -> list[Path]:
    """One panel per value combination of ``facet_by`` (titled in words), each drawn by ``plots[0](ax, stats)``.

    Without facets the two callables of ``plots`` draw two panels side by side, titled "Whole range" and "Zoomed in"
    (the whole accuracy range, then the data's), under one shared legend.
    """
    from evoexp import figures

    stats = aggregate(runs, by=[*facet_by, *by], metrics=[metric], confidence=confidence)
    if not facet_by and len(plots) > 1:
        fig, axes = figures.new_figure(1, len(plots), width="double", aspect=0.38, squeeze=False)
        for ax, plot, title in zip(axes.flat, plots, ("Whole range", "Zoomed in")):
            plot(ax, stats)
            ax.set_title(title)
        figures.shared_legend(fig, axes.flat[0], points=True, ncols=4)
        return figures.save_figure(fig, out / stem, formats=formats)
    plot = plots[0]
    facets = list(stats.groupby(list(facet_by), dropna=False, sort=True)) if facet_by else [((), stats)]
    ncols = min(3, len(facets))
    nrows = math.ceil(len(facets) / ncols)
    width = "single" if ncols == 1 else "double"
    fig, axes = figures.new_figure(nrows, ncols, width=width, aspect=0.75 * nrows / ncols, squeeze=False)
    for ax, (key, facet) in zip(axes.flat, facets):
        plot(ax, facet)
        if facet_by:
            ax.set_title(config_label(dict(zip(facet_by, key if isinstance(key, tuple) else (key,)))))
    for ax in list(axes.flat)[len(facets) :]:
        ax.set_visible(False)
    return figures.save_figure(fig, out / stem, formats=formats)


def _varies(runs: pd.DataFrame, column: str) -> bool:
    return column in runs.columns and runs[column].nunique(dropna=False) > 1


def _slope_figures(
    runs: pd.DataFrame, table: Table, out: Path, formats: Sequence[str], confidence: float
) -> tuple[list[Path], list[str]]:
    """Accuracy and alignment vs slope (when the slope varies) and accuracy vs scale (when the scale varies)."""
    from evoexp import figures

    name_col = schema.param(schema.SURROGATE_NAME_PARAM)
    slope_col = schema.param(schema.SURROGATE_SLOPE_PARAM)
    scale_col = schema.param(schema.SURROGATE_SCALE_PARAM)
    acc = schema.metric(schema.SNN_TEST_ACC)
    panels: dict[str, tuple[str, list[str], list[str], list[Callable[[Axes, pd.DataFrame], object]]]] = {}
    if _varies(runs, slope_col):
        extras = [c for c in table.rows.columns if c not in (name_col, slope_col)]
        panels["accuracy_vs_slope"] = (
            acc,
            [name_col, slope_col],
            extras,
            [
                partial(figures.plot_accuracy_vs_slope, points=runs),
                partial(figures.plot_accuracy_vs_slope, points=runs, full_range=False),
            ],
        )
        panels["alignment_vs_slope"] = (
            schema.metric(schema.ALIGNMENT_COSINE),
            [name_col, slope_col],
            extras,
            [partial(figures.plot_alignment_vs_slope, points=runs)],
        )
    if _varies(runs, scale_col):
        series = [name_col, *([slope_col] if _varies(runs, slope_col) else [])]
        extras = [c for c in table.rows.columns if c not in (name_col, slope_col, scale_col)]
        panels["accuracy_vs_scale"] = (
            acc,
            [*series, scale_col],
            extras,
            [
                partial(figures.plot_accuracy_vs_scale, series=series, points=runs),
                partial(figures.plot_accuracy_vs_scale, series=series, points=runs, full_range=False),
            ],
        )
    files: list[Path] = []
    skipped: list[str] = []
    for stem, (metric, by, facet_by, plots) in panels.items():
        if metric not in runs.columns or runs[metric].notna().sum() == 0:
            skipped.append(f"figure {stem}: no {schema.strip_prefix(metric)} values")
            continue
        files += _facet_figure(runs, stem, metric, by, facet_by, plots, out, formats, confidence)
    return files, skipped


def _gallery(runs: pd.DataFrame, out: Path, formats: Sequence[str]) -> list[Path]:
    from evoexp import figures

    name_col = schema.param(schema.SURROGATE_NAME_PARAM)
    slope_col = schema.param(schema.SURROGATE_SLOPE_PARAM)
    registered = set(available_surrogates())
    names = sorted(set(runs[name_col].dropna().astype(str)) & registered) if name_col in runs.columns else []
    slopes: Sequence[float] = (2.0, 5.0, 20.0)
    if slope_col in runs.columns and pd.api.types.is_numeric_dtype(runs[slope_col]):
        found = np.unique(runs[slope_col].dropna().to_numpy(dtype=np.float64))
        if found.size:
            slopes = sorted({float(found[0]), float(found[found.size // 2]), float(found[-1])})
    fig = figures.surrogate_gallery(names or None, slopes)
    return figures.save_figure(fig, out / "surrogate_gallery", formats=formats)


def _curve_figures(
    runs: pd.DataFrame, table: Table, client: MlflowClient, out: Path, formats: Sequence[str], confidence: float
) -> tuple[list[Path], list[str]]:
    """Training curves and per-layer gradient norms of the configuration with the best SNN test accuracy."""
    from evoexp import figures

    acc = schema.metric(schema.SNN_TEST_ACC)
    means = table.stats[(acc, "mean")] if (acc, "mean") in table.stats.columns else pd.Series(dtype=float)
    best = int(means.to_numpy().argmax()) if means.notna().any() else 0
    selected = runs
    for column in table.rows.columns:
        value = table.rows[column].iloc[best]
        selected = selected[selected[column].isna()] if pd.isna(value) else selected[selected[column] == value]
    layer_keys = metric_keys(runs, prefix=schema.GRAD_NORM_LAYER_PREFIX)
    history = load_history(selected, [*CURVE_KEYS, *layer_keys], client=client)
    if history.empty:
        return [], ["figures training_curves, grad_norm_per_layer: no metric history"]
    curves = aggregate_history(history, confidence=confidence)
    title = _label(table.rows, best) if len(table.rows.columns) else ""
    files: list[Path] = []
    skipped: list[str] = []
    # Same series order in both panels, so a series keeps its colour across them.
    accuracy = (schema.SNN_VAL_ACC, schema.ANN_VAL_ACC, schema.SNN_TRAIN_ACC, schema.ANN_TRAIN_ACC)
    panels = [
        (accuracy, "Accuracy (%)", 100.0, False),
        (accuracy, "Error (%), log scale", 100.0, True),
        ((schema.SNN_VAL_LOSS, schema.ANN_VAL_LOSS, schema.SNN_TRAIN_LOSS, schema.ANN_TRAIN_LOSS), "Loss", 1.0, False),
    ]
    present = set(curves[schema.HISTORY_KEY])
    panels = [p for p in panels if present.intersection(p[0])]
    if panels:
        double = len(panels) > 1
        fig, axes = figures.new_figure(
            1, len(panels), width="double" if double else "single", aspect=0.32 if double else 0.75, squeeze=False
        )
        for ax, (keys, ylabel, scale, error) in zip(axes.flat, panels):
            figures.plot_training_curves(ax, curves, keys=keys, ylabel=ylabel, scale=scale, error=error)
        if double:
            figures.shared_legend(fig, axes.flat[0])
        if title:
            fig.suptitle(title)
        files += figures.save_figure(fig, out / "training_curves", formats=formats)
    else:
        skipped.append("figure training_curves: no per-epoch accuracy or loss")
    if layer_keys:
        fig, ax = figures.new_figure()
        figures.plot_grad_norm_per_layer(ax, curves)
        if title:
            ax.set_title(title)
        files += figures.save_figure(fig, out / "grad_norm_per_layer", formats=formats)
    else:
        skipped.append("figure grad_norm_per_layer: no snn/grad_norm/<layer> metrics")
    return files, skipped


def find_summary_run(client: MlflowClient, experiment: str, sweep_id: str | None) -> str | None:
    """Return the id of the existing summary run of ``sweep_id`` (``None``: of the whole experiment)."""
    runs = load_runs(experiment, client=client, include_summary=True)
    kind, sweep = schema.tag(schema.KIND_TAG), schema.tag(schema.SWEEP_ID_TAG)
    if runs.empty or kind not in runs.columns:
        return None
    mask = runs[kind] == schema.SUMMARY_KIND
    if sweep in runs.columns:
        mask &= runs[sweep].isna() if sweep_id is None else runs[sweep] == sweep_id
    elif sweep_id is not None:
        return None
    matches = runs.loc[mask, schema.RUN_ID]
    return str(matches.iloc[-1]) if len(matches) else None


def find_sweep_run(client: MlflowClient, experiment: str, sweep_ids: Sequence[str]) -> str | None:
    """Return the id of the newest sweep parent run (tag ``evoexp.kind = sweep``) of one of ``sweep_ids``."""
    runs = load_runs(experiment, client=client, include_summary=True)
    kind, sweep = schema.tag(schema.KIND_TAG), schema.tag(schema.SWEEP_ID_TAG)
    if runs.empty or kind not in runs.columns or sweep not in runs.columns:
        return None
    matches = runs.loc[(runs[kind] == schema.SWEEP_KIND) & runs[sweep].isin(list(sweep_ids)), schema.RUN_ID]
    return str(matches.iloc[-1]) if len(matches) else None


def log_summary_run(
    client: MlflowClient,
    experiment: str,
    sweep_id: str | None,
    files: Sequence[Path],
    *,
    n_runs: int,
    sweep_ids: Sequence[str] = (),
) -> str:
    """Log ``files`` to the parent run of the analysed sweep, or to a summary run; return the run's id.

    The files go under the artifact folder ``analysis/`` of the sweep's parent run (tag ``evoexp.kind = sweep``):
    that of ``sweep_id``, else the newest of those the analysed runs belong to (``sweep_ids``); the parent keeps its
    status. Without a parent run, a summary run tagged ``evoexp.kind = summary`` (so :func:`load_runs` skips it) and
    ``evoexp.sweep_id`` is created on first use. A later analysis of the same sweep reuses the run and overwrites
    files of the same name.
    """
    run_id = find_sweep_run(client, experiment, [sweep_id] if sweep_id is not None else sweep_ids)
    parent = run_id is not None
    if run_id is None:
        run_id = find_summary_run(client, experiment, sweep_id)
    if run_id is None:
        tags = {schema.KIND_TAG: schema.SUMMARY_KIND}
        if sweep_id is not None:
            tags[schema.SWEEP_ID_TAG] = sweep_id
        name = f"summary-{sweep_id}" if sweep_id is not None else "summary"
        run_id = client.create_run(experiment_id(client, experiment), run_name=name, tags=tags).info.run_id
    client.log_metric(run_id, schema.ANALYSIS_N_RUNS, float(n_runs))
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path=SUMMARY_ARTIFACT_DIR)
    if not parent:
        client.set_terminated(run_id)
    return run_id


def run_analysis(
    experiment: str,
    *,
    out_dir: str | Path,
    sweep_id: str | None = None,
    tracking_uri: str | None = None,
    client: MlflowClient | None = None,
    formats: Sequence[str] = ALL_FORMATS,
    confidence: float = 0.95,
    ignore: Sequence[str] = (),
    log_summary: bool = True,
    code: str = NEWEST,
) -> AnalysisResult:
    """Load the runs of an experiment (or sweep), write tables and figures, log them to a summary run.

    One FINISHED run per config counts, all of one code identity (:func:`evoexp.job.analysis.select.select_runs`):
    a config run twice, or again after a code change, is never counted as two seeds.

    Args:
        experiment: MLflow experiment name.
        out_dir: Folder for tables and figures (created).
        sweep_id: Analyse only runs tagged with this sweep id.
        tracking_uri: MLflow tracking URI (ignored when ``client`` is given).
        client: An existing MLflow client.
        formats: Any of ``csv``, ``md``, ``tex`` (tables) and ``pdf``, ``png`` (figures).
        confidence: Coverage of the bootstrap confidence intervals.
        ignore: Param columns (``params.<key>``) never used to tell configurations apart.
        log_summary: Attach the written files to the sweep's summary MLflow run.
        code: The code identity whose runs are analysed: ``"newest"`` (that of the newest run) or one recorded in
            the runs' ``evoexp.code_identity`` tag.

    Returns:
        The :class:`AnalysisResult`.

    Raises:
        ValueError: Unknown format, unknown experiment, or no finished job runs (FAILED, KILLED and RUNNING runs
            are left out of the tables with a warning; diverged runs are FINISHED and counted).
    """
    _check_formats(formats)
    client = client if client is not None else get_client(tracking_uri)
    runs = load_runs(experiment, sweep_id=sweep_id, client=client)
    dropped = []
    unfinished = runs[schema.STATUS] != "FINISHED"
    if unfinished.any():
        counts = runs.loc[unfinished, schema.STATUS].value_counts().to_dict()
        dropped.append(f"left out {int(unfinished.sum())} run(s) that did not finish ({counts})")
        runs = runs.loc[~unfinished].reset_index(drop=True)
    if runs.empty:
        where = f"sweep {sweep_id!r} of " if sweep_id is not None else ""
        raise ValueError(f"experiment: no finished job runs in {where}experiment {experiment!r}")
    runs, notes = select_runs(runs, code=code)
    dropped += notes
    for note in dropped:
        log.warning("%s", note)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = AnalysisResult(runs=runs, dropped=dropped)
    _make_tables(runs, result, confidence, ignore)
    table_formats = [f for f in formats if f in TABLE_FORMATS]
    figure_formats = [f for f in formats if f not in TABLE_FORMATS]
    for table in result.tables.values():
        result.files += table.write(out, formats=table_formats)
    if figure_formats:
        if "surrogate_slope" in result.tables:
            files, skipped = _slope_figures(runs, result.tables["surrogate_slope"], out, figure_formats, confidence)
            result.files += files
            result.skipped += skipped
        result.files += _gallery(runs, out, figure_formats)
        if result.main_table is not None:
            files, skipped = _curve_figures(runs, result.main_table, client, out, figure_formats, confidence)
            result.files += files
            result.skipped += skipped
    for reason in result.skipped:
        log.info("skipped %s", reason)
    if log_summary:
        sweep = schema.tag(schema.SWEEP_ID_TAG)
        sweep_ids = list(runs[sweep].dropna().unique()) if sweep in runs.columns else []
        result.summary_run_id = log_summary_run(
            client, experiment, sweep_id, result.files, n_runs=len(runs), sweep_ids=sweep_ids
        )
    return result
