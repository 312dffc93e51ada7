"""The field's other libraries (snnTorch, SpikingJelly, Norse): their surrogate names, networks and documentation.

A plug-in: the science below never imports it. ``pyproject.toml`` declares its entry points, through which
:func:`evoexp.surrogate.get_surrogate` and the verifiers load it on first use.

* :mod:`evoexp.peers.names` -- ``"<library>:<function>"`` -> the equal evoexp shape (``get_surrogate`` delegates,
  entry-point group ``evoexp.surrogate_libraries``).
* :mod:`evoexp.peers.adapters` -- one spiking-network adapter per library (smooth, dtype-safe, state-resetting
  private copies for the verifiers), registered through the entry-point group ``evoexp.spiking_adapters`` when a
  model that uses the library is verified.
* :mod:`evoexp.peers.documented` -- what each library documents for each surrogate (``python -m evoexp.audit``).

None of them imports a peer library until a peer function or network is actually used.
"""

from __future__ import annotations

from evoexp.peers.adapters import PEER_ADAPTERS, NeuronAdapter, NeuronSwap
from evoexp.peers.names import available_peer_surrogates, get_peer, peer_surrogate

__all__ = [
    "PEER_ADAPTERS",
    "NeuronAdapter",
    "NeuronSwap",
    "available_peer_surrogates",
    "get_peer",
    "peer_surrogate",
]
