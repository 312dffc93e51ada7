"""Known-answer tests of the gradient and weight stability checks."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import Tensor, nn

from evoexp.verification.stability import (
    GradientStabilityResult,
    NumericalStabilityTester,
    WeightStabilityResult,
)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _batches(n: int, *, batch_size: int = 16, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch_size, 4, generator=gen, dtype=torch.float64),
            torch.randint(0, 3, (batch_size,), generator=gen),
        )
        for _ in range(n)
    ]


class _NanGrad(torch.autograd.Function):
    """Identity forward; backward puts NaN into exactly one entry of the incoming gradient."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        grad[0, 0] = float("nan")
        return grad


class _NanAfterFirstLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 8)
        self.second = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.second(torch.tanh(_NanGrad.apply(self.first(x))))


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model: nn.Module, before: dict[str, Tensor]) -> None:
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in model.parameters())


def test_healthy_gradients_pass_and_norms_match_autograd() -> None:
    model = _mlp()
    before = _snapshot(model)
    batches = _batches(3)
    result = NumericalStabilityTester().check_gradient_stability(model, batches, n_batches=5)
    assert result.passed, result.issues
    assert result.n_batches == 5  # the 3 batches are re-iterated
    assert result.nan_count == result.inf_count == 0
    _assert_unchanged(model, before)

    # Reference: per-layer norms of the gradient on each batch, computed directly.
    totals, first = [], []
    for x, y in [*batches, *batches[:2]]:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        l0 = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model[0].parameters()))
        l2 = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model[2].parameters()))
        first.append(l0)
        totals.append(math.hypot(l0, l2))
    ref_total = torch.tensor(totals, dtype=torch.float64)
    assert result.total_norm.mean == pytest.approx(float(ref_total.mean()), rel=1e-12)
    assert result.total_norm.max == pytest.approx(max(totals), rel=1e-12)
    assert result.total_norm.min == pytest.approx(min(totals), rel=1e-12)
    assert result.total_norm.std == pytest.approx(float(ref_total.std(unbiased=False)), rel=1e-10)
    assert set(result.layer_norms) == {"0", "2"}
    assert result.layer_norms["0"].mean == pytest.approx(sum(first) / len(first), rel=1e-12)
    assert result.layer_sizes == {"0": 4 * 8 + 8, "2": 8 * 3 + 3}
    # depth conditioning: ratio of mean per-layer gradient RMS per element, ||g_l|| / sqrt(n_l)
    assert result.layer_rms["0"].mean == pytest.approx(sum(first) / len(first) / math.sqrt(40), rel=1e-12)
    means = [s.mean for s in result.layer_rms.values()]
    assert result.depth_conditioning == pytest.approx(max(means) / min(means), rel=1e-12)
    assert "rms_l = ||g_l||_2 / sqrt(n_l)" in result.depth_conditioning_definition


class _Deep(nn.Module):
    """``depth`` sigmoid layers of width 16: with small weights the gradient shrinks by ~0.25 * |W| per layer."""

    def __init__(self, depth: int, scale: float, widths: tuple[int, ...] = ()) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        sizes = [4, *(widths or (16,) * depth), 3]
        self.layers = nn.ModuleList(nn.Linear(a, b, dtype=torch.float64) for a, b in itertools.pairwise(sizes))
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.copy_(scale * torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64))
                layer.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = torch.sigmoid(layer(x))
        return self.layers[-1](x)


def test_depth_conditioning_flags_vanishing_gradients() -> None:
    """Ten sigmoid layers with small weights: the first layer's gradient RMS is orders below the last's."""
    tester = NumericalStabilityTester()
    vanishing = tester.check_gradient_stability(_Deep(10, 0.3), _batches(2), n_batches=2, max_depth_conditioning=1e3)
    assert vanishing.depth_conditioning > 1e3 and not vanishing.passed
    issue = next(i for i in vanishing.issues if i.startswith("depth conditioning"))
    assert "layer 'layers.0'" in issue and "gradient RMS per element" in issue
    rms = {layer: s.mean for layer, s in vanishing.layer_rms.items()}
    assert rms["layers.0"] < rms["layers.5"] < rms["layers.9"]  # it shrinks with depth
    healthy = tester.check_gradient_stability(_Deep(2, 1.0), _batches(2), n_batches=2, max_depth_conditioning=1e3)
    assert healthy.depth_conditioning < 1e2 and healthy.passed, healthy.issues


