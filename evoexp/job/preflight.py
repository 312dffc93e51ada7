"""Checks a multirun passes before it opens anything: every job's config, the sweep directory, the claim on it.

A sweep that fails after opening its parent MLflow run and its sweep directory leaves both behind (a RUNNING parent,
an orphan directory). :class:`~evoexp.job.sweep.EvoexpCallback` therefore runs these checks first and stops with one
line when one fails:

* :func:`job_overrides` lists the jobs of a basic-sweeper multirun the way Hydra's ``BasicSweeper`` will run them,
  and :func:`check_jobs` composes the config of the first job that has each swept value and runs its value checks
  (an unknown option among the swept values, a preset clash in one value, a value out of range): every swept value
  is checked, in :func:`covering` jobs (about the sum of the axes' lengths, not their product: composing one config
  takes 0.1-0.5 s). A clash that only a combination of two swept values causes is still caught by Hydra before the
  first job starts, or by the job, which then fails alone.
* :func:`check_sweep_dir` refuses a ``hydra.sweep.dir`` that is, or lies under, a file.
* :func:`claim_sweep_dir` takes a lock on the sweep directory for the invocation's lifetime: two invocations never
  share plan, progress or job directories (a directory in use by a running sweep is refused).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock, Timeout
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from evoexp.job.config import describe_config_error, is_config_error, load_config

__all__ = [
    "SWEEP_LOCK",
    "PreflightError",
    "check_jobs",
    "check_sweep_dir",
    "claim_sweep_dir",
    "covering",
    "job_overrides",
]

SWEEP_LOCK = ".evoexp/sweep.lock"
"""Lock file (under the sweep directory) held by the invocation that runs the sweep."""


class PreflightError(ValueError):
    """A check before the sweep failed; the message is one line."""


def job_overrides(config: DictConfig) -> list[list[str]] | None:
    """The overrides of every job of a basic-sweeper multirun, in Hydra's order; None for other sweepers.

    Hydra's ``BasicSweeper`` takes ``hydra.sweeper.params`` first, then the command line (a later value of a key
    replaces an earlier one), and runs the cartesian product of the swept values.
    """
    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return None
    params = OmegaConf.to_container(sweeper.params) if sweeper.get("params") else {}
    texts = [f"{key!s}={value}" for key, value in params.items()] if isinstance(params, dict) else []
    texts += [str(o) for o in config.hydra.overrides.task]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    lists: dict[str, list[str]] = {}
    for override in parser.parse_overrides(texts):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise PreflightError(f"{key}: the basic sweeper sweeps lists and ranges only, not intervals")
            lists[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            lists[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*lists.values())]


def _task_config(config: DictConfig) -> DictConfig:
    job = copy.deepcopy(config)
    with read_write(job), open_dict(job):
        job.pop("hydra", None)
    return job


def covering(jobs: Sequence[Sequence[str]]) -> list[int]:
    """Numbers of the jobs that together hold every override of ``jobs``: each job that holds one not seen before."""
    seen: set[str] = set()
    chosen = []
    for number, overrides in enumerate(jobs):
        if not seen.issuperset(overrides):
            chosen.append(number)
            seen.update(overrides)
    return chosen


def check_jobs(config: DictConfig, jobs: Sequence[Sequence[str]]) -> None:
    """Compose the config of the :func:`covering` jobs and run their value checks: every swept value is checked.

    Args:
        config: The multirun's config (``hydra.overrides.hydra`` are applied to each job, as Hydra does).
        jobs: Each job's overrides (:func:`job_overrides`).

    Raises:
        PreflightError: The first job whose config does not compose or validate: the reason, the job's number and
            its overrides, on one line.
    """
    loader = GlobalHydra.instance().config_loader()
    for number in covering(jobs):
        overrides = jobs[number]
        try:
            load_config(_task_config(loader.load_sweep_config(config, list(overrides))))
        except Exception as exc:
            if not is_config_error(exc):
                raise
            where = f" (job {number} of {len(jobs)}: {' '.join(overrides)})" if len(jobs) > 1 else ""
            raise PreflightError(f"{describe_config_error(exc, overrides)}{where}") from None


def check_sweep_dir(sweep_dir: Path) -> None:
    """Refuse a sweep directory that is a file or lies under one (before anything is created).

    Raises:
        PreflightError: Naming ``hydra.sweep.dir`` and the offending path.
    """
    path = Path(sweep_dir).absolute()
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            where = "is" if part == path else f"lies under {part}, which is"
            raise PreflightError(f"hydra.sweep.dir {sweep_dir} {where} a file, not a directory; choose another")


def claim_sweep_dir(sweep_dir: Path) -> FileLock:
    """Create the sweep directory and lock it for this invocation; return the held lock (released at exit).

    Raises:
        PreflightError: Another running invocation holds the directory, or it cannot be created or written.
    """
    lock = FileLock(str(Path(sweep_dir) / SWEEP_LOCK))
    try:
        (Path(sweep_dir) / SWEEP_LOCK).parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        raise PreflightError(
            f"hydra.sweep.dir {sweep_dir} is in use by another running sweep; choose another hydra.sweep.dir"
        ) from None
    except OSError as exc:
        raise PreflightError(f"hydra.sweep.dir {sweep_dir}: cannot create or write it: {exc}") from None
    return lock
