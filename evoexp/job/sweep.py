"""Sweep machinery: the Hydra callback, per-job outcome records, the end-of-sweep summary and ANN-baseline reuse.

* :class:`EvoexpCallback` (registered in ``conf/config.yaml`` under ``hydra.callbacks``) validates every job's config
  and the sweep directory, asks a tracking server whether it answers (:mod:`evoexp.job.preflight`), and only then
  creates the MLflow store and experiments ONCE before any job or worker starts, closes the ghost runs a SIGKILLed
  sweep left behind, and opens the sweep's parent run; it prints one line per finished job (count, result, time,
  ETA; see :mod:`evoexp.job.progress`) and, after a single run, its verdicts (:mod:`evoexp.job.summary`). After a
  multirun it summarises the whole sweep's state (finished / diverged / failed, jobs reused from earlier
  runs, verdicts per check) and this invocation's jobs (finished / diverged / skipped / failed / killed), closes
  the parent run, writes
  ``sweep_summary.json`` into the sweep directory and makes the command exit with status 1 when a job failed or
  closing the sweep failed (the summary is printed in any case).
* A sweep that ends early (Ctrl-C, SIGTERM, an error in the launcher) is closed by the closer it registered with
  :func:`evoexp.job.abort.on_abort`: every run of the invocation ends KILLED (or FAILED) with the reason, every job
  that started gets an outcome record, and the summary is printed.
* Each job writes :data:`~evoexp.job.outcome.OUTCOME_FILE` into its output directory
  (:func:`~evoexp.job.outcome.write_outcome`); the summary reads those of the invocation back, so it works with every
  launcher (joblib, submitit local or SLURM) without shared state. A job that started without leaving a readable
  record counts as failed.
* :func:`reuse_baseline` trains the ANN twin once per key and reuses it from the store: a file lock per key makes
  parallel workers wait for the one that trains it; :func:`ann_baseline` adapts it to
  :func:`evoexp.job.run.run_experiment`.
* :func:`resumable_run` finds the FINISHED run a job may be skipped for: same config hash and, unless
  ``tracking.reuse_across_code``, same code identity.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

from filelock import FileLock
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

import evoexp
from evoexp.identity import code_identity
from evoexp.job import abort
from evoexp.job.abort import JobTerminated, signal_name
from evoexp.job.config import (
    ConfigValidationError,
    TrackingConfig,
    importable,
    load_config,
    unwritable_location,
)
from evoexp.job.files import write_atomic
from evoexp.job.outcome import OUTCOME_FILE, OUTCOMES, JobOutcome, read_outcome, write_outcome
from evoexp.job.preflight import PreflightError, check_jobs, check_sweep_dir, claim_sweep_dir, job_overrides
from evoexp.job.prepare import prepare
from evoexp.job.progress import (
    PROGRESS_LOG,
    JobProgress,
    ProgressBoard,
    SweepPlan,
    format_job_line,
    job_label,
    split_override,
)
from evoexp.job.run import AnnBaseline
from evoexp.job.run_logger import RunLogger
from evoexp.job.store_errors import TrackingUnavailable, error_line
from evoexp.job.summary import SweepTally, format_run_summary, jobs_text
from evoexp.job.tracking import (
    LOCK_DIR,
    FinishedRun,
    MlflowTracker,
    NullTracker,
    Tracker,
    git_commit,
    lock_path,
    resolve_tracking_uri,
)
from evoexp.job.ui import publish, view_url
from evoexp.keys import Tags
from evoexp.training import TrainingRun

__all__ = [
    "SUMMARY_FILE",
    "EvoexpCallback",
    "SweepSummary",
    "ann_baseline",
    "collect_summary",
    "make_tracker",
    "read_outcomes",
    "resumable_run",
    "reuse_baseline",
    "save_job_config",
    "summarize_sweep",
]

log = logging.getLogger(__name__)

SUMMARY_FILE = "sweep_summary.json"
_TROUBLED = ("failed", "killed", "diverged")


def read_outcomes(sweep_dir: Path, *, invocation: str | None = None) -> list[JobOutcome]:
    """Read the outcome of every job of an invocation of a sweep (of every job directory when ``invocation`` is None).

    With ``invocation``, the jobs are those the progress board saw start in that invocation plus those whose
    record names it, and a record an earlier invocation left in a reused sweep directory does not count. Without
    it, every job directory (one holding ``.hydra``) counts. A job without a record counts as ``failed`` with error
    ``no outcome recorded``; one with an unreadable record as ``failed``, saying why.
    """
    sweep_dir = Path(sweep_dir).resolve()
    if invocation is None:
        dirs: dict[Path, int | None] = {hydra_dir.parent: None for hydra_dir in sweep_dir.rglob(".hydra")}
    else:
        dirs = {path.resolve(): job for job, path in ProgressBoard(sweep_dir, None).started().items()}
        for path in sweep_dir.rglob(OUTCOME_FILE):
            try:
                found = read_outcome(path.parent)
            except ValueError:
                continue
            if found is not None and found.invocation == invocation:
                dirs.setdefault(path.parent, found.job)
    outcomes = []
    for job_dir, job in dirs.items():
        error = "no outcome recorded"
        try:
            found = read_outcome(job_dir)
        except ValueError as exc:
            found, error = None, str(exc)
        if found is not None and (invocation is None or found.invocation == invocation):
            outcomes.append(found)
            continue
        overrides = _job_overrides(job_dir / ".hydra")
        outcomes.append(JobOutcome("failed", job=job or 0, overrides=overrides, error=error, output_dir=str(job_dir)))
    return sorted(outcomes, key=lambda o: o.job)


def _job_overrides(hydra_dir: Path) -> list[str]:
    """Return the overrides saved in ``hydra_dir/overrides.yaml`` (empty if missing or unreadable)."""
    path = hydra_dir / "overrides.yaml"
    try:
        return [str(item) for item in OmegaConf.load(path)] if path.is_file() else []
    except Exception:  # an unreadable file (a full disk truncated it) only costs the job's label
        return []


@dataclass
class SweepSummary:
    """A sweep's jobs: what each did in this command and the state of the whole sweep.

    Attributes:
        sweep_dir: The sweep directory.
        counts: Jobs per outcome in this command (every key of :data:`OUTCOMES` present; ``skipped``: reused).
        jobs: The outcomes, by job number.
        tally: The whole sweep's state: jobs per outcome (a skipped job counts as its earlier run), verdicts and
            check verdicts (:class:`~evoexp.job.summary.SweepTally`).
    """

    sweep_dir: str
    counts: dict[str, int]
    jobs: list[JobOutcome]
    tally: SweepTally

    @property
    def failed(self) -> int:
        """Number of failed jobs."""
        return self.counts["failed"]

    @property
    def killed(self) -> int:
        """Number of jobs interrupted while they ran."""
        return self.counts["killed"]

    def _counts(self) -> str:
        """``finished 2, diverged 0, skipped 1, failed 0`` (``killed`` only when a job was)."""
        return ", ".join(f"{k} {self.counts[k]}" for k in OUTCOMES if k != "killed" or self.counts[k])

    def format(self) -> str:
        """Human-readable summary: the sweep's state, its verdicts per check, then each failed or diverged job."""
        lines = [
            f"sweep summary ({jobs_text(self.tally.total)}): {self.tally.headline()}",
            f"verdicts: {self.tally.verdict_line()}",
            *self.tally.check_lines(),
        ]
        for job in self.jobs:
            if job.outcome in _TROUBLED:
                lines.append(f"  job {job.job} {job.outcome}: {' '.join(job.overrides)} -- {job.error}")
        return "\n".join(lines)

    def save(self) -> Path:
        """Write the summary to ``<sweep dir>/SUMMARY_FILE`` (atomically) and return the path."""
        payload = {
            "sweep_dir": self.sweep_dir,
            "counts": self.counts,
            "state": self.tally.jobs,
            "reused": self.tally.reused,
            "verdicts": dict(self.tally.verdicts),
            "checks": {check: dict(counts) for check, counts in self.tally.checks.items()},
            "jobs": [asdict(j) for j in self.jobs],
        }
        return write_atomic(Path(self.sweep_dir) / SUMMARY_FILE, json.dumps(payload, indent=2, allow_nan=True) + "\n")

    def note(self, plan: SweepPlan) -> str:
        """Markdown note of the sweep's parent run: the sweep's state, verdicts per check, failed or diverged jobs."""
        lines = [
            f"**Sweep {plan.sweep_id}** over {' × '.join(plan.axes) or 'no swept keys'}: "
            f"{jobs_text(self.tally.total)} — {self.tally.headline()}.",
            "",
            *self.tally.markdown(),
        ]
        troubled = [job for job in self.jobs if job.outcome in _TROUBLED]
        if troubled:
            lines += ["", "| job | outcome | overrides | error |", "|---|---|---|---|"]
            lines += [
                f"| {job.job} | {job.outcome} | `{' '.join(job.overrides)}` | {(job.error or '').replace('|', '/')} |"
                for job in troubled
            ]
        return "\n".join(lines) + "\n"


