"""Analysis of an experiment in the MLflow store: runs → tidy frames → tables and figures → the sweep's summary run.

* :mod:`evoexp.job.analysis.load` -- MLflow runs and metric histories as pandas frames.
* :mod:`evoexp.job.analysis.pipeline` -- :func:`run_analysis`, what ``python -m evoexp.job.analysis`` (console script
  ``evoexp-analysis``) calls.

The statistics and tables themselves know nothing of MLflow: :mod:`evoexp.analysis`.
"""

from __future__ import annotations

from evoexp.job.analysis.load import load_history, load_runs, metric_keys
from evoexp.job.analysis.pipeline import AnalysisResult, run_analysis

__all__ = ["AnalysisResult", "load_history", "load_runs", "metric_keys", "run_analysis"]
