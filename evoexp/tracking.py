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
  FINISHED, FAILED (with ``evoexp.error``) or KILLED (SIGTERM/SIGINT, via :func:`terminate_on_sigterm`).

Logging is batched: params, tags and metrics go through ``MlflowClient.log_batch`` in chunks within MLflow's
limits (100 params/tags, 1000 metrics per call).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from filelock import FileLock

__all__ = [
    "ANN_BASELINE_SUFFIX",
    "DEFAULT_ARTIFACT_DIR",
    "DEFAULT_STORE",
    "LOCK_DIR",
    "FinishedRun",
    "JobTerminated",
    "MlflowTracker",
    "NullRun",
    "NullTracker",
    "RunLogger",
    "Tags",
    "TrackedRun",
    "Tracker",
    "git_commit",
    "lock_path",
    "metric_key",
    "resolve_tracking_uri",
    "terminate_on_sigterm",
]

log = logging.getLogger(__name__)

DEFAULT_STORE = "mlruns.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"
LOCK_DIR = ".evoexp/locks"
ANN_BASELINE_SUFFIX = "-ann-baselines"
_INVALID_KEY_CHARS = re.compile(r"[^\w\-./: ]")
_MAX_PARAMS_TAGS = 100
_MAX_METRICS = 1000
_MAX_PARAM_LENGTH = 6000
_MAX_TAG_LENGTH = 8000


class Tags:
    """MLflow tag keys written by evoexp (read by :mod:`evoexp.analysis`)."""

    SWEEP_ID = "evoexp.sweep_id"
    JOB = "evoexp.job"
    CONFIG_HASH = "evoexp.config_hash"
    ANN_HASH = "evoexp.ann_hash"
    ANN_RUN = "evoexp.ann_run_id"
    GIT_COMMIT = "evoexp.git_commit"
    VERSION = "evoexp.version"
    TORCH_VERSION = "torch.version"
    KIND = "evoexp.kind"
    OUTCOME = "evoexp.outcome"
    ERROR = "evoexp.error"
    OUTPUT_DIR = "evoexp.output_dir"
    RUN_NAME = "mlflow.runName"


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


class JobTerminated(SystemExit):
    """Raised in the main thread when the process receives SIGTERM; exits with ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`JobTerminated` inside the block, so runs unwind and end as KILLED.

    Only the main thread can install signal handlers; elsewhere the block runs unchanged. The previous handler
    (e.g. submitit's) is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise JobTerminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _param_value(value: Any) -> str:
    """Format a config value as an MLflow param (lists as JSON, None as ``null``), within the length limit."""
    text = json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)
    return text[:_MAX_PARAM_LENGTH]


def metric_key(key: str) -> str:
    """``key`` with every character MLflow refuses in metric names replaced by ``_``.

    MLflow accepts alphanumerics, ``_ - . / : `` and spaces; e.g. ``alignment/cosine/sigma=0.01`` becomes
    ``alignment/cosine/sigma_0.01``.
    """
    return _INVALID_KEY_CHARS.sub("_", key)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Yield consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RunLogger:
    """Interface of a job's run; this base class logs nothing (``tracking=off``).

    Attributes:
        run_id: MLflow run id, or None when nothing is tracked.
    """

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values formatted as strings)."""

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """Log metrics at ``step`` in one batch (None values are skipped)."""

    def log_metric_steps(self, steps: Mapping[int, Mapping[str, float]]) -> None:
        """Log metrics of several steps (``{step: {key: value}}``) in as few batches as possible."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values formatted as strings)."""

    def log_artifact(self, path: Path, *, artifact_path: str | None = None) -> None:
        """Upload one file."""

    def log_artifacts(self, directory: Path, *, artifact_path: str | None = None) -> None:
        """Upload a directory's files."""


class NullRun(RunLogger):
    """The run of an untracked job: every call is a no-op."""


