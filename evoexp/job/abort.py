"""Ending a command early without leaving anything open: Ctrl-C, SIGTERM, or an error escaping Hydra's launcher.

Hydra calls a callback's ``on_multirun_end`` only when the sweep returns normally, so a sweep that is interrupted
(Ctrl-C sends SIGINT to the whole process group; the parallel launcher then kills its workers outright) or that
fails in the launcher would leave its MLflow runs RUNNING. :func:`run_guarded` wraps the command: what opened
something registers a closer with :func:`on_abort` (the sweep callback registers one per open sweep), and when the
command ends with an exception the closers run with it, before it propagates. SIGTERM is turned into
:class:`JobTerminated` (exit status 143) for the whole command by :func:`terminate_on_sigterm`, which
:meth:`evoexp.job.tracking.MlflowTracker.start_run` also wraps around a job so that its run ends KILLED; a second
Ctrl-C while the closers run is ignored; Ctrl-C exits with status 130 and one line instead of a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

__all__ = ["JobTerminated", "discard", "on_abort", "run_guarded", "signal_name", "terminate_on_sigterm"]

T = TypeVar("T")

_CLOSERS: dict[str, Callable[[BaseException], None]] = {}


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


def on_abort(key: str, closer: Callable[[BaseException], None]) -> None:
    """Run ``closer(exception)`` if the command ends with an exception before :func:`discard` ``(key)``."""
    _CLOSERS[key] = closer


def discard(key: str) -> None:
    """Forget the closer registered under ``key`` (what it closes was closed normally)."""
    _CLOSERS.pop(key, None)


def _run_closers(exc: BaseException) -> None:
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        while _CLOSERS:
            key, closer = _CLOSERS.popitem()
            try:
                closer(exc)
            except Exception as error:  # one closer failing must not keep the others from running
                sys.stderr.write(f"evoexp: error: closing {key} failed: {type(error).__name__}: {error}\n")
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def run_guarded(main: Callable[[], T]) -> T:
    """Run ``main``; when it raises, run the registered closers first. Ctrl-C exits with status 130.

    Raises:
        SystemExit: 130 after Ctrl-C (one line on stderr); 143 after SIGTERM.
        BaseException: Whatever else ``main`` raised, after the closers ran.
    """
    try:
        with terminate_on_sigterm():
            return main()
    except BaseException as exc:
        closed = bool(_CLOSERS)
        _run_closers(exc)
        if isinstance(exc, KeyboardInterrupt):
            if not closed:  # a closer has said what was interrupted
                sys.stderr.write("evoexp: interrupted (SIGINT)\n")
            raise SystemExit(130) from None
        raise
