r"""NIR's continuous-time neuron nodes as discrete-time constants at a step :math:`\Delta t` (documented mapping).

NIR defines its neurons by differential equations (``nir.LIF``: :math:`\tau \dot v = (v_{leak} - v) + R I`;
``nir.CubaLIF`` adds :math:`\tau_{syn} \dot I = -I + w_{in} S`; ``nir.LI``/``nir.CubaLI`` are the same without
spikes; ``nir.IF``: :math:`\dot v = R I`). evoexp integrates them with NIR's reference forward Euler at step
:math:`\Delta t`, one step per input sample, under the conventions
:data:`~evoexp.functional.discrete.NIR_REFERENCE`:

.. math::

    i[t] &= \alpha\, i[t-1] + (1 - \alpha)\, w_{in}\, x[t] \\
    \hat v[t] &= \beta\, v[t-1] + (1 - \beta) (R\, i[t] + v_{leak}) \\
    s[t] &= H(\hat v[t] - v_{threshold}), \qquad v[t] = \text{reset}(\hat v[t], s[t])

with :math:`\alpha = 1 - \Delta t/\tau_{syn}` and :math:`\beta = 1 - \Delta t/\tau` (``decay="euler"``, NIR's reference)
or the exact exponential decays :math:`e^{-\Delta t/\tau}` (``decay="exp"``, the integrator exact for an input held
constant over a step). A LIF node has no synaptic current (:math:`i[t] = x[t]`); an IF node has :math:`\beta = 1`
and the input scale :math:`\Delta t\, R`. The membrane reads the current of the same step, so an input at step
:math:`t` can make a spike at step :math:`t` (a strictly explicit Euler step would read :math:`i[t-1]`, one step
of delay; ``current_delay=1`` in the conventions). The reset is an explicit choice (NIR leaves it open in discrete
time): ``"subtract"`` removes :math:`v_{threshold} - v_{reset}` (a neuron exactly at threshold lands on
:math:`v_{reset}`, as in continuous time), ``"zero"`` sets the membrane to :math:`v_{reset}`.
"""

from __future__ import annotations

from typing import Any, Literal

import nir
import numpy as np
import torch

from evoexp.functional.discrete import NeuronConstants
from evoexp.functional.lif import ResetMode
from evoexp.nir import metadata
from evoexp.nir.errors import NIRError

__all__ = ["DECAYS", "NEURON_TYPES", "Decay", "decay_factor", "node_constants"]

Decay = Literal["euler", "exp"]
DECAYS: tuple[str, ...] = ("euler", "exp")
NEURON_TYPES: tuple[type, ...] = (nir.LIF, nir.CubaLIF, nir.LI, nir.CubaLI, nir.IF)
"""The NIR neuron nodes evoexp runs."""

_AGREE = 1e-9
"""Relative agreement with the time constant below which a node's exact ``evoexp_alpha``/``evoexp_beta`` are used."""


def decay_factor(tau: np.ndarray, dt: float, decay: Decay) -> np.ndarray:
    r"""Per-step decay of ``tau``: :math:`1 - \Delta t/\tau` (``"euler"``) or :math:`e^{-\Delta t/\tau}` (``"exp"``)."""
    tau = np.asarray(tau, dtype=np.float64)
    return 1.0 - dt / tau if decay == "euler" else np.exp(-dt / tau)


def _array(name: str, node_name: str, value: Any, size: int | None) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise NIRError(f"NIR node '{node_name}': {name} has shape {array.shape}; evoexp runs neuron nodes with one "
                       "dimension of neurons")
    if size is not None and array.shape[0] not in (1, size):
        raise NIRError(f"NIR node '{node_name}': {name} has {array.shape[0]} values for {size} neurons")
    if not np.all(np.isfinite(array)) and name not in ("tau", "tau_mem", "tau_syn"):
        raise NIRError(f"NIR node '{node_name}': {name} must be finite, got {array}")
    return array if size is None else np.broadcast_to(array, (size,)).copy()


def _decay(node_name: str, field: str, tau: np.ndarray, dt: float, decay: Decay, exact: Any) -> np.ndarray:
    if np.any(~(tau > 0)):
        raise NIRError(f"NIR node '{node_name}': {field} must be > 0, got {tau}")
    if decay == "euler" and np.any(tau < dt):
        raise NIRError(f"NIR node '{node_name}': {field}={tau.min():g} < dt={dt:g}, where forward Euler's decay "
                       "1 - dt/tau is negative; use a smaller dt or decay='exp'")
    values = decay_factor(tau, dt, decay)
    if exact is not None:
        given = np.broadcast_to(np.asarray(exact, dtype=np.float64), values.shape)
        if np.allclose(given, values, rtol=_AGREE, atol=_AGREE):
            return given.copy()
    return values


def node_constants(name: str, node: nir.NIRNode, *, dt: float, reset: ResetMode, decay: Decay) -> NeuronConstants:
    """The discrete constants of the NIR neuron node ``node`` (module docstring's mapping).

    Args:
        name: The node's name (for messages).
        node: A ``nir.LIF``, ``nir.CubaLIF``, ``nir.LI``, ``nir.CubaLI`` or ``nir.IF``.
        dt: Time step (same unit as the node's time constants).
        reset: ``"subtract"`` or ``"zero"`` (to ``v_reset``).
        decay: ``"euler"`` or ``"exp"``.

    Raises:
        NIRError: a parameter of the wrong shape or value, or a time constant below ``dt`` with Euler decays.
    """
    first = "v_threshold" if hasattr(node, "v_threshold") else "r"
    size = _array(first, name, getattr(node, first), None).shape[0]
    meta = node.metadata or {}

    def field(key: str) -> np.ndarray:
        return _array(key, name, getattr(node, key), size)

    zeros = np.zeros(size)
    r = field("r")
    if isinstance(node, nir.IF):
        alpha, beta, k_in, k_mem, leak = zeros, np.ones(size), np.ones(size), dt * r, zeros
    else:
        tau_field = "tau_mem" if isinstance(node, (nir.CubaLIF, nir.CubaLI)) else "tau"
        beta = _decay(name, tau_field, field(tau_field), dt, decay, metadata.read_value(meta, metadata.BETA))
        k_mem, leak = (1.0 - beta) * r, (1.0 - beta) * field("v_leak")
        if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            alpha = _decay(name, "tau_syn", field("tau_syn"), dt, decay, metadata.read_value(meta, metadata.ALPHA))
            k_in = (1.0 - alpha) * field("w_in")
        else:
            alpha, k_in = zeros, np.ones(size)
    spiking = isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF))
    threshold = field("v_threshold") if spiking else None
    v_reset = field("v_reset") if spiking and getattr(node, "v_reset", None) is not None else zeros
    if threshold is not None and np.any(threshold <= v_reset):
        raise NIRError(f"NIR node '{name}': v_threshold must exceed v_reset")

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(values), dtype=torch.float64)

    return NeuronConstants(alpha=tensor(alpha), beta=tensor(beta), k_in=tensor(k_in), k_mem=tensor(k_mem),
                           leak=tensor(leak), threshold=None if threshold is None else tensor(threshold),
                           v_reset=tensor(v_reset), reset=reset)
