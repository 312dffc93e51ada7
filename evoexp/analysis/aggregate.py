r"""Pure aggregation of per-run records over seeds.

For every group of runs that differ only in their seed, each metric is summarised by

.. math::
    \bar x = \frac1n \sum_i x_i,\qquad
    s = \sqrt{\frac{1}{n-1}\sum_i (x_i-\bar x)^2},\qquad
    \mathrm{ci} = t_{1-(1-c)/2,\;n-1}\,\frac{s}{\sqrt n},

where missing values (a run that diverged before logging a metric) are left out, so ``n`` counts the
runs that have the metric. ``std`` and ``ci`` are NaN for ``n < 2``; every statistic is NaN for ``n = 0``.
The result is a long ("tidy") frame with one row per group and metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from evoexp import keys as schema

STAT_COLUMNS = ("mean", "std", "n", "ci", "ci_low", "ci_high")
METRIC_COLUMN = "metric"


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")


def t_critical(n: int, *, confidence: float = 0.95) -> float:
    r"""Two-sided Student-t quantile :math:`t_{1-(1-c)/2,\,n-1}` for a sample of size ``n``.

    Args:
        n: Sample size.
        confidence: Coverage of the two-sided interval, in (0, 1).

    Returns:
        The quantile, or NaN when ``n < 2`` (no degrees of freedom).

    Raises:
        ValueError: If ``n`` is negative or ``confidence`` is outside (0, 1).
    """
    _check_confidence(confidence)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))


def summarize(values: Iterable[float], *, confidence: float = 0.95) -> dict[str, float]:
    """Summarise one sample: mean, std (ddof=1), n, CI half-width and CI bounds.

    Args:
        values: The sample; NaN entries count as missing and are dropped.
        confidence: Coverage of the t confidence interval.

    Returns:
        A dict with the keys of :data:`STAT_COLUMNS`; ``n`` is an int, the rest floats.
    """
    _check_confidence(confidence)
    x = np.asarray(list(values), dtype=np.float64)
    x = x[~np.isnan(x)]
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    ci = t_critical(n, confidence=confidence) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": n, "ci": ci, "ci_low": mean - ci, "ci_high": mean + ci}


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

    Params under :data:`schema.IGNORED_PARAM_PREFIXES` (Hydra/tracking bookkeeping) are ignored too.

    Args:
        frame: A run frame from :func:`evoexp.analysis.load.load_runs`.
        ignore: Further columns to leave out.
    """
    skip = set(seed_columns(frame.columns)) | set(ignore)
    return [
        c
        for c in frame.columns
        if c.startswith(schema.PARAM_PREFIX)
        and c not in skip
        and not schema.strip_prefix(c).startswith(schema.IGNORED_PARAM_PREFIXES)
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
        confidence: Coverage of the t confidence interval.

    Returns:
        A long frame with the ``by`` columns, ``metric`` (the summarised column's name) and
        :data:`STAT_COLUMNS`, one row per group and metric, groups sorted by their keys.

    Raises:
        ValueError: If a ``by`` column is missing or clashes with an output column name.
    """
    _check_confidence(confidence)
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
    records: list[dict[str, object]] = []
    groups = values.groupby(by, dropna=False, sort=True) if by else [((), values)]
    for key, group in groups:
        keys = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for m in metrics:
            records.append({**keys, METRIC_COLUMN: m, **summarize(group[m], confidence=confidence)})
    columns = [*by, METRIC_COLUMN, *STAT_COLUMNS]
    result = pd.DataFrame.from_records(records, columns=columns)
    result["n"] = result["n"].astype("int64")
    return result


def aggregate_history(history: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Aggregate metric curves over runs: mean, std, n and CI of each metric at each step.

    Args:
        history: Long frame from :func:`evoexp.analysis.load.load_history` (columns ``key``, ``step``,
            ``value``, ...); pass the runs of one configuration to get mean ± CI over its seeds.
        confidence: Coverage of the t confidence interval.

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