def collect_summary(sweep_dir: Path, *, invocation: str | None = None) -> SweepSummary:
    """Summarise the job outcomes of an invocation of the sweep in ``sweep_dir`` (see :func:`read_outcomes`)."""
    jobs = read_outcomes(sweep_dir, invocation=invocation)
    counter = Counter(job.outcome for job in jobs)
    return SweepSummary(str(sweep_dir), {name: counter.get(name, 0) for name in OUTCOMES}, jobs, SweepTally.count(jobs))


def summarize_sweep(sweep_dir: Path) -> SweepSummary:
    """Summarise the job outcomes of the sweep in ``sweep_dir`` and write them to ``sweep_dir / SUMMARY_FILE``.

    The invocation is that of the plan in ``sweep_dir``, when there is one.
    """
    plan = SweepPlan.load(sweep_dir)
    summary = collect_summary(sweep_dir, invocation=None if plan is None else plan.invocation)
    summary.save()
    return summary


def make_tracker(tracking: Any, *, root: Path, invocation: str | None = None) -> Tracker:
    """Build the tracker of a ``tracking`` config node (:class:`~evoexp.job.config.TrackingConfig` or DictConfig).

    Args:
        tracking: The ``tracking`` config.
        root: Project root (launch directory).
        invocation: The sweep invocation the runs belong to (:attr:`~evoexp.job.progress.SweepPlan.invocation`).
    """
    if not tracking.enabled:
        return NullTracker()
    uri = resolve_tracking_uri(tracking.uri, root=root)
    return MlflowTracker(
        uri,
        tracking.experiment,
        root=root,
        flush_every=tracking.flush_every,
        heartbeat_every=tracking.heartbeat_every,
        stale_after=tracking.stale_after,
        system_metrics=tracking.system_metrics,
        timeout=tracking.timeout,
        retries=tracking.retries,
        give_up_after=tracking.give_up_after,
        invocation=invocation,
    )


