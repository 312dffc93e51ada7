"""Whether the process that owns a RUNNING MLflow run still lives: its owner record, heartbeats, ghost runs.

SIGKILL (OOM killer, node loss) ends nothing, so every run records its :class:`Owner` (host, process id and the
process's start time, from ``/proc``) and a heartbeat tag (an ISO 8601 UTC time, :func:`iso_time`) that a
:class:`Heartbeat` thread renews while the run is open. :func:`ghost_reason` tells from these tags when a RUNNING
run's owner is provably gone; :class:`evoexp.job.tracking.MlflowTracker` then closes the run as KILLED, ending it
at :func:`last_seen`.
"""

from __future__ import annotations

import calendar
import logging
import os
import platform
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoexp.keys import Tags

__all__ = ["Heartbeat", "Owner", "ghost_reason", "iso_time", "last_seen"]

log = logging.getLogger(__name__)


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


def last_seen(tags: Mapping[str, str], start_time_ms: int) -> float:
    """Seconds since the epoch of a run's last sign of life: its last heartbeat, else its start.

    Args:
        tags: The run's tags (``evoexp.heartbeat``).
        start_time_ms: The run's start time (ms since the epoch).
    """
    stamp = tags.get(Tags.HEARTBEAT)
    return _epoch_seconds(stamp) if stamp else start_time_ms / 1000


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
    silent = now - last_seen(tags, start_time_ms)
    if silent > max(stale_after, 3 * every):
        return f"no heartbeat for {silent:.0f} s from process {owner.pid} on {owner.host}"
    return None


class Heartbeat:
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
