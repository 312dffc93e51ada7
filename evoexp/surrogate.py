r"""Surrogate spike functions: exact Heaviside forward, smooth pseudo-derivative backward.

A surrogate shape is data: a frozen, hashable dataclass holding its parameters (``slope`` :math:`\beta > 0`,
``scale`` :math:`s > 0`, sometimes one more) and defining

* :meth:`SurrogateGradient.derivative` -- the pseudo-derivative :math:`g(x)` used in the backward pass,
* :meth:`SurrogateGradient.primitive` -- a smooth step :math:`P` with :math:`P' = g`, from 0 to the area,
* :attr:`SurrogateGradient.area` (:math:`\int g\,dx`) and :attr:`SurrogateGradient.peak` (:math:`\max g`),
* :meth:`SurrogateGradient.spike` -- :math:`H(x) = [x > 0]` forward, :math:`g(x)` backward,
* :meth:`SurrogateGradient.smooth` -- :math:`P(x)` forward, :math:`g(x)` backward ("smooth mode").

``x`` is the membrane potential minus the threshold. Every shape class carries its formulas twice: in prose in its
docstring and as NumPy expressions (``formula`` for :math:`g`, ``primitive_formula`` for :math:`P`, in the variables
``x``, ``slope``, ``scale`` and the shape's own parameters) which the tests evaluate against the torch code. Shapes
are registered by name; :func:`get_surrogate` builds one, :func:`available_surrogates` lists the names, and
:func:`register_surrogate` adds a user's own shape.

Example:
    >>> sg = get_surrogate("fast_sigmoid", slope=25.0)
    >>> sg
    fast_sigmoid(slope=25.0, scale=1.0)
    >>> spikes = sg.spike(torch.randn(4, requires_grad=True))
"""

from __future__ import annotations

import dataclasses
import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

__all__ = [
    "LIBRARY_ENTRY_POINTS",
    "ATan",
    "Exponential",
    "FastSigmoid",
    "FastSigmoidShape",
    "Gaussian",
    "MultiGaussian",
    "PiecewiseQuadratic",
    "QPseudoSpike",
    "Rectangular",
    "Sigmoid",
    "SoftSign",
    "StraightThrough",
    "SuperSpike",
    "SurrogateGradient",
    "Triangular",
    "available_surrogates",
    "get_surrogate",
    "heaviside",
    "register_surrogate",
    "spike_function",
]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# |slope * x| beyond this is clamped inside primitives so that e.g. u / (1 + |u|) never becomes inf / inf.
_U_MAX = 1e18


def heaviside(x: Tensor) -> Tensor:
    r"""Exact spike nonlinearity :math:`H(x) = 1` if :math:`x > 0` else :math:`0`, in the dtype of ``x``."""
    return (x > 0).to(x.dtype)


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside forward, ``shape.derivative`` backward. Works under ``torch.func`` transforms."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, shape: SurrogateGradient) -> Tensor:
        return heaviside(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, SurrogateGradient], output: Tensor) -> None:
        x, shape = inputs
        ctx.save_for_backward(x)
        ctx.shape = shape

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_output * ctx.shape.derivative(x), None


class _EagerSurrogateSpike(torch.autograd.Function):
    """:class:`_SurrogateSpike` outside ``torch.func`` transforms, in the ``forward(ctx, ...)`` style.

    Its ``apply`` skips the per-call signature binding of ``setup_context`` Functions, which dominated a training step
    of small networks (``benchmarks/bench_foreign_epoch.py``).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, shape: SurrogateGradient) -> Tensor:
        ctx.save_for_backward(x)
        ctx.shape = shape
        return heaviside(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_output * ctx.shape.derivative(x), None


class _SmoothSpike(torch.autograd.Function):
    """Primitive forward, ``shape.derivative`` backward: the differentiable twin of a spike ("smooth mode")."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, shape: SurrogateGradient) -> Tensor:
        return shape.primitive(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, SurrogateGradient], output: Tensor) -> None:
        x, shape = inputs
        ctx.save_for_backward(x)
        ctx.shape = shape

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_output * ctx.shape.derivative(x), None


