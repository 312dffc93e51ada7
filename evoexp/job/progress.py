"""Sweep progress: the plan of a multirun, the progress of its jobs, and the line printed as each job finishes.

The launcher process writes the plan (:class:`SweepPlan`: sweep id, parent run, number of jobs, swept keys) into
``<sweep dir>/.evoexp/`` before any job starts; every job reads it, whichever launcher runs it (joblib workers,
submitit processes, the basic in-process launcher). Each job records its start and end in one progress file under a
file lock (:class:`ProgressBoard`), so the count ``[17/105]`` and the ETA are right with parallel workers and jobs
finishing in any order::

    [17/105] fast_sigmoid β=10 seed 2 · test 94.1% · 2.3 s · ETA 3 min
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from evoexp.job.files import write_atomic

__all__ = [
    "NAMED_AXES",
    "PLAN_FILE",
    "PROGRESS_LOG",
    "JobLogFile",
    "JobProgress",
    "ProgressBoard",
    "QuietInSweeps",
    "SweepPlan",
    "axis_keys",
    "format_duration",
    "format_job_line",
    "job_label",
    "plan_sweep",
    "run_name",
    "split_override",
]

STATE_DIR = ".evoexp"
PLAN_FILE = f"{STATE_DIR}/sweep.json"
PROGRESS_FILE = f"{STATE_DIR}/progress.json"
PROGRESS_LOG = "progress.log"
NAMED_AXES = ("surrogate", "surrogate.slope", "seed")
"""Keys every run name shows (surrogate shape, slope, seed); other swept keys are appended."""
_NAME_KEYS = (*NAMED_AXES, "surrogate.name")


class QuietInSweeps(logging.Filter):
    """Console filter of ``hydra/job_logging=evoexp``: in a multirun only errors without a traceback pass.

    Every record still goes to the job's log file: epoch lines, ANN reuse, warnings such as a divergence, and the
    traceback of a failed job, all of which the sweep's one line per job reports instead. Single runs pass
    everything.
    """

    def __init__(self) -> None:
        super().__init__()
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        self.multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass ``record`` unless this is a multirun and it is below ERROR or carries a traceback."""
        return not self.multirun or (record.levelno >= logging.ERROR and not record.exc_info)


class JobLogFile(logging.FileHandler):
    """File handler of a job's log (``hydra/job_logging=evoexp``) that survives a full or read-only disk.

    :class:`logging.FileHandler` prints a traceback to stderr for every record it cannot write; on a full disk
    that buries the sweep's own lines. This one says once that the log file cannot be written and drops the rest.
    """

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = False) -> None:
        self._failed = False
        super().__init__(filename, mode, encoding, delay)

    def handleError(self, record: logging.LogRecord) -> None:
        """Report the first record that could not be written (to stderr), drop the rest silently."""
        if self._failed:
            return
        self._failed = True
        error = sys.exc_info()[1]
        sys.stderr.write(
            f"evoexp: cannot write the log file {self.baseFilename} ({error}); its next lines are dropped\n"
        )


def split_override(override: str) -> tuple[str, str]:
    """``(key, value)`` of a concrete ``key=value`` override (``+``/``++``/``~`` prefixes dropped)."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _sweep_keys(overrides: Sequence[str], sweeper_params: Mapping[str, Any]) -> tuple[list[str], int | None]:
    """The swept keys of a basic-sweeper multirun and its number of jobs (None when it cannot be counted).

    The basic sweeper takes ``hydra.sweeper.params`` first, then the command line (a later value of a key replaces
    an earlier one), and runs the cartesian product of every ``a,b,c`` / ``range(...)`` value list.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    texts = [f"{key}={value}" for key, value in sweeper_params.items() if not isinstance(value, Mapping)]
    texts += list(overrides)  # {low, high} / {choices} entries (hydra/sweeper=evoexp_optuna) are uncounted axes:
    sizes: dict[str, int | None] = {k.lstrip("+~"): None for k, v in sweeper_params.items() if isinstance(v, Mapping)}
    for override in OverridesParser.create().parse_overrides(texts):
        key = override.get_key_element().lstrip("+~")
        if not override.is_sweep_override():
            sizes.pop(key, None)
        elif override.is_discrete_sweep():
            try:
                sizes[key] = len(list(override.sweep_string_iterator()))
            except Exception:  # glob(...) sweeps need Hydra's config loader to be counted
                sizes[key] = None
        else:
            sizes[key] = None  # interval sweeps are for other sweepers
    total: int | None = math.prod(n for n in sizes.values() if n is not None)
    if any(n is None for n in sizes.values()):
        total = None
    return list(sizes), total


