r"""Smooth mode for the peers' networks: adapters for snnTorch, SpikingJelly and Norse neurons on a private copy.

:func:`prepare_foreign` makes a private copy (the caller's, never the user's model) verifiable:

* every neuron's spike function is swapped for one that casts back to the input dtype (snnTorch returns float32
  spikes from float64 membranes) -- spiking mode -- or, in **smooth mode**, for one whose forward is the surrogate's
  primitive and whose backward its derivative. The primitive is the equal evoexp shape's
  (:mod:`evoexp.peers.names`), else the library's own smooth function (SpikingJelly's ``spiking=False``), else a
  substitute shape, and the result says which;
* every forward starts from the neurons' initial state (snnTorch's hidden state, SpikingJelly's ``reset_net``), so
  repeated and perturbed forwards are comparable;
* in smooth mode, every ``detach()`` the forward performs replays its value from one recorded, unperturbed forward
  (:meth:`ForeignPreparation.record`). A detached tensor is what the training gradient deliberately ignores
  (snnTorch always detaches its reset, SpikingJelly with ``detach_reset=True``, Norse's recurrent cells), so the
  finite differences hold it fixed exactly as autograd does (DESIGN §5, first rule).

Adapters are looked up in a registry; :func:`register_adapter` adds one for another library.

Example:
    >>> work = copy.deepcopy(model).double()
    >>> preparation = prepare_foreign(work, smooth=True)
    >>> preparation.record(inputs)   # the unperturbed forward whose detached values are replayed
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from evoexp.peers.names import get_peer
from evoexp.surrogate import SurrogateGradient, get_surrogate
from evoexp.verification.surrogate_check import describe_spike_fn

__all__ = [
    "DEFAULT_SUBSTITUTE",
    "ForeignPreparation",
    "NeuronSwap",
    "PeerAdapter",
    "available_adapters",
    "find_neurons",
    "is_foreign_snn",
    "prepare_foreign",
    "private_copy",
    "register_adapter",
]

DEFAULT_SUBSTITUTE = "sigmoid"
"""evoexp shape (at its default slope) used in smooth mode for a spike function without a known primitive."""


@dataclass
class NeuronSwap:
    """What :func:`prepare_foreign` did to one neuron.

    Attributes:
        name: The neuron's module path in the model (``""`` for the model itself).
        library: The adapter's library.
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


class PeerAdapter(ABC):
    """How evoexp handles one library's neurons. Subclass, set ``library`` and register with :func:`register_adapter`.

    ``owns`` must be cheap and must not import the library for modules of other libraries.
    """

    library: ClassVar[str] = ""

    @abstractmethod
    def owns(self, module: nn.Module) -> bool:
        """Whether ``module`` is a spiking neuron of this library."""

    @abstractmethod
    def make_spiking(self, module: nn.Module) -> str:
        """Make the neuron's spikes dtype-safe on the copy (keep its surrogate); return what was done."""

    @abstractmethod
    def make_smooth(self, module: nn.Module, substitute: SurrogateGradient) -> tuple[str, str, bool]:
        """Swap the neuron's spike function for a smooth one; return ``(original, replacement, substituted)``."""

    def reset(self, module: nn.Module) -> None:  # noqa: B027 - stateless libraries (Norse) need no reset
        """Put the neuron back to its initial state (before every forward)."""

    def forward_context(
        self, model: nn.Module, smooth: bool, substitute: SurrogateGradient
    ) -> contextlib.AbstractContextManager[Any]:
        """A context active during every forward of the prepared copy (default: none)."""
        return contextlib.nullcontext()

    def notes(self, smooth: bool) -> list[str]:
        """Caveats a result must state when this library's neurons were checked."""
        return []


_ADAPTERS: dict[str, PeerAdapter] = {}


