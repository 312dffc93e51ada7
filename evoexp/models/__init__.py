"""Models: the LIF spiking network (:class:`SNN`) and its ANN twin (:class:`ANN`)."""

from __future__ import annotations

from evoexp.models.ann import ANN, ann_twin, available_activations
from evoexp.models.snn import SNN, LeakyReadout, LIFLayer, is_snn, smooth_mode

__all__ = ["ANN", "SNN", "LIFLayer", "LeakyReadout", "ann_twin", "available_activations", "is_snn", "smooth_mode"]
