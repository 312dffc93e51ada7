"""Models: the LIF spiking network (:class:`SNN`), its ANN twin (:class:`ANN`) and neuron populations.

:class:`NeuronPopulation` has explicit step conventions: the spiking nodes of imported NIR graphs.
"""

from __future__ import annotations

from evoexp.models.ann import ANN, ann_twin, available_activations
from evoexp.models.layer import SpikingLayer
from evoexp.models.population import NeuronPopulation
from evoexp.models.snn import SNN, LeakyReadout, LIFLayer, is_snn, smooth_mode

__all__ = [
    "ANN",
    "SNN",
    "LIFLayer",
    "LeakyReadout",
    "NeuronPopulation",
    "SpikingLayer",
    "ann_twin",
    "available_activations",
    "is_snn",
    "smooth_mode",
]