def register_adapter(adapter: PeerAdapter) -> PeerAdapter:
    """Add (or replace) the adapter of ``adapter.library``; returns it.

    Raises:
        TypeError: ``adapter`` is not a :class:`PeerAdapter` with a ``library`` name.
    """
    if not isinstance(adapter, PeerAdapter) or not adapter.library:
        raise TypeError(f"register_adapter expects a PeerAdapter instance with a library name, got {adapter!r}")
    _ADAPTERS[adapter.library] = adapter
    return adapter


def available_adapters() -> list[str]:
    """The libraries with a registered adapter."""
    return sorted(_ADAPTERS)


def _from(module: nn.Module, package: str) -> bool:
    return type(module).__module__.split(".")[0] == package and package in sys.modules


def find_neurons(model: nn.Module) -> list[tuple[str, nn.Module, PeerAdapter]]:
    """Every foreign spiking neuron in ``model``: ``(module path, module, adapter)``, in module order."""
    return [(name, module, adapter) for name, module in model.named_modules() for adapter in _ADAPTERS.values()
            if adapter.owns(module)]


def is_foreign_snn(model: nn.Module) -> bool:
    """Whether ``model`` contains a spiking neuron of a peer library (a registered adapter owns one)."""
    return any(adapter.owns(module) for module in model.modules() for adapter in _ADAPTERS.values())


class _SmoothSpike(nn.Module):
    """``shape.smooth`` as a module (SpikingJelly keeps its surrogate as a submodule; snnTorch calls it)."""

    def __init__(self, shape: SurrogateGradient) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return self.shape.smooth(x)

    def extra_repr(self) -> str:
        return f"{self.shape!r} smooth"


