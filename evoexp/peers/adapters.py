r"""snnTorch, SpikingJelly and Norse networks as the verifiers see them: one spiking-network adapter per library.

Each library's adapter is a :class:`NeuronAdapter`, which implements the verifiers' one hook,
:class:`~evoexp.verification.spiking.SpikingAdapter`, from a few per-neuron methods. The three adapters of
:data:`PEER_ADAPTERS` are a plug-in of the verifiers (entry-point group
:data:`~evoexp.verification.spiking.ADAPTER_ENTRY_POINTS`, declared in ``pyproject.toml``), registered the first time
a model holding one of the libraries' modules is copied (:func:`~evoexp.verification.spiking.private_copy`); another
library's adapter is a :class:`NeuronAdapter` subclass, registered with
:func:`~evoexp.verification.spiking.register_adapter` or declared in that group. On the private copy (never on the
user's model) an adapter

* **prepares** it: every forward starts from the neurons' initial state (snnTorch's hidden state, SpikingJelly's
  ``reset()``), so repeated and perturbed forwards are comparable, and spikes come back in the membrane's dtype
  (snnTorch returns float32 spikes from float64 membranes);
* switches it to **smooth mode**: each neuron's spike function becomes one whose forward is the surrogate's primitive
  and whose backward its derivative -- the equal evoexp shape's (:mod:`evoexp.peers.names`), else the library's own
  smooth function (SpikingJelly's ``spiking=False``), else a substitute shape, which :meth:`~NeuronAdapter.notes`
  then names;
* **holds what training ignores**: :meth:`~NeuronAdapter.hold_resets` records every ``detach()`` of one unperturbed
  forward, and every later forward (batched with ``vmap`` or not) returns those values instead. snnTorch always
  detaches its reset, SpikingJelly with ``detach_reset=True``, Norse's recurrent cells too; the finite differences
  then hold them fixed exactly as autograd does (docs/design/verification.md, the first rule);
* **probes** the library's own spike function against the derivative declared for it (the equal evoexp shape, else
  the library's documented formula, :mod:`evoexp.peers.documented`) for the suite's runtime surrogate check.

On the job's live network (not a copy), each adapter is also a
:class:`~evoexp.verification.spiking.TrainingAdapter`: :meth:`NeuronAdapter.install_surrogate` puts an evoexp shape
into every neuron (its ``spike``: Heaviside forward, the shape's derivative backward; for SpikingJelly, which keeps the
spike function as a submodule, an :class:`EvoexpSpike` module; Norse neurons, which call ``threshold`` by name, get a
pair of forward hooks that route that call to it), and :meth:`NeuronAdapter.reset_state` resets the neurons before
each forward.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from evoexp.peers.documented import documented_for
from evoexp.peers.names import get_peer
from evoexp.surrogate import SurrogateGradient, get_surrogate
from evoexp.verification.spiking import InstalledSurrogate, SpikeProbe
from evoexp.verification.surrogate_check import describe_spike_fn

__all__ = [
    "DEFAULT_SUBSTITUTE",
    "PEER_ADAPTERS",
    "EvoexpSpike",
    "NeuronAdapter",
    "NeuronSwap",
    "NorseAdapter",
    "SnnTorchAdapter",
    "SpikingJellyAdapter",
]

DEFAULT_SUBSTITUTE = "sigmoid"
"""evoexp shape (at its default slope) used in smooth mode for a spike function without a known primitive."""

Peer = tuple[str, dict[str, Any]]
"""A peer function's name ``"<library>:<function>"`` and the parameters it was built with."""


@dataclass(frozen=True)
class NeuronSwap:
    """What smooth or spiking mode put in place of one neuron's spike function.

    Attributes:
        name: The neuron's module path in the model (``""`` for the model itself).
        library: The adapter's name.
        neuron: The neuron's class name.
        original: The library's spike function (readable label).
        replacement: What replaced it (e.g. ``"atan(slope=2.0, scale=1.0) smooth"``).
        substituted: ``True`` when smooth mode could not use the library's surrogate or its primitive and ran a
            substitute shape instead (the check then covers the BPTT, not this surrogate).
    """

    name: str
    library: str
    neuron: str
    original: str
    replacement: str
    substituted: bool = False


