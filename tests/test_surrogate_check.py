"""Surrogate verification: implementation errors are caught, consistency and approximation numbers are right."""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
import torch
from torch import Tensor

from evoexp.surrogate import FastSigmoid, available_surrogates, get_surrogate
from evoexp.verification.surrogate_check import (
    describe_spike_fn,
    sweep_surrogates,
    tidy_rows,
    verify_surrogate_gradient,
)


def _fast_sigmoid(slope: float) -> Any:
    return lambda x: 1.0 / (slope * x.abs() + 1.0) ** 2


class _FixedSlopeSpike(torch.autograd.Function):
    """Buggy spike function: its backward ignores the slope it was given and always uses 25."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, slope: float) -> Tensor:
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad / (25.0 * x.abs() + 1.0) ** 2, None


class _ZeroGradSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return torch.zeros_like(grad)


@pytest.mark.parametrize("slope", [1.0, 10.0])
def test_snntorch_fast_sigmoid_matches_its_formula(slope: float) -> None:
    surrogate = pytest.importorskip("snntorch.surrogate")
    result = verify_surrogate_gradient(surrogate.fast_sigmoid(slope=slope), _fast_sigmoid(slope), slope=slope)
    assert result.passed and result.implementation_max_abs_error < 1e-12
    assert result.forward_is_step and result.consistency_ok is None and math.isnan(result.consistency_max_abs_error)


def test_snntorch_slope_mismatch_fails() -> None:
    surrogate = pytest.importorskip("snntorch.surrogate")
    result = verify_surrogate_gradient(surrogate.fast_sigmoid(slope=10), _fast_sigmoid(25.0))
    assert result.passed is False and result.implementation_max_abs_error > 0.1


def test_backward_ignoring_slope_fails() -> None:
    ok = verify_surrogate_gradient(lambda x: _FixedSlopeSpike.apply(x, 25.0), _fast_sigmoid(25.0))
    bad = verify_surrogate_gradient(lambda x: _FixedSlopeSpike.apply(x, 5.0), _fast_sigmoid(5.0))
    assert ok.passed and not bad.passed
    assert "FAILED" in bad.message


def test_zero_backward_fails() -> None:
    result = verify_surrogate_gradient(_ZeroGradSpike.apply, _fast_sigmoid(5.0))
    assert not result.implementation_ok
    assert result.implementation_max_abs_error == pytest.approx(
        float(_fast_sigmoid(5.0)(torch.tensor(0.0005))), rel=0.01
    )


def test_inconsistent_primitive_fails() -> None:
    shape = get_surrogate("sigmoid", slope=4.0)
    result = verify_surrogate_gradient(shape.spike, shape.derivative, primitive=lambda x: 1.01 * shape.primitive(x))
    assert result.implementation_ok and result.consistency_ok is False and not result.passed


def test_rectangular_numbers_are_exact() -> None:
    # g = slope on |x| < 1/(2 slope): area 1, peak slope; P - H has L1 = 1/(4 slope).
    slope = 2.0
    shape = get_surrogate("rectangular", slope=slope)
    result = verify_surrogate_gradient(shape.spike, shape.derivative, primitive=shape.primitive, n_points=40000)
    assert result.passed
    assert result.area == pytest.approx(1.0, abs=1e-3)
    assert result.peak == pytest.approx(slope)
    assert result.primitive_step_l1 == pytest.approx(1 / (4 * slope), abs=1e-3)
    # With h = 1/(2 slope) the step's central difference IS the box: zero approximation error.
    same = verify_surrogate_gradient(shape.spike, shape.derivative, h=1 / (2 * slope) + 1e-9, n_points=40000)
    assert same.approx_l1 < 2e-3


def test_approximation_error_shrinks_with_slope() -> None:
    rows = tidy_rows(sweep_surrogates([1.0, 4.0, 16.0], names=["gaussian"], h=0.01, n_points=16000))
    l1 = [row["l1_error"] for row in rows]
    assert l1[0] > l1[1] > l1[2]
    assert all(row["passed"] for row in rows)


def test_sweep_covers_every_registered_shape() -> None:
    results = sweep_surrogates([2.0, 20.0], n_points=2000)
    assert [(r.name, r.slope) for r in results] == [(n, s) for n in available_surrogates() for s in (2.0, 20.0)]
    for r in results:
        assert r.passed, r.message
        assert r.consistency_max_abs_error < 1e-7 * max(1.0, r.peak)
    summary = results[0].summary()
    assert {"surrogate/l1_error", "surrogate/area", "surrogate/passed"} <= set(summary)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"x_range": (1.0, -1.0)}, "x_range"), ({"n_points": 2}, "n_points"), ({"h": 0.0}, "h"), ({"atol": -1}, "atol")],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    shape = get_surrogate("fast_sigmoid")
    with pytest.raises(ValueError, match=match):
        verify_surrogate_gradient(shape.spike, shape.derivative, **kwargs)


def test_non_elementwise_spike_fn_rejected() -> None:
    with pytest.raises(ValueError, match="elementwise"):
        verify_surrogate_gradient(lambda x: x.sum(), _fast_sigmoid(1.0))


def test_sweep_needs_slopes() -> None:
    with pytest.raises(ValueError, match="slopes"):
        sweep_surrogates([])


# ---- hardened checks: dtype, extremes, explicit points, range, slope factory, foreign call forms, classification ----


class _ScaledSpike(torch.autograd.Function):
    """Heaviside forward; backward = factor * fast sigmoid (a formula mismatch by a constant factor)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, slope: float, factor: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.slope, ctx.factor = slope, factor
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return ctx.factor * grad / (ctx.slope * x.abs() + 1.0) ** 2, None, None


