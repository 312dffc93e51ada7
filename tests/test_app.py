"""The ``python -m evoexp`` app end to end, in subprocesses with a temporary project root (store + outputs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from evoexp import keys
from evoexp.job.summary import parse_checks

REPO = Path(__file__).resolve().parents[1]


def evoexp(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m evoexp ARGS`` in ``cwd`` (its project root) with the default embedded store."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "evoexp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def client(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlruns.db'}")


def runs(root: Path, experiment: str = "evoexp", *, kind: str | None = None) -> list:
    """The runs of ``experiment`` in the store of ``root`` (those of ``evoexp.kind`` ``kind`` if given)."""
    if not (root / "mlruns.db").exists():
        return []
    found = client(root).get_experiment_by_name(experiment)
    found_runs = [] if found is None else client(root).search_runs([found.experiment_id], max_results=1000)
    return [r for r in found_runs if kind is None or r.data.tags[keys.Tags.KIND] == kind]


def undeclared_keys(run: Run) -> list[str]:
    """The run's tag, metric and param names that :mod:`evoexp.keys` does not declare."""
    data = run.data
    return sorted(
        [f"tag {k}" for k in data.tags if not keys.is_declared_tag(k)]
        + [f"metric {k}" for k in data.metrics if not keys.is_declared_metric(k)]
        + [f"param {k}" for k in data.params if not keys.is_declared_param(k)]
    )


def job_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "outputs").rglob(".hydra"))


def test_single_run_writes_results_report_and_one_mlflow_run_then_resume_skips_it(tmp_path: Path) -> None:
    done = evoexp(tmp_path, "experiment=smoke", "surrogate=superspike", "surrogate.slope=5")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "snn epoch 2/2" in done.stdout + done.stderr  # per-epoch progress through Hydra's job log
    (job,) = job_dirs(tmp_path)
    assert (job / "__main__.log").read_text().count("snn epoch") == 2
    results = json.loads((job / "results.json").read_text())
    assert results["outcome"] == "finished"
    assert results["config"]["surrogate"] == {"name": "superspike", "slope": 5.0, "scale": 1.0, "params": {},
                                              "peer": None, "peer_params": {}, "install": True}
    assert results["results"]["gradient_verification"]["passed"] is True
    assert results["results"]["benchmark"]["snn"]["n_params"] > 0
    report = (job / "report.md").read_text()
    assert report.startswith("# evoexp run: superspike (slope 5), seed 0")
    assert "Gradient verification" in report

    (run,) = runs(tmp_path, kind=keys.JOB_KIND)
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["evoexp.outcome"] == "finished"
    assert tags["evoexp.config_hash"] == results["config_hash"]
    for tag in ("evoexp.git_commit", "evoexp.version", "torch.version", "evoexp.job"):
        assert tags[tag]
    assert params["surrogate.name"] == "superspike"
    assert params["surrogate.slope"] == "5"  # equal values print alike (5 and 5.0)
    assert params["model.hidden_sizes"] == "[16]"
    assert metrics["snn/val/best_acc"] == pytest.approx(results["objective"])
    for key in ("snn/params", "benchmark/acc_gap", "benchmark/time_ratio"):
        assert key in metrics, key
    for model in ("snn", "ann"):  # test metrics at the best-validation epoch and at the last epoch
        for key in ("test/acc_best", "test/loss_best", "test/acc_last", "test/loss_last", "best_epoch"):
            assert metrics[f"{model}/{key}"] == pytest.approx(results["metrics"][f"{model}/{key}"])
        section = results["test"][model]
        assert section["best"]["acc"] == metrics[f"{model}/test/acc_best"]
        assert section["last"]["acc"] == metrics[f"{model}/test/acc_last"]
        assert 1 <= section["best_epoch"] <= 2
    assert "best-validation epoch" in results["test"]["selection"]
    assert "SNN test accuracy:" in report and "`snn/test/acc_last`" in report
    assert "snn/test/acc" not in metrics
    assert any(key.startswith("gradient") for key in metrics)

    def steps(key: str) -> list[int]:
        return sorted(m.step for m in client(tmp_path).get_metric_history(run.info.run_id, key))

    # Epoch 0 (before training) is evaluated like every epoch; running means exist from epoch 1.
    for key in ("snn/val/acc", "snn/train/eval_loss", "ann/val/acc", "ann/train/eval_loss"):
        assert steps(key) == [0, 1, 2], key
    assert steps("snn/train/loss") == steps("ann/train/loss") == [1, 2]
    assert tags["evoexp.code_identity"] == results["code_identity"]
    assert results["code_identity"].startswith("evoexp ")
    artifacts = {a.path for a in client(tmp_path).list_artifacts(run.info.run_id)}
    assert {"results.json", "report.md", "config_resolved.yaml", ".hydra", "__main__.log"} <= artifacts
    (baseline,) = runs(tmp_path, kind=keys.BASELINE_KIND)  # in the job's experiment, left out of the analysis
    assert run.data.metrics[keys.HEADLINE_TEST_ACC] == metrics[keys.SNN_TEST_ACC]
    checks = json.loads((job / "evoexp_outcome.json").read_text())["checks"]
    assert parse_checks(run.data.tags[keys.Tags.CHECKS]) == checks and checks["gradient_verification"] == "PASS"
    for logged in (run, baseline):  # one vocabulary: every key is declared
        assert undeclared_keys(logged) == [], logged.info.run_name

    again = evoexp(tmp_path, "experiment=smoke", "surrogate=superspike", "surrogate.slope=5")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(runs(tmp_path, kind=keys.JOB_KIND)) == 1  # resumed: nothing re-run
    outcome = json.loads((job_dirs(tmp_path)[-1] / "evoexp_outcome.json").read_text())
    assert (outcome["outcome"], outcome["run_id"]) == ("skipped", run.info.run_id)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("surrogate.slope=-1", "surrogate.slope must be a finite number > 0"),
        ("dataset.time_steps=0", "dataset.time_steps must be an int >= 1"),
        ("trainer.lr=abc", "(key: trainer.lr)"),
        ("trainer.nope=1", "(key: trainer.nope)"),
        ("surrogate=nope", "Available options in 'surrogate': atan,"),
        ("tracking.uri=bogus://x", "tracking.uri='bogus://x' has an unknown scheme 'bogus'"),
        ("tracking.uri=sqlite:////nonexistent/dir/x.db", "the directory /nonexistent/dir of the SQLite file"),
        ("dataset.split=[0.9,0.1,0.0]", "dataset.split leaves the test split empty"),
        ("dataset.samples_per_class=1", "dataset.samples_per_class=1 leaves the validation and test splits empty"),
        ("trainer.momentum=5", "trainer.momentum=5.0 is an SGD setting that adam ignores"),
        ("surrogate.slope=1e300", "surrogate.slope must be at most 1e+06"),
        ("dataset=digits", "experiment=smoke sets dataset.n_classes, which dataset=digits does not have"),
    ],
)
def test_bad_override_fails_with_one_line_and_no_run(tmp_path: Path, override: str, expected: str) -> None:
    done = evoexp(tmp_path, "experiment=smoke", override)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("evoexp: error: ")
    assert expected in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no outputs, no lock files
    assert not Path("/nonexistent").exists()


