r"""Pure functional leaky integrate-and-fire (LIF) dynamics with a hand-written BPTT backward.

Discrete-time current-based LIF neuron (docs/design/models.md), for input current :math:`I[t] = W x[t] + b`
computed by the caller for all time steps at once (one GEMM):

.. math::

    s[t] &= f(\mathrm{mem}[t] - \theta) \\
    \mathrm{syn}[t+1] &= \alpha\,\mathrm{syn}[t] + I[t] + V s[t] \quad (V \text{ only if recurrent}) \\
    \mathrm{mem}[t+1] &= \beta\,\mathrm{mem}[t] + \mathrm{syn}[t] - \theta\, r[t]
        \quad\text{(reset by subtraction)} \\
    \mathrm{mem}[t+1] &= (\beta\,\mathrm{mem}[t] + \mathrm{syn}[t])\,(1 - r[t]) \quad\text{(reset to zero)}

with :math:`\mathrm{syn}[0] = \mathrm{mem}[0] = 0`, :math:`r[t] = s[t]` (or ``s[t].detach()`` with a detached
reset), :math:`f` the Heaviside step (spiking mode) or the surrogate's primitive (smooth mode); the backward always
uses the surrogate's derivative :math:`g = f'`. :math:`\alpha = 0` gives the simple (current-free) LIF; an input
reaches the spikes two steps later (``I[t]`` enters ``syn[t+1]``, then ``mem[t+2]``), so the last two input steps
never influence the output.

Two implementations compute the same function:

* :func:`lif_sequence_reference` — a plain loop of autograd ops (the specification the fast path is tested
  against; ``bptt="autograd"``).
* the default fast path of :func:`lif_sequence` — one ``torch.autograd.Function`` node per layer whose forward loops
  over time without building a graph and whose backward runs the adjoint recursion in reverse time. Training,
  evaluation (no graph) and ``torch.func.vmap`` over parameter sets (the node's vmap rule folds them into the batch)
  all run this one forward loop. Writing
  :math:`\lambda_m[t] = \partial L/\partial \mathrm{mem}[t]`, :math:`\lambda_s[t] = \partial L/\partial \mathrm{syn}[t]`
  and :math:`\bar s[t]` for the gradient arriving at the spikes,

  .. math::

      \delta[t] &= \bar s[t] + V^\top \lambda_s[t+1] - \theta\,\lambda_m[t+1] \;\;(\text{subtract, attached}) \\
      \lambda_m[t] &= g(\mathrm{mem}[t]-\theta)\,\delta[t] + \beta\,\lambda_m[t+1] \\
      \lambda_s[t] &= \alpha\,\lambda_s[t+1] + \lambda_m[t+1] \\
      \partial L/\partial I[t] &= \lambda_s[t+1], \qquad
      \partial L/\partial V = \textstyle\sum_t \lambda_s[t+1]\, s[t]^\top

  (for a zero reset the factors :math:`\beta` and :math:`1` on :math:`\lambda_m[t+1]` become :math:`\beta(1-r[t])` and
  :math:`1-r[t]`, and the reset term of :math:`\delta[t]` is :math:`-(\beta\,\mathrm{mem}[t]+\mathrm{syn}[t])\,
  \lambda_m[t+1]`). Everything that does not depend on the recursion is computed for all time steps at once; the
  feed-forward recursion costs one fused op per step.

:func:`linear_lif_sequence` (what :class:`~evoexp.models.LIFLayer` runs) makes the input projection
:math:`I = xW^\top + b` part of the same node. Owning the current, it stores the membrane in the current's memory
(``I[t-1]`` is consumed when ``mem[t+1]`` is written) and adds the bias inside the time loop. Inside
:func:`backward_once` (a training step, which backpropagates each graph once) the backward writes
:math:`\partial L/\partial I` over the membrane it has read, so a layer allocates no ``[B, T, H]`` buffer besides
its spikes; by default it writes a fresh buffer. The weight and bias gradients follow from
:math:`\partial L/\partial I` as usual.

A detached reset (``detach_reset``) means: the gradient of the loss with the reset term :math:`r[t]` held at its
value in the forward pass. ``replay_reset`` evaluates the layer with a given constant :math:`r` (the verifier replays
the unperturbed spikes), so central differences of that forward are the detached gradient exactly.

Escape noise (stochastic LIF, Gygax & Zenke 2025; docs/guides/theory.md, "3. Escape noise"). With
``params.escape_noise`` :math:`= \beta_n` and uniform draws :math:`u[t] \in [0, 1)` of the spikes' shape
(``noise``), the spike is sampled from the escape function :math:`\sigma(x) = 1/(1 + e^{-x})`:

.. math:: s[t] = [\,u[t] < \sigma(\beta_n(\mathrm{mem}[t] - \theta))\,] \sim
          \mathrm{Bernoulli}(\sigma(\beta_n(\mathrm{mem}[t] - \theta))).

Without draws an escape-noise neuron outputs its firing probability :math:`\sigma(\beta_n(\mathrm{mem}[t]-\theta))`
(the expected spike: a differentiable sigmoid neuron). Either way the backward is unchanged: the adjoint above with
the surrogate's derivative :math:`g(\mathrm{mem}[t]-\theta)` and the sampled (or expected) spikes in the reset, i.e.
the surrogate gradient of the stochastic network. With :math:`g = \beta_n\sigma'(\beta_n x)` (the ``sigmoid``
surrogate of slope :math:`\beta_n`) it is the derivative of the expected spike given the neuron's history
(:mod:`evoexp.verification.escape_noise` checks this). Smooth mode ignores the noise.

All tensors are batch-first: ``[batch, time, features]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from evoexp.surrogate import SurrogateGradient

__all__ = [
    "BPTTMode",
    "LIFParameters",
    "ReadoutMode",
    "ResetMode",
    "backward_once",
    "decay_from_time_constant",
    "leaky_integrate",
    "lif_sequence",
    "lif_sequence_reference",
    "linear_lif_sequence",
    "readout_logits",
    "sequence_linear",
]

ResetMode = Literal["subtract", "zero"]
BPTTMode = Literal["custom", "autograd"]
ReadoutMode = Literal["max", "mean", "last"]

_RESETS: tuple[str, ...] = ("subtract", "zero")
_BPTT_MODES: tuple[str, ...] = ("custom", "autograd")
_READOUT_MODES: tuple[str, ...] = ("max", "mean", "last")
# Values per block of time steps in the backward pass: small enough to stay in cache and at most PyTorch's intra-op
# grain size (32768), so that block ops run serially; on a busy machine every parallel region can wait for a core.
_BLOCK_ELEMENTS = 1 << 15
# Multiply-adds per time step (B * C * H) from which a layer's input GEMM is run per time step to get time-major
# memory (see _layer_current); benchmarks/bench_engine.py measured both sides: at 1.6e6 (its small size) the per-step
# GEMMs made a training step 13% slower, at 4.6e7 (its large size) strided batch-major slices made it 5% slower.
_STEP_GEMM_MACS = 1 << 23


def decay_from_time_constant(tau: float, dt: float = 1.0) -> float:
    r"""Return the per-step decay factor :math:`\exp(-\Delta t/\tau)` of a time constant.

    Args:
        tau: Time constant :math:`\tau > 0` (same unit as ``dt``).
        dt: Simulation step :math:`\Delta t > 0`.

    Raises:
        ValueError: ``tau`` or ``dt`` is not a finite positive number.
    """
    for name, value in (("tau", tau), ("dt", dt)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return math.exp(-dt / tau)


@dataclass(frozen=True)
class LIFParameters:
    r"""Constants of a LIF layer (Norse-style parameter record).

    Args:
        alpha: Synaptic decay :math:`\alpha \in [0, 1]` (0: current-free LIF).
        beta: Membrane decay :math:`\beta \in [0, 1]`.
        threshold: Firing threshold :math:`\theta > 0`.
        reset: ``"subtract"`` (remove :math:`\theta`) or ``"zero"`` (membrane set to 0 after a spike).
        detach_reset: Treat the reset as a constant in the backward pass.
        escape_noise: Steepness :math:`\beta_n > 0` of the escape function :math:`\sigma(\beta_n(\mathrm{mem}-\theta))`
            of stochastic neurons (module docstring), or ``None`` for deterministic neurons.
    """

    alpha: float = math.exp(-1.0 / 5.0)
    beta: float = math.exp(-1.0 / 10.0)
    threshold: float = 1.0
    reset: ResetMode = "subtract"
    detach_reset: bool = False
    escape_noise: float | None = None

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
            object.__setattr__(self, name, float(value))
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be a finite number > 0, got {self.threshold!r}")
        object.__setattr__(self, "threshold", float(self.threshold))
        if self.reset not in _RESETS:
            raise ValueError(f"reset must be one of {_RESETS}, got {self.reset!r}")
        if not isinstance(self.detach_reset, bool):
            raise ValueError(f"detach_reset must be a bool, got {self.detach_reset!r}")
        if self.escape_noise is not None:
            noise = self.escape_noise
            if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise <= 0:
                raise ValueError(f"escape_noise must be a finite number > 0 or None, got {noise!r}")
            object.__setattr__(self, "escape_noise", float(noise))

    @classmethod
    def from_time_constants(
        cls, *, tau_syn: float | None, tau_mem: float, dt: float = 1.0, **kwargs: Any
    ) -> LIFParameters:
        r"""Build parameters from time constants.

        :math:`\alpha = e^{-\Delta t/\tau_{syn}}` (0 if ``tau_syn`` is None), :math:`\beta = e^{-\Delta t/\tau_{mem}}`;
        ``kwargs`` are the other fields.
        """
        alpha = 0.0 if tau_syn is None else decay_from_time_constant(tau_syn, dt)
        return cls(alpha=alpha, beta=decay_from_time_constant(tau_mem, dt), **kwargs)


def _check_current(input_current: Tensor, recurrent_weight: Tensor | None) -> None:
    if input_current.dim() != 3:
        raise ValueError(f"input_current must have shape [batch, time, features], got {tuple(input_current.shape)}")
    if input_current.shape[1] == 0:
        raise ValueError("input_current must have at least one time step")
    if not input_current.is_floating_point():
        raise ValueError(f"input_current must be a floating-point tensor, got {input_current.dtype}")
    _check_recurrent_weight(input_current.shape[2], recurrent_weight)


def _check_recurrent_weight(n: int, recurrent_weight: Tensor | None) -> None:
    if recurrent_weight is not None and tuple(recurrent_weight.shape) != (n, n):
        raise ValueError(f"recurrent_weight must have shape ({n}, {n}), got {tuple(recurrent_weight.shape)}")


def _check_replay(params: LIFParameters, replay_reset: Tensor | None, shape: tuple[int, ...]) -> None:
    if replay_reset is None:
        return
    if not params.detach_reset:
        raise ValueError(
            "replay_reset needs params.detach_reset=True: a replayed reset is the detached reset held constant"
        )
    if tuple(replay_reset.shape) != tuple(shape):
        raise ValueError(f"replay_reset must have the spikes' shape {tuple(shape)}, got {tuple(replay_reset.shape)}")


def _check_noise(params: LIFParameters, noise: Tensor | None, shape: tuple[int, ...]) -> None:
    if noise is None:
        return
    if params.escape_noise is None:
        raise ValueError("noise needs params.escape_noise: draws sample the spikes of escape-noise neurons only")
    if tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise must have the spikes' shape {tuple(shape)}, got {tuple(noise.shape)}")


def _escape_spike(x: Tensor, u: Tensor | None, params: LIFParameters, surrogate: SurrogateGradient) -> Tensor:
    """Escape-noise spike of the reference loop: sampled (or expected) forward, surrogate derivative backward."""
    probability = torch.sigmoid(x.detach() * float(params.escape_noise or 0.0))  # set: the caller's condition
    value = probability if u is None else (u < probability).to(x.dtype)
    path = surrogate.spike(x)  # value 0 + (path - path) carries the surrogate derivative
    return value + (path - path.detach())


def lif_sequence_reference(
    input_current: Tensor,
    params: LIFParameters,
    surrogate: SurrogateGradient,
    *,
    recurrent_weight: Tensor | None = None,
    smooth: bool = False,
    replay_reset: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Run the LIF dynamics with plain autograd ops (one small graph per time step).

    This is the executable specification of the module docstring's equations, against which the hand-written node
    is tested; it works under every ``torch.func`` transform and is what ``bptt="autograd"`` runs. Slow for long
    sequences.

    Args:
        input_current: Input current ``I`` of shape ``[batch, time, features]``.
        params: Layer constants.
        surrogate: Spike nonlinearity; ``surrogate.spike`` (or ``surrogate.smooth`` in smooth mode) is used.
        recurrent_weight: Optional ``V`` of shape ``[features, features]`` (``syn += s @ V.T``).
        smooth: Use the surrogate's primitive instead of the Heaviside step in the forward pass.
        replay_reset: Optional constant reset term ``r`` (shape of the spikes) used instead of the layer's own
            spikes; needs ``params.detach_reset`` (see :func:`lif_sequence`).
        noise: Uniform draws in [0, 1) of the spikes' shape that sample escape-noise spikes (needs
            ``params.escape_noise``; see :func:`lif_sequence`).

    Returns:
        Spikes of shape ``[batch, time, features]``.

    Raises:
        ValueError: bad shapes or dtypes, ``replay_reset`` without a detached reset, ``noise`` without escape noise.
    """
    _check_current(input_current, recurrent_weight)
    _check_replay(params, replay_reset, input_current.shape)
    _check_noise(params, noise, input_current.shape)
    draws = noise.detach().to(input_current.dtype).unbind(1) if noise is not None else None

    def fire(x: Tensor, t: int) -> Tensor:
        if smooth:
            return surrogate.smooth(x)
        if params.escape_noise is not None:
            return _escape_spike(x, None if draws is None else draws[t], params, surrogate)
        return surrogate.spike(x)

    alpha, beta, theta = params.alpha, params.beta, params.threshold
    # Few fused ops per step: under torch.func.vmap every op pays a fixed batching overhead. In-place updates only
    # touch tensors created in the same step that no autograd node has saved.
    currents = input_current.unbind(1)
    replays = replay_reset.detach().unbind(1) if replay_reset is not None else None
    own_reset = (lambda s: s.detach()) if params.detach_reset else (lambda s: s)
    syn = torch.zeros_like(currents[0])
    mem = torch.zeros_like(syn)
    weight_t = recurrent_weight.T if recurrent_weight is not None else None
    spikes = []
    for t, current in enumerate(currents):
        spike = fire(mem - theta, t)
        reset = replays[t] if replays is not None else own_reset(spike)
        if params.reset == "subtract":
            mem_next = torch.add(syn, mem, alpha=beta).sub_(reset, alpha=theta)
        else:
            pre_reset = torch.add(syn, mem, alpha=beta)
            mem_next = torch.addcmul(pre_reset, pre_reset, reset, value=-1.0)
        if weight_t is not None:
            syn = torch.addmm(torch.add(current, syn, alpha=alpha), spike, weight_t)
        elif alpha != 0.0:
            syn = torch.add(current, syn, alpha=alpha)
        else:  # syn[t+1] = I[t]: no op needed
            syn = currents[t]
        mem = mem_next
        spikes.append(spike)
    return torch.stack(spikes, dim=1)