@dataclass(frozen=True)
class _Declared:
    """The derivative a spike function is declared to compute, and what the surrogate check needs with it."""

    label: str
    derivative: Callable[[Tensor], Tensor]
    primitive: Callable[[Tensor], Tensor] | None
    slope: float | None
    kinks: tuple[float, ...]


class _Replay:
    """The detached values of one recorded forward, returned in place of every later forward's ``detach()``.

    ``mode`` is ``"off"`` (detach as usual), ``"recording"`` or ``"replaying"``; ``owners`` names the neuron (module
    path) whose forward performed each recorded ``detach()``.
    """

    def __init__(self) -> None:
        self.mode: Literal["off", "recording", "replaying"] = "off"
        self.values: list[Tensor] = []
        self.owners: list[str] = []
        self.running: list[str] = []  # module paths of the neurons running now (recording only)
        self.index = 0

    def detached(self, value: Tensor) -> Tensor:
        """Record ``value`` or return the recorded value it stands for."""
        if self.mode == "recording":
            self.values.append(value.clone())
            self.owners.append(self.running[-1] if self.running else "")
            return value
        if self.mode != "replaying":
            return value
        if self.index >= len(self.values):
            raise RuntimeError(self._mismatch(f"more detach() calls than the {len(self.values)} recorded"))
        recorded = self.values[self.index]
        self.index += 1
        if recorded.shape != value.shape:
            raise RuntimeError(self._mismatch(
                f"detach() of shape {tuple(value.shape)} where the recorded forward had {tuple(recorded.shape)}"))
        return recorded.to(value.dtype)

    @staticmethod
    def _mismatch(detail: str) -> str:
        return ("the foreign network's forward changed between evaluations (" + detail + "); held resets replay the "
                "detached values of one recorded forward and need the same inputs and control flow every time")


class _ReplayMode(TorchFunctionMode):
    """Routes every ``detach()`` of a forward through a :class:`_Replay` (also under ``torch.func.vmap``)."""

    def __init__(self, replay: _Replay) -> None:
        super().__init__()
        self.replay = replay

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func is Tensor.detach or func is torch.detach:
            return self.replay.detached(out)
        return out


@dataclass
class _Prepared:
    """An adapter's state for one prepared private copy."""

    neurons: list[tuple[str, nn.Module]]
    originals: dict[str, Any]
    smooth: bool = False
    swaps: list[NeuronSwap] = field(default_factory=list)
    replay: _Replay = field(default_factory=_Replay)
    contexts: list[contextlib.ExitStack] = field(default_factory=list)


class _SmoothSpike(nn.Module):
    """``shape.smooth`` as a module (SpikingJelly keeps its surrogate as a submodule; snnTorch calls it)."""

    def __init__(self, shape: SurrogateGradient) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return self.shape.smooth(x)

    def extra_repr(self) -> str:
        return f"{self.shape!r} smooth"


class EvoexpSpike(nn.Module):
    """An evoexp shape installed as a library's spike function: forward ``H(x) = [x > 0]``, backward its derivative.

    A module, so that it can replace SpikingJelly's ``surrogate_function`` submodule as well as snnTorch's
    ``spike_grad``; the adapters recognise it as its shape (the runtime check compares it with ``shape.derivative``).
    """

    def __init__(self, shape: SurrogateGradient) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return self.shape.spike(x)

    def extra_repr(self) -> str:
        return repr(self.shape)


