"""A job's MLflow run as the job sees it: :class:`RunLogger`, and :class:`TrackedRun`, which logs in batches.

The job logs params, metrics, tags, artifacts and its dataset through a :class:`RunLogger`; an untracked job
(``tracking=off``) gets a :class:`NullRun`, a tracked one the :class:`TrackedRun` that
:meth:`evoexp.job.tracking.MlflowTracker.start_run` opens and ends.

Logging is batched: params, tags and metrics go through ``MlflowClient.log_batch`` in chunks within MLflow's limits
(100 params/tags, 1000 metrics per call). Training never waits on the store: a run's metrics and tags go out from a
background thread, which retries a batch the store refuses for ``give_up_after`` seconds; then the run's next
logging call raises :class:`~evoexp.job.store_errors.TrackingUnavailable` and the job fails with that message
(docs/guides/reliability.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from evoexp.job.mlflow_values import Splits, dataset_inputs, metric_key, param_value, tag_value
from evoexp.job.store_errors import TrackingUnavailable, error_line
from evoexp.keys import Tags

__all__ = ["NullRun", "RunLogger", "TrackedRun"]

log = logging.getLogger(__name__)

_MAX_PARAMS_TAGS = 100
_MAX_METRICS = 1000


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

    def log_dataset(self, splits: Splits, *, source: Mapping[str, Any]) -> None:
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

    With ``background=True`` (the runs of :meth:`evoexp.job.tracking.MlflowTracker.start_run`) batches go out from a
    background thread in order, so that a slow or unreachable store never holds up training; a batch the store
    refuses is retried for ``give_up_after`` seconds, after which the next call raises :class:`TrackingUnavailable`.
    :meth:`end` waits for the queue to be delivered before it sets the run's status.

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
        texts = {key: tag_value(value) for key, value in (tags or {}).items()}
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

    def log_dataset(self, splits: Splits, *, source: Mapping[str, Any]) -> None:
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