def _is_time_major(x: Tensor) -> bool:
    """True if the ``[B, T, ...]`` tensor ``x`` is a transposed view of contiguous time-major memory."""
    return x.shape[0] > 1 and x.transpose(0, 1).is_contiguous()


_HEAD = 2
"""Membrane steps ``mem[0]``, ``mem[1]`` stored outside the current's memory (``mem[t]`` lives in ``I[t-2]``)."""


@dataclass(frozen=True)
class _Membrane:
    """Where the forward loop stored the membrane.

    ``mem[t]`` is ``head[t]`` for ``t < 2``, else ``body[t - 2]`` (both indexed ``[time, batch, features]``); the
    body is the memory of the input current.
    """

    head: Tensor
    body: Tensor

    def block(self, t0: int, t1: int) -> Tensor:
        """``mem[t0:t1]``; the block must not straddle step 2."""
        if t1 <= _HEAD:
            return self.head[t0:t1]
        return self.body[t0 - _HEAD : t1 - _HEAD]


def _forward_loop(
    current: Tensor,
    recurrent_weight: Tensor | None,
    params: LIFParameters,
    surrogate: SurrogateGradient,
    smooth: bool,
    *,
    bias: Tensor | None = None,
    replay: Tensor | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, _Membrane, Tensor | None]:
    """Graph-free forward loop: the one forward every path runs (training, evaluation, the verifier's differences).

    Returns spikes, the membrane ``mem[0..T-1]`` and, for a zero reset, the pre-reset values
    ``beta * mem[t] + syn[t]``. Spikes and pre-reset values are stored time-major (``[T, B, H]`` memory) so that
    every step writes contiguous memory; spikes are returned as a ``[B, T, H]`` view of that storage.

    The input current is consumed: ``I[t-1]`` has been read when ``mem[t+1]`` is computed, so ``mem[t]`` (``t >= 2``)
    overwrites ``current[:, t-2]`` and only ``mem[0]``, ``mem[1]`` need new memory. The caller must own ``current``
    (no one else may read it afterwards); it may pass the ``bias`` that is still to be added to it, which costs one
    op on cache-warm memory per step instead of a pass over all of it. ``replay`` is a constant reset term ``r``
    (``[B, T, H]``) used instead of the spikes in the reset (the detached reset held at given values); ``noise``
    the uniform draws (``[B, T, H]``) that sample escape-noise spikes (without them such a neuron outputs its firing
    probability).
    ``recurrent_weight`` is ``V`` (``[H, H]``) or one ``V`` per group of ``B / G`` consecutive batch rows
    (``[G, H, H]``, the vmap rule's folded parameter sets).
    """
    batch, steps, n = current.shape
    spikes = current.new_empty(steps, batch, n)
    pre_reset = torch.empty_like(spikes) if params.reset == "zero" else None
    currents = current.unbind(1)
    head = current.new_zeros(_HEAD, batch, n)
    mem_views = [*head.unbind(0), *currents]  # mem[t] -> current[:, t-2]; mem[T] lands in an unused slot
    spike_views = spikes.unbind(0)
    resets = spike_views if replay is None else replay.unbind(1)
    use_syn_state = params.alpha != 0.0 or recurrent_weight is not None
    syn = current.new_zeros(batch, n)
    weight_t = recurrent_weight.transpose(-1, -2) if recurrent_weight is not None else None
    groups = recurrent_weight.shape[0] if recurrent_weight is not None and recurrent_weight.dim() == 3 else 0
    alpha, beta, theta, escape = params.alpha, params.beta, params.threshold, params.escape_noise
    draws = noise.unbind(1) if noise is not None else None
    for t in range(steps):
        mem, spike, mem_next, reset = mem_views[t], spike_views[t], mem_views[t + 1], resets[t]
        if bias is not None:  # I[t] is first read at step t (alpha != 0, recurrent) or t + 1
            currents[t].add_(bias)
        if smooth:
            spike.copy_(surrogate.primitive(mem - theta))
        elif escape is None:
            torch.gt(mem, theta, out=spike)
        else:  # escape noise: s = [u < sigma(beta_n (mem - theta))], or the probability itself without draws
            probability = torch.sub(mem, theta).mul_(escape).sigmoid_()
            if draws is None:
                spike.copy_(probability)
            else:
                torch.lt(draws[t], probability, out=spike)
        if not use_syn_state:  # alpha == 0, feed-forward: syn[t] = I[t-1] (the very slot of mem[t+1])
            syn = currents[t - 1] if t > 0 else syn
        if pre_reset is None:
            torch.add(syn, mem, alpha=beta, out=mem_next)
            mem_next.sub_(reset, alpha=theta)
        else:
            torch.add(syn, mem, alpha=beta, out=pre_reset[t])
            torch.addcmul(pre_reset[t], pre_reset[t], reset, value=-1.0, out=mem_next)
        if use_syn_state:
            torch.add(currents[t], syn, alpha=alpha, out=syn)
            if weight_t is not None:
                if groups:
                    syn.view(groups, -1, n).baddbmm_(spike.view(groups, -1, n), weight_t)
                else:
                    syn.addmm_(spike, weight_t)
    return spikes.transpose(0, 1), _Membrane(head, current.transpose(0, 1)), pre_reset