def _check_positive(owner: str, field: str, value: Any) -> float:
    """Return ``value`` as a float, or raise a ValueError naming ``owner.field`` if it is not finite and > 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {field} must be a number > 0, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{owner}: {field} must be a finite number > 0, got {value!r}")
    return number


@dataclass(frozen=True, repr=False)
class SurrogateGradient(ABC):
    r"""Base class of surrogate shapes: frozen parameters and the formulas of :math:`g` and :math:`P`.

    Subclasses set the class variables ``name`` (registry key), ``formula`` and ``primitive_formula`` (NumPy
    expressions of :math:`g` and :math:`P`, quoted in their docstrings) and implement :meth:`derivative`,
    :meth:`primitive`, :attr:`area` and :attr:`peak`.

    Args:
        slope: Sharpness :math:`\beta > 0`; larger is closer to the step.
        scale: Multiplier :math:`s > 0` of the pseudo-derivative.
    """

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    primitive_formula: ClassVar[str] = ""

    slope: float = 1.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _check_positive(self.name, field.name, getattr(self, field.name)))
        self._validate()

    def _validate(self) -> None:  # noqa: B027 - optional hook, most shapes need no extra check
        """Check shape-specific parameter constraints (hook for subclasses)."""

    def __repr__(self) -> str:
        params = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.name}({params})"

    def params(self) -> dict[str, float]:
        """Return the parameters as a plain dict (``slope``, ``scale`` and any shape-specific ones)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @abstractmethod
    def derivative(self, x: Tensor) -> Tensor:
        """Pseudo-derivative :math:`g(x)` used in place of the Dirac delta in the backward pass."""

    @abstractmethod
    def primitive(self, x: Tensor) -> Tensor:
        r"""Smooth step :math:`P(x)` with :math:`P' = g`, :math:`P(-\infty) = 0`, :math:`P(\infty) =` area."""

    @property
    @abstractmethod
    def area(self) -> float:
        r""":math:`\int_{-\infty}^{\infty} g(x)\,dx` (``inf`` when unbounded)."""

    @property
    @abstractmethod
    def peak(self) -> float:
        r""":math:`\max_x g(x)`."""

    @property
    def kinks(self) -> tuple[float, ...]:
        """Points besides :math:`x = 0` where :math:`g` jumps or has a kink (on the grid of the surrogate check)."""
        return ()

    def spike(self, x: Tensor) -> Tensor:
        """Exact Heaviside forward ``(x > 0)``, backward multiplies the incoming gradient by :meth:`derivative`.

        Without grad mode no backward can follow, so the plain step is returned (skipping the autograd.Function
        also skips its generated vmap rule, which dominates batched no-grad forwards).
        """
        if not torch.is_grad_enabled():
            return heaviside(x)
        if torch._C._are_functorch_transforms_active():  # what Function.apply itself asks; vmap needs setup_context
            return _SurrogateSpike.apply(x, self)
        return _EagerSurrogateSpike.apply(x, self)

    def smooth(self, x: Tensor) -> Tensor:
        """Forward :meth:`primitive`, backward :meth:`derivative` ("smooth mode").

        A network built from smooth spikes is differentiable and its true gradient is the surrogate gradient.
        """
        if not torch.is_grad_enabled():
            return self.primitive(x)
        return _SmoothSpike.apply(x, self)

    def __call__(self, x: Tensor) -> Tensor:
        """Same as :meth:`spike`."""
        return self.spike(x)

    def _u(self, x: Tensor) -> Tensor:
        r"""Scaled input :math:`u = \beta x`, clamped to a finite range (used by primitives only)."""
        return (self.slope * x).clamp(-_U_MAX, _U_MAX)


_S = TypeVar("_S", bound=type[SurrogateGradient])
_REGISTRY: dict[str, type[SurrogateGradient]] = {}


