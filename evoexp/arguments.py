"""Argument checks that run before the call: a config is refused before any data is built or any run exists.

A callable that a config names (``_target_``) checks its arguments first, with messages that start with the
argument's name. :func:`checked_by` attaches such a check to the callable: the callable runs it on every call, and the
job runs it alone, on the config's arguments, when it loads the config (``check_arguments``; see
docs/guides/your-network.md). A user's own network or dataset callable can do the same::

    def check_net(args):
        if args["hidden"] < 1:
            raise ValueError(f"hidden must be >= 1, got {args['hidden']!r}")

    @checked_by(check_net)
    def net(n_inputs, n_classes, *, hidden=64): ...

The check gets the call's arguments by name, defaults filled in; the arguments evoexp passes from the data
(``n_inputs``, ``n_classes``, ...) are absent when the config is loaded, so a check reads only the others.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

__all__ = ["CHECK_ATTRIBUTE", "ArgumentCheck", "argument_check", "checked_by"]

ArgumentCheck = Callable[[Mapping[str, Any]], None]
"""Raises ``ValueError`` (message starting with the argument's name) for the first invalid argument."""

CHECK_ATTRIBUTE = "check_arguments"
"""The attribute of a checked callable that holds its :data:`ArgumentCheck`."""

P = ParamSpec("P")
R = TypeVar("R")


def checked_by(check: ArgumentCheck) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Make ``fn`` run ``check`` on its bound arguments first, and carry it as ``check_arguments``.

    The decorated callable keeps its name, docstring and signature (``inspect.signature`` follows ``__wrapped__``).
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            check(bound.arguments)
            return fn(*args, **kwargs)

        setattr(checked, CHECK_ATTRIBUTE, check)
        return checked

    return decorate


def argument_check(fn: Callable[..., Any]) -> ArgumentCheck | None:
    """The check :func:`checked_by` attached to ``fn`` (None for a callable without one)."""
    check = getattr(fn, CHECK_ATTRIBUTE, None)
    return check if callable(check) else None