def plan_sweep(
    overrides: Sequence[str],
    *,
    sweeper_params: Mapping[str, Any],
    basic_sweeper: bool,
    n_trials: int | None = None,
) -> tuple[list[str], int | None]:
    """The swept keys and the number of jobs of a multirun.

    Args:
        overrides: The command-line overrides of the multirun (``hydra.overrides.task`` of the launcher process).
        sweeper_params: ``hydra.sweeper.params`` (e.g. from an experiment preset).
        basic_sweeper: Whether Hydra's basic sweeper runs the sweep (it runs the cartesian product).
        n_trials: The number of trials of another sweeper (e.g. Optuna's ``n_trials``), if it has one.

    Returns:
        ``(axes, total)``: the swept keys in sweep order; the number of jobs, or None when unknown.
    """
    axes, total = _sweep_keys(overrides, sweeper_params)
    return axes, total if basic_sweeper else n_trials


def _sweep_id(overrides: Sequence[str], sweeper_params: Mapping[str, Any], experiment: str) -> str:
    """Identity of a sweep's definition: ``<preset or 'sweep'>-<8 hex digits>``.

    It hashes the experiment name, ``hydra.sweeper.params`` and the overrides, without those that cannot change
    results (``hydra...``, ``tracking...``, ``threads``) and in sorted order, so re-running a sweep finds it again.
    """
    kept = sorted(o for o in overrides if not split_override(o)[0].startswith(("hydra", "tracking", "threads")))
    text = json.dumps([experiment, sorted(f"{k}={v}" for k, v in sweeper_params.items()), kept])
    preset = dict(split_override(o) for o in overrides).get("experiment") or "sweep"
    return f"{preset}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@dataclass
