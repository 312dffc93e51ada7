"""Gradient alignment: the estimator recovers the true gradient in smooth mode and separates good from bad
surrogates on a spiking Randman network."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from evoexp.data import make_randman
from evoexp.models import SNN
from evoexp.surrogate import FastSigmoidShape
from evoexp.verification.alignment import verify_gradient_alignment
from evoexp.verification.report import format_number, generate_report


@dataclass(frozen=True, repr=False)
class _FlippedFastSigmoid(FastSigmoidShape):
    """A broken surrogate: the fast-sigmoid derivative with the wrong sign."""

    def derivative(self, x: Tensor) -> Tensor:
        return -super().derivative(x)


@pytest.fixture(scope="module")
def randman() -> tuple[Tensor, Tensor]:
    splits = make_randman(
        n_classes=3, n_channels=12, samples_per_class=8, time_steps=25, seed=1, split=(0.5, 0.25, 0.25)
    )
    return splits.train.spikes.double(), splits.train.labels


def _snn(surrogate: Any) -> SNN:
    return SNN(12, [16], 3, surrogate=surrogate, seed=3, weight_scale=3.0)


def test_smooth_mode_recovers_true_gradient(randman: tuple[Tensor, Tensor]) -> None:
    result = verify_gradient_alignment(
        _snn(FastSigmoidShape(slope=5.0)), *randman, F.cross_entropy, smooth=True, sigmas=(1e-3,), n_directions=6
    )
    assert result.smooth_mode is True and result.batched
    assert result.stats().cosine > 0.99
    for name, rows in result.per_layer.items():
        assert rows[0].cosine > 0.99, name
        assert rows[0].sign_agreement == 1.0
        assert rows[0].norm_ratio == pytest.approx(1.0, rel=0.02)


def test_sound_surrogate_aligns_and_flipped_one_does_not(randman: tuple[Tensor, Tensor]) -> None:
    kwargs: dict[str, Any] = {"sigmas": (0.1,), "n_directions": 32, "n_quadrature": 16, "per_layer": True}
    sound = verify_gradient_alignment(_snn(FastSigmoidShape(slope=5.0)), *randman, F.cross_entropy, **kwargs)
    flipped = verify_gradient_alignment(_snn(_FlippedFastSigmoid(slope=5.0)), *randman, F.cross_entropy, **kwargs)
    assert sound.smooth_mode is False
    good, bad = sound.stats("hidden.0.weight"), flipped.stats("hidden.0.weight")
    assert good.cosine > 0.5 and good.cosine - 2 * good.cosine_se - good.cosine_quadrature_error > 0
    assert bad.cosine < 0 and bad.cosine + 2 * bad.cosine_se + bad.cosine_quadrature_error < 0
    assert good.conclusive and bad.conclusive and good.reported_cosine == good.cosine
    assert sound.stats().cosine > 0.5
    # The smoothed-loss side does not depend on the surrogate: identical directions, identical t_k.
    assert good.smoothed == pytest.approx(bad.smoothed)


def test_result_serialises_and_summarises(randman: tuple[Tensor, Tensor]) -> None:
    result = verify_gradient_alignment(
        nn.Sequential(nn.Flatten(), nn.Linear(25 * 12, 3)),
        *randman,
        F.cross_entropy,
        sigmas=(1e-3, 1e-2),
        n_directions=4,
        n_quadrature=4,
    )
    assert result.passed is None and result.smooth_mode is None
    summary = result.summary()
    assert summary["alignment/cosine"] == result.overall[0].cosine > 0.99
    assert "alignment/sign_agreement/sigma=0.01" in summary
    data = json.loads(result.to_json())
    assert data["check"] == "alignment" and len(data["overall"]) == 2
    assert len(result.rows()) == 2 * 3
    with pytest.raises(ValueError, match="sigma"):
        result.stats(sigma=0.5)


def test_quadrature_error_is_reported_next_to_the_standard_error(randman: tuple[Tensor, Tensor]) -> None:
    """Smooth loss: n and n/2 Gauss-Hermite nodes agree to rounding; the spiking loss is a step function along each
    direction, on which the quadrature converges slowly, and the difference is reported."""
    kwargs: dict[str, Any] = {"sigmas": (0.01,), "n_directions": 6, "n_quadrature": 8, "per_layer": False}
    smooth = verify_gradient_alignment(
        _snn(FastSigmoidShape(slope=5.0)), *randman, F.cross_entropy, smooth=True, **kwargs
    )
    spiking = verify_gradient_alignment(_snn(FastSigmoidShape(slope=5.0)), *randman, F.cross_entropy, **kwargs)
    assert smooth.n_quadrature_check == spiking.n_quadrature_check == 4
    assert smooth.stats().cosine_quadrature_error < 1e-4 and smooth.stats().smoothed_quadrature_error < 1e-2
    assert spiking.stats().smoothed_quadrature_error > 50 * smooth.stats().smoothed_quadrature_error
    assert math.isfinite(spiking.stats().cosine_se)
    # (n/2 nodes need n/2 forwards per direction on top of n: 12 per direction here, plus one gradient forward)
    assert spiking.n_evaluations == 1 + 6 * (8 + 4)


def test_flat_directions_count_neither_way_and_large_errors_are_inconclusive(randman: tuple[Tensor, Tensor]) -> None:
    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.snn = _snn(FastSigmoidShape(slope=5.0))
            self.unused = nn.Parameter(torch.ones(5, dtype=torch.float64))

        def forward(self, x: Tensor) -> Tensor:
            return self.snn(x)

    result = verify_gradient_alignment(
        WithUnused(), *randman, F.cross_entropy, sigmas=(1e-4,), n_directions=4, n_quadrature=8
    )
    flat = result.stats("unused")  # t_k = 0 (and s_k = 0) along every direction: no agreement, no disagreement
    assert flat.smoothed == [0.0] * 4 and flat.n_informative == 0
    assert math.isnan(flat.sign_agreement) and not flat.conclusive and math.isnan(flat.reported_cosine)
    overall = result.stats()  # 4 directions at a tiny sigma (few spikes flip): far too noisy to tell the sign
    assert not overall.conclusive and abs(overall.cosine) <= 2 * overall.cosine_se + overall.cosine_quadrature_error
    summary = result.summary()
    assert math.isnan(summary["alignment/cosine"]) and summary["alignment/cosine_conclusive"] == 0.0
    assert summary["alignment/cosine_estimate"] == overall.cosine
    assert math.isnan(result.rows()[0]["cosine"]) and result.rows()[0]["cosine_estimate"] == overall.cosine
    assert any("cosine inconclusive (overall at sigma=0.0001)" in w for w in result.warnings)
    report = generate_report({"gradient_alignment": result})
    assert f"inconclusive ({format_number(overall.cosine)} ± {format_number(overall.cosine_se)})" in report


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigmas": ()}, "sigmas"),
        ({"sigmas": (0.0,)}, "sigmas"),
        ({"n_directions": 1}, "n_directions"),
        ({"n_quadrature": 3}, "n_quadrature must be >= 4"),
        ({"smooth": True}, "smooth"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match=match):
        verify_gradient_alignment(nn.Linear(3, 2), x, y, F.cross_entropy, **kwargs)
