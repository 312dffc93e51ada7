"""Analysis of sweeps: MLflow runs → tidy frame → seed aggregates → paper tables (and figures).

Typical use::

    from evoexp.analysis import load_runs, surrogate_slope_table
    runs = load_runs("robustness", tracking_uri="sqlite:///mlruns.db")
    print(surrogate_slope_table(runs).to_markdown())

or, for everything at once, ``python -m evoexp.analysis --experiment robustness --out results``.
"""

from evoexp.analysis.aggregate import (
    aggregate,
    aggregate_history,
    group_columns,
    metric_columns,
    pivot_stats,
    summarize,
    t_critical,
)
from evoexp.analysis.load import load_history, load_runs, metric_keys
from evoexp.analysis.pipeline import AnalysisResult, run_analysis
from evoexp.analysis.tables import (
    Column,
    Table,
    best_slope_table,
    build_table,
    format_mean_ci,
    snn_vs_ann_table,
    surrogate_slope_table,
    with_derived,
)

__all__ = [
    "AnalysisResult",
    "Column",
    "Table",
    "aggregate",
    "aggregate_history",
    "best_slope_table",
    "build_table",
    "format_mean_ci",
    "group_columns",
    "load_history",
    "load_runs",
    "metric_columns",
    "metric_keys",
    "pivot_stats",
    "run_analysis",
    "snn_vs_ann_table",
    "summarize",
    "surrogate_slope_table",
    "t_critical",
    "with_derived",
]
