"""One-line error messages for configuration mistakes on the command line.

Hydra prints composition errors over several lines (the OmegaConf cause with ``full_key``/``object_type`` lines,
the option list one per line, the config search path). :func:`one_line` condenses such an error into a single
line that still names the key or lists the options (and names both sides when a preset sets a key that the
option chosen on the command line lacks), and :func:`report_config_errors` runs the ``evoexp`` command so that a
configuration error prints that line and exits with status 1. Other errors propagate with their full traceback;
``HYDRA_FULL_ERROR=1`` shows the full trace of configuration errors too.

The route is public: Hydra documents ``HYDRA_FULL_ERROR=1`` as "raise instead of printing", so
:func:`report_config_errors` sets it around ``hydra.main`` and catches what Hydra raises.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from hydra.errors import CompactHydraException
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

__all__ = ["ConfigValidationError", "describe_config_error", "is_config_error", "one_line", "report_config_errors"]

T = TypeVar("T")

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


def _preset_clash(exc: BaseException, argv: Sequence[str]) -> str | None:
    """The message for a preset that sets a key the command line's option of that group does not have, else None.

    Example: ``experiment=smoke dataset=digits``: the preset sets ``dataset.n_classes``, which the digits schema
    lacks; Hydra blames the preset alone ("In 'experiment/smoke': Key 'n_classes' not in 'make_digits_config'").
    """
    cause = exc.__cause__ or exc.__context__
    preset = re.match(r"In '([^'/]+)/([^']+)'", str(exc))
    if not isinstance(cause, ConfigKeyError) or preset is None or not cause.full_key:
        return None
    group = cause.full_key.split(".")[0]
    chosen = [arg.split("=", 1)[1] for arg in argv if arg.split("=", 1)[0].lstrip("+~") == group and "=" in arg]
    if not chosen or preset.group(1) == group:
        return None
    return (
        f"{preset.group(1)}={preset.group(2)} sets {cause.full_key}, which {group}={chosen[-1]} does not have: "
        f"the preset is made for another {group} option; drop {group}={chosen[-1]} or the preset"
    )


def describe_config_error(exc: BaseException, argv: Sequence[str]) -> str:
    """One line for configuration error ``exc`` of the command line ``argv`` (naming both sides of a preset clash)."""
    return _preset_clash(exc, argv) or one_line(exc)


def report_config_errors(main: Callable[[], T], argv: Sequence[str] | None = None) -> T:
    """Run the ``hydra.main``-decorated ``main``; print a configuration error as one line and exit with status 1.

    Hydra's own reporter prints (and swallows) every error unless ``HYDRA_FULL_ERROR=1``, its documented switch
    to raise instead; this sets it for the call, so Hydra raises, and reports the configuration errors
    (:func:`is_config_error`) itself. Every other error propagates with its traceback. A user's own
    ``HYDRA_FULL_ERROR=1`` keeps the full trace of every error.

    Args:
        main: The decorated task function, called without arguments (Hydra reads ``sys.argv``).
        argv: The command-line arguments (default ``sys.argv[1:]``), to name both sides of a preset clash.

    Returns:
        What ``main`` returns.

    Raises:
        SystemExit: With status 1 after printing a configuration error.
    """
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        return main()
    except Exception as exc:
        if previous == "1" or not is_config_error(exc):
            raise
        message = describe_config_error(exc, sys.argv[1:] if argv is None else argv)
        sys.stderr.write(f"evoexp: error: {message}\n")
        raise SystemExit(1) from None
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
