"""Search space of the evoexp Optuna sweeper: ``hydra.sweeper.params`` and command-line sweeps -> Optuna distributions.

An entry of ``hydra.sweeper.params`` is one of

* a range: ``{low: 1, high: 100}`` with optional ``log: true`` (log-uniform), ``step`` (a grid) and ``type: int``
  (integers; the default type is ``float``) -> :class:`optuna.distributions.FloatDistribution` or
  :class:`~optuna.distributions.IntDistribution`;
* choices: ``{choices: [fast_sigmoid, atan]}`` -> :class:`~optuna.distributions.CategoricalDistribution`;
* a string in Hydra's sweep syntax, as on the command line: ``interval(1, 100)`` (float; tags ``log`` and ``int``),
  ``a,b,c`` or ``choice(a, b, c)`` (choices), ``range(1, 5)`` (a choice among the range's values).

Command-line overrides are merged in: a sweep (``surrogate.slope='tag(log, interval(5, 50))'``) adds a dimension or
replaces the config's, a plain value (``surrogate.scale=1``) is passed to every trial and removes that key from the
search space. Every error is one line that starts with the key it is about.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, QuotedString, Transformer, ValueType
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

__all__ = ["SearchSpace", "SearchSpaceError", "distribution_from_override", "parse_entry", "parse_space"]

PARAMS_KEY = "hydra.sweeper.params"
RANGE_KEYS = ("low", "high", "log", "step", "type")
INTERVAL_TAGS = ("int", "log")


class SearchSpaceError(ValueError):
    """A malformed search-space entry; the message is one line that starts with the entry's key."""


@dataclass(frozen=True)
class SearchSpace:
    """What a search varies and what it passes unchanged to every trial.

    Attributes:
        distributions: Optuna distribution per override key (``surrogate.slope``, ``surrogate``, ``+new.key``).
        fixed: The command line's plain overrides, given to every trial before its sampled values.
    """

    distributions: dict[str, BaseDistribution]
    fixed: tuple[str, ...] = ()

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The job overrides of a trial whose sampled values are ``params`` (keys of :attr:`distributions`)."""
        return [*self.fixed, *(f"{key}={Transformer.str(value)}" for key, value in params.items())]

    def describe(self) -> str:
        """One line per dimension, ``key ~ distribution``, for the log."""
        return "\n".join(f"  {key} ~ {dist}" for key, dist in self.distributions.items())


def _bare(key: str) -> str:
    """``key`` without an add/force-add/delete prefix (``+a.b`` -> ``a.b``)."""
    return key.lstrip("+~")


def _number(where: str, name: str, value: Any) -> float:
    """``value`` as a finite float, else a :class:`SearchSpaceError` naming ``where.name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SearchSpaceError(f"{where}.{name} must be a finite number, got {value!r}")
    return float(value)


def _integer(where: str, name: str, value: Any) -> int:
    """``value`` as an int (an integral float is accepted), else a :class:`SearchSpaceError`."""
    number = _number(where, name, value)
    if not number.is_integer():
        raise SearchSpaceError(f"{where}.{name} must be an integer (type: int), got {value!r}")
    return int(number)


def _range(where: str, spec: Mapping[str, Any]) -> BaseDistribution:
    """A ``{low, high, log, step, type}`` entry -> float or int distribution."""
    unknown = sorted(set(spec) - set(RANGE_KEYS))
    if unknown:
        raise SearchSpaceError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; a range takes {', '.join(RANGE_KEYS)} "
            "(or give {choices: [...]})"
        )
    for name in ("low", "high"):
        if name not in spec:
            raise SearchSpaceError(f"{where}: a range needs low and high (or give {{choices: [...]}}); {name} missing")
    kind, log, step = spec.get("type", "float"), spec.get("log", False), spec.get("step")
    if kind not in ("float", "int"):
        raise SearchSpaceError(f"{where}.type must be float or int, got {kind!r}")
    if not isinstance(log, bool):
        raise SearchSpaceError(f"{where}.log must be true or false, got {log!r}")
    convert = _integer if kind == "int" else _number
    low, high = convert(where, "low", spec["low"]), convert(where, "high", spec["high"])
    if low >= high:
        raise SearchSpaceError(f"{where}: low ({spec['low']!r}) must be below high ({spec['high']!r})")
    if log and low <= 0:
        raise SearchSpaceError(f"{where}.low must be > 0 for a log range, got {spec['low']!r}")
    if step is not None:
        if log:
            raise SearchSpaceError(f"{where}: step and log cannot be combined")
        step = convert(where, "step", step)
        if step <= 0:
            raise SearchSpaceError(f"{where}.step must be > 0, got {spec['step']!r}")
    if kind == "int":
        return IntDistribution(int(low), int(high), log=log, step=1 if step is None else int(step))
    return FloatDistribution(low, high, log=log, step=step)


