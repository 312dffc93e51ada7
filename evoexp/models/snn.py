r"""Spiking network modules: thin ``nn.Module`` wrappers around :mod:`evoexp.functional.lif`.

An :class:`SNN` is a stack of :class:`LIFLayer` (feed-forward or recurrent) followed by a non-spiking
:class:`LeakyReadout`. Input is ``[batch, time, channels]``; output is logits ``[batch, classes]``. Parameter names
are stable (used in reports): ``hidden.<i>.weight``, ``hidden.<i>.bias``, ``hidden.<i>.recurrent_weight``,
``readout.weight``, ``readout.bias``.

Escape noise (docs/guides/theory.md, "3. Escape noise"): with ``escape_noise`` :math:`= \beta_n` the hidden neurons
are stochastic, spikes :math:`\sim \mathrm{Bernoulli}(\sigma(\beta_n(U - \theta)))` drawn from each layer's seeded
``torch.Generator`` (:mod:`evoexp.functional.lif`); the backward is the configured surrogate's. What a forward runs is
chosen per mode: ``escape_train`` in training mode (``"sample"``: stochastic spikes, the default; ``"mean"``: the
firing probability itself, a differentiable sigmoid network), ``escape_eval`` in evaluation mode
(``"deterministic"``, the default: the noise-free neuron :math:`H(U-\theta)`; ``"sample"``: stochastic spikes, a fresh
sample per forward; ``"mean"``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import Tensor, nn

from evoexp.functional.lif import (
    BPTTMode,
    LIFParameters,
    ReadoutMode,
    ResetMode,
    leaky_integrate,
    linear_lif_sequence,
    readout_logits,
    sequence_linear,
)
from evoexp.models.layer import SpikingLayer
from evoexp.surrogate import SurrogateGradient, get_surrogate

__all__ = ["ESCAPE_MODES", "SNN", "EscapeMode", "LIFLayer", "LeakyReadout", "is_snn", "layer_sizes", "smooth_mode"]

_DEFAULT_TAU_SYN = 5.0
_DEFAULT_TAU_MEM = 10.0

EscapeMode = Literal["sample", "mean", "deterministic"]
ESCAPE_MODES: tuple[str, ...] = ("sample", "mean", "deterministic")
"""What an escape-noise layer's forward runs: sampled spikes, the firing probability, or the noise-free neuron."""


def _check_escape_mode(key: str, mode: str) -> None:
    if mode not in ESCAPE_MODES:
        raise ValueError(f"{key} must be one of {ESCAPE_MODES}, got {mode!r}")


