"""MLflow tracking: store resolution, run lifecycle statuses, batching, resume lookup, parallel store creation."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from evoexp.tracking import (
    ANN_BASELINE_SUFFIX,
    JobTerminated,
    MlflowTracker,
    NullTracker,
    Tags,
    resolve_tracking_uri,
    terminate_on_sigterm,
)

REPO = Path(__file__).resolve().parents[1]


def make_tracker(tmp_path: Path, experiment: str = "exp") -> MlflowTracker:
    return MlflowTracker(f"sqlite:///{tmp_path / 'store.db'}", experiment, root=tmp_path)


def test_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, root=tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert resolve_tracking_uri(None, root=tmp_path) == "http://127.0.0.1:1"
    assert resolve_tracking_uri("sqlite:///x.db", root=tmp_path) == "sqlite:///x.db"


def test_prepare_creates_both_experiments_with_local_artifacts(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    tracker.prepare()
    tracker.prepare()  # idempotent
    client = MlflowClient(tracker.uri)
    for name in ("exp", "exp" + ANN_BASELINE_SUFFIX):
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None
        assert experiment.artifact_location == (tmp_path / "mlartifacts" / name).as_uri()


def test_run_finishes_with_params_metrics_and_default_outcome(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    params = {f"group.key{i}": i for i in range(250)} | {"model.hidden_sizes": [128, 64], "x": None}
    with tracker.start_run(run_name="r", tags={Tags.CONFIG_HASH: "abc"}, params=params) as run:
        run.log_metric_steps({step: {f"m{i}": float(step * i) for i in range(300)} for step in range(1, 5)})
        run.log_metrics({"summary/acc": 0.5, "skipped": None, "a/cos/sigma=0.01": 1.0})  # type: ignore[dict-item]
    data = MlflowClient(tracker.uri).get_run(run.run_id)
    assert data.info.status == "FINISHED"
    assert data.data.tags[Tags.OUTCOME] == "finished"
    assert len(data.data.params) == 252
    assert data.data.params["model.hidden_sizes"] == "[128, 64]"
    assert data.data.params["x"] == "null"
    assert data.data.metrics["summary/acc"] == 0.5
    assert "skipped" not in data.data.metrics
    assert data.data.metrics["a/cos/sigma_0.01"] == 1.0  # '=' is not allowed in MLflow metric names
    history = MlflowClient(tracker.uri).get_metric_history(run.run_id, "m7")
    assert [(m.step, m.value) for m in history] == [(s, 7.0 * s) for s in range(1, 5)]


def test_exception_ends_run_failed_with_error_tag(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    with pytest.raises(RuntimeError, match="boom"), tracker.start_run(run_name="r", tags={}, params={}) as run:
        raise RuntimeError("boom")
    data = MlflowClient(tracker.uri).get_run(run.run_id)
    assert data.info.status == "FAILED"
    assert data.data.tags[Tags.OUTCOME] == "failed"
    assert data.data.tags[Tags.ERROR] == "RuntimeError: boom"


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler interrupts this


def test_keyboard_interrupt_and_sigterm_end_run_killed(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    with pytest.raises(KeyboardInterrupt), tracker.start_run(run_name="r", tags={}, params={}) as run:
        raise KeyboardInterrupt
    assert MlflowClient(tracker.uri).get_run(run.run_id).info.status == "KILLED"
    with pytest.raises(JobTerminated) as info, tracker.start_run(run_name="r", tags={}, params={}) as run:
        _sigterm_self()
    assert info.value.code == 128 + signal.SIGTERM
    data = MlflowClient(tracker.uri).get_run(run.run_id)
    assert data.info.status == "KILLED"
    assert data.data.tags[Tags.ERROR] == "interrupted by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # previous handler restored


def test_terminate_on_sigterm_is_inert_off_the_main_thread() -> None:
    import threading

    seen: list[object] = []

    def worker() -> None:
        with terminate_on_sigterm():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [signal.SIG_DFL]


def test_diverged_outcome_is_kept_and_finished_run_is_found(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    assert tracker.find_finished("h1") is None
    with tracker.start_run(run_name="r", tags={Tags.CONFIG_HASH: "h1"}, params={}) as run:
        run.log_metrics({"snn/val/best_acc": math.nan, "a": 1.0})
        run.set_tags({Tags.OUTCOME: "diverged"})
    with (
        pytest.raises(ValueError, match="x"),
        tracker.start_run(run_name="r", tags={Tags.CONFIG_HASH: "h2"}, params={}),
    ):
        raise ValueError("x")
    found = tracker.find_finished("h1")
    assert found is not None
    assert found.run_id == run.run_id
    assert found.tags[Tags.OUTCOME] == "diverged"
    assert found.metrics["a"] == 1.0
    assert tracker.find_finished("h2") is None  # FAILED runs are redone


def test_baseline_roundtrip_in_its_own_experiment(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    assert tracker.find_baseline("k") is None
    payload = {"n_params": 3, "history": [{"epoch": 1, "val_acc": 0.5}], "test": {"ann/test/acc": math.nan}}
    run_id = tracker.save_baseline("k", payload, metrics={"ann/test/acc": 0.75, "bad": math.inf})
    found = tracker.find_baseline("k")
    assert found is not None
    assert found[0] == run_id
    assert found[1]["history"] == payload["history"]
    assert math.isnan(found[1]["test"]["ann/test/acc"])
    run = MlflowClient(tracker.uri).get_run(run_id)
    assert run.info.experiment_id == tracker.experiment_id(baseline=True) != tracker.experiment_id()
    assert run.data.metrics == {"ann/test/acc": 0.75}


def test_null_tracker_does_nothing() -> None:
    tracker = NullTracker()
    tracker.prepare()
    with tracker.start_run(run_name="r", tags={}, params={"a": 1}) as run:
        run.log_metrics({"a": 1.0}, step=1)
        run.set_tags({"t": "v"})
    assert run.run_id is None
    assert tracker.find_finished("h") is None
    assert tracker.find_baseline("k") is None
    assert tracker.save_baseline("k", {}, metrics={}) is None


def _open_run(uri: str, root: str, index: int) -> str:
    tracker = MlflowTracker(uri, "parallel", root=Path(root))
    with tracker.start_run(run_name=f"job{index}", tags={}, params={"i": index}) as run:
        run.log_metrics({"m": float(index)}, step=1)
    return str(run.run_id)


def test_parallel_processes_on_a_brand_new_store_lose_and_misfile_nothing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        run_ids = pool.starmap(_open_run, [(uri, str(tmp_path), i) for i in range(8)])
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("parallel")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.metrics["m"] for r in runs) == [float(i) for i in range(8)]
    default = client.get_experiment_by_name("Default")
    assert default is None or not client.search_runs([default.experiment_id])


SIGTERM_SCRIPT = """
import sys, time
from pathlib import Path
from evoexp.tracking import MlflowTracker
tracker = MlflowTracker(sys.argv[1], "sig", root=Path(sys.argv[2]))
with tracker.start_run(run_name="victim", tags={}, params={}) as run:
    print(run.run_id, flush=True)
    time.sleep(60)
"""


def test_sigterm_on_a_job_process_marks_its_run_killed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'sig.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT, uri, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED"
    with sqlite3.connect(tmp_path / "sig.db") as db:
        assert db.execute("select count(*) from runs where status = 'RUNNING'").fetchone() == (0,)
