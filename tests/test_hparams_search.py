"""Hyper-parameter search: evoexp's Optuna sweeper (``hydra/sweeper=evoexp_optuna``) and the ``hparams_search`` preset.

Tiers: the search space's parsing and the job-result rules in-process; real Hydra searches of a toy objective
in-process (Hydra's own sweep runner, the real sweeper and launcher: batches, failures, seeds, continuation, errors);
evoexp searches on the smoke setting in subprocesses, checked against their MLflow runs; the packaged wheel; slow: a
SQLite study continued across two commands.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf

from evoexp.job.config import register_configs
from evoexp.job.outcome import JobOutcome, write_outcome
from evoexp.job.progress import SweepPlan, plan_sweep
from evoexp.keys import OBJECTIVE

optuna = pytest.importorskip("optuna", reason="the 'search' extra is not installed (make installs it)")

from hydra_plugins.evoexp_optuna._search import RESULTS_FILE, trial_result  # noqa: E402  (needs optuna)
from hydra_plugins.evoexp_optuna._space import SearchSpace, SearchSpaceError, parse_entry, parse_space  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "evoexp" / "conf"
PRESET = "hparams_search=surrogate_optuna"
# The smoke setting at a smaller step, with a validation split large and noisy enough for one-epoch trials to differ.
SMOKE = ["experiment=smoke", "dataset.noise=0.4", "dataset.split=[0.4,0.5,0.1]", "trainer.epochs=1", "trainer.lr=0.005"]
Distribution = optuna.distributions.BaseDistribution
FloatD, IntD, Choice = (
    optuna.distributions.FloatDistribution,
    optuna.distributions.IntDistribution,
    optuna.distributions.CategoricalDistribution,
)
FAIL, COMPLETE = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE


# --- search space ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"low": 1, "high": 100, "log": True}, FloatD(1.0, 100.0, log=True)),
        ({"low": 0, "high": 1, "step": 0.25}, FloatD(0.0, 1.0, step=0.25)),
        ({"low": 1, "high": 8, "type": "int"}, IntD(1, 8)),
        ({"low": 2, "high": 64, "type": "int", "log": True}, IntD(2, 64, log=True)),
        ({"low": 1, "high": 9, "type": "int", "step": 2}, IntD(1, 9, step=2)),
        ({"choices": ["fast_sigmoid", "atan"]}, Choice(["fast_sigmoid", "atan"])),
        ({"choices": [False, True]}, Choice([False, True])),
        ("tag(log, interval(1, 100))", FloatD(1.0, 100.0, log=True)),
        ("interval(0.1, 0.9)", FloatD(0.1, 0.9)),
        ("tag(int, interval(1, 5))", IntD(1, 5)),
        ("fast_sigmoid,atan", Choice(["fast_sigmoid", "atan"])),
        ("choice(1, 2.5, 'a b')", Choice([1, 2.5, "a b"])),
        ("range(1, 4)", Choice([1, 2, 3])),
    ],
)
def test_entries_of_the_search_space_become_optuna_distributions(spec: Any, expected: Distribution) -> None:
    assert parse_entry("surrogate.slope", spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"low": 10, "high": 1}, "low (10) must be below high (1)"),
        ({"low": 1}, "a range needs low and high"),
        ({"low": 0, "high": 1, "log": True}, ".low must be > 0 for a log range"),
        ({"low": 1, "high": 2, "lg": True}, "unknown key(s) lg"),
        ({"low": "a", "high": 2}, ".low must be a finite number, got 'a'"),
        ({"low": 1, "high": float("inf")}, ".high must be a finite number"),
        ({"low": 1, "high": 2, "log": "yes"}, ".log must be true or false"),
        ({"low": 1, "high": 2, "type": "double"}, ".type must be float or int"),
        ({"low": 1.5, "high": 4, "type": "int"}, ".low must be an integer"),
        ({"low": 1, "high": 10, "log": True, "step": 1}, "step and log cannot be combined"),
        ({"low": 1, "high": 10, "step": -1}, ".step must be > 0"),
        ({"choices": []}, ".choices must be a non-empty list"),
        ({"choices": "atan"}, ".choices must be a non-empty list"),
        ({"choices": [[1, 2]]}, "a choice must be a single value"),
        ({"choices": ["atan", "atan"]}, "repeated choices"),
        ({"choices": ["atan"], "low": 1}, "choices take no other keys, got low"),
        (5, "expected a range"),
        ("7", "is a single value, not a search dimension"),
        ("interval(1", "cannot parse"),
        ("glob(*)", "glob(...) is not supported"),
        ("tag(cube, interval(1, 2))", "unknown interval tag(s) cube"),
    ],
)
def test_a_malformed_entry_fails_in_one_line_naming_its_key(spec: Any, message: str) -> None:
    with pytest.raises(SearchSpaceError) as caught:
        parse_entry("surrogate.slope", spec)
    text = str(caught.value)
    assert text.startswith("hydra.sweeper.params.surrogate.slope")
    assert message in text
    assert "\n" not in text


def test_command_line_sweeps_replace_dimensions_and_plain_values_fix_them() -> None:
    params = {"surrogate.slope": {"low": 1, "high": 100, "log": True}, "surrogate.scale": {"low": 0.1, "high": 10}}
    arguments = ["experiment=smoke", "surrogate.slope=tag(log, interval(5, 50))", "surrogate.scale=1.0", "seed=0,1"]
    space = parse_space(params, arguments)
    assert space.distributions == {"surrogate.slope": FloatD(5.0, 50.0, log=True), "seed": Choice([0, 1])}
    assert space.fixed == ("experiment=smoke", "surrogate.scale=1.0")
    assert space.overrides({"surrogate.slope": 7.5, "seed": 1}) == [
        "experiment=smoke",
        "surrogate.scale=1.0",
        "surrogate.slope=7.5",
        "seed=1",
    ]
    with pytest.raises(SearchSpaceError, match=r"^surrogate.slope \(command line\): unknown interval tag"):
        parse_space(params, ["surrogate.slope=tag(cube, interval(1, 2))"])
    with pytest.raises(SearchSpaceError, match=r"^hydra.sweeper.params: the search space is empty"):
        parse_space({"surrogate.slope": "interval(1, 2)"}, ["surrogate.slope=3"])


@pytest.mark.parametrize("value", [12.520653814999466, 1e-05, -3, True, None, "fast_sigmoid", "a b,c"])
def test_a_sampled_value_reaches_the_job_unchanged(value: Any) -> None:
    (line,) = SearchSpace({"key": Choice([value])}).overrides({"key": value})
    parsed = OverridesParser.create().parse_override(line).value()
    assert parsed == value and type(parsed) is type(value)


# --- one job's result --------------------------------------------------------------------------------------------


def _job_return(status: JobStatus, value: Any, output_dir: Path) -> JobReturn:
    ret = JobReturn()
    ret.status, ret.return_value = status, value
    ret.hydra_cfg = OmegaConf.create({"hydra": {"job": {"num": 3}, "runtime": {"output_dir": str(output_dir)}}})
    return ret


def test_a_finite_return_value_is_the_trials_value_and_links_the_evoexp_run(tmp_path: Path) -> None:
    write_outcome(tmp_path, JobOutcome("finished", job=3, run_id="abc123", objective=0.75))
    value, attrs = trial_result(_job_return(JobStatus.COMPLETED, 0.75, tmp_path))
    assert value == 0.75
    assert attrs == {"job": 3, "output_dir": str(tmp_path), "evoexp_outcome": "finished", "mlflow_run_id": "abc123"}


@pytest.mark.parametrize(
    ("status", "value", "failure"),
    [
        (JobStatus.COMPLETED, float("nan"), "the job returned nan"),
        (JobStatus.COMPLETED, float("-inf"), "the job returned -inf"),
        (JobStatus.COMPLETED, "best", "the job returned 'best', not a number"),
        (JobStatus.COMPLETED, None, "the job returned None, not a number"),
        (JobStatus.FAILED, RuntimeError("out of memory"), "the job raised RuntimeError: out of memory"),
    ],
)
def test_a_failed_job_or_non_finite_value_fails_the_trial(
    tmp_path: Path, status: JobStatus, value: Any, failure: str
) -> None:
    result, attrs = trial_result(_job_return(status, value, tmp_path))
    assert result is None
    assert attrs["failure"] == failure


def test_a_diverged_evoexp_job_fails_its_trial_with_the_recorded_reason(tmp_path: Path) -> None:
    write_outcome(tmp_path, JobOutcome("diverged", run_id="r1", error="loss is nan at epoch 1"))
    value, attrs = trial_result(_job_return(JobStatus.COMPLETED, float("nan"), tmp_path))
    assert value is None
    assert attrs["failure"] == "the job returned nan (evoexp job diverged: loss is nan at epoch 1)"
    assert attrs["mlflow_run_id"] == "r1"


# --- real Hydra searches of a toy objective, in-process ---------------------------------------------------------------

# Hydra's logging configs are off: in-process they would leave handlers on pytest's closed capture streams.
TOY_CONFIG = """\
defaults:
  - override hydra/sweeper: evoexp_optuna
  - override hydra/job_logging: none
  - override hydra/hydra_logging: none
  - _self_
