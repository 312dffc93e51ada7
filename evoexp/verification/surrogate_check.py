r"""Verification of surrogate spike functions on a grid of membrane offsets :math:`x` (docs/design/verification.md).

For a spike function ``spike_fn`` (Heaviside forward, surrogate backward) and its declared pseudo-derivative
``surrogate_fn`` = :math:`g`, the check runs on a grid over ``x_range`` in the requested dtype: an even linspace
plus the explicit points :math:`0`, :math:`-0.0`, the ends, and the kinks or edges the caller declares.

0. **implementation** -- the gradient ``spike_fn``'s backward actually produces (autograd, in ``dtype``) vs :math:`g`
   evaluated in float64 at the same points. Catches backwards that ignore their slope, return zeros or drift from
   their formula, in evoexp and in any other library. This is the verdict.
a. **consistency** (when a primitive :math:`P` is known) -- :math:`g` vs the difference quotient of :math:`P` in
   float64 with step :math:`h_c`: central inside the range, one-sided (second order) within :math:`h_c` of an end,
   and at 0 and declared kinks the better of the two one-sided quotients, so a kink is never a failure.
b. **approximation error** -- :math:`g` vs the difference quotient of the step itself,
   :math:`(H(x+h) - H(x-h))/2h` with :math:`H` = ``spike_fn``'s forward, the window shrunk at the ends: L1, L2 and
   max distance (how far the surrogate is from the delta it replaces at resolution :math:`h`).

No function is evaluated outside ``x_range``, except at the explicit ``extremes`` (default :math:`\pm10^4`,
:math:`\pm10^{30}`, :math:`\pm\infty`), where a NaN/Inf or sign-flipped backward, or a non-step forward, is a
numerical defect. Given a factory ``slope -> spike_fn``, the backward is also computed at several slopes and a
backward that does not change with the slope is flagged. Every failure is a :class:`SurrogateFinding` of one kind:

========================  ===============================================================================
``formula``               the backward is not the declared derivative (with the fitted factor when it is a
                          constant multiple of it)
``ignored_slope``         the backward is the same at two different slopes
``numerical``             NaN/Inf or a flipped sign in the backward
``edge``                  a difference only at 0 or at a declared kink/edge (e.g. ``<`` vs ``<=``, H(0))
``precision``             a difference within 16 float32 roundings (a float32 constant or float32 arithmetic)
``forward``               the forward is not the step :math:`\mathbb{1}[x > 0]` (with the H(0) convention)
``consistency``           the primitive's derivative is not the declared derivative
``raised``                ``spike_fn``, its backward, ``surrogate_fn``, ``primitive`` or the factory raised
``not_differentiable``    ``spike_fn``'s output has no backward at all
========================  ===============================================================================

Plus the area :math:`\int g`, the peak :math:`\max g` and (with a primitive) :math:`\int |P - H|`, all over
``x_range`` by the trapezoidal rule.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from evoexp.arguments import checked_by
from evoexp.data.dataset import check_fits_in_memory
from evoexp.results import Result
from evoexp.surrogate import available_surrogates, get_surrogate

__all__ = [
    "DEFAULT_EXTREMES",
    "FINITE_EXTREMES",
    "SurrogateFinding",
    "SurrogateVerificationResult",
    "check_surrogate_arguments",
    "describe_spike_fn",
    "sweep_surrogates",
    "tidy_rows",
    "verify_surrogate_gradient",
]

SpikeFn = Callable[..., Any]
FindingKind = Literal[
    "formula", "ignored_slope", "numerical", "edge", "precision", "forward", "consistency", "raised",
    "not_differentiable",
]

DEFAULT_EXTREMES: tuple[float, ...] = (-math.inf, -1e30, -1e4, 1e4, 1e30, math.inf)
"""Inputs outside every realistic grid at which the backward must stay finite and keep its sign."""

FINITE_EXTREMES: tuple[float, ...] = tuple(e for e in DEFAULT_EXTREMES if math.isfinite(e))
"""The finite :data:`DEFAULT_EXTREMES`: where a probe of a whole neuron is asked (a membrane at ±inf is a diverged
network, not an input of its spike function; see :class:`~evoexp.verification.spiking.SpikeProbe`)."""

_DEFAULT_TOLERANCES = {torch.float64: (1e-10, 1e-8), torch.float32: (1e-6, 1e-5)}
# A difference within 16 float32 roundings (~2e-6 relative) is a precision-level difference, in any dtype.
_PRECISION_ULPS = 16.0
_FLOAT32_EPS = torch.finfo(torch.float32).eps
_TINY = 1e-300
_SIDE_ULPS = 8.0
_FIT_TOL = 1e-6
_MAX_WHERE = 5


@dataclass
class SurrogateFinding:
    """One classified failure of :func:`verify_surrogate_gradient`.

    Attributes:
        kind: ``formula``, ``ignored_slope``, ``numerical``, ``edge``, ``precision``, ``forward``, ``consistency``,
            ``raised`` or ``not_differentiable`` (see the module docstring).
        message: One readable sentence with the numbers.
        where: Up to five grid points (or slopes, for ``ignored_slope``) where it occurs.
        max_error: The largest absolute difference involved (``nan`` when none applies).
        factor: For ``formula``/``consistency``: the fitted factor :math:`c` when the tested function is
            :math:`c` times the declared derivative, else ``None``.
    """

    kind: FindingKind
    message: str
    where: list[float] = field(default_factory=list)
    max_error: float = math.nan
    factor: float | None = None


@dataclass
class SurrogateVerificationResult(Result):
    r"""Outcome of :func:`verify_surrogate_gradient`.

    Attributes:
        name: Label of the spike function (e.g. ``"fast_sigmoid"``; by default a readable description).
        slope: Slope it was built with, when given (informational).
        x_range: Grid bounds.
        n_points: Size of the even linspace (the grid adds the explicit points).
        h: Step of the spike function's difference quotient (approximation error).
        consistency_h: Step of the primitive's difference quotient.
        atol: Absolute tolerance of the implementation check.
        rtol: Relative tolerance of the implementation check.
        consistency_tol: Tolerance of the consistency check, relative to ``max(1, peak)``.
        implementation_max_abs_error: Max :math:`|\text{autograd} - g|` over finite points (``nan`` if none).
        implementation_max_rel_error: Max :math:`|\text{autograd} - g| / \max(|g|, |\text{autograd}|, atol)`.
        implementation_worst_x: Grid point of the largest implementation violation.
        implementation_ok: Autograd matches :math:`g` within ``atol + rtol|g|`` everywhere on the grid.
        forward_is_step: The forward equals the step (with ``heaviside_at_zero``) on the grid.
        consistency_max_abs_error: Max :math:`|g - \Delta P / \Delta x|` (``nan`` without a primitive).
        consistency_ok: Within ``consistency_tol`` (``None`` without a primitive).
        approx_l1: :math:`\int |g - \Delta H/\Delta x|`.
        approx_l2: :math:`(\int (g - \Delta H/\Delta x)^2)^{1/2}`.
        approx_max: :math:`\max |g - \Delta H/\Delta x|` on the grid.
        area: :math:`\int g` over ``x_range``.
        peak: :math:`\max g` on the grid.
        primitive_step_l1: :math:`\int |P - H|` over ``x_range`` (``nan`` without a primitive).
        warnings: Notes that are not failures (e.g. a coarse grid).
        dtype: Dtype of the grid and of the spike function's evaluation.
        heaviside_at_zero: The H(0) convention the forward was compared with.
        grid_points: Size of the whole grid (linspace + explicit points inside ``x_range``).
        kinks: The declared kinks/edges that lie on the grid.
        extremes: The extreme inputs probed.
        slopes: The slopes probed through the factory (empty without one).
        fitted_factor: :math:`c` minimising :math:`\|\text{autograd} - c\,g\|` (``nan`` when undefined).
        findings: Every failure, classified; empty when ``passed``.
    """

    check: ClassVar[str] = "surrogate"

    name: str
    slope: float | None
    x_range: tuple[float, float]
    n_points: int
    h: float
    consistency_h: float
    atol: float
    rtol: float
    consistency_tol: float
    implementation_max_abs_error: float
    implementation_max_rel_error: float
    implementation_worst_x: float
    implementation_ok: bool
    forward_is_step: bool
    consistency_max_abs_error: float
    consistency_ok: bool | None
    approx_l1: float
    approx_l2: float
    approx_max: float
    area: float
    peak: float
    primitive_step_l1: float
    warnings: list[str] = field(default_factory=list)
    dtype: str = "torch.float64"
    heaviside_at_zero: float = 0.0
    grid_points: int = 0
    kinks: list[float] = field(default_factory=list)
    extremes: list[float] = field(default_factory=list)
    slopes: list[float] = field(default_factory=list)
    fitted_factor: float = math.nan
    findings: list[SurrogateFinding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No finding: implementation, forward, consistency, extremes and slope dependence are all right."""
        return not self.findings

    @property
    def kinds(self) -> list[str]:
        """The kinds of the findings, in order, without repeats."""
        return list(dict.fromkeys(f.kind for f in self.findings))

    @property
    def message(self) -> str:
        """One-line verdict with the key numbers (and the failure kinds)."""
        verdict = "passed" if self.passed else f"FAILED ({', '.join(self.kinds)})"
        first = f"; {self.findings[0].message}" if self.findings else ""
        return (
            f"surrogate '{self.name}' (slope={self.slope}, {self.dtype.removeprefix('torch.')}) {verdict}: "
            f"implementation max abs error {self.implementation_max_abs_error:.3g} (worst at "
            f"x={self.implementation_worst_x:.4g}), consistency {self.consistency_max_abs_error:.3g}, L1 to "
            f"(H(x+h)-H(x-h))/2h {self.approx_l1:.4g} (h={self.h:g}), area {self.area:.4g}, peak {self.peak:.4g}"
            f"{first}"
        )

    def summary(self) -> dict[str, float]:
        """Flat metrics ``surrogate/...``."""
        out = {
            "surrogate/implementation_error": self.implementation_max_abs_error,
            "surrogate/consistency_error": self.consistency_max_abs_error,
            "surrogate/l1_error": self.approx_l1,
            "surrogate/l2_error": self.approx_l2,
            "surrogate/max_error": self.approx_max,
            "surrogate/area": self.area,
            "surrogate/peak": self.peak,
            "surrogate/primitive_step_l1": self.primitive_step_l1,
            "surrogate/passed": float(self.passed),
            "surrogate/findings": float(len(self.findings)),
        }
        return {k: v for k, v in out.items() if not math.isnan(v)}

    def row(self) -> dict[str, Any]:
        """A tidy row (one result) for DataFrames and tables."""
        return {
            "surrogate": self.name,
            "slope": self.slope,
            "dtype": self.dtype,
            "passed": self.passed,
            "findings": ", ".join(self.kinds),
            "implementation_error": self.implementation_max_abs_error,
            "consistency_error": self.consistency_max_abs_error,
            "l1_error": self.approx_l1,
            "l2_error": self.approx_l2,
            "max_error": self.approx_max,
            "area": self.area,
            "peak": self.peak,
            "primitive_step_l1": self.primitive_step_l1,
            "h": self.h,
        }


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _number(value: Any) -> float:
    """``float(value)`` for numbers and one-element tensors (tensor parameters of foreign functions)."""
    return float(value.detach().reshape(()).item()) if isinstance(value, Tensor) else float(value)