def _job_config(config: DictConfig) -> DictConfig:
    """Return a copy of ``config`` without its ``hydra`` node (what the task function receives)."""
    job = copy.deepcopy(config)
    with read_write(job), open_dict(job):
        job.pop("hydra", None)
    return job


def _root(config: DictConfig) -> Path:
    """Project root: the directory the command was launched from."""
    return Path(str(config.hydra.runtime.cwd))


def _typed_tracking(config: DictConfig) -> TrackingConfig | None:
    """The validated ``tracking`` group of ``config``, or None when it does not validate (jobs report that)."""
    node = OmegaConf.select(config, "tracking")
    if node is None:
        return None
    try:
        typed = OmegaConf.to_object(node)
    except ValueError:
        return None
    return typed if isinstance(typed, TrackingConfig) else None


def _multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


def _repeated_key(config: DictConfig) -> str | None:
    """The message for a key given twice on the command line (the last would silently win), else None.

    ``experiment=smoke experiment=robustness`` composes the last preset only; options of a config group combine in
    a preset file's ``defaults`` list, values of one key in one sweep list (``seed=0,1``).
    """
    given: dict[str, list[str]] = {}
    for override in (str(o) for o in config.hydra.overrides.task):
        given.setdefault(split_override(override)[0], []).append(override)
    repeated = next((key for key, values in given.items() if len(values) > 1), None)
    if repeated is None:
        return None
    groups = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
    hint = (
        f"choose one {repeated} (combine presets in a preset file's defaults list)"
        if repeated in groups
        else f"give it once (sweep several values as {repeated}=a,b)"
    )
    times = len(given[repeated])
    return f"{' '.join(given[repeated])}: {repeated} is given {times} times and only the last counts; {hint}"


def _unwritable(config: DictConfig, tracking: TrackingConfig | None, directory_key: str) -> str | None:
    """The message when the job's output directory, the store or the launch directory cannot be written, else None.

    Checked before Hydra creates anything, so a read-only launch directory or store fails in one line.
    """
    directory = Path(str(OmegaConf.select(config, directory_key)))
    reason = unwritable_location(directory)
    if reason is not None:
        return f"{directory_key}={directory}: cannot create the output directory ({reason})"
    if tracking is None or not tracking.enabled:
        return None
    root = _root(config)
    reason = unwritable_location(root / LOCK_DIR)
    if reason is not None:
        return (
            f"the launch directory {root} cannot be written ({reason}): the store's lock files go to {LOCK_DIR} "
            "there; launch from a writable directory or set tracking=off"
        )
    store = resolve_tracking_uri(tracking.uri, root=root)
    if store.startswith("sqlite:///"):
        reason = unwritable_location(Path(store.removeprefix("sqlite:///")))
        if reason is not None:
            key = "tracking.uri" if tracking.uri else "tracking.uri (default: mlruns.db in the launch directory)"
            return f"{key}: the store {store} cannot be written ({reason})"
    return None


def _empty_sweep(plan: SweepPlan, overrides: list[str], sweeper_params: Mapping[str, Any]) -> str | None:
    """The message for a basic sweep without a single job (e.g. ``seed=range(0,0)``), else None."""
    if plan.total != 0:
        return None
    texts = [f"{k}={v}" for k, v in sweeper_params.items()] + overrides
    empty = [text for text in texts if split_override(text)[0] in plan.axes and _sweep_size(text) == 0]
    return f"{', '.join(empty) or 'the sweep'}: no values to sweep over, so the sweep has no jobs"


