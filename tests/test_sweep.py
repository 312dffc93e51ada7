"""Sweeps: outcome records and summary, ANN-baseline reuse, and multiruns through the real launchers."""

from __future__ import annotations

import importlib.util
import json
import math
import multiprocessing
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra.types import RunMode
from mlflow import MlflowClient
from omegaconf import OmegaConf

from evoexp.job.analysis import run_analysis
from evoexp.job.outcome import JobOutcome, write_outcome
from evoexp.job.progress import PROGRESS_LOG
from evoexp.job.sweep import SUMMARY_FILE, EvoexpCallback, read_outcomes, reuse_baseline, summarize_sweep
from evoexp.job.tracking import MlflowTracker, NullTracker
from evoexp.job.ui import EXPERIMENT_DESCRIPTION
from evoexp.keys import Tags
from evoexp.verification.suite import CHECKS

REPO = Path(__file__).resolve().parents[1]


def fake_job(
    sweep: Path, number: int, outcome: str | None, *, verdict: str | None = None, checks: dict[str, str] | None = None
) -> None:
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- seed={number}\n")
    if outcome is not None:
        record = JobOutcome(outcome, job=number, overrides=[f"seed={number}"], error="e" * (outcome != "finished"))
        record.verdict, record.checks = verdict, checks or {}
        write_outcome(job, record)


def test_summary_counts_outcomes_and_treats_missing_records_as_failed(tmp_path: Path) -> None:
    for number, outcome in enumerate(["finished", "finished", "diverged", "skipped", "failed", None]):
        fake_job(tmp_path, number, outcome)
    summary = summarize_sweep(tmp_path)
    assert summary.counts == {"finished": 2, "diverged": 1, "skipped": 1, "failed": 2, "killed": 0}
    missing = [job for job in summary.jobs if job.error == "no outcome recorded"]
    assert [job.overrides for job in missing] == [["seed=5"]]
    text = summary.format()
    assert text.splitlines()[0] == (
        "sweep summary (6 jobs): finished 3, diverged 1, failed 2 (1 reused from earlier runs)"
    )
    assert len(text.splitlines()) == 5  # the verdicts, then one line per failed or diverged job
    assert json.loads((tmp_path / SUMMARY_FILE).read_text())["counts"] == summary.counts


def test_summary_counts_verdicts_per_check_next_to_outcomes(tmp_path: Path) -> None:
    stable, unstable = {"gradient_stability": "PASS"}, {"gradient_stability": "FAIL"}
    fake_job(tmp_path, 0, "finished", verdict="pass", checks={"gradient_verification": "PASS", **stable})
    fake_job(tmp_path, 1, "finished", verdict="fail", checks={"gradient_verification": "PASS", **unstable})
    fake_job(tmp_path, 2, "skipped", verdict="fail", checks={"gradient_verification": "PASS", **unstable})
    fake_job(tmp_path, 3, "skipped", verdict="diverged", checks={"gradient_verification": "PASS", **stable})
    summary = summarize_sweep(tmp_path)
    lines = summary.format().splitlines()
    assert lines[0] == "sweep summary (4 jobs): finished 3, diverged 1, failed 0 (2 reused from earlier runs)"
    assert lines[1] == "verdicts: pass 1, fail 2, diverged 1"
    assert [line.split() for line in lines[2:]] == [
        ["check", "PASS", "FAIL"],
        ["gradient_verification", "4", "0"],
        ["gradient_stability", "2", "2"],
    ]
    saved = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert (saved["state"], saved["reused"]) == ({"finished": 3, "diverged": 1, "failed": 0}, 2)
    assert saved["checks"]["gradient_stability"] == {"PASS": 2, "FAIL": 2}


def test_outcome_roundtrip_and_validation(tmp_path: Path) -> None:
    record = JobOutcome("diverged", job=3, overrides=["a=1"], objective=math.nan, error="DivergenceError: x")
    write_outcome(tmp_path / "3", record)
    (tmp_path / "3" / ".hydra").mkdir()
    (loaded,) = read_outcomes(tmp_path)
    assert (loaded.outcome, loaded.job, loaded.error) == ("diverged", 3, "DivergenceError: x")
    assert math.isnan(loaded.objective)
    with pytest.raises(ValueError, match="outcome must be one of"):
        JobOutcome("crashed")