def _format(value: Any) -> str:
    try:
        return f"{_number(value):g}"
    except (TypeError, ValueError, RuntimeError):
        return type(value).__name__


def describe_spike_fn(fn: Any) -> str:
    """A readable label for a spike function: evoexp shapes, closures, modules, partials, ``Function.apply``.

    Examples: ``"fast_sigmoid(slope=25.0, scale=1.0).spike"``, ``"snntorch.surrogate.fast_sigmoid(slope=25)"``,
    ``"PiecewiseQuadratic(alpha=1.0, spiking=True)"``, ``"FastSigmoid.apply"``.
    """
    if isinstance(fn, functools.partial):
        args = [_format(a) for a in fn.args] + [f"{k}={_format(v)}" for k, v in fn.keywords.items()]
        return f"{describe_spike_fn(fn.func)}({', '.join(args)})"
    if isinstance(fn, nn.Module):
        return f"{type(fn).__name__}({fn.extra_repr()})"
    owner = getattr(fn, "__self__", None)
    if owner is not None and not inspect.ismodule(owner):
        owner_label = owner.__qualname__ if isinstance(owner, type) else repr(owner)
        return f"{owner_label}.{getattr(fn, '__name__', 'call')}"
    qualname = getattr(fn, "__qualname__", None)
    if qualname is None:
        return repr(fn)
    module = getattr(fn, "__module__", None) or ""
    if qualname.endswith("<lambda>"):
        code = getattr(fn, "__code__", None)
        where = f" ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})" if code is not None else ""
        return f"lambda{where}"
    if ".<locals>." in qualname and inspect.isfunction(fn):
        outer = qualname.rsplit(".<locals>.", 1)[0].rsplit(".", 1)[-1]
        closure = inspect.getclosurevars(fn).nonlocals
        params = ", ".join(f"{k}={_format(v)}" for k, v in closure.items() if isinstance(v, (int, float, Tensor)))
        return f"{module}.{outer}({params})" if module else f"{outer}({params})"
    return f"{module}.{qualname}" if module and module != "builtins" else qualname