_BACKWARD_ONCE: ContextVar[bool] = ContextVar("evoexp_backward_once", default=False)


@contextmanager
def backward_once() -> Iterator[None]:
    """Declare that every graph built inside the context is backpropagated once (as a training step does).

    A LIF node built inside then writes dL/dI over the membrane it saved for its backward pass, so a layer
    allocates no ``[B, T, H]`` gradient buffer. Outside the context (the default) the backward writes a fresh
    buffer and may run any number of times (``retain_graph=True``). The choice is made when the node is built (the
    forward pass), so the backward call itself may lie outside the context. A second backward pass through a graph
    built inside raises PyTorch's "modified by an inplace operation" error instead of returning wrong gradients.
    """
    token = _BACKWARD_ONCE.set(True)
    try:
        yield
    finally:
        _BACKWARD_ONCE.reset(token)


def _recurrent_weight_grad(grad_current: Tensor, spikes: Tensor) -> Tensor:
    """dL/dV = sum_t lambda_s[t+1] s[t]^T: one GEMM over all (time, batch) rows, time-major like the spikes."""
    return _rows(grad_current, True).T @ _rows(spikes, True)


def _rows(x: Tensor, time_major: bool) -> Tensor:
    """``[B, T, F]`` as a ``[B*T, F]`` matrix, rows in time-major (``t, b``) or batch-major (``b, t``) order."""
    return (x.transpose(0, 1) if time_major else x).reshape(-1, x.shape[2])


