"""One network in every library: evoexp, snnTorch, SpikingJelly and Norse builders, and evoexp's emulation of each.

Every library builds the :class:`~evoexp.crosscheck.spec.NetworkSpec` with its own neurons (snnTorch ``Leaky`` /
``Synaptic``, SpikingJelly ``LIFNode``, Norse ``LIFBoxCell`` / ``LIFCell``; readouts ``Leaky`` without reset,
``NonSpikingLIFNode``, ``LIBoxCell``) and the same weights, decays, threshold, reset and surrogate (the peer function
equal to the evoexp surrogate, :mod:`evoexp.peers.names`). Everything else is the library's own default: that is
what a user of the library runs. A setting in ``align`` makes the peer match evoexp where the library can
(``input_scaling``/``readout``: the missing factor is applied to the current in front of the neuron;
``reset_detached``: SpikingJelly's ``detach_reset``). Recurrent connections are a ``Linear`` on the previous step's
spikes added to the current, the same wiring in every library.

Each builder also states its :class:`~evoexp.crosscheck.catalogue.LibraryModel` -- the conventions and effective
constants the library's code computes -- and :class:`EngineChain` runs any such model on evoexp's engine
(:func:`~evoexp.functional.discrete.neuron_sequence`). The comparison checks that the emulation reproduces the
library: the model is not a claim but a tested description.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from evoexp.crosscheck.catalogue import LayerModel, LibraryModel
from evoexp.crosscheck.spec import NetworkSpec, Unmappable, layer_model
from evoexp.functional.discrete import NeuronConstants, StepConventions
from evoexp.models.population import NeuronPopulation
from evoexp.nir.network import NIRNetwork
from evoexp.peers.names import available_peer_surrogates, get_peer
from evoexp.surrogate import SurrogateGradient

__all__ = [
    "LIBRARIES",
    "EngineChain",
    "EvoexpLibrary",
    "Library",
    "NorseLibrary",
    "Participant",
    "PeerNetwork",
    "SnnTorchLibrary",
    "SpikingJellyLibrary",
    "peer_function",
]


@dataclass
class Participant:
    """A library's network in the comparison.

    Attributes:
        name: The library's name.
        network: Its network: ``forward(x)`` gives the readout's per-step values; after a forward,
            ``records()`` gives each spiking layer's ``(spikes, membrane)`` and ``parameters_by_name()`` the
            trainable tensors under the spec's canonical names.
        model: What the library computes (conventions and effective constants).
    """

    name: str
    network: nn.Module
    model: LibraryModel


def peer_function(shape: SurrogateGradient, library: str) -> tuple[str, dict[str, float]]:
    """The peer function of ``library`` equal to ``shape``, with its parameters (:mod:`evoexp.peers.names`).

    Raises:
        Unmappable: no function of ``library`` equals ``shape`` at its parameters.
    """
    params = shape.params()
    seeds = {v for v in params.values()}
    candidates = sorted(seeds | {f(v) for v in seeds for f in (lambda v: v / math.sqrt(2), lambda v: v / 2,
                                                                  lambda v: 2 / v, lambda v: 1 / v, lambda v: 2 * v)})
    for key in available_peer_surrogates(library=library, mapped_only=True):
        entry = get_peer(key)
        if entry.shape != shape.name or len(entry.defaults) != 1:
            continue
        (name,) = entry.defaults
        for value in candidates:
            try:
                found = entry.evoexp(**{name: value})
            except ValueError:
                continue
            if all(math.isclose(found.params()[k], v, rel_tol=1e-12) for k, v in params.items()):
                return key, {name: value}
    raise Unmappable(f"no {library} surrogate equals {shape!r} (its functions with an evoexp shape: "
                     f"{', '.join(available_peer_surrogates(library=library, mapped_only=True))})")


class _Chain(nn.Module):
    """Weights of the spec as ``nn.Linear`` modules, and their canonical names."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.fcs = nn.ModuleList(_linear(layer.weight, layer.bias) for layer in spec.layers)
        self.recs = nn.ModuleList(_linear(layer.recurrent, layer.recurrent_bias) if layer.recurrent is not None
                                  else nn.Identity() for layer in spec.layers)
        self.readout_fc = _linear(spec.readout.weight, spec.readout.bias)
        self._records: list[tuple[Tensor, Tensor]] = []

    def parameters_by_name(self) -> dict[str, Tensor]:
        """The trainable tensors under the spec's canonical names."""
        out: dict[str, Tensor] = {}
        for layer, fc, rec in zip(self.spec.layers, self.fcs, self.recs):
            assert isinstance(fc, nn.Linear)
            out[f"{layer.weight_node}.weight"] = fc.weight
            if fc.bias is not None:
                out[f"{layer.weight_node}.bias"] = fc.bias
            if isinstance(rec, nn.Linear):
                out[f"{layer.recurrent_node}.weight"] = rec.weight
                if rec.bias is not None:
                    out[f"{layer.recurrent_node}.bias"] = rec.bias
        out[f"{self.spec.readout.weight_node}.weight"] = self.readout_fc.weight
        if self.readout_fc.bias is not None:
            out[f"{self.spec.readout.weight_node}.bias"] = self.readout_fc.bias
        return out

    def records(self) -> list[tuple[Tensor, Tensor]]:
        """``(spikes, membrane)`` ``[batch, time, neurons]`` of each spiking layer in the last forward."""
        return self._records


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


