"""A NIR graph run by evoexp's engine: :func:`from_nir` and the module it returns, :class:`NIRNetwork`.

The module maps inputs ``[batch, time, *input_shape]`` to the Output node's per-step values
``[batch, time, *output_shape]`` (the spikes of a spiking node, the membrane of an LI node), or to logits
``[batch, outputs]`` when a readout reduction (``"max"``, ``"mean"``, ``"last"`` over time) is given. Its trainable
parameters are the graph's Affine/Linear weights, named ``nodes.<node>.weight`` / ``nodes.<node>.bias`` (a ``.`` in a
node name becomes ``__``); its neuron nodes are :class:`~evoexp.models.NeuronPopulation` modules, so every evoexp
verifier runs it in smooth mode. The settings NIR does not carry (time step, reset, surrogate; see
:mod:`evoexp.nir.metadata`) are explicit: an argument, else the graph's evoexp metadata, else an error naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from evoexp.arguments import checked_by
from evoexp.functional.discrete import StepConventions
from evoexp.functional.lif import ReadoutMode, ResetMode, readout_logits, sequence_linear
from evoexp.models.population import NeuronPopulation
from evoexp.nir import metadata
from evoexp.nir.discretise import DECAYS, NEURON_TYPES, Decay, node_constants
from evoexp.nir.errors import NIRError
from evoexp.nir.graph import Plan, flatten, plan, read_graph
from evoexp.surrogate import SurrogateGradient, get_surrogate

__all__ = ["NIRNetwork", "NIRSettings", "NodeRecord", "check_nir_network", "from_nir", "nir_network"]

_RESETS = ("subtract", "zero")
_READOUTS = ("max", "mean", "last")


@dataclass(frozen=True)
class NIRSettings:
    r"""What a NIR graph does not carry, as evoexp ran it.

    Attributes:
        dt: Time step (in the unit of the graph's time constants).
        reset: ``"subtract"`` or ``"zero"`` (reset to ``v_reset``).
        surrogate: The spike nonlinearity of every spiking node.
        decay: ``"euler"`` (:math:`1 - \Delta t/\tau`) or ``"exp"``.
        conventions: Step conventions of every neuron node (their ``reset_detached`` is the detached reset).
        sources: Where each setting came from: ``"argument"``, ``"metadata"`` or ``"default"``.
    """

    dt: float
    reset: ResetMode
    surrogate: SurrogateGradient
    decay: Decay
    conventions: StepConventions
    sources: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: every setting with its source."""
        values = {"dt": f"{self.dt:g}", "reset": self.reset, "surrogate": repr(self.surrogate), "decay": self.decay,
                  "conventions": metadata.conventions_name(self.conventions),
                  "detach_reset": str(self.conventions.reset_detached)}
        return ", ".join(f"{k}={v} ({self.sources.get(k, 'argument')})" for k, v in values.items())


@dataclass(frozen=True)
class NodeRecord:
    """One node's values over a forward pass (``[batch, time, ...]``).

    Attributes:
        output: What the node passes on (spikes of a spiking node, membrane of a non-spiking one, the transform's
            output otherwise).
        membrane: The recorded membrane of a neuron node (``None`` for other nodes).
    """

    output: Tensor
    membrane: Tensor | None = None


class _Weights(nn.Module):
    """An Affine (weight and bias) or Linear (weight) node."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(_tensor(weight))
        self.bias = nn.Parameter(_tensor(bias)) if bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        return sequence_linear(x, self.weight, self.bias)


class _Scale(nn.Module):
    """A Scale node: ``x * scale`` (the scale is a buffer, not trained)."""

    scale: Tensor

    def __init__(self, scale: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scale", _tensor(np.atleast_1d(scale)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x.dtype)


class _Flatten(nn.Module):
    """A Flatten node: reshape each step's values to the node's output shape."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[:2], *self.shape)


def _tensor(array: Any) -> Tensor:
    values = np.asarray(array)
    dtype = torch.float64 if values.dtype == np.float64 else torch.float32
    return torch.as_tensor(np.ascontiguousarray(values), dtype=dtype)


def _module_key(name: str, taken: set[str]) -> str:
    key = name.replace(".", "__") or "node"
    while key in taken:
        key += "_"
    taken.add(key)
    return key


class NIRNetwork(nn.Module):
    """A NIR graph as an ``nn.Module`` (module docstring). Build it with :func:`from_nir`.

    Args:
        graph_plan: The checked, flattened and ordered graph.
        settings: Time step, reset, surrogate, decay mapping and step conventions.
        readout: ``None`` (per-step output values) or a reduction over time to logits.

    Attributes:
        nodes: The node modules, keyed by :attr:`keys` ``[node name]``.
        keys: NIR node name -> key in :attr:`nodes`.
        plan: The graph as run.
        settings: See the argument.
        readout: See the argument.
        input_shape: Shape of one step of the input.
    """

    def __init__(self, graph_plan: Plan, settings: NIRSettings, readout: ReadoutMode | None = None) -> None:
        super().__init__()
        if readout is not None and readout not in _READOUTS:
            raise NIRError(f"readout must be one of {_READOUTS} or None, got {readout!r}")
        self.plan, self.settings, self.readout = graph_plan, settings, readout
        graph = graph_plan.graph
        self.input_shape = tuple(int(d) for d in np.atleast_1d(graph.nodes[graph_plan.input].input_type["input"]))
        self.nodes = nn.ModuleDict()
        self.keys: dict[str, str] = {}
        taken: set[str] = set()
        for name, node in graph.nodes.items():
            module = self._module(name, node)
            if module is not None:
                self.keys[name] = _module_key(name, taken)
                self.nodes[self.keys[name]] = module
        self._check_runs()

    def _module(self, name: str, node: nir.NIRNode) -> nn.Module | None:
        s = self.settings
        if isinstance(node, (nir.Affine, nir.Linear)):
            weight = np.asarray(node.weight)
            if weight.ndim != 2:
                raise NIRError(f"NIR node '{name}': weight has shape {weight.shape}; evoexp runs 2-D weights")
            return _Weights(weight, np.asarray(node.bias) if isinstance(node, nir.Affine) else None)
        if isinstance(node, nir.Scale):
            return _Scale(np.asarray(node.scale))
        if isinstance(node, nir.Flatten):
            shape = node.output_type.get("output") if node.output_type else None
            if shape is None:
                raise NIRError(f"NIR node '{name}' (Flatten) has no output shape")
            return _Flatten(tuple(int(d) for d in np.atleast_1d(shape)))
        if isinstance(node, NEURON_TYPES):
            constants = node_constants(name, node, dt=s.dt, reset=s.reset, decay=s.decay)
            return NeuronPopulation(constants, s.conventions, s.surrogate)
        return None

    def _check_runs(self) -> None:
        with torch.no_grad():
            self.record(torch.zeros(1, 1, *self.input_shape, dtype=self._dtype() or torch.float32))

    def _dtype(self) -> torch.dtype | None:
        return next((p.dtype for p in self.parameters()), None)

    def module_of(self, name: str) -> nn.Module:
        """The module of NIR node ``name``."""
        return self.nodes[self.keys[name]]

    def weights_of(self, name: str) -> tuple[nn.Parameter, nn.Parameter | None]:
        """``(weight, bias)`` of the Affine/Linear node ``name`` (bias ``None`` for Linear).

        Raises:
            TypeError: ``name`` is not an Affine/Linear node.
        """
        module = self.module_of(name)
        if not isinstance(module, _Weights):
            raise TypeError(f"NIR node '{name}' is not an Affine/Linear node")
        return module.weight, module.bias

    @property
    def populations(self) -> dict[str, NeuronPopulation]:
        """Neuron node name -> its population, in the order they run."""
        out = {}
        for step in self.plan.steps:
            module = self.module_of(step.name)
            if isinstance(module, NeuronPopulation):
                out[step.name] = module
        return out

    @property
    def surrogate(self) -> SurrogateGradient:
        """The surrogate of every spiking node (settable with an object or a registered name)."""
        return self.settings.surrogate

    @surrogate.setter
    def surrogate(self, value: SurrogateGradient | str) -> None:
        shape = get_surrogate(value) if isinstance(value, str) else value
        if not isinstance(shape, SurrogateGradient):
            raise ValueError(f"surrogate must be a SurrogateGradient or a registered name, got {value!r}")
        self.settings = replace(self.settings, surrogate=shape)
        for population in self.populations.values():
            population.surrogate = shape

    def forward(self, x: Tensor) -> Tensor:
        """The Output node's values ``[batch, time, ...]`` (logits ``[batch, ...]`` with a readout reduction).

        Raises:
            ValueError: ``x`` does not have shape ``[batch, time, *input_shape]``.
        """
        output = self._run(x, None)
        return output if self.readout is None else readout_logits(output, self.readout)

    def record(self, x: Tensor) -> dict[str, NodeRecord]:
        """Every node's values (and each neuron node's membrane) for input ``x``; the Output node's under its name."""
        records: dict[str, NodeRecord] = {}
        records[self.plan.output] = NodeRecord(self._run(x, records))
        return records

    def _run(self, x: Tensor, records: dict[str, NodeRecord] | None) -> Tensor:
        if x.dim() != 2 + len(self.input_shape) or tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(f"x must have shape [batch, time, {', '.join(map(str, self.input_shape))}], got "
                             f"{tuple(x.shape)}")
        dtype = self._dtype()
        values = {self.plan.input: x.to(dtype) if dtype is not None else x}
        for step in self.plan.steps:
            inputs = [values[name] for name in step.inputs]
            total = inputs[0] if len(inputs) == 1 else torch.stack(inputs).sum(0)
            module = self.module_of(step.name)
            try:
                if isinstance(module, NeuronPopulation):
                    output, membrane = self._population(step.fused, step.recurrent, module, total, records is not None)
                else:
                    output, membrane = module(total), None
            except RuntimeError as error:
                raise NIRError(f"NIR node '{step.name}' cannot run on its input of shape {tuple(total.shape)}: "
                               f"{error}") from None
            values[step.name] = output
            if records is not None:
                records[step.name] = NodeRecord(output, membrane)
        outputs = [values[name] for name in self.plan.output_inputs]
        return outputs[0] if len(outputs) == 1 else torch.stack(outputs).sum(0)

    def _population(self, fused: str | None, recurrent: str | None, module: NeuronPopulation, x: Tensor,
                    record: bool) -> tuple[Tensor, Tensor | None]:
        weight: Tensor | None = None
        bias: Tensor | None = None
        rec_weight: Tensor | None = None
        rec_bias: Tensor | None = None
        if fused is not None:
            weight, bias = self.weights_of(fused)
        if recurrent is not None:
            rec_weight, rec_bias = self.weights_of(recurrent)
        if record:
            return module.run(x, weight, bias, rec_weight, rec_bias)
        return module(x, weight, bias, rec_weight, rec_bias), None

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, readout={self.readout}, {self.settings.describe()}"


def _setting(name: str, given: Any, meta: Mapping[str, Any], key: str, sources: dict[str, str],
             default: Any = None) -> Any:
    if given is not None:
        sources[name] = "argument"
        return given
    value = metadata.read_value(meta, key)
    if value is not None:
        sources[name] = "metadata"
        return value
    if default is not None:
        sources[name] = "default"
        return default
    raise NIRError(f"missing {name}: NIR does not carry it and this graph has no '{key}' metadata; give {name}")


def from_nir(
    graph_or_path: nir.NIRGraph | str | os.PathLike[str],
    *,
    dt: float | None = None,
    reset: ResetMode | None = None,
    surrogate: SurrogateGradient | str | None = None,
    decay: Decay | None = None,
    conventions: StepConventions | str | None = None,
    detach_reset: bool | None = None,
    readout: ReadoutMode | None = None,
) -> NIRNetwork:
    """Read a NIR graph (a file written by ``nir.write``, or a ``nir.NIRGraph``) into evoexp's engine.

    ``dt``, ``reset`` and ``surrogate`` decide how the network runs and trains and are not part of NIR: each is
    taken from the argument, else from the graph's evoexp metadata (:mod:`evoexp.nir.metadata`), else it is an
    error naming it. The other settings default to NIR's reference: ``decay="euler"``, ``conventions="nir"``
    (:data:`~evoexp.functional.discrete.NIR_REFERENCE`), ``detach_reset=False``, unless the metadata says otherwise
    (a graph exported from an :class:`~evoexp.models.SNN` says ``conventions="evoexp"``, and then runs on evoexp's
    own LIF node).

    Args:
        graph_or_path: The graph, or the path of its file.
        dt: Time step (> 0, in the unit of the graph's time constants).
        reset: ``"subtract"`` or ``"zero"`` (reset to ``v_reset``).
        surrogate: Surrogate object or registered name.
        decay: ``"euler"`` or ``"exp"`` (:mod:`evoexp.nir.discretise`).
        conventions: Step conventions (a :class:`~evoexp.functional.discrete.StepConventions`, ``"nir"``,
            ``"evoexp"`` or a JSON object of fields).
        detach_reset: Detach the reset from the backward pass.
        readout: ``None`` (per-step values) or ``"max"``/``"mean"``/``"last"`` over time.

    Raises:
        NIRError: a file that does not exist, is not HDF5 or that ``nir.read`` rejects; a node evoexp cannot run; a
            missing or bad setting (one line each).
    """
    if isinstance(graph_or_path, nir.NIRGraph):
        graph = graph_or_path
    elif isinstance(graph_or_path, (str, os.PathLike)):
        graph = read_graph(graph_or_path)
    else:
        raise NIRError(f"from_nir expects a nir.NIRGraph or a file path, got {type(graph_or_path).__name__}")
    meta = graph.metadata if isinstance(graph.metadata, Mapping) else {}
    sources: dict[str, str] = {}
    step = metadata.positive_dt(_setting("dt", dt, meta, metadata.DT, sources), "dt")
    reset_mode = _setting("reset", reset, meta, metadata.RESET, sources)
    if reset_mode not in _RESETS:
        raise NIRError(f"reset must be one of {_RESETS}, got {reset_mode!r}")
    shape = _setting("surrogate", surrogate, meta, metadata.SURROGATE, sources)
    if isinstance(shape, str):
        shape = metadata.surrogate_from(shape) if sources["surrogate"] == "metadata" else _named(shape)
    if not isinstance(shape, SurrogateGradient):
        raise NIRError(f"surrogate must be a SurrogateGradient or a registered name, got {shape!r}")
    decay_mode = _setting("decay", decay, meta, metadata.DECAY, sources, default="euler")
    if decay_mode not in DECAYS:
        raise NIRError(f"decay must be one of {DECAYS}, got {decay_mode!r}")
    steps = metadata.conventions_from(_setting("conventions", conventions, meta, metadata.CONVENTIONS, sources,
                                               default="nir"))
    detach = bool(_setting("detach_reset", detach_reset, meta, metadata.DETACH_RESET, sources, default=False))
    settings = NIRSettings(step, reset_mode, shape, decay_mode, replace(steps, reset_detached=detach), sources)
    return NIRNetwork(plan(flatten(graph)), settings, readout)


def _named(name: str) -> SurrogateGradient:
    try:
        return get_surrogate(name)
    except ValueError as error:
        raise NIRError(str(error)) from None


def check_nir_network(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`nir_network`: ``path``, ``dt`` and ``reset`` given, and the graph runs with them.

    Raises:
        ValueError: The first missing argument, or the graph's reason (the message starts with the argument's name).
    """
    for key, why in (("path", "the NIR file"), ("dt", "NIR carries no time step"),
                     ("reset", "NIR leaves the reset mechanism open: subtract or zero")):
        if args[key] is None:
            raise ValueError(f"{key} is required with model=nir ({why}); give model.{key}=...")
    try:
        from_nir(args["path"], dt=args["dt"], reset=args["reset"], surrogate="fast_sigmoid",
                 detach_reset=args["detach_reset"])
    except NIRError as exc:
        raise ValueError(f"path: {exc}") from None


@checked_by(check_nir_network)
def nir_network(
    path: str | None = None,
    *,
    n_inputs: int | None = None,
    n_classes: int | None = None,
    dt: float | None = None,
    reset: ResetMode | None = None,
    surrogate: SurrogateGradient | str = "fast_sigmoid",
    detach_reset: bool = False,
    readout: ReadoutMode = "max",
) -> NIRNetwork:
    """The NIR file ``path`` run by evoexp's engine: the callable of the ``model=nir`` preset.

    NIR carries no time step and no reset mechanism, so ``path``, ``dt`` and ``reset`` are required.

    Args:
        path: The NIR file (written by ``nir.write``).
        n_inputs: The data's input channels, when known: the graph's input size must equal it.
        n_classes: The data's classes, when known: the graph's output size must equal it.
        dt: Simulation step, in the unit of the graph's time constants.
        reset: ``subtract`` or ``zero``.
        surrogate: The surrogate shape of every spiking node.
        detach_reset: Cut the reset out of the backward pass.
        readout: ``max``, ``mean`` or ``last`` over the readout's membrane trace.

    Raises:
        ValueError: ``path``, ``dt`` or ``reset`` is missing, the graph does not run with them, or its input or output
            size is not the data's (one line naming the argument).
    """
    assert path is not None and dt is not None and reset is not None  # checked by check_nir_network
    net = from_nir(path, dt=dt, reset=reset, surrogate=surrogate, detach_reset=detach_reset, readout=readout)
    outputs = tuple(int(d) for d in net.plan.graph.nodes[net.plan.output].output_type["output"])
    for what, graph, data in (("inputs", net.input_shape, n_inputs), ("outputs", outputs, n_classes)):
        if data is not None and tuple(graph) != (data,):
            raise ValueError(f"path: the graph has {what} {list(graph)}, the data has [{data}]")
    return net