class SweepPlan:
    """What every job of a multirun needs to know about the sweep, written once by the launcher process.

    Attributes:
        sweep_id: Tag ``evoexp.sweep_id`` of the sweep's runs and name of its parent run.
        axes: Swept config keys, in sweep order.
        total: Number of jobs (None when the sweeper does not say in advance).
        parent_run_id: MLflow run the jobs nest under (None when untracked).
        started: When the sweep started (seconds since the epoch).
        invocation: Unique id of this invocation of the sweep (tag ``evoexp.invocation`` of every run it opens, and
            of its jobs' outcome records): a sweep run again, or twice at once, is another invocation.
    """

    sweep_id: str
    axes: list[str] = field(default_factory=list)
    total: int | None = None
    parent_run_id: str | None = None
    started: float = field(default_factory=time.time)
    invocation: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def create(
        cls,
        overrides: Sequence[str],
        *,
        sweeper_params: Mapping[str, Any],
        basic_sweeper: bool,
        experiment: str,
        sweep_id: str | None = None,
        n_trials: int | None = None,
    ) -> SweepPlan:
        """Plan a multirun from its overrides (see :func:`plan_sweep`); ``sweep_id`` None derives it."""
        axes, total = plan_sweep(
            overrides, sweeper_params=sweeper_params, basic_sweeper=basic_sweeper, n_trials=n_trials
        )
        return cls(sweep_id or _sweep_id(overrides, sweeper_params, experiment), axes, total)

    def save(self, sweep_dir: Path) -> Path:
        """Write the plan to ``sweep_dir / PLAN_FILE`` (atomically) and return the path."""
        return write_atomic(Path(sweep_dir) / PLAN_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepPlan | None:
        """The plan saved in ``sweep_dir``, or None when there is none."""
        path = Path(sweep_dir) / PLAN_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _parts(cfg: Any, overrides: Sequence[str], axes: Iterable[str]) -> tuple[str, str, str, list[tuple[str, str]]]:
    """Surrogate name, slope and seed of a job, and ``(key, value)`` of its other swept keys."""
    from omegaconf import OmegaConf

    slope = OmegaConf.select(cfg, "surrogate.slope", default=None)
    values = dict(split_override(o) for o in overrides)
    extras = [(key, values[key]) for key in axes if key not in _NAME_KEYS and key in values]
    return (
        str(OmegaConf.select(cfg, "surrogate.name", default="?")),
        "?" if slope is None else f"{float(slope):g}",
        str(OmegaConf.select(cfg, "seed", default="?")),
        extras,
    )


def _short(key: str, keys: Sequence[str]) -> str:
    """``key``'s last component, or the whole key when another of ``keys`` ends the same way."""
    leaf = key.rsplit(".", 1)[-1]
    return leaf if sum(k.rsplit(".", 1)[-1] == leaf for k in keys) == 1 else key


def axis_keys(overrides: Sequence[str], axes: Sequence[str]) -> list[str]:
    """Config keys a job's run mirrors as numbers: :data:`NAMED_AXES`, the swept keys and the overridden keys."""
    return list(dict.fromkeys([*NAMED_AXES, *axes, *(split_override(o)[0] for o in overrides)]))


def run_name(cfg: Any, overrides: Sequence[str] = (), axes: Sequence[str] = ()) -> str:
    """MLflow run name of a job: ``fast_sigmoid-b10-s2`` plus every other swept key, e.g. ``-dt=0.5``.

    Jobs of one sweep differ in at least one swept key, so their names differ.

    Args:
        cfg: The job's config (``surrogate.name``, ``surrogate.slope`` and ``seed`` are read).
        overrides: The job's concrete overrides (values of the other swept keys, as given).
        axes: The sweep's swept keys.
    """
    name, slope, seed, extras = _parts(cfg, overrides, axes)
    keys = [key for key, _ in extras]
    return f"{name}-b{slope}-s{seed}" + "".join(f"-{_short(key, keys)}={value}" for key, value in extras)


def job_label(cfg: Any, overrides: Sequence[str] = (), axes: Sequence[str] = ()) -> str:
    """Human label of a job, e.g. ``fast_sigmoid β=10 seed 2 dt=0.5`` (see :func:`run_name`)."""
    name, slope, seed, extras = _parts(cfg, overrides, axes)
    keys = [key for key, _ in extras]
    return " ".join([name, f"β={slope}", f"seed {seed}", *(f"{_short(k, keys)}={_number(v)}" for k, v in extras)])


def _number(value: str) -> str:
    """``value`` with a float written in at most 6 significant digits (``2.693883019285411`` -> ``2.69388``)."""
    try:
        return f"{float(value):g}" if "." in value or "e" in value.lower() else value
    except ValueError:
        return value


@dataclass(frozen=True)
class JobProgress:
    """Where a sweep stands when a job finishes.

    Attributes:
        done: Jobs finished so far (this one included), skipped and failed ones too; None when unknown (the
            progress file could not be written).
        total: Number of jobs, or None when unknown.
        eta: Estimated seconds until the last job finishes; None until a job has run (not skipped).
    """

    done: int | None
    total: int | None
    eta: float | None


class ProgressBoard:
    """The progress file of a sweep (``<sweep dir>/.evoexp/progress.json``), shared by its jobs under a file lock.

    The ETA is the remaining work over the parallelism seen so far: ``(remaining jobs x mean job time - time the
    running jobs have already spent) / most jobs seen running at once``. Skipped jobs (resume) count as done but
    not in the mean job time.

    Args:
        sweep_dir: The sweep directory.
        total: Number of jobs (None when unknown).
    """

    def __init__(self, sweep_dir: Path, total: int | None) -> None:
        self.path = Path(sweep_dir) / PROGRESS_FILE
        self.total = total
        self._lock = FileLock(str(self.path) + ".lock")

    @staticmethod
    def _empty() -> dict[str, Any]:
        return {"running": {}, "done": [], "peak": 0, "dirs": {}}

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return self._empty()
        try:
            return {**self._empty(), **json.loads(self.path.read_text(encoding="utf-8"))}
        except ValueError:  # cannot happen with atomic writes; a lost board must not stop the jobs
            return self._empty()

    def _write(self, state: Mapping[str, Any]) -> None:
        write_atomic(self.path, json.dumps(state))

    def reset(self) -> None:
        """Start an empty board (a new invocation of the sweep in this directory)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._write(self._empty())

    def job_started(self, job: int, *, output_dir: Path | None = None, now: float | None = None) -> None:
        """Record that job ``job`` started (at ``now``, default the current time) in ``output_dir``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            state = self._read()
            state["running"][str(job)] = time.time() if now is None else now
            state["peak"] = max(state["peak"], len(state["running"]))
            if output_dir is not None:
                state["dirs"][str(job)] = str(output_dir)
            self._write(state)

    def started(self) -> dict[int, Path]:
        """Output directory of every job that started in this invocation (as recorded by :meth:`job_started`)."""
        with self._lock:
            dirs = self._read()["dirs"]
        return {int(job): Path(path) for job, path in dirs.items()}

    def job_finished(self, job: int, *, ran: bool, now: float | None = None) -> tuple[JobProgress, float]:
        """Record that job ``job`` finished (``ran``: False if it was skipped).

        Returns:
            The sweep's progress and the job's wall time since :meth:`job_started` (NaN if its start is unknown).
        """
        now = time.time() if now is None else now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            state = self._read()
            seconds = now - state["running"].pop(str(job), math.nan)
            state["done"].append({"job": job, "seconds": seconds, "ran": ran})
            self._write(state)
        done = len(state["done"])
        durations = [d["seconds"] for d in state["done"] if d["ran"] and math.isfinite(d["seconds"])]
        if self.total is None or not durations:
            return JobProgress(done, self.total, None), seconds
        mean = sum(durations) / len(durations)
        spent = sum(min(now - start, mean) for start in state["running"].values())
        remaining = max(self.total - done, 0)
        eta = max(remaining * mean - spent, 0.0) / max(state["peak"], 1)
        return JobProgress(done, self.total, eta), seconds

    def append_log(self, path: Path, line: str) -> None:
        """Append ``line`` to the text file ``path`` under the board's lock (lines of parallel jobs stay whole)."""
        with self._lock, Path(path).open("a", encoding="utf-8") as file:
            file.write(line + "\n")


def format_duration(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min``, ``1 h 05 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def format_job_line(progress: JobProgress, label: str, outcome: Any, *, seconds: float) -> str:
    """The console line of a finished job.

    ``[17/105] fast_sigmoid β=10 seed 2 · test 94.1% · 2.3 s · ETA 3 min``; a failed job reads ``FAILED`` with its
    error, a diverged one ``DIVERGED``, one whose checks failed ``checks FAIL (…)``, a skipped one names the run it
    reused.

    Args:
        progress: The sweep's progress after this job.
        label: The job's label (:func:`job_label`).
        outcome: The job's :class:`evoexp.job.outcome.JobOutcome`.
        seconds: Wall time of the job.
    """
    count = f"[{'?' if progress.done is None else progress.done}/{'?' if progress.total is None else progress.total}]"
    parts = [f"{count} {label}"]
    if outcome.outcome == "failed":
        error = outcome.error or "no error recorded"
        parts.append(f"FAILED {error if len(error) <= 100 else error[:99] + '…'}")
    elif outcome.outcome == "diverged":
        parts.append("DIVERGED")
    else:
        if outcome.outcome == "skipped":
            parts.append(f"skipped (finished run {(outcome.run_id or '?')[:8]})")
        parts.append("test –" if math.isnan(outcome.test_acc) else f"test {100 * outcome.test_acc:.1f}%")
        failed = [check for check, verdict in outcome.checks.items() if verdict == "FAIL"]
        if failed:
            parts.append(f"checks FAIL ({', '.join(failed)})")
    if math.isfinite(seconds):
        parts.append(format_duration(seconds))
    if progress.eta is not None and (progress.total is None or progress.done is None or progress.done < progress.total):
        parts.append(f"ETA {format_duration(progress.eta)}")
    return " · ".join(parts)
