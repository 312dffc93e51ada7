"""Pure functional spiking-neuron dynamics (no ``nn.Module`` state): the engine under :mod:`evoexp.models`."""

from __future__ import annotations

from evoexp.functional.lif import (
    BPTTMode,
    LIFParameters,
    ReadoutMode,
    ResetMode,
    backward_once,
    decay_from_time_constant,
    leaky_integrate,
    lif_sequence,
    lif_sequence_reference,
    linear_lif_sequence,
    readout_logits,
    sequence_linear,
)

__all__ = [
    "BPTTMode",
    "LIFParameters",
    "ReadoutMode",
    "ResetMode",
    "backward_once",
    "decay_from_time_constant",
    "leaky_integrate",
    "lif_sequence",
    "lif_sequence_reference",
    "linear_lif_sequence",
    "readout_logits",
    "sequence_linear",
]
