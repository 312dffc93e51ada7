"""MLflow tracking: store resolution, run lifecycle statuses, batching, resume lookup, parallel store creation."""

from __future__ import annotations

import datetime
import importlib.util
import json
import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from evoexp.data import get_dataset
from evoexp.job.abort import JobTerminated, terminate_on_sigterm
from evoexp.job.config import TrackingConfig
from evoexp.job.liveness import Owner, ghost_reason, iso_time
from evoexp.job.mlflow_values import param_value, ui_url
from evoexp.job.tracking import MlflowTracker, NullTracker, resolve_tracking_uri
from evoexp.keys import Tags

REPO = Path(__file__).resolve().parents[1]


def make_tracker(tmp_path: Path, experiment: str = "exp") -> MlflowTracker:
    return MlflowTracker(f"sqlite:///{tmp_path / 'store.db'}", experiment, root=tmp_path)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of one SQLite store shared by the tests below (creating a store takes seconds); each test takes
    its own experiment in it."""
    return tmp_path_factory.mktemp("shared")


def shared_tracker(root: Path, request: pytest.FixtureRequest, **kwargs: float) -> MlflowTracker:
    return MlflowTracker(f"sqlite:///{root / 'store.db'}", request.node.name, root=root, **kwargs)


def test_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, root=tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert resolve_tracking_uri(None, root=tmp_path) == "http://127.0.0.1:1"
    assert resolve_tracking_uri("sqlite:///x.db", root=tmp_path) == "sqlite:///x.db"


def test_prepare_creates_one_experiment_with_local_artifacts(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    tracker.prepare()
    tracker.prepare()  # idempotent
    client = MlflowClient(tracker.uri)
    experiment = client.get_experiment_by_name("exp")
    assert experiment is not None
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "exp").as_uri()
    assert {e.name for e in client.search_experiments()} == {"exp", "Default"}  # no experiment of ANN baselines


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
    assert data.data.tags[Tags.PID] == str(os.getpid())  # the owner, for ghost detection
    assert data.data.tags[Tags.SOURCE_NAME] == "evoexp"
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


def test_baseline_roundtrip_nested_under_the_sweep_in_the_jobs_experiment(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path)
    with tracker.start_run(run_name="job", tags={Tags.KIND: "job", Tags.ANN_HASH: "k"}, params={}):
        pass  # a job run carries its twin's key too, and is never taken for the baseline
    assert tracker.find_baseline("k") is None
    sweep = tracker.open_sweep_run("s", run_name="s", tags={})
    payload = {"n_params": 3, "history": [{"epoch": 1, "val_acc": 0.5}], "test": {"ann/test/acc": math.nan}}
    run_id = tracker.save_baseline("k", payload, metrics={"ann/test/acc": 0.75, "bad": math.inf}, parent_run_id=sweep)
    found = tracker.find_baseline("k")
    assert found is not None
    assert found[0] == run_id
    assert found[1]["history"] == payload["history"]
    assert math.isnan(found[1]["test"]["ann/test/acc"])
    run = MlflowClient(tracker.uri).get_run(run_id)
    assert run.info.experiment_id == tracker.experiment_id()
    assert (run.data.tags[Tags.KIND], run.data.tags[Tags.PARENT_RUN]) == ("ann_baseline", sweep)
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
from evoexp.job.tracking import MlflowTracker
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


def test_equal_param_values_print_identically() -> None:
    assert param_value(10.0) == param_value(10) == "10"
    assert [param_value(v) for v in (0.5, 1e-05, 1e300, -3.0, True, None)] == [
        "0.5",
        "1e-05",
        "1e+300",
        "-3",
        "True",
        "null",
    ]
    assert param_value([0.8, 0.1, 1.0]) == param_value((0.8, 0.1, 1)) == "[0.8, 0.1, 1]"
    assert param_value({"a": 2.0}) == '{"a": 2}'


def test_sweep_axes_are_filterable_and_sortable_as_numbers(shared: Path, request: pytest.FixtureRequest) -> None:
    tracker = shared_tracker(shared, request)
    for slope in (1.0, 10.0, 100.0, 2.0):
        params = {"surrogate.slope": slope, "surrogate.name": "atan", "trainer.nesterov": True}
        mirror = ["surrogate.slope", "surrogate.name", "trainer.nesterov", "missing.key"]
        with tracker.start_run(run_name=f"b{slope:g}", tags={}, params=params, mirror=mirror):
            pass
    client = MlflowClient(tracker.uri)
    exp = [tracker.experiment_id()]
    (ten,) = client.search_runs(exp, "params.`surrogate.slope` = '10'")  # written 10.0, found as 10
    assert set(ten.data.metrics) == {"config/surrogate.slope"}  # strings and booleans are not mirrored
    by_param = client.search_runs(exp, order_by=["params.`surrogate.slope` ASC"])
    by_metric = client.search_runs(exp, order_by=["metrics.`config/surrogate.slope` ASC"])
    assert [r.info.run_name for r in by_param] == ["b1", "b10", "b100", "b2"]  # MLflow compares params as text
    assert [r.info.run_name for r in by_metric] == ["b1", "b2", "b10", "b100"]
    assert len(client.search_runs(exp, "metrics.`config/surrogate.slope` >= 10")) == 2


def test_job_runs_nest_under_the_sweep_run_which_a_rerun_reopens(shared: Path, request: pytest.FixtureRequest) -> None:
    tracker = shared_tracker(shared, request)
    parent = tracker.open_sweep_run("sw-1", run_name="sw-1", tags={Tags.GIT_COMMIT: "abc123-dirty"})
    with tracker.start_run(run_name="job", tags={}, params={}, parent_run_id=parent) as run:
        pass
    tracker.close_sweep_run(parent, status="FAILED", metrics={"sweep/jobs_failed": 1.0}, tags={Tags.ERROR: "x"})
    client = MlflowClient(tracker.uri)
    assert client.get_run(run.run_id).data.tags[Tags.PARENT_RUN] == parent
    closed = client.get_run(parent)
    assert (closed.info.status, closed.data.metrics["sweep/jobs_failed"]) == ("FAILED", 1.0)
    assert closed.data.tags[Tags.KIND] == "sweep"
    assert closed.data.tags[Tags.SOURCE_GIT_COMMIT] == "abc123"

    assert tracker.open_sweep_run("sw-1", run_name="sw-1", tags={}) == parent  # the same sweep again
    reopened = client.get_run(parent)
    assert reopened.info.status == "RUNNING"
    assert Tags.ERROR not in reopened.data.tags
    assert tracker.open_sweep_run("sw-2", run_name="sw-2", tags={}) != parent


def test_dataset_splits_are_logged_as_run_inputs(shared: Path, request: pytest.FixtureRequest) -> None:
    data = get_dataset("synthetic", seed=0, n_classes=2, n_channels=4, samples_per_class=10, time_steps=5)
    tracker = shared_tracker(shared, request)
    with tracker.start_run(run_name="r", tags={}, params={}) as run:
        run.log_dataset(data, source={"seed": 0, "split": (0.8, 0.1, 0.1)})
    inputs = MlflowClient(tracker.uri).get_run(run.run_id).inputs.dataset_inputs
    contexts = {i.tags[0].value: i.dataset for i in inputs}
    assert set(contexts) == {"training", "validation", "test"}
    train = contexts["training"]
    assert train.name == "synthetic"
    assert train.source_type == "code"
    assert json.loads(train.source)["tags"]["subset"] == "train"
    assert json.loads(train.source)["tags"]["split"] == "[0.8, 0.1, 0.1]"
    assert json.loads(train.profile)["features_shape"]["spikes"] == [16, 5, 4]
    assert len({d.digest for d in contexts.values()}) == 3


def test_ui_url_opens_the_model_training_view() -> None:
    assert ui_url("http://host:5000/", "3") == "http://host:5000/#/experiments/3/runs?workflowType=machine_learning"
    assert ui_url("sqlite:///x.db", "3", "abc") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_ghost_reason_needs_proof_that_the_owner_is_gone() -> None:
    now = time.time()
    me = Owner.current()
    fresh = {**me.tags(), Tags.HEARTBEAT: str(now), Tags.HEARTBEAT_EVERY: "60"}
    assert ghost_reason(fresh, 0, now=now, stale_after=600) is None  # this process runs
    stale_but_alive = {**me.tags(), Tags.HEARTBEAT: str(now - 10_000), Tags.HEARTBEAT_EVERY: "60"}
    assert ghost_reason(stale_but_alive, 0, now=now, stale_after=600) is None  # its own host knows better
    dead = Owner(me.host, _exited_pid(), me.started).tags()
    assert "no longer exists" in str(ghost_reason(dead, 0, now=now, stale_after=600))
    recycled = Owner(me.host, os.getpid(), "1").tags()  # our pid, but another process's start time
    assert "no longer exists" in str(ghost_reason(recycled, 0, now=now, stale_after=600))

    remote = {Tags.HOST: "elsewhere", Tags.PID: "123", Tags.HEARTBEAT_EVERY: "60"}
    now = float(int(now))  # heartbeats are stamped to the second
    assert ghost_reason({**remote, Tags.HEARTBEAT: iso_time(now - 300)}, 0, now=now, stale_after=600) is None
    reason = ghost_reason({**remote, Tags.HEARTBEAT: iso_time(now - 700)}, 0, now=now, stale_after=600)
    assert reason == "no heartbeat for 700 s from process 123 on elsewhere"
    older = ghost_reason({**remote, Tags.HEARTBEAT: str(now - 700)}, 0, now=now, stale_after=600)  # epoch seconds
    assert older == reason  # as runs of earlier versions stamped their heartbeat
    assert ghost_reason({**remote, Tags.HEARTBEAT: str(now - 700)}, 0, now=now, stale_after=0) is None
    no_beats = {**remote, Tags.HEARTBEAT_EVERY: "0"}
    assert ghost_reason(no_beats, int((now - 10_000) * 1000), now=now, stale_after=600) is None
    assert ghost_reason({}, 0, now=now, stale_after=600) is None  # no owner recorded: never a provable ghost


def test_open_runs_send_heartbeats_as_readable_utc_times(shared: Path, request: pytest.FixtureRequest) -> None:
    tracker = shared_tracker(shared, request, heartbeat_every=0.2)
    client = MlflowClient(tracker.uri)

    def heartbeat(run_id: str) -> float:
        stamp = client.get_run(run_id).data.tags[Tags.HEARTBEAT]  # e.g. 2026-12-05T16:50:18Z
        return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()

    with tracker.start_run(run_name="r", tags={Tags.KIND: "job"}, params={}) as run:
        first = heartbeat(run.run_id)
        assert abs(first - time.time()) < 5
        time.sleep(1.5)
        beat = heartbeat(run.run_id)
    assert beat >= first + 1
    tags = list(client.get_run(run.run_id).data.tags)
    assert tags.index(Tags.KIND) < tags.index(Tags.HOST)  # the run's own tags before the owner's bookkeeping
    assert not [t for t in threading.enumerate() if t.name.startswith("evoexp-heartbeat")]  # stopped with the run


def test_tracking_config_checks_heartbeats_and_system_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"tracking\.stale_after must be 0 or at least 3 heartbeats"):
        TrackingConfig(heartbeat_every=60, stale_after=100)
    TrackingConfig(heartbeat_every=0, stale_after=100)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psutil" else real(name, *a))
    with pytest.raises(ValueError, match=r"tracking\.system_metrics=true needs psutil"):
        TrackingConfig(system_metrics=True)


def test_system_metrics_are_logged_when_enabled(
    shared: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psutil")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    tracker = shared_tracker(shared, request, system_metrics=True)
    with tracker.start_run(run_name="r", tags={}, params={}) as run:
        time.sleep(1.5)
    metrics = MlflowClient(tracker.uri).get_run(run.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics


KILL_SCRIPT = """
import sys, time
from pathlib import Path
from evoexp.job.tracking import MlflowTracker
tracker = MlflowTracker(sys.argv[1], "ghosts", root=Path(sys.argv[2]))
with tracker.start_run(run_name="victim", tags={}, params={}) as run:
    print(run.run_id, flush=True)
    time.sleep(60)
"""


def test_sigkilled_run_is_reaped_as_killed_and_live_runs_are_not(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'k.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, uri, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    victim = proc.stdout.readline().strip()
    proc.kill()
    proc.wait(timeout=60)
    tracker = MlflowTracker(uri, "ghosts", root=tmp_path)
    client = MlflowClient(uri)
    assert client.get_run(victim).info.status == "RUNNING"  # SIGKILL ends nothing
    with tracker.start_run(run_name="alive", tags={}, params={}) as alive:
        assert tracker.reap_ghosts() == [victim]
        assert client.get_run(alive.run_id).info.status == "RUNNING"
    ghost = client.get_run(victim)
    assert ghost.info.status == "KILLED"
    assert ghost.data.tags[Tags.OUTCOME] == "killed"
    assert ghost.data.tags[Tags.ERROR].startswith("ghost run closed on resume: owner process")
    last = datetime.datetime.strptime(ghost.data.tags[Tags.HEARTBEAT], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    assert ghost.info.end_time == int(last * 1000)  # ends at its last sign of life
    assert tracker.reap_ghosts() == []
