"""Resume and ANN reuse never serve results of other code or of another thread count unmarked."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from omegaconf import DictConfig

import evoexp.job.sweep
import evoexp.job.task
from evoexp.identity import source_digest
from evoexp.job.config import load_config
from evoexp.job.outcome import OUTCOME_FILE
from evoexp.job.task import JobContext, execute
from evoexp.keys import BASELINE_KIND, JOB_KIND, Tags


@pytest.fixture
def compose_job(tmp_path: Path, compose_config: Callable[..., DictConfig]) -> Iterator[object]:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"

    def make(*overrides: str) -> DictConfig:
        return compose_config("experiment=smoke", f"tracking.uri={uri}", *overrides)

    yield make
    torch.set_num_threads(1)  # execute() sets the job's thread count


def _job(cfg: DictConfig, root: Path, name: str) -> tuple[float, dict]:
    out = root / "outputs" / name
    objective = execute(cfg, load_config(cfg), JobContext(output_dir=out, root=root))
    return objective, json.loads((out / OUTCOME_FILE).read_text())


def _runs(root: Path, kind: str) -> list:
    """The runs of ``evoexp.kind`` ``kind`` (jobs, ANN baselines) in the experiment ``evoexp`` of ``root``'s store."""
    client = MlflowClient(f"sqlite:///{root / 'mlruns.db'}")
    found = client.get_experiment_by_name("evoexp")
    runs = [] if found is None else client.search_runs([found.experiment_id])
    return [r for r in runs if r.data.tags[Tags.KIND] == kind]


def test_source_digest_follows_the_code_not_the_analysis(tmp_path: Path) -> None:
    (tmp_path / "analysis").mkdir()
    (tmp_path / "job" / "analysis").mkdir(parents=True)
    (tmp_path / "engine.py").write_text("x = 1\n")
    (tmp_path / "job" / "tracking.py").write_text("z = 1\n")
    (tmp_path / "analysis" / "tables.py").write_text("y = 1\n")
    (tmp_path / "job" / "analysis" / "load.py").write_text("w = 1\n")
    first = source_digest(tmp_path)
    (tmp_path / "analysis" / "tables.py").write_text("y = 2\n")
    (tmp_path / "job" / "analysis" / "load.py").write_text("w = 2\n")
    (tmp_path / "README.md").write_text("docs\n")
    assert source_digest(tmp_path) == first
    (tmp_path / "job" / "tracking.py").write_text("z = 2\n")
    second = source_digest(tmp_path)
    assert second != first
    (tmp_path / "engine.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != second


def test_changed_code_reruns_and_reuse_across_code_serves_old_runs(
    tmp_path: Path, compose_job: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    make = compose_job  # type: ignore[assignment]
    monkeypatch.setattr(evoexp.job.sweep, "code_identity", lambda: "code A")
    monkeypatch.setattr(evoexp.job.task, "code_identity", lambda: "code A")
    _, first = _job(make(), tmp_path, "a")
    assert first["outcome"] == "finished"
    _, again = _job(make(), tmp_path, "a-again")
    assert (again["outcome"], again["run_id"]) == ("skipped", first["run_id"])

    # A fix to the engine: the same config runs again, and so does its ANN twin.
    monkeypatch.setattr(evoexp.job.sweep, "code_identity", lambda: "code B")
    monkeypatch.setattr(evoexp.job.task, "code_identity", lambda: "code B")
    _, fixed = _job(make(), tmp_path, "b")
    assert fixed["outcome"] == "finished" and fixed["run_id"] != first["run_id"]
    assert len(_runs(tmp_path, JOB_KIND)) == 2
    assert len(_runs(tmp_path, BASELINE_KIND)) == 2
    tags = {r.info.run_id: r.data.tags["evoexp.code_identity"] for r in _runs(tmp_path, JOB_KIND)}
    assert tags == {first["run_id"]: "code A", fixed["run_id"]: "code B"}

    # An explicit override serves runs of other code.
    monkeypatch.setattr(evoexp.job.sweep, "code_identity", lambda: "code C")
    monkeypatch.setattr(evoexp.job.task, "code_identity", lambda: "code C")
    _, reused = _job(make("tracking.reuse_across_code=true"), tmp_path, "c")
    assert (reused["outcome"], reused["run_id"]) == ("skipped", fixed["run_id"])
    _, rerun = _job(make("tracking.reuse_across_code=true", "tracking.resume=false"), tmp_path, "c-rerun")
    assert rerun["outcome"] == "finished"
    assert len(_runs(tmp_path, BASELINE_KIND)) == 2  # the ANN of code B was reused


def test_reused_ann_of_another_thread_count_has_no_time_ratio(tmp_path: Path, compose_job: object) -> None:
    make = compose_job  # type: ignore[assignment]
    _job(make(), tmp_path, "one-thread")
    _, second = _job(make("threads=2", "tracking.resume=false"), tmp_path, "two-threads")
    assert second["outcome"] == "finished"
    assert len(_runs(tmp_path, BASELINE_KIND)) == 1  # threads do not change the ANN's identity...
    results = json.loads((tmp_path / "outputs" / "two-threads" / "results.json").read_text())
    benchmark = results["results"]["benchmark"]
    assert (benchmark["snn"]["torch_threads"], benchmark["ann"]["torch_threads"]) == (2, 1)  # ...but are recorded
    assert benchmark["time_comparable"] is False and benchmark["time_ratio"] == "NaN"
    assert results["metrics"]["benchmark/time_comparable"] == 0.0
    assert results["training"]["ann"]["torch_threads"] == 1
    assert "the time ratio is not comparable" in (tmp_path / "outputs" / "two-threads" / "report.md").read_text()
    first = json.loads((tmp_path / "outputs" / "one-thread" / "results.json").read_text())
    assert first["results"]["benchmark"]["time_comparable"] is True
    assert not math.isnan(first["results"]["benchmark"]["time_ratio"])
