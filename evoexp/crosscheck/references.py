"""The reference networks of the comparison: a two-layer feed-forward network and a recurrent one, as NIR graphs.

Both are built with nir's API from seeded weights, with NIR's physical conventions (``r = 1``, ``v_leak = 0``,
``v_threshold = 1``, time constants in seconds): ``Input(12) -> Affine -> LIF(24) -> Affine -> LIF(24) -> Affine ->
LI(4) -> Output`` (``"feedforward"``) and ``Input(12) -> Affine -> LIF(24, recurrent Linear) -> Affine -> LI(4) ->
Output`` (``"recurrent"``). :data:`REFERENCE_SETTINGS` are the settings NIR does not carry, with which they are
compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import nir
import numpy as np

from evoexp.surrogate import get_surrogate

__all__ = ["REFERENCES", "REFERENCE_SETTINGS", "reference_graph"]

REFERENCES: tuple[str, ...] = ("feedforward", "recurrent")
REFERENCE_SETTINGS: Mapping[str, Any] = MappingProxyType(
    {"dt": 1e-3, "reset": "subtract", "surrogate": get_surrogate("sigmoid", slope=4.0)})
"""dt = 1 ms; reset by subtraction; the sigmoid surrogate at slope 4, which snnTorch (``sigmoid(slope=4)``),
SpikingJelly (``Sigmoid(alpha=4)``) and Norse (``tanh`` with ``alpha=2``) all have."""

_INPUTS, _HIDDEN, _OUTPUTS = 12, 24, 4
_TAU, _TAU_OUT = 5e-3, 1e-2


def _lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, _TAU), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))


def reference_graph(name: str, *, seed: int = 0) -> nir.NIRGraph:
    """The reference network ``name`` (``"feedforward"`` or ``"recurrent"``) with weights drawn from ``seed``.

    Raises:
        ValueError: unknown name.
    """
    if name not in REFERENCES:
        raise ValueError(f"unknown reference network {name!r}; choose from {', '.join(REFERENCES)}")
    rng = np.random.default_rng(seed)

    def affine(n_out: int, n_in: int, gain: float) -> nir.Affine:
        return nir.Affine(weight=rng.normal(0.0, gain / np.sqrt(n_in), (n_out, n_in)) + 0.6 * gain / np.sqrt(n_in),
                          bias=rng.normal(0.0, 0.05, n_out))

    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array([_INPUTS])),
                                     "fc0": affine(_HIDDEN, _INPUTS, 3.0), "lif0": _lif(_HIDDEN)}
    edges = [("input", "fc0"), ("fc0", "lif0")]
    last = "lif0"
    if name == "feedforward":
        nodes.update({"fc1": affine(_HIDDEN, _HIDDEN, 3.0), "lif1": _lif(_HIDDEN)})
        edges += [("lif0", "fc1"), ("fc1", "lif1")]
        last = "lif1"
    else:
        nodes["rec0"] = nir.Linear(weight=rng.normal(0.0, 1.5 / np.sqrt(_HIDDEN), (_HIDDEN, _HIDDEN)))
        edges += [("lif0", "rec0"), ("rec0", "lif0")]
    nodes.update({"fc_out": affine(_OUTPUTS, _HIDDEN, 2.0),
                  "readout": nir.LI(tau=np.full(_OUTPUTS, _TAU_OUT), r=np.ones(_OUTPUTS), v_leak=np.zeros(_OUTPUTS)),
                  "output": nir.Output(output_type=np.array([_OUTPUTS]))})
    edges += [(last, "fc_out"), ("fc_out", "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)