def _call(fn: SpikeFn, x: Tensor) -> Tensor:
    """``fn(x)``; the first element when it returns a tuple or list (e.g. ``(spikes, state)``)."""
    out = fn(x)
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, Tensor):
        raise TypeError(f"returned {type(out).__name__}, not a tensor")
    return out


def _error_text(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _where(x: Tensor, mask: Tensor) -> list[float]:
    return [float(v) for v in x[mask][:_MAX_WHERE].tolist()]


@dataclass
class _Grid:
    """The check's grid in float64 (``x``) and in the spike function's dtype (``xd``), with the explicit points."""

    x: Tensor
    xd: Tensor
    special: Tensor
    rounded: Tensor
    kinks: list[float]
    low: float
    high: float

    @classmethod
    def build(cls, low: float, high: float, n_points: int, kinks: Sequence[float], dtype: torch.dtype) -> _Grid:
        inside = [float(k) for k in kinks if low <= float(k) <= high]
        explicit = [v for v in (0.0, -0.0) if low <= v <= high] + inside
        base = torch.linspace(low, high, n_points, dtype=torch.float64)
        exact = torch.cat([base, torch.tensor(explicit, dtype=torch.float64)])
        points = exact.to(dtype)
        flags = torch.cat([torch.zeros(n_points, dtype=torch.bool), torch.ones(len(explicit), dtype=torch.bool)])
        order = torch.argsort(points.double(), stable=True)
        xd, special = points[order], flags[order]
        rounded = special & (xd.double() != exact[order])
        return cls(x=xd.double(), xd=xd, special=special, rounded=rounded, kinks=inside, low=low, high=high)


_GRIDS = 16
"""float64 arrays of the grid's size that one check holds at once (grid, derivative, backward, forward, differences)."""


def check_surrogate_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`verify_surrogate_gradient` (:func:`evoexp.arguments.checked_by`).

    Checks the grid, the steps, the tolerances, the dtype and the slopes, and that the grid's arrays fit in memory.

    Raises:
        ValueError: The first invalid argument, named first.
    """
    _Settings.validated(
        **{key: args[key] for key in _SETTINGS},
        slopes=args["slopes"] if args["slope_factory"] is not None else None,
        with_factory=args["slope_factory"] is not None,
    )
    check_fits_in_memory(f"n_points={args['n_points']} ({_GRIDS} float64 grids)", _GRIDS * 8.0 * args["n_points"])


@checked_by(check_surrogate_arguments)
def verify_surrogate_gradient(
    spike_fn: SpikeFn,
    surrogate_fn: SpikeFn,
    *,
    primitive: SpikeFn | None = None,
    x_range: tuple[float, float] = (-4.0, 4.0),
    n_points: int = 8000,
    h: float = 0.05,
    consistency_h: float = 1e-6,
    atol: float | None = None,
    rtol: float | None = None,
    consistency_tol: float = 1e-7,
    slope: float | Tensor | None = None,
    name: str | None = None,
    dtype: torch.dtype = torch.float64,
    kinks: Sequence[float] = (),
    heaviside_at_zero: float = 0.0,
    extremes: Sequence[float] = DEFAULT_EXTREMES,
    slope_factory: Callable[[float], SpikeFn] | None = None,
    slopes: Sequence[float] | None = None,
) -> SurrogateVerificationResult:
    r"""Check a spike function's backward against its declared derivative, and measure the derivative's quality.

    A spike function, derivative or primitive that raises, or a forward without a backward, gives a failed result
    with the reason (a finding), never an exception.

    Args:
        spike_fn: Elementwise spike function (forward ~ step, backward = surrogate): ``shape.spike``,
            ``snntorch.surrogate.fast_sigmoid(slope=25)``, a SpikingJelly surrogate module, a
            ``functools.partial``; a tuple/list output is reduced to its first element.
        surrogate_fn: The derivative :math:`g` the backward is documented to produce (evaluated in float64).
        primitive: :math:`P` with :math:`P' = g` when known (consistency check and the primitive's distance to the
            step; evaluated in float64).
        x_range: Grid bounds ``(low, high)``; ``low < high``. Nothing is evaluated outside, except ``extremes``.
        n_points: Size of the even linspace (>= 4); the grid also holds 0, -0.0 and ``kinks`` when inside.
        h: Step of the spike function's difference quotient :math:`(H(x+h)-H(x-h))/2h`.
        consistency_h: Step of the primitive's difference quotient.
        atol: Absolute tolerance, autograd vs :math:`g`, times :math:`\max(1, \text{peak})` (default 1e-10 in
            float64, 1e-6 in float32).
        rtol: Relative tolerance, autograd vs :math:`g` (default 1e-8 in float64, 1e-5 in float32).
        consistency_tol: Allowed :math:`\max|g - \Delta P/\Delta x|`, relative to :math:`\max(1, \text{peak})`.
        slope: Slope the functions were built with (recorded; the centre of the default ``slopes``).
        name: Label (default: :func:`describe_spike_fn` of ``spike_fn``).
        dtype: Floating dtype of the grid and of the spike function's evaluation (``torch.float32`` to check
            what training in float32 computes).
        kinks: Points where :math:`g` jumps or has a kink (edges of a box, ends of a triangle's support); they are
            added to the grid and checked with one-sided differences.
        heaviside_at_zero: The forward's documented value at :math:`x = 0` (0 in evoexp, snnTorch, Norse; 1 in
            SpikingJelly).
        extremes: Extra inputs where the backward must be finite and keep the sign of :math:`g`.
        slope_factory: ``slope -> spike_fn``; the backward must change with the slope.
        slopes: Slopes for the factory (>= 2; default ``slope/2, slope, 2 slope``, or ``0.5, 1, 2``).

    Returns:
        A :class:`SurrogateVerificationResult`; ``passed`` means no finding.

    Raises:
        ValueError: Bad grid, steps, tolerances, dtype or slopes, or a spike function that is not elementwise.
    """
    settings = _Settings.validated(
        x_range=x_range,
        n_points=n_points,
        h=h,
        consistency_h=consistency_h,
        atol=atol,
        rtol=rtol,
        consistency_tol=consistency_tol,
        slope=slope,
        dtype=dtype,
        heaviside_at_zero=heaviside_at_zero,
        slopes=slopes if slope_factory is not None else None,
        with_factory=slope_factory is not None,
    )
    grid = _Grid.build(settings.low, settings.high, n_points, kinks, dtype)
    check = _Check(grid, dtype, settings.atol, settings.rtol, heaviside_at_zero)
    measured = _measure(check, settings, spike_fn, surrogate_fn, primitive, extremes, slope_factory)
    return _result(check, settings, measured, name or describe_spike_fn(spike_fn), extremes)


_SETTINGS = ("x_range", "n_points", "h", "consistency_h", "atol", "rtol", "consistency_tol", "slope", "dtype",
             "heaviside_at_zero")
"""The arguments of :func:`verify_surrogate_gradient` that :meth:`_Settings.validated` checks by name."""


@dataclass(frozen=True)
class _Settings:
    """The validated arguments of :func:`verify_surrogate_gradient`."""

    low: float
    high: float
    n_points: int
    h: float
    consistency_h: float
    atol: float
    rtol: float
    consistency_tol: float
    slope: float | None
    dtype: torch.dtype
    heaviside_at_zero: float
    slopes: list[float]

    @classmethod
    def validated(
        cls,
        *,
        x_range: tuple[float, float],
        n_points: int,
        h: float,
        consistency_h: float,
        atol: float | None,
        rtol: float | None,
        consistency_tol: float,
        slope: float | Tensor | None,
        dtype: torch.dtype,
        heaviside_at_zero: float,
        slopes: Sequence[float] | None,
        with_factory: bool,
    ) -> _Settings:
        """Check every argument (``ValueError`` naming it) and fill in the dtype's default tolerances."""
        low, high = (float(v) for v in x_range)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"x_range must be [low, high], finite, with low < high, got {list(x_range)!r}")
        if not (isinstance(n_points, int) and n_points >= 4):
            raise ValueError(f"n_points must be an integer >= 4, got {n_points!r}")
        if dtype not in _DEFAULT_TOLERANCES:
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
        if not 0.0 <= heaviside_at_zero <= 1.0:
            raise ValueError(f"heaviside_at_zero must be in [0, 1], got {heaviside_at_zero!r}")
        default_atol, default_rtol = _DEFAULT_TOLERANCES[dtype]
        steps = (_positive("h", h), _positive("consistency_h", consistency_h))
        tolerances = (
            default_atol if atol is None else _positive("atol", atol),
            default_rtol if rtol is None else _positive("rtol", rtol),
            _positive("consistency_tol", consistency_tol),
        )
        slope_value = None if slope is None else _number(slope)
        factory_slopes: list[float] = []
        if with_factory:
            centre = slope_value if slope_value is not None else 1.0
            chosen = list(slopes) if slopes is not None else [centre / 2, centre, 2 * centre]
            if len(set(chosen)) < 2 or not all(_number(s) > 0 for s in chosen):
                raise ValueError(f"slopes must hold at least two different numbers > 0, got {chosen!r}")
            factory_slopes = [_number(s) for s in chosen]
        return cls(
            low=low,
            high=high,
            n_points=n_points,
            h=steps[0],
            consistency_h=steps[1],
            atol=tolerances[0],
            rtol=tolerances[1],
            consistency_tol=tolerances[2],
            slope=slope_value,
            dtype=dtype,
            heaviside_at_zero=float(heaviside_at_zero),
            slopes=factory_slopes,
        )


