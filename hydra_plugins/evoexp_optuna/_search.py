"""The search of the evoexp Optuna sweeper: open the study, ask ``n_jobs`` trials, launch them together, tell results.

Built on Optuna's public API (``optuna.create_study``/``load_study``, ``Study.ask``/``Study.tell``, samplers). A job
that fails (Hydra reports it FAILED) or returns something that is not a finite number (an evoexp job returns NaN when
its run diverged or failed) becomes a FAILED trial, told without values, and the search goes on. Each trial records
the job number, its output directory and, for evoexp jobs, the MLflow run id and outcome as user attributes.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.evoexp_optuna._space import SearchSpace

__all__ = [
    "RESULTS_FILE",
    "SearchError",
    "SearchReport",
    "SearchSettings",
    "check_storage",
    "make_sampler",
    "open_study",
    "run_search",
    "trial_result",
    "write_results",
]

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
# Written by every evoexp job into its output directory (evoexp.job.outcome.OUTCOME_FILE; read here as plain JSON so
# that the sweeper does not import the evoexp library).
EVOEXP_OUTCOME_FILE = "evoexp_outcome.json"
SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
}

Launch = Callable[[Sequence[Sequence[str]], int], Sequence[JobReturn]]
Check = Callable[[Sequence[Sequence[str]]], None]


class SearchError(RuntimeError):
    """A setting or state that stops the search; the message is one line naming the key."""


@dataclass(frozen=True)
class SearchSettings:
    """The sweeper's settings (``hydra.sweeper`` without ``params``), checked on creation.

    Attributes:
        direction: ``maximize`` or ``minimize``.
        n_trials: Trials this command adds (>= 1).
        n_jobs: Trials asked and launched together (>= 1).
        sampler: A key of :data:`SAMPLERS`.
        seed: Sampler seed, or None.
        storage: Optuna storage URL, or None (in memory).
        study_name: Study name in ``storage`` (None: a new, generated name).
    """

    direction: str = "maximize"
    n_trials: int = 20
    n_jobs: int = 1
    sampler: str = "tpe"
    seed: int | None = None
    storage: str | None = None
    study_name: str | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise SearchError(f"hydra.sweeper.direction must be maximize or minimize, got {self.direction!r}")
        for key in ("n_trials", "n_jobs"):
            if getattr(self, key) < 1:
                raise SearchError(f"hydra.sweeper.{key} must be >= 1, got {getattr(self, key)}")
        if self.sampler not in SAMPLERS:
            raise SearchError(f"hydra.sweeper.sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` (a key of :data:`SAMPLERS`) seeded with ``seed``."""
    return SAMPLERS[name](seed=seed)


def check_storage(url: str | None) -> None:
    """Refuse a SQLite file that belongs to another application, such as MLflow's ``mlruns.db``.

    MLflow and Optuna both keep their schema version in an ``alembic_version`` table, so one file cannot hold both:
    Optuna would fail on MLflow's schema version after creating its tables in MLflow's store.

    Raises:
        SearchError: ``url`` is an existing SQLite file with an ``alembic_version`` table and no Optuna studies.
    """
    if url is None or not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        return
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "alembic_version" in tables and "studies" not in tables:
        raise SearchError(
            f"hydra.sweeper.storage: {url} is another application's database (MLflow's?); Optuna and MLflow "
            "cannot share a file (both use an alembic_version table): give Optuna its own, e.g. sqlite:///optuna.db"
        )


def open_study(settings: SearchSettings) -> optuna.Study:
    """Create the study, or load the stored study ``settings.study_name`` to continue it.

    The sampler's seed is ``settings.seed`` plus the number of trials already in the study, so a continuation
    proposes new points (not the first command's again) and is itself reproducible.

    Raises:
        SearchError: The storage cannot be opened, or the stored study optimises in the other direction.
    """
    check_storage(settings.storage)
    try:
        study = optuna.create_study(
            storage=settings.storage,
            study_name=settings.study_name,
            direction=settings.direction,
            sampler=make_sampler(settings.sampler, settings.seed),
            load_if_exists=True,
        )
        stored = len(study.trials)
        if stored and settings.seed is not None:
            sampler = make_sampler(settings.sampler, settings.seed + stored)
            study = optuna.load_study(study_name=study.study_name, storage=settings.storage, sampler=sampler)
    except Exception as exc:  # SQLAlchemy's and Optuna's errors for a bad URL or an unreadable database
        raise SearchError(
            f"hydra.sweeper.storage: cannot open {settings.storage}: {type(exc).__name__}: {exc}"
        ) from exc
    if study.direction.name.lower() != settings.direction:
        raise SearchError(
            f"hydra.sweeper.direction: stored study {study.study_name!r} is to {study.direction.name.lower()}, "
            f"not {settings.direction}; use that direction or another study_name"
        )
    return study