x: 1.0
kind: ok
hydra:
  job:
    chdir: false
  sweeper:
    seed: 0
    n_trials: 4
    params:
      x: {low: 0.1, high: 100.0, log: true}
"""


def _toy_objective(cfg: DictConfig) -> float:
    """Best (0) at x = 10; ``kind`` injects a failing job or a diverged one."""
    if cfg.kind == "boom":
        raise RuntimeError("boom")
    if cfg.kind == "diverge":
        return float("nan")
    return -((math.log10(cfg.x) - 1.0) ** 2)


ToySearch = Callable[..., tuple[list[list[JobReturn]], dict[str, Any]]]


@pytest.fixture
def toy_search(tmp_path: Path, hydra_sweep_runner: Any, hydra_restore_singletons: None) -> ToySearch:
    """Run a real Hydra multirun of :func:`_toy_objective`; return its job returns by batch and its results."""
    (tmp_path / "config.yaml").write_text(TOY_CONFIG)

    def search(*overrides: str, sweep: str = "sweep") -> tuple[list[list[JobReturn]], dict[str, Any]]:
        runner = hydra_sweep_runner(
            calling_file=str(tmp_path / "toy.py"),
            calling_module=None,
            task_function=_toy_objective,
            config_path=".",
            config_name="config",
            overrides=list(overrides),
            temp_dir=tmp_path / sweep,
        )
        with runner as done:  # the runner deletes the sweep directory on exit
            results = OmegaConf.to_container(OmegaConf.load(tmp_path / sweep / RESULTS_FILE))
            assert isinstance(results, dict)
            return [list(batch) for batch in done.returns], results

    return search


def _params(batches: Sequence[Sequence[JobReturn]]) -> list[list[str]]:
    return [list(ret.overrides) for batch in batches for ret in batch]


@pytest.mark.parametrize(("direction", "best"), [("maximize", max), ("minimize", min)])
def test_a_search_launches_n_jobs_trials_per_batch_and_reports_the_best(
    toy_search: ToySearch, direction: str, best: Callable[..., float]
) -> None:
    batches, results = toy_search(
        "kind=ok", f"hydra.sweeper.direction={direction}", "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2"
    )
    assert [len(batch) for batch in batches] == [2, 2, 1]
    returns = [ret for batch in batches for ret in batch]
    assert [ret.hydra_cfg.hydra.job.num for ret in returns] == [0, 1, 2, 3, 4]
    assert all(ret.overrides[0] == "kind=ok" for ret in returns)  # the command line's plain value reaches every job
    values = [ret.return_value for ret in returns]
    assert len(set(values)) == 5
    assert results["best_value"] == best(values)
    (winner,) = [ret for ret in returns if ret.return_value == results["best_value"]]
    assert winner.overrides[1] == f"x={results['best_params']['x']}"
    assert results["trials"] == {"complete": 5, "failed": 0, "in_study": 5}
    assert results["direction"] == direction


def test_failed_and_non_finite_jobs_become_failed_trials_and_the_search_goes_on(
    toy_search: ToySearch, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _, results = toy_search(
        "kind=ok,boom,diverge",
        "hydra.sweeper.sampler=random",
        "hydra.sweeper.n_trials=8",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=toy",
    )
    trials = optuna.load_study(study_name="toy", storage=storage).trials
    kinds = [t.params["kind"] for t in trials]
    assert len(trials) == 8 and set(kinds) == {"ok", "boom", "diverge"}  # precondition of the seeded draw
    for trial in trials:
        assert trial.state == (COMPLETE if trial.params["kind"] == "ok" else FAIL)
        assert trial.values is None or trial.state == COMPLETE
    failures = {t.params["kind"]: t.user_attrs["failure"] for t in trials if t.state == FAIL}
    assert failures == {"boom": "the job raised RuntimeError: boom", "diverge": "the job returned nan"}
    assert results["trials"] == {"complete": kinds.count("ok"), "failed": 8 - kinds.count("ok"), "in_study": 8}
    assert results["best_value"] == max(t.value for t in trials if t.state == COMPLETE)
    assert results["best_params"]["kind"] == "ok"


@pytest.mark.parametrize(("sampler", "n_trials"), [("tpe", 12), ("random", 4)])  # TPE's model starts at trial 11
def test_the_sampler_seed_makes_a_search_reproducible(toy_search: ToySearch, sampler: str, n_trials: int) -> None:
    settings = (f"hydra.sweeper.sampler={sampler}", f"hydra.sweeper.n_trials={n_trials}")
    first, first_results = toy_search(*settings, "hydra.sweeper.seed=3", sweep="a")
    again, again_results = toy_search(*settings, "hydra.sweeper.seed=3", sweep="b")
    other, _ = toy_search(*settings, "hydra.sweeper.seed=4", sweep="c")
    assert _params(first) == _params(again)
    assert first_results["best_value"] == again_results["best_value"]
    assert set(map(tuple, _params(first))).isdisjoint(map(tuple, _params(other)))


def test_a_stored_study_continues_with_new_points_seeded_by_seed_plus_stored_trials(
    toy_search: ToySearch, tmp_path: Path
) -> None:
    stored = ("hydra.sweeper.sampler=random", f"hydra.sweeper.storage=sqlite:///{tmp_path / 'o.db'}")
    first, _ = toy_search(*stored, "hydra.sweeper.study_name=s", "hydra.sweeper.n_trials=3", sweep="a")
    second, results = toy_search(*stored, "hydra.sweeper.study_name=s", "hydra.sweeper.n_trials=2", sweep="b")
    fresh, _ = toy_search("hydra.sweeper.sampler=random", "hydra.sweeper.seed=3", "hydra.sweeper.n_trials=2", sweep="c")
    assert _params(second) == _params(fresh)  # continued: seed 0 + 3 stored trials
    assert set(map(tuple, _params(second))).isdisjoint(map(tuple, _params(first)))
    assert results["trials"] == {"complete": 2, "failed": 0, "in_study": 5}
    every = [ret.return_value for batch in (*first, *second) for ret in batch]
    assert results["best_value"] == max(every)  # the study's best over both commands


def _mlflow_like_db(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("CREATE TABLE experiments (experiment_id INTEGER)")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials must be >= 1, got 0"),
        (["hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs must be >= 1, got 0"),
        (["+hydra.sweeper.params.kind={choices: []}"], "hydra.sweeper.params.kind.choices must be a non-empty list"),
        (["x=tag(cube, interval(1, 2))"], "x (command line): unknown interval tag(s) cube"),
        (["+hydra.sweeper.params.nokey={choices: [1, 2]}"], "hydra.sweeper.params: a trial's overrides do not compose"),
        (["hydra.sweeper.storage=sqlite:///{tmp}/mlruns.db"], "is another application's database (MLflow's?)"),
        (["hydra.sweeper.storage=sqlite:///{tmp}/no/such/dir/o.db"], "hydra.sweeper.storage: cannot open"),
    ],
)
def test_bad_settings_stop_the_search_in_one_line_naming_the_key(
    toy_search: ToySearch, tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], message: str
) -> None:
    _mlflow_like_db(tmp_path / "mlruns.db")
    with pytest.raises(SystemExit) as stopped:
        toy_search(*(o.replace("{tmp}", str(tmp_path)) for o in overrides))
    assert stopped.value.code == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evoexp: error:")]
    assert message in line
    assert not list((tmp_path / "sweep").glob("*/.hydra"))  # no job ran


def test_a_stored_study_of_the_other_direction_is_refused(
    toy_search: ToySearch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = (f"hydra.sweeper.storage=sqlite:///{tmp_path / 'o.db'}", "hydra.sweeper.study_name=s")
    toy_search(*stored, "hydra.sweeper.n_trials=1", sweep="a")
    with pytest.raises(SystemExit):
        toy_search(*stored, "hydra.sweeper.direction=minimize", sweep="b")
    assert "hydra.sweeper.direction: stored study 's' is to maximize, not minimize" in capsys.readouterr().err


# --- the preset ----------------------------------------------------------------------------------------------------


@pytest.fixture
def hydra_conf() -> Iterator[None]:
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


@pytest.mark.usefixtures("hydra_conf")
def test_the_preset_searches_slope_and_scale_with_the_evoexp_sweeper_seeded_by_seed() -> None:
    cfg = compose(config_name="config", overrides=[PRESET, "seed=3"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"  # -m is optional
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.evoexp_optuna.sweeper.EvoexpOptunaSweeper"
    assert (sweeper.direction.name, sweeper.sampler.name, sweeper.storage, sweeper.seed) == ("maximize", "tpe", None, 3)
    assert OmegaConf.to_container(sweeper.params) == {
        "surrogate.slope": {"low": 1.0, "high": 100.0, "log": True},
        "surrogate.scale": {"low": 0.1, "high": 10.0, "log": True},
    }
    assert parse_space(OmegaConf.to_container(sweeper.params)).distributions == {
        "surrogate.slope": FloatD(1.0, 100.0, log=True),
        "surrogate.scale": FloatD(0.1, 10.0, log=True),
    }
    built = instantiate(sweeper)  # Hydra's plugin scan re-imports the module: compare by name, not class identity
    assert type(built).__name__ == "EvoexpOptunaSweeper"
    assert built.settings == {
        "direction": "maximize",
        "n_trials": 20,
        "n_jobs": 1,
        "sampler": "tpe",
        "seed": 3,
        "storage": None,
        "study_name": "surrogate_slope_scale",
    }


def test_the_sweep_plan_counts_the_searchs_trials_and_names_its_dimensions() -> None:
    params = {"surrogate.slope": {"low": 1.0, "high": 100.0, "log": True}, "surrogate": {"choices": ["atan"]}}
    axes, total = plan_sweep(
        ["seed=1", "trainer.lr=interval(0.001, 0.1)"], sweeper_params=params, basic_sweeper=False, n_trials=8
    )
    assert (axes, total) == (["surrogate.slope", "surrogate", "trainer.lr"], 8)
    assert plan_sweep(["surrogate=atan"], sweeper_params=params, basic_sweeper=False, n_trials=8)[0] == [
        "surrogate.slope"
    ]  # a plain command-line value fixes the key, as in the sweeper


@pytest.mark.usefixtures("hydra_conf")
@pytest.mark.parametrize(("override", "key"), [("direction=max", "direction"), ("sampler=grid", "sampler")])
def test_an_unknown_direction_or_sampler_fails_at_composition_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigCompositionException) as caught:
        compose(config_name="config", overrides=[PRESET, f"hydra.sweeper.{override}"], return_hydra_config=True)
    assert f"hydra.sweeper.{key}" in str(caught.value.__cause__ or caught.value)


# --- evoexp searches on the smoke setting, in subprocesses -----------------------------------------------------------


def _evoexp(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    command = [sys.executable, "-m", "evoexp", "-m", *SMOKE, PRESET, *args]
    return subprocess.run(
        command,
        cwd=cwd,
        env={**base, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _sweep_runs(root: Path, sweep_dir: str) -> list[Run]:
    """The job runs of the sweep in ``root / sweep_dir``, each checked to be a child of the sweep's parent run."""
    plan = SweepPlan.load(root / sweep_dir)
    assert plan is not None and plan.parent_run_id is not None  # the callback planned the search's sweep
    client = MlflowClient(f"sqlite:///{root / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("evoexp")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    jobs = [r for r in runs if r.data.tags.get("evoexp.kind") == "job"]
    mine = [r for r in jobs if Path(r.data.tags["evoexp.output_dir"]).parent == root / sweep_dir]
    for run in mine:
        assert run.data.tags["evoexp.sweep_id"] == plan.sweep_id
        assert run.data.tags["mlflow.parentRunId"] == plan.parent_run_id
    return mine


def _trial(run: Run) -> tuple[float, float, float]:
    params = run.data.params
    return float(params["surrogate.slope"]), float(params["surrogate.scale"]), run.data.metrics[OBJECTIVE]


def test_in_memory_search_on_the_smoke_setting_reports_the_best_of_its_mlflow_runs(tmp_path: Path) -> None:
    done = _evoexp(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweep.dir=search")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = _sweep_runs(tmp_path, "search")
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    trials = [_trial(r) for r in runs]
    assert all(1.0 <= slope <= 100.0 and 0.1 <= scale <= 10.0 for slope, scale, _ in trials)
    assert len({value for *_, value in trials}) == 3  # precondition: the trials differ, so the best is a real choice
    results = OmegaConf.load(tmp_path / "search" / RESULTS_FILE)
    best = max(trials, key=lambda t: t[2])
    assert (results.best_params["surrogate.slope"], results.best_params["surrogate.scale"], results.best_value) == best
    assert "Optuna search done: 3 trials (3 complete, 0 failed)" in done.stdout
    assert json.loads((tmp_path / "search" / "sweep_summary.json").read_text())["counts"]["finished"] == 3


def test_a_failing_trial_is_told_failed_and_the_search_completes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    done = _evoexp(
        tmp_path,
        "debug.fail=false,true",
        "hydra.sweeper.sampler=random",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweep.dir=search",
    )
    trials = optuna.load_study(study_name="surrogate_slope_scale", storage=storage).trials
    assert [t.params["debug.fail"] for t in trials] == [False, True, False]  # precondition of the seeded draw
    assert [t.state for t in trials] == [COMPLETE, FAIL, COMPLETE]
    assert "RuntimeError: debug.fail=true: injected failure" in trials[1].user_attrs["failure"]
    assert "Optuna search done: 3 trials (2 complete, 1 failed)" in done.stdout
    # The search completed; the command still exits 1 because a job failed (the evoexp sweep summary's rule).
    assert done.returncode == 1 and done.stderr.strip().endswith("1 of 3 jobs failed (see search/sweep_summary.json)")
    runs = {r.info.run_id: r for r in _sweep_runs(tmp_path, "search")}
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == set(runs)  # each trial links its MLflow run
    assert runs[trials[1].user_attrs["mlflow_run_id"]].info.status == "FAILED"
    results = OmegaConf.load(tmp_path / "search" / RESULTS_FILE)
    assert results.best_value == max(t.value for t in trials if t.state == COMPLETE)
    assert results.trials.failed == 1


def test_the_wheel_ships_the_sweeper_and_hydra_discovers_it_there(tmp_path: Path) -> None:
    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(dist),
        str(REPO),
    ]
    subprocess.run(build, check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = dist.glob("evoexp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"hydra_plugins/evoexp_optuna/sweeper.py", "hydra_plugins/evoexp_optuna/_search.py"} <= names
    assert "hydra_plugins/__init__.py" not in names  # a namespace package, shared with Hydra's own plugins
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, cwd=tmp_path)
    probe = (
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "found = [p for p in Plugins.instance().discover(Sweeper) if p.__name__ == 'EvoexpOptunaSweeper']\n"
        "import sys; print(sys.modules[found[0].__module__].__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert Path(where.strip()).is_relative_to(site), where


@pytest.mark.slow
def test_study_in_its_own_sqlite_file_continues_when_the_command_is_rerun(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = (f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=slopes")
    parallel = ("hydra/launcher=parallel", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2")
    first = _evoexp(tmp_path, *args, *parallel, "hydra.sweep.dir=first", env={"EVOEXP_WORKERS": "2"})
    assert first.returncode == 0, first.stderr[-3000:]
    second = _evoexp(tmp_path, *args, "hydra.sweeper.n_trials=1", "hydra.sweep.dir=second")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 trials stored before" in second.stdout
    study = optuna.load_study(study_name="slopes", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete = [t for t in study.trials if t.state == COMPLETE]
    assert len(complete) == len(study.trials) == 3
    logged = sorted(_trial(r) for d in ("first", "second") for r in _sweep_runs(tmp_path, d))
    stored = sorted((t.params["surrogate.slope"], t.params["surrogate.scale"], t.value) for t in complete)
    assert logged == stored  # three distinct points, each the MLflow run of its job with the value the job returned
    assert len({(slope, scale) for slope, scale, _ in logged}) == 3
    results = OmegaConf.load(tmp_path / "second" / RESULTS_FILE)
    assert results.best_value == study.best_value == max(t.value for t in complete)  # over both commands' trials
    assert results.trials.in_study == 3