@dataclass
class _Measured:
    """What the comparisons of :func:`verify_surrogate_gradient` measured (besides the check's own records)."""

    g: Tensor | None
    peak: float
    consistency: float = math.nan
    consistency_ok: bool | None = None
    primitive_step_l1: float = math.nan
    approx: tuple[float, float, float] = (math.nan, math.nan, math.nan)


def _measure(
    check: _Check,
    settings: _Settings,
    spike_fn: SpikeFn,
    surrogate_fn: SpikeFn,
    primitive: SpikeFn | None,
    extremes: Sequence[float],
    slope_factory: Callable[[float], SpikeFn] | None,
) -> _Measured:
    """Run the comparisons (0), (a), (b), the extremes and the slope dependence; the findings go to ``check``."""
    g = check.declared(surrogate_fn)
    finite_g = g[torch.isfinite(g)] if g is not None else torch.empty(0)
    measured = _Measured(g, float(finite_g.max()) if finite_g.numel() else math.nan)
    scale = max(1.0, float(finite_g.abs().max())) if finite_g.numel() else 1.0
    check.atol = settings.atol * scale
    autograd, forward = check.backward(spike_fn)
    if autograd is not None and g is not None:
        check.implementation(autograd, g)
    if forward is not None:
        check.forward(forward)
    if primitive is not None and g is not None:
        measured.consistency, measured.consistency_ok, measured.primitive_step_l1 = check.consistency(
            primitive, g, settings.consistency_h, settings.consistency_tol * scale
        )
    if g is not None:
        measured.approx = check.approximation(spike_fn, g, settings.h)
    check.extremes(spike_fn, surrogate_fn, extremes)
    if slope_factory is not None:
        check.slope_dependence(slope_factory, settings.slopes)
    spacing = (settings.high - settings.low) / (settings.n_points - 1)
    if spacing > settings.h / 4:
        check.warnings.append(f"grid spacing {spacing:.3g} is coarse relative to h={settings.h:g}")
    return measured


