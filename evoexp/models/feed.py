"""How a network is fed and read: batch-first samples in, class scores ``[batch, classes]`` out.

evoexp's loaders yield ``x`` of shape ``[B, T, ...]`` (a step's sample is ``[C]`` channels or an image
``[C, H, W]``) and its training and verification expect class scores ``[B, K]``. Networks written for snnTorch or
SpikingJelly usually take time-first input ``[T, B, ...]`` and return per-step outputs, often a tuple such as
snnTorch's ``(spk_rec, mem_rec)``. :class:`FedNetwork` bridges the two with three settings:

* ``input_layout``: ``"batch_first"`` passes ``[B, T, ...]`` unchanged, ``"time_first"`` passes ``[T, B, ...]``;
* ``output_index``: which element of a tuple (or list) output holds the class scores, ``None`` for a tensor;
* ``time_reduction``: ``"none"`` (the output already is ``[B, K]``), or ``"sum"``, ``"mean"``, ``"max"``,
  ``"last"`` over the time axis of a per-step output (``[T, B, K]`` time-first, ``[B, T, K]`` batch-first).

:func:`feed` returns the network itself when nothing is to be done, so evoexp's own :class:`~evoexp.models.SNN`
keeps its identity (and its fast verification paths). A mismatch raises a ValueError whose message starts with the
setting it concerns and shows the shape it got.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

from torch import Tensor, nn

__all__ = ["INPUT_LAYOUTS", "TIME_REDUCTIONS", "FedNetwork", "InputLayout", "TimeReduction", "feed"]

InputLayout = Literal["batch_first", "time_first"]
TimeReduction = Literal["none", "sum", "mean", "max", "last"]
INPUT_LAYOUTS: tuple[str, ...] = get_args(InputLayout)
TIME_REDUCTIONS: tuple[str, ...] = get_args(TimeReduction)


def _shape(value: Any) -> str:
    """``[2, 10]`` for a tensor, the type name for anything else."""
    return f"[{', '.join(map(str, value.shape))}]" if isinstance(value, Tensor) else type(value).__name__


class FedNetwork(nn.Module):
    """A network fed batch-first samples and read as class scores ``[batch, classes]`` (see the module docstring).

    Args:
        network: The wrapped network (its parameters are this module's, under ``network.``).
        input_layout: ``"batch_first"`` or ``"time_first"``.
        output_index: Element of a tuple output that holds the class scores (``None``: the output is a tensor).
        time_reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"max"`` or ``"last"`` over the output's time axis.

    Raises:
        ValueError: An unknown setting (the message starts with its name).
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        input_layout: InputLayout = "batch_first",
        output_index: int | None = None,
        time_reduction: TimeReduction = "none",
    ) -> None:
        super().__init__()
        if input_layout not in INPUT_LAYOUTS:
            raise ValueError(f"input_layout must be one of {', '.join(INPUT_LAYOUTS)}; got {input_layout!r}")
        if time_reduction not in TIME_REDUCTIONS:
            raise ValueError(f"time_reduction must be one of {', '.join(TIME_REDUCTIONS)}; got {time_reduction!r}")
        if output_index is not None and (isinstance(output_index, bool) or not isinstance(output_index, int)):
            raise ValueError(f"output_index must be an int or null, got {output_index!r}")
        self.network = network
        self.input_layout: InputLayout = input_layout
        self.output_index = output_index
        self.time_reduction: TimeReduction = time_reduction

    @property
    def time_axis(self) -> int:
        """The time axis of the network's input and of a per-step output (0 time-first, 1 batch-first)."""
        return 0 if self.input_layout == "time_first" else 1

    def forward(self, x: Tensor) -> Tensor:
        """Class scores ``[B, K]`` for batch-first samples ``x`` ``[B, T, ...]``.

        Raises:
            ValueError: The network's output does not fit ``output_index`` or ``time_reduction``.
        """
        inputs = x.transpose(0, 1) if self.input_layout == "time_first" else x
        return self.read(self.network(inputs), batch=x.shape[0])

    def read(self, output: Any, *, batch: int) -> Tensor:
        """The class scores ``[batch, K]`` in the network's ``output`` (element ``output_index``, reduced over time).

        Raises:
            ValueError: A tuple output without ``output_index`` (or the reverse), an index out of range, or a shape
                that ``time_reduction`` cannot read; the message starts with the setting and shows the shape.
        """
        scores = self._select(output)
        if self.time_reduction == "none":
            if scores.dim() != 2 or scores.shape[0] != batch:
                raise ValueError(
                    f"time_reduction=none expects class scores [batch={batch}, classes], got {_shape(scores)}; for a "
                    f"per-step output set time_reduction to sum, mean, max or last"
                )
            return scores
        layout = "[T, batch, classes]" if self.time_axis == 0 else "[batch, T, classes]"
        batch_axis = 1 - self.time_axis
        if scores.dim() != 3 or scores.shape[batch_axis] != batch:
            hint = (
                "; time_reduction=none reads [batch, classes]"
                if scores.dim() == 2
                else f"; is the network {'batch' if self.time_axis == 0 else 'time'}-first? (input_layout)"
            )
            raise ValueError(
                f"time_reduction={self.time_reduction} expects per-step scores {layout} with batch={batch} "
                f"(input_layout={self.input_layout}), got {_shape(scores)}{hint}"
            )
        if self.time_reduction == "sum":
            return scores.sum(dim=self.time_axis)
        if self.time_reduction == "mean":
            return scores.mean(dim=self.time_axis)
        if self.time_reduction == "max":
            return scores.amax(dim=self.time_axis)
        return scores.select(self.time_axis, scores.shape[self.time_axis] - 1)

    def _select(self, output: Any) -> Tensor:
        """Element ``output_index`` of a tuple output, or the tensor output itself."""
        if isinstance(output, Sequence) and not isinstance(output, Tensor):
            shapes = ", ".join(_shape(o) for o in output)
            if self.output_index is None:
                raise ValueError(
                    f"output_index is null, but the network returned a {type(output).__name__} of {len(output)} "
                    f"({shapes}); set it to the element that holds the class scores"
                )
            if not -len(output) <= self.output_index < len(output):
                raise ValueError(
                    f"output_index={self.output_index} is out of range: the network returned {len(output)} "
                    f"elements ({shapes})"
                )
            output = output[self.output_index]
        elif self.output_index is not None:
            raise ValueError(
                f"output_index={self.output_index}, but the network returned a single {_shape(output)}; set it to null"
            )
        if not isinstance(output, Tensor):
            raise ValueError(f"output_index: the class scores must be a tensor, got {type(output).__name__}")
        return output

    def extra_repr(self) -> str:
        return (
            f"input_layout={self.input_layout}, output_index={self.output_index}, "
            f"time_reduction={self.time_reduction}"
        )


def feed(
    network: nn.Module,
    *,
    input_layout: InputLayout = "batch_first",
    output_index: int | None = None,
    time_reduction: TimeReduction = "none",
) -> nn.Module:
    """``network`` fed and read as the settings say: itself for the defaults, else a :class:`FedNetwork`.

    Raises:
        ValueError: An unknown setting (the message starts with its name).
    """
    wrapped = FedNetwork(
        network, input_layout=input_layout, output_index=output_index, time_reduction=time_reduction
    )
    if (input_layout, output_index, time_reduction) == ("batch_first", None, "none"):
        return network
    return wrapped