class PeerNetwork(_Chain):
    """A peer library's neurons stepped through time, with the spec's weights (same wiring for every library).

    Args:
        spec: The network.
        neurons: The library's neuron module of each spiking layer.
        readout: The library's readout neuron.
        scales: Factor applied to each layer's current (1 unless ``input_scaling`` is aligned).
        readout_scale: Factor applied to the readout's current.
        step: ``step(neuron, current, state) -> (spikes, membrane, state)`` for one time step.
        readout_run: ``readout_run(readout, currents [B, T, O]) -> traces [B, T, O]``.
        reset: ``reset(neuron)`` before a forward (stateful libraries).
    """

    def __init__(self, spec: NetworkSpec, neurons: list[nn.Module], readout: nn.Module, scales: list[float],
                 readout_scale: float, step: Any, readout_run: Any, reset: Any = None) -> None:
        super().__init__(spec)
        self.neurons = nn.ModuleList(neurons)
        self.readout = readout
        self.scales, self.readout_scale = scales, readout_scale
        self._step, self._readout_run, self._reset = step, readout_run, reset

    def forward(self, x: Tensor) -> Tensor:
        h = x.to(self.readout_fc.weight.dtype)
        records = []
        for neuron, fc, rec, scale in zip(self.neurons, self.fcs, self.recs, self.scales):
            if self._reset is not None:
                self._reset(neuron)
            currents = fc(h) * scale if scale != 1.0 else fc(h)
            spike = torch.zeros_like(currents[:, 0])
            state: Any = None
            spikes, membranes = [], []
            for t in range(currents.shape[1]):
                current = currents[:, t]
                if isinstance(rec, nn.Linear):
                    current = current + rec(spike) * scale if scale != 1.0 else current + rec(spike)
                spike, membrane, state = self._step(neuron, current, state)
                spike = spike.to(current.dtype)
                spikes.append(spike)
                membranes.append(membrane)
            h = torch.stack(spikes, dim=1)
            records.append((h, torch.stack(membranes, dim=1)))
        self._records = records
        if self._reset is not None:
            self._reset(self.readout)
        currents = self.readout_fc(h)
        return self._readout_run(self.readout, currents * self.readout_scale if self.readout_scale != 1.0
                                 else currents)