def _layer_current(x: Tensor, weight: Tensor) -> Tensor:
    """``x W^T`` for ``x`` of shape ``[B, T, C]``, indexed ``[T, B, H]``, in new memory that the layer owns.

    The time loops read and write a ``[B, H]`` slice per step several times. In batch-major memory that slice is ``B``
    rows ``T * H`` apart, which costs more than the whole step when the slices are large; then a batch-major ``x``
    is multiplied one time step at a time, as one batched GEMM over its strided ``[B, C]`` slices (no copy of ``x``),
    giving time-major memory. For small steps (below :data:`_STEP_GEMM_MACS` multiply-adds) the ``T`` separate
    GEMMs cost more than the strided slices, and the single GEMM's batch-major result is kept. The bias is left to
    the forward loop (see :func:`_forward_loop`).
    """
    x_tm = x.transpose(0, 1)
    batch, steps, channels = x.shape
    if _is_time_major(x) or batch == 1:
        return F.linear(x_tm, weight)
    if batch * channels * weight.shape[0] < _STEP_GEMM_MACS:
        return F.linear(x, weight).transpose(0, 1)
    return torch.bmm(x_tm, weight.T.expand(steps, *weight.T.shape))


def _owned_current(x: Tensor, weight: Tensor | None) -> Tensor:
    """The layer's input current ``[B, T, H]`` (without bias) in new memory: ``x`` itself, or ``x W^T``."""
    if weight is None:
        return x.clone()  # keeps a time-major layout
    return _layer_current(x, weight).transpose(0, 1)


