"""How an evoexp experiment looks in the MLflow UI: its saved runs-table view and its description.

MLflow's runs table opens with no metric or param column. Every evoexp experiment therefore carries a saved view,
:data:`VIEW_NAME` (the runs table's *Views* menu; :func:`view_url` opens it directly): the job runs only, best test
accuracy first, with the columns of :data:`VIEW_COLUMNS` -- verdict, test accuracy, the checks' verdicts, surrogate
shape, β and seed as numbers (the ``config/<key>`` metrics), and the ANN twin's test accuracy. The experiment's
description (shown on MLflow's home page and the experiment's page) says what its runs are and names the view.

The view is an experiment tag in the format of MLflow's own *Save view* button (``mlflow.sharedViewState.<key>``: a
JSON envelope ``{name, createdAt, updatedAt, state}`` whose ``state`` is the JSON of the runs page's search facets
and column layout), written for the pinned ``mlflow==3.17.*``. evoexp rewrites it at every run or sweep; a view the
user saves under another name is kept. See docs/guides/mlflow-ui.md.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from evoexp.job.tracking import Tracker
from evoexp.keys import (
    ANN_TEST_ACC,
    CONFIG_METRIC_PREFIX,
    HEADLINE_TEST_ACC,
    JOB_KIND,
    SAVED_VIEW_TAG_PREFIX,
    SEED_PARAM,
    SURROGATE_NAME_PARAM,
    SURROGATE_SLOPE_PARAM,
    Tags,
)

__all__ = [
    "EXPERIMENT_DESCRIPTION",
    "VIEW_COLUMNS",
    "VIEW_FILTER",
    "VIEW_KEY",
    "VIEW_NAME",
    "experiment_tags",
    "publish",
    "view_state",
    "view_url",
]

VIEW_KEY = "evoexp-jobs"
"""Key of the saved view (the ``viewStateShareKey`` of its URL)."""
VIEW_NAME = "evoexp: jobs by test accuracy"
VIEW_FILTER = f"tags.`{Tags.KIND}` = '{JOB_KIND}'"
"""The view's search: job runs only (no sweep runs, no ANN baselines)."""


def _column(kind: str, key: str) -> str:
    """A column of MLflow's runs table: ``metrics.`test_acc```, ``params.`surrogate.name```, ``tags.`...```."""
    return f"{kind}.`{key}`"


VIEW_COLUMNS = (
    _column("tags", Tags.VERDICT),
    _column("metrics", HEADLINE_TEST_ACC),
    _column("params", SURROGATE_NAME_PARAM),
    _column("metrics", CONFIG_METRIC_PREFIX + SURROGATE_SLOPE_PARAM),
    _column("metrics", CONFIG_METRIC_PREFIX + SEED_PARAM),
    _column("tags", Tags.CHECKS),
    _column("metrics", ANN_TEST_ACC),
)
"""The view's columns, in this order, after the run's name and start time (which MLflow always shows first)."""
_WIDTHS = (120, 110, 130, 170, 100, 330, 150)
"""Widths of :data:`VIEW_COLUMNS` in pixels: each header readable in full."""

EXPERIMENT_DESCRIPTION = (
    f"**Views → {VIEW_NAME}**: each job's verdict, test accuracy, surrogate shape and β "
    f"(`{CONFIG_METRIC_PREFIX}{SURROGATE_SLOPE_PARAM}` sorts β as a number). "
    "Each sweep is one run, with its jobs and the ANN baselines it trained nested under it.\n"
)
"""The experiment's description (tag ``mlflow.note.content``), set when the experiment has none."""


def view_state() -> dict[str, object]:
    """The runs page's state that the view restores: search, sort and columns."""
    return {
        "searchFilter": VIEW_FILTER,
        "orderByKey": _column("metrics", HEADLINE_TEST_ACC),
        "orderByAsc": False,
        "selectedColumns": list(VIEW_COLUMNS),
        "columnOrder": list(VIEW_COLUMNS),
        "columnWidths": dict(zip(VIEW_COLUMNS, _WIDTHS)),
        "runsHiddenMode": "SHOW_ALL",
    }


def experiment_tags(*, now: float | None = None) -> dict[str, str]:
    """The saved view's experiment tag (its envelope stamped ``now``, default the current time)."""
    stamp = int(1000 * (time.time() if now is None else now))
    envelope = {"name": VIEW_NAME, "createdAt": stamp, "updatedAt": stamp, "state": json.dumps(view_state())}
    return {SAVED_VIEW_TAG_PREFIX + VIEW_KEY: json.dumps(envelope)}


def view_url(runs_url: str) -> str:
    """The URL of the saved view, from the URL of the experiment's runs table (``…/#/experiments/<id>/runs?…``)."""
    return runs_url + ("&" if "?" in runs_url else "?") + urlencode({"viewStateShareKey": VIEW_KEY})


def publish(tracker: Tracker) -> None:
    """Write the saved view into the tracker's experiment, and its description where it has none."""
    tracker.set_experiment_tags(experiment_tags())
    tracker.set_experiment_tags({Tags.NOTE: EXPERIMENT_DESCRIPTION}, only_missing=True)
