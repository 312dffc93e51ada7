"""MLflow tracking of evoexp jobs: one store per project, one run per job, explicit run lifecycle.

Store. The embedded default is ONE SQLite file per project, ``sqlite:///<root>/mlruns.db`` with artifacts in
``<root>/mlartifacts``, where ``<root>`` is the directory the command is launched from (Hydra's
``hydra.runtime.cwd``, which is also where ``outputs/`` goes). ``$MLFLOW_TRACKING_URI`` or ``tracking.uri`` point
elsewhere, e.g. at an ``mlflow server``.

Parallel safety (measured with mlflow 3.17 and hydra-core 1.3.8):

* Parallel jobs on a brand-new SQLite file race on schema creation and lose runs, so the store and the experiment
  are created once, under a file lock (:meth:`MlflowTracker.prepare`), before workers start and again
  (idempotently) by each job.
* Parallel ``mlflow.set_experiment`` on a new name files some runs under "Default", so the experiment id is
  resolved explicitly and every run is created with it (no fluent API, no global state).
* A run that is not closed by a ``with`` block is marked FINISHED after an exception, and SIGTERM (SLURM
  pre-emption) leaves runs RUNNING; :meth:`MlflowTracker.start_run` therefore always ends the run itself:
  FINISHED, FAILED (with ``evoexp.error``) or KILLED (SIGTERM/SIGINT, via
  :func:`evoexp.job.abort.terminate_on_sigterm`).
* SIGKILL (OOM killer, node loss) ends nothing, so every run records its owner (host, process id and the
  process's start time) and a heartbeat tag (an ISO 8601 UTC time); :meth:`MlflowTracker.reap_ghosts` closes a
  RUNNING run as KILLED once its owner is provably gone (see :mod:`evoexp.job.liveness`).

MLflow's own fields are filled as its UI expects: ``mlflow.parentRunId`` nests a sweep's jobs (and the ANN baselines
it trains, tagged ``evoexp.kind = ann_baseline`` in the same experiment) under the sweep's run,
``mlflow.source.*`` and ``mlflow.user`` describe where a run came from, ``mlflow.note.content`` holds a Markdown
summary, and datasets are logged as run inputs (:meth:`~evoexp.job.run_logger.TrackedRun.log_dataset`) for the Dataset
column. How values are written (params, tags, metric names) is :mod:`evoexp.job.mlflow_values`; a job logs through
the :class:`~evoexp.job.run_logger.RunLogger` that :meth:`Tracker.start_run` yields (:mod:`evoexp.job.run_logger`).

Faults (docs/guides/reliability.md):

* Training never waits on the store: a run's metrics and tags go out from a background thread
  (:class:`~evoexp.job.run_logger.TrackedRun`), which retries a batch the store refuses for ``give_up_after``
  seconds; then the run's next logging call raises :class:`~evoexp.job.store_errors.TrackingUnavailable` and the job
  fails with that message.
* Every request to a tracking server has a timeout and a bounded number of retries (``tracking.timeout``,
  ``tracking.retries``: MLflow's ``MLFLOW_HTTP_REQUEST_*`` variables), and :meth:`MlflowTracker.check` asks the
  server once, with one timeout, before anything starts.
* A config is claimed before it is trained (``start_run(claim=...)``): a RUNNING run of the same config (and code)
  whose owner is alive means another invocation trains it; the job waits for it (:meth:`MlflowTracker.wait_for`).
* Every run records the invocation (sweep) that opened it (tag ``evoexp.invocation``), so an interrupted sweep
  closes all of its runs (:meth:`MlflowTracker.close_invocation`), those of killed workers included.
* Experiment names are names (:func:`check_experiment_name`): an artifact location never leaves the project.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import math
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from filelock import FileLock

from evoexp.job.abort import JobTerminated, signal_name, terminate_on_sigterm
from evoexp.job.liveness import Heartbeat, Owner, ghost_reason, iso_time, last_seen
from evoexp.job.mlflow_values import mirror_metrics, tag_value, ui_url
from evoexp.job.run_logger import NullRun, RunLogger, TrackedRun
from evoexp.job.store_errors import TrackingUnavailable, error_line
from evoexp.keys import BASELINE_KIND, Tags

__all__ = [
    "DEFAULT_ARTIFACT_DIR",
    "DEFAULT_STORE",
    "LOCK_DIR",
    "ConfigTaken",
    "FinishedRun",
    "MlflowTracker",
    "NullTracker",
    "Tracker",
    "check_experiment_name",
    "git_commit",
    "lock_path",
    "resolve_tracking_uri",
]

log = logging.getLogger(__name__)

DEFAULT_STORE = "mlruns.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"
LOCK_DIR = ".evoexp/locks"
_SEARCH_PAGE = 1000
_CLAIM_POLL = 2.0
"""Seconds between two looks at a run that another invocation is training (:meth:`MlflowTracker.wait_for`)."""
_OWNER_EXIT_WAIT = 10.0
"""Seconds :meth:`MlflowTracker.close_invocation` gives a killed worker to end its own run before closing it."""


class ConfigTaken(Exception):
    """Another live invocation trains the same config right now (raised by ``start_run(claim=...)``).

    Attributes:
        run_id: The other invocation's RUNNING run.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(f"config is being trained by run {run_id}")
        self.run_id = run_id