def _sweep_size(override: str) -> int | None:
    """Number of values a sweep override lists (None when it cannot be counted)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (parsed,) = OverridesParser.create().parse_overrides([override])
    if not parsed.is_discrete_sweep():
        return None
    return len(list(parsed.sweep_string_iterator()))


def _say(line: str) -> None:
    """Print one line of progress to the terminal (stdout), now: workers' output must not wait in a buffer."""
    print(line, flush=True)


def save_job_config(config: DictConfig) -> None:
    """Save a job's ``.hydra/`` (``config.yaml``, ``hydra.yaml``, ``overrides.yaml``) atomically, as Hydra would.

    evoexp's config sets ``hydra.output_subdir: null``: Hydra's own save raises out of its job runner on a full
    disk and aborts the whole sweep, whereas a job whose files cannot be written must fail alone. Nothing is done
    when ``hydra.output_subdir`` is set (Hydra saved the files).

    Raises:
        OSError: A file could not be written (the caller goes on: the job then fails at its own writes).
    """
    if OmegaConf.select(config, "hydra.output_subdir") is not None:
        return
    directory = Path(str(config.hydra.runtime.output_dir)) / ".hydra"
    hydra_node = HydraConfig.instance().cfg if HydraConfig.initialized() else OmegaConf.create({"hydra": config.hydra})
    write_atomic(directory / "config.yaml", OmegaConf.to_yaml(_job_config(config)))
    write_atomic(directory / "hydra.yaml", OmegaConf.to_yaml(hydra_node))
    write_atomic(directory / "overrides.yaml", OmegaConf.to_yaml(config.hydra.overrides.task))


@dataclass
class _OpenSweep:
    """What the launcher process holds while a sweep runs (kept off the callback, which Hydra pickles for workers).

    Attributes:
        sweep_dir: The sweep directory.
        plan: The sweep's plan (invocation, parent run).
        tracker: The store.
        lock: The claim on the sweep directory (None: not claimed by this process).
        invocation: The invocation whose job records count (None: every record in the sweep directory).
        created: The topmost directory this invocation created for the sweep directory (the sweep directory or an
            ancestor), removed again if no job started; None when the sweep directory existed.
        stop_heartbeat: Stops the parent run's heartbeat.
    """

    sweep_dir: Path
    plan: SweepPlan
    tracker: Tracker
    lock: FileLock | None
    invocation: str | None
    created: Path | None = None
    stop_heartbeat: Callable[[], None] = field(default=lambda: None)

    def remove_created(self) -> None:
        """Remove the sweep directory and the empty ancestors this invocation created for it (up to ``created``)."""
        if self.created is None:
            return
        shutil.rmtree(self.sweep_dir, ignore_errors=True)
        folder = self.sweep_dir.parent
        while folder not in (self.created.parent, folder.parent):
            try:
                folder.rmdir()  # only when empty: another sweep may have put its directory next to this one
            except OSError:
                return
            folder = folder.parent

    def close(self, *, ended: BaseException | None = None) -> tuple[SweepSummary | None, list[str]]:
        """Close the sweep: its runs, its jobs' records, the summary, the parent run; print the summary.

        Args:
            ended: The exception that ended the sweep early (Ctrl-C, SIGTERM, a launcher error), or None when it
                ran to its end. Early: every run the invocation opened that is still RUNNING ends KILLED (signals)
                or FAILED with the reason, and every job that started without a record gets one (``killed`` or
                ``failed``).

        Returns:
            The summary (None if it could not be made) and what went wrong while closing, one line each.
        """
        problems: list[str] = []
        self.stop_heartbeat()
        interrupted = isinstance(ended, (KeyboardInterrupt, JobTerminated))
        status = "KILLED" if interrupted else "FAILED"
        reason = None
        if ended is not None:
            reason = f"interrupted by {signal_name(ended)}" if interrupted else f"sweep aborted: {_describe(ended)}"
            try:
                self.tracker.close_invocation(self.plan.invocation, status=status, reason=reason)
            except Exception as exc:
                problems.append(f"could not close the sweep's job runs: {self.tracker.explain(exc)}")
            problems += self._record_unfinished("killed" if interrupted else "failed", reason)
        summary = None
        try:
            summary = collect_summary(self.sweep_dir, invocation=self.invocation)
        except Exception as exc:
            problems.append(f"could not read the jobs' records: {_describe(exc)}")
        if summary is not None:
            try:
                summary.save()
            except OSError as exc:
                problems.append(f"could not write {Path(self.sweep_dir) / SUMMARY_FILE}: {_describe(exc)}")
            text = summary.format()
        else:
            text = f"sweep summary: unavailable (see {self.sweep_dir})"
        if self.plan.parent_run_id is not None:
            try:
                self._close_parent(summary, status=status if ended is not None else None, reason=reason)
                text += f"\nMLflow: sweep run {self.plan.parent_run_id} · {self.tracker.ui_url()}"
            except Exception as exc:
                run = self.plan.parent_run_id
                problems.append(f"could not close the sweep's MLflow run {run}: {self.tracker.explain(exc)}")
        _say(text)
        if self.lock is not None:
            self.lock.release()
        return summary, problems

    def _record_unfinished(self, outcome: str, reason: str) -> list[str]:
        """Give every job that started in this invocation without leaving a record one saying ``reason``."""
        problems = []
        for job, job_dir in ProgressBoard(self.sweep_dir, None).started().items():
            try:
                found = read_outcome(job_dir)
            except ValueError:
                found = None
            if found is not None and found.invocation == self.plan.invocation:
                continue
            record = JobOutcome(
                outcome,
                job=job,
                overrides=_job_overrides(job_dir / ".hydra"),
                error=reason,
                output_dir=str(job_dir),
                invocation=self.plan.invocation,
            )
            try:
                write_outcome(job_dir, record)
            except OSError as exc:
                problems.append(f"could not record job {job}'s outcome: {_describe(exc)}")
        return problems

    def _close_parent(self, summary: SweepSummary | None, *, status: str | None, reason: str | None) -> None:
        """End the parent run: ``status`` when the sweep ended early, else FAILED if a job failed, else FINISHED."""
        assert self.plan.parent_run_id is not None
        bad = summary is None or summary.failed > 0 or summary.killed > 0
        if status is None:
            status = "FAILED" if bad else "FINISHED"
        tags: dict[str, str] = {Tags.OUTCOME: {"KILLED": "killed", "FAILED": "failed"}.get(status, "finished")}
        if reason is not None:
            tags[Tags.ERROR] = reason
        metrics = {}
        if summary is not None:
            tags[Tags.NOTE] = summary.note(self.plan)
            metrics = summary.tally.metrics()  # the whole sweep's state (this invocation's counts are in the note)
        self.tracker.close_sweep_run(self.plan.parent_run_id, status=status, metrics=metrics, tags=tags)