def test_dt_far_above_tau_runs_with_one_warning_line(tmp_path: Path) -> None:
    done = evoexp(tmp_path, "experiment=smoke", "model.dt=100", "tracking=off", "trainer.epochs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if "model.dt=100 is larger" in line]
    assert len(warnings) == 1, warnings


def test_hydra_full_error_shows_the_trace_of_a_config_error(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "evoexp", "experiment=smoke", "trainer.lr=abc"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "trainer.lr" in done.stderr


def test_help_lists_groups_and_options(tmp_path: Path) -> None:
    done = evoexp(tmp_path, "--help")
    assert done.returncode == 0
    for group in ("surrogate:", "model:", "dataset:", "trainer:", "verifier:", "tracking:", "experiment:"):
        assert group in done.stdout
    assert "fast_sigmoid" in done.stdout
    assert "hydra/launcher: parallel" in done.stdout


def test_forced_failure_in_a_single_run_is_recorded_failed_and_exits_nonzero(tmp_path: Path) -> None:
    done = evoexp(tmp_path, "experiment=smoke", "debug.fail=true")
    assert done.returncode != 0
    assert "debug.fail=true: injected failure" in done.stderr
    (run,) = runs(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["evoexp.error"] == "RuntimeError: debug.fail=true: injected failure"
    (job,) = job_dirs(tmp_path)
    assert json.loads((job / "evoexp_outcome.json").read_text())["outcome"] == "failed"


def test_forced_divergence_is_a_recorded_result_not_an_error(tmp_path: Path) -> None:
    done = evoexp(tmp_path, "experiment=smoke", "debug.diverge=true", "tracking=off")
    assert done.returncode == 0, done.stderr[-3000:]
    (job,) = job_dirs(tmp_path)
    results = json.loads((job / "results.json").read_text())
    assert results["outcome"] == "diverged"
    assert "diverged in epoch 1" in results["error"]
    assert results["objective"] == "NaN"
    assert "outcome: diverged" in (job / "report.md").read_text()
    assert not (tmp_path / "mlruns.db").exists()  # tracking=off