class EngineChain(_Chain):
    """A :class:`~evoexp.crosscheck.catalogue.LibraryModel` run on evoexp's engine (the emulation of a library)."""

    def __init__(self, spec: NetworkSpec, model: LibraryModel) -> None:
        super().__init__(spec)
        self.populations = nn.ModuleList(
            NeuronPopulation(_constants(layer, layer_spec.size, model.reset), model.conventions, spec.surrogate)
            for layer, layer_spec in zip(model.layers, spec.layers))
        n = spec.readout.weight.shape[0]
        self.readout = NeuronPopulation(
            NeuronConstants(alpha=_full(n, 0.0), beta=_full(n, model.readout_beta), k_in=_full(n, 1.0),
                            k_mem=_full(n, model.readout_k), leak=_full(n, 0.0), threshold=None,
                            v_reset=_full(n, 0.0)), model.conventions, spec.surrogate)

    def forward(self, x: Tensor) -> Tensor:
        h = x.to(self.readout_fc.weight.dtype)
        records = []
        for population, fc, rec in zip(self.populations, self.fcs, self.recs):
            assert isinstance(population, NeuronPopulation) and isinstance(fc, nn.Linear)
            recurrent = rec if isinstance(rec, nn.Linear) else None
            h, membrane = population.run(h, fc.weight, fc.bias, None if recurrent is None else recurrent.weight,
                                         None if recurrent is None else recurrent.bias)
            records.append((h, membrane))
        self._records = records
        return self.readout(h, self.readout_fc.weight, self.readout_fc.bias)


def _full(n: int, value: float) -> Tensor:
    return torch.full((n,), float(value), dtype=torch.float64)


def _constants(layer: LayerModel, n: int, reset: str) -> NeuronConstants:
    return NeuronConstants(alpha=_full(n, layer.alpha), beta=_full(n, layer.beta), k_in=_full(n, layer.k_in),
                           k_mem=_full(n, layer.k_mem), leak=_full(n, layer.leak), threshold=_full(n, layer.threshold),
                           v_reset=_full(n, layer.v_reset), reset=reset)  # type: ignore[arg-type]  # a ResetMode name


class Library(ABC):
    """How one library builds the network and what it computes."""

    name: ClassVar[str]
    title: ClassVar[str]
    package: ClassVar[str]

    def missing(self) -> str | None:
        """Why the library cannot run here (not installed), or ``None``."""
        try:
            importlib.import_module(self.package)
        except ImportError as error:
            return f"{self.title} is not installed ({error}; pip install evoexp[peers])"
        return None

    @abstractmethod
    def model(self, spec: NetworkSpec, align: frozenset[str]) -> LibraryModel:
        """The library's conventions and effective constants for ``spec``.

        Raises:
            Unmappable: the library cannot build ``spec`` (the reason names the node or setting).
        """

    @abstractmethod
    def build(self, spec: NetworkSpec, align: frozenset[str]) -> nn.Module:
        """The library's network for ``spec`` (float64), see :class:`Participant`."""

    def participant(self, spec: NetworkSpec, align: frozenset[str]) -> Participant:
        """:meth:`model` and :meth:`build` together."""
        return Participant(self.name, self.build(spec, align), self.model(spec, align))


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise Unmappable(reason)


def _scale(align: frozenset[str], cause: str, wanted: float, has: float) -> float:
    """The factor applied in front of a neuron: ``wanted / has`` when ``cause`` is aligned, else 1."""
    return wanted / has if cause in align else 1.0


