r"""Pure functional leaky integrate-and-fire (LIF) dynamics with a hand-written BPTT backward.

Discrete-time current-based LIF neuron (DESIGN §3), for input current :math:`I[t] = W x[t] + b` computed by the
caller for all time steps at once (one GEMM):

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

* :func:`lif_sequence_reference` — a plain loop of autograd ops (the specification, and the path used under
  ``torch.func`` transforms such as ``vmap``/``grad``).
* the default fast path of :func:`lif_sequence` — one ``torch.autograd.Function`` node per layer whose forward loops
  over time without building a graph and whose backward runs the adjoint recursion in reverse time. Writing
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
(``I[t-1]`` is consumed when ``mem[t+1]`` is written), adds the bias inside the time loop, and the backward writes
:math:`\partial L/\partial I` over the membrane it has read, so a layer allocates no ``[B, T, H]`` buffer besides
its spikes; the weight and bias gradients follow from :math:`\partial L/\partial I` as usual.

All tensors are batch-first: ``[batch, time, features]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
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
    "decay_from_time_constant",
    "functorch_active",
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
    """

    alpha: float = math.exp(-1.0 / 5.0)
    beta: float = math.exp(-1.0 / 10.0)
    threshold: float = 1.0
    reset: ResetMode = "subtract"
    detach_reset: bool = False

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


def functorch_active(*tensors: Tensor | None) -> bool:
    """Return True if any tensor is wrapped by a ``torch.func`` transform (vmap, grad, jvp, ...)."""
    return any(t is not None and torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)


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


def lif_sequence_reference(
    input_current: Tensor,
    params: LIFParameters,
    surrogate: SurrogateGradient,
    *,
    recurrent_weight: Tensor | None = None,
    smooth: bool = False,
) -> Tensor:
    """Run the LIF dynamics with plain autograd ops (one small graph per time step).

    This is the executable specification of the module docstring's equations; it works under ``torch.func``
    transforms. Slow for long sequences.

    Args:
        input_current: Input current ``I`` of shape ``[batch, time, features]``.
        params: Layer constants.
        surrogate: Spike nonlinearity; ``surrogate.spike`` (or ``surrogate.smooth`` in smooth mode) is used.
        recurrent_weight: Optional ``V`` of shape ``[features, features]`` (``syn += s @ V.T``).
        smooth: Use the surrogate's primitive instead of the Heaviside step in the forward pass.

    Returns:
        Spikes of shape ``[batch, time, features]``.

    Raises:
        ValueError: bad shapes or dtypes.
    """
    _check_current(input_current, recurrent_weight)
    fire = surrogate.smooth if smooth else surrogate.spike
    alpha, beta, theta = params.alpha, params.beta, params.threshold
    # Few fused ops per step: under torch.func.vmap every op pays a fixed batching overhead. In-place updates only
    # touch tensors created in the same step that no autograd node has saved.
    currents = input_current.unbind(1)
    syn = torch.zeros_like(currents[0])
    mem = torch.zeros_like(syn)
    weight_t = recurrent_weight.T if recurrent_weight is not None else None
    spikes = []
    for t, current in enumerate(currents):
        spike = fire(mem - theta)
        reset = spike.detach() if params.detach_reset else spike
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


@dataclass(frozen=True)
class _Membrane:
    """Where the forward loop stored the membrane.

    ``mem[t]`` is ``head[t]`` for ``t < offset``, else ``body[t - offset]`` (both indexed ``[time, batch, features]``).
    """

    head: Tensor | None
    body: Tensor
    offset: int

    def block(self, t0: int, t1: int) -> Tensor:
        """``mem[t0:t1]``; the block must not straddle ``offset``."""
        if t1 <= self.offset:
            return self.head[t0:t1]  # type: ignore[index]
        return self.body[t0 - self.offset : t1 - self.offset]


