"""NIR (Neuromorphic Intermediate Representation) in and out of evoexp's engine.

* :func:`from_nir` -- a NIR graph (file or ``nir.NIRGraph``) as an evoexp module (:class:`NIRNetwork`), with the time
  step, reset and surrogate NIR does not carry given explicitly (:mod:`evoexp.nir.network`);
* :func:`to_nir` -- an evoexp :class:`~evoexp.models.SNN` or :class:`NIRNetwork` as a NIR graph, those settings in its
  metadata (:mod:`evoexp.nir.export`);
* :mod:`evoexp.nir.discretise` -- the documented mapping of NIR's continuous-time nodes to discrete constants;
* :mod:`evoexp.nir.graph` -- reading, flattening and checking graphs; :class:`NIRError` for every failure.

User guide: docs/guides/nir.md.
"""

from __future__ import annotations

from evoexp.nir.discretise import Decay, node_constants
from evoexp.nir.errors import NIRError
from evoexp.nir.export import to_nir
from evoexp.nir.graph import SUPPORTED_TYPES, read_graph
from evoexp.nir.network import NIRNetwork, NIRSettings, NodeRecord, from_nir, nir_network

__all__ = [
    "SUPPORTED_TYPES",
    "Decay",
    "NIRError",
    "NIRNetwork",
    "NIRSettings",
    "NodeRecord",
    "from_nir",
    "nir_network",
    "node_constants",
    "read_graph",
    "to_nir",
]
