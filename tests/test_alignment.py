"""Gradient alignment: the estimator recovers the true gradient in smooth mode and separates good from bad
surrogates on a spiking Randman network."""

from __future__ import annotations

import json
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
    kwargs: dict[str, Any] = {"sigmas": (0.1,), "n_directions": 32, "n_quadrature": 12, "per_layer": True}
    sound = verify_gradient_alignment(_snn(FastSigmoidShape(slope=5.0)), *randman, F.cross_entropy, **kwargs)
    flipped = verify_gradient_alignment(_snn(_FlippedFastSigmoid(slope=5.0)), *randman, F.cross_entropy, **kwargs)
    assert sound.smooth_mode is False
    good, bad = sound.stats("hidden.0.weight"), flipped.stats("hidden.0.weight")
    assert good.cosine > 0.5 and good.cosine - 2 * good.cosine_se > 0
    assert bad.cosine < 0 and bad.cosine + 2 * bad.cosine_se < 0
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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigmas": ()}, "sigmas"),
        ({"sigmas": (0.0,)}, "sigmas"),
        ({"n_directions": 1}, "n_directions"),
        ({"n_quadrature": 1}, "n_quadrature"),
        ({"smooth": True}, "smooth"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match=match):
        verify_gradient_alignment(nn.Linear(3, 2), x, y, F.cross_entropy, **kwargs)
