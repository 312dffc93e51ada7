"""A NIR graph as evoexp runs it: read from a file, subgraphs flattened, checked, and ordered into a plan.

evoexp runs graphs with one ``Input`` and one ``Output`` node whose other nodes are ``Affine``, ``Linear``,
``Scale``, ``Flatten`` and the neuron nodes ``LIF``, ``CubaLIF``, ``LI``, ``CubaLI``, ``IF``. Edges are identities
and the inputs of a node are summed. The only cycles allowed are recurrent connections: a spiking neuron node feeding
its own input through one ``Affine``/``Linear`` node (the feedback arrives one step later). Subgraphs (``NIRGraph``
nodes, as snnTorch writes recurrent layers) are flattened: their nodes are renamed ``<subgraph>.<node>`` and their
``Input``/``Output`` nodes become plain connections. Every way a graph can fail is a :class:`~evoexp.nir.NIRError`
of one line naming the file, node or edge.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import nir

from evoexp.nir.discretise import NEURON_TYPES
from evoexp.nir.errors import NIRError

__all__ = ["SUPPORTED_TYPES", "FlatGraph", "Plan", "Step", "flatten", "plan", "read_graph"]

_WEIGHTS: tuple[type, ...] = (nir.Affine, nir.Linear)
_PLAIN: tuple[type, ...] = (nir.Affine, nir.Linear, nir.Scale, nir.Flatten)
SUPPORTED_TYPES: tuple[str, ...] = ("Input", "Output", "Affine", "Linear", "Scale", "Flatten", "LIF", "CubaLIF", "LI",
                                    "CubaLI", "IF")
"""Node types evoexp runs (``NIRGraph`` subgraphs are flattened into these)."""


def read_graph(path: str | os.PathLike[str]) -> nir.NIRGraph:
    """``nir.read(path)`` with every failure as one line naming the file.

    Raises:
        NIRError: the file does not exist, is not HDF5, or ``nir.read`` rejects it (the message carries nir's
            reason).
    """
    file = Path(path)
    if not file.exists():
        raise NIRError(f"NIR file '{file}' does not exist")
    if not file.is_file():
        raise NIRError(f"NIR file '{file}' is not a file")
    if not h5py.is_hdf5(file):
        raise NIRError(f"NIR file '{file}' is not an HDF5 file (NIR graphs are written by nir.write)")
    try:
        graph = nir.read(file)
    except Exception as error:  # nir.read fails with anything from KeyError to AssertionError
        reason = str(error) or type(error).__name__
        raise NIRError(f"nir.read rejected '{file}': {type(error).__name__}: {reason}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NIRError(f"NIR file '{file}' holds a {type(graph).__name__} node, not a NIRGraph")
    return graph


@dataclass
class FlatGraph:
    """A graph without subgraphs.

    Attributes:
        nodes: Node name -> node (subgraph nodes as ``<subgraph>.<node>``), ``Input``/``Output`` of subgraphs removed.
        edges: ``(source, target)`` pairs between those nodes.
    """

    nodes: dict[str, nir.NIRNode]
    edges: list[tuple[str, str]]


def _endpoint(name: str, graph: nir.NIRGraph, kind: type, role: str) -> str:
    """The subgraph ``name``'s single ``Input`` (or ``Output``) node, for an edge into (or out of) the subgraph."""
    sub = graph.nodes[name]
    ends = [key for key, node in sub.nodes.items() if isinstance(node, kind)]
    if len(ends) != 1:
        raise NIRError(f"NIR subgraph '{name}' has {len(ends)} {kind.__name__} nodes; an edge {role} it needs exactly "
                       "one")
    return f"{name}.{ends[0]}"


def flatten(graph: nir.NIRGraph, prefix: str = "") -> FlatGraph:
    """Flatten ``graph``'s subgraphs recursively (module docstring).

    Raises:
        NIRError: an edge names a node the graph does not have, or a subgraph's entry or exit is ambiguous.
    """
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    passthrough: set[str] = set()
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            inner = flatten(node, prefix=f"{prefix}{name}.")
            nodes.update(inner.nodes)
            edges.extend(inner.edges)
            passthrough.update(f"{prefix}{name}.{key}" for key, sub in node.nodes.items()
                               if isinstance(sub, (nir.Input, nir.Output)))
        else:
            nodes[prefix + name] = node
    for source, target in graph.edges:
        for end in (source, target):
            if end not in graph.nodes and not any(end.startswith(f"{key}.") for key in graph.nodes
                                                  if isinstance(graph.nodes[key], nir.NIRGraph)):
                raise NIRError(f"NIR edge ({source!r}, {target!r}) names node {end!r}, which the graph does not have")
        if isinstance(graph.nodes.get(source), nir.NIRGraph):
            source = _endpoint(source, graph, nir.Output, "out of")
        if isinstance(graph.nodes.get(target), nir.NIRGraph):
            target = _endpoint(target, graph, nir.Input, "into")
        edges.append((prefix + source, prefix + target))
    for name in sorted(passthrough):  # a subgraph's Input/Output: connect its sources to its targets directly
        sources = [s for s, t in edges if t == name]
        targets = [t for s, t in edges if s == name]
        edges = [(s, t) for s, t in edges if name not in (s, t)] + [(s, t) for s in sources for t in targets]
        nodes.pop(name, None)
    return FlatGraph(nodes, edges)