def register_surrogate(cls: _S) -> _S:
    """Class decorator adding a :class:`SurrogateGradient` subclass to the name registry.

    Raises:
        TypeError: ``cls`` is not a frozen SurrogateGradient dataclass.
        ValueError: the name is empty or already taken by another class.
    """
    if not (isinstance(cls, type) and issubclass(cls, SurrogateGradient)):
        raise TypeError(f"register_surrogate expects a SurrogateGradient subclass, got {cls!r}")
    # Why the type ignore below: __dataclass_params__ is set by @dataclass, which is_dataclass has just confirmed
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} must be decorated with @dataclass(frozen=True, repr=False)")
    if not cls.name:
        raise ValueError(f"{cls.__name__}.name must be a non-empty registry name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"surrogate name {cls.name!r} is already registered by {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def available_surrogates() -> list[str]:
    """Return the registered surrogate names, sorted."""
    return sorted(_REGISTRY)


LIBRARY_ENTRY_POINTS = "evoexp.surrogate_libraries"
"""Entry-point group of plug-ins that name another library's surrogates: the name is the library's prefix
(``snntorch``), the object a callable ``(name, **params) -> SurrogateGradient`` for names ``"<library>:<function>"``
(evoexp's own plug-in, :func:`evoexp.peers.names.peer_surrogate`, is declared in ``pyproject.toml``)."""


@functools.cache
def _library_entry_points() -> dict[str, EntryPoint]:
    """The installed surrogate-library plug-ins' entry points by library prefix (read once)."""
    return {ep.name: ep for ep in entry_points(group=LIBRARY_ENTRY_POINTS)}


def _library_surrogate(name: str, **params: float) -> SurrogateGradient:
    """Build the evoexp shape equal to another library's function ``"<library>:<function>"`` through its plug-in."""
    library = name.partition(":")[0]
    plugins = _library_entry_points()
    if library not in plugins:
        raise ValueError(
            f"unknown peer surrogate {name!r}; no plug-in names {library!r} surrogates "
            f"(installed: {', '.join(sorted(plugins)) or 'none'})"
        )
    build: Callable[..., SurrogateGradient] = plugins[library].load()
    return build(name, **params)


def get_surrogate(name: str, **params: float) -> SurrogateGradient:
    """Build the registered surrogate ``name`` with ``params`` (``slope``, ``scale``, shape-specific ones).

    A name containing ``':'`` is another library's (``"spikingjelly:PiecewiseQuadratic"``, with that library's
    parameters): the library's plug-in (entry-point group :data:`LIBRARY_ENTRY_POINTS`; for snnTorch, SpikingJelly and
    Norse :mod:`evoexp.peers.names`) builds the evoexp shape equal to that function.

    Raises:
        ValueError: unknown name (the message lists the valid names), unknown or invalid parameter.
    """
    if ":" in name:
        return _library_surrogate(name, **params)
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown surrogate {name!r}; available surrogates: {', '.join(available_surrogates())}"
        ) from None
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"{name}: unknown parameter(s) {', '.join(unknown)}; valid parameters: {', '.join(valid)}")
    return cls(**params)


@register_surrogate
@dataclass(frozen=True, repr=False)
class FastSigmoidShape(SurrogateGradient):
    r"""Fast sigmoid, peak-normalised (snnTorch's ``fast_sigmoid``; Zenke & Vogels 2021).

    ``g = scale / (slope*abs(x) + 1)**2``, i.e. :math:`g(x) = s/(\beta|x|+1)^2`, peak :math:`s`, area
    :math:`2s/\beta` (the area shrinks as the slope grows).

    ``P = scale * (1/slope + x / (1 + slope*abs(x)))``.
    """

    name: ClassVar[str] = "fast_sigmoid"
    formula: ClassVar[str] = "scale / (slope*abs(x) + 1)**2"
    primitive_formula: ClassVar[str] = "scale * (1/slope + x / (1 + slope*abs(x)))"
    slope: float = 25.0

    def derivative(self, x: Tensor) -> Tensor:
        # Same rounding as scale / (slope*|x| + 1)**2 with fewer passes over memory (the LIF backward calls this per
        # time step): the in-place ops only touch fresh temporaries that no autograd node saves; x * 1.0 == x.
        g = x.abs().mul_(self.slope).add_(1.0).pow(-2)
        return g if self.scale == 1.0 else g.mul_(self.scale)

    def primitive(self, x: Tensor) -> Tensor:
        u = self._u(x)
        return (self.scale / self.slope) * (1.0 + u / (1.0 + u.abs()))

    @property
    def area(self) -> float:
        return 2.0 * self.scale / self.slope

    @property
    def peak(self) -> float:
        return self.scale