def _linear_grads(grad_current: Tensor, x: Tensor, *, weight: bool, bias: bool) -> tuple[Tensor | None, Tensor | None]:
    r"""dL/dW = :math:`\sum_{b,t} \partial L/\partial I[b, t]\; x[b, t]^\top` and dL/db, without copying operands.

    One GEMM and one sum when both are stored in the same (time- or batch-major) row order; else a GEMM per time step
    accumulated in place over the strided ``[B, features]`` slices, each followed by the bias sum of the slice the
    GEMM has just brought into cache.
    """
    time_major = _is_time_major(x)
    if x.shape[0] == 1 or _is_time_major(grad_current) == time_major:
        rows = _rows(grad_current, time_major)
        return (rows.T @ _rows(x, time_major) if weight else None), (rows.sum(0) if bias else None)
    grad_weight = grad_current.new_zeros(grad_current.shape[2], x.shape[2]) if weight else None
    grad_bias = grad_current.new_zeros(grad_current.shape[2]) if bias else None
    for t in range(x.shape[1]):
        step = grad_current[:, t]
        if grad_weight is not None:
            grad_weight.addmm_(step.T, x[:, t])
        if grad_bias is not None:
            grad_bias.add_(step.sum(0))
    return grad_weight, grad_bias


class _LIFNode(torch.autograd.Function):
    """One autograd node for a LIF layer, optionally with its input projection ``I = x W^T + b`` (``weight``).

    Owning the current lets the forward loop store the membrane in the current's memory and, inside
    :func:`backward_once`, the backward write dL/dI over the membrane: a layer then allocates no ``[B, T, H]`` buffer
    besides its spikes. The current is time-major for large layers (see :func:`_layer_current`); the weight and bias
    gradients are GEMMs and a row sum over dL/dI. The forward returns the membrane and pre-reset storage as
    non-differentiable outputs (how ``setup_context`` saves intermediates, which ``torch.func.grad`` needs).
    """

    @staticmethod
    def forward(
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        recurrent_weight: Tensor | None,
        replay: Tensor | None,
        noise: Tensor | None,
        params: LIFParameters,
        surrogate: SurrogateGradient,
        smooth: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        current = _owned_current(x, weight)
        spikes, membrane, pre_reset = _forward_loop(
            current, recurrent_weight, params, surrogate, smooth, bias=bias, replay=replay, noise=noise
        )
        return spikes, membrane.head, current, pre_reset

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        x, weight, bias, recurrent_weight, replay, _, params, surrogate, _ = inputs
        spikes, head, current, pre_reset = output
        ctx.mark_non_differentiable(*(t for t in (head, current, pre_reset) if t is not None))
        ctx.set_materialize_grads(False)  # no zero-filled [B, T, H] gradients for the storage outputs
        ctx.params, ctx.surrogate, ctx.has_bias = params, surrogate, bias is not None
        ctx.time_major = _is_time_major(current)  # a fresh gradient gets the current's layout
        ctx.overwrite = _BACKWARD_ONCE.get()
        ctx.save_for_backward(
            x if weight is not None else None, weight, spikes, head, current, pre_reset, recurrent_weight, replay
        )

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: Tensor | None, *_: Any) -> tuple[Tensor | None, ...]:
        x, weight, spikes, head, current, pre_reset, recurrent_weight, replay = ctx.saved_tensors
        if grad_spikes is None:  # the spikes reach the loss only through paths without a gradient
            return (None,) * 9
        adjoint = _Adjoint(
            ctx.params,
            ctx.surrogate,
            spikes if replay is None else replay,
            _Membrane(head, current.transpose(0, 1)),
            pre_reset,
            grad_spikes,
            ctx.time_major,
            current if ctx.overwrite else None,
        )
        if recurrent_weight is None:
            grad_current, grad_recurrent = adjoint.feed_forward(), None
        else:
            grad_current = adjoint.recurrent(recurrent_weight)
            grad_recurrent = _recurrent_weight_grad(grad_current, spikes) if ctx.needs_input_grad[3] else None
        if weight is None:  # the node's input is the current itself
            return grad_current, None, None, grad_recurrent, None, None, None, None, None
        grad_x = None
        if ctx.needs_input_grad[0]:  # in the memory layout of dL/dI
            if ctx.time_major:
                grad_x = torch.matmul(grad_current.transpose(0, 1), weight).transpose(0, 1)
            else:
                grad_x = torch.matmul(grad_current, weight)
        grad_weight, grad_bias = _linear_grads(
            grad_current, x, weight=ctx.needs_input_grad[1], bias=ctx.has_bias and ctx.needs_input_grad[2]
        )
        return grad_x, grad_weight, grad_bias, grad_recurrent, None, None, None, None, None


class _LIFForward(torch.autograd.Function):
    """The same forward as :class:`_LIFNode` without a graph (evaluation, the verifier's perturbed losses).

    Its ``vmap`` rule (the public ``torch.func`` extension point) folds the vmapped dimension into the batch and runs
    the forward loop once on the folded batch, so ``torch.func.vmap`` over parameter sets evaluates exactly the
    forward that training runs. ``owned=True`` (set only by that rule, on the folded current it has just created,
    with ``weight=None``) lets the loop consume ``x`` without copying it first.
    """

    @staticmethod
    def forward(
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        recurrent_weight: Tensor | None,
        replay: Tensor | None,
        noise: Tensor | None,
        params: LIFParameters,
        surrogate: SurrogateGradient,
        smooth: bool,
        owned: bool = False,
    ) -> Tensor:
        current = x if owned else _owned_current(x, weight)
        return _forward_loop(
            current, recurrent_weight, params, surrogate, smooth, bias=bias, replay=replay, noise=noise
        )[0]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        """Nothing to save: this node is only built without gradients."""

    @staticmethod
    def vmap(
        info: Any,
        in_dims: tuple[int | None, ...],
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        recurrent_weight: Tensor | None,
        replay: Tensor | None,
        noise: Tensor | None,
        params: LIFParameters,
        surrogate: SurrogateGradient,
        smooth: bool,
        owned: bool = False,
    ) -> tuple[Tensor, int]:
        """Fold the ``N`` vmapped parameter sets into the batch ``[N * B, T, H]`` (one ``V`` per ``B`` rows).

        The folded current is new memory that the inner forward consumes (no second copy), and the bias is left to
        its time loop, one op per step on cache-warm memory, as in training.
        """
        n = info.batch_size
        x_dim, weight_dim, bias_dim, rec_dim, replay_dim, noise_dim = in_dims[:6]

        def leading(t: Tensor, dim: int | None) -> Tensor:  # [N, ...]
            return t.movedim(dim, 0) if dim is not None else t.expand(n, *t.shape)

        if weight is None:  # the caller's current, copied once into memory the inner forward may consume
            current = leading(x, x_dim)
            batch, steps, width = current.shape[1:]
            folded = current.clone(memory_format=torch.contiguous_format).view(n * batch, steps, width)
        else:  # [N, B * T, C] @ [N, C, H] -> [N, B * T, H]: one GEMM per parameter set, nothing replicated
            xs = leading(x, x_dim)
            batch, steps, channels = xs.shape[1:]
            ws = leading(weight, weight_dim)
            folded = torch.bmm(xs.reshape(n, batch * steps, channels), ws.transpose(-1, -2))
            folded = folded.view(n * batch, steps, ws.shape[1])
            width = ws.shape[1]
        rows_bias = bias  # a shared bias broadcasts over the folded rows; else one bias row per folded batch row
        if bias is not None and (bias_dim is not None or bias.dim() == 2):
            rows = leading(bias, bias_dim)  # [N, H], or [N, B, H] from an inner vmap rule's per-row bias
            rows_bias = (rows.unsqueeze(1).expand(n, batch, width) if rows.dim() == 2 else rows).reshape(-1, width)
        if recurrent_weight is not None and (rec_dim is not None or recurrent_weight.dim() == 3):
            recurrent_weight = leading(recurrent_weight, rec_dim).reshape(-1, width, width)
        if replay is not None:
            replay = leading(replay, replay_dim).reshape(n * batch, steps, width)
        if noise is not None:
            noise = leading(noise, noise_dim).reshape(n * batch, steps, width)
        spikes = _LIFForward.apply(
            folded, None, rows_bias, recurrent_weight, replay, noise, params, surrogate, smooth, True
        )
        return spikes.unflatten(0, (n, batch)), 0