def _result(
    check: _Check, settings: _Settings, measured: _Measured, label: str, extremes: Sequence[float]
) -> SurrogateVerificationResult:
    x, g = check.grid.x, measured.g
    return SurrogateVerificationResult(
        name=label,
        slope=settings.slope,
        x_range=(settings.low, settings.high),
        n_points=settings.n_points,
        h=settings.h,
        consistency_h=settings.consistency_h,
        atol=check.atol,
        rtol=settings.rtol,
        consistency_tol=settings.consistency_tol,
        implementation_max_abs_error=check.max_abs,
        implementation_max_rel_error=check.max_rel,
        implementation_worst_x=float(x[check.worst]),
        implementation_ok=check.implementation_ok,
        forward_is_step=check.forward_is_step,
        consistency_max_abs_error=measured.consistency,
        consistency_ok=measured.consistency_ok,
        approx_l1=measured.approx[0],
        approx_l2=measured.approx[1],
        approx_max=measured.approx[2],
        area=float(torch.trapezoid(g.nan_to_num(), x)) if g is not None else math.nan,
        peak=measured.peak,
        primitive_step_l1=measured.primitive_step_l1,
        warnings=check.warnings,
        dtype=str(settings.dtype),
        heaviside_at_zero=settings.heaviside_at_zero,
        grid_points=int(x.numel()),
        kinks=check.grid.kinks,
        extremes=[float(e) for e in extremes],
        slopes=settings.slopes,
        fitted_factor=check.factor,
        findings=check.findings,
    )