@register_surrogate
@dataclass(frozen=True, repr=False)
class SuperSpike(SurrogateGradient):
    r"""SuperSpike, the "asymptotic" fast sigmoid (Zenke & Ganguli 2018; Zenke & Vogels 2021).

    ``g = scale * slope / (slope*abs(x) + 1)**2``, i.e. :math:`g(x) = s\beta/(\beta|x|+1)^2`: :math:`\beta` times
    :class:`FastSigmoidShape`, so the area stays :math:`2s` and :math:`g \to 2s\,\delta` as :math:`\beta\to\infty`;
    peak :math:`s\beta`.

    ``P = scale * (1 + slope*x / (1 + slope*abs(x)))``.
    """

    name: ClassVar[str] = "superspike"
    formula: ClassVar[str] = "scale * slope / (slope*abs(x) + 1)**2"
    primitive_formula: ClassVar[str] = "scale * (1 + slope*x / (1 + slope*abs(x)))"
    slope: float = 10.0

    def derivative(self, x: Tensor) -> Tensor:
        return self.scale * self.slope / (self.slope * x.abs() + 1.0) ** 2

    def primitive(self, x: Tensor) -> Tensor:
        u = self._u(x)
        return self.scale * (1.0 + u / (1.0 + u.abs()))

    @property
    def area(self) -> float:
        return 2.0 * self.scale

    @property
    def peak(self) -> float:
        return self.scale * self.slope


@register_surrogate
@dataclass(frozen=True, repr=False)
class Sigmoid(SurrogateGradient):
    r"""Logistic sigmoid derivative.

    ``g = scale * slope * sig(slope*x) * (1 - sig(slope*x))`` with :math:`\sigma(u)=1/(1+e^{-u})`; area :math:`s`,
    peak :math:`s\beta/4`. Computed with ``torch.sigmoid`` so no exponential overflows for any :math:`|x|`.

    ``P = scale * sig(slope*x)``.
    """

    name: ClassVar[str] = "sigmoid"
    formula: ClassVar[str] = "scale * slope * sig(slope*x) * (1 - sig(slope*x))"
    primitive_formula: ClassVar[str] = "scale * sig(slope*x)"
    slope: float = 5.0

    def derivative(self, x: Tensor) -> Tensor:
        sig = torch.sigmoid(self.slope * x)
        return self.scale * self.slope * sig * (1.0 - sig)

    def primitive(self, x: Tensor) -> Tensor:
        return self.scale * torch.sigmoid(self.slope * x)

    @property
    def area(self) -> float:
        return self.scale

    @property
    def peak(self) -> float:
        return self.scale * self.slope / 4.0


@register_surrogate
@dataclass(frozen=True, repr=False)
class ATan(SurrogateGradient):
    r"""Arctangent (SpikingJelly's ``ATan`` convention), a heavy-tailed (Cauchy) shape.

    ``g = scale * (slope/2) / (1 + (pi/2*slope*x)**2)``; area :math:`s`, peak :math:`s\beta/2`, tails
    :math:`\propto x^{-2}`.

    ``P = scale * (0.5 + arctan(pi/2*slope*x) / pi)``.
    """

    name: ClassVar[str] = "atan"
    formula: ClassVar[str] = "scale * (slope/2) / (1 + (pi/2*slope*x)**2)"
    primitive_formula: ClassVar[str] = "scale * (0.5 + arctan(pi/2*slope*x) / pi)"
    slope: float = 2.0

    def derivative(self, x: Tensor) -> Tensor:
        return self.scale * (self.slope / 2.0) / (1.0 + (math.pi / 2.0 * self.slope * x) ** 2)

    def primitive(self, x: Tensor) -> Tensor:
        return self.scale * (0.5 + torch.atan(math.pi / 2.0 * self.slope * x) / math.pi)

    @property
    def area(self) -> float:
        return self.scale

    @property
    def peak(self) -> float:
        return self.scale * self.slope / 2.0


