r"""Discrete-time neuron populations with explicit step conventions: the engine under NIR import and the comparison.

SNN libraries agree on the continuous-time neuron and disagree on how one time step is computed. This module runs a
population of current-based leaky integrate-and-fire neurons (and their special cases: current-free LIF, IF, and the
non-spiking leaky integrators LI / CubaLI) with every such choice an explicit field of :class:`StepConventions`, so
that one code path reproduces NIR's reference discretisation, evoexp's own LIF layer and the neurons of snnTorch,
SpikingJelly and Norse (docs/guides/crosscheck.md lists which conventions each library uses).

Per step :math:`t` (all tensors ``[batch, neurons]``, constants per neuron, see :class:`NeuronConstants`):

.. math::

    d[t] &= x[t - \delta_x] + V s[t-1] + b_V \qquad (\delta_x = \text{input\_delay} \in \{0, 1\}) \\
    i[t] &= \alpha\, i[t-1] + k_{in}\, d[t] \\
    u[t] &= \beta\, v[t-1] + k_{mem}\, i[t - \delta_i] + \ell \qquad (\delta_i = \text{current\_delay} \in \{0, 1\}) \\
    \hat v[t] &= u[t] \;\text{(reset before the leak)} \quad\text{or}\quad
        \hat v[t] = R(u[t], r[t-1]) \;\text{(reset after the leak)} \\
    s[t] &= H(\hat v[t] - \theta) \qquad (H(0) = 0 \text{ for } >,\; 1 \text{ for } \ge) \\
    v[t] &= R(\hat v[t], r[t]) \;\text{(before)} \quad\text{or}\quad v[t] = \hat v[t] \;\text{(after)}

with all states zero before step 0 (and :math:`r[-1] = 0` unless ``initial_reset``), :math:`r[t] = s[t]`
(``s[t].detach()`` for a detached reset) and the reset
:math:`R(v, r) = v - (\theta - v_{reset})\, r` (``"subtract"``) or :math:`v (1 - r) + v_{reset}\, r` (``"zero"``:
reset to :math:`v_{reset}`). *Before the leak* means the next step's leak :math:`\beta` acts on the reset membrane
(the threshold is subtracted before the leak, so it decays); *after the leak* (snnTorch's delayed reset, evoexp's
LIF layer) subtracts the undecayed threshold one step later. The recorded membrane is :math:`v[t]` when the reset
is applied in the same step and :math:`\hat v[t]` (above threshold at a spike) when it is applied in the next.
A non-spiking population (no threshold) outputs :math:`u[t]` and reads its input in the same step whatever the
delays (in every library evoexp compares, the non-spiking leaky integrator is a readout without delay). In smooth
mode :math:`H` is the surrogate's primitive; the backward always uses the surrogate's derivative.

The loop is plain autograd (one small graph per step), so it works under ``torch.func`` transforms; the verifiers'
held resets are supported through ``replay_reset`` exactly as in :func:`evoexp.functional.lif_sequence`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from evoexp.functional.lif import ResetMode
from evoexp.surrogate import SurrogateGradient

__all__ = [
    "EVOEXP_LIF",
    "NIR_REFERENCE",
    "NeuronConstants",
    "ResetLeak",
    "ResetTiming",
    "StepConventions",
    "neuron_sequence",
]

ResetTiming = Literal["same_step", "next_step"]
ResetLeak = Literal["before", "after"]


@dataclass(frozen=True)
class StepConventions:
    r"""How one time step of a neuron population is computed: the choices on which SNN libraries differ.

    Args:
        reset_timing: ``"same_step"``: the membrane recorded at a spike step is already reset; ``"next_step"``
            (snnTorch's ``reset_delay=True``): it is recorded above threshold and the reset enters the next update.
        reset_leak: ``"before"``: the next step's leak acts on the reset membrane (the subtracted threshold decays);
            ``"after"``: the reset is applied to the next step's leaked membrane (the threshold is subtracted
            undecayed, or a zero reset also discards that step's input).
        reset_detached: The reset term is a constant in the backward pass.
        spike_at_threshold: ``True``: a membrane exactly at threshold spikes (``>=``, :math:`H(0) = 1`); ``False``:
            it does not (``>``).
        input_delay: Steps (0 or 1) between the feed-forward current and the synaptic current (spiking
            populations only).
        current_delay: Steps (0 or 1) between the synaptic current and the membrane (spiking populations only).
        initial_reset: The state before step 0 (membrane 0) counts as a step of its own, with the reset term
            :math:`r[-1] = H(0 - \theta)` (snnTorch computes step 0's reset from the initial membrane). Zero in
            spiking mode; in smooth mode it is the primitive's value below threshold.
    """

    reset_timing: ResetTiming = "same_step"
    reset_leak: ResetLeak = "before"
    reset_detached: bool = False
    spike_at_threshold: bool = False
    input_delay: int = 0
    current_delay: int = 0
    initial_reset: bool = False

    def __post_init__(self) -> None:
        if self.reset_timing not in ("same_step", "next_step"):
            raise ValueError(f"reset_timing must be 'same_step' or 'next_step', got {self.reset_timing!r}")
        if self.reset_leak not in ("before", "after"):
            raise ValueError(f"reset_leak must be 'before' or 'after', got {self.reset_leak!r}")
        for name in ("reset_detached", "spike_at_threshold", "initial_reset"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("input_delay", "current_delay"):
            if getattr(self, name) not in (0, 1) or isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be 0 or 1, got {getattr(self, name)!r}")

    def differences(self, other: StepConventions) -> list[str]:
        """Names of the fields whose values differ from ``other``'s, in declaration order."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    @property
    def delay(self) -> int:
        """Steps from a feed-forward input to the membrane of a spiking population (``input_delay + current_delay``)."""
        return self.input_delay + self.current_delay


NIR_REFERENCE = StepConventions()
"""NIR's reference forward Euler: no delay (an input at step t can make a spike at step t), reset in the same step."""

EVOEXP_LIF = StepConventions(reset_timing="next_step", reset_leak="after", input_delay=1, current_delay=1)
"""evoexp's own LIF layer (:func:`evoexp.functional.lif_sequence`): ``I[t]`` reaches the membrane at ``t + 2``, the
threshold is subtracted undecayed one step after the spike."""


@dataclass(frozen=True, eq=False)
class NeuronConstants:
    r"""Per-neuron constants of a population; each is a float64 tensor of shape ``[neurons]``.

    Args:
        alpha: Synaptic decay :math:`\alpha` (0: no synaptic current, :math:`i[t] = k_{in} d[t]`).
        beta: Membrane decay :math:`\beta`.
        k_in: Scale :math:`k_{in}` of the drive into the synaptic current.
        k_mem: Scale :math:`k_{mem}` of the synaptic current into the membrane.
        leak: Constant :math:`\ell` added to the membrane every step.
        threshold: Firing threshold :math:`\theta`, or ``None`` for a non-spiking population (output: membrane).
        v_reset: Reset potential :math:`v_{reset}`.
        reset: ``"subtract"`` or ``"zero"`` (reset to :math:`v_{reset}`).
    """

    alpha: Tensor
    beta: Tensor
    k_in: Tensor
    k_mem: Tensor
    leak: Tensor
    threshold: Tensor | None
    v_reset: Tensor
    reset: ResetMode = "subtract"

    def __post_init__(self) -> None:
        if self.reset not in ("subtract", "zero"):
            raise ValueError(f"reset must be 'subtract' or 'zero', got {self.reset!r}")
        n = self.beta.shape
        for name in ("alpha", "k_in", "k_mem", "leak", "threshold", "v_reset"):
            value = getattr(self, name)
            if value is not None and value.shape != n:
                raise ValueError(f"constant {name} has shape {tuple(value.shape)}, expected {tuple(n)}")

    @property
    def size(self) -> int:
        """Number of neurons."""
        return int(self.beta.shape[0])

    @property
    def spiking(self) -> bool:
        """Whether the population fires (has a threshold)."""
        return self.threshold is not None


def _fire(surrogate: SurrogateGradient, smooth: bool, at_threshold: bool) -> Callable[[Tensor], Tensor]:
    if smooth:
        return surrogate.smooth
    if not at_threshold:
        return surrogate.spike

    def spike_at_threshold(x: Tensor) -> Tensor:  # H(0) = 1: add the tie as a constant (no gradient of its own)
        return surrogate.spike(x) + (x == 0).to(x.dtype)

    return spike_at_threshold


def _check_sequence(
    drive: Tensor,
    constants: NeuronConstants,
    conventions: StepConventions,
    recurrent_weight: Tensor | None,
    recurrent_bias: Tensor | None,
    replay_reset: Tensor | None,
) -> None:
    """Raise ``ValueError`` naming the first input of :func:`neuron_sequence` that does not fit the population."""
    if drive.dim() != 3 or drive.shape[1] == 0 or drive.shape[2] != constants.size:
        raise ValueError(
            f"drive must have shape [batch, time>0, {constants.size}], got {tuple(drive.shape)}"
        )
    if not drive.is_floating_point():
        raise ValueError(f"drive must be a floating-point tensor, got {drive.dtype}")
    n = constants.size
    if recurrent_weight is not None and tuple(recurrent_weight.shape) != (n, n):
        raise ValueError(f"recurrent_weight must have shape ({n}, {n}), got {tuple(recurrent_weight.shape)}")
    if (recurrent_weight is not None or recurrent_bias is not None) and not constants.spiking:
        raise ValueError("a non-spiking population has no spikes to feed back (recurrent weight given)")
    if replay_reset is not None:
        if not conventions.reset_detached:
            raise ValueError("replay_reset needs a detached reset (conventions.reset_detached=True)")
        if replay_reset.shape != drive.shape:
            raise ValueError(f"replay_reset must have the drive's shape {tuple(drive.shape)}, got "
                             f"{tuple(replay_reset.shape)}")


@dataclass(frozen=True)
class _Cast:
    """A population's constants in the drive's dtype and device, and its reset."""

    alpha: Tensor
    beta: Tensor
    k_in: Tensor
    k_mem: Tensor
    leak: Tensor
    v_reset: Tensor
    theta: Tensor | None
    zero_reset: bool
    jump: Tensor  # the subtracted amount (unused without a threshold)

    @classmethod
    def of(cls, constants: NeuronConstants, drive: Tensor) -> _Cast:
        """``constants`` cast to ``drive``'s dtype and device."""
        alpha, beta, k_in, k_mem, leak, v_reset = (
            getattr(constants, name).to(dtype=drive.dtype, device=drive.device)
            for name in ("alpha", "beta", "k_in", "k_mem", "leak", "v_reset")
        )
        threshold = constants.threshold
        theta = threshold.to(dtype=drive.dtype, device=drive.device) if threshold is not None else None
        jump = v_reset if theta is None else theta - v_reset
        return cls(alpha, beta, k_in, k_mem, leak, v_reset, theta, constants.reset == "zero", jump)

    def reset(self, v: Tensor, r: Tensor) -> Tensor:
        """``v`` after a reset of strength ``r``: to ``v_reset`` (zero reset) or down by the jump (subtract)."""
        if self.zero_reset:
            return v - (v - self.v_reset) * r
        return v - self.jump * r


def _initial_reset(
    c: _Cast, fire: Callable[[Tensor], Tensor], conventions: StepConventions, zeros: Tensor
) -> tuple[Tensor, Tensor]:
    """``(r_prev, v)`` before the first step: the reset of a membrane at 0 when the conventions ask for one."""
    r_prev, v = zeros, zeros
    if c.theta is not None and conventions.initial_reset:
        r_prev = fire(zeros - c.theta)
        r_prev = r_prev.detach() if conventions.reset_detached else r_prev
        if conventions.reset_leak == "before":
            v = c.reset(v, r_prev)
    return r_prev, v


def _recurrent(d: Tensor, spike: Tensor, recurrent_weight: Tensor | None, recurrent_bias: Tensor | None) -> Tensor:
    """The drive ``d`` plus the recurrent term ``s[t-1] @ V.T + b_V`` where given."""
    if recurrent_weight is not None:
        d = d + F.linear(spike, recurrent_weight.to(d.dtype))
    if recurrent_bias is not None:
        d = d + recurrent_bias.to(d.dtype)
    return d


def neuron_sequence(
    drive: Tensor,
    constants: NeuronConstants,
    conventions: StepConventions,
    surrogate: SurrogateGradient,
    *,
    recurrent_weight: Tensor | None = None,
    recurrent_bias: Tensor | None = None,
    smooth: bool = False,
    replay_reset: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run a population over a whole sequence (module docstring's equations).

    Args:
        drive: Feed-forward current ``x`` of shape ``[batch, time, neurons]`` (floating point).
        constants: The population's constants (cast to ``drive``'s dtype).
        conventions: How a step is computed.
        surrogate: Spike nonlinearity (Heaviside forward) and its pseudo-derivative.
        recurrent_weight: Optional ``V`` of shape ``[neurons, neurons]``: ``s[t-1] @ V.T`` joins the drive.
        recurrent_bias: Optional ``b_V`` added with the recurrent term (from step 0 on).
        smooth: Smooth mode (forward uses the surrogate's primitive).
        replay_reset: Constant reset term ``r`` of the output's shape used instead of the spikes (needs
            ``conventions.reset_detached``).

    Returns:
        ``(output, membrane)``: spikes (the membrane ``u`` for a non-spiking population) and the recorded membrane,
        both ``[batch, time, neurons]``.

    Raises:
        ValueError: bad shapes or dtypes, a recurrent weight on a non-spiking population, or ``replay_reset``
            without a detached reset.
    """
    _check_sequence(drive, constants, conventions, recurrent_weight, recurrent_bias, replay_reset)
    c = _Cast.of(constants, drive)
    fire = _fire(surrogate, smooth, conventions.spike_at_threshold)
    steps = drive.unbind(1)
    replays = replay_reset.detach().to(drive.dtype).unbind(1) if replay_reset is not None else None
    zeros = torch.zeros_like(steps[0])
    syn, spike, x_prev = zeros, zeros, zeros
    outputs, membranes = [], []
    r_prev, v = _initial_reset(c, fire, conventions, zeros)
    input_delay = conventions.input_delay if c.theta is not None else 0
    current_delay = conventions.current_delay if c.theta is not None else 0
    for t, x in enumerate(steps):
        d = x_prev if input_delay else x
        x_prev = x
        d = _recurrent(d, spike, recurrent_weight, recurrent_bias)
        syn_new = c.alpha * syn + c.k_in * d
        current = syn if current_delay else syn_new
        syn = syn_new
        u = c.beta * v + c.k_mem * current + c.leak
        if c.theta is None:
            v = u
            outputs.append(u)
            membranes.append(u)
            continue
        v_hat = c.reset(u, r_prev) if conventions.reset_leak == "after" else u
        spike = fire(v_hat - c.theta)
        own = spike.detach() if conventions.reset_detached else spike
        r = replays[t] if replays is not None else own
        v_post = c.reset(v_hat, r)
        v = v_post if conventions.reset_leak == "before" else v_hat
        r_prev = r
        outputs.append(spike)
        membranes.append(v_post if conventions.reset_timing == "same_step" else v_hat)
    return torch.stack(outputs, dim=1), torch.stack(membranes, dim=1)
