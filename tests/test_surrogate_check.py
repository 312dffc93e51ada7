"""Surrogate verification: implementation errors are caught, consistency and approximation numbers are right."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor

from evoexp.surrogate import available_surrogates, get_surrogate
from evoexp.verification.surrogate_check import sweep_surrogates, tidy_rows, verify_surrogate_gradient


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