class _Check:
    """The individual comparisons of :func:`verify_surrogate_gradient`; each appends its findings."""

    def __init__(self, grid: _Grid, dtype: torch.dtype, atol: float, rtol: float, heaviside_at_zero: float) -> None:
        self.grid = grid
        self.dtype = dtype
        self.atol = atol
        self.rtol = rtol
        self.h0 = heaviside_at_zero
        self.findings: list[SurrogateFinding] = []
        self.warnings: list[str] = []
        self.max_abs = math.nan
        self.max_rel = math.nan
        self.worst = 0
        self.implementation_ok = False
        self.forward_is_step = False
        self.factor = math.nan
        self.side_values: tuple[Tensor, Tensor] | None = None

    def _raised(self, what: str, error: BaseException) -> None:
        self.findings.append(SurrogateFinding("raised", f"{what} raised {_error_text(error)}"))

    def _evaluate(self, what: str, fn: SpikeFn, x: Tensor) -> Tensor | None:
        """``fn(x)`` in float64 without grad, shaped like ``x``; ``None`` (and a finding) when it raises."""
        try:
            with torch.no_grad():
                out = torch.as_tensor(_call(fn, x))
        except Exception as error:  # a foreign function's failure becomes a finding, whatever its type
            self._raised(what, error)
            return None
        return out.to(torch.float64).expand_as(x) if out.shape != x.shape else out.to(torch.float64)

    def declared(self, surrogate_fn: SpikeFn) -> Tensor | None:
        """:math:`g` on the grid (float64); below float64 also just left and right of each point (``side_values``)."""
        what = "surrogate_fn (the declared derivative)"
        g = self._evaluate(what, surrogate_fn, self.grid.x)
        if g is not None and self.dtype != torch.float64:
            delta = _SIDE_ULPS * torch.finfo(self.dtype).eps * self.grid.x.abs()
            sides = self._evaluate(what, surrogate_fn, torch.stack([self.grid.x - delta, self.grid.x + delta]))
            self.side_values = None if sides is None else (sides[0], sides[1])
        return g

    def backward(self, spike_fn: SpikeFn) -> tuple[Tensor | None, Tensor | None]:
        """Autograd of ``spike_fn`` on the grid and its forward (float64), or ``None`` with a finding."""
        x_req = self.grid.xd.clone().requires_grad_(True)
        try:
            out = _call(spike_fn, x_req)
        except Exception as error:
            self._raised("spike_fn", error)
            return None, None
        if out.shape != x_req.shape:
            raise ValueError("spike_fn must be elementwise: it returned a different shape than its input")
        forward = out.detach().to(torch.float64)
        if not out.requires_grad:
            self.findings.append(SurrogateFinding(
                "not_differentiable", "spike_fn's output has no backward (it does not require grad): no surrogate "
                                      "gradient to check"))
            return None, forward
        try:
            (grad,) = torch.autograd.grad(out.sum(), x_req, allow_unused=True)
        except Exception as error:
            self._raised("spike_fn's backward", error)
            return None, forward
        autograd = torch.zeros_like(self.grid.x) if grad is None else grad.detach().to(torch.float64)
        return autograd, forward

    def implementation(self, autograd: Tensor, g: Tensor) -> None:
        x, special = self.grid.x, self.grid.special
        finite = torch.isfinite(autograd) & torch.isfinite(g)
        bad_numbers = torch.isfinite(g) & ~torch.isfinite(autograd)
        if bad_numbers.any():
            count = int(bad_numbers.sum())
            where = (f"at x = {_listing(x[bad_numbers])} where the declared derivative is {_listing(g[bad_numbers])}"
                     if count <= 3 else f"at {count} grid points from x = {float(x[bad_numbers].min()):.4g} to "
                                        f"{float(x[bad_numbers].max()):.4g}, where the declared derivative is finite")
            self.findings.append(SurrogateFinding(
                "numerical", f"the backward is {_listing(autograd[bad_numbers][:1])} {where}", _where(x, bad_numbers)))
        err = torch.where(finite, (autograd - g).abs(), torch.zeros_like(g))
        if self.side_values is not None:
            # At a kink that the dtype cannot represent, rounding decides on which side of it the backward lands.
            for side in self.side_values:
                usable = self.grid.rounded & torch.isfinite(side)
                err = torch.where(usable, torch.minimum(err, (autograd - side).abs()), err)
        bound = self.atol + self.rtol * g.abs()
        violation = finite & (err > bound)
        ratio = torch.where(bad_numbers, torch.full_like(err, math.inf), err / bound)
        self.worst = int(torch.argmax(ratio))
        self.max_abs = float(err.max()) if finite.any() else math.nan
        denominator = torch.maximum(torch.maximum(g.abs(), autograd.abs()), torch.tensor(self.atol))
        self.max_rel = float(torch.where(finite, err / denominator, torch.zeros_like(err)).max())
        regular = finite & ~special
        self.factor = _fit_factor(autograd[regular], g[regular])
        self.implementation_ok = not bool(violation.any()) and not bool(bad_numbers.any())
        if not violation.any():
            return
        ulp = _FLOAT32_EPS * torch.maximum(g.abs(), autograd.abs())
        rounding = violation & (err <= _PRECISION_ULPS * ulp + _TINY)
        real = violation & ~rounding
        on_grid, at_special = real & ~special, real & special
        if on_grid.any():
            self.findings.append(self._classify(autograd, g, on_grid, "the backward", "formula"))
        elif at_special.any():
            points = ", ".join(f"g({v:g}) = {float(g[i]):.6g} but the backward gives {float(autograd[i]):.6g}"
                               for i, v in zip(at_special.nonzero().flatten().tolist(), x[at_special].tolist()))
            self.findings.append(SurrogateFinding(
                "edge", f"at the explicit points only: {points}", _where(x, at_special),
                float(err[at_special].max())))
        if rounding.any() and not on_grid.any():
            worst = float((err[rounding] / ulp[rounding].clamp_min(_TINY)).max())
            self.findings.append(SurrogateFinding(
                "precision", f"the backward differs from the declared derivative by up to "
                             f"{float(err[rounding].max()):.3g} at {int(rounding.sum())} points ({worst:.3g} float32 "
                             "units of rounding): a precision-level difference (float32 rounding or a float32 "
                             "constant), not a formula difference", _where(x, rounding), float(err[rounding].max())))

    def _classify(self, tested: Tensor, g: Tensor, mask: Tensor, what: str, kind: FindingKind) -> SurrogateFinding:
        """A ``kind`` finding for the points ``mask``, with the fitted factor when ``tested`` is a multiple of ``g``."""
        x = self.grid.x
        err = (tested - g).abs()
        max_err = float(err[mask].max())
        regular = torch.isfinite(tested) & torch.isfinite(g) & ~self.grid.special
        factor = _fit_factor(tested[regular], g[regular])
        fits = math.isfinite(factor) and bool(
            ((tested[regular] - factor * g[regular]).abs() <= _FIT_TOL * tested[regular].abs().max()
             + self.atol).all())
        worst_x = float(x[mask][torch.argmax(err[mask])])
        if fits and factor == 0.0:
            text = f"{what} is zero where the declared derivative is not (max |g| {float(g[mask].abs().max()):.4g})"
        elif fits and abs(factor - 1.0) > _FIT_TOL:
            text = f"{what} is {factor:.6g} × the declared derivative (max abs error {max_err:.4g})"
        else:
            text = f"{what} differs from the declared derivative by up to {max_err:.4g} (worst at x={worst_x:.4g})"
        return SurrogateFinding(kind, text, _where(x, mask), max_err, factor if fits and "×" in text else None)

    def forward(self, forward: Tensor) -> None:
        x, xd = self.grid.x, self.grid.xd
        step = (xd > 0).to(torch.float64) + self.h0 * (xd == 0).to(torch.float64)
        wrong = ~torch.isclose(forward, step, rtol=0.0, atol=0.0) | ~torch.isfinite(forward)
        self.forward_is_step = not bool(wrong.any())
        at_zero, elsewhere = wrong & (xd == 0), wrong & (xd != 0)
        if elsewhere.any():
            self.findings.append(SurrogateFinding(
                "forward", f"the forward is not the step 1[x > 0] at {int(elsewhere.sum())} grid points (e.g. "
                           f"f({float(x[elsewhere][0]):.4g}) = {float(forward[elsewhere][0]):.4g})",
                _where(x, elsewhere)))
        if at_zero.any():
            value = float(forward[at_zero][0])
            self.findings.append(SurrogateFinding(
                "edge", f"the forward at x = 0 is {value:g}, the H(0) convention checked is {self.h0:g}",
                _where(x, at_zero), abs(value - self.h0)))

    def consistency(self, primitive: SpikeFn, g: Tensor, step: float, tol: float) -> tuple[float, bool, float]:
        r"""Max error of the primitive's difference quotient, the verdict, and :math:`\int |P - H|`."""
        grid, x = self.grid, self.grid.x
        near_low, near_high = x - step < grid.low, x + step > grid.high
        interior = ~(near_low | near_high)
        both = torch.stack([x - 2 * step, x - step, x, x + step, x + 2 * step])
        values = self._evaluate("primitive", primitive, both.clamp(grid.low, grid.high))
        if values is None:
            return math.nan, False, math.nan
        p_m2, p_m1, p_0, p_p1, p_p2 = values
        central = (p_p1 - p_m1) / (2 * step)
        right = (-3 * p_0 + 4 * p_p1 - p_p2) / (2 * step)
        left = (3 * p_0 - 4 * p_m1 + p_m2) / (2 * step)
        quotient = torch.where(interior, central, torch.where(near_low, right, left))
        closer = torch.where((right - g).abs() <= (left - g).abs(), right, left)
        quotient = torch.where(grid.special & interior, closer, quotient)
        err = (quotient - g).abs()
        err = torch.where(torch.isfinite(err), err, torch.full_like(err, math.inf))
        worst = float(err.max())
        ok = worst <= tol
        if not ok:
            mask = err > tol
            finding = self._classify(quotient, g, mask, "the primitive's difference quotient", "consistency")
            self.findings.append(finding)
        step_fn = (grid.xd > 0).to(torch.float64) + self.h0 * (grid.xd == 0).to(torch.float64)
        return worst, ok, float(torch.trapezoid((p_0 - step_fn).abs().nan_to_num(), x))

    def approximation(self, spike_fn: SpikeFn, g: Tensor, h: float) -> tuple[float, float, float]:
        grid = self.grid
        upper = (grid.xd + h).clamp(max=grid.high)
        lower = (grid.xd - h).clamp(min=grid.low)
        f_up = self._evaluate("spike_fn", spike_fn, upper) if not self._spike_raised() else None
        f_low = self._evaluate("spike_fn", spike_fn, lower) if f_up is not None else None
        if f_up is None or f_low is None:
            return math.nan, math.nan, math.nan
        delta = (f_up - f_low) / (upper.double() - lower.double())
        diff = (g - delta).nan_to_num()
        return (float(torch.trapezoid(diff.abs(), grid.x)), math.sqrt(float(torch.trapezoid(diff**2, grid.x))),
                float(diff.abs().max()))

    def _spike_raised(self) -> bool:
        return any(f.kind == "raised" and f.message.startswith("spike_fn ") for f in self.findings)

    def extremes(self, spike_fn: SpikeFn, surrogate_fn: SpikeFn, extremes: Sequence[float]) -> None:
        if not extremes or self._spike_raised():
            return
        xe = torch.tensor([float(e) for e in extremes], dtype=self.dtype, requires_grad=True)
        try:
            out = _call(spike_fn, xe)
            grad = torch.autograd.grad(out.sum(), xe, allow_unused=True)[0] if out.requires_grad else None
        except Exception as error:
            self._raised("spike_fn at the extreme inputs", error)
            return
        values = xe.detach().double()
        forward = out.detach().double()
        bad_forward = ~torch.isfinite(forward) | ((forward != 0) & (forward != 1))
        if bad_forward.any():
            self.findings.append(SurrogateFinding(
                "numerical", f"the forward at x = {_listing(values[bad_forward])} is "
                             f"{_listing(forward[bad_forward])}, not 0 or 1", values[bad_forward].tolist()))
        if grad is None:
            return
        grad = grad.double()
        with torch.no_grad():
            try:
                g = torch.as_tensor(surrogate_fn(values)).double().expand_as(values)
            except Exception:  # the declared derivative need not accept infinities
                g = torch.full_like(values, math.nan)
        nonfinite = ~torch.isfinite(grad)
        flipped = torch.isfinite(grad) & torch.isfinite(g) & (grad * g < 0)
        if nonfinite.any():
            self.findings.append(SurrogateFinding(
                "numerical", f"the backward at x = {_listing(values[nonfinite])} is {_listing(grad[nonfinite])}",
                values[nonfinite].tolist()))
        if flipped.any():
            self.findings.append(SurrogateFinding(
                "numerical", f"the backward at x = {_listing(values[flipped])} is {_listing(grad[flipped])}, the "
                             f"opposite sign of the declared {_listing(g[flipped])}", values[flipped].tolist()))

    def slope_dependence(self, factory: Callable[[float], SpikeFn], slopes: list[float]) -> None:
        grads: list[tuple[float, Tensor]] = []
        for s in slopes:
            try:
                fn = factory(s)
            except Exception as error:
                self._raised(f"slope_factory({s:g})", error)
                return
            autograd, _ = _Check(self.grid, self.dtype, self.atol, self.rtol, self.h0).backward(fn)
            if autograd is not None:
                grads.append((s, autograd))
        for (s1, a1), (s2, a2) in itertools.pairwise(grads):
            finite = torch.isfinite(a1) & torch.isfinite(a2)
            if not finite.any():
                continue
            scale = float(torch.maximum(a1[finite].abs(), a2[finite].abs()).max())
            if scale > 0 and float((a1[finite] - a2[finite]).abs().max()) <= self.rtol * scale:
                self.findings.append(SurrogateFinding(
                    "ignored_slope", f"the backward is the same at slope {s1:g} and {s2:g}: it ignores its slope",
                    [s1, s2]))
                return