@dataclass(frozen=True)
class Step:
    """One node of the plan.

    Attributes:
        name: The node's name.
        inputs: Names of the nodes whose outputs are summed into this node's input (the fed-forward ones).
        fused: For a neuron node, the ``Affine``/``Linear`` node in front of it that it runs itself (its only
            input, feeding nothing else); then ``inputs`` are that node's inputs.
        recurrent: For a neuron node, the ``Affine``/``Linear`` node of its recurrent connection.
    """

    name: str
    inputs: tuple[str, ...]
    fused: str | None = None
    recurrent: str | None = None


@dataclass(frozen=True)
class Plan:
    """The order in which a flattened graph is run.

    Attributes:
        graph: The flattened graph.
        input: Name of the ``Input`` node.
        output: Name of the ``Output`` node.
        steps: Every computing node in topological order (fused and recurrent weight nodes are not steps).
        output_inputs: Nodes summed into the ``Output`` node.
    """

    graph: FlatGraph
    input: str
    output: str
    steps: tuple[Step, ...]
    output_inputs: tuple[str, ...]


def _check_types(flat: FlatGraph) -> tuple[str, str]:
    inputs = [k for k, n in flat.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in flat.nodes.items() if isinstance(n, nir.Output)]
    for name, node in flat.nodes.items():
        if not isinstance(node, (nir.Input, nir.Output, *_PLAIN, *NEURON_TYPES)):
            raise NIRError(f"NIR node '{name}' has type {type(node).__name__}, which evoexp cannot run (supported: "
                           f"{', '.join(SUPPORTED_TYPES)}, and NIRGraph subgraphs of these)")
    for kind, found in (("Input", inputs), ("Output", outputs)):
        if len(found) != 1:
            raise NIRError(f"NIR graph has {len(found)} {kind} nodes ({', '.join(found) or 'none'}); evoexp runs "
                           "graphs with exactly one")
    return inputs[0], outputs[0]


def _recurrent_loops(flat: FlatGraph, preds: dict[str, list[str]], succs: dict[str, list[str]]) -> dict[str, str]:
    """Neuron node -> its recurrent Affine/Linear node, for every ``N -> W -> N`` loop."""
    loops: dict[str, str] = {}
    for name, node in flat.nodes.items():
        if not isinstance(node, _WEIGHTS) or preds[name] != succs[name] or len(preds[name]) != 1:
            continue
        neuron = preds[name][0]
        if isinstance(flat.nodes[neuron], (nir.LIF, nir.CubaLIF, nir.IF)):
            if neuron in loops:
                raise NIRError(f"NIR node '{neuron}' has two recurrent connections ({loops[neuron]}, {name}); evoexp "
                               "runs one per neuron node")
            loops[neuron] = name
    return loops


def plan(flat: FlatGraph) -> Plan:
    """Check ``flat`` and order it (module docstring).

    Raises:
        NIRError: an unsupported node type, not exactly one Input and one Output, a node that does not reach the
            Output or is not reached from the Input, or a cycle that is not a recurrent connection.
    """
    input_name, output_name = _check_types(flat)
    preds: dict[str, list[str]] = {k: [] for k in flat.nodes}
    succs: dict[str, list[str]] = {k: [] for k in flat.nodes}
    for source, target in flat.edges:
        if source not in flat.nodes or target not in flat.nodes:
            raise NIRError(f"NIR edge ({source!r}, {target!r}) names a node the graph does not have")
        preds[target].append(source)
        succs[source].append(target)
    loops = _recurrent_loops(flat, preds, succs)
    loop_nodes = set(loops.values())
    dag_preds = {k: [p for p in v if p not in loop_nodes] for k, v in preds.items() if k not in loop_nodes}
    order: list[str] = []
    indegree = {k: len(v) for k, v in dag_preds.items()}
    ready = [k for k, d in indegree.items() if d == 0]
    while ready:
        name = ready.pop(0)
        order.append(name)
        for target in succs[name]:
            if target in indegree:
                indegree[target] -= 1
                if indegree[target] == 0:
                    ready.append(target)
    if len(order) != len(dag_preds):
        stuck = sorted(k for k, d in indegree.items() if d > 0)
        raise NIRError(f"NIR graph has a cycle through {', '.join(stuck)} that is not a recurrent connection (a neuron "
                       "node feeding its own input through one Affine/Linear node)")
    for name, sources in dag_preds.items():
        if not sources and name != input_name:
            raise NIRError(f"NIR node '{name}' has no input; every node must be reached from the Input node "
                           f"'{input_name}'")
    fused: dict[str, str] = {}
    for name in order:
        node = flat.nodes[name]
        sources = dag_preds[name]
        if isinstance(node, NEURON_TYPES) and len(sources) == 1 and isinstance(flat.nodes[sources[0]], _WEIGHTS) \
                and succs[sources[0]] == [name]:
            fused[name] = sources[0]
    fused_nodes = set(fused.values())
    steps = []
    for name in order:
        if name in (input_name, output_name) or name in fused_nodes:
            continue
        if not succs[name] and name not in loops:
            raise NIRError(f"NIR node '{name}' feeds nothing; every node must reach the Output node '{output_name}'")
        inputs = tuple(dag_preds[fused[name]]) if name in fused else tuple(dag_preds[name])
        steps.append(Step(name, inputs, fused.get(name), loops.get(name)))
    return Plan(flat, input_name, output_name, tuple(steps), tuple(dag_preds[output_name]))
