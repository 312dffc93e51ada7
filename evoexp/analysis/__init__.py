"""Analysis of sweeps: tidy run frame → seed aggregates → paper tables.

Typical use (the run frame comes from the MLflow store, :mod:`evoexp.job.analysis`)::

    from evoexp.analysis import surrogate_slope_table
    from evoexp.job.analysis import load_runs
    runs = load_runs("robustness", tracking_uri="sqlite:///mlruns.db")
    print(surrogate_slope_table(runs).to_markdown())

or, for everything at once, ``python -m evoexp.job.analysis --experiment robustness --out results``.

Nothing here imports MLflow, Hydra or the job wing; public names load lazily, so that importing the package does not
pull in pandas and scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "aggregate": "evoexp.analysis.aggregate",
    "aggregate_history": "evoexp.analysis.aggregate",
    "group_columns": "evoexp.analysis.aggregate",
    "metric_columns": "evoexp.analysis.aggregate",
    "pivot_stats": "evoexp.analysis.aggregate",
    "summarize": "evoexp.analysis.aggregate",
    "Description": "evoexp.stats",
    "describe": "evoexp.stats",
    "mean_intervals": "evoexp.stats",
    "Column": "evoexp.analysis.tables",
    "Table": "evoexp.analysis.tables",
    "best_slope_table": "evoexp.analysis.tables",
    "build_table": "evoexp.analysis.tables",
    "format_interval": "evoexp.analysis.tables",
    "snn_vs_ann_table": "evoexp.analysis.tables",
    "surrogate_slope_table": "evoexp.analysis.tables",
    "with_derived": "evoexp.analysis.tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'evoexp.analysis' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
