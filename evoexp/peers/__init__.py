"""The field's other libraries (snnTorch, SpikingJelly, Norse): their surrogate names, networks and documentation.

* :mod:`evoexp.peers.names` -- ``"<library>:<function>"`` -> the equal evoexp shape (``get_surrogate`` delegates).
* :mod:`evoexp.peers.adapters` -- smooth, dtype-safe, state-resetting private copies of their networks for the
  verifiers, through a registry of adapters.
* :mod:`evoexp.peers.documented` -- what each library documents for each surrogate (``python -m evoexp.audit``).

None of them imports a peer library until a peer function or network is actually used.
"""

from __future__ import annotations

from evoexp.peers.adapters import (
    ForeignPreparation,
    PeerAdapter,
    available_adapters,
    find_neurons,
    is_foreign_snn,
    prepare_foreign,
    private_copy,
    register_adapter,
)
from evoexp.peers.names import available_peer_surrogates, get_peer, peer_surrogate

__all__ = [
    "ForeignPreparation",
    "PeerAdapter",
    "available_adapters",
    "available_peer_surrogates",
    "find_neurons",
    "get_peer",
    "is_foreign_snn",
    "peer_surrogate",
    "prepare_foreign",
    "private_copy",
    "register_adapter",
]
