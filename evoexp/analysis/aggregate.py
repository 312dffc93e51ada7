r"""Pure aggregation of per-run records over seeds.

For every group of runs that differ only in their seed, each metric is summarised by its mean, sample standard
deviation (``ddof = 1``), standard error of the mean, count and the percentile-bootstrap confidence interval of the
mean (:mod:`evoexp.stats`; the interval stays inside the range of a bounded metric). Missing values (a run
that diverged before logging a metric) are left out, so ``n`` counts the runs that have the metric. ``std``,
``sem`` and the interval are NaN for ``n < 2``; every statistic is NaN for ``n = 0``. The result is a long ("tidy")
frame with one row per group and metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from evoexp import keys as schema
from evoexp.stats import check_confidence, describe, mean_intervals

STAT_COLUMNS = ("mean", "std", "sem", "n", "ci_low", "ci_high")
METRIC_COLUMN = "metric"


def summarize(values: Iterable[float], *, confidence: float = 0.95) -> dict[str, float]:
    """Summarise one sample: mean, std (ddof=1), standard error, n and the bootstrap interval of the mean.

    Args:
        values: The sample; NaN and infinite entries count as missing and are dropped.
        confidence: Coverage of the interval, in (0, 1).

    Returns:
        A dict with the keys of :data:`STAT_COLUMNS`; ``n`` is an int, the rest floats.
    """
    sample = list(values)
    return _summaries([sample], confidence=confidence)[0]


def _summaries(samples: Sequence[Iterable[float]], *, confidence: float) -> list[dict[str, float]]:
    """:func:`summarize` of many samples, their intervals computed in one batched bootstrap."""
    check_confidence(confidence)
    low, high = mean_intervals(samples, confidence=confidence)
    out = []
    for sample, lo, hi in zip(samples, low, high):
        d = describe(sample)
        sem = d.std / math.sqrt(d.n) if d.n > 1 else math.nan
        out.append({"mean": d.mean, "std": d.std, "sem": sem, "n": d.n, "ci_low": float(lo), "ci_high": float(hi)})
    return out


def seed_columns(columns: Iterable[str]) -> list[str]:
    """Return the param columns that hold seeds (``params.seed`` and any ``params.<...>.seed``)."""
    return [
        c
        for c in columns
        if c.startswith(schema.PARAM_PREFIX)
        and (c == schema.param(schema.SEED_PARAM) or c.endswith("." + schema.SEED_PARAM))
    ]


def group_columns(frame: pd.DataFrame, *, ignore: Sequence[str] = ()) -> list[str]:
    """Return the param columns that identify a configuration: all params except seeds and ignored ones.

    Params under :data:`schema.IGNORED_PARAM_PREFIXES` (Hydra/tracking bookkeeping) and the presentation-only keys
    (:func:`schema.is_presentation_key`: figures, threads, tracking settings) are ignored too.

    Args:
        frame: A run frame from :func:`evoexp.job.analysis.load.load_runs`.
        ignore: Further columns to leave out.
    """
    skip = set(seed_columns(frame.columns)) | set(ignore)
    return [
        c
        for c in frame.columns
        if c.startswith(schema.PARAM_PREFIX)
        and c not in skip
        and not schema.strip_prefix(c).startswith(schema.IGNORED_PARAM_PREFIXES)
        and not schema.is_presentation_key(schema.strip_prefix(c))
    ]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Return the numeric metric and derived columns of a run frame."""
    return [c for c in frame.columns if c.startswith((schema.METRIC_PREFIX, schema.DERIVED_PREFIX))]


def varying_columns(frame: pd.DataFrame, columns: Sequence[str], *, given: Sequence[str] = ()) -> list[str]:
    """Return the columns that take more than one value in ``frame`` and are not implied by earlier ones.

    A column is kept when it splits the runs further than the columns kept before it, so that a param
    determined by another (say ``surrogate._target_`` by ``surrogate.name``) does not add a redundant
    row label. Order is preserved; NaN counts as a value.

    Args:
        frame: A run frame.
        columns: Candidate columns, in order of preference.
        given: Columns already used for grouping (not returned); candidates they imply are dropped.
    """
    kept: list[str] = []
    n_groups = len(frame.groupby(list(given), dropna=False, sort=False)) if given else 1
    for column in columns:
        if column not in frame.columns:
            raise ValueError(f"columns: {column!r} is not a column of the frame")
        if frame[column].nunique(dropna=False) < 2:
            continue
        n_new = len(frame.groupby([*given, *kept, column], dropna=False, sort=False))
        if n_new > n_groups:
            kept.append(column)
            n_groups = n_new
    return kept