class _SameDtype(nn.Module):
    """A spike function whose output is cast back to the input's dtype (the library's backward is kept)."""

    def __init__(self, spike_fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.spike_fn = spike_fn

    def forward(self, x: Tensor) -> Tensor:
        return self.spike_fn(x).to(x.dtype)


def _peer_shape(key: str, params: dict[str, Any]) -> SurrogateGradient | None:
    """The evoexp shape equal to the peer function ``key`` at ``params``, or ``None``."""
    try:
        entry = get_peer(key)
        return entry.evoexp(**{k: float(v) for k, v in params.items() if k in entry.defaults})
    except (ValueError, TypeError):
        return None


def _as_shape(spike_fn: Any) -> SurrogateGradient | None:
    """The evoexp shape behind ``spike_fn`` when it is one (``shape``, ``shape.spike``, ``shape.smooth``)."""
    if isinstance(spike_fn, SurrogateGradient):
        return spike_fn
    owner = getattr(spike_fn, "__self__", None)
    return owner if isinstance(owner, SurrogateGradient) else None


class SnnTorchAdapter(PeerAdapter):
    """snnTorch 1.0 neurons (``Leaky``, ``Synaptic``, ``RLeaky``, ``RSynaptic``, ``Alpha``, ``Lapicque``, ...).

    The spike function is the ``spike_grad`` callable; its hidden states are the neuron's non-persistent buffers,
    which a fresh forward re-creates from an empty tensor.
    """

    library = "snntorch"

    def owns(self, module: nn.Module) -> bool:
        if not _from(module, "snntorch") or not hasattr(module, "spike_grad"):
            return False
        return isinstance(module, importlib.import_module("snntorch").SpikingNeuron)

    def make_spiking(self, module: nn.Module) -> str:
        module.spike_grad = _SameDtype(module.spike_grad)
        return "spikes cast to the membrane's dtype (snnTorch returns float32)"

    def make_smooth(self, module: nn.Module, substitute: SurrogateGradient) -> tuple[str, str, bool]:
        spike_fn = module.spike_grad
        shape = _as_shape(spike_fn) or self._shape(spike_fn)
        module.spike_grad = _SmoothSpike(shape or substitute)
        return describe_spike_fn(spike_fn), f"{shape or substitute!r} smooth", shape is None

    @staticmethod
    def _shape(spike_fn: Any) -> SurrogateGradient | None:
        qualname = getattr(spike_fn, "__qualname__", "")
        if getattr(spike_fn, "__module__", "") != "snntorch.surrogate" or ".<locals>." not in qualname:
            return None
        import inspect

        factory = qualname.split(".<locals>.")[0]
        return _peer_shape(f"snntorch:{factory}", dict(inspect.getclosurevars(spike_fn).nonlocals))

    def reset(self, module: nn.Module) -> None:
        like = module.threshold  # a buffer or parameter of every snnTorch neuron: the copy's dtype and device
        for name in module._non_persistent_buffers_set:  # snnTorch registers exactly its hidden states so
            setattr(module, name, torch.zeros(0, dtype=like.dtype, device=like.device))


class SpikingJellyAdapter(PeerAdapter):
    """SpikingJelly 2.0 ``activation_based.neuron`` nodes (``LIFNode``, ``IFNode``, ``ParametricLIFNode``, ...).

    The spike function is the ``surrogate_function`` submodule; state is reset with ``functional.reset_net``.
    """

    library = "spikingjelly"

    def owns(self, module: nn.Module) -> bool:
        return _from(module, "spikingjelly") and isinstance(getattr(module, "surrogate_function", None), nn.Module)

    def make_spiking(self, module: nn.Module) -> str:
        return "unchanged"

    def make_smooth(self, module: nn.Module, substitute: SurrogateGradient) -> tuple[str, str, bool]:
        surrogate = module.surrogate_function
        label = describe_spike_fn(surrogate)
        params = dict(getattr(surrogate, "_sg_params", {}))
        shape = _as_shape(surrogate) or _peer_shape(f"spikingjelly:{type(surrogate).__name__}", params)
        if shape is not None:
            module.surrogate_function = _SmoothSpike(shape)
            return label, f"{shape!r} smooth", False
        if self._has_primitive(surrogate):
            own = type(surrogate)(**params, spiking=False)
            module.surrogate_function = own
            return label, f"{type(surrogate).__name__} with spiking=False (SpikingJelly's own primitive)", False
        module.surrogate_function = _SmoothSpike(substitute)
        return label, f"{substitute!r} smooth", True

    @staticmethod
    def _has_primitive(surrogate: nn.Module) -> bool:
        if not hasattr(surrogate, "spiking"):
            return False
        try:
            with torch.no_grad():
                surrogate.primitive_function(torch.zeros(1, dtype=torch.float64), **surrogate._sg_params)
        except (NotImplementedError, TypeError, AttributeError):
            return False
        return True

    def reset(self, module: nn.Module) -> None:
        if callable(getattr(module, "reset", None)):
            module.reset()

    def notes(self, smooth: bool) -> list[str]:
        return ["SpikingJelly runs its torch reference BPTT in float64 (the dtype of this check); its fused float32 "
                "LIF/IF kernels, used for built-in surrogates in float32 training, are not what was differenced"]


class NorseAdapter(PeerAdapter):
    """Norse 1.1 neurons whose parameters ``p`` carry a threshold ``method`` and ``alpha`` (``LIFCell``, ``LIF``, ...).

    Covers ``LIFBoxCell``, ``LIFRecurrentCell``, ``LSNN`` and the other cells with such parameters too.

    Norse calls the module-level ``threshold(x, method, alpha)`` of its functional modules; in smooth mode that name
    is replaced, only while the prepared copy runs its forward, by one that applies the smooth twin of each method.
    Norse neurons keep no state between calls.
    """

    library = "norse"

    def owns(self, module: nn.Module) -> bool:
        p = getattr(module, "p", None)
        return _from(module, "norse") and hasattr(p, "method") and hasattr(p, "alpha")

    def make_spiking(self, module: nn.Module) -> str:
        return "unchanged"

    def make_smooth(self, module: nn.Module, substitute: SurrogateGradient) -> tuple[str, str, bool]:
        method, alpha = module.p.method, float(module.p.alpha)
        shape = _peer_shape(f"norse:{method}", {"alpha": alpha})
        return (f"norse threshold(method={method!r}, alpha={alpha:g})", f"{shape or substitute!r} smooth",
                shape is None)

    def forward_context(
        self, model: nn.Module, smooth: bool, substitute: SurrogateGradient
    ) -> contextlib.AbstractContextManager[Any]:
        return _norse_smooth_threshold(substitute) if smooth else contextlib.nullcontext()


@contextlib.contextmanager
def _norse_smooth_threshold(substitute: SurrogateGradient) -> Iterator[None]:
    """Replace ``threshold`` in Norse's functional modules by its smooth twin, restoring it on exit.

    Patching a library's module attribute is unavoidable here: Norse binds ``threshold`` by name in each functional
    module and has no hook for a user spike function. The patch lives only for one forward of a private copy.
    """
    from norse.torch.functional import threshold as threshold_module

    original = threshold_module.threshold

    @functools.cache
    def shape_of(method: str, alpha: float) -> SurrogateGradient:
        return _peer_shape(f"norse:{method}", {"alpha": alpha}) or substitute

    def smooth_threshold(x: Tensor, method: str, alpha: float) -> Tensor:
        return shape_of(method, float(alpha)).smooth(x)

    patched = [m for name, m in list(sys.modules.items())
               if name.startswith("norse.torch.functional") and getattr(m, "threshold", None) is original]
    for module in patched:
        module.threshold = smooth_threshold
    try:
        yield
    finally:
        for module in patched:
            module.threshold = original


class _DetachReplay(TorchFunctionMode):
    """Records every ``detach()`` of one forward, then returns those values in every later forward."""

    def __init__(self, preparation: ForeignPreparation) -> None:
        super().__init__()
        self.preparation = preparation

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func is Tensor.detach or func is torch.detach:
            return self.preparation._detached(out)
        return out


@dataclass
class ForeignPreparation:
    """A private copy prepared by :func:`prepare_foreign`.

    Attributes:
        smooth: Whether the spike functions were swapped for smooth ones.
        neurons: What was done to each neuron.
        notes: Sentences for the verifier's result (substitutions, caveats); empty when there is nothing to say.
    """

    smooth: bool
    neurons: list[NeuronSwap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _model: nn.Module | None = field(default=None, repr=False)
    _recorded: list[Tensor] = field(default_factory=list, repr=False)
    _state: str = field(default="armed", repr=False)
    _index: int = field(default=0, repr=False)

    def __bool__(self) -> bool:
        return bool(self.neurons)

    def record(self, *inputs: Any) -> None:
        """Run the unperturbed forward once (no grad) and keep its detached values for every later forward.

        Without this call the first forward after :func:`prepare_foreign` records. Nothing to do in spiking mode.
        """
        if not self.smooth or not self.neurons or self._model is None:
            return
        self._state, self._recorded = "armed", []
        with torch.no_grad():
            self._model(*inputs)

    def _begin(self) -> None:
        self._index = 0
        if self._state == "armed":
            self._state, self._recorded = "recording", []

    def _end(self) -> None:
        if self._state == "recording":
            self._state = "replaying"

    def _detached(self, value: Tensor) -> Tensor:
        if self._state == "recording":
            self._recorded.append(value.clone())
            return value
        if self._state != "replaying":
            return value
        if self._index >= len(self._recorded):
            raise RuntimeError(self._mismatch(f"more detach() calls than the {len(self._recorded)} recorded"))
        recorded = self._recorded[self._index]
        self._index += 1
        if recorded.shape != value.shape:
            raise RuntimeError(self._mismatch(f"detach() of shape {tuple(value.shape)} where the recorded forward "
                                              f"had {tuple(recorded.shape)}"))
        return recorded.to(value.dtype)

    @staticmethod
    def _mismatch(detail: str) -> str:
        return ("the foreign network's forward changed between evaluations (" + detail + "); smooth mode replays the "
                "detached values of one recorded forward and needs the same inputs and control flow every time")


def prepare_foreign(
    model: nn.Module, *, smooth: bool, substitute: SurrogateGradient | None = None
) -> ForeignPreparation:
    """Prepare a PRIVATE copy holding peer-library neurons for verification, in place (see the module docstring).

    Never call this on the user's model: it swaps spike functions and installs forward hooks.

    Args:
        model: The private copy (already in the verification dtype).
        smooth: Swap spike functions for smooth ones and replay detached values (finite-difference checks);
            otherwise only make spikes dtype-safe (spiking-mode checks: surrogate bias, stability, alignment).
        substitute: Smooth shape for spike functions without a known primitive (default: evoexp ``sigmoid``).

    Returns:
        The :class:`ForeignPreparation` (falsy, and nothing installed, when the model has no foreign neuron).
    """
    neurons = find_neurons(model)
    preparation = ForeignPreparation(smooth=smooth)
    if not neurons:
        return preparation
    substitute = substitute if substitute is not None else get_surrogate(DEFAULT_SUBSTITUTE)
    adapters = list({id(a): a for _, _, a in neurons}.values())
    for name, module, adapter in neurons:
        if smooth:
            original, replacement, substituted = adapter.make_smooth(module, substitute)
        else:
            original, replacement, substituted = "kept", adapter.make_spiking(module), False
        preparation.neurons.append(NeuronSwap(name, adapter.library, type(module).__name__, original, replacement,
                                              substituted))
    substituted = [n for n in preparation.neurons if n.substituted]
    if substituted:
        preparation.notes.append(
            "smooth mode has no primitive for " + ", ".join(f"{n.name or n.neuron} ({n.original})" for n in substituted)
            + f": substituted {substitute!r}, so the check covers the library's BPTT with that surrogate")
    if smooth:
        for adapter in adapters:
            preparation.notes.extend(adapter.notes(smooth))
    preparation._model = model
    _install_hooks(model, preparation, [(m, a) for _, m, a in neurons], adapters, substitute)
    return preparation


def _install_hooks(model: nn.Module, preparation: ForeignPreparation, neurons: list[tuple[nn.Module, PeerAdapter]],
                   adapters: list[PeerAdapter], substitute: SurrogateGradient) -> None:
    """Reset state and enter the adapters' contexts (and the detach replay) around every forward of ``model``."""
    stack: list[contextlib.ExitStack] = []

    def before(module: nn.Module, args: Any) -> None:
        for neuron, adapter in neurons:
            adapter.reset(neuron)
        exits = contextlib.ExitStack()
        for adapter in adapters:
            exits.enter_context(adapter.forward_context(model, preparation.smooth, substitute))
        if preparation.smooth:
            preparation._begin()
            exits.enter_context(_DetachReplay(preparation))
        stack.append(exits)

    def after(module: nn.Module, args: Any, output: Any) -> None:
        if stack:
            stack.pop().close()
        if preparation.smooth:
            preparation._end()

    model.register_forward_pre_hook(before)
    model.register_forward_hook(after, always_call=True)


def private_copy(
    model: nn.Module, *, smooth: bool, dtype: torch.dtype | None = torch.float64,
    substitute: SurrogateGradient | None = None,
) -> tuple[nn.Module, ForeignPreparation]:
    """A deep copy of ``model`` (cast to ``dtype`` unless ``None``) prepared by :func:`prepare_foreign`."""
    import copy

    work = copy.deepcopy(model)
    if dtype is not None:
        work = work.to(dtype)
    return work, prepare_foreign(work, smooth=smooth, substitute=substitute)


for _adapter in (SnnTorchAdapter(), SpikingJellyAdapter(), NorseAdapter()):
    register_adapter(_adapter)
