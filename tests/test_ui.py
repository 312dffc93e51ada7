"""The MLflow UI's view of an evoexp experiment: the saved runs-table view and the experiment's description."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mlflow import MlflowClient

from evoexp import keys
from evoexp.job.tracking import MlflowTracker
from evoexp.job.ui import EXPERIMENT_DESCRIPTION, VIEW_COLUMNS, VIEW_KEY, VIEW_NAME, experiment_tags, publish, view_url


def test_saved_view_is_an_envelope_of_mlflow_save_view_naming_declared_columns() -> None:
    (key, value), = experiment_tags(now=1.5).items()
    assert key == keys.SAVED_VIEW_TAG_PREFIX + VIEW_KEY
    envelope = json.loads(value)
    assert (envelope["name"], envelope["createdAt"], envelope["updatedAt"]) == (VIEW_NAME, 1500, 1500)
    state = json.loads(envelope["state"])  # the UI parses the state from a JSON string
    assert state["searchFilter"] == "tags.`evoexp.kind` = 'job'"
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`test_acc`", False)
    assert state["selectedColumns"] == state["columnOrder"] == list(VIEW_COLUMNS)
    declared = {"metrics": keys.is_declared_metric, "params": keys.is_declared_param, "tags": keys.is_declared_tag}
    for column in VIEW_COLUMNS:
        kind, name = re.fullmatch(r"(\w+)\.`(.+)`", column).groups()  # type: ignore[union-attr]
        assert declared[kind](name), column


def test_view_url_opens_the_view_from_the_runs_url() -> None:
    runs = "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    assert view_url(runs) == runs + "&viewStateShareKey=evoexp-jobs"
    assert view_url("http://h/#/experiments/3/runs") == "http://h/#/experiments/3/runs?viewStateShareKey=evoexp-jobs"


def test_publish_writes_the_view_and_keeps_a_description_the_user_wrote(tmp_path: Path) -> None:
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'store.db'}", "mine", root=tmp_path)
    publish(tracker)
    client = MlflowClient(tracker.uri)
    tags = client.get_experiment(tracker.experiment_id()).tags
    assert tags[keys.Tags.NOTE] == EXPERIMENT_DESCRIPTION
    assert json.loads(tags[keys.SAVED_VIEW_TAG_PREFIX + VIEW_KEY])["name"] == VIEW_NAME
    client.set_experiment_tag(tracker.experiment_id(), keys.Tags.NOTE, "my own notes")
    publish(tracker)
    assert client.get_experiment(tracker.experiment_id()).tags[keys.Tags.NOTE] == "my own notes"
