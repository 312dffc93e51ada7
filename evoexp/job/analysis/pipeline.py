"""One-call analysis of a sweep: load runs, write tables and figures, attach them to the sweep's MLflow run.

:func:`run_analysis` is what ``python -m evoexp.job.analysis`` calls; it is usable from Python as well.
Tables and figures that the runs hold no data for are skipped, each with a one-line reason (listed in the result and
logged), so the same command serves a single-configuration experiment, a surrogate × slope sweep, a sweep without
some check and a sweep whose jobs all diverged. The files are written to a hidden staging folder next to the output
folder and moved into it only when everything is written, so a failure leaves no half-written folder behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from evoexp import figures
from evoexp import keys as schema
from evoexp.analysis.aggregate import aggregate_history
from evoexp.analysis.plots import (
    CURVE_KEYS,
    FIGURE_STEMS,
    SCALE_COL,
    SLOPE_COL,
    NoData,
    Selection,
    accuracy_vs_scale_figure,
    accuracy_vs_slope_figure,
    alignment_vs_slope_figure,
    grad_norm_figure,
    select_configuration,
    surrogate_gallery_figure,
    training_curves_figure,
)
from evoexp.analysis.tables import (
    TABLE_FORMATS,
    Table,
    best_slope_table,
    snn_vs_ann_table,
    surrogate_slope_table,
    verdicts_table,
)
from evoexp.job.analysis.load import experiment_id, get_client, load_history, load_runs, metric_keys
from evoexp.job.analysis.provenance import write_provenance
from evoexp.job.analysis.select import NEWEST, select_runs
from evoexp.keys import Tags

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

ALL_FORMATS = (*TABLE_FORMATS, "pdf", "png")
SUMMARY_ARTIFACT_DIR = "analysis"
TABLE_BUILDERS: dict[str, Callable[..., Table]] = {
    "snn_vs_ann": snn_vs_ann_table,
    "verdicts": verdicts_table,
    "surrogate_slope": surrogate_slope_table,
    "best_slope": best_slope_table,
}
OUTPUT_STEMS = (*TABLE_BUILDERS, *FIGURE_STEMS)
"""File stems the analysis writes; files of these stems that a new analysis did not write are removed from the
output folder, so that a skipped figure does not leave an earlier sweep's figure behind."""


