"""One-line error messages for configuration mistakes on the command line.

Hydra prints composition errors over several lines (the OmegaConf cause with ``full_key``/``object_type`` lines,
the option list one per line, the config search path). :func:`one_line` condenses such an error into a single
line that still names the key or lists the options, and :func:`install_compact_errors` makes the ``evoexp`` command
print that line for configuration errors (unless ``HYDRA_FULL_ERROR=1`` asks for the full trace). Other errors keep
Hydra's report with its traceback. The exit code stays 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf.errors import OmegaConfBaseException

__all__ = ["ConfigValidationError", "install_compact_errors", "is_config_error", "one_line"]

_DROPPED_PREFIXES = ("reference_type=", "object_type=", "Config search path", "provider=", "Set the environment")


class ConfigValidationError(ValueError):
    """A composed config has a value outside its allowed range (raised before any run starts)."""


def is_config_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a configuration error (composition, override, type or value), not a job failure."""
    return isinstance(exc, (CompactHydraException, OmegaConfBaseException, ConfigValidationError))


def one_line(exc: BaseException) -> str:
    """Return ``exc`` (and its OmegaConf cause, for Hydra's compact errors) as one line.

    ``full_key: a.b`` lines become ``(key: a.b)``; an ``Available options in 'g':`` block becomes
    ``Available options in 'g': a, b, c``; type and search-path detail lines are dropped.
    """
    texts = [str(exc)]
    if isinstance(exc.__cause__, OmegaConfBaseException):
        texts.append(str(exc.__cause__))
    parts: list[str] = []
    for text in texts:
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(_DROPPED_PREFIXES):
                continue
            if line.startswith("full_key:"):
                parts.append(f"(key: {line.removeprefix('full_key:').strip()})")
            elif parts and parts[-1].startswith("Available options in") and raw.startswith("\t"):
                parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
            else:
                parts.append(line)
    return " ".join(parts) if parts else type(exc).__name__


def install_compact_errors() -> None:
    """Make Hydra report configuration errors of the ``evoexp`` command as one line.

    Hydra's CLI funnels composition, validation and job errors through ``run_and_report`` in
    ``hydra._internal.utils`` (hydra-core 1.3.x); this wraps that function for the current process. Errors that
    are not configuration errors (see :func:`is_config_error`) and ``HYDRA_FULL_ERROR=1`` keep Hydra's report.
    """
    import hydra._internal.utils as hydra_utils

    original = hydra_utils.run_and_report
    if getattr(original, "__evoexp_compact__", False):
        return

    def run_and_report(func: Callable[[], Any]) -> Any:
        try:
            return func()
        except Exception as exc:
            if os.environ.get("HYDRA_FULL_ERROR", "") == "1" or not is_config_error(exc):
                return original(_reraise(exc))
            sys.stderr.write(f"evoexp: error: {one_line(exc)}\n")
            sys.exit(1)

    run_and_report.__evoexp_compact__ = True  # type: ignore[attr-defined]
    hydra_utils.run_and_report = run_and_report  # type: ignore[assignment]


def _reraise(exc: Exception) -> Callable[[], Any]:
    """Return a function that raises ``exc`` again (to hand it to Hydra's own reporter)."""

    def raiser() -> Any:
        raise exc

    return raiser
