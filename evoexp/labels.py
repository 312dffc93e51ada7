"""Words for figures: surrogate names, parameter values and configurations as a reader says them.

A leaf module shared by :mod:`evoexp.figures` (legends) and :mod:`evoexp.analysis` (facet titles), so that neither
imports the other.

Legends and titles say ``atan, β = 5`` or ``fast sigmoid, scale = 0.1, reset in graph``, never the config keys
(``surrogate.name=atan, surrogate.slope=5``). Every function takes run-frame columns (``params.<key>``) or bare config
keys; keys without an entry here fall back to their last dotted component with spaces (``model.tau_mem`` →
``tau mem = 20``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from evoexp import keys as schema

__all__ = ["config_label", "layer_label", "param_name", "surrogate_label", "value_label"]

SURROGATE_NAMES: dict[str, str] = {
    "fast_sigmoid": "fast sigmoid",
    "superspike": "SuperSpike (asymptotic)",
    "gaussian": "Gaussian",
    "multi_gaussian": "multi-Gaussian",
    "piecewise_quadratic": "piecewise quadratic",
    "soft_sign": "soft sign",
    "straight_through": "straight-through",
    "q_pseudo": "q-PseudoSpike",
}
"""Registry names whose words differ from the name with spaces."""

_PARAM_NAMES: dict[str, str] = {
    schema.SURROGATE_NAME_PARAM: "surrogate",
    schema.SURROGATE_SLOPE_PARAM: "β",
    schema.SURROGATE_SCALE_PARAM: "scale",
    "model.hidden_sizes": "hidden sizes",
    "model.tau_mem": "τ_mem",
    "model.tau_syn": "τ_syn",
    "dataset.step_frac": "spike window",
    "trainer.lr": "learning rate",
    "trainer.epochs": "epochs",
}
_BOOLEAN_WORDS: dict[str, tuple[str, str]] = {
    "model.detach_reset": ("reset detached", "reset in graph"),
    "model.recurrent": ("recurrent", "feed-forward"),
    "model.bias": ("with bias", "no bias"),
}
_VALUE_WORDS: dict[str, dict[str, str]] = {
    "model.reset": {"zero": "reset to zero", "subtract": "reset by subtraction"},
}


def _key(column: str) -> str:
    return schema.strip_prefix(column)


def surrogate_label(name: str) -> str:
    """The words for a registered surrogate name (``fast_sigmoid`` → ``fast sigmoid``)."""
    return SURROGATE_NAMES.get(name, name.replace("_", " "))


def layer_label(layer: str) -> str:
    """The words for a layer of a model (``hidden.0`` → ``hidden layer 1``, ``readout`` → ``readout``)."""
    name, _, index = layer.rpartition(".")
    if name and index.isdigit():
        return f"{name.replace('_', ' ')} layer {int(index) + 1}"
    return layer.replace("_", " ")


def param_name(column: str) -> str:
    """The words for a parameter (``params.surrogate.slope`` → ``β``)."""
    key = _key(column)
    return _PARAM_NAMES.get(key, key.rsplit(".", 1)[-1].replace("_", " "))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{float(value):g}"


def value_label(column: str, value: object) -> str:
    """One parameter value in words: ``β = 5``, ``atan``, ``reset in graph``, ``scale = 0.1``.

    Args:
        column: Run-frame column or config key of the parameter.
        value: Its value (NaN or None: ``<name> n/a``).
    """
    key = _key(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{param_name(column)} n/a"
    if key == schema.SURROGATE_NAME_PARAM:
        return surrogate_label(str(value))
    if isinstance(value, (bool, np.bool_)):
        if key in _BOOLEAN_WORDS:
            yes, no = _BOOLEAN_WORDS[key]
            return yes if value else no
        return f"{param_name(column)} = {str(bool(value)).lower()}"
    if key in _VALUE_WORDS and str(value) in _VALUE_WORDS[key]:
        return _VALUE_WORDS[key][str(value)]
    text = _number(float(value)) if isinstance(value, (int, float, np.integer, np.floating)) else str(value)
    return f"{param_name(column)} = {text}"


def config_label(values: Mapping[str, object]) -> str:
    """A configuration in words, its parameters joined by commas (``atan, β = 5``); empty for no parameters."""
    return ", ".join(value_label(column, value) for column, value in values.items())
