"""evoexp's own networks as the callables its model presets name (``_target_``): signature = configuration.

A preset such as ``conf/model/snn.yaml`` is the call ``lif_snn(n_inputs, n_classes, surrogate=..., hidden_sizes=...,
...)``: its keys are this module's keyword arguments, and what only the data knows (``n_inputs``, ``n_classes``) and
the configured ``surrogate`` are passed by the job (docs/guides/your-network.md). Each factory checks its arguments
first, with messages that start with the argument's name.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from evoexp.arguments import checked_by
from evoexp.functional.lif import ReadoutMode, ResetMode
from evoexp.models.ann import ANN, available_activations
from evoexp.models.snn import ESCAPE_MODES, SNN, EscapeMode, layer_sizes
from evoexp.surrogate import SurrogateGradient

__all__ = ["check_lif_snn", "check_mlp", "lif_snn", "mlp"]

_FLOAT32_MAX = 3.4028234663852886e38

def _positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    """Raise a ValueError starting with ``name`` unless ``value`` is a finite number > 0 (or None when allowed)."""
    if value is None and allow_none:
        return
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _one_of(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")


def _warn_short_step(dt: float, tau_mem: float, tau_syn: float | None) -> None:
    """Warn (``UserWarning``) when ``dt`` exceeds a time constant: the neuron then forgets within one step."""
    short = [(name, tau) for name, tau in (("tau_mem", tau_mem), ("tau_syn", tau_syn)) if tau is not None and dt > tau]
    if short:
        kept = ", ".join(f"exp(-dt/{name}) = {math.exp(-dt / tau):.2g}" for name, tau in short)
        taus = " and ".join(f"{name}={tau:g}" for name, tau in short)
        warnings.warn(
            f"dt={dt:g} is larger than {taus}: each step keeps only {kept} of the state, so the neuron forgets "
            "within one step",
            stacklevel=3,
        )


def check_lif_snn(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`lif_snn` (:func:`~evoexp.arguments.checked_by`): messages start with the name.

    Raises:
        ValueError: The first invalid argument.
    """
    layer_sizes(args["hidden_sizes"])
    _positive("tau_mem", args["tau_mem"])
    _positive("tau_syn", args["tau_syn"], allow_none=True)
    _positive("dt", args["dt"])
    _positive("threshold", args["threshold"])
    _one_of("reset", args["reset"], ("subtract", "zero"))
    _one_of("readout", args["readout"], ("max", "mean", "last"))
    readout_beta = args["readout_beta"]
    if readout_beta is not None and (isinstance(readout_beta, bool) or not 0 <= readout_beta <= 1):
        raise ValueError(f"readout_beta must be in [0, 1] or null, got {readout_beta!r}")
    weight_scale = args["weight_scale"]
    _positive("weight_scale", weight_scale)
    if weight_scale > _FLOAT32_MAX:
        raise ValueError(
            f"weight_scale={weight_scale:g} is beyond float32 (max {_FLOAT32_MAX:.3g}): the initial weights would be "
            "infinite"
        )
    _positive("escape_noise", args["escape_noise"], allow_none=True)
    _one_of("escape_train", args["escape_train"], ("sample", "mean"))
    _one_of("escape_eval", args["escape_eval"], ESCAPE_MODES)


@checked_by(check_lif_snn)
def lif_snn(
    n_inputs: int,
    n_classes: int,
    *,
    surrogate: SurrogateGradient | str = "fast_sigmoid",
    hidden_sizes: Sequence[int] = (128,),
    recurrent: bool = False,
    tau_mem: float = 20.0,
    tau_syn: float | None = 10.0,
    dt: float = 2.0,
    threshold: float = 1.0,
    reset: ResetMode = "subtract",
    detach_reset: bool = False,
    readout: ReadoutMode = "max",
    readout_beta: float | None = None,
    bias: bool = True,
    weight_scale: float = 1.0,
    seed: int | None = None,
    escape_noise: float | None = None,
    escape_train: EscapeMode = "sample",
    escape_eval: EscapeMode = "deterministic",
) -> SNN:
    """The current-based LIF network (:class:`~evoexp.models.SNN`) from time constants.

    Time constants are in the unit of ``dt`` (ms in the presets). A ``dt`` larger than a time constant is legal and
    issues a ``UserWarning``.

    Args:
        n_inputs: Input channels (from the data).
        n_classes: Classes (from the data).
        surrogate: Spike nonlinearity and pseudo-derivative (the configured surrogate).
        hidden_sizes: Neurons per hidden LIF layer (at least one layer).
        recurrent: Add recurrent weights to the hidden layers.
        tau_mem: Membrane time constant (> 0).
        tau_syn: Synaptic time constant (> 0), or None for the current-free LIF (no synaptic current).
        dt: Simulation step (> 0).
        threshold: Firing threshold (> 0).
        reset: ``"subtract"`` or ``"zero"``.
        detach_reset: Cut the reset out of the backward pass.
        readout: ``"max"``, ``"mean"`` or ``"last"`` over the readout's membrane trace.
        readout_beta: Decay of the leaky readout per step, in [0, 1]; None uses the hidden membrane decay.
        bias: Learn a bias in every layer (hidden and readout).
        weight_scale: Initial weights are ``N(0, (weight_scale / sqrt(fan_in))^2)``; finite and > 0.
        seed: Seed of the initialisation and of the escape noise (None: the global torch RNG).
        escape_noise: Stochastic hidden neurons with escape noise: spikes ~ Bernoulli(sigmoid(escape_noise *
            (U - threshold))), escape_noise > 0; None: deterministic neurons.
        escape_train: With escape noise, the training forward: ``"sample"`` (stochastic spikes) or ``"mean"`` (the
            firing probability: a differentiable sigmoid network).
        escape_eval: With escape noise, the evaluation forward (validation, test): ``"deterministic"`` (the
            noise-free neuron), ``"sample"`` (a fresh sample per forward) or ``"mean"``.

    Raises:
        ValueError: An invalid argument; the message starts with its name.
    """
    _warn_short_step(dt, tau_mem, tau_syn)
    return SNN(
        n_inputs,
        list(hidden_sizes),
        n_classes,
        surrogate=surrogate,
        tau_mem=tau_mem,
        tau_syn=tau_syn,
        alpha=0.0 if tau_syn is None else None,
        dt=dt,
        threshold=threshold,
        reset=reset,
        detach_reset=detach_reset,
        recurrent=recurrent,
        readout=readout,
        readout_beta=readout_beta,
        bias=bias,
        weight_scale=weight_scale,
        seed=seed,
        escape_noise=escape_noise,
        escape_train=escape_train,
        escape_eval=escape_eval,
    )


def check_mlp(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`mlp`: messages start with the argument's name.

    Raises:
        ValueError: The first invalid argument.
    """
    layer_sizes(args["hidden_sizes"])
    _one_of("activation", args["activation"], tuple(available_activations()))


@checked_by(check_mlp)
def mlp(
    n_inputs: int, n_classes: int, *, hidden_sizes: Sequence[int] = (128,), activation: str = "relu"
) -> ANN:
    """A multilayer perceptron (:class:`~evoexp.models.ANN`): the ANN twin of evoexp's networks.

    Args:
        n_inputs: Static features (from the data).
        n_classes: Classes (from the data).
        hidden_sizes: Units per hidden layer (the twin: the SNN's hidden sizes).
        activation: One of :func:`~evoexp.models.available_activations`.

    Raises:
        ValueError: An invalid argument; the message starts with its name.
    """
    return ANN(n_inputs, list(hidden_sizes), n_classes, activation=activation)