def aggregate(
    frame: pd.DataFrame,
    *,
    by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Aggregate metrics over the runs of each group (by default: over seeds).

    Args:
        frame: One row per run (a run frame, or any frame with numeric value columns).
        by: Columns identifying a group; default :func:`group_columns` of ``frame``. ``[]`` aggregates
            all rows into one group.
        metrics: Columns to summarise; default :func:`metric_columns` of ``frame``. A metric absent from
            the frame yields rows with ``n = 0``.
        confidence: Coverage of the bootstrap interval.

    Returns:
        A long frame with the ``by`` columns, ``metric`` (the summarised column's name) and
        :data:`STAT_COLUMNS`, one row per group and metric, groups sorted by their keys.

    Raises:
        ValueError: If a ``by`` column is missing or clashes with an output column name.
    """
    check_confidence(confidence)
    by = group_columns(frame) if by is None else list(by)
    metrics = metric_columns(frame) if metrics is None else list(metrics)
    for column in by:
        if column not in frame.columns:
            raise ValueError(f"by: {column!r} is not a column of the frame")
        if column in (METRIC_COLUMN, *STAT_COLUMNS):
            raise ValueError(f"by: column name {column!r} clashes with an output column")
    values = frame.reindex(columns=[*by, *metrics])
    for m in metrics:
        values[m] = pd.to_numeric(values[m], errors="coerce").astype("float64")
    keys: list[dict[str, object]] = []
    samples: list[np.ndarray] = []
    groups = values.groupby(by, dropna=False, sort=True) if by else [((), values)]
    for key, group in groups:
        labels = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for m in metrics:
            keys.append({**labels, METRIC_COLUMN: m})
            samples.append(group[m].to_numpy())
    records = [{**k, **s} for k, s in zip(keys, _summaries(samples, confidence=confidence))]
    columns = [*by, METRIC_COLUMN, *STAT_COLUMNS]
    result = pd.DataFrame.from_records(records, columns=columns)
    result["n"] = result["n"].astype("int64")
    return result


def aggregate_history(history: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Aggregate metric curves over runs: the statistics of :data:`STAT_COLUMNS` of each metric at each step.

    Args:
        history: Long frame from :func:`evoexp.job.analysis.load.load_history` (columns ``key``, ``step``,
            ``value``, ...); pass the runs of one configuration to get the mean and interval over its seeds.
        confidence: Coverage of the bootstrap interval.

    Returns:
        A long frame with columns ``key``, ``step`` and :data:`STAT_COLUMNS` (``metric`` dropped).
    """
    by = [schema.HISTORY_KEY, schema.HISTORY_STEP]
    out = aggregate(history, by=by, metrics=[schema.HISTORY_VALUE], confidence=confidence)
    return out.drop(columns=METRIC_COLUMN)


def pivot_stats(stats_frame: pd.DataFrame, *, by: Sequence[str]) -> pd.DataFrame:
    """Turn long aggregated stats into a wide frame with columns ``(metric, stat)`` indexed by ``by``.

    Args:
        stats_frame: Output of :func:`aggregate`.
        by: The group columns used for aggregation (become the index; ``[]`` gives one row).
    """
    if not by:
        flat = stats_frame.assign(_row=0)
        wide = flat.pivot(index="_row", columns=METRIC_COLUMN, values=list(STAT_COLUMNS))
    else:
        wide = stats_frame.pivot(index=list(by), columns=METRIC_COLUMN, values=list(STAT_COLUMNS))
    return wide.swaplevel(0, 1, axis=1).sort_index(axis=1, level=0, sort_remaining=False)