class _OverflowSpike(torch.autograd.Function):
    """Sigmoid derivative written as snnTorch does, k e^{-kx} / (e^{-kx} + 1)^2: NaN once e^{-kx} overflows."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        e = torch.exp(-5.0 * x)
        return grad * 5.0 * e / (e + 1.0) ** 2


class _SignFlipSpike(torch.autograd.Function):
    """Fast-sigmoid backward that turns negative for |x| > 1e3 (a sign defect only extreme inputs reveal)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        g = 1.0 / (x.abs() + 1.0) ** 2
        return grad * torch.where(x.abs() > 1e3, -g, g)


def _kinds(result: Any) -> list[str]:
    return [f.kind for f in result.findings]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_evoexp_shapes_pass_in_both_dtypes_with_kinks_on_the_grid(dtype: torch.dtype) -> None:
    for name in available_surrogates():
        shape = get_surrogate(name, slope=3.0)
        result = verify_surrogate_gradient(shape.spike, shape.derivative, primitive=shape.primitive,
                                           kinks=shape.kinks, dtype=dtype, n_points=2000)
        assert result.passed, result.message
        assert result.dtype == str(dtype) and result.kinks == list(shape.kinks)
        assert result.grid_points == 2000 + 2 + len(shape.kinks)


def test_explicit_points_are_on_the_grid_and_checked() -> None:
    # A backward that is wrong only at x = 0 exactly (uses < instead of <=) is an edge finding, not a formula one.
    shape = get_surrogate("rectangular", slope=1.0)

    def declared(x: Tensor) -> Tensor:
        return (x.abs() <= 0.5).to(x.dtype)

    result = verify_surrogate_gradient(shape.spike, declared, kinks=shape.kinks)
    assert _kinds(result) == ["edge"]
    assert sorted(result.findings[0].where) == [-0.5, 0.5]
    assert "g(-0.5) = 1 but the backward gives 0" in result.findings[0].message