@register_surrogate
@dataclass(frozen=True, repr=False)
class Triangular(SurrogateGradient):
    r"""Triangle (Bellec et al. 2018's piecewise-linear pseudo-derivative), support :math:`|x| < 1/\beta`.

    ``g = scale * slope * maximum(0, 1 - abs(slope*x))``; area :math:`s`, peak :math:`s\beta`.

    ``P = scale * (0.5 + c - c*abs(c)/2)`` with ``c = clip(slope*x, -1, 1)``.
    """

    name: ClassVar[str] = "triangular"
    formula: ClassVar[str] = "scale * slope * maximum(0, 1 - abs(slope*x))"
    primitive_formula: ClassVar[str] = "scale * (0.5 + c - c*abs(c)/2)"
    slope: float = 1.0

    def derivative(self, x: Tensor) -> Tensor:
        return self.scale * self.slope * (1.0 - (self.slope * x).abs()).clamp(min=0.0)

    def primitive(self, x: Tensor) -> Tensor:
        c = (self.slope * x).clamp(-1.0, 1.0)
        return self.scale * (0.5 + c - c * c.abs() / 2.0)

    @property
    def area(self) -> float:
        return self.scale

    @property
    def peak(self) -> float:
        return self.scale * self.slope

    @property
    def kinks(self) -> tuple[float, ...]:
        return (-1.0 / self.slope, 1.0 / self.slope)


@register_surrogate
@dataclass(frozen=True, repr=False)
class Rectangular(SurrogateGradient):
    r"""Rectangle (box), area-normalised: :math:`s\beta` on :math:`|x| < 1/(2\beta)` (Wu et al. 2018).

    ``g = scale * slope * (abs(slope*x) < 0.5)``; area :math:`s`, peak :math:`s\beta`.

    ``P = scale * clip(slope*x + 0.5, 0, 1)``.
    """

    name: ClassVar[str] = "rectangular"
    formula: ClassVar[str] = "scale * slope * (abs(slope*x) < 0.5)"
    primitive_formula: ClassVar[str] = "scale * clip(slope*x + 0.5, 0, 1)"
    slope: float = 1.0

    def derivative(self, x: Tensor) -> Tensor:
        return self.scale * self.slope * ((self.slope * x).abs() < 0.5).to(x.dtype)

    def primitive(self, x: Tensor) -> Tensor:
        return self.scale * (self._u(x) + 0.5).clamp(0.0, 1.0)

    @property
    def area(self) -> float:
        return self.scale

    @property
    def peak(self) -> float:
        return self.scale * self.slope

    @property
    def kinks(self) -> tuple[float, ...]:
        return (-0.5 / self.slope, 0.5 / self.slope)


@register_surrogate
@dataclass(frozen=True, repr=False)
class Exponential(SurrogateGradient):
    r"""Piecewise exponential (Laplace) shape (Shrestha & Orchard 2018; SpikingJelly's ``PiecewiseExp``).

    ``g = scale * (slope/2) * exp(-abs(slope*x))``; area :math:`s`, peak :math:`s\beta/2`. Only
    :math:`e^{-|u|}` is evaluated, so nothing overflows.

    ``P = scale * (0.5 + sign(x) * (1 - exp(-abs(slope*x))) / 2)``.
    """

    name: ClassVar[str] = "exponential"
    formula: ClassVar[str] = "scale * (slope/2) * exp(-abs(slope*x))"
    primitive_formula: ClassVar[str] = "scale * (0.5 + sign(x) * (1 - exp(-abs(slope*x))) / 2)"
    slope: float = 5.0

    def derivative(self, x: Tensor) -> Tensor:
        return self.scale * (self.slope / 2.0) * torch.exp(-(self.slope * x).abs())

    def primitive(self, x: Tensor) -> Tensor:
        u = self._u(x)
        return self.scale * (0.5 + torch.sign(u) * (1.0 - torch.exp(-u.abs())) / 2.0)

    @property
    def area(self) -> float:
        return self.scale

    @property
    def peak(self) -> float:
        return self.scale * self.slope / 2.0


