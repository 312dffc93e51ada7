"""One network, every library: the cross-library forward and gradient comparison.

:func:`crosscheck` builds a network (a NIR graph, or an imported :class:`~evoexp.nir.NIRNetwork`) in evoexp and in
each installed peer library (snnTorch, SpikingJelly, Norse) with the same weights, decays, threshold, reset and
surrogate, compares forwards and gradients per pair, and attributes every difference to a named cause of the
:data:`~evoexp.crosscheck.catalogue.CATALOGUE`. :mod:`evoexp.crosscheck.report` writes ``agreement.csv``,
``agreement.md`` and the agreement-matrix figure; ``python -m evoexp.crosscheck`` runs it from the command line.
User guide: docs/guides/crosscheck.md.
"""

from __future__ import annotations

from evoexp.crosscheck.catalogue import CATALOGUE, Cause, LibraryModel, attribute
from evoexp.crosscheck.compare import CrosscheckResult, PairAgreement, compare_pair, crosscheck
from evoexp.crosscheck.references import REFERENCE_SETTINGS, REFERENCES, reference_graph

__all__ = [
    "CATALOGUE",
    "REFERENCES",
    "REFERENCE_SETTINGS",
    "Cause",
    "CrosscheckResult",
    "LibraryModel",
    "PairAgreement",
    "attribute",
    "compare_pair",
    "crosscheck",
    "reference_graph",
]
