r"""Verification of surrogate spike functions on a grid of membrane offsets :math:`x` (DESIGN §5).

For a spike function ``spike_fn`` (Heaviside forward, surrogate backward) and its declared pseudo-derivative
``surrogate_fn`` = :math:`g`, three comparisons are made on an even grid over ``x_range`` (even, so that a
symmetric range never contains the kink at :math:`x = 0`):

0. **implementation error** -- the gradient ``spike_fn``'s backward actually produces (autograd) vs :math:`g`.
   Catches backwards that ignore their slope, return zeros or drift from their formula, for evoexp shapes and for
   foreign callables (snnTorch, Norse, SpikingJelly) alike. This is the verdict.
a. **consistency** (when a primitive :math:`P` is known) -- :math:`g` vs
   :math:`(P(x+h_c) - P(x-h_c))/2h_c`; must be at rounding level (~1e-8).
b. **approximation error** -- :math:`g` vs the central difference of the step itself,
   :math:`(H(x+h) - H(x-h))/2h` with :math:`H` = ``spike_fn``'s forward: L1, L2 and max distance (how far the
   surrogate is from the delta it replaces at resolution :math:`h`).

Plus the area :math:`\int g`, the peak :math:`\max g` and (with a primitive) :math:`\int |P - H|`, all over
``x_range`` by the trapezoidal rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from evoexp.verification.results import Result

__all__ = ["SurrogateVerificationResult", "sweep_surrogates", "tidy_rows", "verify_surrogate_gradient"]

SpikeFn = Callable[[Tensor], Tensor]


@dataclass
class SurrogateVerificationResult(Result):
    r"""Outcome of :func:`verify_surrogate_gradient`.

    Attributes:
        name: Label of the spike function (e.g. ``"fast_sigmoid"``).
        slope: Slope it was built with, when given (informational).
        x_range: Grid bounds.
        n_points: Grid size.
        h: Step of the spike function's central difference (approximation error).
        consistency_h: Step of the primitive's central difference.
        atol: Absolute tolerance of the implementation check.
        rtol: Relative tolerance of the implementation check.
        consistency_tol: Tolerance of the consistency check, relative to ``max(1, peak)``.
        implementation_max_abs_error: Max :math:`|\text{autograd} - g|`.
        implementation_max_rel_error: Max :math:`|\text{autograd} - g| / \max(|g|, |\text{autograd}|, atol)`.
        implementation_worst_x: Grid point of the largest implementation violation.
        implementation_ok: Autograd matches :math:`g` within ``atol + rtol|g|`` everywhere.
        forward_is_step: The forward equals :math:`\mathbb{1}[x > 0]` on the grid.
        consistency_max_abs_error: Max :math:`|g - \Delta P / 2h_c|` (``nan`` without a primitive).
        consistency_ok: Within ``consistency_tol`` (``None`` without a primitive).
        approx_l1: :math:`\int |g - \Delta H/2h|`.
        approx_l2: :math:`(\int (g - \Delta H/2h)^2)^{1/2}`.
        approx_max: :math:`\max |g - \Delta H/2h|` on the grid.
        area: :math:`\int g` over ``x_range``.
        peak: :math:`\max g` on the grid.
        primitive_step_l1: :math:`\int |P - H|` over ``x_range`` (``nan`` without a primitive).
        warnings: Notes such as a non-step forward.
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

    @property
    def passed(self) -> bool:
        """Implementation matches the declared derivative and (when checked) the primitive is consistent."""
        return self.implementation_ok and self.consistency_ok is not False

    @property
    def message(self) -> str:
        """One-line verdict with the key numbers."""
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"surrogate '{self.name}' (slope={self.slope}) {verdict}: implementation max abs error "
            f"{self.implementation_max_abs_error:.3g} (worst at x={self.implementation_worst_x:.4g}), consistency "
            f"{self.consistency_max_abs_error:.3g}, L1 to (H(x+h)-H(x-h))/2h {self.approx_l1:.4g} (h={self.h:g}), "
            f"area {self.area:.4g}, peak {self.peak:.4g}"
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
        }
        return {k: v for k, v in out.items() if not math.isnan(v)}

    def row(self) -> dict[str, Any]:
        """A tidy row (one result) for DataFrames and tables."""
        return {
            "surrogate": self.name,
            "slope": self.slope,
            "passed": self.passed,
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


def _as_tensor(values: Any, like: Tensor) -> Tensor:
    out = torch.as_tensor(values)
    return out.to(like.dtype).expand_as(like) if out.shape != like.shape else out.to(like.dtype)


def verify_surrogate_gradient(
    spike_fn: SpikeFn,
    surrogate_fn: SpikeFn,
    *,
    primitive: SpikeFn | None = None,
    x_range: tuple[float, float] = (-4.0, 4.0),
    n_points: int = 8000,
    h: float = 0.05,
    consistency_h: float = 1e-6,
    atol: float = 1e-10,
    rtol: float = 1e-8,
    consistency_tol: float = 1e-7,
    slope: float | None = None,
    name: str | None = None,
) -> SurrogateVerificationResult:
    r"""Check a spike function's backward against its declared derivative, and measure the derivative's quality.

    Args:
        spike_fn: Elementwise spike function (forward ~ step, backward = surrogate), e.g. ``shape.spike`` or
            ``snntorch.surrogate.fast_sigmoid(slope=25)``.
        surrogate_fn: The derivative :math:`g` the backward is documented to produce.
        primitive: :math:`P` with :math:`P' = g` when known (enables the consistency check and the primitive's
            distance to the step).
        x_range: Grid bounds ``(low, high)``; ``low < high``.
        n_points: Grid size (>= 4); an even size keeps a symmetric grid off :math:`x=0`.
        h: Step of the spike function's central difference :math:`(H(x+h)-H(x-h))/2h`.
        consistency_h: Step of the primitive's central difference.
        atol: Absolute tolerance, autograd vs :math:`g`.
        rtol: Relative tolerance, autograd vs :math:`g`.
        consistency_tol: Allowed :math:`\max|g - \Delta P/2h_c|`, relative to :math:`\max(1, \text{peak})`.
        slope: Slope the functions were built with (recorded only).
        name: Label (default: ``spike_fn``'s name).

    Returns:
        A :class:`SurrogateVerificationResult`; ``passed`` is the implementation (and consistency) verdict.

    Raises:
        ValueError: Bad grid, steps or tolerances, or functions that are not elementwise.
    """
    low, high = (float(v) for v in x_range)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"x_range must be finite (low, high) with low < high, got {x_range!r}")
    if not (isinstance(n_points, int) and n_points >= 4):
        raise ValueError(f"n_points must be an integer >= 4, got {n_points!r}")
    h = _positive("h", h)
    consistency_h = _positive("consistency_h", consistency_h)
    atol = _positive("atol", atol)
    rtol = _positive("rtol", rtol)
    consistency_tol = _positive("consistency_tol", consistency_tol)
    label = name or getattr(spike_fn, "__qualname__", None) or type(spike_fn).__name__

    x = torch.linspace(low, high, n_points, dtype=torch.float64)
    warnings: list[str] = []

    # (0) implementation: autograd through spike_fn vs the declared derivative.
    x_req = x.clone().requires_grad_(True)
    out = spike_fn(x_req)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        raise ValueError("spike_fn must be elementwise: it returned a different shape than its input")
    (autograd,) = torch.autograd.grad(out.sum(), x_req, allow_unused=True)
    autograd = torch.zeros_like(x) if autograd is None else autograd.detach().to(torch.float64)
    with torch.no_grad():
        g = _as_tensor(surrogate_fn(x), x)
        forward = out.detach().to(torch.float64)
        forward_is_step = bool(torch.equal(forward, (x > 0).to(torch.float64)))
        if not forward_is_step:
            warnings.append("spike_fn's forward is not the step 1[x > 0] on the grid")
        impl_err = (autograd - g).abs()
        impl_rel = impl_err / torch.maximum(torch.maximum(g.abs(), autograd.abs()), torch.tensor(atol))
        impl_ratio = impl_err / (atol + rtol * g.abs())
        impl_ratio = torch.where(torch.isnan(impl_ratio), torch.full_like(impl_ratio, math.inf), impl_ratio)
        worst = int(torch.argmax(impl_ratio))
        implementation_ok = bool((impl_err <= atol + rtol * g.abs()).all())

        peak = float(g.max())
        area = float(torch.trapezoid(g, x))

        # (a) consistency of g with its primitive.
        if primitive is not None:
            p_plus = _as_tensor(primitive(x + consistency_h), x)
            p_minus = _as_tensor(primitive(x - consistency_h), x)
            consistency = float(((p_plus - p_minus) / (2 * consistency_h) - g).abs().max())
            consistency_ok: bool | None = consistency <= consistency_tol * max(1.0, peak)
            step = (x > 0).to(torch.float64)
            primitive_step_l1 = float(torch.trapezoid((_as_tensor(primitive(x), x) - step).abs(), x))
        else:
            consistency, consistency_ok, primitive_step_l1 = math.nan, None, math.nan

        # (b) approximation error vs the spike function's own central difference.
        delta = (spike_fn(x + h).detach().to(torch.float64) - spike_fn(x - h).detach().to(torch.float64)) / (2 * h)
        diff = g - delta
        approx_l1 = float(torch.trapezoid(diff.abs(), x))
        approx_l2 = math.sqrt(float(torch.trapezoid(diff**2, x)))
        approx_max = float(diff.abs().max())
    if (high - low) / (n_points - 1) > h / 4:
        warnings.append(f"grid spacing {(high - low) / (n_points - 1):.3g} is coarse relative to h={h:g}")

    return SurrogateVerificationResult(
        name=label,
        slope=slope,
        x_range=(low, high),
        n_points=n_points,
        h=h,
        consistency_h=consistency_h,
        atol=atol,
        rtol=rtol,
        consistency_tol=consistency_tol,
        implementation_max_abs_error=float(impl_err.max()),
        implementation_max_rel_error=float(impl_rel.max()),
        implementation_worst_x=float(x[worst]),
        implementation_ok=implementation_ok,
        forward_is_step=forward_is_step,
        consistency_max_abs_error=consistency,
        consistency_ok=consistency_ok,
        approx_l1=approx_l1,
        approx_l2=approx_l2,
        approx_max=approx_max,
        area=area,
        peak=peak,
        primitive_step_l1=primitive_step_l1,
        warnings=warnings,
    )


def sweep_surrogates(
    slopes: Sequence[float],
    *,
    names: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[SurrogateVerificationResult]:
    r"""Verify every registered surrogate shape (or ``names``) at every slope.

    Args:
        slopes: Slopes :math:`\beta` to build each shape with.
        names: Registry names (default: ``evoexp.surrogate.available_surrogates()``).
        **kwargs: Forwarded to :func:`verify_surrogate_gradient` (``x_range``, ``h``, tolerances, ...).

    Returns:
        One result per (shape, slope), shapes in the given order, slopes in the given order.

    Raises:
        ValueError: ``slopes`` is empty or a name is unknown.
    """
    from evoexp.surrogate import available_surrogates, get_surrogate

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
                    **kwargs,
                )
            )
    return results


def tidy_rows(results: Iterable[SurrogateVerificationResult]) -> list[dict[str, Any]]:
    """One flat dict per result (``pandas.DataFrame(tidy_rows(results))`` gives a tidy table)."""
    return [r.row() for r in results]
