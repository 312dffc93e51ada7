"""The ANN twin: a multilayer perceptron with the SNN's hidden sizes, fed the static features behind the spikes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import Tensor, nn

from evoexp.models.snn import SNN, layer_sizes

__all__ = ["ANN", "ann_twin", "available_activations"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


def available_activations() -> list[str]:
    """Return the activation names accepted by :class:`ANN`."""
    return sorted(_ACTIVATIONS)


class ANN(nn.Module):
    """Feed-forward network ``Linear -> activation`` per hidden size, then a linear readout.

    Parameter names mirror the SNN's: ``hidden.<i>.weight``/``bias`` and ``readout.weight``/``bias``.

    Args:
        input_size: Input features ``F``.
        hidden_sizes: Units per hidden layer (at least one).
        output_size: Classes.
        activation: One of :func:`available_activations`.

    Raises:
        ValueError: bad sizes or unknown activation.
    """

    def __init__(
        self, input_size: int, hidden_sizes: Sequence[int], output_size: int, *, activation: str = "relu"
    ) -> None:
        super().__init__()
        sizes = layer_sizes(hidden_sizes, input_size=input_size, output_size=output_size)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; available: {', '.join(available_activations())}")
        self.input_size, self.hidden_sizes, self.output_size = input_size, tuple(sizes), output_size
        self.activation_name = activation
        self.hidden = nn.ModuleList()
        fan_in = input_size
        for size in sizes:
            self.hidden.append(nn.Linear(fan_in, size))
            fan_in = size
        self.activation = _ACTIVATIONS[activation]()
        self.readout = nn.Linear(fan_in, output_size)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[batch, output_size]`` for features ``[batch, input_size]`` (cast to the parameters' dtype).

        Features of another per-sample shape with ``input_size`` values (an image ``[batch, C, H, W]``) are
        flattened.

        Raises:
            ValueError: ``x`` has the wrong shape.
        """
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.input_size:
            raise ValueError(f"x must have shape [batch, {self.input_size}], got {tuple(x.shape)}")
        h = x.flatten(1).to(self.readout.weight.dtype)
        for layer in self.hidden:
            h = self.activation(layer(h))
        return self.readout(h)


def ann_twin(snn: SNN, input_size: int, *, activation: str = "relu") -> ANN:
    """Build the ANN twin of ``snn``: same hidden and output sizes, ``input_size`` static features.

    Args:
        snn: The spiking model.
        input_size: Number of static features the ANN receives (e.g. ``DatasetSplits.n_features``).
        activation: Hidden activation name.
    """
    return ANN(input_size, snn.hidden_sizes, snn.output_size, activation=activation)