def _forward_loop(
    current: Tensor,
    recurrent_weight: Tensor | None,
    params: LIFParameters,
    surrogate: SurrogateGradient,
    smooth: bool,
    *,
    in_place: bool = False,
    bias: Tensor | None = None,
) -> tuple[Tensor, _Membrane, Tensor | None]:
    """Graph-free forward loop.

    Returns spikes, the membrane ``mem[0..T-1]`` and, for a zero reset, the pre-reset values
    ``beta * mem[t] + syn[t]``. Spikes and pre-reset values are stored time-major (``[T, B, H]`` memory) so that
    every step writes contiguous memory; spikes are returned as a ``[B, T, H]`` view of that storage.

    With ``in_place`` the input current is consumed: ``I[t-1]`` has been read when ``mem[t+1]`` is computed, so
    ``mem[t]`` (``t >= 2``) overwrites ``current[:, t-2]`` and only ``mem[0]``, ``mem[1]`` need new memory. The
    caller must own ``current`` (no one else may read it afterwards); it may then pass the ``bias`` that is still
    to be added to it, which costs one op on cache-warm memory per step instead of a pass over all of it.
    """
    batch, steps, n = current.shape
    spikes = current.new_empty(steps, batch, n)
    pre_reset = torch.empty_like(spikes) if params.reset == "zero" else None
    currents = current.unbind(1)
    if in_place:
        head = current.new_zeros(2, batch, n)
        mem_views = [*head.unbind(0), *currents]  # mem[t] -> current[:, t-2]; mem[T] lands in an unused slot
        membrane = _Membrane(head, current.transpose(0, 1), 2)
    else:
        body = current.new_empty(steps, batch, n)
        body[0].zero_()
        mem_views = [*body.unbind(0), current.new_empty(batch, n)]  # mem[T] is never read
        membrane = _Membrane(None, body, 0)
    spike_views = spikes.unbind(0)
    use_syn_state = params.alpha != 0.0 or recurrent_weight is not None
    syn = current.new_zeros(batch, n)
    weight_t = recurrent_weight.T if recurrent_weight is not None else None
    alpha, beta, theta = params.alpha, params.beta, params.threshold
    for t in range(steps):
        mem, spike, mem_next = mem_views[t], spike_views[t], mem_views[t + 1]
        if bias is not None:  # I[t] is first read at step t (alpha != 0, recurrent) or t + 1
            currents[t].add_(bias)
        if smooth:
            spike.copy_(surrogate.primitive(mem - theta))
        else:
            torch.gt(mem, theta, out=spike)
        if not use_syn_state:  # alpha == 0, feed-forward: syn[t] = I[t-1] (in place: the very slot of mem[t+1])
            syn = currents[t - 1] if t > 0 else syn
        if pre_reset is None:
            torch.add(syn, mem, alpha=beta, out=mem_next)
            mem_next.sub_(spike, alpha=theta)
        else:
            torch.add(syn, mem, alpha=beta, out=pre_reset[t])
            torch.addcmul(pre_reset[t], pre_reset[t], spike, value=-1.0, out=mem_next)
        if use_syn_state:
            torch.add(currents[t], syn, alpha=alpha, out=syn)
            if weight_t is not None:
                syn.addmm_(spike, weight_t)
    return spikes.transpose(0, 1), membrane, pre_reset


def _graph_retained() -> bool:
    """True inside a backward pass that keeps the graph (``retain_graph=True``); True if PyTorch cannot tell."""
    query = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if query is None else bool(query())


def _recurrent_weight_grad(grad_current: Tensor, spikes: Tensor) -> Tensor:
    """dL/dV = sum_t lambda_s[t+1] s[t]^T: one GEMM over all (time, batch) rows, time-major like the spikes."""
    return _rows(grad_current, True).T @ _rows(spikes, True)