class _SameDtype(nn.Module):
    """A spike function whose output is cast back to the input's dtype (the library's backward is kept)."""

    def __init__(self, spike_fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.spike_fn = spike_fn

    def forward(self, x: Tensor) -> Tensor:
        return self.spike_fn(x).to(x.dtype)


def _peer_params(key: str, params: dict[str, Any]) -> dict[str, float] | None:
    """The peer function ``key``'s full parameters from those a spike function was built with (``None``: unknown)."""
    try:
        entry = get_peer(key)
        return entry.params(**{k: float(v) for k, v in params.items() if k in entry.defaults})
    except (ValueError, TypeError):
        return None


def _peer_shape(key: str, params: dict[str, Any]) -> SurrogateGradient | None:
    """The evoexp shape equal to the peer function ``key`` at ``params``, or ``None``."""
    values = _peer_params(key, params)
    try:
        return None if values is None else get_peer(key).evoexp(**values)
    except ValueError:
        return None


def _as_shape(spike_fn: Any) -> SurrogateGradient | None:
    """The evoexp shape behind ``spike_fn`` when it is one (``shape``, ``shape.spike``, ``shape.smooth``)."""
    if isinstance(spike_fn, SurrogateGradient):
        return spike_fn
    if isinstance(spike_fn, EvoexpSpike):
        return spike_fn.shape
    owner = getattr(spike_fn, "__self__", None)
    return owner if isinstance(owner, SurrogateGradient) else None


def _from(module: nn.Module, package: str) -> bool:
    """Whether ``module``'s class comes from ``package`` (read from the class path: imports nothing)."""
    return type(module).__module__.split(".")[0] == package and package in sys.modules


class NeuronAdapter(ABC):
    """A :class:`~evoexp.verification.spiking.SpikingAdapter` for a library whose neurons are modules.

    Subclasses say what a neuron is (:meth:`owns`), where its spike function lives (:meth:`spike_fn`,
    :meth:`install`) and, optionally, which peer function it is (:meth:`identify`), how its state resets
    (:meth:`reset`), what it needs around a forward (:meth:`forward_context`) and what a result must say about it
    (:meth:`caveats`). This base class turns that into the hook's methods (prepare, smooth mode, held detached
    values, spike probes, notes). Register an instance with :func:`evoexp.verification.spiking.register_adapter`.

    Args:
        substitute: Smooth shape for spike functions without a known primitive (default: evoexp ``sigmoid``).
    """

    name: ClassVar[str] = ""
    heaviside_at_zero: ClassVar[float] = 0.0
    """The library's spike forward at ``x = 0`` (what its code computes)."""

    def __init__(self, substitute: SurrogateGradient | None = None) -> None:
        self.substitute = substitute if substitute is not None else get_surrogate(DEFAULT_SUBSTITUTE)
        self._prepared: weakref.WeakKeyDictionary[nn.Module, _Prepared] = weakref.WeakKeyDictionary()

    # ---- what a subclass says about its library ----

    @abstractmethod
    def owns(self, module: nn.Module) -> bool:
        """Whether ``module`` is a spiking neuron of this library (cheap; imports nothing for other modules)."""

    @abstractmethod
    def spike_fn(self, module: nn.Module) -> Any:
        """The neuron's spike function as the library built it (an elementwise function of membrane - threshold)."""

    @abstractmethod
    def install(self, module: nn.Module, spike_fn: Any) -> None:
        """Make the neuron call ``spike_fn`` (a no-op where the library calls a fixed function by name)."""

    def identify(self, spike_fn: Any) -> Peer | None:
        """Which peer function ``spike_fn`` is, with its parameters (``None``: not one this library documents)."""
        return None

    def dtype_safe(self, spike_fn: Any) -> Any:
        """``spike_fn`` with its output in its input's dtype (spiking mode; default: ``spike_fn`` itself)."""
        return spike_fn

    def own_primitive(self, spike_fn: Any) -> Any | None:
        """The library's own smooth version of ``spike_fn`` when it has one (default: none)."""
        return None

    def reset(self, module: nn.Module) -> None:  # noqa: B027 - stateless libraries (Norse) need no reset
        """Put the neuron back to its initial state (before every forward)."""

    def forward_context(self, smooth: bool) -> contextlib.AbstractContextManager[Any]:
        """A context active during every forward of the prepared copy (default: none)."""
        return contextlib.nullcontext()

    def caveats(self) -> list[str]:
        """What a result must state when this library's neurons were checked in smooth mode (default: nothing)."""
        return []

    # ---- the SpikingAdapter hook ----

    def claims(self, model: nn.Module) -> bool:
        """True if ``model`` contains one of this library's neurons."""
        return any(self.owns(m) for m in model.modules())

    def prepare(self, model: nn.Module) -> None:
        """Reset the neurons' state before every forward and run them in spiking mode with dtype-safe spikes."""
        neurons = [(name, m) for name, m in model.named_modules() if self.owns(m)]
        state = _Prepared(neurons, {name: self.spike_fn(m) for name, m in neurons})
        self._prepared[model] = state

        def before(module: nn.Module, args: Any) -> None:
            for _, neuron in state.neurons:
                self.reset(neuron)
            exits = contextlib.ExitStack()
            exits.enter_context(self.forward_context(state.smooth))
            if state.replay.mode != "off":
                state.replay.index = 0
                exits.enter_context(_ReplayMode(state.replay))
            state.contexts.append(exits)

        def after(module: nn.Module, args: Any, output: Any) -> None:
            if state.contexts:
                state.contexts.pop().close()

        model.register_forward_pre_hook(before)
        model.register_forward_hook(after, always_call=True)
        self.set_smooth(model, False)

    def set_smooth(self, model: nn.Module, enabled: bool) -> None:
        """Swap every neuron's spike function for its smooth twin (or back to the library's own, dtype-safe).

        Values held by :meth:`hold_resets` belong to the previous mode and are dropped.
        """
        state = self._state(model)
        state.smooth, state.swaps = enabled, []
        state.replay = _Replay()
        for name, module in state.neurons:
            original = state.originals[name]
            if enabled:
                spike_fn, replacement, substituted = self._smooth(original)
            else:
                spike_fn, replacement, substituted = self.dtype_safe(original), "kept (spiking mode)", False
            self.install(module, spike_fn)
            state.swaps.append(NeuronSwap(name, self.name, type(module).__name__, describe_spike_fn(original),
                                          replacement, substituted))

    def hold_resets(self, model: nn.Module, forward: Callable[[], object]) -> list[str]:
        """Record every ``detach()`` of ``forward()`` and replay those values in every later forward of ``model``.

        Returns:
            Module paths of the neurons whose forward detached a value (``""``: the model's own forward), in order.
        """
        state = self._state(model)
        replay = state.replay = _Replay()
        replay.mode = "recording"

        def enter(name: str) -> Callable[..., None]:
            return lambda *_: replay.running.append(name)

        def leave(*_: Any) -> None:
            replay.running.pop()

        handles = []
        for name, neuron in state.neurons:
            handles.append(neuron.register_forward_pre_hook(enter(name)))
            handles.append(neuron.register_forward_hook(leave, always_call=True))
        try:
            with torch.no_grad():
                forward()
        except BaseException:
            replay.mode = "off"
            raise
        finally:
            for handle in handles:
                handle.remove()
        replay.mode = "replaying" if replay.values else "off"
        return list(dict.fromkeys(replay.owners))

    def spike_probes(self, model: nn.Module) -> list[SpikeProbe]:
        """One probe per distinct (spike function, declared derivative): the library's own function, as built."""
        state = self._state(model)
        groups: dict[tuple[str, str], tuple[Any, _Declared, list[str]]] = {}
        for name, _ in state.neurons:
            original = state.originals[name]
            declared = self._declared(original)
            if declared is not None:
                key = (describe_spike_fn(original), declared.label)
                groups.setdefault(key, (original, declared, []))[2].append(name)
        return [
            SpikeProbe(
                name=f"{label} ({self.name} neurons {', '.join(names)}; declared {declared.label})",
                layers=tuple(names),
                spike_fn=spike_fn,
                derivative=declared.derivative,
                primitive=declared.primitive,
                slope=declared.slope,
                kinks=declared.kinks,
                heaviside_at_zero=0.0 if _as_shape(spike_fn) is not None else self.heaviside_at_zero,
            )
            for (label, _), (spike_fn, declared, names) in groups.items()
        ]

    def notes(self, model: nn.Module) -> list[str]:
        """In smooth mode: the substituted spike functions and the library's caveats."""
        state = self._state(model)
        if not state.smooth:
            return []
        notes = []
        substituted = [s for s in state.swaps if s.substituted]
        if substituted:
            notes.append(
                "smooth mode has no primitive for "
                + ", ".join(f"{s.name or s.neuron} ({s.original})" for s in substituted)
                + f": substituted {self.substitute!r}, so the check covers the library's BPTT with that surrogate")
        return notes + self.caveats()

    # ---- the TrainingAdapter hook (the job's live network) ----

    def install_surrogate(self, model: nn.Module, shape: SurrogateGradient) -> list[InstalledSurrogate]:
        """Make every neuron of this library in ``model`` spike with ``shape`` (an :class:`EvoexpSpike`), in place.

        Raises:
            ValueError: A neuron cannot take it (the message starts with the neuron's module path).
        """
        installed = []
        for name, module in model.named_modules():
            if self.owns(module):
                previous = describe_spike_fn(self.spike_fn(module))
                self.adopt(name, module, self.spike_of(shape))
                installed.append(InstalledSurrogate(name, self.name, type(module).__name__, previous, repr(shape)))
        return installed

    def spike_of(self, shape: SurrogateGradient) -> Any:
        """What the library's neurons call for ``shape`` (default: its bound ``spike``, a plain function call)."""
        return shape.spike

    def adopt(self, name: str, module: nn.Module, spike_fn: Any) -> None:
        """Install ``spike_fn`` into the live neuron ``module`` (default: :meth:`install`).

        Raises:
            ValueError: The neuron cannot take it; the message starts with ``name``.
        """
        self.install(module, spike_fn)

    def reset_state(self, model: nn.Module) -> None:
        """:meth:`reset` every neuron of this library in ``model``."""
        for module in model.modules():
            if self.owns(module):
                self.reset(module)

    def swaps(self, model: nn.Module) -> list[NeuronSwap]:
        """What the current mode put in place of each neuron's spike function, in module order."""
        return list(self._state(model).swaps)

    # ---- helpers ----

    def _state(self, model: nn.Module) -> _Prepared:
        try:
            return self._prepared[model]
        except KeyError:
            raise ValueError(f"{type(model).__name__} was not prepared by the {self.name} adapter (make the copy with "
                             "evoexp.verification.spiking.private_copy)") from None

    def shape_of(self, spike_fn: Any) -> SurrogateGradient | None:
        """The evoexp shape equal to ``spike_fn`` (it is one, or a mapped peer function), else ``None``."""
        shape = _as_shape(spike_fn)
        if shape is None and (peer := self.identify(spike_fn)) is not None:
            shape = _peer_shape(*peer)
        return shape

    def _smooth(self, spike_fn: Any) -> tuple[Any, str, bool]:
        """``(smooth spike function, what it is, substituted)`` for the library's ``spike_fn``."""
        shape = self.shape_of(spike_fn)
        if shape is not None:
            return _SmoothSpike(shape), f"{shape!r} smooth", False
        own = self.own_primitive(spike_fn)
        if own is not None:
            return own, f"{describe_spike_fn(own)} (the library's own primitive)", False
        return _SmoothSpike(self.substitute), f"{self.substitute!r} smooth", True

    def _declared(self, spike_fn: Any) -> _Declared | None:
        """The derivative declared for ``spike_fn``: the equal evoexp shape's, else the library's documented one."""
        shape = self.shape_of(spike_fn)
        if shape is not None:
            return _Declared(repr(shape), shape.derivative, shape.primitive, getattr(shape, "slope", None),
                             shape.kinks)
        peer = self.identify(spike_fn)
        if peer is None:
            return None
        key, params = peer
        library, function = key.split(":", 1)
        documented = next((d for d in documented_for(library)
                           if d.function == function and not d.variant and not d.skip), None)
        values = _peer_params(key, params)
        if documented is None or values is None:
            return None
        primitive = documented.primitive
        return _Declared(
            f"{key} as documented ({documented.formula})",
            functools.partial(documented.derivative, p=values),
            None if primitive is None else functools.partial(primitive, p=values),
            None if documented.slope is None else float(values[documented.slope]),
            documented.kinks(values) if documented.kinks is not None else (),
        )


class SnnTorchAdapter(NeuronAdapter):
    """snnTorch 1.0 neurons (``Leaky``, ``Synaptic``, ``RLeaky``, ``RSynaptic``, ``Alpha``, ``Lapicque``, ...).

    The spike function is the ``spike_grad`` callable (``snntorch.surrogate.atan()`` by default); the hidden states
    are the neuron's non-persistent buffers, which a fresh forward re-creates from an empty tensor.
    """

    name = "snntorch"

    def owns(self, module: nn.Module) -> bool:
        """Whether ``module`` is a snnTorch ``SpikingNeuron``."""
        if not _from(module, "snntorch") or not hasattr(module, "spike_grad"):
            return False
        import snntorch

        return isinstance(module, snntorch.SpikingNeuron)

    def spike_fn(self, module: nn.Module) -> Any:
        """``module.spike_grad``."""
        return module.spike_grad

    def install(self, module: nn.Module, spike_fn: Any) -> None:
        """Set ``module.spike_grad``."""
        module.spike_grad = spike_fn

    def identify(self, spike_fn: Any) -> Peer | None:
        """A ``snntorch.surrogate`` factory's closure: the factory's name and the parameters it closed over."""
        qualname = getattr(spike_fn, "__qualname__", "")
        if getattr(spike_fn, "__module__", "") != "snntorch.surrogate" or ".<locals>." not in qualname:
            return None
        factory = qualname.split(".<locals>.")[0]
        return f"snntorch:{factory}", dict(inspect.getclosurevars(spike_fn).nonlocals)

    def dtype_safe(self, spike_fn: Any) -> Any:
        """Cast snnTorch's float32 spikes back to the membrane's dtype."""
        return _SameDtype(spike_fn)

    def reset_state(self, model: nn.Module) -> None:
        """Reset the neurons that keep their state between calls (``init_hidden=True``); the others get it passed."""
        for module in model.modules():
            if self.owns(module) and getattr(module, "init_hidden", False):
                self.reset(module)

    def reset(self, module: nn.Module) -> None:
        """Empty every hidden state (snnTorch registers exactly its hidden states as non-persistent buffers)."""
        # a buffer or parameter of every snnTorch neuron: the copy's dtype and device
        like: Tensor = getattr(module, "threshold")  # noqa: B009 - a foreign module's attribute
        for name in module._non_persistent_buffers_set:
            setattr(module, name, torch.zeros(0, dtype=like.dtype, device=like.device))


class SpikingJellyAdapter(NeuronAdapter):
    """SpikingJelly 2.0 ``activation_based.neuron`` nodes (``LIFNode``, ``IFNode``, ``ParametricLIFNode``, ...).

    The spike function is the ``surrogate_function`` submodule; the state is reset with the node's ``reset()``.
    """

    name = "spikingjelly"
    heaviside_at_zero = 1.0

    def owns(self, module: nn.Module) -> bool:
        """SpikingJelly modules with a ``surrogate_function`` submodule."""
        return _from(module, "spikingjelly") and isinstance(getattr(module, "surrogate_function", None), nn.Module)

    def spike_fn(self, module: nn.Module) -> Any:
        """``module.surrogate_function``."""
        return module.surrogate_function

    def install(self, module: nn.Module, spike_fn: Any) -> None:
        """Set ``module.surrogate_function``."""
        module.surrogate_function = spike_fn

    def identify(self, spike_fn: Any) -> Peer | None:
        """A surrogate module of ``spikingjelly.activation_based.surrogate``: its class and its parameters."""
        if not _from(spike_fn, "spikingjelly") or not hasattr(spike_fn, "_sg_params"):
            return None
        return f"spikingjelly:{type(spike_fn).__name__}", dict(spike_fn._sg_params)

    def spike_of(self, shape: SurrogateGradient) -> Any:
        """An :class:`EvoexpSpike`: SpikingJelly keeps its spike function as the submodule ``surrogate_function``."""
        return EvoexpSpike(shape)

    def own_primitive(self, spike_fn: Any) -> Any | None:
        """The surrogate's own class with ``spiking=False`` (forward = its primitive), when it has a primitive."""
        if not hasattr(spike_fn, "spiking") or not hasattr(spike_fn, "_sg_params"):
            return None
        params = dict(spike_fn._sg_params)
        try:
            with torch.no_grad():
                spike_fn.primitive_function(torch.zeros(1, dtype=torch.float64), **params)
        except (NotImplementedError, TypeError, AttributeError):
            return None
        return type(spike_fn)(**params, spiking=False)

    def reset(self, module: nn.Module) -> None:
        """``module.reset()`` (SpikingJelly's memory reset)."""
        if callable(getattr(module, "reset", None)):
            getattr(module, "reset")()  # noqa: B009 - a foreign module: checked callable above

    def caveats(self) -> list[str]:
        """SpikingJelly's fused kernels are not what is differenced."""
        return ["SpikingJelly runs its torch reference BPTT in float64 (the dtype of this check); its fused float32 "
                "LIF/IF kernels, used for built-in surrogates in float32 training, are not what was differenced"]


@dataclass(frozen=True)
class _NorseThreshold:
    """Norse's spike function of one neuron: ``threshold(x, method, alpha)`` of its functional module."""

    method: str
    alpha: float

    def __call__(self, x: Tensor) -> Tensor:
        from norse.torch.functional.threshold import threshold

        return threshold(x, self.method, self.alpha)

    def __repr__(self) -> str:
        return f"norse threshold(method={self.method!r}, alpha={self.alpha:g})"


_NORSE_SPIKE = "evoexp_spike_fn"
"""Attribute of a Norse neuron that holds its installed spike function (see :class:`_NorseInstalled`)."""


@functools.cache
def _norse_functionals() -> tuple[Any, ...]:
    """Norse's functional modules that bind ``threshold`` (read once: a neuron's forward runs every time step)."""
    return tuple(m for name, m in list(sys.modules.items())
                 if name.startswith("norse.torch.functional") and inspect.isfunction(getattr(m, "threshold", None)))


class _NorseInstalled:
    """Forward hooks of a Norse neuron with an installed spike function.

    While the neuron runs, every ``threshold`` of Norse's functional modules is replaced by a function that calls the
    neuron's ``evoexp_spike_fn``; the previous functions are restored afterwards (also after an exception). Patching is
    unavoidable: Norse binds ``threshold`` by name and has no hook for a user spike function.
    """

    def __init__(self) -> None:
        self.saved: list[list[tuple[Any, Any]]] = []

    def before(self, module: nn.Module, args: Any) -> None:
        spike_fn = getattr(module, _NORSE_SPIKE)

        def threshold(x: Tensor, method: str, alpha: float) -> Tensor:
            return spike_fn(x)

        patched = [(m, m.threshold) for m in _norse_functionals()]
        for functional, _ in patched:
            setattr(functional, "threshold", threshold)  # noqa: B010 - a module attribute, mypy cannot see it
        self.saved.append(patched)

    def after(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.saved:
            for functional, original in self.saved.pop():
                setattr(functional, "threshold", original)  # noqa: B010


class NorseAdapter(NeuronAdapter):
    """Norse 1.1 neurons whose parameters ``p`` carry a threshold ``method`` and ``alpha`` (``LIFCell``, ``LIF``, ...).

    Covers ``LIFBoxCell``, ``LIFRecurrentCell``, ``LSNN`` and the other cells with such parameters too. Norse calls
    the module-level ``threshold(x, method, alpha)`` of its functional modules; in smooth mode that name is replaced,
    only while the prepared copy runs its forward, by one that applies the smooth twin of each method. Norse neurons
    keep no state between calls.
    """

    name = "norse"
    stateless = True

    def owns(self, module: nn.Module) -> bool:
        """Norse modules whose parameters have ``method`` and ``alpha``."""
        p = getattr(module, "p", None)
        return _from(module, "norse") and hasattr(p, "method") and hasattr(p, "alpha")

    def spike_fn(self, module: nn.Module) -> Any:
        """The installed spike function, else ``threshold(x, p.method, p.alpha)``."""
        installed = getattr(module, _NORSE_SPIKE, None)
        p: Any = getattr(module, "p")  # noqa: B009 - Norse's parameter tuple (checked by owns)
        return installed if installed is not None else _NorseThreshold(p.method, float(p.alpha))

    def install(self, module: nn.Module, spike_fn: Any) -> None:
        """Set the installed spike function of a neuron that has one.

        Otherwise nothing: Norse calls ``threshold`` by name (see :meth:`forward_context`).
        """
        if getattr(module, _NORSE_SPIKE, None) is not None:
            setattr(module, _NORSE_SPIKE, spike_fn)

    def adopt(self, name: str, module: nn.Module, spike_fn: Any) -> None:
        """Give the neuron the hooks of :class:`_NorseInstalled` (once) and ``spike_fn`` as its spike function."""
        if getattr(module, _NORSE_SPIKE, None) is None:
            hooks = _NorseInstalled()
            module.register_forward_pre_hook(hooks.before)
            module.register_forward_hook(hooks.after, always_call=True)
        setattr(module, _NORSE_SPIKE, spike_fn)

    def identify(self, spike_fn: Any) -> Peer | None:
        """``norse:<method>`` with its ``alpha``."""
        if not isinstance(spike_fn, _NorseThreshold):
            return None
        return f"norse:{spike_fn.method}", {"alpha": spike_fn.alpha}

    def forward_context(self, smooth: bool) -> contextlib.AbstractContextManager[Any]:
        """In smooth mode, the smooth ``threshold`` in Norse's functional modules."""
        return self._smooth_threshold() if smooth else contextlib.nullcontext()

    @contextlib.contextmanager
    def _smooth_threshold(self) -> Iterator[None]:
        """Replace ``threshold`` in Norse's functional modules by its smooth twin, restoring it on exit.

        Patching a library's module attribute is unavoidable here: Norse binds ``threshold`` by name in each
        functional module and has no hook for a user spike function. The patch lives only for one forward of a
        private copy.
        """
        from norse.torch.functional import threshold as threshold_module

        original = threshold_module.threshold
        smooth = self._smooth_of

        def smooth_threshold(x: Tensor, method: str, alpha: float) -> Tensor:
            return smooth(method, float(alpha))(x)

        patched = [m for name, m in list(sys.modules.items())
                   if name.startswith("norse.torch.functional") and getattr(m, "threshold", None) is original]
        for module in patched:
            setattr(module, "threshold", smooth_threshold)  # noqa: B010 - a Norse module, patched while the block runs
        try:
            yield
        finally:
            for module in patched:
                setattr(module, "threshold", original)  # noqa: B010 - restores Norse's own function

    @functools.cached_property
    def _smooth_of(self) -> Callable[[str, float], nn.Module]:
        """``(method, alpha) -> smooth spike function``, cached (one per constant pair)."""
        return functools.cache(lambda method, alpha: self._smooth(_NorseThreshold(method, alpha))[0])


PEER_ADAPTERS: tuple[NeuronAdapter, ...] = (SnnTorchAdapter(), SpikingJellyAdapter(), NorseAdapter())
"""The adapters :func:`evoexp.verification.spiking.private_copy` registers for models that use these libraries."""