@register_surrogate
@dataclass(frozen=True, repr=False)
class Gaussian(SurrogateGradient):
    r"""Gaussian density with standard deviation :math:`1/\beta`; the primitive is the error function.

    ``g = scale * slope / sqrt(2*pi) * exp(-(slope*x)**2 / 2)``; area :math:`s`, peak :math:`s\beta/\sqrt{2\pi}`.

    ``P = scale * 0.5 * (1 + erf(slope*x / sqrt(2)))``.
    """

    name: ClassVar[str] = "gaussian"
    formula: ClassVar[str] = "scale * slope / sqrt(2*pi) * exp(-(slope*x)**2 / 2)"
    primitive_formula: ClassVar[str] = "scale * 0.5 * (1 + erf(slope*x / sqrt(2)))"
    slope: float = 2.0

    def derivative(self, x: Tensor) -> Tensor:
        return self.scale * self.slope * _INV_SQRT_2PI * torch.exp(-0.5 * (self.slope * x) ** 2)

    def primitive(self, x: Tensor) -> Tensor:
        return self.scale * 0.5 * (1.0 + torch.erf(self._u(x) / _SQRT2))

    @property
    def area(self) -> float:
        return self.scale

    @property
    def peak(self) -> float:
        return self.scale * self.slope * _INV_SQRT_2PI


@register_surrogate
@dataclass(frozen=True, repr=False)
class PiecewiseQuadratic(SurrogateGradient):
    r"""Piecewise quadratic (Epanechnikov kernel) on :math:`|x| < 1/\beta`.

    ``g = scale * 0.75 * slope * maximum(0, 1 - (slope*x)**2)``; area :math:`s`, peak :math:`3s\beta/4`; the
    primitive is a cubic smoothstep. (SpikingJelly's ``PiecewiseQuadratic`` derivative is the triangle, registered
    here once, as ``triangular``.)

    ``P = scale * (0.5 + 0.75*c - 0.25*c**3)`` with ``c = clip(slope*x, -1, 1)``.
    """

    name: ClassVar[str] = "piecewise_quadratic"
    formula: ClassVar[str] = "scale * 0.75 * slope * maximum(0, 1 - (slope*x)**2)"
    primitive_formula: ClassVar[str] = "scale * (0.5 + 0.75*c - 0.25*c**3)"
    slope: float = 1.0

    def derivative(self, x: Tensor) -> Tensor:
        c = (self.slope * x).clamp(-1.0, 1.0)
        return self.scale * 0.75 * self.slope * (1.0 - c * c)

    def primitive(self, x: Tensor) -> Tensor:
        c = (self.slope * x).clamp(-1.0, 1.0)
        return self.scale * (0.5 + 0.75 * c - 0.25 * c**3)

    @property
    def area(self) -> float:
        return self.scale

    @property
    def peak(self) -> float:
        return 0.75 * self.scale * self.slope

    @property
    def kinks(self) -> tuple[float, ...]:
        return (-1.0 / self.slope, 1.0 / self.slope)


