"""A SpikingJelly multi-step network written the SpikingJelly way (preset ``model=spikingjelly_mlp``).

``layer.Linear`` + ``neuron.LIFNode`` in ``step_mode='m'``, time-first input, spikes ``[T, B, classes]`` out.
"""

from __future__ import annotations

from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import Tensor, nn

__all__ = ["SpikingJellyMLP"]


class SpikingJellyMLP(nn.Module):
    """``Linear -> LIFNode -> Linear -> LIFNode``, multi-step (the whole sequence in one call).

    Args:
        n_inputs: Input channels (from the data).
        n_classes: Output neurons (from the data).
        hidden: Hidden LIF neurons.
        tau: Membrane time constant of the LIF nodes (in steps, > 1).
    """

    def __init__(self, n_inputs: int, n_classes: int, *, hidden: int = 128, tau: float = 2.0) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            layer.Linear(n_inputs, hidden),
            neuron.LIFNode(tau=tau, surrogate_function=surrogate.ATan(), detach_reset=True),
            layer.Linear(hidden, n_classes),
            neuron.LIFNode(tau=tau, surrogate_function=surrogate.ATan(), detach_reset=True),
        )
        functional.set_step_mode(self.layers, "m")

    def forward(self, x: Tensor) -> Tensor:
        """Output spikes ``[T, B, n_classes]`` for input ``[T, B, n_inputs]``."""
        return self.layers(x)