def _init_normal(weight: Tensor, scale: float, fan_in: int, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        weight.normal_(0.0, scale / math.sqrt(fan_in), generator=generator)


def _resolve_surrogate(surrogate: SurrogateGradient | str) -> SurrogateGradient:
    if isinstance(surrogate, str):
        return get_surrogate(surrogate)
    if not isinstance(surrogate, SurrogateGradient):
        raise ValueError(f"surrogate must be a SurrogateGradient or a registered name, got {surrogate!r}")
    return surrogate


class LIFLayer(SpikingLayer):
    """A LIF layer: ``I = x W^T + b`` for all steps (one GEMM), then :func:`~evoexp.functional.lif_sequence`.

    Runs as :func:`~evoexp.functional.linear_lif_sequence` (one autograd node that owns the current).

    Args:
        in_features: Input channels ``C``.
        out_features: Neurons ``H``.
        params: LIF constants (decays, threshold, reset).
        surrogate: Spike nonlinearity and pseudo-derivative.
        recurrent: Add a recurrent weight ``V`` (``[H, H]``, parameter ``recurrent_weight``).
        bias: Learn a bias (constant input current).
        weight_scale: Weights are drawn from ``N(0, (weight_scale / sqrt(fan_in))^2)``.
        generator: Random generator for the initialisation (None: global RNG).
        bptt: ``"custom"`` (hand-written BPTT node) or ``"autograd"`` (reference loop).
        escape_train: Forward of an escape-noise layer (``params.escape_noise`` set) in training mode.
        escape_eval: Its forward in evaluation mode (module docstring).
        noise_seed: Seed of the layer's escape-noise generator (None: drawn from the global torch RNG when first
            needed).

    Attributes:
        smooth: Smooth mode (forward uses the surrogate's primitive); see :func:`smooth_mode`.
        frozen_noise: Draw the same escape noise for every forward of a given input shape (common random numbers),
            from a NumPy generator seeded with ``noise_seed``, so that the layer is a deterministic function of its
            weights; the verifiers set it on their private copies (it is also safe under ``torch.func.vmap``).
        replay_reset: ``None`` (default: the reset uses the layer's own spikes), or a constant reset term
            ``[batch, time, out_features]`` replayed instead; only for ``detach_reset`` layers. The gradient
            verifier sets it on its private copy to the unperturbed spikes (see
            :func:`~evoexp.functional.lif_sequence`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        params: LIFParameters,
        surrogate: SurrogateGradient,
        recurrent: bool = False,
        bias: bool = True,
        weight_scale: float = 1.0,
        generator: torch.Generator | None = None,
        bptt: BPTTMode = "custom",
        escape_train: EscapeMode = "sample",
        escape_eval: EscapeMode = "deterministic",
        noise_seed: int | None = None,
    ) -> None:
        super().__init__()
        _check_escape_mode("escape_train", escape_train)
        _check_escape_mode("escape_eval", escape_eval)
        self.in_features, self.out_features = in_features, out_features
        self.params = params
        self.surrogate = surrogate
        self.bptt: BPTTMode = bptt
        self.escape_train: EscapeMode = escape_train
        self.escape_eval: EscapeMode = escape_eval
        self.noise_seed = noise_seed
        self.frozen_noise = False
        self._generators: dict[torch.device, torch.Generator] = {}
        self._frozen: dict[tuple[Any, ...], Tensor] = {}
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        _init_normal(self.weight, weight_scale, in_features, generator)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.recurrent_weight: nn.Parameter | None = None
        if recurrent:
            self.recurrent_weight = nn.Parameter(torch.empty(out_features, out_features))
            _init_normal(self.recurrent_weight, weight_scale, out_features, generator)

    @property
    def recurrent(self) -> bool:
        """Whether the layer has a recurrent weight."""
        return self.recurrent_weight is not None

    @property
    def detach_reset(self) -> bool:
        """``params.detach_reset``."""
        return self.params.detach_reset

    def probe_key(self) -> tuple[object, ...]:
        """Surrogate, constants, ``bptt`` and recurrence: what the probed node depends on."""
        return (self.surrogate, self.params, self.bptt, self.recurrent)

    @property
    def escape_mode(self) -> EscapeMode | None:
        """What the next forward runs for escape noise (None: no escape noise, or smooth mode)."""
        if self.params.escape_noise is None or self.smooth:
            return None
        return self.escape_train if self.training else self.escape_eval

    def noise_draws(self, shape: tuple[int, int, int], like: Tensor) -> Tensor:
        """Uniform draws in [0, 1) of ``shape`` (``[batch, time, out_features]``) in ``like``'s dtype and device.

        From the layer's ``torch.Generator`` for ``like``'s device (seeded with ``noise_seed`` when first used), or,
        with ``frozen_noise``, the same draws for every call with this shape (see the class attributes).
        """
        if self.noise_seed is None:
            self.noise_seed = int(torch.randint(2**62, ()).item())
        if self.frozen_noise:
            key = (shape, like.dtype, like.device)
            if key not in self._frozen:
                draws = np.random.default_rng(self.noise_seed).random(shape)
                self._frozen[key] = torch.from_numpy(draws).to(dtype=like.dtype, device=like.device)
            return self._frozen[key]
        generator = self._generators.get(like.device)
        if generator is None:
            generator = torch.Generator(device=like.device).manual_seed(self.noise_seed)
            self._generators[like.device] = generator
        return torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)

    def forward(self, x: Tensor) -> Tensor:
        """Map input ``[batch, time, in_features]`` to spikes ``[batch, time, out_features]``."""
        params, noise = self.params, None
        mode = self.escape_mode
        if mode == "deterministic":
            params = dataclasses.replace(params, escape_noise=None)
        elif mode == "sample":
            noise = self.noise_draws((x.shape[0], x.shape[1], self.out_features), self.weight)
        return linear_lif_sequence(
            x,
            self.weight,
            self.bias,
            params,
            self.surrogate,
            recurrent_weight=self.recurrent_weight,
            smooth=self.smooth,
            bptt=self.bptt,
            replay_reset=self.replay_reset,
            noise=noise,
        )

    def spike_probe(self) -> Callable[[Tensor], Tensor]:
        r"""The spike function this layer's node actually computes, as an elementwise function of ``mem - threshold``.

        For an escape-noise layer the probe runs its noise-free spike (same backward).

        ``probe(v)`` runs, for each entry of ``v``, a one-neuron, three-step current
        :math:`I = (v + \theta, 0, 0)` through the layer's own node (:func:`~evoexp.functional.linear_lif_sequence`
        with its constants, surrogate, ``bptt`` and a zero recurrent weight if it is recurrent; spiking mode). Then
        :math:`\mathrm{mem}[2] - \theta = v` and the probe returns :math:`s[2] = H(v)`; its autograd gradient is
        whatever the node's hand-written backward computes for :math:`\partial s[2]/\partial \mathrm{mem}[2]`,
        which must be the surrogate's declared derivative :math:`g(v)`. This is what the suite's runtime surrogate
        check compares (:mod:`evoexp.verification.surrogate_check`).

        The probe is defined for finite ``v``. At :math:`v = \pm\infty` the membrane has diverged and the node's
        state is not defined: a reset to zero computes :math:`p - p\,r[1]` with :math:`p = \beta\,\mathrm{mem}[1] +
        \mathrm{syn}[1] = \pm\infty` and :math:`r[1] = 0`, which is NaN (in the autograd reference too). The check
        therefore asks the node at finite extremes only (``SpikeProbe.extremes``); training reports a diverged
        network separately.
        """
        theta = self.params.threshold
        params = dataclasses.replace(self.params, escape_noise=None)

        def probe(v: Tensor) -> Tensor:
            flat = v.reshape(-1)
            zeros = torch.zeros_like(flat)
            x = torch.stack([flat + theta, zeros, zeros], dim=1).unsqueeze(2)  # [N, 3, 1]
            weight = torch.ones(1, 1, dtype=v.dtype, device=v.device)
            recurrent = torch.zeros(1, 1, dtype=v.dtype, device=v.device) if self.recurrent else None
            spikes = linear_lif_sequence(
                x, weight, None, params, self.surrogate, recurrent_weight=recurrent, bptt=self.bptt
            )
            return spikes[:, 2, 0].reshape(v.shape)

        return probe

    def probe_offset(self, v: Tensor) -> Tensor:
        r"""The membrane offset :math:`\mathrm{mem}[2] - \theta` that :meth:`spike_probe` feeds its node for ``v``.

        The probe's current is :math:`v + \theta` and the node subtracts :math:`\theta` again, so the offset is
        :math:`(v + \theta) - \theta` in ``v``'s dtype: ``v`` up to one rounding. At a jump of the surrogate's
        derivative (the edges of a box) that rounding decides the side, so the derivative the node must produce is
        the declared one at this offset.
        """
        theta = self.params.threshold
        return (v + theta) - theta

    def extra_repr(self) -> str:
        p = self.params
        return (
            f"{self.in_features}, {self.out_features}, alpha={p.alpha:.4g}, beta={p.beta:.4g}, "
            f"threshold={p.threshold:g}, reset={p.reset}, detach_reset={p.detach_reset}, "
            f"recurrent={self.recurrent}, surrogate={self.surrogate!r}, smooth={self.smooth}"
            + (
                ""
                if p.escape_noise is None
                else f", escape_noise={p.escape_noise:g}, escape_train={self.escape_train}, "
                f"escape_eval={self.escape_eval}"
            )
        )


class LeakyReadout(nn.Module):
    r"""Non-spiking leaky integrator readout: :math:`o[t] = \beta\,o[t-1] + W s[t] + b`, logits reduced over time.

    Args:
        in_features: Hidden neurons feeding the readout.
        out_features: Classes.
        beta: Readout decay in [0, 1].
        mode: ``"max"``, ``"mean"`` or ``"last"`` over time.
        bias: Learn a bias.
        weight_scale: Weights are drawn from ``N(0, (weight_scale / sqrt(fan_in))^2)``.
        generator: Random generator for the initialisation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        beta: float,
        mode: ReadoutMode = "max",
        bias: bool = True,
        weight_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"readout_beta must be in [0, 1], got {beta!r}")
        if mode not in ("max", "mean", "last"):
            raise ValueError(f"readout must be one of ('max', 'mean', 'last'), got {mode!r}")
        self.beta, self.mode = float(beta), mode
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        _init_normal(self.weight, weight_scale, in_features, generator)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def traces(self, spikes: Tensor) -> Tensor:
        """Readout membrane traces ``[batch, time, classes]`` for hidden spikes ``[batch, time, in_features]``."""
        return leaky_integrate(sequence_linear(spikes, self.weight, self.bias), self.beta)

    def forward(self, spikes: Tensor) -> Tensor:
        """Logits ``[batch, classes]``."""
        return readout_logits(self.traces(spikes), self.mode)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, beta={self.beta:.4g}, mode={self.mode}"