@dataclass
class AnalysisResult:
    """What :func:`run_analysis` produced.

    Attributes:
        runs: The job runs (one row per run).
        tables: Tables by name (``snn_vs_ann``, ``verdicts``, ``surrogate_slope``, ``best_slope``) that had data.
        files: Every written file (in the output folder).
        skipped: One line per table or figure that was not made, with the reason.
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


def _make_tables(runs: pd.DataFrame, result: AnalysisResult, confidence: float, ignore: Sequence[str]) -> None:
    for name, build in TABLE_BUILDERS.items():
        try:
            result.tables[name] = build(runs, confidence=confidence, ignore=ignore)
        except ValueError as err:
            result.skipped.append(f"table {name}: {err}")


def _varies(runs: pd.DataFrame, column: str) -> bool:
    return column in runs.columns and runs[column].nunique(dropna=False) > 1


FigureJobs = list[tuple[str, Callable[[], "Figure"]]]


def _slope_figures(runs: pd.DataFrame, table: Table | None, confidence: float) -> tuple[FigureJobs, list[str]]:
    """Accuracy and alignment vs slope (when the slope varies) and accuracy vs scale (when the scale varies).

    Params that vary besides the surrogate's (the surrogate table's other row keys) make one panel each.
    """
    if table is None:
        reason = "no surrogate × slope table (see its reason)"
        return [], [f"figure {stem}: {reason}" for stem in ("accuracy_vs_slope", "alignment_vs_slope")]
    jobs: FigureJobs = []
    skipped: list[str] = []
    name_col = schema.param(schema.SURROGATE_NAME_PARAM)
    if _varies(runs, SLOPE_COL):
        facets = [c for c in table.rows.columns if c not in (name_col, SLOPE_COL)]
        jobs += [
            (stem, partial(build, runs, facet_by=facets, confidence=confidence))
            for stem, build in (
                ("accuracy_vs_slope", accuracy_vs_slope_figure),
                ("alignment_vs_slope", alignment_vs_slope_figure),
            )
        ]
    else:
        skipped.append("figures accuracy_vs_slope, alignment_vs_slope: the surrogate slope does not vary")
    if _varies(runs, SCALE_COL):
        series = [name_col, *([SLOPE_COL] if _varies(runs, SLOPE_COL) else [])]
        facets = [c for c in table.rows.columns if c not in (name_col, SLOPE_COL, SCALE_COL)]
        build = partial(accuracy_vs_scale_figure, runs, series=series, facet_by=facets, confidence=confidence)
        jobs.append(("accuracy_vs_scale", build))
    return jobs, skipped


def _curves(selection: Selection, client: MlflowClient, confidence: float) -> pd.DataFrame:
    layers = metric_keys(selection.runs.dropna(axis=1, how="all"), prefix=schema.GRAD_NORM_LAYER_PREFIX)
    history = load_history(selection.runs, [*CURVE_KEYS, *layers], client=client)
    if history.empty:
        raise NoData("no metric history in the runs of the selected configuration")
    return aggregate_history(history, confidence=confidence)


def _curve_figures(runs: pd.DataFrame, table: Table | None, client: MlflowClient, confidence: float) -> FigureJobs:
    """Training curves and per-layer gradient norms of the configuration with the best mean SNN test accuracy."""
    stems = ("training_curves", "grad_norm_per_layer")
    if table is None:
        return [(stem, partial(_raise, "no table of configurations")) for stem in stems]
    acc = schema.metric(schema.SNN_TEST_ACC)
    means = table.stats[(acc, "mean")] if (acc, "mean") in table.stats.columns else pd.Series(float("nan"))
    try:
        selection = select_configuration(runs, table.rows, means)
        curves = _curves(selection, client, confidence)
    except NoData as err:
        return [(stem, partial(_raise, str(err))) for stem in stems]
    return [
        ("training_curves", partial(training_curves_figure, curves, title=selection.title("Training curves"))),
        ("grad_norm_per_layer", partial(grad_norm_figure, curves, title=selection.title("Gradient norm per layer"))),
    ]


def _raise(reason: str) -> Figure:
    raise NoData(reason)


def _write_figures(jobs: FigureJobs, out: Path, formats: Sequence[str], result: AnalysisResult) -> None:
    for stem, build in jobs:
        try:
            fig = build()
        except ValueError as err:
            result.skipped.append(f"figure {stem}: {err}")
            continue
        result.files += figures.save_figure(fig, out / stem, formats=formats)


def _publish(staging: Path, out: Path, written: Sequence[Path]) -> list[Path]:
    """Move the files written to ``staging`` into ``out`` (renaming ``staging`` when ``out`` does not exist yet).

    Files of :data:`OUTPUT_STEMS` that ``out`` held from an earlier analysis and this one did not write are removed.
    """
    names = [p.name for p in written]
    if not out.exists():
        staging.rename(out)
        return [out / name for name in names]
    for old in out.iterdir():
        ours = old.stem in OUTPUT_STEMS and old.suffix.lstrip(".") in ALL_FORMATS
        if ours and old.is_file() and old.name not in names:
            old.unlink()
    for name in names:
        os.replace(staging / name, out / name)
    shutil.rmtree(staging)
    return [out / name for name in names]


def _analyse(
    runs: pd.DataFrame,
    out: Path,
    client: MlflowClient,
    *,
    formats: Sequence[str],
    confidence: float,
    ignore: Sequence[str],
    experiment: str,
    command: str | None,
) -> AnalysisResult:
    """Write the tables and figures of ``runs`` into ``out`` (an empty folder), with their provenance."""
    result = AnalysisResult(runs=runs)
    _make_tables(runs, result, confidence, ignore)
    table_formats = [f for f in formats if f in TABLE_FORMATS]
    figure_formats = [f for f in formats if f not in TABLE_FORMATS]
    if table_formats:
        for table in result.tables.values():
            result.files += table.write(out, formats=table_formats)
    result.files += write_provenance(
        runs,
        out,
        experiment=experiment,
        sweeps=sweep_commands(client, experiment, _sweep_ids(runs)),
        analysis_command=command,
        ignore=ignore,
        tables=result.files,
    )
    if figure_formats:
        jobs, skipped = _slope_figures(runs, result.tables.get("surrogate_slope"), confidence)
        result.skipped += skipped
        jobs.append(("surrogate_gallery", partial(surrogate_gallery_figure, runs)))
        jobs += _curve_figures(runs, result.main_table, client, confidence)
        _write_figures(jobs, out, figure_formats, result)
    return result


def _sweep_ids(runs: pd.DataFrame) -> list[str]:
    """The sweep ids the runs are tagged with (none for runs outside a sweep)."""
    sweep = schema.tag(schema.SWEEP_ID_TAG)
    return list(runs[sweep].dropna().unique()) if sweep in runs.columns else []


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


def sweep_commands(client: MlflowClient, experiment: str, sweep_ids: Sequence[str]) -> dict[str, str]:
    """Sweep id -> the command that launched it (its parent run's overrides), for the sweeps among ``sweep_ids``."""
    runs = load_runs(experiment, client=client, include_summary=True)
    kind, sweep, overrides = (schema.tag(k) for k in (schema.KIND_TAG, schema.SWEEP_ID_TAG, Tags.OVERRIDES))
    if runs.empty or not {kind, sweep, overrides} <= set(runs.columns):
        return {}
    parents = runs[(runs[kind] == schema.SWEEP_KIND) & runs[sweep].isin(list(sweep_ids))]
    return {str(s): f"python -m evoexp --multirun {o}" for s, o in zip(parents[sweep], parents[overrides], strict=True)}


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
    command: str | None = None,
    code: str = NEWEST,
) -> AnalysisResult:
    """Load the runs of an experiment (or sweep), write tables and figures, log them to a summary run.

    One FINISHED run per config counts, all of one code identity (:func:`evoexp.job.analysis.select.select_runs`):
    a config run twice, or again after a code change, is never counted as two seeds.

    Args:
        experiment: MLflow experiment name.
        out_dir: Folder for tables and figures (created; written files replace those of the same name, and files
            of an earlier analysis that this one skipped are removed).
        sweep_id: Analyse only runs tagged with this sweep id.
        tracking_uri: MLflow tracking URI (ignored when ``client`` is given).
        client: An existing MLflow client.
        formats: Any of ``csv``, ``md``, ``tex`` (tables) and ``pdf``, ``png`` (figures).
        confidence: Coverage of the bootstrap confidence intervals.
        ignore: Param columns (``params.<key>``) never used to tell configurations apart.
        log_summary: Attach the written files to the sweep's summary MLflow run.
        command: The command line of this analysis, recorded in ``provenance.json`` (see
            :mod:`evoexp.job.analysis.provenance`, which also writes the per-run ``runs.csv``).
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
    runs, dropped = _finished_runs(experiment, sweep_id=sweep_id, client=client, code=code)
    out = Path(out_dir)
    with _staging_folder(out) as staging:
        result = _analyse(
            runs,
            staging,
            client,
            formats=formats,
            confidence=confidence,
            ignore=ignore,
            experiment=experiment,
            command=command,
        )
        result.dropped = dropped
        result.files = _publish(staging, out, result.files)
    if log_summary:
        result.summary_run_id = log_summary_run(
            client, experiment, sweep_id, result.files, n_runs=len(runs), sweep_ids=_sweep_ids(runs)
        )
    return result


def _finished_runs(
    experiment: str, *, sweep_id: str | None, client: MlflowClient, code: str
) -> tuple[pd.DataFrame, list[str]]:
    """The FINISHED job runs of one code identity, and one logged line per kind of run left out.

    Raises:
        ValueError: No finished job runs.
    """
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
    return runs, dropped


@contextmanager
def _staging_folder(out: Path) -> Iterator[Path]:
    """A fresh hidden folder next to ``out`` (its parent created), removed with its contents if the block raises."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", suffix=".partial", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
