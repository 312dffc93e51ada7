"""Surrogate shapes: formulas vs code, Heaviside forward, area/peak, stability, registry, torch.func."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.special import erf, expit
from scipy.stats import norm

from evoexp.surrogate import (
    FastSigmoid,
    FastSigmoidShape,
    SuperSpike,
    SurrogateGradient,
    available_surrogates,
    get_surrogate,
    heaviside,
    register_surrogate,
    spike_function,
)

NAMES = available_surrogates()
SLOPES = [0.5, 3.0, 25.0]
# Points away from every kink (|slope*x| in {0, 0.5, 1}) so central differences are exact to rounding.
X = torch.tensor([-3.1, -1.37, -0.71, -0.33, -0.13, -0.041, 0.029, 0.17, 0.41, 0.83, 1.9, 4.7], dtype=torch.float64)


def _safe_x(shape: SurrogateGradient) -> torch.Tensor:
    u = (shape.slope * X).abs()
    keep = ((u - 0.5).abs() > 1e-3) & ((u - 1.0).abs() > 1e-3)
    return X[keep]


def test_at_least_twelve_shapes_including_the_seeds() -> None:
    assert len(NAMES) >= 12
    for name in ["fast_sigmoid", "triangular", "rectangular", "exponential", "superspike", "sigmoid", "atan",
                 "gaussian", "piecewise_quadratic", "soft_sign", "straight_through", "q_pseudo"]:
        assert name in NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("slope", SLOPES)
def test_derivative_is_central_difference_of_primitive(name: str, slope: float) -> None:
    shape = get_surrogate(name, slope=slope, scale=1.7)
    x = _safe_x(shape)
    h = 1e-6
    fd = (shape.primitive(x + h) - shape.primitive(x - h)) / (2 * h)
    torch.testing.assert_close(fd, shape.derivative(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_docstring_formulas_match_code(name: str) -> None:
    shape = get_surrogate(name, slope=2.5, scale=0.8)
    cls = type(shape)
    assert cls.formula and cls.formula in " ".join(cls.__doc__.split())
    assert cls.primitive_formula and cls.primitive_formula in " ".join(cls.__doc__.split())
    x = _safe_x(shape).numpy()
    env = {
        "x": x, "abs": np.abs, "exp": np.exp, "sqrt": np.sqrt, "pi": math.pi, "erf": erf, "sig": expit,
        "arctan": np.arctan, "maximum": np.maximum, "clip": np.clip, "sign": np.sign, "where": np.where,
        "phi": norm.pdf, "Phi": norm.cdf, **dataclasses.asdict(shape),
        "h": getattr(cls, "h", None), "c": np.clip(shape.slope * x, -1, 1),
    }
    if "tail" in env:
        env["w"] = (1 + 2 * np.abs(shape.slope * x) / (env["tail"] - 1)) ** (1 - env["tail"])
    g = eval(cls.formula, env)  # formulas are fixed class constants
    p = eval(cls.primitive_formula, env)
    np.testing.assert_allclose(shape.derivative(torch.from_numpy(x)).numpy(), g, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(shape.primitive(torch.from_numpy(x)).numpy(), p, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("slope", [1.0, 10.0])
def test_area_and_peak_are_as_stated(name: str, slope: float) -> None:
    shape = get_surrogate(name, slope=slope, scale=1.3)
    # Primitive limits give the area exactly (no quadrature error from the tails).
    big = torch.tensor([-1e12, 1e12], dtype=torch.float64)
    lo, hi = shape.primitive(big).tolist()
    assert lo == pytest.approx(0.0, abs=1e-5)
    assert hi == pytest.approx(shape.area, rel=1e-5)
    x = torch.linspace(-3 / slope, 3 / slope, 60001, dtype=torch.float64)
    assert shape.derivative(x).max().item() == pytest.approx(shape.peak, rel=1e-6)
    assert shape.derivative(torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(shape.peak, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spike_forward_is_exact_heaviside_backward_is_derivative(name: str, dtype: torch.dtype) -> None:
    shape = get_surrogate(name, slope=4.0)
    x = torch.tensor([-2.0, -1e-7, 0.0, 1e-7, 0.3, 2.0], dtype=dtype, requires_grad=True)
    out = shape.spike(x)
    assert out.dtype == dtype
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    upstream = torch.arange(1.0, 7.0, dtype=dtype)
    (out * upstream).sum().backward()
    torch.testing.assert_close(x.grad, upstream * shape.derivative(x.detach()))
    assert torch.equal(shape(x.detach()), out.detach())


@pytest.mark.parametrize("name", NAMES)
def test_smooth_forward_is_primitive_backward_is_derivative(name: str) -> None:
    shape = get_surrogate(name, slope=3.0)
    x = _safe_x(shape).clone().requires_grad_(True)
    y = shape.smooth(x)
    torch.testing.assert_close(y.detach(), shape.primitive(x.detach()))
    y.sum().backward()
    torch.testing.assert_close(x.grad, shape.derivative(x.detach()))


@pytest.mark.parametrize("name", NAMES)
def test_backward_stable_in_float32_for_any_magnitude(name: str) -> None:
    shape = get_surrogate(name, slope=100.0)
    x = torch.tensor([-3e38, -1e30, -1e4, -88.0, 0.0, 88.0, 1e4, 1e30, 3e38, -math.inf, math.inf],
                     dtype=torch.float32, requires_grad=True)
    shape.spike(x).sum().backward()
    assert torch.isfinite(x.grad).all(), x.grad
    assert x.grad[0].item() == 0.0 or abs(x.grad[0].item()) < 1e-20
    p = shape.primitive(x.detach())
    assert torch.isfinite(p).all(), p
    assert p[0].item() == pytest.approx(0.0, abs=1e-3 * max(shape.area, 1.0))
    assert p[-3].item() == pytest.approx(shape.area, rel=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_works_under_torch_func_grad_and_vmap(name: str) -> None:
    shape = get_surrogate(name, slope=2.0)
    x = _safe_x(shape)

    def f(v: torch.Tensor) -> torch.Tensor:
        return (shape.spike(v) * v).sum()

    g = torch.func.grad(f)(x)
    torch.testing.assert_close(g, heaviside(x) + x * shape.derivative(x))
    per_sample = torch.func.vmap(torch.func.grad(lambda v: shape.smooth(v).sum()))(x.reshape(-1, 1))
    torch.testing.assert_close(per_sample.reshape(-1), shape.derivative(x))


def test_fast_sigmoid_differs_from_superspike_by_the_slope() -> None:
    x = torch.linspace(-1, 1, 11, dtype=torch.float64)
    for slope in [2.0, 25.0]:
        fs, ss = FastSigmoidShape(slope=slope), SuperSpike(slope=slope)
        torch.testing.assert_close(ss.derivative(x), slope * fs.derivative(x))
        assert fs.peak == 1.0 and ss.area == 2.0 and fs.area == pytest.approx(2.0 / slope)


def test_seed_fast_sigmoid_function() -> None:
    x = torch.tensor([-0.4, 0.0, 0.2], dtype=torch.float64, requires_grad=True)
    y = spike_function(x)
    assert y.tolist() == [0.0, 0.0, 1.0]
    y.sum().backward()
    torch.testing.assert_close(x.grad, 1.0 / (25.0 * x.detach().abs() + 1.0) ** 2)
    x.grad = None
    FastSigmoid.apply(x, 5.0).sum().backward()
    torch.testing.assert_close(x.grad, FastSigmoidShape(slope=5.0).derivative(x.detach()))


def test_shapes_are_frozen_hashable_and_readable() -> None:
    a, b = get_surrogate("sigmoid", slope=5), get_surrogate("sigmoid", slope=5.0)
    assert a == b and hash(a) == hash(b) and len({a, b, get_surrogate("sigmoid", slope=6)}) == 2
    assert repr(a) == "sigmoid(slope=5.0, scale=1.0)"
    assert repr(get_surrogate("q_pseudo")) == "q_pseudo(slope=1.0, scale=1.0, tail=1.5)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.slope = 3.0  # type: ignore[misc]
    assert a.params() == {"slope": 5.0, "scale": 1.0}


@pytest.mark.parametrize(("params", "key"), [({"slope": -1.0}, "slope"), ({"slope": 0}, "slope"),
                                             ({"scale": float("nan")}, "scale"), ({"slope": "abc"}, "slope")])
def test_invalid_parameters_name_the_parameter(params: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"fast_sigmoid: {key} must be"):
        get_surrogate("fast_sigmoid", **params)


def test_q_pseudo_tail_validated() -> None:
    with pytest.raises(ValueError, match="tail must be > 1"):
        get_surrogate("q_pseudo", tail=1.0)


def test_unknown_name_and_parameter_list_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown surrogate 'nope'; available surrogates: atan, exponential"):
        get_surrogate("nope")
    with pytest.raises(ValueError, match=r"unknown parameter.*tail; valid parameters: slope, scale"):
        get_surrogate("sigmoid", tail=2.0)


def test_users_can_register_their_own_shape() -> None:
    @register_surrogate
    @dataclasses.dataclass(frozen=True, repr=False)
    class Linear(SurrogateGradient):
        """Test shape ``g = scale * slope``."""

        name = "test_constant"

        def derivative(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x, self.scale * self.slope)

        def primitive(self, x: torch.Tensor) -> torch.Tensor:
            return self.scale * self.slope * x

        @property
        def area(self) -> float:
            return math.inf

        @property
        def peak(self) -> float:
            return self.scale * self.slope

    try:
        assert "test_constant" in available_surrogates()
        assert get_surrogate("test_constant", slope=3.0).peak == 3.0
        with pytest.raises(ValueError, match="already registered"):
            register_surrogate(type("Other", (Linear,), {"__doc__": "x"}))
    finally:
        from evoexp import surrogate

        surrogate._REGISTRY.pop("test_constant")
