"""The network every library builds: the layers of an imported NIR graph, as plain weights and discrete constants.

The comparison runs graphs that are a chain ``Input -> [Affine/Linear -> spiking node (+ recurrent Affine/Linear)]+
-> Affine/Linear -> LI -> Output`` with one value per constant in each node (what every compared library can
build). :func:`network_spec` reads that chain from a :class:`~evoexp.nir.NIRNetwork`; any other graph is
:class:`Unmappable` into the peers (the report names the reason). The constants each peer receives are NIR's
reference discretisation of the node (forward Euler, :mod:`evoexp.nir.discretise`), whatever the evoexp network's own
decay mapping: the peers' time-constant parameters are all Euler's.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import torch
from torch import Tensor

from evoexp.crosscheck.catalogue import LayerModel
from evoexp.functional.discrete import NeuronConstants
from evoexp.functional.lif import ResetMode
from evoexp.models.population import NeuronPopulation
from evoexp.nir.discretise import node_constants
from evoexp.nir.network import NIRNetwork
from evoexp.surrogate import SurrogateGradient

__all__ = ["LayerSpec", "NetworkSpec", "ReadoutSpec", "Unmappable", "layer_model", "network_spec"]


class Unmappable(Exception):
    """A network (or one of its settings) that a library cannot build; the message is the one-line reason."""


@dataclass(frozen=True, eq=False)
class LayerSpec:
    """One spiking layer: its weights and NIR's reference constants.

    Attributes:
        population: Name of the neuron node.
        weight_node: Name of the Affine/Linear node in front of it.
        recurrent_node: Name of its recurrent Affine/Linear node (``None``: feed-forward).
        weight: ``W`` ``[neurons, inputs]``.
        bias: ``b`` or ``None``.
        recurrent: ``V`` ``[neurons, neurons]`` or ``None``.
        recurrent_bias: Bias of the recurrent node or ``None``.
        reference: NIR's reference (Euler) constants of the node.
        current_based: Whether the node has a synaptic current (a CubaLIF with a decay above 0; a CubaLIF with
            ``tau_syn = dt`` is a current-free LIF under Euler's step).
    """

    population: str
    weight_node: str
    recurrent_node: str | None
    weight: Tensor
    bias: Tensor | None
    recurrent: Tensor | None
    recurrent_bias: Tensor | None
    reference: LayerModel
    current_based: bool

    @property
    def size(self) -> int:
        """Neurons."""
        return int(self.weight.shape[0])


@dataclass(frozen=True, eq=False)
class ReadoutSpec:
    r"""The non-spiking readout: an Affine/Linear node and an LI node.

    Attributes:
        population: Name of the LI node.
        weight_node: Name of the Affine/Linear node in front of it.
        weight: ``W`` ``[outputs, neurons]``.
        bias: ``b`` or ``None``.
        beta: NIR's reference decay.
        k: NIR's reference input scale :math:`(1 - \beta) R`.
    """

    population: str
    weight_node: str
    weight: Tensor
    bias: Tensor | None
    beta: float
    k: float


@dataclass(frozen=True, eq=False)
class NetworkSpec:
    """The chain every library builds.

    Attributes:
        layers: The spiking layers, input first.
        readout: The readout.
        dt: Time step.
        reset: ``"subtract"`` or ``"zero"``.
        surrogate: The surrogate of every spiking layer.
        detach_reset: Whether the evoexp network detaches its reset.
    """

    layers: tuple[LayerSpec, ...]
    readout: ReadoutSpec
    dt: float
    reset: ResetMode
    surrogate: SurrogateGradient
    detach_reset: bool

    @property
    def input_size(self) -> int:
        """Input channels."""
        return int(self.layers[0].weight.shape[1])

    def parameter_names(self) -> list[str]:
        """Canonical names of the trainable tensors (``<node>.weight``, ``<node>.bias``), in network order."""
        names = []
        for layer in self.layers:
            names.append(f"{layer.weight_node}.weight")
            if layer.bias is not None:
                names.append(f"{layer.weight_node}.bias")
            if layer.recurrent_node is not None:
                names.append(f"{layer.recurrent_node}.weight")
                if layer.recurrent_bias is not None:
                    names.append(f"{layer.recurrent_node}.bias")
        names.append(f"{self.readout.weight_node}.weight")
        if self.readout.bias is not None:
            names.append(f"{self.readout.weight_node}.bias")
        return names


def _single(name: str, field: str, values: Tensor | None) -> float:
    if values is None:
        raise Unmappable(f"node '{name}' has no {field}")
    first = float(values[0])
    if not bool(torch.all(values == first)):
        raise Unmappable(f"node '{name}' has a different {field} per neuron; the peers' neurons take one value")
    return first


def layer_model(name: str, constants: NeuronConstants) -> LayerModel:
    """The one-value-per-layer constants of a spiking node.

    Raises:
        Unmappable: a constant differs between neurons.
    """
    return LayerModel(*(_single(name, f, getattr(constants, f)) for f in
                        ("alpha", "beta", "k_in", "k_mem", "leak", "threshold", "v_reset")))


def _weights(net: NIRNetwork, node: str) -> tuple[Tensor, Tensor | None]:
    weight, bias = net.weights_of(node)
    return weight.detach().clone().double(), None if bias is None else bias.detach().clone().double()


def network_spec(net: NIRNetwork) -> NetworkSpec:
    """The chain of ``net`` (module docstring).

    Raises:
        Unmappable: the graph is not such a chain, or a node has per-neuron constants.
    """
    s = net.settings
    steps = net.plan.steps
    previous = net.plan.input
    layers: list[LayerSpec] = []
    for index, step in enumerate(steps):
        module = net.module_of(step.name)
        if not isinstance(module, NeuronPopulation):
            raise Unmappable(f"node '{step.name}' is a {type(net.plan.graph.nodes[step.name]).__name__}; the "
                             "comparison runs chains of Affine/Linear -> neuron nodes")
        if step.fused is None or step.inputs != (previous,):
            raise Unmappable(f"node '{step.name}' is not fed by one Affine/Linear node from '{previous}'")
        node = net.plan.graph.nodes[step.name]
        weight, bias = _weights(net, step.fused)
        last = index == len(steps) - 1
        if last:
            if module.spiking or not isinstance(node, nir.LI):
                raise Unmappable(f"the last node '{step.name}' is a {type(node).__name__}; the comparison needs an "
                                 "LI readout")
            if net.plan.output_inputs != (step.name,):
                raise Unmappable("the Output node is not fed by the LI readout alone")
            constants = node_constants(step.name, node, dt=s.dt, reset=s.reset, decay="euler")
            beta = _single(step.name, "beta", constants.beta)
            readout = ReadoutSpec(step.name, step.fused, weight, bias, beta,
                                  _single(step.name, "k_mem", constants.k_mem))
        else:
            if not module.spiking:
                raise Unmappable(f"node '{step.name}' is non-spiking but not the readout")
            recurrent, recurrent_bias = (None, None) if step.recurrent is None else _weights(net, step.recurrent)
            constants = node_constants(step.name, node, dt=s.dt, reset=s.reset, decay="euler")
            model = layer_model(step.name, constants)
            layers.append(LayerSpec(step.name, step.fused, step.recurrent, weight, bias, recurrent,
                                    recurrent_bias, model, model.alpha > 0))
        previous = step.name
    if not layers:
        raise Unmappable("the graph has no spiking layer")
    return NetworkSpec(tuple(layers), readout, s.dt, s.reset, s.surrogate, s.conventions.reset_detached)
