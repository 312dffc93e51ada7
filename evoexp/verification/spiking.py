"""How the verifiers see a spiking network: the one place that decides "spiking, with a smooth mode?".

Every verifier works on a private copy of the user's model, made by :func:`private_copy`. The copy asks the
registered :class:`SpikingAdapter` objects, in order, whether one of them claims the model; the first that does
knows how to run that library's neurons in smooth mode and how to hold their detached resets. A model no adapter
claims is an ordinary network: the verifiers check its forward as it is (no smooth mode, nothing held).

evoexp's own networks (any module containing a :class:`~evoexp.models.layer.SpikingLayer`: an
:class:`~evoexp.models.SNN`'s :class:`~evoexp.models.LIFLayer`, an imported NIR graph's populations) are handled by
:class:`EvoexpAdapter`, registered first. Other libraries' adapters are plug-ins: an installed distribution declares
them in the entry-point group :data:`ADAPTER_ENTRY_POINTS` under the name of the top-level package whose modules they
handle, and they are loaded and registered the first time a model holding such a module is copied (so neither they
nor the libraries are imported otherwise). evoexp's own plug-in, :mod:`evoexp.peers.adapters`, handles snnTorch,
SpikingJelly and Norse networks (``pyproject.toml`` declares it; the verifiers never import it). Its adapters swap, on
the private copy, each neuron's spike function for one whose forward is a smooth primitive and whose backward its
derivative, and replay every detached value as a constant. :func:`register_adapter` is the one registry: it adds
another library's adapter, or replaces a registered one of the same name.

An adapter that also implements :class:`TrainingAdapter` serves the job's *live* network (not a copy): the job installs
the configured surrogate into every neuron with :func:`install_surrogate` and makes every forward start from the
neurons' initial state with :func:`keep_state_fresh` (SpikingJelly's nodes and snnTorch's ``init_hidden`` neurons
otherwise carry their state, and its graph, from one batch to the next).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from evoexp.models.layer import SpikingLayer
from evoexp.models.snn import SNN, LIFLayer
from evoexp.surrogate import SurrogateGradient
from evoexp.verification.surrogate_check import DEFAULT_EXTREMES, FINITE_EXTREMES

__all__ = [
    "ADAPTER_ENTRY_POINTS",
    "EvoexpAdapter",
    "FreshState",
    "InstalledSurrogate",
    "PrivateCopy",
    "SpikeProbe",
    "SpikingAdapter",
    "TrainingAdapter",
    "adapters",
    "claiming_adapters",
    "install_surrogate",
    "keep_state_fresh",
    "private_copy",
    "register_adapter",
]


@dataclass(frozen=True)
class SpikeProbe:
    r"""A spike function as a network's neurons really compute it, with the derivative they declare.

    Attributes:
        name: Label for reports (surrogate and the layers it stands for).
        layers: Names of the layers that share this spike function (same surrogate and constants).
        spike_fn: Elementwise function of ``mem - threshold`` whose forward and backward run through the layer's
            real implementation (for evoexp: :meth:`~evoexp.models.LIFLayer.spike_probe`).
        derivative: The declared pseudo-derivative :math:`g`.
        primitive: The declared smooth primitive, when known.
        slope: The surrogate's slope, when it has one.
        kinks: Points where the declared derivative jumps or has a kink (put on the check's grid).
        heaviside_at_zero: The spike function's forward at ``x = 0`` (0 for evoexp, snnTorch and Norse; 1 for
            SpikingJelly).
        extremes: Inputs beyond the grid at which the backward must stay finite and keep its sign. A library's own
            spike function is asked at :data:`~evoexp.verification.surrogate_check.DEFAULT_EXTREMES`
            (:math:`\pm\infty` included). A probe that runs a whole neuron (evoexp's LIF node) is asked at the
            finite ones only: its ``x`` is a membrane, and a membrane at :math:`\pm\infty` is a diverged network,
            whose state the neuron's update does not define (a reset to zero computes
            :math:`p - p\,r` with :math:`p = \pm\infty`, :math:`r = 0`: NaN); training reports divergence.
    """

    name: str
    layers: tuple[str, ...]
    spike_fn: Callable[[Tensor], Tensor]
    derivative: Callable[[Tensor], Tensor]
    primitive: Callable[[Tensor], Tensor] | None
    slope: float | None
    kinks: tuple[float, ...] = ()
    heaviside_at_zero: float = 0.0
    extremes: tuple[float, ...] = DEFAULT_EXTREMES


@runtime_checkable
class SpikingAdapter(Protocol):
    """What the verifiers need from one library's spiking networks; all methods act on the private copy.

    Attributes:
        name: Short label reported with results (e.g. ``"evoexp"``, ``"snntorch"``).
    """

    name: str

    def claims(self, model: nn.Module) -> bool:
        """Whether this adapter handles ``model`` (e.g. it contains one of the library's neurons)."""
        ...

    def prepare(self, model: nn.Module) -> None:
        """Make the fresh copy safe for repeated, batched (``torch.func.vmap``) forwards: stop recording state."""
        ...

    def set_smooth(self, model: nn.Module, enabled: bool) -> None:
        """Switch every neuron of ``model`` to smooth mode (forward = surrogate primitive) or back to spiking."""
        ...

    def hold_resets(self, model: nn.Module, forward: Callable[[], object]) -> list[str]:
        """Run ``forward()`` once and make every *detached* reset replay, in all later forwards, the values it had.

        A detached reset's gradient is the gradient with the reset term held at its forward value, so the
        finite differences of the held network check exactly the gradient training uses.

        Returns:
            Names of the layers whose reset is now held (empty when no neuron detaches its reset).
        """
        ...

    def spike_probes(self, model: nn.Module) -> list[SpikeProbe]:
        """One :class:`SpikeProbe` per distinct spike function of ``model``'s neurons (the runtime surrogate check)."""
        ...

    def notes(self, model: nn.Module) -> list[str]:
        """Caveats a result must state about how ``model``'s neurons ran in their current mode (e.g. a substitute)."""
        ...


@dataclass(frozen=True)
class InstalledSurrogate:
    """One neuron whose spike function :func:`install_surrogate` replaced.

    Attributes:
        module: The neuron's module path in the network.
        library: The adapter's name (``"snntorch"``, ...).
        neuron: The neuron's class name.
        previous: The spike function it had (readable label).
        installed: The surrogate it has now (``repr`` of the evoexp shape).
    """

    module: str
    library: str
    neuron: str
    previous: str
    installed: str


@runtime_checkable
class TrainingAdapter(Protocol):
    """What the job needs from one library to train its networks: surrogates installed, state reset per forward."""

    name: str

    def install_surrogate(self, model: nn.Module, shape: SurrogateGradient) -> list[InstalledSurrogate]:
        """Make every neuron of this library in ``model`` (in place) spike with ``shape``'s forward and backward.

        Raises:
            ValueError: A neuron cannot take ``shape``; the message starts with its module path.
        """
        ...

    def reset_state(self, model: nn.Module) -> None:
        """Put every neuron of this library in ``model`` back to its initial state."""
        ...


class EvoexpAdapter:
    """evoexp's networks of :class:`~evoexp.models.layer.SpikingLayer` (smooth mode and ``replay_reset`` built in)."""

    name = "evoexp"
    stateless = True

    def claims(self, model: nn.Module) -> bool:
        """True if ``model`` contains a :class:`~evoexp.models.layer.SpikingLayer`."""
        return any(isinstance(m, SpikingLayer) for m in model.modules())

    def prepare(self, model: nn.Module) -> None:
        """Stop every :class:`~evoexp.models.SNN` inside from recording ``last_spikes``; freeze escape noise.

        A stochastic (escape-noise) layer then draws the same noise in every forward of the copy (common random
        numbers, :attr:`~evoexp.models.LIFLayer.frozen_noise`): the checks see one sample of the network, a
        deterministic function of its weights, whose surrogate gradient is what training computes for that sample.
        """
        for module in model.modules():
            if isinstance(module, SNN):
                module.record_spikes = False
            if isinstance(module, LIFLayer) and module.params.escape_noise is not None:
                module.frozen_noise = True
                if module.noise_seed is None:  # drawn here, outside any torch.func transform
                    module.noise_seed = int(torch.randint(2**62, ()).item())

    def set_smooth(self, model: nn.Module, enabled: bool) -> None:
        """Set ``smooth`` on every spiking layer."""
        for module in model.modules():
            if isinstance(module, SpikingLayer):
                module.smooth = enabled

    def hold_resets(self, model: nn.Module, forward: Callable[[], object]) -> list[str]:
        """Record each ``detach_reset`` layer's spikes in one forward and set them as its ``replay_reset``.

        Raises:
            ValueError: A detached-reset layer ran other than once in the forward (its reset has no single value).
        """
        layers = {name: m for name, m in model.named_modules() if isinstance(m, SpikingLayer) and m.detach_reset}
        if not layers:
            return []
        seen: dict[str, list[Tensor]] = {name: [] for name in layers}
        handles = [
            layer.register_forward_hook(lambda _m, _a, out, name=name: seen[name].append(out.detach()))
            for name, layer in layers.items()
        ]
        try:
            with torch.no_grad():
                forward()
        finally:
            for handle in handles:
                handle.remove()
        for name, layer in layers.items():
            if len(seen[name]) != 1:
                raise ValueError(
                    f"LIF layer '{name}' ran {len(seen[name])} times in one forward: its detached reset has no "
                    "single value to hold"
                )
            layer.replay_reset = seen[name][0]
        return list(layers)

    def spike_probes(self, model: nn.Module) -> list[SpikeProbe]:
        """Probe each group of spiking layers with equal :meth:`~evoexp.models.layer.SpikingLayer.probe_key` once.

        The node is asked at finite membranes only (:attr:`SpikeProbe.extremes`), in both reset modes, and its
        backward is compared with the declared derivative at the offset it really reaches
        (:meth:`~evoexp.models.layer.SpikingLayer.probe_offset`: the grid point up to one rounding, which decides
        the side of a box edge).
        """
        groups: dict[object, list[tuple[str, SpikingLayer]]] = {}
        for name, m in model.named_modules():
            if isinstance(m, SpikingLayer):
                groups.setdefault(m.probe_key(), []).append((name, m))
        probes = []
        for members in groups.values():
            names = tuple(name for name, _ in members)
            layer = members[0][1]
            shape = layer.surrogate
            probes.append(
                SpikeProbe(
                    name=f"{shape.name} (LIF node of {', '.join(names)})",
                    layers=names,
                    spike_fn=layer.spike_probe(),
                    derivative=_node_derivative(layer),
                    primitive=shape.primitive,
                    slope=getattr(shape, "slope", None),
                    kinks=shape.kinks,
                    heaviside_at_zero=layer.heaviside_at_zero,
                    extremes=FINITE_EXTREMES,
                )
            )
        return probes

    def notes(self, model: nn.Module) -> list[str]:
        """Nothing to state: smooth mode runs each layer's own surrogate primitive."""
        return []

    def install_surrogate(self, model: nn.Module, shape: SurrogateGradient) -> list[InstalledSurrogate]:
        """Set ``surrogate`` of every LIF layer."""
        installed = []
        for name, module in model.named_modules():
            if isinstance(module, LIFLayer):
                installed.append(InstalledSurrogate(name, self.name, "LIFLayer", repr(module.surrogate), repr(shape)))
                module.surrogate = shape
        return installed

    def reset_state(self, model: nn.Module) -> None:
        """Nothing: LIF layers keep no state between forwards."""


def _node_derivative(layer: SpikingLayer) -> Callable[[Tensor], Tensor]:
    """The declared derivative at the membrane offsets the layer's probe really reaches (``probe_offset``)."""
    derivative = layer.surrogate.derivative

    def at_offset(x: Tensor) -> Tensor:
        return derivative(layer.probe_offset(x))

    return at_offset


_ADAPTERS: list[SpikingAdapter] = [EvoexpAdapter()]

ADAPTER_ENTRY_POINTS = "evoexp.spiking_adapters"
"""Entry-point group of plug-in adapters: the name is a top-level package (``snntorch``), the object an adapter or an
iterable of adapters, registered when a copied model holds a module of that package."""


def register_adapter(adapter: SpikingAdapter) -> None:
    """Add ``adapter`` after the registered ones, or replace the registered adapter of the same ``name`` in its place.

    The first adapter that claims a model handles it.

    Raises:
        TypeError: ``adapter`` lacks a method of :class:`SpikingAdapter`.
    """
    if not isinstance(adapter, SpikingAdapter):
        raise TypeError(f"adapter must implement SpikingAdapter (name, claims, prepare, ...), got {adapter!r}")
    for i, registered in enumerate(_ADAPTERS):
        if registered.name == adapter.name:
            _ADAPTERS[i] = adapter
            return
    _ADAPTERS.append(adapter)


@functools.cache
def _plugin_entry_points() -> dict[str, EntryPoint]:
    """The installed plug-in adapters' entry points by package name (read once from the installed metadata)."""
    return {ep.name: ep for ep in entry_points(group=ADAPTER_ENTRY_POINTS)}


def _register_plugin_adapters(model: nn.Module) -> None:
    """Register the plug-in adapters (unless one of that name is) of the packages whose modules ``model`` holds.

    Only the modules' class paths are read, so nothing is imported for a model without such modules.
    """
    plugins = _plugin_entry_points()
    packages = {type(m).__module__.partition(".")[0] for m in model.modules()}
    for package in sorted(packages & plugins.keys()):
        loaded = plugins[package].load()
        found: Iterable[SpikingAdapter] = loaded if isinstance(loaded, Iterable) else (loaded,)
        names = {a.name for a in _ADAPTERS}
        _ADAPTERS.extend(a for a in found if a.name not in names)


def adapters() -> tuple[SpikingAdapter, ...]:
    """The registered adapters, in the order they are asked."""
    return tuple(_ADAPTERS)


def claiming_adapters(model: nn.Module) -> list[SpikingAdapter]:
    """The adapters (plug-ins loaded as needed) that claim ``model``: one per library whose neurons it holds."""
    _register_plugin_adapters(model)
    return [a for a in _ADAPTERS if a.claims(model)]


def install_surrogate(model: nn.Module, shape: SurrogateGradient) -> list[InstalledSurrogate]:
    """Install ``shape`` into every spiking neuron of ``model``, in place, through the adapters that claim it.

    Returns:
        One record per neuron (empty when no adapter claims the model: it holds no neuron a registered library
        adapter knows).

    Raises:
        ValueError: A neuron cannot take ``shape``, or its library's adapter cannot install surrogates; the message
            starts with the neuron's module path or the adapter's name.
    """
    installed: list[InstalledSurrogate] = []
    for adapter in claiming_adapters(model):
        if not isinstance(adapter, TrainingAdapter):
            raise ValueError(f"the {adapter.name} adapter cannot install surrogates (it implements no TrainingAdapter)")
        installed.extend(adapter.install_surrogate(model, shape))
    return installed


class FreshState:
    """Forward pre-hook that resets the neurons of the named libraries before every forward (:func:`keep_state_fresh`).

    It finds the neurons in the module it is called with, so a deep copy resets its own.
    """

    def __init__(self, libraries: tuple[str, ...]) -> None:
        self.libraries = libraries

    def __call__(self, module: nn.Module, args: object) -> None:
        for adapter in _ADAPTERS:
            if adapter.name in self.libraries and isinstance(adapter, TrainingAdapter):
                adapter.reset_state(module)


def keep_state_fresh(model: nn.Module) -> tuple[str, ...]:
    """Make every forward of ``model`` start from its neurons' initial state (a :class:`FreshState` pre-hook).

    Adapters with a true ``stateless`` attribute (evoexp's, Norse's: state passed explicitly) are left out.

    Returns:
        The names of the libraries whose neurons are reset (empty: no hook registered).
    """
    libraries = tuple(
        a.name
        for a in claiming_adapters(model)
        if isinstance(a, TrainingAdapter) and not getattr(a, "stateless", False)
    )
    if libraries:
        model.register_forward_pre_hook(FreshState(libraries))
    return libraries


@dataclass
class PrivateCopy:
    """A verifier's private copy of a model and the adapter (if any) that runs its neurons.

    Attributes:
        model: The copy; the user's model is never touched.
        adapter: The adapter that claimed the model, or ``None`` for a model without spiking neurons.
        unhandled: Names of further registered adapters that also claim the model (their neurons run unchanged).
    """

    model: nn.Module
    adapter: SpikingAdapter | None
    unhandled: tuple[str, ...] = ()

    @property
    def spiking(self) -> bool:
        """Whether the model is a spiking network with a smooth mode."""
        return self.adapter is not None

    @property
    def notes(self) -> list[str]:
        """Caveats for the results of a check of the copy in its current mode (the adapter's, and unhandled neurons)."""
        if self.adapter is None:
            return []
        notes = self.adapter.notes(self.model)
        if self.unhandled:
            notes.append(
                f"the model also holds neurons of {', '.join(self.unhandled)}, but only one adapter runs a model "
                f"({self.adapter.name} here): those neurons ran unchanged, without smooth mode or held resets"
            )
        return notes

    def set_smooth(self, enabled: bool) -> None:
        """Switch the copy's neurons to smooth mode (or spiking mode).

        Raises:
            ValueError: ``enabled`` for a model that no adapter claims.
        """
        if self.adapter is None:
            if enabled:
                raise ValueError(
                    f"{type(self.model).__name__} has no smooth mode: no spiking-network adapter claims it "
                    f"(registered: {', '.join(a.name for a in _ADAPTERS)})"
                )
            return
        self.adapter.set_smooth(self.model, enabled)

    def hold_resets(self, forward: Callable[[], object]) -> list[str]:
        """Hold every detached reset at its value in ``forward()`` (run in the mode the later forwards use)."""
        return [] if self.adapter is None else self.adapter.hold_resets(self.model, forward)


def private_copy(model: nn.Module, *, dtype: torch.dtype | None = None) -> PrivateCopy:
    """Deep-copy ``model`` (cast to ``dtype`` when given) and find the adapter that runs its neurons.

    Args:
        model: The user's model (never modified).
        dtype: Floating dtype of the copy (``None``: keep the model's).

    Returns:
        A :class:`PrivateCopy`, already prepared by its adapter.
    """
    work = copy.deepcopy(model)
    if dtype is not None:
        work = work.to(dtype)
    _register_plugin_adapters(work)
    claiming = [a for a in _ADAPTERS if a.claims(work)]
    if not claiming:
        return PrivateCopy(work, None)
    adapter = claiming[0]
    adapter.prepare(work)
    return PrivateCopy(work, adapter, tuple(a.name for a in claiming[1:]))