class _LIFFunction(torch.autograd.Function):
    """One autograd node for a whole LIF layer: graph-free forward loop, adjoint recursion backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        current: Tensor,
        recurrent_weight: Tensor | None,
        params: LIFParameters,
        surrogate: SurrogateGradient,
        smooth: bool,
    ) -> Tensor:
        spikes, membrane, pre_reset = _forward_loop(current, recurrent_weight, params, surrogate, smooth)
        ctx.params, ctx.surrogate = params, surrogate
        ctx.time_major = _is_time_major(current)
        ctx.save_for_backward(spikes, membrane.body, pre_reset, recurrent_weight)
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        spikes, body, pre_reset, recurrent_weight = ctx.saved_tensors
        adjoint = _Adjoint(
            ctx.params, ctx.surrogate, spikes, _Membrane(None, body, 0), pre_reset, grad_spikes, ctx.time_major
        )
        if recurrent_weight is None:
            return adjoint.feed_forward(), None, None, None, None
        grad_current = adjoint.recurrent(recurrent_weight)
        return grad_current, _recurrent_weight_grad(grad_current, spikes), None, None, None


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


class _LinearLIFFunction(torch.autograd.Function):
    """One autograd node for ``I = x W^T + b`` followed by a LIF layer.

    Owning the current lets the forward loop store the membrane in the current's memory and the backward write
    dL/dI over the membrane (when the graph is not retained): a layer then allocates no ``[B, T, H]`` buffer besides
    its spikes. The current is time-major for large layers (see :func:`_layer_current`); the weight and bias
    gradients are GEMMs and a row sum over dL/dI.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        recurrent_weight: Tensor | None,
        params: LIFParameters,
        surrogate: SurrogateGradient,
        smooth: bool,
    ) -> Tensor:
        current = _layer_current(x, weight)
        spikes, membrane, pre_reset = _forward_loop(
            current.transpose(0, 1), recurrent_weight, params, surrogate, smooth, in_place=True, bias=bias
        )
        ctx.params, ctx.surrogate, ctx.has_bias = params, surrogate, bias is not None
        ctx.time_major = _is_time_major(current.transpose(0, 1))  # the fresh gradient gets the same layout
        ctx.save_for_backward(x, weight, spikes, membrane.head, current, pre_reset, recurrent_weight)
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, spikes, head, current, pre_reset, recurrent_weight = ctx.saved_tensors
        membrane = _Membrane(head, current, 2)
        # overwrite the membrane with dL/dI only if no later backward pass needs it again
        storage = None if _graph_retained() else current.transpose(0, 1)
        adjoint = _Adjoint(ctx.params, ctx.surrogate, spikes, membrane, pre_reset, grad_spikes, ctx.time_major, storage)
        if recurrent_weight is None:
            grad_current, grad_recurrent = adjoint.feed_forward(), None
        else:
            grad_current = adjoint.recurrent(recurrent_weight)
            grad_recurrent = _recurrent_weight_grad(grad_current, spikes) if ctx.needs_input_grad[3] else None
        grad_x = None
        if ctx.needs_input_grad[0]:  # in the memory layout of dL/dI
            if ctx.time_major:
                grad_x = torch.matmul(grad_current.transpose(0, 1), weight).transpose(0, 1)
            else:
                grad_x = torch.matmul(grad_current, weight)
        grad_weight, grad_bias = _linear_grads(
            grad_current, x, weight=ctx.needs_input_grad[1], bias=ctx.has_bias and ctx.needs_input_grad[2]
        )
        return grad_x, grad_weight, grad_bias, grad_recurrent, None, None, None


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
        spikes: Tensor,
        membrane: _Membrane,
        pre_reset: Tensor | None,
        grad_spikes: Tensor,
        time_major: bool,
        storage: Tensor | None = None,
    ) -> None:
        self.params, self.surrogate = params, surrogate
        self.spikes = spikes.transpose(0, 1)  # time-major [T, B, H] (the saved view's storage)
        self.membrane, self.pre_reset = membrane, pre_reset
        self.grad_spikes = grad_spikes.transpose(0, 1)
        batch, steps, n = spikes.shape  # the gradient gets the memory layout of the input current
        if storage is not None:
            self.grad = storage
        elif time_major:
            self.grad = spikes.new_empty(steps, batch, n).transpose(0, 1)
        else:
            self.grad = spikes.new_empty(batch, steps, n)
        self.steps = steps
        self.block = max(1, _BLOCK_ELEMENTS // max(1, batch * n))

    def blocks(self, stop: int) -> Iterator[tuple[int, Tensor, Tensor | None]]:
        r"""Yield ``(t0, g, c)`` for blocks ``[t0, t1)`` from the end of time down to ``stop``.

        ``g`` is the surrogate derivative of the block; ``c`` the coefficient of :math:`\lambda_m[t+1]` in
        :math:`\partial L/\partial \mathrm{mem}[t]` (None when it is the constant :math:`\beta`). Both are new
        tensors, computed before the caller writes anything for the block.
        """
        p, offset = self.params, self.membrane.offset
        t1 = self.steps
        while t1 > stop:
            t0 = max(stop, t1 - self.block, offset if t1 > offset else 0)
            slope = self.surrogate.derivative(self.membrane.block(t0, t1) - p.threshold)
            coeff: Tensor | None = None
            if p.reset == "subtract":
                if not p.detach_reset:
                    coeff = torch.mul(slope, -p.threshold).add_(p.beta)
            else:
                coeff = torch.mul(self.spikes[t0:t1], -p.beta).add_(p.beta)  # beta * (1 - r[t])
                if not p.detach_reset:
                    coeff.addcmul_(slope, self.pre_reset[t0:t1], value=-1.0)  # type: ignore[index]
            yield t0, slope, coeff
            t1 = t0

    def lambda_syn(self, t: int, lam: Tensor, out: Tensor, syn_next: Tensor) -> None:
        r"""Write :math:`\lambda_s[t] = \alpha\,\lambda_s[t+1] + (1 - r[t])\,\lambda_m[t+1]` into ``out``.

        ``lam`` is :math:`\lambda_m[t+1]`, ``syn_next`` is :math:`\lambda_s[t+1]`.
        """
        p = self.params
        if p.reset == "zero":
            torch.addcmul(lam, self.spikes[t], lam, value=-1.0, out=out)
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


def lif_sequence(
    input_current: Tensor,
    params: LIFParameters,
    surrogate: SurrogateGradient,
    *,
    recurrent_weight: Tensor | None = None,
    smooth: bool = False,
    bptt: BPTTMode = "custom",
) -> Tensor:
    """Run a LIF layer over a whole sequence and return its spikes.

    With ``bptt="custom"`` (default) the layer is a single autograd node with the hand-written adjoint backward
    (module docstring); inside ``torch.func`` transforms (vmap, grad, ...) it falls back to
    :func:`lif_sequence_reference`, which computes the same function with ordinary autograd ops. Without any
    gradient to track, only the graph-free forward loop runs. ``bptt="autograd"`` always uses the reference; use
    it for higher-order derivatives (the custom node is once-differentiable).

    Args:
        input_current: ``W x[t] + b`` for all steps, shape ``[batch, time, features]``, float32 or float64.
        params: Layer constants.
        surrogate: Spike nonlinearity (Heaviside forward) and its pseudo-derivative (backward).
        recurrent_weight: Optional recurrent weight ``V`` of shape ``[features, features]``.
        smooth: Smooth mode: forward uses ``surrogate.primitive``, backward ``surrogate.derivative``.
        bptt: ``"custom"`` or ``"autograd"``.

    Returns:
        Spikes (0/1 values, or primitive values in smooth mode) of shape ``[batch, time, features]``.

    Raises:
        ValueError: bad shapes, dtypes or ``bptt``.
    """
    if bptt not in _BPTT_MODES:
        raise ValueError(f"bptt must be one of {_BPTT_MODES}, got {bptt!r}")
    _check_current(input_current, recurrent_weight)
    if bptt == "autograd" or functorch_active(input_current, recurrent_weight):
        return lif_sequence_reference(
            input_current, params, surrogate, recurrent_weight=recurrent_weight, smooth=smooth
        )
    current = input_current
    if recurrent_weight is not None:
        recurrent_weight = recurrent_weight.to(current.dtype)
    needs_grad = torch.is_grad_enabled() and (
        current.requires_grad or (recurrent_weight is not None and recurrent_weight.requires_grad)
    )
    if not needs_grad:
        with torch.no_grad():
            return _forward_loop(current, recurrent_weight, params, surrogate, smooth)[0]
    return _LIFFunction.apply(current, recurrent_weight, params, surrogate, smooth)


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
) -> Tensor:
    """A whole LIF layer: ``lif_sequence(sequence_linear(x, weight, bias), ...)``, as one autograd node.

    Same function and gradients as the composition (which is what ``bptt="autograd"`` and ``torch.func`` transforms
    run), but with the custom BPTT the layer owns its input current: the membrane is stored in the current's memory
    and dL/dI overwrites it in the backward pass (unless the graph is retained), so a layer allocates no
    ``[B, T, H]`` buffer besides its spikes.

    Args:
        x: Layer input ``[batch, time, in_features]``.
        weight: ``W`` of shape ``[features, in_features]``.
        bias: Optional ``b`` of shape ``[features]``.
        params: Layer constants.
        surrogate: Spike nonlinearity and pseudo-derivative.
        recurrent_weight: Optional recurrent weight ``V`` of shape ``[features, features]``.
        smooth: Smooth mode (forward uses ``surrogate.primitive``).
        bptt: ``"custom"`` or ``"autograd"``.

    Returns:
        Spikes of shape ``[batch, time, features]``.

    Raises:
        ValueError: bad shapes, dtypes or ``bptt``.
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
    tensors = (x, weight, bias, recurrent_weight)
    if bptt == "autograd" or functorch_active(*tensors):
        return lif_sequence(
            sequence_linear(x, weight, bias),
            params,
            surrogate,
            recurrent_weight=recurrent_weight,
            smooth=smooth,
            bptt=bptt,
        )
    if recurrent_weight is not None:
        recurrent_weight = recurrent_weight.to(weight.dtype)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    if not needs_grad:
        with torch.no_grad():
            current = _layer_current(x, weight).transpose(0, 1)
            return _forward_loop(current, recurrent_weight, params, surrogate, smooth, in_place=True, bias=bias)[0]
    return _LinearLIFFunction.apply(x, weight, bias, recurrent_weight, params, surrogate, smooth)


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