@register_surrogate
@dataclass(frozen=True, repr=False)
class SoftSign(SurrogateGradient):
    r"""Algebraic soft sign :math:`u/\sqrt{1+u^2}` as the step; tails :math:`\propto |x|^{-3}`.

    ``g = scale * (slope/2) * (1 + (slope*x)**2)**-1.5``; area :math:`s`, peak :math:`s\beta/2`.
    (The rational soft sign :math:`u/(1+|u|)` of SpikingJelly's ``SoftSign`` is ``superspike`` at ``scale=0.5``,
    so it is not registered under a second name.) Uses ``hypot`` so :math:`u^2` never overflows.

    ``P = scale * 0.5 * (1 + slope*x / sqrt(1 + (slope*x)**2))``.
    """

    name: ClassVar[str] = "soft_sign"
    formula: ClassVar[str] = "scale * (slope/2) * (1 + (slope*x)**2)**-1.5"
    primitive_formula: ClassVar[str] = "scale * 0.5 * (1 + slope*x / sqrt(1 + (slope*x)**2))"
    slope: float = 2.0

    def derivative(self, x: Tensor) -> Tensor:
        return self.scale * (self.slope / 2.0) * torch.hypot(self.slope * x, torch.ones_like(x)) ** -3

    def primitive(self, x: Tensor) -> Tensor:
        u = self._u(x)
        return self.scale * 0.5 * (1.0 + u / torch.hypot(u, torch.ones_like(u)))

    @property
    def area(self) -> float:
        return self.scale

    @property
    def peak(self) -> float:
        return self.scale * self.slope / 2.0


@register_surrogate
@dataclass(frozen=True, repr=False)
class StraightThrough(SurrogateGradient):
    r"""Saturated straight-through estimator (Hubara et al. 2016), peak-normalised: :math:`s` on :math:`|x|\le 1/\beta`.

    ``g = scale * (abs(slope*x) <= 1)``; area :math:`2s/\beta`, peak :math:`s`. As :math:`\beta\to 0` it becomes
    the plain straight-through estimator :math:`g \equiv s`. Differs from ``rectangular`` (area-normalised box) in how
    it scales with the slope, as ``fast_sigmoid`` differs from ``superspike``.

    ``P = scale * (clip(slope*x, -1, 1) + 1) / slope``.
    """

    name: ClassVar[str] = "straight_through"
    formula: ClassVar[str] = "scale * (abs(slope*x) <= 1)"
    primitive_formula: ClassVar[str] = "scale * (clip(slope*x, -1, 1) + 1) / slope"
    slope: float = 1.0

    def derivative(self, x: Tensor) -> Tensor:
        return self.scale * ((self.slope * x).abs() <= 1.0).to(x.dtype)

    def primitive(self, x: Tensor) -> Tensor:
        return self.scale * ((self.slope * x).clamp(-1.0, 1.0) + 1.0) / self.slope

    @property
    def area(self) -> float:
        return 2.0 * self.scale / self.slope

    @property
    def peak(self) -> float:
        return self.scale

    @property
    def kinks(self) -> tuple[float, ...]:
        return (-1.0 / self.slope, 1.0 / self.slope)


@register_surrogate
@dataclass(frozen=True, repr=False)
class QPseudoSpike(SurrogateGradient):
    r"""q-PseudoSpike, heavy-tailed with tunable tail index :math:`\alpha` (Herranz-Celotti & Rouat 2024).

    ``g = scale * slope * (1 + 2*abs(slope*x)/(tail - 1))**-tail``; area :math:`s`, peak :math:`s\beta`, tails
    :math:`\propto |x|^{-\alpha}` (``tail`` :math:`=\alpha > 1`; smaller is heavier). ``tail=2`` equals
    ``superspike`` with slope :math:`2\beta` and scale :math:`s/2`; the default 1.5 is heavier than any other shape.

    ``P = scale * where(x < 0, w/2, 1 - w/2)`` with ``w = (1 + 2*abs(slope*x)/(tail - 1))**(1 - tail)``.
    """

    name: ClassVar[str] = "q_pseudo"
    formula: ClassVar[str] = "scale * slope * (1 + 2*abs(slope*x)/(tail - 1))**-tail"
    primitive_formula: ClassVar[str] = "scale * where(x < 0, w/2, 1 - w/2)"
    slope: float = 1.0
    tail: float = 1.5

    def _validate(self) -> None:
        if self.tail <= 1.0:
            raise ValueError(f"{self.name}: tail must be > 1 (the area is infinite otherwise), got {self.tail!r}")

    def derivative(self, x: Tensor) -> Tensor:
        base = 1.0 + 2.0 * (self.slope * x).abs() / (self.tail - 1.0)
        return self.scale * self.slope * base ** (-self.tail)

    def primitive(self, x: Tensor) -> Tensor:
        u = self._u(x)
        w = (1.0 + 2.0 * u.abs() / (self.tail - 1.0)) ** (1.0 - self.tail)
        return self.scale * torch.where(u < 0, w / 2.0, 1.0 - w / 2.0)

    @property
    def area(self) -> float:
        return self.scale

    @property
    def peak(self) -> float:
        return self.scale * self.slope


