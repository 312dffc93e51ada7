"""The Optuna ``hparams_search`` preset: composition, and real multiruns that maximise the jobs' objective."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import OmegaConf

from evoexp.config import register_configs

optuna = pytest.importorskip("optuna", reason="the 'search' extra is not installed (make installs it)")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "evoexp" / "conf"
PRESET = "+hparams_search=surrogate_optuna"
# The smoke setting with a validation split large and noisy enough for the trials' accuracies to differ.
SMOKE = [
    "experiment=smoke",
    "dataset.samples_per_class=40",
    "dataset.noise=0.4",
    "dataset.split=[0.5,0.5,0.0]",
    "trainer.epochs=1",
]
OBJECTIVE = "snn/val/best_acc"


@pytest.fixture
def hydra_conf() -> Iterator[None]:
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


@pytest.mark.usefixtures("hydra_conf")
def test_preset_configures_optuna_to_maximise_over_slope_and_scale() -> None:
    cfg = compose(config_name="config", overrides=[PRESET, "seed=3"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.direction == "maximize"
    assert sweeper.storage is None
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed == 3  # follows the top-level seed
    assert dict(sweeper.params) == {
        "surrogate.slope": "tag(log, interval(1.0, 100.0))",
        "surrogate.scale": "tag(log, interval(0.1, 10.0))",
    }


def _search(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, "-m", "evoexp", "-m", *SMOKE, PRESET, *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _sweep_runs(root: Path, sweep_id: str) -> list:
    """The job runs of one sweep (the sweep id is the sweep directory, here given relative to ``root``)."""
    client = MlflowClient(f"sqlite:///{root / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("evoexp")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("evoexp.sweep_id") == sweep_id]


def _trial(run: Run) -> tuple[float, float, float]:
    params = run.data.params
    return float(params["surrogate.slope"]), float(params["surrogate.scale"]), run.data.metrics[OBJECTIVE]


def test_in_memory_search_reports_the_best_of_its_trials_each_one_an_mlflow_run(tmp_path: Path) -> None:
    _search(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweep.dir=search")
    runs = _sweep_runs(tmp_path, "search")
    assert len(runs) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    trials = [_trial(r) for r in runs]
    assert all(1.0 <= slope <= 100.0 and 0.1 <= scale <= 10.0 for slope, scale, _ in trials)
    assert len({(slope, scale) for slope, scale, _ in trials}) == 3  # sampled, not repeated
    assert len({value for *_, value in trials}) > 1  # precondition: the trials differ, so max is a real choice
    result = OmegaConf.load(tmp_path / "search" / "optimization_results.yaml")
    best = max(trials, key=lambda t: t[2])
    assert result.best_value == best[2]
    assert (result.best_params["surrogate.slope"], result.best_params["surrogate.scale"], best[2]) in trials
    summary = json.loads((tmp_path / "search" / "sweep_summary.json").read_text())
    assert summary["counts"]["finished"] == 3


@pytest.mark.slow
def test_study_in_the_project_database_continues_when_the_command_is_rerun(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = (f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=slopes", "hydra.sweeper.n_trials=1")
    _search(tmp_path, *args, "hydra.sweep.dir=first")
    _search(tmp_path, *args, "hydra.sweep.dir=second", "hydra.sweeper.sampler.seed=1")  # a continuation: new seed
    study = optuna.load_study(study_name="slopes", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    logged = sorted(_trial(r) for d in ("first", "second") for r in _sweep_runs(tmp_path, d))
    stored = sorted((t.params["surrogate.slope"], t.params["surrogate.scale"], t.value) for t in complete)
    assert logged == stored  # two new points, each the MLflow run of its job with the value the job returned
    result = OmegaConf.load(tmp_path / "second" / "optimization_results.yaml")
    assert result.best_value == study.best_value == max(t.value for t in complete)  # over both commands' trials