class _Adjoint:
    r"""Reverse-time adjoint recursion of one LIF layer (see the module docstring).

    Time is processed in blocks of a few steps (about :data:`_BLOCK_ELEMENTS` values, cache-sized): for a block, the
    surrogate derivative :math:`g`, :math:`a[t] = g[t]\,\bar s[t]` and the coefficient :math:`c[t]` of
    :math:`\lambda_m[t+1]` are computed with a few vectorised ops, then the recursion
    :math:`\lambda_m[t] = a[t] + c[t]\,\lambda_m[t+1]` costs one fused op per step. No temporary of the full
    ``[B, T, H]`` size is created: the only large allocation is the returned gradient, and none at all when
    ``storage`` is given. Writing dL/dI[t-1] (recurrent) or dL/dI[t-2] (feed-forward) at step ``t`` only overwrites
    membrane values of blocks already read, so ``storage`` may be the memory the membrane lives in.
    """

    def __init__(
        self,
        params: LIFParameters,
        surrogate: SurrogateGradient,
        reset: Tensor,
        membrane: _Membrane,
        pre_reset: Tensor | None,
        grad_spikes: Tensor,
        time_major: bool,
        storage: Tensor | None = None,
    ) -> None:
        self.params, self.surrogate = params, surrogate
        self.reset = reset.transpose(0, 1)  # r[t], time-major [T, B, H]: the spikes or the replayed reset
        self.membrane, self.pre_reset = membrane, pre_reset
        self.grad_spikes = grad_spikes.transpose(0, 1)
        batch, steps, n = reset.shape  # the gradient gets the memory layout of the input current
        if storage is not None:
            self.grad = storage
        elif time_major:
            self.grad = reset.new_empty(steps, batch, n).transpose(0, 1)
        else:
            self.grad = reset.new_empty(batch, steps, n)
        self.steps = steps
        self.block = max(1, _BLOCK_ELEMENTS // max(1, batch * n))

    def blocks(self, stop: int) -> Iterator[tuple[int, Tensor, Tensor | None]]:
        r"""Yield ``(t0, g, c)`` for blocks ``[t0, t1)`` from the end of time down to ``stop``.

        ``g`` is the surrogate derivative of the block; ``c`` the coefficient of :math:`\lambda_m[t+1]` in
        :math:`\partial L/\partial \mathrm{mem}[t]` (None when it is the constant :math:`\beta`). Both are new
        tensors, computed before the caller writes anything for the block.
        """
        p = self.params
        t1 = self.steps
        while t1 > stop:
            t0 = max(stop, t1 - self.block, _HEAD if t1 > _HEAD else 0)
            slope = self.surrogate.derivative(self.membrane.block(t0, t1) - p.threshold)
            coeff: Tensor | None = None
            if p.reset == "subtract":
                if not p.detach_reset:
                    coeff = torch.mul(slope, -p.threshold).add_(p.beta)
            else:
                coeff = torch.mul(self.reset[t0:t1], -p.beta).add_(p.beta)  # beta * (1 - r[t])
                if not p.detach_reset:
                    pre_reset = self.pre_reset[t0:t1]  # type: ignore[index]  # recorded when reset == "zero"
                    coeff.addcmul_(slope, pre_reset, value=-1.0)
            yield t0, slope, coeff
            t1 = t0

    def lambda_syn(self, t: int, lam: Tensor, out: Tensor, syn_next: Tensor) -> None:
        r"""Write :math:`\lambda_s[t] = \alpha\,\lambda_s[t+1] + (1 - r[t])\,\lambda_m[t+1]` into ``out``.

        ``lam`` is :math:`\lambda_m[t+1]`, ``syn_next`` is :math:`\lambda_s[t+1]`.
        """
        p = self.params
        if p.reset == "zero":
            torch.addcmul(lam, self.reset[t], lam, value=-1.0, out=out)
            if p.alpha != 0.0:
                out.add_(syn_next, alpha=p.alpha)
        elif p.alpha != 0.0:
            torch.add(lam, syn_next, alpha=p.alpha, out=out)
        elif out.data_ptr() != lam.data_ptr():
            out.copy_(lam)

    def feed_forward(self) -> Tensor:
        """dL/dI for a feed-forward layer: dI[t] = lambda_s[t+1]; only lambda_m[2..T-1] matter."""
        grad, steps, beta = self.grad.unbind(1), self.steps, self.params.beta
        for t in range(max(steps - 2, 0), steps):
            grad[t].zero_()  # lambda_s[T] = 0 and lambda_s[T-1] = lambda_m[T] = 0
        # lambda_m[t] can be written straight into dI[t-2] when that is all dI[t-2] is (alpha = 0, subtract reset)
        direct = self.params.alpha == 0.0 and self.params.reset == "subtract"
        lam: Tensor | None = None
        for t0, slope, coeff in self.blocks(stop=2):
            a = slope * self.grad_spikes[t0 : t0 + slope.shape[0]]  # a[t] = g[t] * dL/ds[t]
            for i in range(a.shape[0] - 1, -1, -1):
                t = t0 + i
                out = grad[t - 2] if direct else a[i]
                if lam is None:  # lambda_m[T] = 0
                    lam = out.copy_(a[i]) if direct else a[i]
                elif coeff is None:
                    lam = torch.add(a[i], lam, alpha=beta, out=out)
                else:
                    lam = torch.addcmul(a[i], coeff[i], lam, out=out)
                if not direct:
                    self.lambda_syn(t - 1, lam, grad[t - 2], grad[t - 1])  # lambda_s[t-1] = dI[t-2]
        return self.grad

    def recurrent(self, recurrent_weight: Tensor) -> Tensor:
        """dL/dI for a recurrent layer, where s[t] also reaches syn[t+1] through ``V``."""
        grad, beta = self.grad.unbind(1), self.params.beta
        grad[self.steps - 1].zero_()
        lam: Tensor | None = None
        for t0, slope, coeff in self.blocks(stop=0):
            for i in range(slope.shape[0] - 1, -1, -1):
                t = t0 + i
                # delta = dL/ds[t] + lambda_s[t+1] V ; lambda_m[t] = g[t] delta + c[t] lambda_m[t+1]
                lam_new = torch.addmm(self.grad_spikes[t], grad[t], recurrent_weight).mul_(slope[i])
                if lam is not None and coeff is not None:
                    lam_new.addcmul_(coeff[i], lam)
                elif lam is not None:
                    lam_new.add_(lam, alpha=beta)
                if t > 0:
                    if lam is None:  # lambda_s[T-1] = alpha * lambda_s[T] + ... = 0
                        grad[t - 1].zero_()
                    else:
                        self.lambda_syn(t, lam, grad[t - 1], grad[t])
                lam = lam_new
        return self.grad


def _run_layer(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    recurrent_weight: Tensor | None,
    replay: Tensor | None,
    noise: Tensor | None,
    params: LIFParameters,
    surrogate: SurrogateGradient,
    smooth: bool,
) -> Tensor:
    """The hand-written node when a gradient is needed, else the graph-free forward (same loop)."""
    tensors = (x, weight, bias, recurrent_weight)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _LIFNode.apply(x, weight, bias, recurrent_weight, replay, noise, params, surrogate, smooth)[0]
    return _LIFForward.apply(x, weight, bias, recurrent_weight, replay, noise, params, surrogate, smooth)


def lif_sequence(
    input_current: Tensor,
    params: LIFParameters,
    surrogate: SurrogateGradient,
    *,
    recurrent_weight: Tensor | None = None,
    smooth: bool = False,
    bptt: BPTTMode = "custom",
    replay_reset: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Run a LIF layer over a whole sequence and return its spikes.

    With ``bptt="custom"`` (default) the layer is a single autograd node with the hand-written adjoint backward
    (module docstring); without any gradient to track, only its graph-free forward loop runs. Under
    ``torch.func``: ``vmap`` of the gradient-free forward folds the vmapped dimension into the batch (same loop),
    ``grad``/``vjp`` use the hand-written backward; per-sample gradients (``vmap`` over ``grad``) and higher-order
    derivatives need ``bptt="autograd"``, which always runs :func:`lif_sequence_reference`.

    ``replay_reset`` evaluates the layer with the reset term :math:`r[t]` held at given values instead of its own
    spikes. For a detached reset (``params.detach_reset``) the gradient training uses is, by definition, the
    gradient of this function at :math:`r` = the unperturbed spikes, so finite differences of it check the detached
    gradient exactly (:mod:`evoexp.verification.gradient`).

    With ``params.escape_noise`` the neurons are stochastic: ``noise`` (uniform draws in [0, 1) of the spikes' shape,
    from the caller's seeded generator) samples the spikes, and without it the layer outputs the firing
    probabilities (module docstring). The draws are inputs, so a forward is a deterministic function of them.

    Args:
        input_current: ``W x[t] + b`` for all steps, shape ``[batch, time, features]``, float32 or float64.
        params: Layer constants.
        surrogate: Spike nonlinearity (Heaviside forward) and its pseudo-derivative (backward).
        recurrent_weight: Optional recurrent weight ``V`` of shape ``[features, features]``.
        smooth: Smooth mode: forward uses ``surrogate.primitive``, backward ``surrogate.derivative``.
        bptt: ``"custom"`` or ``"autograd"``.
        replay_reset: Constant reset term ``r`` of the spikes' shape (needs ``params.detach_reset``).
        noise: Uniform draws in [0, 1) of the spikes' shape sampling escape-noise spikes (needs
            ``params.escape_noise``).

    Returns:
        Spikes (0/1 values, firing probabilities of escape-noise neurons without draws, or primitive values in
        smooth mode) of shape ``[batch, time, features]``.

    Raises:
        ValueError: bad shapes, dtypes or ``bptt``, ``replay_reset`` without a detached reset, or ``noise`` without
            escape noise.
    """
    if bptt not in _BPTT_MODES:
        raise ValueError(f"bptt must be one of {_BPTT_MODES}, got {bptt!r}")
    _check_current(input_current, recurrent_weight)
    _check_replay(params, replay_reset, input_current.shape)
    _check_noise(params, noise, input_current.shape)
    if bptt == "autograd":
        return lif_sequence_reference(
            input_current,
            params,
            surrogate,
            recurrent_weight=recurrent_weight,
            smooth=smooth,
            replay_reset=replay_reset,
            noise=noise,
        )
    dtype = input_current.dtype
    if recurrent_weight is not None:
        recurrent_weight = recurrent_weight.to(dtype)
    replay = replay_reset.detach().to(dtype) if replay_reset is not None else None
    draws = noise.detach().to(dtype) if noise is not None else None
    return _run_layer(input_current, None, None, recurrent_weight, replay, draws, params, surrogate, smooth)


def linear_lif_sequence(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    params: LIFParameters,
    surrogate: SurrogateGradient,
    *,
    recurrent_weight: Tensor | None = None,
    smooth: bool = False,
    bptt: BPTTMode = "custom",
    replay_reset: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """A whole LIF layer: ``lif_sequence(sequence_linear(x, weight, bias), ...)``, as one autograd node.

    Same function and gradients as the composition (which is what ``bptt="autograd"`` runs), but with the custom
    BPTT the layer owns its input current: the membrane is stored in the current's memory, and inside
    :func:`backward_once` dL/dI overwrites it in the backward pass, so a layer allocates no ``[B, T, H]`` buffer
    besides its spikes. ``torch.func`` support, ``replay_reset`` and ``noise`` are as in :func:`lif_sequence`.

    Args:
        x: Layer input ``[batch, time, in_features]``.
        weight: ``W`` of shape ``[features, in_features]``.
        bias: Optional ``b`` of shape ``[features]``.
        params: Layer constants.
        surrogate: Spike nonlinearity and pseudo-derivative.
        recurrent_weight: Optional recurrent weight ``V`` of shape ``[features, features]``.
        smooth: Smooth mode (forward uses ``surrogate.primitive``).
        bptt: ``"custom"`` or ``"autograd"``.
        replay_reset: Constant reset term ``r`` of the spikes' shape (needs ``params.detach_reset``).
        noise: Uniform draws in [0, 1) of the spikes' shape sampling escape-noise spikes.

    Returns:
        Spikes of shape ``[batch, time, features]``.

    Raises:
        ValueError: bad shapes, dtypes or ``bptt``, ``replay_reset`` without a detached reset, or ``noise`` without
            escape noise.
    """
    if bptt not in _BPTT_MODES:
        raise ValueError(f"bptt must be one of {_BPTT_MODES}, got {bptt!r}")
    if x.dim() != 3 or x.shape[1] == 0:
        raise ValueError(f"x must have shape [batch, time>0, in_features], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    n = weight.shape[0]
    if bias is not None and tuple(bias.shape) != (n,):
        raise ValueError(f"bias must have shape ({n},), got {tuple(bias.shape)}")
    _check_recurrent_weight(n, recurrent_weight)
    _check_replay(params, replay_reset, (x.shape[0], x.shape[1], n))
    _check_noise(params, noise, (x.shape[0], x.shape[1], n))
    if bptt == "autograd":
        return lif_sequence(
            sequence_linear(x, weight, bias),
            params,
            surrogate,
            recurrent_weight=recurrent_weight,
            smooth=smooth,
            bptt=bptt,
            replay_reset=replay_reset,
            noise=noise,
        )
    if recurrent_weight is not None:
        recurrent_weight = recurrent_weight.to(weight.dtype)
    replay = replay_reset.detach().to(weight.dtype) if replay_reset is not None else None
    draws = noise.detach().to(weight.dtype) if noise is not None else None
    return _run_layer(x, weight, bias, recurrent_weight, replay, draws, params, surrogate, smooth)


def sequence_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` over a ``[batch, time, features]`` sequence that keeps the memory layout of ``x``.

    Spikes of :func:`lif_sequence` are ``[B, T, H]`` views of time-major memory; projecting them in that layout is
    one GEMM without a transposing copy, and the result is again a ``[B, T, out]`` view of time-major memory.
    """
    if _is_time_major(x):
        return F.linear(x.transpose(0, 1), weight, bias).transpose(0, 1)
    return F.linear(x, weight, bias)


def leaky_integrate(z: Tensor, beta: float) -> Tensor:
    r"""Non-spiking leaky integrator :math:`o[t] = \beta\,o[t-1] + z[t]`, :math:`o[-1] = 0`, over dim 1.

    Computed as one matrix product with the lower-triangular kernel :math:`K_{t\tau} = \beta^{t-\tau}`
    (:math:`\tau \le t`) applied to the time-major ``[T, B * features]`` matrix, so it is a single autograd node
    and works under ``torch.func`` transforms.

    Args:
        z: Input of shape ``[batch, time, features]``.
        beta: Decay :math:`\beta \in [0, 1]`.

    Returns:
        Traces of the same shape as ``z`` (a view of time-major memory).

    Raises:
        ValueError: ``z`` is not 3-D or ``beta`` is outside [0, 1].
    """
    if z.dim() != 3:
        raise ValueError(f"z must have shape [batch, time, features], got {tuple(z.shape)}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    batch, steps, n = z.shape
    idx = torch.arange(steps, device=z.device)
    lag = idx[:, None] - idx[None, :]
    kernel = torch.pow(beta, lag.clamp(min=0).to(z.dtype)).masked_fill_(lag < 0, 0.0)
    traces = kernel @ z.transpose(0, 1).reshape(steps, batch * n)
    return traces.reshape(steps, batch, n).transpose(0, 1)


def readout_logits(traces: Tensor, mode: ReadoutMode) -> Tensor:
    """Reduce readout traces ``[batch, time, classes]`` over time to logits ``[batch, classes]``.

    Args:
        traces: Readout membrane traces.
        mode: ``"max"`` (maximum over time), ``"mean"`` or ``"last"`` (final step).

    Raises:
        ValueError: unknown ``mode`` or empty time axis.
    """
    if mode not in _READOUT_MODES:
        raise ValueError(f"readout mode must be one of {_READOUT_MODES}, got {mode!r}")
    if traces.dim() != 3 or traces.shape[1] == 0:
        raise ValueError(f"traces must have shape [batch, time>0, classes], got {tuple(traces.shape)}")
    if mode == "max":
        return traces.max(dim=1).values
    if mode == "mean":
        return traces.mean(dim=1)
    return traces[:, -1]