class SnnTorchLibrary(Library):
    """snnTorch 1.0: ``Leaky`` (LIF) / ``Synaptic`` (CubaLIF) with their defaults (``reset_delay=True``)."""

    name, title, package = "snntorch", "snnTorch", "snntorch"

    def _layer(self, layer: LayerModel, align: frozenset[str]) -> LayerModel:
        _require(layer.leak == 0.0, "snnTorch's neurons have no leak potential (v_leak must be 0)")
        _require(layer.v_reset == 0.0, "snnTorch resets to 0 or by the threshold (v_reset must be 0)")
        scale = _scale(align, "input_scaling", layer.k_in * layer.k_mem, 1.0)
        return replace(layer, k_in=1.0, k_mem=scale)

    def model(self, spec: NetworkSpec, align: frozenset[str]) -> LibraryModel:
        layers = tuple(self._layer(layer.reference, align) for layer in spec.layers)
        zero_leaky = spec.reset == "zero" and not any(layer.current_based for layer in spec.layers)
        if spec.reset == "zero" and any(layer.current_based for layer in spec.layers) and \
                not all(layer.current_based for layer in spec.layers):
            raise Unmappable("snnTorch's Leaky and Synaptic reset to zero differently; mix of LIF and CubaLIF layers")
        conventions = StepConventions(reset_timing="next_step", reset_leak="before" if zero_leaky else "after",
                                      reset_detached=True, initial_reset=True)
        r = spec.readout
        return LibraryModel(self.name, conventions, layers, r.beta, _scale(align, "readout", r.k, 1.0), spec.reset)

    def build(self, spec: NetworkSpec, align: frozenset[str]) -> nn.Module:
        import snntorch as snn
        from snntorch import surrogate

        model = self.model(spec, align)
        key, params = peer_function(spec.surrogate, "snntorch")
        factory = getattr(surrogate, key.split(":", 1)[1])
        neurons: list[nn.Module] = []
        for layer, m in zip(spec.layers, model.layers):
            common = {"beta": _t(m.beta), "threshold": _t(m.threshold), "spike_grad": factory(**params),
                      "reset_mechanism": spec.reset}
            neurons.append(snn.Synaptic(alpha=_t(m.alpha), **common) if layer.current_based else snn.Leaky(**common))
        readout = snn.Leaky(beta=_t(model.readout_beta), reset_mechanism="none", spike_grad=factory(**params))
        return PeerNetwork(spec, neurons, readout, [m.k_mem for m in model.layers], model.readout_k,
                           _snntorch_step, _snntorch_readout)


def _t(value: float) -> Tensor:
    return torch.tensor(value, dtype=torch.float64)


def _snntorch_step(neuron: nn.Module, current: Tensor, state: Any) -> tuple[Tensor, Tensor, Any]:
    if state is None:
        state = (torch.zeros_like(current), torch.zeros_like(current))
    if type(neuron).__name__ == "Synaptic":
        spike, syn, mem = neuron(current, state[0], state[1])
        return spike, mem, (syn, mem)
    spike, mem = neuron(current, state[1])
    return spike, mem, (state[0], mem)


def _snntorch_readout(readout: nn.Module, currents: Tensor) -> Tensor:
    mem = torch.zeros_like(currents[:, 0])
    traces = []
    for t in range(currents.shape[1]):
        _, mem = readout(currents[:, t], mem)
        traces.append(mem)
    return torch.stack(traces, dim=1)