def check_experiment_name(name: str) -> str:
    """Return ``name`` if it is a valid experiment name, else raise ValueError naming ``tracking.experiment``.

    The embedded store keeps artifacts under ``<root>/mlartifacts/<name>``, and the analysis writes to
    ``analysis/<name>``: a name holding a slash or a backslash, or ``.`` / ``..``, would put files outside the
    project.
    """
    if not name.strip():
        raise ValueError("tracking.experiment must be a non-empty name")
    if "/" in name or "\\" in name or name.strip() in (".", "..") or "\0" in name:
        raise ValueError(f"tracking.experiment must be a name, not a path (no '/', '\\', '.' or '..'); got {name!r}")
    return name


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def resolve_tracking_uri(uri: str | None, *, root: Path) -> str:
    """Return the tracking URI: ``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else the project's SQLite store.

    Args:
        uri: Explicit URI (``tracking.uri``), or None.
        root: Project root (the launch directory); the default store is ``<root>/mlruns.db``.
    """
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return f"sqlite:///{(Path(root) / DEFAULT_STORE).resolve()}"


def _sqlite_file(uri: str) -> Path | None:
    """Return the database file of a ``sqlite:///`` URI, or None for other stores."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def lock_path(root: Path, name: str) -> Path:
    """Return the path of lock file ``name`` under ``<root>/.evoexp/locks`` (creating the directory)."""
    directory = Path(root) / LOCK_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}.lock"


def git_commit(root: Path) -> str:
    """Return the git commit of ``root`` (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


@dataclass(frozen=True)
class FinishedRun:
    """A FINISHED run found by its config hash (for resume and baseline reuse).

    Attributes:
        run_id: MLflow run id.
        metrics: Latest value of each of its metrics.
        tags: Its tags.
    """

    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]


