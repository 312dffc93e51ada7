"""Schema of ``hydra/sweeper=evoexp_optuna``, registered in Hydra's ConfigStore (group ``hydra/sweeper``).

Enum fields fail at composition time with a message naming the key (``hydra.sweeper.direction=max``); the numeric
bounds (``n_trials >= 1``, ``n_jobs >= 1``) and the search space are checked when the search starts.
"""

# No ``from __future__ import annotations`` here: Hydra's plugin scanner runs this module before it is in sys.modules,
# where dataclasses looks up string annotations.
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore

__all__ = ["Direction", "EvoexpOptunaSweeperConf", "Sampler"]


class Direction(Enum):
    """Whether the search maximises or minimises the jobs' return value."""

    maximize = "maximize"
    minimize = "minimize"


class Sampler(Enum):
    """Optuna sampler: TPE (``optuna.samplers.TPESampler``) or uniform random (``optuna.samplers.RandomSampler``)."""

    tpe = "tpe"
    random = "random"


@dataclass
class EvoexpOptunaSweeperConf:
    """Settings of the evoexp Optuna sweeper (``hydra.sweeper``).

    Attributes:
        direction: Maximise or minimise the value each job returns.
        n_trials: Trials this command adds to the study.
        n_jobs: Trials asked at a time and launched together (a parallel launcher runs them at once).
        sampler: ``tpe`` or ``random``.
        seed: Seed of the sampler (None: unseeded). A continued study uses ``seed + trials already stored``.
        storage: None keeps the study in memory; an Optuna storage URL (``sqlite:///optuna.db``) stores it.
        study_name: Name of the study in ``storage``; an existing study of that name is continued.
        params: Search space: ``key: {low, high[, log][, step][, type: int]}``, ``key: {choices: [...]}`` or
            ``key: <Hydra sweep syntax>`` (``tag(log, interval(1, 100))``, ``a,b,c``, ``range(1, 5)``).
    """

    _target_: str = "hydra_plugins.evoexp_optuna.sweeper.EvoexpOptunaSweeper"
    direction: Direction = Direction.maximize
    n_trials: int = 20
    n_jobs: int = 1
    sampler: Sampler = Sampler.tpe
    seed: int | None = None
    storage: str | None = None
    study_name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="evoexp_optuna", node=EvoexpOptunaSweeperConf, provider="evoexp"
)
