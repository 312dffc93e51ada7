"""A Norse network written the Norse way (preset ``model=norse_lif``).

``LIFCell`` and a leaky-integrator readout ``LICell`` stepped over time, membrane traces ``[T, B, classes]`` out.
"""

from __future__ import annotations

import torch
from norse.torch import LICell, LIFCell, LIFParameters
from torch import Tensor, nn

__all__ = ["NorseLIF"]


class NorseLIF(nn.Module):
    """``Linear -> LIFCell -> Linear -> LICell`` per time step.

    Args:
        n_inputs: Input channels (from the data).
        n_classes: Readout neurons (from the data).
        hidden: Hidden LIF neurons.
        tau_mem_inv: Inverse membrane time constant of the LIF cells (1/s; Norse's default is 100).
        dt: Simulation step (s).
    """

    def __init__(
        self, n_inputs: int, n_classes: int, *, hidden: int = 128, tau_mem_inv: float = 100.0, dt: float = 1e-3
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_inputs, hidden)
        self.lif = LIFCell(p=LIFParameters(tau_mem_inv=torch.as_tensor(tau_mem_inv)), dt=dt)
        self.fc2 = nn.Linear(hidden, n_classes)
        self.readout = LICell(dt=dt)

    def forward(self, x: Tensor) -> Tensor:
        """Readout membranes ``[T, B, n_classes]`` for input ``[T, B, n_inputs]``."""
        state, readout_state = None, None
        voltages = []
        for step in range(x.shape[0]):
            z, state = self.lif(self.fc1(x[step]), state)
            v, readout_state = self.readout(self.fc2(z), readout_state)
            voltages.append(v)
        return torch.stack(voltages)