class Tracker:
    """Tracking backend of a job; this base class tracks nothing (``tracking=off``)."""

    enabled = False

    def prepare(self) -> None:
        """Create the store and experiment if needed (no-op here)."""

    def find_finished(self, config_hash: str) -> FinishedRun | None:
        """Return the newest FINISHED run with tag ``evoexp.config_hash == config_hash`` (None here)."""
        return None

    @contextmanager
    def start_run(
        self,
        *,
        run_name: str,
        tags: Mapping[str, Any],
        params: Mapping[str, Any],
        parent_run_id: str | None = None,
        mirror: Sequence[str] = (),
        claim: Mapping[str, str] | None = None,
    ) -> Iterator[RunLogger]:
        """Open a run for the block; here a :class:`NullRun`."""
        yield NullRun()

    def find_baseline(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """Return ``(run_id, payload)`` of the finished ANN baseline stored under ``key`` (None here)."""
        return None

    def save_baseline(
        self,
        key: str,
        payload: Mapping[str, Any],
        *,
        metrics: Mapping[str, float],
        parent_run_id: str | None = None,
    ) -> str | None:
        """Store an ANN baseline under ``key`` and return its run id (None here: nothing is stored)."""
        return None

    def set_experiment_tags(self, tags: Mapping[str, str], *, only_missing: bool = False) -> None:
        """Set tags of the experiment (``only_missing``: those it does not have yet); no-op here."""

    def open_sweep_run(self, sweep_id: str, *, run_name: str, tags: Mapping[str, Any]) -> str | None:
        """Open the parent run of sweep ``sweep_id`` and return its id (None here: nothing is tracked)."""
        return None

    def close_sweep_run(
        self, run_id: str, *, status: str, metrics: Mapping[str, float], tags: Mapping[str, Any]
    ) -> None:
        """End the parent run of a sweep (no-op here)."""

    def reap_ghosts(self) -> list[str]:
        """Close the RUNNING runs whose owner is provably gone; return their ids (none here)."""
        return []

    def check(self) -> None:
        """Make sure the store answers before anything starts (nothing to check here)."""

    def taken(self, claim: Mapping[str, str]) -> str | None:
        """The live RUNNING run that claims the config of ``claim`` in another invocation (None here)."""
        return None

    def explain(self, exc: BaseException) -> str:
        """``Type: message`` of a failure, on one line; when a tracking server stopped answering, that instead.

        A request to a dead server fails with a long urllib3 trace of retries; asking the server once
        (:meth:`check`) turns that into one line naming the URI and the reason.
        """
        if not isinstance(exc, TrackingUnavailable):
            try:
                self.check()
            except TrackingUnavailable as gone:
                exc = gone
        return error_line(exc)

    def wait_for(self, run_id: str) -> None:
        """Wait until run ``run_id`` (another invocation's) is no longer RUNNING (nothing to wait for here)."""

    def close_invocation(self, invocation: str, *, status: str, reason: str) -> list[str]:
        """End the RUNNING runs that invocation ``invocation`` opened, with ``status``; return their ids (none here)."""
        return []

    def run_link(self, run_id: str) -> str | None:
        """Link to a run inside the MLflow UI (relative, for notes), or None when nothing is tracked."""
        return None

    def keep_alive(self, run_id: str) -> Callable[[], None]:
        """Send heartbeats for ``run_id`` until the returned function is called (nothing to send here)."""
        return lambda: None

    def ui_url(self, run_id: str | None = None) -> str | None:
        """Absolute UI URL of the experiment's training runs (or of one run), or None when nothing is tracked."""
        return None


class NullTracker(Tracker):
    """``tracking=off``: nothing is logged, nothing is resumed or reused."""


class MlflowTracker(Tracker):
    """MLflow backend: one experiment in the store at ``uri``.

    Args:
        uri: Tracking URI (see :func:`resolve_tracking_uri`).
        experiment: Experiment name of the runs: sweeps, their jobs, and the ANN baselines (tag ``evoexp.kind =
            ann_baseline``; the analysis leaves them out).
        root: Project root: lock files go to ``<root>/.evoexp/locks``, local artifacts to ``<root>/mlartifacts``.
        flush_every: Seconds a run buffers metrics before sending them (see :class:`TrackedRun`).
        heartbeat_every: Seconds between heartbeats of an open run (0: none; its owner's process id still tells
            on its own host whether it runs).
        stale_after: Seconds without heartbeat after which a RUNNING run from another host counts as a ghost
            (0: never; see :func:`ghost_reason`).
        system_metrics: Log MLflow's system metrics (CPU, memory, disk, network; needs psutil) while a run is open.
        timeout: Seconds a tracking server has to answer one request (and :meth:`check`).
        retries: Times a failed request to a tracking server is retried (MLflow's backoff: 1, 2, 4 ... s).
        give_up_after: Seconds a run's background uploader retries a batch the store refuses before the run fails.
        invocation: Id of the invocation (sweep) this process works for, recorded on every run it opens
            (tag ``evoexp.invocation``); None records none.
    """

    enabled = True

    def __init__(
        self,
        uri: str,
        experiment: str,
        *,
        root: Path,
        flush_every: float = 5.0,
        heartbeat_every: float = 60.0,
        stale_after: float = 900.0,
        system_metrics: bool = False,
        timeout: float = 10.0,
        retries: int = 2,
        give_up_after: float = 120.0,
        invocation: str | None = None,
    ) -> None:
        check_experiment_name(experiment)
        # MLflow prints two "View run ... at" lines whenever a run on a server ends, and a progress bar for every
        # artifact download (the ANN baseline); evoexp's console prints its own line per job. The user's own
        # setting of these documented variables wins.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        if _is_server(uri):
            # MLflow's documented client settings; its defaults (7 retries with backoff 2, 120 s per request) let one
            # call to a dead server block for minutes. Set here, before this process's first request.
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(int(retries))
            os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
            os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(timeout)))
        self.timeout = timeout
        self.give_up_after = give_up_after
        self.invocation = invocation
        self.flush_every = flush_every
        self.heartbeat_every = heartbeat_every
        self.stale_after = stale_after
        self.system_metrics = system_metrics
        self.uri = uri
        self.experiment = experiment
        self.root = Path(root).resolve()
        self._client: Any = None
        self._experiment_id: str | None = None

    @property
    def client(self) -> Any:
        """The :class:`mlflow.MlflowClient` of the store, created (schema included) under the store lock."""
        if self._client is None:
            self.prepare()
        return self._client

    def check(self) -> None:
        """Ask a tracking server once whether it answers (``GET /health``, one ``timeout``); other stores pass.

        Raises:
            TrackingUnavailable: No server answers at the URI (one line: the URI, the reason, what to do).
        """
        if not _is_server(self.uri):
            return
        try:
            with urllib.request.urlopen(f"{self.uri.rstrip('/')}/health", timeout=self.timeout):
                return
        except urllib.error.HTTPError:
            return  # it answers (an auth proxy, an older server): the real requests will tell
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingUnavailable(
                f"tracking.uri {self.uri}: no MLflow server answers within {self.timeout:g} s ({reason}); start it "
                "(docs/guides/reliability.md) or use the embedded store (tracking=mlflow)"
            ) from None

    def _lock(self) -> FileLock:
        """File lock serialising store and experiment creation (next to a SQLite file, else under root)."""
        db = _sqlite_file(self.uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            return FileLock(str(db) + ".lock")
        digest = hashlib.sha256(self.uri.encode()).hexdigest()[:12]
        return FileLock(str(lock_path(self.root, f"store-{digest}")))

    def _artifact_location(self, name: str) -> str | None:
        """Artifact root of a new experiment: ``<root>/mlartifacts/<name>`` for SQLite stores, else the server's."""
        if _sqlite_file(self.uri) is None:
            return None
        return (self.root / DEFAULT_ARTIFACT_DIR / name).as_uri()

    def prepare(self) -> None:
        """Create the store (schema) and the experiment once; safe to call from many processes at once."""
        from mlflow import MlflowClient

        with self._lock():
            client = MlflowClient(tracking_uri=self.uri)
            name = self.experiment
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                self._experiment_id = client.create_experiment(name, artifact_location=self._artifact_location(name))
            elif experiment.lifecycle_stage != "active":
                raise ValueError(
                    f"tracking.experiment {name!r} is deleted in {self.uri}; restore it in MLflow or choose "
                    "another name"
                )
            else:
                self._experiment_id = experiment.experiment_id
            self._client = client

    def experiment_id(self) -> str:
        """Id of the experiment."""
        if self._experiment_id is None:
            self.prepare()
        return str(self._experiment_id)

    def _search_finished(self, filter_string: str) -> Any | None:
        """Return the newest FINISHED run matching ``filter_string``, or None."""
        runs = self.client.search_runs(
            [self.experiment_id()],
            filter_string=f"{filter_string} and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def find_finished(self, config_hash: str) -> FinishedRun | None:
        """Return the newest FINISHED job run with tag ``evoexp.config_hash == config_hash``, or None."""
        run = self._search_finished(f"tags.`{Tags.CONFIG_HASH}` = '{config_hash}'")
        if run is None:
            return None
        return FinishedRun(run.info.run_id, dict(run.data.metrics), dict(run.data.tags))

    def _owner_tags(self) -> dict[str, str]:
        """Tags of a new run naming its owner (this process), its first heartbeat and where it comes from."""
        return {
            **Owner.current().tags(),
            Tags.HEARTBEAT: iso_time(time.time()),
            Tags.HEARTBEAT_EVERY: f"{self.heartbeat_every:g}",
            Tags.USER: getpass.getuser(),
            Tags.SOURCE_NAME: "evoexp",
            Tags.SOURCE_TYPE: "LOCAL",
            **({} if self.invocation is None else {Tags.INVOCATION: self.invocation}),
        }

    def _create_run(self, experiment_id: str, run_name: str, tags: Mapping[str, Any]) -> str:
        """Create a RUNNING run with the owner tags (and ``mlflow.source.git.commit`` from ``evoexp.git_commit``).

        The run's own ``tags`` come first and the owner's bookkeeping last: the run page lists tags in this order.
        """
        texts = {key: str(value) for key, value in tags.items()}
        texts |= {key: value for key, value in self._owner_tags().items() if key not in texts}
        commit = texts.get(Tags.GIT_COMMIT, "unknown").removesuffix("-dirty")
        if commit != "unknown":
            texts[Tags.SOURCE_GIT_COMMIT] = commit
        return str(self.client.create_run(experiment_id, run_name=run_name, tags=texts).info.run_id)

    @contextmanager
    def _monitored(self, run_id: str) -> Iterator[None]:
        """Send heartbeats (and system metrics, if enabled) for ``run_id`` while the block runs."""
        heartbeat = Heartbeat(self.client, run_id, self.heartbeat_every) if self.heartbeat_every > 0 else None
        monitor = None
        if self.system_metrics:
            # Not in MLflow's documented API (its fluent start_run(log_system_metrics=True) uses it); runs made with
            # MlflowClient have no other way to get system metrics. Guarded: without it the job runs unmonitored.
            try:
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
            except ImportError as exc:
                log.warning("tracking.system_metrics: MLflow's system metrics monitor is unavailable (%s)", exc)
            else:
                monitor = SystemMetricsMonitor(run_id, tracking_uri=self.uri)
                monitor.start()
        try:
            yield
        finally:
            if monitor is not None:
                monitor.finish()
            if heartbeat is not None:
                heartbeat.stop()

    @staticmethod
    def _filter(tags: Mapping[str, str]) -> str:
        """Search filter of the RUNNING runs with every tag of ``tags``."""
        quoted = {key: value.replace("'", "\\'") for key, value in tags.items()}
        return " and ".join(["attributes.status = 'RUNNING'", *(f"tags.`{k}` = '{v}'" for k, v in quoted.items())])

    def _close(self, run: Any, status: str, reason: str, *, now: bool = False) -> None:
        """End another process's ``run`` with ``status``, its outcome and the ``reason`` in ``evoexp.error``.

        The run ends at its last sign of life (its last heartbeat), or ``now``.
        """
        outcome = "killed" if status == "KILLED" else "failed"
        self.client.log_batch(
            run.info.run_id, tags=[_tag(Tags.OUTCOME, outcome), _tag(Tags.ERROR, reason)], synchronous=True
        )
        ended = time.time() if now else last_seen(run.data.tags, run.info.start_time)
        self.client.set_terminated(run.info.run_id, status, end_time=int(ended * 1000))

    def taken(self, claim: Mapping[str, str]) -> str | None:
        """The oldest live RUNNING run with the tags of ``claim`` (another invocation trains that config), or None."""
        rivals = self._rivals(claim)
        return str(rivals[0].info.run_id) if rivals else None

    def _rivals(self, claim: Mapping[str, str], *, mine: str | None = None) -> list[Any]:
        """The RUNNING job runs with the tags of ``claim`` whose owner lives, oldest first (``mine`` left out).

        A run left RUNNING by this very process cannot be training (a process runs one job at a time): it is closed
        as KILLED, as are runs whose owner is provably gone (:func:`ghost_reason`).
        """
        me = Owner.current()
        rivals = []
        for run in self._search(self.experiment_id(), self._filter(claim)):
            if run.info.run_id == mine:
                continue
            tags = dict(run.data.tags)
            reason = ghost_reason(tags, run.info.start_time, now=time.time(), stale_after=self.stale_after)
            if reason is None and Owner.from_tags(tags) == me:
                reason = "left open by an earlier job of the same process"
            if reason is not None:
                self._close(run, "KILLED", f"ghost run closed on resume: {reason}")
                continue
            rivals.append(run)
        return sorted(rivals, key=lambda run: (run.info.start_time, run.info.run_id))

    def wait_for(self, run_id: str) -> None:
        """Wait until run ``run_id`` is no longer RUNNING, or its owner is provably gone (then close it KILLED)."""
        while True:
            run = self.client.get_run(run_id)
            if run.info.status != "RUNNING":
                return
            reason = ghost_reason(
                dict(run.data.tags), run.info.start_time, now=time.time(), stale_after=self.stale_after
            )
            if reason is not None:
                self._close(run, "KILLED", f"ghost run closed on resume: {reason}")
                return
            time.sleep(_CLAIM_POLL)

    @contextmanager
    def start_run(
        self,
        *,
        run_name: str,
        tags: Mapping[str, Any],
        params: Mapping[str, Any],
        parent_run_id: str | None = None,
        mirror: Sequence[str] = (),
        claim: Mapping[str, str] | None = None,
    ) -> Iterator[RunLogger]:
        """Create a run, log ``params``, yield it, and always end it with the right status.

        The run records its owner (host, process id), beats every ``heartbeat_every`` seconds while open, and is
        nested under ``parent_run_id`` (``mlflow.parentRunId``) when given. The numeric params named in ``mirror``
        (e.g. the sweep axes) are also logged as metrics ``config/<key>``: MLflow sorts and compares params as
        strings (``1, 10, 100, 2``), metrics as numbers. Leaving the block normally ends the run FINISHED (tag
        ``evoexp.outcome`` defaults to ``finished``; set it inside the block for ``diverged``). An exception ends
        it FAILED with ``evoexp.error``; SIGTERM/SIGINT end it KILLED. Exceptions propagate; when the run cannot be
        ended (the store is gone), a warning says so and the original exception propagates.

        ``claim`` (tags, e.g. the config hash and code identity) claims the config: when another live RUNNING run
        with those tags started before this one, this run is deleted again and :class:`ConfigTaken` names the
        other run (the check runs after the creation, so two invocations that start at once agree on who trains).
        """
        tags = dict(tags) if parent_run_id is None else {**tags, Tags.PARENT_RUN: parent_run_id}
        run_id = self._create_run(self.experiment_id(), run_name, tags)
        if claim is not None:
            rivals = self._rivals(claim, mine=run_id)
            mine = self.client.get_run(run_id).info
            older = [r for r in rivals if (r.info.start_time, r.info.run_id) < (mine.start_time, mine.run_id)]
            if older:
                self.client.set_terminated(run_id, "KILLED")
                self.client.delete_run(run_id)
                raise ConfigTaken(str(older[0].info.run_id))
        tracked = TrackedRun(
            self.client,
            run_id,
            flush_every=self.flush_every,
            background=True,
            give_up_after=self.give_up_after,
            where=self.uri,
        )
        try:
            with terminate_on_sigterm(), self._monitored(run_id):
                tracked.log_params(params)
                tracked.log_metrics(mirror_metrics(params, mirror))
                yield tracked
        except (KeyboardInterrupt, JobTerminated) as exc:
            reason = f"interrupted by {signal_name(exc)}"
            self._end_quietly(tracked, "KILLED", {Tags.OUTCOME: "killed", Tags.ERROR: reason})
            raise
        except BaseException as exc:
            self._end_quietly(tracked, "FAILED", {Tags.OUTCOME: "failed", Tags.ERROR: f"{type(exc).__name__}: {exc}"})
            raise
        else:
            try:
                tracked.end("FINISHED", tags=None if tracked.outcome else {Tags.OUTCOME: "finished"})
            except TrackingUnavailable as exc:  # its data is incomplete in the store: the job fails, clearly
                self._end_quietly(tracked, "FAILED", {Tags.OUTCOME: "failed", Tags.ERROR: str(exc)})
                raise

    def _end_quietly(self, tracked: TrackedRun, status: str, tags: Mapping[str, str]) -> None:
        """End ``tracked`` on the way out of an exception: a store that fails now only earns a warning.

        The wait for the uploader is bounded by one request ``timeout``: an interrupted or failed job does not
        linger on a dead store; its run, left RUNNING there, is closed as a ghost by the next sweep. When the
        uploader gave up, the tags and status are sent once more, directly (a store that refused one batch for
        good may take them).
        """
        try:
            try:
                tracked.end(status, tags=tags, wait=self.timeout)
            except TrackingUnavailable:  # the uploader gave up on its queue: send the tags and status directly
                tracked.end(status, tags=tags, wait=self.timeout)
        except Exception as exc:
            log.warning("could not mark run %s %s in %s: %s", tracked.run_id, status, self.uri, exc)

    def find_baseline(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """Return ``(run_id, payload)`` of the FINISHED ANN baseline with tag ``evoexp.ann_hash == key``."""
        run = self._search_finished(f"tags.`{Tags.KIND}` = '{BASELINE_KIND}' and tags.`{Tags.ANN_HASH}` = '{key}'")
        if run is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download_artifacts(run.info.run_id, "ann_baseline.json", tmp)
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        return run.info.run_id, payload

    def save_baseline(
        self,
        key: str,
        payload: Mapping[str, Any],
        *,
        metrics: Mapping[str, float],
        parent_run_id: str | None = None,
    ) -> str | None:
        """Store ``payload`` (JSON) as an ANN-baseline run tagged ``evoexp.ann_hash == key``; return its id.

        The run is tagged ``evoexp.kind = ann_baseline`` and nested under ``parent_run_id`` (the sweep that trains
        it), so that the experiment's runs table shows one row per sweep.
        """
        tags = {Tags.KIND: BASELINE_KIND, Tags.ANN_HASH: key}
        with self.start_run(run_name=f"ann-baseline-{key}", tags=tags, params={}, parent_run_id=parent_run_id) as run:
            search = quote(f"tags.`{Tags.ANN_RUN}` = '{run.run_id}'")
            users = f"#/experiments/{self.experiment_id()}/runs?workflowType=machine_learning&searchFilter={search}"
            run.set_tags({Tags.NOTE: f"ANN twin baseline `{key}`, shared by [the SNN runs that used it]({users}).\n"})
            run.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "ann_baseline.json"
                path.write_text(json.dumps(payload, allow_nan=True), encoding="utf-8")
                run.log_artifact(path)
            return run.run_id

    def _search(self, experiment_id: str, filter_string: str) -> list[Any]:
        """Every run of ``experiment_id`` matching ``filter_string`` (all pages)."""
        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id], filter_string=filter_string, max_results=_SEARCH_PAGE, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def open_sweep_run(self, sweep_id: str, *, run_name: str, tags: Mapping[str, Any]) -> str:
        """Open the parent run of sweep ``sweep_id``: the existing one when the sweep runs again, else a new one.

        A re-opened parent is set RUNNING again under this process, so the jobs of a resumed sweep (re-run or
        skipped) stay its children. A parent that is RUNNING under a live owner belongs to another invocation of the
        same sweep running now: this invocation opens a parent of its own. It is tagged ``evoexp.kind = sweep`` and
        ``evoexp.sweep_id``.
        """
        texts = {**{key: str(value) for key, value in tags.items()}, Tags.SWEEP_ID: sweep_id, Tags.KIND: "sweep"}
        escaped = sweep_id.replace("'", "\\'")
        found = self._search(
            self.experiment_id(), f"tags.`{Tags.KIND}` = 'sweep' and tags.`{Tags.SWEEP_ID}` = '{escaped}'"
        )
        run = max(found, key=lambda run: run.info.start_time) if found else None
        if run is None or (
            run.info.status == "RUNNING"
            and ghost_reason(dict(run.data.tags), run.info.start_time, now=time.time(), stale_after=self.stale_after)
            is None
        ):
            return self._create_run(self.experiment_id(), run_name, texts)
        run_id = str(run.info.run_id)
        self.client.update_run(run_id, status="RUNNING", name=run_name)
        if Tags.ERROR in run.data.tags:  # e.g. why the ghost of its last attempt was closed
            self.client.delete_tag(run_id, Tags.ERROR)
        TrackedRun(self.client, run_id).set_tags({**self._owner_tags(), **texts})
        return run_id

    def close_sweep_run(
        self, run_id: str, *, status: str, metrics: Mapping[str, float], tags: Mapping[str, Any]
    ) -> None:
        """Log the sweep's closing ``metrics`` and ``tags`` to its parent run and end it with ``status``."""
        run = TrackedRun(self.client, run_id, flush_every=math.inf)
        run.log_metrics(metrics)
        run.end(status, tags=tags)

    def reap_ghosts(self) -> list[str]:
        """Close every RUNNING run (jobs, sweeps, ANN baselines) whose owner is provably gone, as KILLED.

        Such runs are left by SIGKILL (OOM killer, node loss, ``scancel --signal=KILL``). Each is tagged
        ``evoexp.outcome = killed`` with the reason in ``evoexp.error`` and ends at its last heartbeat; see
        :func:`ghost_reason` for when an owner counts as gone.

        Returns:
            The ids of the closed runs.
        """
        now = time.time()
        reaped = []
        for run in self._search(self.experiment_id(), "attributes.status = 'RUNNING'"):
            tags = dict(run.data.tags)
            reason = ghost_reason(tags, run.info.start_time, now=now, stale_after=self.stale_after)
            if reason is None:
                continue
            self._close(run, "KILLED", f"ghost run closed on resume: {reason}")
            log.warning("closed ghost run %s as KILLED: %s", run.info.run_id, reason)
            reaped.append(str(run.info.run_id))
        return reaped

    def close_invocation(self, invocation: str, *, status: str, reason: str) -> list[str]:
        """End every RUNNING run that invocation ``invocation`` opened (jobs, ANN baselines; not the sweep's run).

        Used when a sweep ends early (Ctrl-C, SIGTERM, an error escaping the launcher): runs of jobs that unwound
        are already closed; those of workers killed outright are still RUNNING. A run whose owner still lives is
        given :data:`_OWNER_EXIT_WAIT` seconds to end itself before it is closed here.

        Returns:
            The ids of the runs closed here.
        """
        closed = []
        deadline = time.monotonic() + _OWNER_EXIT_WAIT
        for run in self._search(self.experiment_id(), self._filter({Tags.INVOCATION: invocation})):
            if run.data.tags.get(Tags.KIND) == "sweep":
                continue  # the sweep's own run: closed with its summary by the sweep
            owner = Owner.from_tags(dict(run.data.tags))
            while owner is not None and owner != Owner.current() and owner.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.client.get_run(run.info.run_id).info.status != "RUNNING":
                continue  # it ended itself meanwhile
            self._close(run, status, reason, now=True)
            closed.append(str(run.info.run_id))
        return closed

    def keep_alive(self, run_id: str) -> Callable[[], None]:
        """Send heartbeats for ``run_id`` (e.g. a sweep's parent run) until the returned function is called."""
        if self.heartbeat_every <= 0:
            return lambda: None
        return Heartbeat(self.client, run_id, self.heartbeat_every).stop

    def set_experiment_tags(self, tags: Mapping[str, str], *, only_missing: bool = False) -> None:
        """Set tags of the experiment (e.g. its description and saved views); ``only_missing``: keep existing ones."""
        experiment_id = self.experiment_id()
        existing = self.client.get_experiment(experiment_id).tags if only_missing else {}
        for key, value in tags.items():
            if key not in existing:
                self.client.set_experiment_tag(experiment_id, key, value)

    def run_link(self, run_id: str) -> str:
        """Link to ``run_id`` inside the MLflow UI, relative to the UI's address (for Markdown notes)."""
        return f"#/experiments/{self.experiment_id()}/runs/{run_id}"

    def ui_url(self, run_id: str | None = None) -> str:
        """Absolute URL of the experiment's training runs (or of ``run_id``) in the MLflow UI (see :func:`ui_url`)."""
        return ui_url(self.uri, self.experiment_id(), run_id)


def _tag(key: str, value: str) -> Any:
    """An MLflow ``RunTag`` (value truncated to MLflow's limit)."""
    from mlflow.entities import RunTag

    return RunTag(key, tag_value(value))