class SpikingJellyLibrary(Library):
    """SpikingJelly 2.0: ``LIFNode`` (``decay_input=True``, ``detach_reset=False``), ``NonSpikingLIFNode``."""

    name, title, package = "spikingjelly", "SpikingJelly", "spikingjelly.activation_based.neuron"

    def _layer(self, spec: NetworkSpec, layer: LayerModel, current_based: bool, align: frozenset[str]) -> LayerModel:
        _require(not current_based, "SpikingJelly's LIFNode has no synaptic current (CubaLIF)")
        _require(0.0 < layer.beta < 1.0, f"SpikingJelly's LIFNode needs tau > 1 step (beta = {layer.beta:g})")
        _require(layer.leak == 0.0 and layer.v_reset == 0.0,
                 "SpikingJelly's LIFNode leaks towards v_reset (v_leak and v_reset must be 0)")
        own = 1.0 - layer.beta  # decay_input=True: x / tau
        return replace(layer, k_in=1.0, k_mem=own * _scale(align, "input_scaling", layer.k_in * layer.k_mem, own))

    def model(self, spec: NetworkSpec, align: frozenset[str]) -> LibraryModel:
        layers = tuple(self._layer(spec, layer.reference, layer.current_based, align) for layer in spec.layers)
        detach = spec.detach_reset if "reset_detached" in align else False
        conventions = StepConventions(reset_detached=detach, spike_at_threshold=True)
        r = spec.readout
        _require(0.0 < r.beta < 1.0, f"SpikingJelly's NonSpikingLIFNode needs tau > 1 step (beta = {r.beta:g})")
        own = 1.0 - r.beta
        return LibraryModel(self.name, conventions, layers, r.beta, own * _scale(align, "readout", r.k, own),
                            spec.reset)

    def build(self, spec: NetworkSpec, align: frozenset[str]) -> nn.Module:
        from spikingjelly.activation_based import neuron, surrogate

        model = self.model(spec, align)
        key, params = peer_function(spec.surrogate, "spikingjelly")
        cls = getattr(surrogate, key.split(":", 1)[1])
        neurons = [neuron.LIFNode(tau=1.0 / (1.0 - m.beta), decay_input=True, v_threshold=m.threshold,
                                  v_reset=None if spec.reset == "subtract" else 0.0, surrogate_function=cls(**params),
                                  detach_reset=model.conventions.reset_detached) for m in model.layers]
        readout = neuron.NonSpikingLIFNode(tau=1.0 / (1.0 - model.readout_beta))
        scales = [m.k_mem / (1.0 - m.beta) for m in model.layers]
        return PeerNetwork(spec, neurons, readout, scales, model.readout_k / (1.0 - model.readout_beta),
                           _spikingjelly_step, _spikingjelly_readout, reset=_spikingjelly_reset)


def _spikingjelly_step(neuron: nn.Module, current: Tensor, state: Any) -> tuple[Tensor, Tensor, Any]:
    spike = neuron(current)
    return spike, cast(Tensor, neuron.v), None


def _spikingjelly_readout(readout: nn.Module, currents: Tensor) -> Tensor:
    return torch.stack(readout(currents.transpose(0, 1)), dim=1)


def _spikingjelly_reset(module: nn.Module) -> None:
    reset = getattr(module, "reset", None)
    if callable(reset):
        reset()


class NorseLibrary(Library):
    """Norse 1.1: ``LIFBoxCell`` (LIF) / ``LIFCell`` (CubaLIF, reset to ``v_reset`` only), ``LIBoxCell``."""

    name, title, package = "norse", "Norse", "norse.torch"

    def _layer(self, spec: NetworkSpec, layer: LayerModel, current_based: bool, align: frozenset[str]) -> LayerModel:
        if current_based:
            _require(spec.reset == "zero", "Norse's LIFCell (CubaLIF) resets to v_reset only (no subtract reset)")
        elif spec.reset == "subtract":
            _require(layer.v_reset == 0.0, "Norse's subtract reset removes the threshold (v_reset must be 0)")
        own = 1.0 - layer.beta  # dt * tau_mem_inv
        scale = _scale(align, "input_scaling", layer.k_in * layer.k_mem, own)
        return replace(layer, k_in=1.0, k_mem=own * scale)

    def model(self, spec: NetworkSpec, align: frozenset[str]) -> LibraryModel:
        layers = tuple(self._layer(spec, layer.reference, layer.current_based, align) for layer in spec.layers)
        r = spec.readout
        own = 1.0 - r.beta
        return LibraryModel(self.name, StepConventions(), layers, r.beta, own * _scale(align, "readout", r.k, own),
                            spec.reset)

    def build(self, spec: NetworkSpec, align: frozenset[str]) -> nn.Module:
        import norse.torch as norse
        from norse.torch.functional.reset import reset_subtract, reset_value

        model = self.model(spec, align)
        key, params = peer_function(spec.surrogate, "norse")
        method, alpha = key.split(":", 1)[1], _t(params.get("alpha", 0.0))
        dt = spec.dt
        neurons: list[nn.Module] = []
        for layer, m in zip(spec.layers, model.layers):
            leak = m.leak / (1.0 - m.beta)
            if layer.current_based:
                p = norse.LIFParameters(tau_syn_inv=_t((1.0 - m.alpha) / dt), tau_mem_inv=_t((1.0 - m.beta) / dt),
                                        v_leak=_t(leak), v_th=_t(m.threshold), v_reset=_t(m.v_reset), method=method,
                                        alpha=alpha)
                neurons.append(norse.LIFCell(p, dt=dt))
            else:
                p = norse.LIFBoxParameters(tau_mem_inv=_t((1.0 - m.beta) / dt), v_leak=_t(leak), v_th=_t(m.threshold),
                                           v_reset=_t(m.v_reset), method=method, alpha=alpha,
                                           reset_method=reset_subtract if spec.reset == "subtract" else reset_value)
                neurons.append(norse.LIFBoxCell(p, dt=dt))
        readout = norse.LIBoxCell(norse.LIBoxParameters(tau_mem_inv=_t((1.0 - model.readout_beta) / dt),
                                                        v_leak=_t(0.0)), dt=dt)
        scales = [m.k_mem / (1.0 - m.beta) for m in model.layers]
        return PeerNetwork(spec, neurons, readout, scales, model.readout_k / (1.0 - model.readout_beta),
                           _norse_step, _norse_readout)


