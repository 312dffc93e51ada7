"""What every evoexp spiking layer offers the verifiers: smooth mode, a held reset and a probe of its spike function.

:class:`SpikingLayer` is the base of :class:`~evoexp.models.LIFLayer` (evoexp's own LIF layer) and of
:class:`~evoexp.models.NeuronPopulation` (the populations of an imported NIR graph). The verifiers' evoexp adapter
(:mod:`evoexp.verification.spiking`) handles any network that contains one.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Hashable

from torch import Tensor, nn

from evoexp.surrogate import SurrogateGradient

__all__ = ["SpikingLayer"]


class SpikingLayer(nn.Module):
    """Base of evoexp's spiking layers.

    Attributes:
        smooth: Smooth mode: the forward uses the surrogate's primitive, so the surrogate gradient is the true
            gradient of a differentiable network.
        replay_reset: ``None`` (the reset uses the layer's own spikes) or a constant reset term of the spikes' shape,
            replayed instead; only for layers with :attr:`detach_reset`. The gradient verifier sets it on its private
            copy to the unperturbed spikes, so that finite differences are the detached gradient exactly.
        surrogate: The spike nonlinearity and its pseudo-derivative.
    """

    surrogate: SurrogateGradient

    def __init__(self) -> None:
        super().__init__()
        self.smooth = False
        self.replay_reset: Tensor | None = None

    @property
    @abstractmethod
    def detach_reset(self) -> bool:
        """Whether the reset is a constant in the backward pass (then :attr:`replay_reset` may be set)."""

    @property
    def heaviside_at_zero(self) -> float:
        """The spike forward at ``membrane - threshold = 0`` (0 for ``>``, 1 for ``>=``)."""
        return 0.0

    def probe_offset(self, v: Tensor) -> Tensor:
        """The membrane offset ``mem - threshold`` that :meth:`spike_probe` really feeds its node for ``v``.

        ``v`` itself unless the layer's probe adds and subtracts a threshold (then ``v`` up to one rounding, which
        decides the side of a jump in the surrogate's derivative).
        """
        return v

    @abstractmethod
    def probe_key(self) -> Hashable:
        """Layers with equal keys compute the same spike function (one probe checks them all)."""

    @abstractmethod
    def spike_probe(self) -> Callable[[Tensor], Tensor]:
        """The spike function the layer's own code computes, as an elementwise function of ``mem - threshold``.

        Its forward and backward must run through the layer's real implementation, so that the suite's runtime
        surrogate check (:mod:`evoexp.verification.surrogate_check`) compares what training uses with the declared
        derivative.
        """
