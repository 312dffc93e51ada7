"""What NIR does not carry and evoexp writes into a graph's metadata: time step, reset, surrogate, step conventions.

NIR describes neurons in continuous time. The three things that decide how a surrogate-gradient network trains --
the simulation step ``dt``, the reset mechanism (subtract vs reset to ``v_reset``) and the surrogate -- are not part
of it. :func:`~evoexp.nir.to_nir` writes them, with the step conventions, the decay mapping and whether the reset is
detached, into the graph's ``metadata`` under the keys below; :func:`~evoexp.nir.from_nir` reads them back when an
argument does not give them. Per node, evoexp also writes its exact float64 decays (``evoexp_alpha``,
``evoexp_beta``), used on import when they agree with the node's time constants.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from evoexp.functional.discrete import EVOEXP_LIF, NIR_REFERENCE, StepConventions
from evoexp.nir.errors import NIRError
from evoexp.surrogate import SurrogateGradient, get_surrogate

__all__ = [
    "ALPHA",
    "BETA",
    "CONVENTIONS",
    "DECAY",
    "DETACH_RESET",
    "DT",
    "NAMED_CONVENTIONS",
    "RESET",
    "SURROGATE",
    "conventions_from",
    "conventions_name",
    "positive_dt",
    "read_value",
    "surrogate_from",
    "surrogate_to",
]

DT = "evoexp_dt"
RESET = "evoexp_reset"
SURROGATE = "evoexp_surrogate"
CONVENTIONS = "evoexp_conventions"
DECAY = "evoexp_decay"
DETACH_RESET = "evoexp_detach_reset"
ALPHA = "evoexp_alpha"
BETA = "evoexp_beta"

NAMED_CONVENTIONS: Mapping[str, StepConventions] = {"nir": NIR_REFERENCE, "evoexp": EVOEXP_LIF}
"""Step conventions by name (the reset's detachment is a separate setting)."""


def read_value(metadata: Mapping[str, Any] | None, key: str) -> Any:
    """``metadata[key]`` as a plain Python value (HDF5 gives NumPy scalars and bytes), or ``None`` when absent."""
    if not metadata or key not in metadata:
        return None
    value = metadata[key]
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def surrogate_to(shape: SurrogateGradient) -> str:
    """The surrogate as a JSON string ``{"name": ..., <params>}``."""
    return json.dumps({"name": shape.name, **shape.params()})


def surrogate_from(text: str) -> SurrogateGradient:
    """The surrogate written by :func:`surrogate_to`.

    Raises:
        NIRError: not such a JSON object, or an unknown surrogate or parameter.
    """
    try:
        spec = json.loads(text)
        params = {k: float(v) for k, v in spec.items() if k != "name"}
        return get_surrogate(str(spec["name"]), **params)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as error:
        raise NIRError(f"graph metadata {SURROGATE}={text!r} is not a surrogate evoexp knows: {error}") from None


def conventions_name(conventions: StepConventions) -> str:
    """A name of :data:`NAMED_CONVENTIONS` when ``conventions`` is one (ignoring detachment), else a JSON object."""
    for name, named in NAMED_CONVENTIONS.items():
        if conventions.differences(named) in ([], ["reset_detached"]):
            return name
    fields = {k: v for k, v in asdict(conventions).items() if k != "reset_detached"}
    return json.dumps(fields)


def conventions_from(value: str | StepConventions) -> StepConventions:
    """Step conventions from a name of :data:`NAMED_CONVENTIONS`, a JSON object of fields, or the record itself.

    Raises:
        NIRError: an unknown name or field.
    """
    if isinstance(value, StepConventions):
        return value
    if value in NAMED_CONVENTIONS:
        return NAMED_CONVENTIONS[value]
    try:
        return StepConventions(**json.loads(value))
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise NIRError(f"conventions={value!r}: neither one of {sorted(NAMED_CONVENTIONS)} nor a JSON object of "
                       f"StepConventions fields ({error})") from None


def positive_dt(value: Any, source: str) -> float:
    """``value`` as a finite float > 0.

    Raises:
        NIRError: otherwise, naming ``source``.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise NIRError(f"{source} must be a number > 0, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise NIRError(f"{source} must be a finite number > 0, got {value!r}")
    return number
