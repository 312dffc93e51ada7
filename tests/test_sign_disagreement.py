"""Sign disagreement of the surrogate gradient with the smoothed-loss gradient, and its measurement during training."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from evoexp import keys
from evoexp.models import SNN
from evoexp.surrogate import get_surrogate
from evoexp.training import TrainingRun, train_model
from evoexp.verification.sign import SignDisagreementProbe, measure_sign_disagreement


class _Reversed(torch.autograd.Function):
    """tanh forward; backward ``sign`` times its derivative: -1 makes a 'surrogate' gradient that points backwards."""

    @staticmethod
    def forward(x: Tensor, sign: float) -> Tensor:
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Tensor) -> None:
        ctx.save_for_backward(output)
        ctx.sign = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (y,) = ctx.saved_tensors
        return ctx.sign * grad * (1 - y * y), None


class _Net(nn.Module):
    """Linear -> tanh (with a chosen backward) -> Linear: the constructed case."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2, self.sign = nn.Linear(5, 4), nn.Linear(4, 3), sign

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(_Reversed.apply(self.fc1(x), self.sign))


def _features() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(6, 5, generator=gen), torch.randint(0, 3, (6,), generator=gen)


def test_a_reversed_hidden_gradient_disagrees_and_the_true_one_does_not() -> None:
    """Constructed case: only the first layer's gradient is reversed, so directions in it disagree, the others not."""
    x, y = _features()
    true = measure_sign_disagreement(_Net(1.0), x, y, F.cross_entropy, sigma=1e-3, n_directions=16)
    assert true.disagreement == 0.0 and true.n_informative == 16 and true.n_unresolved == 0
    first = ["fc1.weight", "fc1.bias"]
    reversed_first = measure_sign_disagreement(
        _Net(-1.0), x, y, F.cross_entropy, sigma=1e-3, n_directions=16, parameters=first
    )
    assert reversed_first.disagreement == 1.0 and reversed_first.disagreement_se == 0.0
    mixed = measure_sign_disagreement(_Net(-1.0), x, y, F.cross_entropy, sigma=1e-3, n_directions=64)
    assert 0.05 < mixed.disagreement < 0.95 and mixed.disagreement_se == pytest.approx(
        math.sqrt(mixed.disagreement * (1 - mixed.disagreement) / 64)
    )
    assert json.loads(mixed.to_json())["check"] == "sign_disagreement"
    assert mixed.summary()[keys.SIGN_DISAGREEMENT] == mixed.disagreement


def _sigmoid_network(slope: float) -> SNN:
    return SNN(4, [6], 2, surrogate=get_surrogate("sigmoid", slope=slope), seed=0, readout="mean",
               escape_noise=4.0, escape_train="mean", weight_scale=2.0)


def test_the_escape_derivative_is_the_true_gradient_of_the_sigmoid_network() -> None:
    """Sigmoid network of steepness 4: surrogate slope 4 is its true gradient (no disagreement); slope 0.5 is not."""
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.rand(8, 12, 4, generator=gen) < 0.3).float(), torch.randint(0, 2, (8,), generator=gen)
    options: dict[str, Any] = {"sigma": 1e-3, "n_directions": 128}
    exact = measure_sign_disagreement(_sigmoid_network(4.0), x, y, F.cross_entropy, **options)
    assert exact.disagreement == 0.0 and exact.n_informative == 128
    scale = max(abs(a) for a in exact.surrogate)  # the same derivatives, up to the smoothing's O(sigma^2) bias:
    assert max(abs(a - b) for a, b in zip(exact.surrogate, exact.smoothed)) < 1e-3 * scale
    wide = measure_sign_disagreement(_sigmoid_network(0.5), x, y, F.cross_entropy, **options)
    assert wide.disagreement > 2 * wide.disagreement_se > 0


def test_probe_measures_every_k_epochs_through_the_training_pipeline() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.rand(32, 10, 4, generator=gen) < 0.3).float(), torch.randint(0, 2, (32,), generator=gen)
    model = SNN(4, [8], 2, surrogate="fast_sigmoid", seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    probe = SignDisagreementProbe(x[:8], y[:8], every=2, sigma=0.1, n_directions=8, n_quadrature=4)
    logged: dict[int, dict[str, float]] = {}
    run = train_model(
        model,
        [(x, y)],
        epochs=4,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        probes=[probe],
        on_epoch=lambda epoch, metrics: logged.setdefault(epoch, dict(metrics)),
        progress=False,
    )
    assert sorted(run.probe_metrics) == [0, 2, 4] and sorted(probe.results) == [0, 2, 4]
    for epoch in (0, 2, 4):
        assert logged[epoch][keys.SIGN_DISAGREEMENT_CURVE] == probe.results[epoch].disagreement
        assert keys.SIGN_DISAGREEMENT_CURVE_SE in logged[epoch]
    assert keys.SIGN_DISAGREEMENT_CURVE not in logged[1] and run.probe_seconds > 0
    assert keys.SNN_SIGN_DISAGREEMENT == "snn/" + keys.SIGN_DISAGREEMENT_CURVE
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it trained
    restored = TrainingRun.from_dict(json.loads(run.to_json()))
    assert restored.probe_metrics == run.probe_metrics
    trace = probe.trace()
    assert trace.epochs == [0, 2, 4] and trace.summary()[keys.SIGN_TRACE_LAST] == probe.results[4].disagreement
    with pytest.raises(ValueError, match=r"^every must be an int >= 0"):
        SignDisagreementProbe(x, y, every=-1)
    assert SignDisagreementProbe(x, y, every=0)(0, model) == {}  # 0: measures nothing during training