def _describe(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, on one line (:func:`evoexp.job.store_errors.error_line`)."""
    return error_line(exc, limit=300)


_OPEN_SWEEPS: dict[str, _OpenSweep] = {}
"""The open sweeps of this process, by sweep directory."""


class EvoexpCallback(Callback):
    """Hydra callback: check, prepare the store, reap ghosts and open the sweep run; show progress; summarise.

    Hydra turns exceptions raised in callbacks into warnings, so the ways this callback stops the command print one
    ``evoexp: error: ...`` line and raise :class:`SystemExit` (exit code 1) instead.
    """

    @staticmethod
    def _exit(message: str) -> NoReturn:
        """Print ``message`` as one error line and exit with status 1."""
        sys.stderr.write(f"evoexp: error: {message}\n")
        sys.stderr.flush()
        raise SystemExit(1)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Single run: fail fast on bad values or a dead server (one line, no run created), prepare, reap ghosts.

        Before anything is created: a key given twice, bad values, data or networks, and an output directory, store
        or launch directory that cannot be written each stop the command with one line. Then close ghost runs of
        killed jobs.
        """
        message = _repeated_key(config)
        if message is not None:
            self._exit(message)
        importable(Path.cwd())
        try:
            typed = load_config(_job_config(config))
            prepare(typed)  # builds and checks data, network, surrogate and ANN; the job reuses the dataset
        except ConfigValidationError as exc:
            self._exit(str(exc))
        message = _unwritable(config, typed.tracking, "hydra.run.dir")
        if message is not None:
            self._exit(message)
        tracker = make_tracker(typed.tracking, root=_root(config))
        try:
            tracker.check()
        except TrackingUnavailable as exc:
            self._exit(str(exc))
        tracker.prepare()
        tracker.reap_ghosts()
        publish(tracker)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Multirun: check everything, then prepare the store, close ghost runs, open the parent run, write the plan.

        The store is created before any worker starts (avoids the schema race); the jobs read the
        :class:`~evoexp.job.progress.SweepPlan` (sweep id, parent run, number of jobs, swept keys). Sweep values may
        differ from the base config's, so only the ``tracking`` group has to validate here; each job validates its
        own values. A key given twice, a sweep without jobs and an unwritable sweep directory, store or launch
        directory stop the command with one line before anything is opened; so do a job config that does not
        validate and a tracking server that does not answer (:mod:`evoexp.job.preflight`).
        """
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            jobs = job_overrides(config)
            if jobs is not None:
                check_jobs(config, jobs)
            check_sweep_dir(sweep_dir)
        except PreflightError as exc:
            self._exit(str(exc))
        tracking = _typed_tracking(config)
        sweeper = config.hydra.sweeper
        overrides = [str(o) for o in config.hydra.overrides.task]
        sweeper_params = cast("dict[str, Any]", OmegaConf.to_container(sweeper.params)) if sweeper.get("params") else {}
        plan = SweepPlan.create(
            overrides,
            sweeper_params=sweeper_params,
            basic_sweeper=str(sweeper.get("_target_", "")).endswith(".BasicSweeper"),
            n_trials=sweeper.get("n_trials"),
            experiment=tracking.experiment if tracking is not None else "",
            sweep_id=tracking.sweep_id if tracking is not None else None,
        )
        for message in (
            _repeated_key(config),
            _empty_sweep(plan, overrides, sweeper_params),
            _unwritable(config, tracking, "hydra.sweep.dir"),
        ):
            if message is not None:
                self._exit(message)
        root = _root(config)
        tracker = NullTracker() if tracking is None else make_tracker(tracking, root=root, invocation=plan.invocation)
        try:
            tracker.check()
        except TrackingUnavailable as exc:
            self._exit(str(exc))
        created = next((p for p in reversed([sweep_dir, *sweep_dir.parents]) if not p.exists()), None)
        try:
            lock = claim_sweep_dir(sweep_dir)
        except PreflightError as exc:
            self._exit(str(exc))
        sweep = _OpenSweep(sweep_dir, plan, tracker, lock, plan.invocation, created=created)
        try:
            self._open(sweep, config, overrides)
        except Exception as exc:
            self._abandon(sweep)
            self._exit(f"could not start the sweep: {_describe(exc)}")
        _OPEN_SWEEPS[str(sweep_dir)] = sweep
        abort.on_abort(f"sweep {sweep_dir}", lambda ended: self._abort(sweep, ended))
        axes = " × ".join(plan.axes) or "no swept keys"
        url = tracker.ui_url()
        where = "" if plan.parent_run_id is None or url is None else f" · MLflow {view_url(url)}"
        _say(f"evoexp sweep {plan.sweep_id}: {jobs_text(plan.total)} over {axes}{where}")
        _say(f"  checks per job: {_checked(config, plan.axes)}")

    @staticmethod
    def _open(sweep: _OpenSweep, config: DictConfig, overrides: list[str]) -> None:
        """Reset the progress board, prepare the store, reap ghosts, open the parent run, save the plan."""
        plan, tracker = sweep.plan, sweep.tracker
        ProgressBoard(sweep.sweep_dir, plan.total).reset()
        tracker.prepare()
        tracker.reap_ghosts()
        publish(tracker)
        axes = " × ".join(plan.axes) or "no swept keys"
        plan.parent_run_id = tracker.open_sweep_run(
            plan.sweep_id,
            run_name=plan.sweep_id,
            tags={
                Tags.OVERRIDES: " ".join(overrides),
                Tags.AXES: " ".join(plan.axes),
                Tags.JOBS: "?" if plan.total is None else str(plan.total),
                Tags.GIT_COMMIT: git_commit(_root(config)),
                Tags.VERSION: evoexp.__version__,
                Tags.NOTE: f"**Sweep {plan.sweep_id}** over {axes}: {jobs_text(plan.total)}, running.\n",
            },
        )
        plan.save(sweep.sweep_dir)
        if plan.parent_run_id is not None:
            sweep.stop_heartbeat = tracker.keep_alive(plan.parent_run_id)

    @staticmethod
    def _abandon(sweep: _OpenSweep) -> None:
        """Undo a sweep that could not start: close its parent run as FAILED, remove the directory it created."""
        sweep.stop_heartbeat()
        if sweep.plan.parent_run_id is not None:
            try:
                sweep.tracker.close_sweep_run(
                    sweep.plan.parent_run_id, status="FAILED", metrics={}, tags={Tags.OUTCOME: "failed"}
                )
            except Exception as exc:
                log.warning("could not close the sweep's run %s: %s", sweep.plan.parent_run_id, exc)
        if sweep.lock is not None:
            sweep.lock.release()
        sweep.remove_created()

    @staticmethod
    def _abort(sweep: _OpenSweep, ended: BaseException) -> None:
        """Close a sweep that ended early (registered with :func:`evoexp.job.abort.on_abort`).

        A sweep that ended before any job started (Hydra refused a combination of swept values) leaves no directory
        behind when this invocation created it.
        """
        _OPEN_SWEEPS.pop(str(sweep.sweep_dir), None)
        summary, problems = sweep.close(ended=ended)
        if isinstance(ended, (KeyboardInterrupt, JobTerminated)):
            what = f"interrupted by {signal_name(ended)}"
        else:
            what = f"aborted ({_describe(ended)})"
        started = 0 if summary is None else len(summary.jobs)
        lines = [f"sweep {sweep.plan.sweep_id} {what} after {started} started job(s); its open runs were closed"]
        if started == 0:
            sweep.remove_created()
        for line in lines + problems:
            sys.stderr.write(f"evoexp: error: {line}\n")
        sys.stderr.flush()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Save the job's ``.hydra/``; in a multirun, mark it running on the sweep's progress board."""
        try:
            save_job_config(config)
        except OSError as exc:
            log.error("could not save the job's config: %s", exc)
        if _multirun(config):
            board = ProgressBoard(Path(str(config.hydra.sweep.dir)), None)
            board.job_started(int(config.hydra.job.num), output_dir=Path(str(config.hydra.runtime.output_dir)))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Print the job's line (multirun: count, result, time, ETA) or, after a single run, its summary."""
        output_dir = Path(str(config.hydra.runtime.output_dir))
        outcome = _read_outcome(output_dir, job_return)
        if not _multirun(config):
            tracking = _typed_tracking(config)
            tracker = make_tracker(tracking, root=_root(config)) if tracking is not None else NullTracker()
            store = getattr(tracker, "uri", None)
            url = tracker.ui_url(outcome.run_id) if outcome.run_id else None
            _say(format_run_summary(outcome, store=store, url=url))
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        plan = SweepPlan.load(sweep_dir) or SweepPlan("?")
        board = ProgressBoard(sweep_dir, plan.total)
        try:
            progress, seconds = board.job_finished(int(config.hydra.job.num), ran=outcome.outcome != "skipped")
        except OSError as exc:  # a full disk: the line still tells what the job did
            log.error("could not update the sweep's progress: %s", exc)
            progress, seconds = JobProgress(None, plan.total, None), math.nan
        label = outcome.label or job_label(config, config.hydra.overrides.task, plan.axes)
        line = format_job_line(progress, label, outcome, seconds=seconds)
        _say(line)
        try:
            board.append_log(sweep_dir / PROGRESS_LOG, line)
        except OSError as exc:
            log.error("could not append to %s: %s", sweep_dir / PROGRESS_LOG, exc)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Print the sweep summary and close the parent run; exit with status 1 if a job failed or closing failed.

        Hydra turns an exception raised here into a warning and exits 0, so every failure becomes a line of the
        error message instead.
        """
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            problems = self._end(config, sweep_dir)
        except Exception as exc:
            problems = [f"closing the sweep failed: {_describe(exc)}"]
        if problems:
            self._exit("; ".join(problems))

    @staticmethod
    def _end(config: DictConfig, sweep_dir: Path) -> list[str]:
        """Close the sweep of ``sweep_dir``; return what went wrong (failed or killed jobs, closing problems)."""
        sweep = _OPEN_SWEEPS.get(str(sweep_dir))
        if sweep is None:  # not opened by this process's on_multirun_start (e.g. a test calling the hook alone)
            plan = SweepPlan.load(sweep_dir)
            tracking = _typed_tracking(config)
            tracker = make_tracker(tracking, root=_root(config)) if tracking is not None else NullTracker()
            invocation = None if plan is None else plan.invocation
            sweep = _OpenSweep(sweep_dir, plan or SweepPlan("?"), tracker, None, invocation)
        summary, problems = sweep.close()
        _OPEN_SWEEPS.pop(str(sweep_dir), None)
        abort.discard(f"sweep {sweep_dir}")  # only now: Ctrl-C while closing still closes what remains
        if summary is not None and summary.failed + summary.killed:
            bad = f"{summary.failed} of {sum(summary.counts.values())} jobs failed"
            if summary.killed:
                bad += f", {summary.killed} were killed"
            problems.insert(0, f"{bad} (see {Path(summary.sweep_dir) / SUMMARY_FILE})")
        return problems


def _checked(config: DictConfig, axes: list[str]) -> str:
    """What a sweep's jobs check: the names of ``verifier.checks`` (or that it differs per job, when swept)."""
    if any(axis == "verifier" or axis.startswith("verifier.checks") for axis in axes):
        return "per job (the verifier is swept)"
    checks = OmegaConf.select(config, "verifier.checks", default=None)
    return ", ".join(str(check) for check in checks) if checks else "none"


def _read_outcome(output_dir: Path, job_return: JobReturn) -> JobOutcome:
    """The outcome the job recorded in ``output_dir``, or a failure built from Hydra's ``job_return``."""
    try:
        found = read_outcome(output_dir)
    except ValueError as exc:
        return JobOutcome("failed", error=str(exc), output_dir=str(output_dir))
    if found is not None:
        return found
    try:
        job_return.return_value  # noqa: B018 (re-raises the job's exception)
    except Exception as exc:
        return JobOutcome("failed", error=f"{type(exc).__name__}: {exc}", output_dir=str(output_dir))
    return JobOutcome("failed", error="no outcome recorded", output_dir=str(output_dir))


def reuse_baseline(
    tracker: Tracker,
    key: str,
    train: Callable[[], tuple[Mapping[str, Any], Mapping[str, float]]],
    *,
    root: Path,
    enabled: bool = True,
    code: str | None = None,
    across_code: bool = False,
    parent_run_id: str | None = None,
) -> tuple[Mapping[str, Any], str | None, bool]:
    """Return the ANN baseline stored under ``key``, training and storing it first if there is none.

    A file lock per key (``<root>/.evoexp/locks/ann-<key>.lock``) serialises workers that need the same baseline:
    the first trains it, the others wait and load it. The stored payload records the code identity that trained
    it (key ``"code_identity"``); a baseline of other code is not reused unless ``across_code`` (a new one is
    trained and stored, and becomes the newest under ``key``).

    Args:
        tracker: Where baselines are stored (a :class:`~evoexp.job.tracking.NullTracker` stores nothing).
        key: Identity of the baseline's config (:func:`evoexp.job.config.ann_hash`).
        train: Trains the baseline; returns ``(payload, summary_metrics)``; payload must be JSON-serialisable.
        root: Project root (for the lock file).
        enabled: False trains every time (no lookup, nothing stored).
        code: Code identity of this process (:func:`evoexp.identity.code_identity`); None skips the check.
        across_code: Reuse a baseline trained by other code (``tracking.reuse_across_code``).
        parent_run_id: The run a newly trained baseline is nested under (the sweep's run), if any.

    Returns:
        ``(payload, run_id, reused)``: the baseline, its run id (None if not stored), whether it was loaded.
    """
    if not (enabled and tracker.enabled):
        payload, _ = train()
        return payload, None, False
    with FileLock(str(lock_path(root, f"ann-{key}"))):
        found = tracker.find_baseline(key)
        if found is not None:
            run_id, payload = found
            if code is None or across_code or payload.get("code_identity") == code:
                return payload, run_id, True
            log.info(
                "ANN baseline %s was trained by other code (%s); training it again",
                run_id,
                payload.get("code_identity"),
            )
        payload, metrics = train()
        if code is not None:
            payload = {**payload, "code_identity": code}
        stored_id = tracker.save_baseline(key, payload, metrics=metrics, parent_run_id=parent_run_id)
        return payload, stored_id, False


def resumable_run(tracker: Tracker, config_hash: str, *, across_code: bool = False) -> FinishedRun | None:
    """The newest FINISHED run of ``config_hash`` that a resumed job may be skipped for, or None.

    A run of other code (tag :attr:`~evoexp.keys.Tags.CODE_IDENTITY` differs from
    :func:`~evoexp.identity.code_identity`) only counts with ``across_code`` (``tracking.reuse_across_code``).
    """
    previous = tracker.find_finished(config_hash)
    if previous is None or across_code or previous.tags.get(Tags.CODE_IDENTITY) == code_identity():
        return previous
    log.info(
        "config %s has FINISHED run %s of other code (%s); running it again (tracking.reuse_across_code reuses it)",
        config_hash,
        previous.run_id,
        previous.tags.get(Tags.CODE_IDENTITY),
    )
    return None


def ann_baseline(
    tracker: Tracker, key: str, tracking: Any, run: RunLogger, *, root: Path, parent_run_id: str | None = None
) -> AnnBaseline:
    """The ANN twin's provider for :func:`evoexp.job.run.run_experiment`, backed by :func:`reuse_baseline`.

    Args:
        tracker: Store of baselines.
        key: The ANN's identity (:func:`evoexp.job.config.ann_hash`).
        tracking: The ``tracking`` config (``reuse_ann``, ``reuse_across_code``).
        run: The job's run; tagged with the baseline's run id.
        root: Project root (lock files).
        parent_run_id: The sweep's run, which a baseline trained here is nested under.
    """

    def provide(train: Callable[[], TrainingRun]) -> tuple[TrainingRun, str | None]:
        def fresh() -> tuple[dict[str, Any], dict[str, float]]:
            trained = train()
            return {"run": trained.to_dict()}, trained.summary()

        payload, run_id, reused = reuse_baseline(
            tracker,
            key,
            fresh,
            root=root,
            enabled=tracking.reuse_ann,
            code=code_identity(),
            across_code=tracking.reuse_across_code,
            parent_run_id=parent_run_id,
        )
        log.info("ANN twin %s (key %s)", "reused" if reused else "trained", key)
        if run_id is not None:
            run.set_tags({Tags.ANN_RUN: run_id})
        return TrainingRun.from_dict(payload["run"]), run_id

    return provide