def _evoexp_outcome(output_dir: str | None) -> dict[str, Any]:
    """The evoexp job outcome recorded in ``output_dir``, or ``{}`` (not an evoexp job, or none recorded)."""
    path = Path(output_dir) / EVOEXP_OUTCOME_FILE if output_dir else None
    if path is None or not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def trial_result(ret: JobReturn) -> tuple[float | None, dict[str, Any]]:
    """The value to tell for a finished job (None: the trial failed) and the trial's user attributes.

    Attributes: ``job`` and ``output_dir`` (from the job's Hydra config), ``mlflow_run_id`` and ``evoexp_outcome``
    (from an evoexp job's outcome file), and ``failure``, why the trial failed.
    """
    hydra_cfg = ret.hydra_cfg
    output_dir = OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir") if hydra_cfg is not None else None
    attrs: dict[str, Any] = {"job": OmegaConf.select(hydra_cfg, "hydra.job.num") if hydra_cfg else None}
    attrs["output_dir"] = output_dir
    outcome = _evoexp_outcome(output_dir)
    if outcome:
        attrs["evoexp_outcome"], attrs["mlflow_run_id"] = outcome.get("outcome"), outcome.get("run_id")
    if ret.status != JobStatus.COMPLETED:
        try:
            ret.return_value  # noqa: B018  (re-raises the job's exception: Hydra's public way to get it)
        except Exception as exc:
            attrs["failure"] = f"the job raised {type(exc).__name__}: {exc}"
        return None, attrs
    value = ret.return_value
    try:
        number = float(value)
    except (TypeError, ValueError):
        attrs["failure"] = f"the job returned {value!r}, not a number"
        return None, attrs
    if not math.isfinite(number):
        why = f" (evoexp job {outcome['outcome']}: {outcome['error']})" if outcome.get("error") else ""
        attrs["failure"] = f"the job returned {number}{why}"
        return None, attrs
    return number, attrs


@dataclass
class SearchReport:
    """What one command's search did.

    Attributes:
        complete: Trials told with a value.
        failed: Trials told FAILED.
        returns: The launcher's job returns, one sequence per batch.
    """

    complete: int = 0
    failed: int = 0
    returns: list[Sequence[JobReturn]] = field(default_factory=list)


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str, progress: str = "") -> None:
    """Tell ``trial`` FAILED (no values), record ``reason`` and log it (``progress``: `` (3/20)`` in the log)."""
    trial.set_user_attr("failure", reason)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    log.warning("Trial %d%s failed: %s", trial.number, progress, reason)


def _tell(study: optuna.Study, trial: optuna.Trial, ret: JobReturn, progress: str) -> bool:
    """Tell ``trial`` the result of its job ``ret``; return whether it completed (False: told FAILED)."""
    value, attrs = trial_result(ret)
    failure = attrs.pop("failure", None)
    for key, attr in attrs.items():
        trial.set_user_attr(key, attr)
    if value is None:
        _fail(study, trial, failure, progress)
        return False
    study.tell(trial, value)
    best = study.best_trial
    log.info(
        "Trial %d%s finished with value %s; best is trial %d with value %s",
        trial.number,
        progress,
        value,
        best.number,
        best.value,
    )
    return True


def run_search(
    study: optuna.Study, space: SearchSpace, settings: SearchSettings, launch: Launch, check: Check
) -> SearchReport:
    """Run ``settings.n_trials`` trials, ``settings.n_jobs`` at a time.

    Args:
        study: The study to add trials to.
        space: Distributions and fixed overrides.
        settings: Trial counts.
        launch: ``launch(job_overrides, initial_job_idx)``, the Hydra launcher's ``launch``.
        check: Raises when a batch's overrides do not compose (the sweeper's ``validate_batch_is_legal``).

    Raises:
        SearchError: A batch's overrides do not compose (its trials are told FAILED first).
    """
    report = SearchReport()
    while (job := report.complete + report.failed) < settings.n_trials:
        trials = [study.ask(space.distributions) for _ in range(min(settings.n_jobs, settings.n_trials - job))]
        batch = [space.overrides(trial.params) for trial in trials]
        told = 0
        try:
            try:
                check(batch)
            except Exception as exc:
                first = str(exc).splitlines()[0]
                raise SearchError(f"hydra.sweeper.params: a trial's overrides do not compose: {first}") from exc
            returns = launch(batch, job)
            for trial, ret in zip(trials, returns):
                completed = _tell(study, trial, ret, f" ({job + told + 1}/{settings.n_trials})")
                report.complete += completed
                report.failed += not completed
                told += 1
        finally:  # interrupted, or the batch did not compose: no trial is left RUNNING in a stored study
            for trial in trials[told:]:
                _fail(study, trial, "the search stopped before the trial's job returned")
                report.failed += 1
        report.returns.append(returns)
    return report


def _complete_best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The study's best trial, or None when no trial of it completed."""
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return None
    return study.best_trial


def write_results(
    sweep_dir: Path, study: optuna.Study, settings: SearchSettings, report: SearchReport
) -> dict[str, Any]:
    """Write ``sweep_dir/optimization_results.yaml`` (the study's best, over every command's trials) and return it."""
    best = _complete_best(study)
    results = {
        "name": "evoexp_optuna",
        "study_name": study.study_name,
        "storage": settings.storage,
        "direction": settings.direction,
        "sampler": settings.sampler,
        "seed": settings.seed,
        "trials": {"complete": report.complete, "failed": report.failed, "in_study": len(study.trials)},
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else best.value,
        "best_params": None if best is None else dict(best.params),
    }
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
    return results