def _choices(where: str, values: Sequence[Any]) -> CategoricalDistribution:
    """A non-empty list of distinct single values -> categorical distribution."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise SearchSpaceError(f"{where}.choices must be a non-empty list, got {values!r}")
    plain = [v.text if isinstance(v, QuotedString) else v for v in values]
    for value in plain:
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise SearchSpaceError(
                f"{where}: a choice must be a single value (string, number, bool, null), got {value!r}"
            )
    if len(set(map(repr, plain))) != len(plain):
        raise SearchSpaceError(f"{where}: repeated choices in {plain!r}")
    return CategoricalDistribution(plain)


def distribution_from_override(override: Override, where: str) -> BaseDistribution:
    """The distribution of a sweep override (``interval``, choice or ``range``); ``where`` names it in errors."""
    if override.is_interval_sweep():
        interval = override.value()
        assert isinstance(interval, IntervalSweep)
        unknown = sorted(interval.tags - set(INTERVAL_TAGS))
        if unknown:
            raise SearchSpaceError(f"{where}: unknown interval tag(s) {', '.join(unknown)}; known: int, log")
        spec = {"low": interval.start, "high": interval.end, "log": "log" in interval.tags}
        return _range(where, {**spec, "type": "int" if "int" in interval.tags else "float"})
    if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        raise SearchSpaceError(f"{where}: glob(...) is not supported by the Optuna sweeper; list the choices")
    if override.is_discrete_sweep():
        return _choices(where, list(override.sweep_iterator()))
    raise SearchSpaceError(f"{where}: {override.get_value_string()!r} is a single value, not a search dimension")


def _parse(line: str, where: str) -> Override:
    """Parse one override line with Hydra's grammar; a syntax error becomes one line naming ``where``."""
    try:
        return OverridesParser.create().parse_override(line)
    except HydraException as exc:
        raise SearchSpaceError(f"{where}: cannot parse {line!r}: {str(exc).splitlines()[0]}") from exc


def parse_entry(key: str, spec: Any) -> BaseDistribution:
    """The distribution of the ``hydra.sweeper.params`` entry ``key: spec``.

    Raises:
        SearchSpaceError: ``spec`` is not a range, choices or sweep string, or is malformed (the message starts
            with ``hydra.sweeper.params.<key>``).
    """
    where = f"{PARAMS_KEY}.{key}"
    if isinstance(spec, Mapping):
        if "choices" in spec:
            if len(spec) > 1:
                extra = ", ".join(sorted(str(k) for k in spec if k != "choices"))
                raise SearchSpaceError(f"{where}: choices take no other keys, got {extra}")
            return _choices(where, spec["choices"])
        return _range(where, spec)
    if isinstance(spec, str):
        return distribution_from_override(_parse(f"{key}={spec}", where), where)
    raise SearchSpaceError(
        f"{where}: expected a range {{low, high[, log, step, type]}}, {{choices: [...]}} or a sweep string such as "
        f"'tag(log, interval(1, 100))', got {spec!r}"
    )


def parse_space(params: Mapping[str, Any], arguments: Sequence[str] = ()) -> SearchSpace:
    """Merge ``hydra.sweeper.params`` and the command line's overrides into a :class:`SearchSpace`.

    Args:
        params: ``hydra.sweeper.params`` as plain containers.
        arguments: The command line's task overrides: sweeps add or replace dimensions, plain values are passed
            to every trial and fix their key.

    Raises:
        SearchSpaceError: An entry is malformed, or nothing is left to search.
    """
    distributions = {str(key): parse_entry(str(key), spec) for key, spec in params.items()}
    fixed = []
    for line in arguments:
        override = _parse(line, line)
        key = override.get_key_element()
        distributions = {k: d for k, d in distributions.items() if _bare(k) != _bare(key)}
        if override.is_sweep_override():
            distributions[key] = distribution_from_override(override, f"{key} (command line)")
        else:
            fixed.append(line)
    if not distributions:
        raise SearchSpaceError(
            f"{PARAMS_KEY}: the search space is empty; give ranges or choices there or sweeps on the command line"
        )
    return SearchSpace(distributions, tuple(fixed))
