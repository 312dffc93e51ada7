"""When the tracking store fails: :class:`TrackingUnavailable`, and :func:`error_line`, a store error on one line.

Both the store (:class:`evoexp.job.tracking.MlflowTracker`) and a run's background uploader
(:class:`evoexp.job.run_logger.TrackedRun`) raise :class:`TrackingUnavailable`; see docs/guides/reliability.md.
"""

from __future__ import annotations

import re

__all__ = ["TrackingUnavailable", "error_line"]


class TrackingUnavailable(RuntimeError):
    """The tracking store does not answer (a server down or unreachable, a store that refuses writes)."""


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
