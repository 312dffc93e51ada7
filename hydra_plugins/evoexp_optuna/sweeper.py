"""The Hydra Sweeper ``hydra/sweeper=evoexp_optuna``: an Optuna search over ``hydra.sweeper.params``.

Each trial is one job of the configured launcher (``n_jobs`` trials per batch, so a parallel launcher runs them at
once); the job's return value is the objective. Failed jobs and non-finite values become FAILED trials and the search
goes on. At the end the study's best trial is logged and written to ``<sweep dir>/optimization_results.yaml``.
Settings: :class:`hydra_plugins.evoexp_optuna.config.EvoexpOptunaSweeperConf`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

__all__ = ["EvoexpOptunaSweeper"]

log = logging.getLogger(__name__)


def _name(value: Enum | str) -> str:
    """The name of an enum setting (OmegaConf passes the member; a plain string passes through)."""
    return value.name if isinstance(value, Enum) else str(value)


def _exit(message: str) -> NoReturn:
    """Print ``message`` as one error line and exit with status 1 (Hydra would print a traceback)."""
    sys.stderr.write(f"evoexp: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(1)


class EvoexpOptunaSweeper(Sweeper):
    """Optuna search through Hydra's Sweeper interface (settings documented in ``EvoexpOptunaSweeperConf``)."""

    def __init__(
        self,
        direction: Enum | str,
        n_trials: int,
        n_jobs: int,
        sampler: Enum | str,
        seed: int | None,
        storage: str | None,
        study_name: str | None,
        params: DictConfig | dict[str, Any],
    ) -> None:
        self.settings = {
            "direction": _name(direction),
            "n_trials": n_trials,
            "n_jobs": n_jobs,
            "sampler": _name(sampler),
            "seed": seed,
            "storage": storage,
            "study_name": study_name,
        }
        self.params = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else params
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        """Search with the command line's overrides ``arguments``; return the job returns, one list per batch."""
        try:
            from hydra_plugins.evoexp_optuna._search import (
                RESULTS_FILE,
                SearchError,
                SearchSettings,
                open_study,
                run_search,
                write_results,
            )
            from hydra_plugins.evoexp_optuna._space import SearchSpaceError, parse_space
        except ModuleNotFoundError as exc:
            if exc.name != "optuna":
                raise
            _exit("hydra/sweeper=evoexp_optuna needs Optuna, which is not installed: pip install 'evoexp[search]'")

        assert self.config is not None and self.launcher is not None, "setup() runs before sweep()"
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        try:
            settings = SearchSettings(**self.settings)
            space = parse_space(self.params, arguments)
            study = open_study(settings)
        except (SearchError, SearchSpaceError) as exc:
            _exit(str(exc))
        seed = "unseeded" if settings.seed is None else f"seed {settings.seed}"
        log.info(
            "Optuna study %r (%s): %s %d trials, %d at a time, sampler %s (%s), %d trials stored before; search "
            "space:\n%s",
            study.study_name,
            settings.storage or "in memory",
            settings.direction,
            settings.n_trials,
            settings.n_jobs,
            settings.sampler,
            seed,
            len(study.trials),
            space.describe(),
        )
        try:
            report = run_search(study, space, settings, self.launcher.launch, self.validate_batch_is_legal)
        except SearchError as exc:
            _exit(str(exc))
        results = write_results(sweep_dir, study, settings, report)
        done = f"{report.complete + report.failed} trials ({report.complete} complete, {report.failed} failed)"
        if results["best_trial"] is None:
            log.warning("Optuna search done: %s; no trial of study %r completed", done, study.study_name)
        else:
            params = " ".join(f"{k}={v}" for k, v in results["best_params"].items())
            log.info(
                "Optuna search done: %s; best of study %r: trial %d, value %s with %s (%s)",
                done,
                study.study_name,
                results["best_trial"],
                results["best_value"],
                params,
                sweep_dir / RESULTS_FILE,
            )
        return report.returns