def test_nothing_is_evaluated_outside_the_range() -> None:
    seen: list[Tensor] = []
    shape = get_surrogate("triangular", slope=2.0)

    def recording(fn: Any) -> Any:
        def wrapped(x: Tensor) -> Tensor:
            seen.append(x.detach().double().flatten())
            return fn(x)
        return wrapped

    result = verify_surrogate_gradient(recording(shape.spike), recording(shape.derivative),
                                       primitive=recording(shape.primitive), x_range=(0.0, 0.5), extremes=(),
                                       kinks=shape.kinks, n_points=500)
    values = torch.cat(seen)
    assert float(values.min()) >= 0.0 and float(values.max()) <= 0.5
    # The kink at the end point 0.5 (the triangle's edge) and the peak at 0 are not consistency failures.
    assert result.passed and result.consistency_ok, result.message


def test_a_kink_inside_the_range_is_not_a_consistency_failure_but_a_wrong_primitive_is() -> None:
    shape = get_surrogate("triangular", slope=4.0)
    ok = verify_surrogate_gradient(shape.spike, shape.derivative, primitive=shape.primitive, kinks=shape.kinks)
    assert ok.passed and ok.consistency_max_abs_error < 1e-8
    bad = verify_surrogate_gradient(shape.spike, shape.derivative, primitive=lambda x: 2 * shape.primitive(x),
                                    kinks=shape.kinks)
    assert _kinds(bad) == ["consistency"] and bad.findings[0].factor == pytest.approx(2.0)


def test_float32_overflow_and_extremes_are_numerical_defects() -> None:
    declared = get_surrogate("sigmoid", slope=5.0).derivative
    f64 = verify_surrogate_gradient(_OverflowSpike.apply, declared)
    assert _kinds(f64) == ["numerical"]  # float64: the grid is fine, but x = -1e4, -1e30, -inf give NaN
    assert f64.findings[0].where[:3] == [-math.inf, -1e30, -1e4]
    f32 = verify_surrogate_gradient(_OverflowSpike.apply, declared, dtype=torch.float32, x_range=(-20.0, 4.0))
    assert _kinds(f32) == ["numerical", "numerical"]
    assert "grid points" in f32.findings[0].message  # exp(5*17.7) overflows float32 inside the grid
    clean = verify_surrogate_gradient(get_surrogate("sigmoid", slope=5.0).spike, declared, dtype=torch.float32,
                                      x_range=(-20.0, 4.0))
    assert clean.passed, clean.message


def test_sign_flip_at_extreme_inputs_is_a_numerical_defect() -> None:
    result = verify_surrogate_gradient(_SignFlipSpike.apply, _fast_sigmoid(1.0))
    assert _kinds(result) == ["numerical"]
    assert "opposite sign" in result.findings[0].message and 1e4 in result.findings[0].where


def test_slope_factory_flags_a_backward_that_ignores_its_slope() -> None:
    bad = verify_surrogate_gradient(lambda x: _FixedSlopeSpike.apply(x, 25.0), _fast_sigmoid(25.0), slope=25.0,
                                    slope_factory=lambda s: lambda x: _FixedSlopeSpike.apply(x, s))
    assert _kinds(bad) == ["ignored_slope"] and bad.slopes == [12.5, 25.0, 50.0]
    good = verify_surrogate_gradient(FastSigmoid.apply, _fast_sigmoid(25.0), slope=25.0,
                                     slope_factory=lambda s: functools.partial(FastSigmoid.apply, slope=s))
    assert good.passed, good.message


def test_formula_mismatch_reports_the_fitted_factor() -> None:
    result = verify_surrogate_gradient(lambda x: _ScaledSpike.apply(x, 4.0, 1.5), _fast_sigmoid(4.0))
    assert _kinds(result) == ["formula"]
    assert result.findings[0].factor == pytest.approx(1.5) and result.fitted_factor == pytest.approx(1.5)
    assert "1.5 × the declared derivative" in result.findings[0].message
    other = verify_surrogate_gradient(lambda x: _ScaledSpike.apply(x, 4.0, 1.0), _fast_sigmoid(8.0))
    assert _kinds(other) == ["formula"] and other.findings[0].factor is None