def test_multirun_end_exits_nonzero_only_when_a_job_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_job(tmp_path / "ok", 0, "finished")
    fake_job(tmp_path / "ok", 1, "diverged")
    callback = EvoexpCallback()
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "ok")}}}))
    fake_job(tmp_path / "bad", 0, "finished")
    fake_job(tmp_path / "bad", 1, "failed")
    with pytest.raises(SystemExit) as info:
        callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "bad")}}}))
    assert info.value.code == 1
    assert capsys.readouterr().err.startswith("evoexp: error: 1 of 2 jobs failed")


def test_job_line_names_the_shape_the_job_resolved_not_the_composed_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "0"
    write_outcome(job, JobOutcome("finished", test_acc=0.5, label="gaussian β=0.707107 seed 0 alpha=0.5"))
    config = OmegaConf.create(
        {
            "surrogate": {"name": "fast_sigmoid", "slope": 25.0},  # the composed default a peer surrogate replaces
            "seed": 0,
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "runtime": {"output_dir": str(job)},
                "sweep": {"dir": str(tmp_path)},
                "job": {"num": 0},
                "overrides": {"task": ["+surrogate.peer_params.alpha=0.5"]},
            },
        }
    )
    EvoexpCallback().on_job_end(config, job_return=None)  # type: ignore[arg-type]
    assert capsys.readouterr().out.startswith("[1/?] gaussian β=0.707107 seed 0 alpha=0.5 · test 50.0%")


def test_reuse_baseline_trains_once_per_key(tmp_path: Path) -> None:
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 's.db'}", "exp", root=tmp_path)
    calls: list[int] = []

    def train() -> tuple[dict[str, object], dict[str, float]]:
        calls.append(1)
        return {"n_params": 7, "history": []}, {"ann/test/acc": 0.5}

    first = reuse_baseline(tracker, "k1", train, root=tmp_path)
    second = reuse_baseline(tracker, "k1", train, root=tmp_path)
    other = reuse_baseline(tracker, "k2", train, root=tmp_path)
    assert len(calls) == 2
    assert (first[2], second[2], other[2]) == (False, True, False)
    assert first[1] == second[1] != other[1]
    assert second[0] == {"n_params": 7, "history": []}
    reuse_baseline(tracker, "k1", train, root=tmp_path, enabled=False)
    reuse_baseline(NullTracker(), "k1", train, root=tmp_path)
    assert len(calls) == 4  # disabled reuse and untracked jobs always train


def _reuse(uri: str, root: str) -> bool:
    tracker = MlflowTracker(uri, "exp", root=Path(root))

    def train() -> tuple[dict[str, object], dict[str, float]]:
        time.sleep(1.0)  # long enough that the other worker asks while this one trains
        return {"trained_by": os.getpid()}, {}

    return reuse_baseline(tracker, "key", train, root=Path(root))[2]


def test_parallel_workers_share_one_baseline(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 's.db'}"
    MlflowTracker(uri, "exp", root=tmp_path).prepare()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        reused = pool.starmap(_reuse, [(uri, str(tmp_path))] * 4)
    assert sorted(reused) == [False, True, True, True]


# --- multiruns through the CLI (slow: several Python processes each) ---------------------------------------------


def evoexp(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    base.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "evoexp", *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=timeout
    )


def store_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], max_results=1000)


def job_runs(uri: str, experiment: str) -> list:
    return [r for r in store_runs(uri, experiment) if r.data.tags.get(Tags.KIND) == "job"]


def sweep_summary(root: Path) -> dict:
    (path,) = sorted((root / "outputs" / "multirun").rglob(SUMMARY_FILE))[-1:]
    return json.loads(path.read_text())


JOB_LINE = re.compile(r"^\[(\d+)/(\d+)\] (.*)$")


def job_lines(stdout: str) -> list[tuple[int, int, str]]:
    """The per-job progress lines of a multirun's stdout as ``(count, total, rest)``."""
    return [(int(m[1]), int(m[2]), m[3]) for m in map(JOB_LINE.match, stdout.splitlines()) if m]