def _fit_factor(tested: Tensor, g: Tensor) -> float:
    r"""Least-squares :math:`c` in ``tested ≈ c g`` (``nan`` when :math:`g \equiv 0`)."""
    norm = float((g * g).sum())
    return float((tested * g).sum()) / norm if norm > 0 else math.nan


def _listing(values: Tensor) -> str:
    return ", ".join(f"{v:g}" for v in values.tolist())


def sweep_surrogates(
    slopes: Sequence[float],
    *,
    names: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[SurrogateVerificationResult]:
    r"""Verify every registered surrogate shape (or ``names``) at every slope.

    Each shape's declared kinks are on the grid.

    Args:
        slopes: Slopes :math:`\beta` to build each shape with.
        names: Registry names (default: ``evoexp.surrogate.available_surrogates()``).
        **kwargs: Forwarded to :func:`verify_surrogate_gradient` (``x_range``, ``h``, tolerances, ...).

    Returns:
        One result per (shape, slope), shapes in the given order, slopes in the given order.

    Raises:
        ValueError: ``slopes`` is empty or a name is unknown.
    """
    if not slopes:
        raise ValueError("slopes must contain at least one slope")
    results = []
    for shape_name in list(names) if names is not None else available_surrogates():
        for slope in slopes:
            shape = get_surrogate(shape_name, slope=float(slope))
            results.append(
                verify_surrogate_gradient(
                    shape.spike,
                    shape.derivative,
                    primitive=shape.primitive,
                    slope=float(slope),
                    name=shape_name,
                    kinks=shape.kinks,
                    **kwargs,
                )
            )
    return results


def tidy_rows(results: Iterable[SurrogateVerificationResult]) -> list[dict[str, Any]]:
    """One flat dict per result (``pandas.DataFrame(tidy_rows(results))`` gives a tidy table)."""
    return [r.row() for r in results]