def test_precision_level_difference_is_not_a_formula_mismatch() -> None:
    # A float32 constant in a float64 backward (as Norse's heavi_erfc has): ~3e-8 relative, below rtol's 1e-8 bar.
    third = float(torch.tensor(1.0 / 3.0, dtype=torch.float32))
    result = verify_surrogate_gradient(lambda x: _ScaledSpike.apply(x, 2.0, third * 3.0), _fast_sigmoid(2.0))
    assert _kinds(result) == ["precision"]
    assert "precision-level" in result.findings[0].message
    assert verify_surrogate_gradient(lambda x: _ScaledSpike.apply(x, 2.0, third * 3.0), _fast_sigmoid(2.0),
                                     rtol=1e-6).passed


def test_heaviside_at_zero_is_a_parameter() -> None:
    def spike_ge(x: Tensor) -> Tensor:  # SpikingJelly's convention H(0) = 1
        return get_surrogate("sigmoid").spike(x) + (x == 0).to(x.dtype)

    declared = get_surrogate("sigmoid").derivative
    assert verify_surrogate_gradient(spike_ge, declared, heaviside_at_zero=1.0).passed
    wrong = verify_surrogate_gradient(spike_ge, declared)
    assert _kinds(wrong) == ["edge"] and not wrong.forward_is_step
    assert "the forward at x = 0 is 1" in wrong.findings[0].message


def test_foreign_call_forms_are_accepted() -> None:
    shape = get_surrogate("fast_sigmoid", slope=5.0)

    class Module(torch.nn.Module):
        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            return shape.spike(x), x  # (spikes, state), as neuron modules return

    for spike_fn in (Module(), functools.partial(FastSigmoid.apply, slope=torch.tensor(5.0)), shape):
        result = verify_surrogate_gradient(spike_fn, shape.derivative, slope=torch.tensor(5.0))
        assert result.passed and result.slope == 5.0, result.message


def test_failures_of_the_function_itself_become_verdicts() -> None:
    shape = get_surrogate("fast_sigmoid")

    def raising(x: Tensor) -> Tensor:
        raise NotImplementedError("no primitive")

    assert _kinds(verify_surrogate_gradient(shape.spike, shape.derivative, primitive=raising)) == ["raised"]
    assert _kinds(verify_surrogate_gradient(raising, shape.derivative)) == ["raised"]
    flat = verify_surrogate_gradient(lambda x: (x > 0).to(x.dtype), shape.derivative)
    assert _kinds(flat) == ["not_differentiable"] and "FAILED (not_differentiable)" in flat.message
    assert flat.to_json()


def test_default_labels_are_readable() -> None:
    shape = get_surrogate("fast_sigmoid", slope=5.0)
    assert describe_spike_fn(shape.spike) == "fast_sigmoid(slope=5.0, scale=1.0).spike"
    assert describe_spike_fn(FastSigmoid.apply) == "FastSigmoid.apply"
    assert describe_spike_fn(functools.partial(FastSigmoid.apply, slope=3)) == "FastSigmoid.apply(slope=3)"
    assert describe_spike_fn(torch.nn.Sigmoid()) == "Sigmoid()"

    def factory(slope: float) -> Any:
        def inner(x: Tensor) -> Tensor:
            return FastSigmoid.apply(x, slope)
        return inner

    assert describe_spike_fn(factory(7)) == f"{__name__}.factory(slope=7)"
    assert describe_spike_fn(lambda x: x).startswith("lambda (test_surrogate_check.py:")
    assert verify_surrogate_gradient(shape.spike, shape.derivative).name == "fast_sigmoid(slope=5.0, scale=1.0).spike"


def test_bad_dtype_and_slopes_rejected() -> None:
    shape = get_surrogate("fast_sigmoid")
    with pytest.raises(ValueError, match="dtype"):
        verify_surrogate_gradient(shape.spike, shape.derivative, dtype=torch.int64)
    with pytest.raises(ValueError, match="slopes"):
        verify_surrogate_gradient(shape.spike, shape.derivative, slope_factory=lambda s: shape.spike, slopes=[1.0])
