"""Sweep machinery: the Hydra callback, per-job outcome records, the end-of-sweep summary and ANN-baseline reuse.

* :class:`EvoexpCallback` (registered in ``conf/config.yaml`` under ``hydra.callbacks``) validates the config and
  creates the MLflow store and experiment ONCE before any job or worker starts (with its saved jobs view,
  :mod:`evoexp.job.ui`), closes the ghost runs a SIGKILLed sweep left behind, and opens the sweep's parent run; it
  prints what each job checks, one line per finished job (count, result, time, ETA; see :mod:`evoexp.job.progress`)
  and, after a single run, its verdicts (:mod:`evoexp.job.summary`). After a multirun it summarises the whole
  sweep's state (finished / diverged / failed, jobs reused from earlier runs, verdicts per check), closes the parent
  run, writes ``sweep_summary.json`` into the sweep directory and makes the command exit with status 1 only when a
  job failed.
* Each job writes :data:`~evoexp.job.outcome.OUTCOME_FILE` into its output directory
  (:func:`~evoexp.job.outcome.write_outcome`); the summary reads them
  back, so it works with every launcher (joblib, submitit local or SLURM) without shared state. A job directory
  without an outcome (worker killed) counts as failed.
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
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

from filelock import FileLock
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

import evoexp
from evoexp.job.config import (
    ConfigValidationError,
    TrackingConfig,
    code_identity,
    importable,
    load_config,
    unwritable_location,
)
from evoexp.job.outcome import OUTCOME_FILE, OUTCOMES, JobOutcome
from evoexp.job.prepare import prepare
from evoexp.job.progress import PROGRESS_LOG, ProgressBoard, SweepPlan, format_job_line, job_label, split_override
from evoexp.job.run import AnnBaseline
from evoexp.job.summary import SweepTally, format_run_summary, jobs_text
from evoexp.job.tracking import (
    LOCK_DIR,
    FinishedRun,
    MlflowTracker,
    NullTracker,
    RunLogger,
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
    "make_tracker",
    "read_outcomes",
    "resumable_run",
    "reuse_baseline",
    "summarize_sweep",
]

log = logging.getLogger(__name__)

SUMMARY_FILE = "sweep_summary.json"


def read_outcomes(sweep_dir: Path) -> list[JobOutcome]:
    """Read the outcome of every job directory (one holding Hydra's ``.hydra``) under ``sweep_dir``.

    A job directory without an outcome file is reported as ``failed`` with error ``no outcome recorded``.
    """
    outcomes = []
    for hydra_dir in sorted(Path(sweep_dir).rglob(".hydra")):
        job_dir = hydra_dir.parent
        path = job_dir / OUTCOME_FILE
        if path.is_file():
            outcomes.append(JobOutcome(**json.loads(path.read_text(encoding="utf-8"))))
        else:
            overrides = _job_overrides(hydra_dir)
            outcomes.append(
                JobOutcome("failed", overrides=overrides, error="no outcome recorded", output_dir=str(job_dir))
            )
    return sorted(outcomes, key=lambda o: o.job)


def _job_overrides(hydra_dir: Path) -> list[str]:
    """Return the overrides saved by Hydra in ``hydra_dir/overrides.yaml`` (empty if missing)."""
    path = hydra_dir / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(item) for item in OmegaConf.load(path)]


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

    def format(self) -> str:
        """Human-readable summary: the sweep's state, its verdicts per check, then each failed or diverged job."""
        lines = [
            f"sweep summary ({jobs_text(self.tally.total)}): {self.tally.headline()}",
            f"verdicts: {self.tally.verdict_line()}",
            *self.tally.check_lines(),
        ]
        for job in self.jobs:
            if job.outcome in ("failed", "diverged"):
                lines.append(f"  job {job.job} {job.outcome}: {' '.join(job.overrides)} -- {job.error}")
        return "\n".join(lines)

    def note(self, plan: SweepPlan) -> str:
        """Markdown note of the sweep's parent run: the sweep's state, verdicts per check, failed or diverged jobs."""
        lines = [
            f"**Sweep {plan.sweep_id}** over {' × '.join(plan.axes) or 'no swept keys'}: "
            f"{jobs_text(self.tally.total)} — {self.tally.headline()}.",
            "",
            *self.tally.markdown(),
        ]
        troubled = [job for job in self.jobs if job.outcome in ("failed", "diverged")]
        if troubled:
            lines += ["", "| job | outcome | overrides | error |", "|---|---|---|---|"]
            lines += [
                f"| {job.job} | {job.outcome} | `{' '.join(job.overrides)}` | {(job.error or '').replace('|', '/')} |"
                for job in troubled
            ]
        return "\n".join(lines) + "\n"


def summarize_sweep(sweep_dir: Path) -> SweepSummary:
    """Summarise the job outcomes under ``sweep_dir`` and write them to ``sweep_dir / SUMMARY_FILE``."""
    jobs = read_outcomes(sweep_dir)
    counter = Counter(job.outcome for job in jobs)
    tally = SweepTally.count(jobs)
    summary = SweepSummary(str(sweep_dir), {name: counter.get(name, 0) for name in OUTCOMES}, jobs, tally)
    payload = {
        "sweep_dir": summary.sweep_dir,
        "counts": summary.counts,
        "state": tally.jobs,
        "reused": tally.reused,
        "verdicts": dict(tally.verdicts),
        "checks": {check: dict(counts) for check, counts in tally.checks.items()},
        "jobs": [asdict(j) for j in jobs],
    }
    (Path(sweep_dir) / SUMMARY_FILE).write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    return summary


def make_tracker(tracking: Any, *, root: Path) -> Tracker:
    """Build the tracker of a ``tracking`` config node (:class:`~evoexp.job.config.TrackingConfig` or DictConfig)."""
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


_SWEEP_HEARTBEATS: dict[str, Callable[[], None]] = {}
"""Stops the heartbeat of each open sweep's parent run (by sweep directory; kept off the callback, which Hydra
pickles for its workers)."""


class EvoexpCallback(Callback):
    """Hydra callback: validate, prepare the store, reap ghosts and open the sweep run; show progress; summarise.

    Hydra turns exceptions raised in callbacks into warnings, so the two ways this callback stops the command
    print one ``evoexp: error: ...`` line and raise :class:`SystemExit` (exit code 1) instead.
    """

    @staticmethod
    def _exit(message: str) -> NoReturn:
        """Print ``message`` as one error line and exit with status 1."""
        sys.stderr.write(f"evoexp: error: {message}\n")
        sys.stderr.flush()
        raise SystemExit(1)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Single run: fail fast on bad values, data or networks (one line, no run created); prepare the store.

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
        tracker.prepare()
        tracker.reap_ghosts()
        publish(tracker)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Multirun: prepare the store, close ghost runs, open the parent run, write the plan the jobs read.

        The store is created before any worker starts (avoids the schema race); the jobs read the
        :class:`~evoexp.job.progress.SweepPlan` (sweep id, parent run, number of jobs, swept keys). Sweep values may
        differ from the base config's, so only the ``tracking`` group has to validate here; each job validates its
        own values. A key given twice, a sweep without jobs and an unwritable sweep directory, store or launch
        directory stop the command with one line before anything is opened.
        """
        tracking = _typed_tracking(config)
        sweeper = config.hydra.sweeper
        overrides = [str(o) for o in config.hydra.overrides.task]
        sweeper_params = (
            cast("dict[str, Any]", OmegaConf.to_container(sweeper.params)) if sweeper.get("params") else {}
        )
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
        sweep_dir = Path(str(config.hydra.sweep.dir))
        tracker = make_tracker(tracking, root=_root(config)) if tracking is not None else NullTracker()
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
        plan.save(sweep_dir)
        if plan.parent_run_id is not None:
            _SWEEP_HEARTBEATS[str(sweep_dir)] = tracker.keep_alive(plan.parent_run_id)
        url = tracker.ui_url()
        where = "" if plan.parent_run_id is None or url is None else f" · MLflow {view_url(url)}"
        _say(f"evoexp sweep {plan.sweep_id}: {jobs_text(plan.total)} over {axes}{where}")
        _say(f"  checks per job: {_checked(config, plan.axes)}")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Multirun job: mark it running on the sweep's progress board."""
        if _multirun(config):
            ProgressBoard(Path(str(config.hydra.sweep.dir)), None).job_started(int(config.hydra.job.num))

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
        progress, seconds = board.job_finished(int(config.hydra.job.num), ran=outcome.outcome != "skipped")
        label = outcome.label or job_label(config, config.hydra.overrides.task, plan.axes)
        line = format_job_line(progress, label, outcome, seconds=seconds)
        board.append_log(sweep_dir / PROGRESS_LOG, line)
        _say(line)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Print the sweep summary, close the parent run; exit with status 1 if any job failed."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        summary = summarize_sweep(sweep_dir)
        stop = _SWEEP_HEARTBEATS.pop(str(sweep_dir), None)
        if stop is not None:
            stop()
        plan = SweepPlan.load(sweep_dir)
        tracking = _typed_tracking(config)
        text = summary.format()
        if plan is not None and plan.parent_run_id is not None and tracking is not None:
            tracker = make_tracker(tracking, root=_root(config))
            tracker.close_sweep_run(
                plan.parent_run_id,
                status="FAILED" if summary.failed else "FINISHED",
                metrics=summary.tally.metrics(),
                tags={Tags.NOTE: summary.note(plan), Tags.OUTCOME: "failed" if summary.failed else "finished"},
            )
            text += f"\nMLflow: sweep run {plan.parent_run_id} · jobs: {view_url(str(tracker.ui_url()))}"
        _say(text)
        if summary.failed:
            self._exit(
                f"{summary.failed} of {sum(summary.counts.values())} jobs failed "
                f"(see {Path(summary.sweep_dir) / SUMMARY_FILE})"
            )


def _checked(config: DictConfig, axes: list[str]) -> str:
    """What a sweep's jobs check: the names of ``verifier.checks`` (or that it differs per job, when swept)."""
    if any(axis == "verifier" or axis.startswith("verifier.checks") for axis in axes):
        return "per job (the verifier is swept)"
    checks = OmegaConf.select(config, "verifier.checks", default=None)
    return ", ".join(str(check) for check in checks) if checks else "none"


def _read_outcome(output_dir: Path, job_return: JobReturn) -> JobOutcome:
    """The outcome the job recorded in ``output_dir``, or a failure built from Hydra's ``job_return``."""
    path = output_dir / OUTCOME_FILE
    if path.is_file():
        return JobOutcome(**json.loads(path.read_text(encoding="utf-8")))
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
        code: Code identity of this process (:func:`evoexp.job.config.code_identity`); None skips the check.
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
    :func:`~evoexp.job.config.code_identity`) only counts with ``across_code`` (``tracking.reuse_across_code``).
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
