r"""A neuron population with explicit step conventions, as a module: the spiking node of an imported NIR graph.

:class:`NeuronPopulation` runs :func:`evoexp.functional.discrete.neuron_sequence` on the current it is given (or on
``x W^T + b`` when it is handed the weight of the Affine node in front of it). It owns no trainable parameter: the
weights live in the graph's Affine/Linear modules and are passed in by the network that runs it, so the parameter
names follow the graph's node names.

With evoexp's own LIF conventions (:data:`~evoexp.functional.discrete.EVOEXP_LIF`) and one value per constant, the
population runs evoexp's LIF node (:func:`~evoexp.functional.linear_lif_sequence`, its custom BPTT), and a
non-spiking one evoexp's leaky readout (:func:`~evoexp.functional.leaky_integrate`): a network exported from an
:class:`~evoexp.models.SNN` and imported again computes the same forward bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor
from torch.nn import functional as F

from evoexp.functional.discrete import EVOEXP_LIF, NeuronConstants, StepConventions, neuron_sequence
from evoexp.functional.lif import LIFParameters, leaky_integrate, lif_sequence, linear_lif_sequence, sequence_linear
from evoexp.models.layer import SpikingLayer
from evoexp.surrogate import SurrogateGradient

__all__ = ["NeuronPopulation"]

_UNIT_TOL = 1e-9
"""How far from 1 an input scale may be, and from 0 a leak or reset potential, for evoexp's own LIF node."""


def _single(values: Tensor) -> float | None:
    """The one value of ``values`` if all are equal, else ``None``."""
    first = float(values[0])
    return first if bool(torch.all(values == first)) else None


