r"""evoexp networks as NIR graphs: :func:`to_nir`.

An :class:`~evoexp.models.SNN` becomes ``Input -> [Affine -> CubaLIF (-> Linear -> back, if recurrent)]* -> Affine ->
LI -> Output``. Its discrete decays become time constants by inverting NIR's Euler decay,
:math:`\tau = \Delta t/(1 - \beta)`, and the input scales are chosen so that the current enters unscaled as in
evoexp's layer: :math:`w_{in} = \tau_{syn}/\Delta t`, :math:`R = \tau_{mem}/\Delta t` (snnTorch's export makes the same
choice). evoexp's LIF layer is not NIR's reference step -- an input reaches the membrane two steps later and the
threshold is subtracted after the leak -- so the graph's metadata says ``evoexp_conventions = "evoexp"``, with the
reset, surrogate, ``dt`` and the exact float64 decays (:mod:`evoexp.nir.metadata`); :func:`~evoexp.nir.from_nir`
then rebuilds the same forward bit for bit. Another reader runs the graph with its own conventions: the
comparison (``python -m evoexp.crosscheck``) says how far that changes it.

A :class:`~evoexp.nir.NIRNetwork` is written back as the (flattened) graph it was read from, with its current
weights and its settings in the metadata.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import nir
import numpy as np
from torch import Tensor, nn

from evoexp.functional.discrete import EVOEXP_LIF
from evoexp.models.snn import SNN, LeakyReadout, LIFLayer
from evoexp.nir import metadata
from evoexp.nir.errors import NIRError
from evoexp.nir.network import NIRNetwork

__all__ = ["to_nir"]


def _array(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _tau(decay: float, dt: float, what: str) -> float:
    if decay >= 1.0:
        raise NIRError(f"{what} = {decay!r} (no leak) has no NIR time constant; NIR's LIF/LI need a decay < 1")
    return dt / (1.0 - decay)


def _weights(weight: Tensor, bias: Tensor | None) -> nir.NIRNode:
    if bias is None:
        return nir.Linear(weight=_array(weight))
    return nir.Affine(weight=_array(weight), bias=_array(bias))


def _cuba_lif(layer: LIFLayer, dt: float, name: str) -> nir.CubaLIF:
    p, n = layer.params, layer.out_features
    tau_syn = _tau(p.alpha, dt, f"{name} alpha") if p.alpha > 0 else dt
    tau_mem = _tau(p.beta, dt, f"{name} beta")
    ones = np.ones(n)
    return nir.CubaLIF(tau_syn=tau_syn * ones, tau_mem=tau_mem * ones, r=tau_mem / dt * ones, v_leak=0 * ones,
                       v_threshold=p.threshold * ones, v_reset=0 * ones, w_in=tau_syn / dt * ones,
                       metadata={metadata.ALPHA: p.alpha, metadata.BETA: p.beta})


def _li(readout: LeakyReadout, dt: float) -> nir.LI:
    n = readout.weight.shape[0]
    tau = _tau(readout.beta, dt, "readout beta")
    ones = np.ones(n)
    return nir.LI(tau=tau * ones, r=tau / dt * ones, v_leak=0 * ones, metadata={metadata.BETA: readout.beta})


def _snn_graph(model: SNN, dt: float) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array([model.input_size]))}
    edges: list[tuple[str, str]] = []
    previous = "input"
    for i, layer in enumerate(model.hidden):
        if not isinstance(layer, LIFLayer):
            raise NIRError(f"to_nir: hidden layer {i} is a {type(layer).__name__}, not a LIFLayer")
        nodes[f"fc{i}"] = _weights(layer.weight, layer.bias)
        nodes[f"lif{i}"] = _cuba_lif(layer, dt, f"hidden.{i}")
        edges += [(previous, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        if layer.recurrent_weight is not None:
            nodes[f"rec{i}"] = nir.Linear(weight=_array(layer.recurrent_weight))
            edges += [(f"lif{i}", f"rec{i}"), (f"rec{i}", f"lif{i}")]
        previous = f"lif{i}"
    nodes["fc_out"] = _weights(model.readout.weight, model.readout.bias)
    nodes["readout"] = _li(model.readout, dt)
    nodes["output"] = nir.Output(output_type=np.array([model.output_size]))
    edges += [(previous, "fc_out"), ("fc_out", "readout"), ("readout", "output")]
    params = model.params
    meta = {metadata.DT: float(dt), metadata.RESET: params.reset, metadata.SURROGATE:
            metadata.surrogate_to(model.surrogate), metadata.CONVENTIONS: metadata.conventions_name(EVOEXP_LIF),
            metadata.DECAY: "euler", metadata.DETACH_RESET: bool(params.detach_reset)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _network_graph(model: NIRNetwork, dt: float) -> nir.NIRGraph:
    s = model.settings
    if dt != s.dt:
        raise NIRError(f"to_nir: dt={dt!r} differs from the dt={s.dt!r} the network was imported with")
    nodes: dict[str, nir.NIRNode] = {}
    for name, node in model.plan.graph.nodes.items():
        nodes[name] = _weights(*model.weights_of(name)) if isinstance(node, (nir.Affine, nir.Linear)) else node
    meta = {metadata.DT: float(dt), metadata.RESET: s.reset, metadata.SURROGATE: metadata.surrogate_to(s.surrogate),
            metadata.CONVENTIONS: metadata.conventions_name(s.conventions), metadata.DECAY: s.decay,
            metadata.DETACH_RESET: bool(s.conventions.reset_detached)}
    return nir.NIRGraph(nodes=nodes, edges=list(model.plan.graph.edges), metadata=meta)


def to_nir(model: nn.Module, *, dt: float, path: str | os.PathLike[str] | None = None) -> nir.NIRGraph:
    """The NIR graph of an evoexp :class:`~evoexp.models.SNN` or :class:`~evoexp.nir.NIRNetwork` (module docstring).

    Args:
        model: The network.
        dt: Time step the discrete network stands for (> 0): the time constants are in its unit.
        path: Also write the graph there (``nir.write``); a failed write leaves no file.

    Raises:
        NIRError: another kind of model, a decay of 1 (no time constant), a ``dt`` other than a NIR network's own,
            or a bad ``dt``.
    """
    step = metadata.positive_dt(dt, "dt")
    if isinstance(model, SNN):
        graph = _snn_graph(model, step)
    elif isinstance(model, NIRNetwork):
        graph = _network_graph(model, step)
    else:
        raise NIRError(f"to_nir exports an evoexp SNN or NIRNetwork, got {type(model).__name__}")
    if path is not None:
        _write(graph, Path(path))
    return graph


def _write(graph: nir.NIRGraph, path: Path) -> None:
    """``nir.write`` through a temporary file in the target folder, renamed into place once complete."""
    if not path.parent.is_dir():
        raise NIRError(f"cannot write NIR file '{path}': folder '{path.parent}' does not exist")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        nir.write(temporary, graph)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