class TrackedRun(RunLogger):
    """An open MLflow run, logged through one :class:`mlflow.MlflowClient` in batches.

    Metrics are buffered and sent with one ``log_batch`` call when the oldest buffered value is ``flush_every``
    seconds old (so curves stay live in the UI), when 1000 values are waiting, and when the run ends; the end
    sends the remaining metrics and the closing tags in a single call. On a SQLite store each call costs a
    commit (~10-40 ms), so this keeps the tracking cost of a job to a handful of calls.

    Args:
        client: The client bound to the store.
        run_id: Id of the run to log into.
        flush_every: Seconds metrics may wait in the buffer (0 sends every call at once).
    """

    def __init__(self, client: Any, run_id: str, *, flush_every: float = 5.0) -> None:
        if not flush_every >= 0:
            raise ValueError(f"flush_every must be >= 0 seconds, got {flush_every!r}")
        self.client = client
        self.run_id = run_id
        self.flush_every = flush_every
        self.status: str | None = None
        self.outcome: str | None = None
        self._buffer: list[Any] = []
        self._buffered_since = 0.0

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params in batches of 100 (values as strings, lists as JSON, truncated to MLflow's limit)."""
        from mlflow.entities import Param

        entries = [Param(key, _param_value(value)) for key, value in params.items()]
        for chunk in _chunks(entries, _MAX_PARAMS_TAGS):
            self.client.log_batch(self.run_id, params=chunk, synchronous=True)

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """Buffer metrics at ``step`` (default 0); None values are skipped, NaN/Inf are kept."""
        self.log_metric_steps({step or 0: metrics})

    def log_metric_steps(self, steps: Mapping[int, Mapping[str, float]]) -> None:
        """Buffer metrics of several steps (``{step: {key: value}}``); flush when due (see the class)."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        if not self._buffer:
            self._buffered_since = time.monotonic()
        self._buffer.extend(
            Metric(metric_key(key), float(value), stamp, step)
            for step, metrics in steps.items()
            for key, value in metrics.items()
            if value is not None
        )
        if len(self._buffer) >= _MAX_METRICS or time.monotonic() - self._buffered_since >= self.flush_every:
            self.flush()

    def flush(self, tags: Mapping[str, Any] | None = None) -> None:
        """Send the buffered metrics (and ``tags``) now, in as few ``log_batch`` calls as MLflow's limits allow."""
        from mlflow.entities import RunTag

        metrics, self._buffer = self._buffer, []
        tag_entries = [RunTag(key, str(value)[:_MAX_TAG_LENGTH]) for key, value in (tags or {}).items()]
        metric_chunks = list(_chunks(metrics, _MAX_METRICS))
        tag_chunks = list(_chunks(tag_entries, _MAX_PARAMS_TAGS))
        for i in range(max(len(metric_chunks), len(tag_chunks))):
            self.client.log_batch(
                self.run_id,
                metrics=metric_chunks[i] if i < len(metric_chunks) else [],
                tags=tag_chunks[i] if i < len(tag_chunks) else [],
                synchronous=True,
            )
        if tags and Tags.OUTCOME in tags:
            self.outcome = str(tags[Tags.OUTCOME])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags now (values as strings, truncated to MLflow's limit), sending buffered metrics with them."""
        self.flush(tags)

    def log_artifact(self, path: Path, *, artifact_path: str | None = None) -> None:
        """Upload one file into the run's artifacts (under ``artifact_path``)."""
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: Path, *, artifact_path: str | None = None) -> None:
        """Upload the files of ``directory`` into the run's artifacts (under ``artifact_path``)."""
        self.client.log_artifacts(self.run_id, str(directory), artifact_path)

    def end(self, status: str, *, tags: Mapping[str, Any] | None = None) -> None:
        """Send what is buffered plus the closing ``tags``, then mark the run ``status``; later calls are no-ops.

        The status is set even when sending the buffer fails (that error is raised afterwards).
        """
        if self.status is not None:
            return
        try:
            if self._buffer or tags:
                self.flush(tags)
        finally:
            self.client.set_terminated(self.run_id, status)
            self.status = status


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
        self, *, run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any], baseline: bool = False
    ) -> Iterator[RunLogger]:
        """Open a run for the block; here a :class:`NullRun`."""
        yield NullRun()

    def find_baseline(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """Return ``(run_id, payload)`` of the finished ANN baseline stored under ``key`` (None here)."""
        return None

    def save_baseline(self, key: str, payload: Mapping[str, Any], *, metrics: Mapping[str, float]) -> str | None:
        """Store an ANN baseline under ``key`` and return its run id (None here: nothing is stored)."""
        return None


class NullTracker(Tracker):
    """``tracking=off``: nothing is logged, nothing is resumed or reused."""


class MlflowTracker(Tracker):
    """MLflow backend: one experiment (plus one for ANN baselines) in the store at ``uri``.

    Args:
        uri: Tracking URI (see :func:`resolve_tracking_uri`).
        experiment: Experiment name of the job runs; ANN baselines go to ``<experiment>-ann-baselines``.
        root: Project root: lock files go to ``<root>/.evoexp/locks``, local artifacts to ``<root>/mlartifacts``.
        flush_every: Seconds a run buffers metrics before sending them (see :class:`TrackedRun`).
    """

    enabled = True

    def __init__(self, uri: str, experiment: str, *, root: Path, flush_every: float = 5.0) -> None:
        if not experiment.strip():
            raise ValueError("experiment must be a non-empty name")
        self.flush_every = flush_every
        self.uri = uri
        self.experiment = experiment
        self.root = Path(root).resolve()
        self._client: Any = None
        self._experiment_ids: dict[str, str] = {}

    @property
    def client(self) -> Any:
        """The :class:`mlflow.MlflowClient` of the store, created (schema included) under the store lock."""
        if self._client is None:
            self.prepare()
        return self._client

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
        """Create the store (schema) and both experiments once; safe to call from many processes at once."""
        from mlflow import MlflowClient

        with self._lock():
            client = MlflowClient(tracking_uri=self.uri)
            for name in (self.experiment, self.experiment + ANN_BASELINE_SUFFIX):
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    experiment_id = client.create_experiment(name, artifact_location=self._artifact_location(name))
                elif experiment.lifecycle_stage != "active":
                    raise ValueError(
                        f"tracking.experiment {name!r} is deleted in {self.uri}; restore it in MLflow or choose "
                        "another name"
                    )
                else:
                    experiment_id = experiment.experiment_id
                self._experiment_ids[name] = experiment_id
            self._client = client

    def experiment_id(self, *, baseline: bool = False) -> str:
        """Id of the job experiment (or of the ANN-baseline experiment)."""
        if self._client is None:
            self.prepare()
        return self._experiment_ids[self.experiment + (ANN_BASELINE_SUFFIX if baseline else "")]

    def _search_finished(self, tag: str, value: str, *, baseline: bool) -> Any | None:
        """Return the newest FINISHED run whose ``tag`` equals ``value``, or None."""
        runs = self.client.search_runs(
            [self.experiment_id(baseline=baseline)],
            filter_string=f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def find_finished(self, config_hash: str) -> FinishedRun | None:
        """Return the newest FINISHED job run with tag ``evoexp.config_hash == config_hash``, or None."""
        run = self._search_finished(Tags.CONFIG_HASH, config_hash, baseline=False)
        if run is None:
            return None
        return FinishedRun(run.info.run_id, dict(run.data.metrics), dict(run.data.tags))

    @contextmanager
    def start_run(
        self, *, run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any], baseline: bool = False
    ) -> Iterator[RunLogger]:
        """Create a run, log ``params``, yield it, and always end it with the right status.

        Leaving the block normally ends the run FINISHED (tag ``evoexp.outcome`` defaults to ``finished``; set it
        inside the block for ``diverged``). An exception ends it FAILED with ``evoexp.error``; SIGTERM/SIGINT end
        it KILLED. Exceptions propagate.
        """
        run = self.client.create_run(
            self.experiment_id(baseline=baseline),
            run_name=run_name,
            tags={key: str(value) for key, value in tags.items()},
        )
        tracked = TrackedRun(self.client, run.info.run_id, flush_every=self.flush_every)
        try:
            with terminate_on_sigterm():
                tracked.log_params(params)
                yield tracked
        except (KeyboardInterrupt, JobTerminated) as exc:
            signame = "SIGTERM" if isinstance(exc, JobTerminated) else "SIGINT"
            tracked.end("KILLED", tags={Tags.OUTCOME: "killed", Tags.ERROR: f"interrupted by {signame}"})
            raise
        except BaseException as exc:
            tracked.end("FAILED", tags={Tags.OUTCOME: "failed", Tags.ERROR: f"{type(exc).__name__}: {exc}"})
            raise
        else:
            tracked.end("FINISHED", tags=None if tracked.outcome else {Tags.OUTCOME: "finished"})

    def find_baseline(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """Return ``(run_id, payload)`` of the FINISHED ANN baseline with tag ``evoexp.ann_hash == key``."""
        run = self._search_finished(Tags.ANN_HASH, key, baseline=True)
        if run is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download_artifacts(run.info.run_id, "ann_baseline.json", tmp)
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        return run.info.run_id, payload

    def save_baseline(self, key: str, payload: Mapping[str, Any], *, metrics: Mapping[str, float]) -> str | None:
        """Store ``payload`` (JSON) as an ANN-baseline run tagged ``evoexp.ann_hash == key``; return its id."""
        tags = {Tags.ANN_HASH: key, Tags.KIND: "ann_baseline"}
        with self.start_run(run_name=f"ann-{key}", tags=tags, params={}, baseline=True) as run:
            run.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "ann_baseline.json"
                path.write_text(json.dumps(payload, allow_nan=True), encoding="utf-8")
                run.log_artifact(path)
            return run.run_id