class NeuronPopulation(SpikingLayer):
    """A population of (CubaLIF, LIF, IF, LI, CubaLI) neurons over a whole sequence.

    Args:
        constants: Per-neuron constants (buffers of the module).
        conventions: How a time step is computed.
        surrogate: Spike nonlinearity and pseudo-derivative (unused by a non-spiking population).

    Attributes:
        native: ``True`` when the population runs evoexp's own LIF node or leaky readout (module docstring).
    """

    alpha: Tensor
    beta: Tensor
    k_in: Tensor
    k_mem: Tensor
    leak: Tensor
    v_reset: Tensor
    threshold: Tensor | None

    def __init__(self, constants: NeuronConstants, conventions: StepConventions,
                 surrogate: SurrogateGradient) -> None:
        super().__init__()
        self.conventions = conventions
        self.surrogate = surrogate
        self.reset_mode = constants.reset
        for name in ("alpha", "beta", "k_in", "k_mem", "leak", "v_reset"):
            self.register_buffer(name, getattr(constants, name).detach().clone().to(torch.float64))
        self.register_buffer("threshold", None if constants.threshold is None
                             else constants.threshold.detach().clone().to(torch.float64))
        self.native = self._native_parameters() is not None or self._native_readout() is not None

    @property
    def constants(self) -> NeuronConstants:
        """The constants as a :class:`~evoexp.functional.discrete.NeuronConstants` record."""
        return NeuronConstants(alpha=self.alpha, beta=self.beta, k_in=self.k_in, k_mem=self.k_mem, leak=self.leak,
                               threshold=self.threshold, v_reset=self.v_reset, reset=self.reset_mode)

    @property
    def size(self) -> int:
        """Number of neurons."""
        return int(self.beta.shape[0])

    @property
    def spiking(self) -> bool:
        """Whether the population fires."""
        return self.threshold is not None

    @property
    def detach_reset(self) -> bool:
        """``conventions.reset_detached`` (a non-spiking population has no reset)."""
        return self.spiking and self.conventions.reset_detached

    @property
    def heaviside_at_zero(self) -> float:
        """1 when a membrane exactly at threshold spikes (``>=``), else 0."""
        return 1.0 if self.conventions.spike_at_threshold else 0.0

    def _unit_input(self) -> bool:
        return bool(torch.all((self.k_in - 1).abs() <= _UNIT_TOL) and torch.all((self.k_mem - 1).abs() <= _UNIT_TOL)
                    and torch.all(self.leak.abs() <= _UNIT_TOL) and torch.all(self.v_reset.abs() <= _UNIT_TOL))

    def _native_parameters(self) -> LIFParameters | None:
        """The LIF constants of evoexp's own node when this spiking population is one, else ``None``."""
        if replace(self.conventions, reset_detached=False) != EVOEXP_LIF or self.threshold is None \
                or not self._unit_input():
            return None
        alpha, beta, theta = _single(self.alpha), _single(self.beta), _single(self.threshold)
        if alpha is None or beta is None or theta is None or theta <= 0:
            return None
        return LIFParameters(alpha=alpha, beta=beta, threshold=theta, reset=self.reset_mode,
                             detach_reset=self.conventions.reset_detached)

    def _native_readout(self) -> float | None:
        """The decay when this non-spiking population is evoexp's leaky readout, else ``None``."""
        if self.threshold is not None or not self._unit_input():
            return None
        if not bool(torch.all(self.alpha == 0)):
            return None
        return _single(self.beta)

    def forward(self, x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
                recurrent_weight: Tensor | None = None, recurrent_bias: Tensor | None = None) -> Tensor:
        """Spikes (membrane for a non-spiking population) ``[batch, time, neurons]``.

        Args:
            x: The population's input: its current, or the input of the Affine node ``weight``/``bias`` belong to.
            weight: Optional ``W``: the current is ``x W^T + b``.
            bias: Optional ``b``.
            recurrent_weight: Optional ``V`` of a recurrent Affine/Linear node (``s[t-1] V^T`` joins the current).
            recurrent_bias: Optional bias of that node.
        """
        native = self._native_parameters()
        if native is not None and recurrent_bias is None:
            if weight is None:
                return lif_sequence(x if bias is None else x + bias, native, self.surrogate,
                                    recurrent_weight=recurrent_weight, smooth=self.smooth,
                                    replay_reset=self.replay_reset)
            return linear_lif_sequence(x, weight, bias, native, self.surrogate, recurrent_weight=recurrent_weight,
                                       smooth=self.smooth, replay_reset=self.replay_reset)
        decay = self._native_readout()
        if decay is not None and recurrent_weight is None and recurrent_bias is None:
            current = sequence_linear(x, weight, bias) if weight is not None else (x if bias is None else x + bias)
            return leaky_integrate(current, decay)
        return self._general(x, weight, bias, recurrent_weight, recurrent_bias)[0]

    def run(self, x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
            recurrent_weight: Tensor | None = None, recurrent_bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(output, membrane)``: :meth:`forward`'s output and the recorded membrane (same shapes).

        When the population runs evoexp's own node, the output is that node's and the membrane is recorded by the
        general loop of :func:`~evoexp.functional.discrete.neuron_sequence` (which computes the same dynamics).
        """
        if not self.native:
            return self._general(x, weight, bias, recurrent_weight, recurrent_bias)
        output = self(x, weight, bias, recurrent_weight, recurrent_bias)
        with torch.no_grad():
            _, membrane = self._general(x, weight, bias, recurrent_weight, recurrent_bias)
        return output, membrane

    def _general(self, x: Tensor, weight: Tensor | None, bias: Tensor | None, recurrent_weight: Tensor | None,
                 recurrent_bias: Tensor | None) -> tuple[Tensor, Tensor]:
        current = F.linear(x, weight, bias) if weight is not None else (x if bias is None else x + bias)
        return neuron_sequence(current, self.constants, self.conventions, self.surrogate,
                               recurrent_weight=recurrent_weight, recurrent_bias=recurrent_bias, smooth=self.smooth,
                               replay_reset=self.replay_reset)

    def probe_key(self) -> tuple[object, ...]:
        """Surrogate, conventions and reset mode: what the probed spike function depends on."""
        return (self.surrogate, self.conventions, self.reset_mode, self._native_parameters() is not None)

    def spike_probe(self) -> Callable[[Tensor], Tensor]:
        r"""The population's spike function through its own code (:meth:`SpikingLayer.spike_probe`).

        ``probe(v)`` runs, for each entry of ``v``, a one-neuron population with this population's conventions,
        threshold :math:`\theta = 1`, unit input scales, no leak and no decay, driven by :math:`v + \theta` at step 0:
        its membrane before the reset is :math:`v + \theta` at step ``delay`` and the spike there is the spike
        function of :math:`v`. evoexp's own LIF node is probed through :func:`~evoexp.functional.linear_lif_sequence`.
        """
        conventions, surrogate, reset = self.conventions, self.surrogate, self.reset_mode
        native = self._native_parameters() is not None
        one = torch.ones(1, dtype=torch.float64)
        constants = NeuronConstants(alpha=one * 0, beta=one * 0, k_in=one, k_mem=one, leak=one * 0, threshold=one,
                                    v_reset=one * 0, reset=reset)
        steps = conventions.delay + 1

        def probe(v: Tensor) -> Tensor:
            flat = v.reshape(-1)
            drive = torch.zeros(flat.shape[0], steps, 1, dtype=v.dtype, device=v.device)
            drive = drive.index_put((torch.arange(flat.shape[0]), torch.zeros_like(flat, dtype=torch.long),
                                     torch.zeros_like(flat, dtype=torch.long)), flat + 1.0)
            if native:
                params = LIFParameters(alpha=0.0, beta=0.0, threshold=1.0, reset=reset,
                                       detach_reset=conventions.reset_detached)
                spikes = linear_lif_sequence(drive, torch.ones(1, 1, dtype=v.dtype, device=v.device), None, params,
                                             surrogate)
            else:
                spikes, _ = neuron_sequence(drive, constants, conventions, surrogate)
            return spikes[:, steps - 1, 0].reshape(v.shape)

        return probe

    def extra_repr(self) -> str:
        kind = "spiking" if self.spiking else "non-spiking"
        return (f"{self.size}, {kind}, reset={self.reset_mode}, conventions={self.conventions}, "
                f"surrogate={self.surrogate!r}, native={self.native}, smooth={self.smooth}")

