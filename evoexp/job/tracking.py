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
* SIGKILL (OOM killer, node loss) ends nothing, so every run records its owner (host, process id and the
  process's start time) and a heartbeat tag (an ISO 8601 UTC time); :meth:`MlflowTracker.reap_ghosts` closes a
  RUNNING run as KILLED once its owner is provably gone (see :func:`ghost_reason`).

MLflow's own fields are filled as its UI expects: ``mlflow.parentRunId`` nests a sweep's jobs (and the ANN baselines
it trains, tagged ``evoexp.kind = ann_baseline`` in the same experiment) under the sweep's run,
``mlflow.source.*`` and ``mlflow.user`` describe where a run came from, ``mlflow.note.content`` holds a Markdown
summary, and datasets are logged as run inputs (:meth:`TrackedRun.log_dataset`) for the Dataset column. Params of
equal value print identically (``10`` for both ``10`` and ``10.0``; MLflow compares params as strings).

Logging is batched: params, tags and metrics go through ``MlflowClient.log_batch`` in chunks within MLflow's
limits (100 params/tags, 1000 metrics per call).

Faults (docs/guides/reliability.md):

* Training never waits on the store: a run's metrics and tags go out from a background thread
  (:class:`TrackedRun`), which retries a batch the store refuses for ``give_up_after`` seconds; then the run's next
  logging call raises :class:`TrackingUnavailable` and the job fails with that message.
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

import calendar
import getpass
import hashlib
import json
import logging
import math
import os
import platform
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from urllib.parse import quote

from filelock import FileLock

from evoexp.keys import BASELINE_KIND, CONFIG_METRIC_PREFIX, Tags

__all__ = [
    "DEFAULT_ARTIFACT_DIR",
    "DEFAULT_STORE",
    "LOCK_DIR",
    "ConfigTaken",
    "FinishedRun",
    "JobTerminated",
    "MlflowTracker",
    "NullRun",
    "NullTracker",
    "Owner",
    "RunLogger",
    "TrackedRun",
    "Tracker",
    "TrackingUnavailable",
    "check_experiment_name",
    "error_line",
    "ghost_reason",
    "git_commit",
    "iso_time",
    "lock_path",
    "metric_key",
    "mirror_metrics",
    "param_value",
    "resolve_tracking_uri",
    "signal_name",
    "terminate_on_sigterm",
    "ui_url",
]

log = logging.getLogger(__name__)

DEFAULT_STORE = "mlruns.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"
LOCK_DIR = ".evoexp/locks"
_INVALID_KEY_CHARS = re.compile(r"[^\w\-./: ]")
_MAX_PARAMS_TAGS = 100
_MAX_METRICS = 1000
_MAX_PARAM_LENGTH = 6000
_MAX_TAG_LENGTH = 8000
_SEARCH_PAGE = 1000
_CLAIM_POLL = 2.0
"""Seconds between two looks at a run that another invocation is training (:meth:`MlflowTracker.wait_for`)."""
_OWNER_EXIT_WAIT = 10.0
"""Seconds :meth:`MlflowTracker.close_invocation` gives a killed worker to end its own run before closing it."""
DEFAULT_UI = "http://127.0.0.1:5000"


class TrackingUnavailable(RuntimeError):
    """The tracking store does not answer (a server down or unreachable, a store that refuses writes)."""


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


_NOISE = ("[SQL:", "[parameters:", "(Background on this error")
"""Lines of SQLAlchemy's error text that say nothing about what went wrong."""
_AUTOFLUSH = re.compile(r"\(raised as a result of Query-invoked autoflush[^)]*\)\s*")


def error_line(exc: BaseException, *, limit: int = 500) -> str:
    """``Type: message`` of ``exc`` on one line, without SQLAlchemy's statement, parameters and links.

    A store error reads e.g. ``MlflowException: (sqlite3.OperationalError) attempt to write a readonly database``
    instead of its first line, which may be a note about autoflush.
    """
    lines = [line.strip() for line in f"{type(exc).__name__}: {exc}".splitlines()]
    kept = [line for line in lines if line and not line.startswith(_NOISE)]
    text = _AUTOFLUSH.sub("", " ".join(kept)) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


class JobTerminated(SystemExit):
    """Raised in the main thread when the process receives SIGTERM; exits with ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def signal_name(exc: BaseException) -> str:
    """``SIGTERM`` (or the signal's name) for a :class:`JobTerminated`, ``SIGINT`` for a KeyboardInterrupt."""
    if isinstance(exc, JobTerminated):
        return signal.Signals(exc.signum).name
    return "SIGINT"


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


def _process_state(pid: int) -> tuple[str, str] | None:
    """``(state, start time in clock ticks)`` of process ``pid`` from ``/proc``, or None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces; fields 3.. follow ")"
    return fields[0], fields[19]


@dataclass(frozen=True)
class Owner:
    """The process that owns a RUNNING run, as recorded in its tags.

    Attributes:
        host: Host name (:func:`platform.node`).
        pid: Process id.
        started: Start time of the process (clock ticks since boot, from ``/proc``) or None where unknown; tells
            a recycled process id from the owner.
    """

    host: str
    pid: int
    started: str | None = None

    @classmethod
    def current(cls) -> Owner:
        """The calling process."""
        state = _process_state(os.getpid())
        return cls(platform.node(), os.getpid(), None if state is None else state[1])

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Owner | None:
        """The owner recorded in a run's tags, or None when it recorded none."""
        host, pid = tags.get(Tags.HOST), tags.get(Tags.PID)
        if not host or not pid or not pid.isdigit():
            return None
        return cls(host, int(pid), tags.get(Tags.PID_START) or None)

    def tags(self) -> dict[str, str]:
        """Tags recording this owner."""
        tags = {Tags.HOST: self.host, Tags.PID: str(self.pid)}
        if self.started is not None:
            tags[Tags.PID_START] = self.started
        return tags

    def alive(self) -> bool | None:
        """Whether the owner still runs: None when it runs on another host (it cannot be checked from here).

        A process id that exists is the owner only if it is no zombie and, where recorded, started when the
        owner did.
        """
        if self.host != platform.node():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, owned by another user
        state = _process_state(self.pid)
        if state is None:
            return True
        return state[0] != "Z" and (self.started is None or state[1] == self.started)


def iso_time(seconds: float) -> str:
    """``seconds`` since the epoch as an ISO 8601 UTC time to the second: ``2026-12-05T16:50:18Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _epoch_seconds(stamp: str) -> float:
    """Seconds since the epoch of an :func:`iso_time` stamp (or of a number of seconds, as older runs wrote it)."""
    try:
        return float(stamp)
    except ValueError:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))


def ghost_reason(tags: Mapping[str, str], start_time_ms: int, *, now: float, stale_after: float) -> str | None:
    """Why a RUNNING run is a ghost (its owner is provably gone), or None when it may still be running.

    A run whose owner recorded this host is a ghost when the owner's process no longer exists (or is a zombie, or
    its id now belongs to a younger process). A run from another host is a ghost when it sent no heartbeat for
    ``stale_after`` seconds and at least three of its heartbeat intervals; a run that sends no heartbeats (or an
    unknown owner) is never declared gone that way.

    Args:
        tags: The run's tags (owner, ``evoexp.heartbeat`` and ``evoexp.heartbeat_every``).
        start_time_ms: The run's start time (ms since the epoch): the last sign of life before any heartbeat.
        now: Current time (seconds since the epoch).
        stale_after: Seconds without heartbeat after which a run on another host is gone (0: never).
    """
    owner = Owner.from_tags(tags)
    if owner is not None:
        alive = owner.alive()
        if alive is not None:
            return None if alive else f"owner process {owner.pid} on {owner.host} no longer exists"
    every = float(tags.get(Tags.HEARTBEAT_EVERY) or 0)
    if owner is None or stale_after <= 0 or every <= 0:
        return None
    stamp = tags.get(Tags.HEARTBEAT)
    last = _epoch_seconds(stamp) if stamp else start_time_ms / 1000
    silent = now - last
    if silent > max(stale_after, 3 * every):
        return f"no heartbeat for {silent:.0f} s from process {owner.pid} on {owner.host}"
    return None


class _Heartbeat:
    """Background thread that stamps ``evoexp.heartbeat`` (:func:`iso_time`) on a run every ``every`` s."""

    def __init__(self, client: Any, run_id: str, every: float) -> None:
        self._client, self._run_id, self._every = client, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"evoexp-heartbeat-{run_id[:8]}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._client.set_tag(self._run_id, Tags.HEARTBEAT, iso_time(time.time()))
            except Exception as exc:  # a missed beat is retried at the next one; the job must not fail for it
                log.debug("heartbeat of run %s failed: %s", self._run_id, exc)

    def stop(self) -> None:
        """Stop beating (waits for a beat in progress)."""
        self._stop.set()
        self._thread.join()


def _canonical(value: Any) -> Any:
    """``value`` with integral floats as ints (recursively), so that ``10.0`` and ``10`` print alike."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def param_value(value: Any) -> str:
    """Format a config value as an MLflow param, within MLflow's length limit.

    Numbers of equal value print identically: integral floats print as ints (``10.0`` -> ``10``, so the search
    ``params.`surrogate.slope` = '10'`` matches), others in Python's shortest form (``0.5``, ``1e-05``). Lists and
    mappings print as JSON (``[64, 32]``), None as ``null``.
    """
    value = _canonical(value)
    text = json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)
    return text[:_MAX_PARAM_LENGTH]


