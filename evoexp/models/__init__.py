"""Models: the LIF spiking network, its ANN twin, the factories the model presets name, how a network is fed.

:class:`SNN` and :class:`ANN`; :func:`lif_snn` and :func:`mlp` (named by ``conf/model`` and ``conf/ann``);
:class:`FedNetwork` (how any network is fed batch-first samples and read as class scores);
:class:`NeuronPopulation` (explicit step conventions: the spiking nodes of imported NIR graphs).
"""

from __future__ import annotations

from evoexp.models.ann import ANN, ann_twin, available_activations
from evoexp.models.factories import lif_snn, mlp
from evoexp.models.feed import FedNetwork, feed
from evoexp.models.layer import SpikingLayer
from evoexp.models.population import NeuronPopulation
from evoexp.models.snn import SNN, LeakyReadout, LIFLayer, is_snn, smooth_mode

__all__ = [
    "ANN",
    "SNN",
    "FedNetwork",
    "LIFLayer",
    "LeakyReadout",
    "NeuronPopulation",
    "SpikingLayer",
    "ann_twin",
    "available_activations",
    "feed",
    "is_snn",
    "lif_snn",
    "mlp",
    "smooth_mode",
]