def test_sweep_prints_one_line_per_job_and_is_one_parent_run_with_nested_jobs(tmp_path: Path) -> None:
    args = ("-m", "experiment=smoke", "seed=0,1", "debug.diverge=false,true", "tracking.experiment=nest")
    done = evoexp(tmp_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[1] == (  # the header says what each job checks
        "  checks per job: gradient_verification, surrogate_verification, gradient_stability, convergence, benchmark"
    )
    lines = job_lines(done.stdout)
    assert [(count, total) for count, total, _ in lines] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert sum("DIVERGED" in rest for _, _, rest in lines) == 2
    assert all(rest.startswith("fast_sigmoid β=25 seed ") for _, _, rest in lines)
    assert "ETA" in lines[0][2] and "ETA" not in lines[-1][2]
    assert "snn epoch" not in done.stdout + done.stderr  # epoch lines go to the jobs' log files only
    assert "Downloading artifacts" not in done.stderr  # MLflow's progress bar of the reused ANN baseline
    sweep_dir = next((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert all("snn epoch 1/2" in (job / "__main__.log").read_text() for job in sweep_dir.glob("[0-9]*"))
    assert len((sweep_dir / PROGRESS_LOG).read_text().splitlines()) == 4

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    runs = store_runs(uri, "nest")
    (parent,) = [r for r in runs if r.data.tags[Tags.KIND] == "sweep"]
    jobs = [r for r in runs if r.data.tags[Tags.KIND] == "job"]
    baselines = [r for r in runs if r.data.tags[Tags.KIND] == "ann_baseline"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/jobs_diverged"] == 2.0
    assert "diverged 2" in parent.data.tags[Tags.NOTE]
    state = {k: v for k, v in parent.data.metrics.items() if k.startswith("sweep/jobs_")}
    verdicts = sum(v for k, v in parent.data.metrics.items() if k.startswith("sweep/verdict_"))
    assert (sum(state.values()), verdicts) == (4.0, 4.0)
    assert len(baselines) == 2  # one ANN twin per seed, in the sweep's experiment, nested under its run
    assert {r.data.tags[Tags.PARENT_RUN] for r in jobs + baselines} == {parent.info.run_id}
    assert len({r.info.run_name for r in jobs}) == 4  # debug.diverge is swept, so it is in the names
    assert sorted(r.data.tags[Tags.VERDICT] for r in jobs)[:2] == ["diverged", "diverged"]
    assert all(r.data.tags[Tags.NOTE].startswith("**Verdict: ") for r in jobs)
    assert {r.data.metrics["config/seed"] for r in jobs} == {0.0, 1.0}
    assert all(len(r.inputs.dataset_inputs) == 3 for r in jobs)

    analysis = run_analysis("nest", out_dir=tmp_path / "analysis", tracking_uri=uri, formats=["md"])
    assert analysis.summary_run_id == parent.info.run_id  # tables go to the sweep's run, not a new one
    assert set(analysis.runs["run_id"]) == {r.info.run_id for r in jobs}
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id, "analysis")}
    assert "analysis/snn_vs_ann.md" in artifacts

    experiment = MlflowClient(uri).get_experiment(parent.info.experiment_id)
    envelope = json.loads(experiment.tags["mlflow.sharedViewState.evoexp-jobs"])  # the UI's saved view of the jobs
    columns = json.loads(envelope["state"])["selectedColumns"]
    assert all(re.sub(r"^metrics\.`(.*)`$", r"\1", c) in jobs[0].data.metrics for c in columns if "metrics" in c)
    assert experiment.tags[Tags.NOTE] == EXPERIMENT_DESCRIPTION  # names the view on MLflow's home page

    again = evoexp(tmp_path, *args)  # the same sweep again: resumed under the same parent run
    assert again.returncode == 0, again.stderr[-3000:]
    assert all("skipped (finished run" in rest for _, _, rest in job_lines(again.stdout))
    assert "sweep summary (4 jobs): finished 2, diverged 2, failed 0 (4 reused from earlier runs)" in again.stdout
    rerun = store_runs(uri, "nest")
    (resumed,) = [r for r in rerun if r.data.tags[Tags.KIND] == "sweep"]
    assert resumed.info.run_id == parent.info.run_id
    assert len(rerun) == len(runs)
    sweep_metrics = {k: v for k, v in resumed.data.metrics.items() if k.startswith("sweep/")}
    assert sweep_metrics == {k: v for k, v in parent.data.metrics.items() if k.startswith("sweep/")} | {
        "sweep/jobs_reused": 4.0  # the whole sweep's state, not "finished 0, skipped 4"
    }
    assert "4 jobs — finished 2, diverged 2, failed 0 (4 reused from earlier runs)." in resumed.data.tags[Tags.NOTE]


@pytest.mark.skipif(importlib.util.find_spec("spikingjelly") is None, reason="needs the peers extra")
def test_a_peer_parameter_sweep_labels_each_job_with_the_shape_it_resolved(tmp_path: Path) -> None:
    args = ("surrogate.peer=spikingjelly:Erf", "+surrogate.peer_params.alpha=0.5,2", "trainer.epochs=1")
    done = evoexp(tmp_path, "-m", "experiment=smoke", *args, "verifier.checks=[]", "tracking=off")
    assert done.returncode == 0, done.stderr[-3000:]
    labels = sorted(rest.split(" · ")[0] for _, _, rest in job_lines(done.stdout))
    assert labels == ["gaussian β=0.707107 seed 0 alpha=0.5", "gaussian β=2.82843 seed 0 alpha=2"]  # not fast_sigmoid


def test_single_run_ends_with_its_verdicts_report_run_id_and_ui_url(tmp_path: Path) -> None:
    done = evoexp(tmp_path, "experiment=smoke", "tracking.experiment=single")
    assert done.returncode == 0, done.stderr[-3000:]
    tail = done.stdout[done.stdout.index("evoexp: verdict ") :].splitlines()
    (run,) = job_runs(f"sqlite:///{tmp_path / 'mlruns.db'}", "single")
    assert tail[0] == f"evoexp: verdict {run.data.tags[Tags.VERDICT]}"
    assert sum(line.strip().endswith(("PASS", "FAIL", "info", "skipped")) for line in tail) == len(CHECKS)
    assert any(line.strip().startswith("test accuracy ") for line in tail)
    (report,) = [line.split(maxsplit=1)[1] for line in tail if line.strip().startswith("report ")]
    assert Path(report).name == "report.md" and Path(report).is_file()
    assert f"  MLflow  run {run.info.run_id} in sqlite:///" in done.stdout
    url = f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"  UI      {url}?workflowType=machine_learning  (start it: mlflow ui --backend-store-uri" in done.stdout


def test_verbose_job_logging_shows_epoch_lines_in_a_sweep(tmp_path: Path) -> None:
    done = evoexp(tmp_path, "-m", "experiment=smoke", "seed=3", "tracking=off", "hydra/job_logging=verbose")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "snn epoch 2/2" in done.stdout
    assert [count for count, _, _ in job_lines(done.stdout)] == [1]


def running_job_runs(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            query = (
                "select count(*) from runs r join tags t on r.run_uuid = t.run_uuid "
                "where r.status = 'RUNNING' and t.key = 'evoexp.kind' and t.value = 'job'"
            )
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # the store is not created yet
        return 0


def test_sigkilled_sweep_leaves_no_running_run_after_it_is_run_again(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "evoexp", "-m", "experiment=smoke", "seed=0,1", "debug.sleep=3"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONPATH": str(REPO)}
    sweep = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while running_job_runs(tmp_path / "mlruns.db") == 0:
        assert sweep.poll() is None and time.monotonic() < deadline, "the sweep never started a job"
        time.sleep(0.2)
    os.killpg(sweep.pid, signal.SIGKILL)  # like the OOM killer or a lost node: nothing gets to clean up
    sweep.wait(timeout=60)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    killed = {r.info.run_id for r in store_runs(uri, "evoexp") if r.info.status == "RUNNING"}
    assert len(killed) == 2  # the sweep's run and its first job

    done = evoexp(tmp_path, *args[3:])
    assert done.returncode == 0, done.stderr[-3000:]
    runs = store_runs(uri, "evoexp")
    assert [r for r in runs if r.info.status == "RUNNING"] == []
    ghosts = [r for r in runs if r.info.run_id in killed and r.data.tags[Tags.KIND] == "job"]
    assert [r.info.status for r in ghosts] == ["KILLED"]
    assert "no longer exists" in ghosts[0].data.tags[Tags.ERROR]
    jobs = [r for r in runs if r.data.tags[Tags.KIND] == "job" and r.info.status == "FINISHED"]
    assert sorted(r.data.params["seed"] for r in jobs) == ["0", "1"]
    analysis = run_analysis("evoexp", out_dir=tmp_path / "analysis", tracking_uri=uri, formats=["md"])
    assert set(analysis.runs["run_id"]) == {r.info.run_id for r in jobs}  # the ghost is never counted


@pytest.mark.slow
def test_parallel_sweep_on_a_brand_new_store_files_every_run(tmp_path: Path) -> None:
    done = evoexp(
        tmp_path,
        "-m",
        "experiment=smoke",
        "surrogate=fast_sigmoid,superspike,atan,sigmoid",
        "seed=0,1",
        "hydra/launcher=parallel",
        "tracking.experiment=par",
        env={"EVOEXP_WORKERS": "2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    runs = store_runs(uri, "par")
    assert len(runs) == 11  # 8 jobs, the sweep's run and 2 ANN baselines
    jobs = [r for r in runs if r.data.tags[Tags.KIND] == "job"]
    assert len(jobs) == 8
    assert all(r.info.status == "FINISHED" and r.data.tags["evoexp.outcome"] == "finished" for r in runs)
    assert {r.data.params["surrogate.name"] for r in jobs} == {"fast_sigmoid", "superspike", "atan", "sigmoid"}
    assert len({r.data.tags["evoexp.sweep_id"] for r in runs if r.data.tags[Tags.KIND] != "ann_baseline"}) == 1
    assert store_runs(uri, "Default") == []
    assert sum(r.data.tags[Tags.KIND] == "ann_baseline" for r in runs) == 2  # one ANN per seed, reused 4 times
    assert sweep_summary(tmp_path)["counts"] == {"finished": 8, "diverged": 0, "skipped": 0, "failed": 0, "killed": 0}
    lines = job_lines(done.stdout)  # printed by the workers as their jobs finish
    assert sorted(count for count, _, _ in lines) == list(range(1, 9))
    assert {total for _, total, _ in lines} == {8}
    assert sum("ETA" in rest for _, _, rest in lines) == 7


@pytest.mark.slow
def test_failure_and_divergence_are_isolated_and_resume_redoes_only_failures(tmp_path: Path) -> None:
    args = ("-m", "experiment=smoke", "debug.fail=false,true", "debug.diverge=false,true", "hydra/launcher=parallel")
    done = evoexp(tmp_path, *args)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("evoexp: error: 2 of 4 jobs failed")
    assert sweep_summary(tmp_path)["counts"] == {"finished": 1, "diverged": 1, "skipped": 0, "failed": 2, "killed": 0}
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    runs = job_runs(uri, "evoexp")
    by_outcome = sorted((r.data.tags["evoexp.outcome"], r.info.status) for r in runs)
    assert by_outcome == [
        ("diverged", "FINISHED"),
        ("failed", "FAILED"),
        ("failed", "FAILED"),
        ("finished", "FINISHED"),
    ]

    again = evoexp(tmp_path, *args)
    assert again.returncode == 1
    assert sweep_summary(tmp_path)["counts"] == {"finished": 0, "diverged": 0, "skipped": 2, "failed": 2, "killed": 0}
    assert sweep_summary(tmp_path)["state"] == {"finished": 1, "diverged": 1, "failed": 2}
    assert len(job_runs(uri, "evoexp")) == 6  # the two failures were redone, nothing else


@pytest.mark.slow
def test_sweep_logs_to_a_real_mlflow_server(
    tmp_path: Path, free_port: Callable[[], int], mlflow_server: Callable[..., Any]
) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    with mlflow_server(tmp_path / "server", port):
        done = evoexp(
            tmp_path, "-m", "experiment=smoke", "seed=0,1", "tracking=server", env={"MLFLOW_TRACKING_URI": uri}
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs = store_runs(uri, "evoexp")
        (parent,) = [r for r in runs if r.data.tags[Tags.KIND] == "sweep"]
        jobs = [r for r in runs if r.data.tags[Tags.KIND] == "job"]
        assert len(jobs) == 2
        assert all(r.info.status == "FINISHED" for r in runs)
        assert all("snn/val/acc" in r.data.metrics for r in jobs)
        assert {r.data.tags[Tags.PARENT_RUN] for r in jobs} == {parent.info.run_id}
        assert all({i.dataset.name for i in r.inputs.dataset_inputs} == {"synthetic"} for r in jobs)
        assert not (tmp_path / "mlruns.db").exists()
        assert "View run" not in done.stdout  # MLflow's own URL lines; evoexp prints one line per job
        url = f"{uri}/#/experiments/{parent.info.experiment_id}/runs?workflowType=machine_learning"
        assert url in done.stdout
        with urllib.request.urlopen(url, timeout=30) as page:  # the server serves the UI at that address
            assert page.status == 200
            assert b"<html" in page.read().lower()


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_small_sweep(tmp_path: Path) -> None:
    done = evoexp(tmp_path, "-m", "experiment=smoke", "seed=0,1", "hydra/launcher=local_cluster")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = job_runs(f"sqlite:///{tmp_path / 'mlruns.db'}", "evoexp")
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert list((tmp_path / "outputs" / "multirun").rglob(".submitit"))
    assert sweep_summary(tmp_path)["counts"]["finished"] == 2