def mirror_metrics(params: Mapping[str, Any], keys: Iterable[str]) -> dict[str, float]:
    """Metrics ``config/<key>`` mirroring the numeric params among ``keys`` (others are left out).

    MLflow compares params as strings; the mirrors make sweep axes such as ``surrogate.slope`` sortable and
    filterable as numbers in the UI (``metrics.`config/surrogate.slope` >= 10``).
    """
    mirrored = {}
    for key in dict.fromkeys(keys):
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            mirrored[f"{CONFIG_METRIC_PREFIX}{key}"] = float(value)
    return mirrored


def ui_url(tracking_uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """URL of an experiment's training-runs view (or of one run) in the MLflow UI.

    MLflow 3 opens an experiment on its GenAI overview (traces, token usage) unless the URL asks for the
    model-training view (``workflowType=machine_learning``). A server URI (``http(s)://...``) is its own UI; for
    other stores the URL is that of ``mlflow ui`` on its default address, :data:`DEFAULT_UI`.

    Args:
        tracking_uri: The store's tracking URI.
        experiment_id: Id of the experiment.
        run_id: Id of a run to open instead of the run list.
    """
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else DEFAULT_UI
    page = "runs" if run_id is None else f"runs/{run_id}"
    return f"{base}/#/experiments/{experiment_id}/{page}?workflowType=machine_learning"


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


class _Split(Protocol):
    """One split of a dataset (:class:`evoexp.data.SpikeDataset`)."""

    name: str
    spikes: Any
    features: Any
    labels: Any

    def __len__(self) -> int: ...


class _Splits(Protocol):
    """Train/validation/test splits (:class:`evoexp.data.DatasetSplits`)."""

    @property
    def train(self) -> _Split: ...
    @property
    def val(self) -> _Split: ...
    @property
    def test(self) -> _Split: ...


DATASET_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
"""MLflow dataset context of each split (shown next to the dataset in the UI)."""


def dataset_inputs(splits: _Splits, *, source: Mapping[str, Any]) -> list[Any]:
    """MLflow dataset inputs of the non-empty splits: name, digest, schema and shapes, context, code source.

    Args:
        splits: The dataset's splits.
        source: What generated the data (generator keyword arguments), recorded as the source's tags.

    Returns:
        One :class:`mlflow.entities.DatasetInput` per non-empty split, tagged ``mlflow.data.context``.
    """
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for split, context in DATASET_CONTEXTS.items():
        data = getattr(splits, split)
        if not len(data):
            continue
        tags = {"generator": f"evoexp.data.get_dataset({data.name!r})", "subset": split}
        tags.update({key: param_value(value) for key, value in source.items()})
        dataset = from_numpy(
            {"spikes": data.spikes.numpy(), "features": data.features.numpy()},
            targets=data.labels.numpy(),
            source=CodeDatasetSource(tags),
            name=data.name,
        )
        inputs.append(DatasetInput(Dataset(**dataset.to_dict()), tags=[InputTag(Tags.DATASET_CONTEXT, context)]))
    return inputs


class RunLogger:
    """Interface of a job's run; this base class logs nothing (``tracking=off``).

    Attributes:
        run_id: MLflow run id, or None when nothing is tracked.
    """

    run_id: str | None = None

    @property
    def tags(self) -> dict[str, str]:
        """The tags set through :meth:`set_tags`, besides those the run was created with (none here)."""
        return {}

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

    def log_files(self, files: Iterable[Path], *, base: Path) -> None:
        """Upload ``files``, each at its path relative to ``base``."""

    def log_dataset(self, splits: _Splits, *, source: Mapping[str, Any]) -> None:
        """Log the dataset's splits as run inputs (see :func:`dataset_inputs`)."""


class NullRun(RunLogger):
    """The run of an untracked job: every call is a no-op."""


def _permanent(exc: Exception) -> bool:
    """Whether the store refused a request for good (a 4xx answer: bad value, unknown run), not for now."""
    status = getattr(exc, "get_http_status_code", None)
    return callable(status) and 400 <= int(status()) < 500


class _Uploader:
    """Background thread that delivers a run's batches in order, retrying a refused one for ``give_up_after`` s.

    The training thread hands batches over (:meth:`submit`) and goes on; when a batch could not be delivered for
    ``give_up_after`` seconds (or the store refused it for good), the uploader stops and every later call raises
    :class:`TrackingUnavailable` with the reason.

    Args:
        send: Delivers one batch ``(metrics, tags)``; raises on failure.
        give_up_after: Seconds a batch is retried (0: not retried).
        where: The store, for the error message.
        name: Thread name.
    """

    def __init__(
        self, send: Callable[[list[Any], list[Any]], None], *, give_up_after: float, where: str, name: str
    ) -> None:
        self._send = send
        self._give_up_after = give_up_after
        self._where = where
        self._pending: deque[tuple[list[Any], list[Any]]] = deque()
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self.error: TrackingUnavailable | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, metrics: list[Any], tags: list[Any]) -> None:
        """Queue one batch; raise the error that stopped the uploader, if any."""
        with self._cond:
            self._raise()
            self._pending.append((metrics, tags))
            self._cond.notify_all()

    def _raise(self) -> None:
        if self.error is not None:
            raise TrackingUnavailable(str(self.error)) from self.error

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closed)
                if not self._pending:
                    return
                batch = self._pending[0]
                self._busy = True
            error = self._deliver(batch)
            with self._cond:
                self._busy = False
                if error is None:
                    self._pending.popleft()
                else:
                    self.error = error
                    self._pending.clear()
                self._cond.notify_all()
                if error is not None:
                    return

    def _deliver(self, batch: tuple[list[Any], list[Any]]) -> TrackingUnavailable | None:
        failing_since: float | None = None
        delay = 0.5
        while True:
            try:
                self._send(*batch)
                return None
            except Exception as exc:
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                waited = now - failing_since
                if _permanent(exc) or waited >= self._give_up_after or self._closed:
                    reason = error_line(exc)
                    return TrackingUnavailable(
                        f"the tracking store {self._where} did not accept the run's data"
                        + ("" if _permanent(exc) else f" for {waited:.0f} s (tracking.give_up_after)")
                        + f": {reason}"
                    )
                if waited == 0:
                    log.warning("tracking store %s refused a batch (%s); retrying in the background", self._where, exc)
                time.sleep(min(delay, self._give_up_after - waited))
                delay = min(2 * delay, 10.0)

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued batch is delivered (at most ``timeout`` s); raise if delivery failed."""
        with self._cond:
            done = self._cond.wait_for(
                lambda: self.error is not None or (not self._pending and not self._busy), timeout
            )
            self._raise()
            if not done:
                raise TrackingUnavailable(
                    f"the tracking store {self._where} did not take the run's data in {timeout:g} s"
                )

    def close(self) -> None:
        """Stop the thread once the queue is empty (a batch in retry gives up at its next failure)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class TrackedRun(RunLogger):
    """An open MLflow run, logged through one :class:`mlflow.MlflowClient` in batches.

    Metrics are buffered and sent with one ``log_batch`` call when the oldest buffered value is ``flush_every``
    seconds old (so curves stay live in the UI), when 1000 values are waiting, and when the run ends; the end
    sends the remaining metrics and the closing tags in a single call. On a SQLite store each call costs a
    commit (~10-40 ms), so this keeps the tracking cost of a job to a handful of calls.

    With ``background=True`` (the runs of :meth:`MlflowTracker.start_run`) batches go out from a background thread
    in order, so that a slow or unreachable store never holds up training; a batch the store refuses is retried for
    ``give_up_after`` seconds, after which the next call raises :class:`TrackingUnavailable`. :meth:`end` waits for
    the queue to be delivered before it sets the run's status.

    Args:
        client: The client bound to the store.
        run_id: Id of the run to log into.
        flush_every: Seconds metrics may wait in the buffer (0 sends every call at once).
        background: Deliver batches from a background thread (else each call sends and may raise).
        give_up_after: Seconds a refused batch is retried in the background.
        where: The store's URI (error messages).
    """

    def __init__(
        self,
        client: Any,
        run_id: str,
        *,
        flush_every: float = 5.0,
        background: bool = False,
        give_up_after: float = 120.0,
        where: str = "",
    ) -> None:
        if not flush_every >= 0:
            raise ValueError(f"flush_every must be >= 0 seconds, got {flush_every!r}")
        self.client = client
        self.run_id = run_id
        self.flush_every = flush_every
        self.status: str | None = None
        self.outcome: str | None = None
        self._tags: dict[str, str] = {}
        self._buffer: list[Any] = []
        self._buffered_since = 0.0
        self._uploader = (
            _Uploader(self._send, give_up_after=give_up_after, where=where or "", name=f"evoexp-upload-{run_id[:8]}")
            if background
            else None
        )

    @property
    def tags(self) -> dict[str, str]:
        """The tags set through :meth:`set_tags` (and the closing ones)."""
        return dict(self._tags)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params in batches of 100 (values as strings, lists as JSON, truncated to MLflow's limit)."""
        from mlflow.entities import Param

        entries = [Param(key, param_value(value)) for key, value in params.items()]
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

    def _send(self, metrics: list[Any], tags: list[Any]) -> None:
        """Send metrics and tags now, in as few ``log_batch`` calls as MLflow's limits allow."""
        metric_chunks = list(_chunks(metrics, _MAX_METRICS))
        tag_chunks = list(_chunks(tags, _MAX_PARAMS_TAGS))
        for i in range(max(len(metric_chunks), len(tag_chunks))):
            self.client.log_batch(
                self.run_id,
                metrics=metric_chunks[i] if i < len(metric_chunks) else [],
                tags=tag_chunks[i] if i < len(tag_chunks) else [],
                synchronous=True,
            )

    def flush(self, tags: Mapping[str, Any] | None = None) -> None:
        """Send the buffered metrics (and ``tags``): now, or through the background uploader.

        Raises:
            TrackingUnavailable: The background uploader gave up on an earlier batch.
        """
        from mlflow.entities import RunTag

        metrics, self._buffer = self._buffer, []
        texts = {key: str(value)[:_MAX_TAG_LENGTH] for key, value in (tags or {}).items()}
        entries = [RunTag(key, text) for key, text in texts.items()]
        if self._uploader is not None:
            self._uploader.submit(metrics, entries)
        else:
            self._send(metrics, entries)
        self._tags.update(texts)
        if Tags.OUTCOME in texts:
            self.outcome = texts[Tags.OUTCOME]

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values as strings, truncated to MLflow's limit), sending buffered metrics with them."""
        self.flush(tags)

    def log_artifact(self, path: Path, *, artifact_path: str | None = None) -> None:
        """Upload one file into the run's artifacts (under ``artifact_path``)."""
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: Path, *, artifact_path: str | None = None) -> None:
        """Upload the files of ``directory`` into the run's artifacts (under ``artifact_path``)."""
        self.client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_files(self, files: Iterable[Path], *, base: Path) -> None:
        """Upload ``files`` into the run's artifacts, each at its path relative to ``base``."""
        base = Path(base)
        for path in files:
            folder = Path(path).parent.relative_to(base).as_posix()
            self.log_artifact(Path(path), artifact_path=None if folder == "." else folder)

    def log_dataset(self, splits: _Splits, *, source: Mapping[str, Any]) -> None:
        """Log the non-empty splits as run inputs: the UI's Dataset column then shows what the run trained on."""
        self.client.log_inputs(self.run_id, datasets=dataset_inputs(splits, source=source))

    def end(self, status: str, *, tags: Mapping[str, Any] | None = None, wait: float | None = None) -> None:
        """Send what is buffered plus the closing ``tags``, then mark the run ``status``; later calls are no-ops.

        A run whose data did not reach the store is not marked ``status`` (a FINISHED run would be taken for a
        complete result): :class:`TrackingUnavailable` is raised instead, and the background uploader is dropped,
        so that a second call (e.g. with ``FAILED``) sends its tags and status directly.

        Args:
            status: ``FINISHED``, ``FAILED`` or ``KILLED``.
            tags: Closing tags.
            wait: Seconds to wait for the background uploader to deliver the queue (None: until it is done or
                gives up).

        Raises:
            TrackingUnavailable: The queued data could not be delivered (the status was not set).
        """
        if self.status is not None:
            return
        uploader = self._uploader
        try:
            if self._buffer or tags:
                self.flush(tags)
            if uploader is not None:
                uploader.drain(wait)
        except TrackingUnavailable:
            self._uploader = None
            raise
        finally:
            if uploader is not None:
                uploader.close()
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
        heartbeat = _Heartbeat(self.client, run_id, self.heartbeat_every) if self.heartbeat_every > 0 else None
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
        stamp = run.data.tags.get(Tags.HEARTBEAT)
        last_seen = time.time() if now else _epoch_seconds(stamp) if stamp else run.info.start_time / 1000
        self.client.set_terminated(run.info.run_id, status, end_time=int(last_seen * 1000))

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
        return _Heartbeat(self.client, run_id, self.heartbeat_every).stop

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

    return RunTag(key, value[:_MAX_TAG_LENGTH])