def _norse_step(neuron: nn.Module, current: Tensor, state: Any) -> tuple[Tensor, Tensor, Any]:
    spike, state = neuron(current, state)
    return spike, state.v, state


def _norse_readout(readout: nn.Module, currents: Tensor) -> Tensor:
    state = None
    traces = []
    for t in range(currents.shape[1]):
        v, state = readout(currents[:, t], state)
        traces.append(v)
    return torch.stack(traces, dim=1)


class _EvoexpNetwork(nn.Module):
    """An imported :class:`~evoexp.nir.NIRNetwork` with the participant interface (records, canonical names)."""

    def __init__(self, net: NIRNetwork, spec: NetworkSpec) -> None:
        super().__init__()
        self.net = net
        self.layer_names = [layer.population for layer in spec.layers]
        self.names = spec.parameter_names()
        self._records: list[tuple[Tensor, Tensor]] = []

    def forward(self, x: Tensor) -> Tensor:
        records = self.net.record(x)
        self._records = [
            (records[name].output, records[name].membrane)  # type: ignore[misc]  # neuron nodes record a membrane
            for name in self.layer_names
        ]
        return records[self.net.plan.output].output

    def records(self) -> list[tuple[Tensor, Tensor]]:
        return self._records

    def parameters_by_name(self) -> dict[str, Tensor]:
        out = {}
        for name in self.names:
            node, field = name.rsplit(".", 1)
            out[name] = getattr(self.net.module_of(node), field)
        return out


class EvoexpLibrary(Library):
    """evoexp: the imported network itself (:func:`~evoexp.nir.from_nir`), as the user runs it."""

    name, title, package = "evoexp", "evoexp", "evoexp"

    def __init__(self, net: NIRNetwork) -> None:
        self.net = net

    def model(self, spec: NetworkSpec, align: frozenset[str]) -> LibraryModel:
        pops = self.net.populations
        layers = tuple(layer_model(layer.population, pops[layer.population].constants) for layer in spec.layers)
        readout = pops[spec.readout.population]
        beta, k = float(readout.beta[0]), float(readout.k_mem[0])
        conventions = pops[spec.layers[0].population].conventions
        return LibraryModel(self.name, conventions, layers, beta, k, spec.reset)

    def build(self, spec: NetworkSpec, align: frozenset[str]) -> nn.Module:
        return _EvoexpNetwork(self.net, spec)


LIBRARIES: tuple[type[Library], ...] = (SnnTorchLibrary, SpikingJellyLibrary, NorseLibrary)
"""The peer libraries, in report order (evoexp comes first)."""