@register_surrogate
@dataclass(frozen=True, repr=False)
class MultiGaussian(SurrogateGradient):
    r"""Multi-Gaussian with negative side lobes (Yin, Corradi & Bohté 2021), :math:`h = 0.15`, width ratio 6.

    With :math:`u = \beta x` and the standard normal density :math:`\varphi`:
    ``g = scale * slope * ((1 + h)*phi(slope*x) - (h/6)*(phi((slope*x - 1)/6) + phi((slope*x + 1)/6)))``;
    area :math:`s(1-h)`, peak :math:`g(0)`. Not monotone: the step overshoots slightly on both sides.

    ``P = scale * ((1 + h)*Phi(slope*x) - h*Phi((slope*x - 1)/6) - h*Phi((slope*x + 1)/6))`` with
    :math:`\Phi` the standard normal CDF.
    """

    name: ClassVar[str] = "multi_gaussian"
    formula: ClassVar[str] = (
        "scale * slope * ((1 + h)*phi(slope*x) - (h/6)*(phi((slope*x - 1)/6) + phi((slope*x + 1)/6)))"
    )
    primitive_formula: ClassVar[str] = (
        "scale * ((1 + h)*Phi(slope*x) - h*Phi((slope*x - 1)/6) - h*Phi((slope*x + 1)/6))"
    )
    h: ClassVar[float] = 0.15
    width_ratio: ClassVar[float] = 6.0
    slope: float = 2.0

    def derivative(self, x: Tensor) -> Tensor:
        u = self.slope * x
        r = self.width_ratio

        def phi(v: Tensor) -> Tensor:
            return _INV_SQRT_2PI * torch.exp(-0.5 * v * v)

        lobes = phi((u - 1.0) / r) + phi((u + 1.0) / r)
        return self.scale * self.slope * ((1.0 + self.h) * phi(u) - (self.h / r) * lobes)

    def primitive(self, x: Tensor) -> Tensor:
        u = self._u(x)
        r = self.width_ratio

        def cdf(v: Tensor) -> Tensor:
            return 0.5 * (1.0 + torch.erf(v / _SQRT2))

        return self.scale * ((1.0 + self.h) * cdf(u) - self.h * (cdf((u - 1.0) / r) + cdf((u + 1.0) / r)))

    @property
    def area(self) -> float:
        return self.scale * (1.0 - self.h)

    @property
    def peak(self) -> float:
        r = self.width_ratio
        lobe = _INV_SQRT_2PI * math.exp(-0.5 / r**2)
        return self.scale * self.slope * ((1.0 + self.h) * _INV_SQRT_2PI - (2.0 * self.h / r) * lobe)


class FastSigmoid(torch.autograd.Function):
    r"""The seed's spike function: Heaviside forward, fast-sigmoid backward :math:`1/(\beta|x|+1)^2`.

    ``spike_function = FastSigmoid.apply``; call as ``spike_function(x)`` (slope 25, snnTorch's default) or
    ``spike_function(x, slope)``. Equivalent to ``FastSigmoidShape(slope).spike(x)``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, slope: float = 25.0) -> Tensor:
        return heaviside(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.slope = float(inputs[1]) if len(inputs) > 1 else 25.0

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        grad = grad_output / (ctx.slope * x.abs() + 1.0) ** 2
        return (grad,) + (None,) * (ctx.needs_input_grad.__len__() - 1)


spike_function = FastSigmoid.apply
