"""Circulation of the (surrogate) gradient around closed loops in weight space: control, mutation, finding, peers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

import evoexp.functional.lif as lif
from evoexp import keys
from evoexp.models import SNN
from evoexp.surrogate import get_surrogate
from evoexp.verification.circulation import check_circulation


def _data(inputs: int = 4, steps: int = 10, batch: int = 4) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(batch, steps, inputs, generator=gen) < 0.3).float(), torch.randint(0, 2, (batch,), generator=gen)


def _sigmoid_network(slope: float, *, escape_noise: float | None = 2.0) -> SNN:
    """A small LIF network of sigmoid neurons (the firing probability of escape noise 2) trained with a surrogate."""
    return SNN(
        4,
        [4],
        2,
        surrogate=get_surrogate("sigmoid", slope=slope),
        seed=0,
        readout="mean",
        escape_noise=escape_noise,
        escape_train="mean",
    )


_FAST: dict[str, Any] = {
    "radius": 0.5, "n_points": 32, "max_points": 256, "per_layer": False, "n_planes": 2, "max_quadrature_error": 1e-6,
    "atol": 1e-9,
}


def test_smooth_mode_is_conservative_to_its_quadrature_error() -> None:
    """The control: in smooth mode the field is a true gradient; the loops resolve and the circulation vanishes."""
    model = _sigmoid_network(1.0, escape_noise=None)
    result = check_circulation(model, *_data(), F.cross_entropy, smooth=True, **{**_FAST, "per_layer": True})
    assert result.mode == "smooth" and result.passed is True and result.conservative and result.resolved
    for scope in result.scopes:
        assert scope.circulation < 1e-9 and scope.quadrature_error <= 1e-6, scope
    assert set(result.per_layer) == {"hidden.0.weight", "hidden.0.bias", "readout.weight", "readout.bias"}


def test_a_mutated_adjoint_is_not_conservative(monkeypatch: pytest.MonkeyPatch) -> None:
    """a[t] = g[t] dL/ds[t] -> 0.9 g[t] dL/ds[t] in the real adjoint: the smooth-mode control fails."""
    real = lif._Adjoint.blocks

    def blocks(self: Any, stop: int) -> Any:
        for t0, slope, coeff in real(self, stop):
            yield t0, 0.9 * slope, coeff

    monkeypatch.setattr(lif._Adjoint, "blocks", blocks)
    model = _sigmoid_network(1.0, escape_noise=None)
    result = check_circulation(model, *_data(), F.cross_entropy, smooth=True, **_FAST)
    assert result.passed is False and not result.overall.conservative
    assert result.overall.circulation > 100 * result.overall.quadrature_error


def test_surrogate_gradient_circulates_and_the_true_gradient_does_not() -> None:
    """Sigmoid network of steepness 2: surrogate slopes 1 and 5 circulate clearly; slope 2 is the true gradient."""
    data = _data()
    circulation = {}
    for slope in (1.0, 2.0, 5.0):
        result = check_circulation(_sigmoid_network(slope), *data, F.cross_entropy, **_FAST)
        assert result.mode == "spiking" and result.control is not None and result.passed is True
        circulation[slope] = result.overall
    assert circulation[2.0].circulation < 1e-9 and circulation[2.0].conservative
    for slope in (1.0, 5.0):
        assert not circulation[slope].conservative
        assert circulation[slope].circulation > 0.003 and circulation[slope].quadrature_error < 1e-3


def test_result_is_json_with_summary_keys() -> None:
    result = check_circulation(_sigmoid_network(1.0), *_data(), F.cross_entropy, **{**_FAST, "per_layer": True})
    data = json.loads(result.to_json())
    assert data["check"] == "circulation" and data["control"]["mode"] == "smooth" and data["passed"] is True
    summary = result.summary()
    assert summary[keys.CIRCULATION] == result.overall.circulation
    assert summary[keys.CIRCULATION_CONTROL_PASSED] == 1.0
    assert keys.CIRCULATION_LAYER_PREFIX + "hidden.0.weight" in summary


def test_a_network_without_spiking_neurons_is_its_own_control() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 6), nn.Tanh(), nn.Linear(6, 2))
    result = check_circulation(model, *_data(), F.cross_entropy, **_FAST)
    assert result.mode == "differentiable" and result.control is None and result.passed is True
    with pytest.raises(ValueError, match="smooth=True needs a spiking network"):
        check_circulation(model, *_data(), F.cross_entropy, smooth=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"radius": 0.0}, "radius"), ({"n_points": 9}, "n_points"), ({"n_planes": 0}, "n_planes"),
     ({"n_points": 64, "max_points": 32}, "max_points")],
)
def test_bad_arguments_name_the_key(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_circulation(_sigmoid_network(1.0), *_data(), F.cross_entropy, **kwargs)


def test_snntorch_network_through_its_adapter() -> None:
    """A peer network: its smooth mode (through the adapter) is the control; spiking mode reports the circulation."""
    snn = pytest.importorskip("snntorch", reason="snntorch is not installed (pip install evoexp[peers])")

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.lif1 = nn.Linear(4, 5), snn.Leaky(beta=0.9, spike_grad=snn.surrogate.sigmoid(slope=2))
            self.fc2 = nn.Linear(5, 2)

        def forward(self, x: Tensor) -> Tensor:
            mem, out = self.lif1.reset_mem(), []
            for t in range(x.shape[1]):
                spikes, mem = self.lif1(self.fc1(x[:, t]), mem)
                out.append(self.fc2(spikes))
            return torch.stack(out, 1).mean(1)

    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():
        model.fc1.weight.mul_(4.0)
    result = check_circulation(model, *_data(), F.cross_entropy, **{**_FAST, "n_planes": 1})
    assert result.mode == "spiking" and result.control is not None
    assert result.control.passed is True, result.control.warnings
    assert result.control.held_resets == ["lif1"]  # snnTorch detaches its reset: held at the centre of the loop
    assert math.isfinite(result.overall.circulation) and result.overall.circulation > 0