class _Copies(nn.Module):
    """``rows`` copies of a ``[3, 4]`` matrix whose sum is used: every entry gets the same gradient."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((rows, 3, 4), 0.1, dtype=torch.float64))


class _TwoSizes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.big, self.small = _Copies(100), _Copies(1)

    def forward(self, x: Tensor) -> Tensor:
        return x @ (self.big.weight.sum(0) + self.small.weight.sum(0)).T


def test_depth_conditioning_does_not_measure_layer_size() -> None:
    """Layers 100x apart in size with identical per-entry gradients: depth conditioning 1, raw-norm ratio 10."""
    result = NumericalStabilityTester().check_gradient_stability(
        _TwoSizes(), _batches(2), n_batches=2, max_depth_conditioning=2.0
    )
    assert result.depth_conditioning == pytest.approx(1.0, rel=1e-12) and result.passed, result.issues
    assert result.layer_norms["big"].mean / result.layer_norms["small"].mean == pytest.approx(10.0, rel=1e-12)
    assert result.layer_sizes == {"big": 1200, "small": 12}


def test_injected_nan_gradient_is_counted() -> None:
    model = _NanAfterFirstLayer().double()
    result = NumericalStabilityTester().check_gradient_stability(model, _batches(4), n_batches=4)
    # One NaN enters the first layer's output gradient per batch; it reaches first.bias[0] and the
    # row first.weight[0, :] (4 entries): 5 NaN entries per batch.
    assert result.nan_count == 4 * 5
    assert result.inf_count == 0
    assert result.nonfinite_batches == 4
    assert not result.passed
    assert "NaN" in result.issues[0]
    assert math.isnan(result.total_norm.mean)  # no batch had a finite gradient


def test_exploding_and_vanishing_thresholds() -> None:
    model = _mlp()
    tester = NumericalStabilityTester()
    exploding = tester.check_gradient_stability(model, _batches(2), n_batches=2, max_grad_norm=1e-6, min_grad_norm=1e-9)
    assert not exploding.passed
    assert any(i.startswith("exploding") for i in exploding.issues)
    assert exploding.thresholds.max_grad_norm == 1e-6
    vanishing = tester.check_gradient_stability(model, _batches(2), n_batches=2, min_grad_norm=1e2, max_grad_norm=1e3)
    assert any(i.startswith("vanishing") for i in vanishing.issues)


def test_dead_layer_gives_infinite_depth_conditioning() -> None:
    model = _mlp()
    with torch.no_grad():
        model[2].weight.zero_()  # no gradient reaches the first layer
    result = NumericalStabilityTester().check_gradient_stability(model, _batches(2), n_batches=2)
    assert result.layer_norms["0"].max == 0.0
    assert result.depth_conditioning == math.inf
    assert not result.passed


def test_gradient_result_json_round_trip_and_summary() -> None:
    result = NumericalStabilityTester().check_gradient_stability(_mlp(), _batches(2), n_batches=2)
    assert isinstance(result, GradientStabilityResult)
    data = json.loads(result.to_json())
    assert data == result.to_dict()
    assert data["check"] == "gradient_stability"
    assert data["passed"] is True
    assert data["total_norm"]["mean"] == result.total_norm.mean
    assert data["thresholds"]["max_depth_conditioning"] == 1e4
    summary = result.summary()
    assert summary["stability/gradient_ok"] == 1.0
    assert summary["stability/grad_norm/0"] == result.layer_norms["0"].mean
    assert summary["stability/grad_rms/0"] == result.layer_rms["0"].mean
    assert all("/" in k and isinstance(v, float) for k, v in summary.items())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_batches": 0}, "n_batches"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"min_grad_norm": 10.0, "max_grad_norm": 1.0}, "min_grad_norm"),
    ],
)
def test_gradient_stability_rejects_bad_parameters(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        NumericalStabilityTester().check_gradient_stability(_mlp(), _batches(1), **kwargs)


def test_healthy_training_weights_pass() -> None:
    model = _mlp()
    before = _snapshot(model)
    result = NumericalStabilityTester().check_weight_stability(
        model, _batches(4), None, lambda p: torch.optim.SGD(p, lr=0.05), n_steps=6
    )
    assert isinstance(result, WeightStabilityResult)
    assert result.passed, result.issues
    assert result.n_steps == 6
    assert len(result.losses) == 6
    _assert_unchanged(model, before)
    stats = result.tensors["0.weight"]
    assert stats.initial_norm == pytest.approx(float(model[0].weight.detach().norm()), rel=1e-12)
    assert len(stats.norms) == len(stats.relative_updates) == 6
    assert 0 < stats.max_relative_update < 0.5
    sv = torch.linalg.svdvals(model[0].weight.detach())
    assert stats.initial_condition == pytest.approx(float(sv.max() / sv.min()), rel=1e-10)
    assert math.isnan(result.tensors["0.bias"].initial_condition)  # vectors have no condition number


def test_relative_update_matches_one_sgd_step() -> None:
    model = _mlp()
    ((x, y),) = _batches(1)
    result = NumericalStabilityTester().check_weight_stability(
        model, [(x, y)], None, lambda p: torch.optim.SGD(p, lr=0.1), n_steps=1
    )
    nn.functional.cross_entropy(model(x), y).backward()
    expected = 0.1 * float(model[2].weight.grad.norm()) / float(model[2].weight.detach().norm())
    assert result.tensors["2.weight"].relative_updates[0] == pytest.approx(expected, rel=1e-10)


def test_exploding_weights_are_flagged() -> None:
    result = NumericalStabilityTester().check_weight_stability(
        _mlp(), _batches(4), None, lambda p: torch.optim.SGD(p, lr=1e4), n_steps=5
    )
    assert not result.passed
    assert result.max_relative_update > result.thresholds.max_relative_update
    assert any(i.startswith("relative update") for i in result.issues)
    json.loads(result.to_json())  # inf/NaN values still serialise as strict JSON


def test_rank_deficient_matrix_is_flagged() -> None:
    model = _mlp()
    with torch.no_grad():
        model[0].weight[:, 1] = model[0].weight[:, 0]  # two equal columns: rank 3 of 4
    result = NumericalStabilityTester().check_weight_stability(
        model, _batches(1), None, lambda p: torch.optim.SGD(p, lr=0.0), n_steps=1
    )
    assert result.max_condition_number > 1e6
    assert any(i.startswith("condition number") for i in result.issues)


def test_weight_stability_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="n_steps"):
        NumericalStabilityTester().check_weight_stability(
            _mlp(), _batches(1), None, lambda p: torch.optim.SGD(p, lr=0.1), n_steps=0
        )
    with pytest.raises(ValueError, match="batches"):
        NumericalStabilityTester().check_weight_stability(_mlp(), [], None, lambda p: torch.optim.SGD(p, lr=0.1))
