"""Load MLflow runs into a tidy pandas frame (one row per run) and metric histories into a long frame.

Column naming is defined in :mod:`evoexp.keys`: ``params.<key>``, ``metrics.<key>`` (the latest
value of every metric), ``tags.<key>`` (MLflow's own ``mlflow.*`` tags are dropped) plus run columns
``run_id``, ``run_name``, ``experiment_id``, ``status``, ``start_time``, ``end_time``, ``duration_s``.
Param values, which MLflow stores as strings, are converted to numbers or booleans when every value of a
column parses as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from evoexp import keys as schema

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

_MISSING_STRINGS = frozenset({"", "None", "null", "nan", "NaN"})
_BOOL_STRINGS = {"True": True, "False": False, "true": True, "false": False}
_PAGE_SIZE = 1000


def get_client(tracking_uri: str | None = None) -> MlflowClient:
    """Return an MLflow client for ``tracking_uri`` (MLflow's default resolution when ``None``)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(client: MlflowClient, experiment: str) -> str:
    """Return the id of the experiment named ``experiment``.

    Raises:
        ValueError: If no such experiment exists (the message lists the existing ones).
    """
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"experiment: no MLflow experiment named {experiment!r}; available: {names}")
    return str(found.experiment_id)


def _search(client: MlflowClient, exp_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs([exp_id], filter_string=filter_string, max_results=_PAGE_SIZE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _run_record(run: Run) -> dict[str, object]:
    info, data = run.info, run.data
    start = pd.to_datetime(info.start_time, unit="ms", utc=True) if info.start_time else pd.NaT
    end = pd.to_datetime(info.end_time, unit="ms", utc=True) if info.end_time else pd.NaT
    record: dict[str, object] = {
        schema.RUN_ID: info.run_id,
        schema.RUN_NAME: info.run_name,
        schema.EXPERIMENT_ID: info.experiment_id,
        schema.STATUS: info.status,
        schema.START_TIME: start,
        schema.END_TIME: end,
        schema.DURATION: (end - start).total_seconds() if start is not pd.NaT and end is not pd.NaT else None,
    }
    record.update({schema.param(k): v for k, v in data.params.items()})
    record.update({schema.metric(k): float(v) for k, v in data.metrics.items()})
    record.update({schema.tag(k): v for k, v in data.tags.items() if not k.startswith("mlflow.")})
    return record


def coerce_param(values: pd.Series) -> pd.Series:
    """Convert a column of param strings to numbers or booleans when every present value parses.

    ``""``, ``"None"``, ``"null"`` and ``"nan"`` count as missing. Columns that do not parse entirely
    are returned unchanged (as strings).

    Args:
        values: Param values as MLflow stores them (strings, or NaN where a run lacks the param).
    """
    present = values.dropna().astype(str)
    present = present[~present.isin(_MISSING_STRINGS)]
    if present.empty:
        return values
    if present.isin(list(_BOOL_STRINGS)).all():
        mapped = values.astype(object).map(lambda v: _BOOL_STRINGS.get(v, pd.NA) if isinstance(v, str) else pd.NA)
        return mapped.astype("boolean")
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        return values
    cleaned = values.astype(object).map(lambda v: None if not isinstance(v, str) or v in _MISSING_STRINGS else v)
    return pd.to_numeric(cleaned, errors="coerce")


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Turn MLflow runs into the tidy run frame (columns sorted: run columns, params, metrics, tags).

    Args:
        runs: MLflow run entities.
    """
    frame = pd.DataFrame.from_records([_run_record(r) for r in runs])
    if frame.empty:
        return pd.DataFrame(columns=list(schema.RUN_COLUMNS))
    prefixed = [
        sorted(c for c in frame.columns if c.startswith(p))
        for p in (schema.PARAM_PREFIX, schema.METRIC_PREFIX, schema.TAG_PREFIX)
    ]
    frame = frame[[*schema.RUN_COLUMNS, *prefixed[0], *prefixed[1], *prefixed[2]]].copy()
    for column in prefixed[0]:
        frame[column] = coerce_param(frame[column])
    for column in prefixed[1]:
        frame[column] = frame[column].astype("float64")
    return frame.sort_values(schema.START_TIME, kind="stable").reset_index(drop=True)


def load_runs(
    experiment: str,
    *,
    sweep_id: str | None = None,
    tracking_uri: str | None = None,
    client: MlflowClient | None = None,
    include_summary: bool = False,
) -> pd.DataFrame:
    """Load the runs of an MLflow experiment (optionally one sweep) into a tidy frame, one row per run.

    Args:
        experiment: MLflow experiment name.
        sweep_id: Keep only runs tagged ``evoexp.sweep_id = sweep_id``.
        tracking_uri: MLflow tracking URI (ignored when ``client`` is given).
        client: An existing MLflow client.
        include_summary: Keep analysis summary runs and sweep parent runs (tag ``evoexp.kind`` ``summary`` or
            ``sweep``); off by default, so the frame holds job runs only.

    Returns:
        The run frame (see the module docstring), sorted by start time; empty (run columns only) when
        nothing matches.

    Raises:
        ValueError: If the experiment does not exist.
    """
    client = client if client is not None else get_client(tracking_uri)
    exp_id = experiment_id(client, experiment)
    filter_string = ""
    if sweep_id is not None:
        escaped = sweep_id.replace("'", "\\'")
        filter_string = f"tags.\"{schema.SWEEP_ID_TAG}\" = '{escaped}'"
    runs = _search(client, exp_id, filter_string)
    if not include_summary:
        runs = [r for r in runs if r.data.tags.get(schema.KIND_TAG) not in (schema.SUMMARY_KIND, schema.SWEEP_KIND)]
    return runs_frame(runs)


def metric_keys(frame: pd.DataFrame, *, prefix: str = "") -> list[str]:
    """Return the MLflow metric keys (without ``metrics.``) in a run frame that start with ``prefix``."""
    keys = (schema.strip_prefix(c) for c in frame.columns if c.startswith(schema.METRIC_PREFIX))
    return sorted(k for k in keys if k.startswith(prefix))


def load_history(
    runs: pd.DataFrame | Sequence[str],
    keys: Sequence[str],
    *,
    tracking_uri: str | None = None,
    client: MlflowClient | None = None,
) -> pd.DataFrame:
    """Load the full history (every logged step) of some metrics of some runs into a long frame.

    Args:
        runs: A run frame (its ``run_id`` column is used) or run ids.
        keys: MLflow metric keys, e.g. ``["snn/val/acc", "ann/val/acc"]``; a run without a key adds no
            rows for it.
        tracking_uri: MLflow tracking URI (ignored when ``client`` is given).
        client: An existing MLflow client.

    Returns:
        Columns ``run_id``, ``key``, ``step``, ``value``, ``timestamp``, sorted by run, key and step.
    """
    if isinstance(runs, pd.DataFrame):
        if schema.RUN_ID not in runs.columns:
            raise ValueError(f"runs: frame has no {schema.RUN_ID!r} column")
        run_ids = [str(r) for r in runs[schema.RUN_ID]]
    else:
        run_ids = [str(r) for r in runs]
    client = client if client is not None else get_client(tracking_uri)
    records = [
        (run_id, key, int(m.step), float(m.value), int(m.timestamp))
        for run_id in run_ids
        for key in keys
        for m in client.get_metric_history(run_id, key)
    ]
    columns = [
        schema.RUN_ID,
        schema.HISTORY_KEY,
        schema.HISTORY_STEP,
        schema.HISTORY_VALUE,
        schema.HISTORY_TIMESTAMP,
    ]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame = frame.astype({schema.HISTORY_STEP: "int64", schema.HISTORY_VALUE: "float64"})
    return frame.sort_values(columns[:3], kind="stable").reset_index(drop=True)
