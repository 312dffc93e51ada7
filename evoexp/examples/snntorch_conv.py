"""A convolutional snnTorch network written the snnTorch way (preset ``model=snntorch_conv``).

``nn.Conv2d`` + ``snn.Leaky``, a time-first loop, ``(spk_rec, mem_rec)`` out; it takes image-shaped steps
(``dataset=digits dataset.image=true``).
"""

from __future__ import annotations

from collections.abc import Sequence

import snntorch as snn
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SnnTorchConv"]


class SnnTorchConv(nn.Module):
    """``Conv2d(3x3) -> max-pool 2 -> Leaky -> Linear -> Leaky``, unrolled over time.

    Args:
        n_classes: Output neurons (from the data).
        input_shape: One step's image ``(C, H, W)`` (from the data).
        channels: Feature maps of the convolution.
        beta: Membrane decay of both ``snn.Leaky`` layers.
    """

    def __init__(self, n_classes: int, input_shape: Sequence[int], *, channels: int = 12, beta: float = 0.9) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be an image (C, H, W), got {tuple(input_shape)}")
        c, h, w = input_shape
        self.conv = nn.Conv2d(c, channels, kernel_size=3, padding=1)
        self.lif1 = snn.Leaky(beta=beta)
        self.fc = nn.Linear(channels * (h // 2) * (w // 2), n_classes)
        self.lif2 = snn.Leaky(beta=beta)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Spikes and membranes of the output layer, each ``[T, B, n_classes]``, for input ``[T, B, C, H, W]``."""
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk_rec, mem_rec = [], []
        for step in range(x.shape[0]):
            cur1 = F.max_pool2d(self.conv(x[step]), 2)
            spk1, mem1 = self.lif1(cur1, mem1)
            spk2, mem2 = self.lif2(self.fc(spk1.flatten(1)), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        return torch.stack(spk_rec), torch.stack(mem_rec)