def layer_sizes(
    hidden_sizes: Sequence[int], *, input_size: int | None = None, output_size: int | None = None
) -> list[int]:
    """The hidden sizes as a list, after checking them and, when given, the input and output sizes (SNN and ANN).

    Raises:
        ValueError: A size is not a positive int, or ``hidden_sizes`` is empty (the message starts with its name).
    """
    for name, value in (("input_size", input_size), ("output_size", output_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    sizes = list(hidden_sizes)
    if not sizes or not all(not isinstance(h, bool) and isinstance(h, int) and h > 0 for h in sizes):
        raise ValueError(f"hidden_sizes must be a non-empty sequence of positive ints, got {hidden_sizes!r}")
    return sizes


def _checked_sizes(
    input_size: int, hidden_sizes: Sequence[int], output_size: int, *, bptt: str, weight_scale: float
) -> list[int]:
    """The hidden sizes as a list, after checking the sizes, the BPTT mode and the weight scale of an :class:`SNN`."""
    sizes = layer_sizes(hidden_sizes, input_size=input_size, output_size=output_size)
    if bptt not in ("custom", "autograd"):
        raise ValueError(f"bptt must be 'custom' or 'autograd', got {bptt!r}")
    if not (math.isfinite(weight_scale) and weight_scale > 0):
        raise ValueError(f"weight_scale must be a finite number > 0, got {weight_scale!r}")
    return sizes


def _decays(
    alpha: float | None, beta: float | None, tau_syn: float | None, tau_mem: float | None, dt: float
) -> tuple[float, float]:
    """``(alpha, beta)``: each given directly or from its time constant (default ``tau_syn=5``, ``tau_mem=10``)."""
    for name, given, tau_name, tau in (("alpha", alpha, "tau_syn", tau_syn), ("beta", beta, "tau_mem", tau_mem)):
        if given is not None and tau is not None:
            raise ValueError(f"give either {name} or {tau_name}, not both ({name}={given!r}, {tau_name}={tau!r})")
    decays = LIFParameters.from_time_constants(
        tau_syn=_DEFAULT_TAU_SYN if tau_syn is None else tau_syn,
        tau_mem=_DEFAULT_TAU_MEM if tau_mem is None else tau_mem,
        dt=dt,
    )
    return decays.alpha if alpha is None else alpha, decays.beta if beta is None else beta


def _noise_seeds(seed: int | None, n_layers: int) -> list[int | None]:
    """One escape-noise seed per hidden layer (None: global RNG).

    Each layer's noise stream is seeded from a tree of its own, so the initial weights do not depend on the noise.
    """
    if seed is None:
        return [None] * n_layers
    children = np.random.SeedSequence(seed).spawn(n_layers)
    return [int(child.generate_state(1, np.uint64)[0] >> 2) for child in children]


class SNN(nn.Module):
    r"""Multi-layer LIF network with a leaky non-spiking readout.

    Decays: give ``alpha``/``beta`` directly or as time constants ``tau_syn``/``tau_mem`` with step ``dt``
    (``alpha = exp(-dt/tau_syn)``); not both for the same decay. Defaults: ``tau_syn=5``, ``tau_mem=10``, ``dt=1``.
    ``alpha=0`` gives the simple current-free LIF.

    Args:
        input_size: Input channels ``C``.
        hidden_sizes: Neurons per hidden layer (at least one layer).
        output_size: Classes.
        surrogate: Surrogate object or registered name (default parameters).
        alpha: Synaptic decay in [0, 1].
        beta: Membrane decay in [0, 1].
        tau_syn: Synaptic time constant (> 0).
        tau_mem: Membrane time constant (> 0).
        dt: Time step (> 0).
        threshold: Firing threshold (> 0).
        reset: ``"subtract"`` or ``"zero"``.
        detach_reset: Exclude the reset from the backward pass.
        recurrent: Recurrent hidden layers.
        readout: ``"max"``, ``"mean"`` or ``"last"`` logits over time.
        readout_beta: Readout decay (default: the membrane decay ``beta``).
        bias: Learn biases.
        weight_scale: Initial weights ``N(0, (weight_scale/sqrt(fan_in))^2)``.
        seed: Seed of the initialisation (None: global RNG).
        bptt: ``"custom"`` (fast hand-written BPTT, once-differentiable; works under ``torch.func.vmap`` without
            gradients and under ``torch.func.grad``) or ``"autograd"`` (reference loop, also for higher-order
            derivatives and per-sample gradients).
        escape_noise: Steepness :math:`\beta_n > 0` of the hidden neurons' escape function (stochastic neurons,
            module docstring), or None for deterministic neurons.
        escape_train: Escape-noise forward in training mode (``"sample"`` or ``"mean"``).
        escape_eval: Escape-noise forward in evaluation mode (``"deterministic"``, ``"sample"`` or ``"mean"``).

    Attributes:
        last_spikes: Hidden spikes ``[batch, time, H_l]`` per layer from the last forward call (still attached to
            the graph, for rate regularisers); not updated while ``record_spikes`` is off.
        record_spikes: Whether a forward call records ``last_spikes`` (default True). Switch it off before calling
            the model under ``torch.func`` transforms, whose tensors must not outlive the transform (the
            verifiers' private copies do).
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        output_size: int,
        *,
        surrogate: SurrogateGradient | str = "fast_sigmoid",
        alpha: float | None = None,
        beta: float | None = None,
        tau_syn: float | None = None,
        tau_mem: float | None = None,
        dt: float = 1.0,
        threshold: float = 1.0,
        reset: ResetMode = "subtract",
        detach_reset: bool = False,
        recurrent: bool = False,
        readout: ReadoutMode = "max",
        readout_beta: float | None = None,
        bias: bool = True,
        weight_scale: float = 1.0,
        seed: int | None = None,
        bptt: BPTTMode = "custom",
        escape_noise: float | None = None,
        escape_train: EscapeMode = "sample",
        escape_eval: EscapeMode = "deterministic",
    ) -> None:
        super().__init__()
        sizes = _checked_sizes(input_size, hidden_sizes, output_size, bptt=bptt, weight_scale=weight_scale)
        alpha, beta = _decays(alpha, beta, tau_syn, tau_mem, dt)
        params = LIFParameters(
            alpha=alpha,
            beta=beta,
            threshold=threshold,
            reset=reset,
            detach_reset=detach_reset,
            escape_noise=escape_noise,
        )
        shape = _resolve_surrogate(surrogate)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        noise_seeds = _noise_seeds(seed, len(sizes))
        self.input_size, self.hidden_sizes, self.output_size = input_size, tuple(sizes), output_size
        self.params = params
        self.hidden = nn.ModuleList()
        fan_in = input_size
        for size, noise_seed in zip(sizes, noise_seeds):
            self.hidden.append(
                LIFLayer(
                    fan_in,
                    size,
                    params=params,
                    surrogate=shape,
                    recurrent=recurrent,
                    bias=bias,
                    weight_scale=weight_scale,
                    generator=generator,
                    bptt=bptt,
                    escape_train=escape_train,
                    escape_eval=escape_eval,
                    noise_seed=noise_seed,
                )
            )
            fan_in = size
        self.readout = LeakyReadout(
            fan_in,
            output_size,
            beta=beta if readout_beta is None else readout_beta,
            mode=readout,
            bias=bias,
            weight_scale=weight_scale,
            generator=generator,
        )
        self.last_spikes: list[Tensor] = []
        self.record_spikes = True

    def __getstate__(self) -> dict[str, Any]:
        """Pickle/deepcopy state without the recorded spikes (graph tensors cannot be deep-copied)."""
        state = super().__getstate__()
        state["last_spikes"] = []
        return state

    @property
    def hidden_layers(self) -> nn.ModuleList:
        """The hidden :class:`LIFLayer` stack."""
        return self.hidden

    @property
    def surrogate(self) -> SurrogateGradient:
        """The surrogate shared by all hidden layers (settable with an object or a registered name)."""
        return cast(LIFLayer, self.hidden[0]).surrogate

    @surrogate.setter
    def surrogate(self, value: SurrogateGradient | str) -> None:
        shape = _resolve_surrogate(value)
        for layer in cast("list[LIFLayer]", list(self.hidden)):
            layer.surrogate = shape

    @property
    def smooth(self) -> bool:
        """Smooth mode of the hidden layers (settable)."""
        return all(layer.smooth for layer in self.hidden)

    @smooth.setter
    def smooth(self, value: bool) -> None:
        for layer in cast("list[LIFLayer]", list(self.hidden)):
            layer.smooth = bool(value)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[batch, output_size]`` for input ``[batch, time, input_size]`` (cast to the parameters' dtype).

        Raises:
            ValueError: ``x`` has the wrong shape.
        """
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"x must have shape [batch, time, {self.input_size}], got {tuple(x.shape)}")
        h = x.to(self.readout.weight.dtype)
        spikes = []
        for layer in self.hidden:
            h = layer(h)
            spikes.append(h)
        if self.record_spikes:
            self.last_spikes = spikes
        return self.readout(h)

    def _layer_names(self) -> list[str]:
        return [f"hidden.{i}" for i in range(len(self.hidden))]

    def spike_counts(self) -> dict[str, Tensor]:
        """Spikes per neuron summed over batch and time, per hidden layer (``"hidden.<i>"``), last forward.

        Raises:
            RuntimeError: no forward pass has been recorded yet.
        """
        if not self.last_spikes:
            raise RuntimeError("no recorded forward pass: call the model on an input first")
        return {name: s.detach().sum(dim=(0, 1)) for name, s in zip(self._layer_names(), self.last_spikes)}

    def firing_rates(self) -> dict[str, float]:
        """Mean spikes per neuron per time step, per hidden layer, for the last forward pass.

        Raises:
            RuntimeError: no forward pass has been recorded yet.
        """
        if not self.last_spikes:
            raise RuntimeError("no recorded forward pass: call the model on an input first")
        return {name: float(s.detach().mean()) for name, s in zip(self._layer_names(), self.last_spikes)}


def is_snn(model: nn.Module) -> bool:
    """Return True if ``model`` contains an evoexp spiking layer (a :class:`~evoexp.models.layer.SpikingLayer`)."""
    return any(isinstance(m, SpikingLayer) for m in model.modules())


@contextmanager
def smooth_mode(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Temporarily switch every evoexp spiking layer inside ``model`` to smooth mode (or out of it).

    In smooth mode the forward uses the surrogate's primitive, so the surrogate gradient is the exact gradient of a
    differentiable network. Previous settings are restored on exit, also after an exception.

    Raises:
        ValueError: ``model`` contains no spiking layer.
    """
    layers = [m for m in model.modules() if isinstance(m, SpikingLayer)]
    if not layers:
        raise ValueError(f"model contains no LIF layers: {type(model).__name__}")
    previous = [layer.smooth for layer in layers]
    for layer in layers:
        layer.smooth = enabled
    try:
        yield model
    finally:
        for layer, value in zip(layers, previous):
            layer.smooth = value
