"""The Gygax & Zenke checks (circulation, sign disagreement, escape noise) through the suite and its report."""

from __future__ import annotations

import json

import torch

from evoexp.models import SNN
from evoexp.surrogate import get_surrogate
from evoexp.verification.circulation import CirculationResult
from evoexp.verification.escape_noise import EscapeNoiseResult
from evoexp.verification.report import format_number
from evoexp.verification.sign import SignDisagreementResult
from evoexp.verification.suite import OPT_IN, BackpropagationVerificationSuite, VerificationOptions

THEORY = VerificationOptions.only(
    *OPT_IN,
    gradient_samples=4,
    circulation_kwargs={"radius": 0.5, "n_points": 32, "max_points": 128, "per_layer": False, "atol": 1e-9},
    sign_kwargs={"sigma": 0.05, "n_directions": 8, "n_quadrature": 4},
    escape_noise_kwargs={"n_neurons": 3, "time_steps": 6},
)


def _loader() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [((torch.rand(8, 10, 4, generator=gen) < 0.3).float(), torch.randint(0, 2, (8,), generator=gen))]


def test_theory_checks_run_in_the_suite_and_reach_the_report() -> None:
    model = SNN(4, [5], 2, surrogate=get_surrogate("sigmoid", slope=1.0), seed=0, readout="mean", escape_noise=2.0,
                escape_train="mean")
    suite = BackpropagationVerificationSuite()
    results = suite.run_full_verification(model, _loader(), options=THEORY)
    circulation, sign, escape = (results[name] for name in OPT_IN)
    assert isinstance(circulation, CirculationResult) and circulation.passed is True  # the smooth control
    assert not circulation.conservative and circulation.overall.circulation > 0  # the surrogate gradient circulates
    assert isinstance(sign, SignDisagreementResult) and sign.passed is None and sign.n_informative > 0
    assert isinstance(escape, EscapeNoiseResult) and escape.passed is True
    assert escape.warnings[0] == "layers: hidden.0" and escape.configured_surrogate is not None  # sigmoid(1) != escape
    report = suite.generate_report(results)
    for title in ("Circulation of the surrogate gradient (is it a gradient?) — PASS",
                  "Sign disagreement with the smoothed-loss gradient — info",
                  "Escape noise: surrogate gradient = derivative of the expected output — PASS",
                  "**Control** (the same loops in smooth mode"):
        assert title in report
    numbers = [circulation.overall.quadrature_error, circulation.control.overall.circulation, sign.disagreement_se,
               *(c.max_abs_error for c in escape.cases)]
    assert all(format_number(v) in report for v in numbers)
    assert all(json.loads(r.to_json())["check"] == r.check for r in (circulation, sign, escape))


def test_escape_noise_check_is_skipped_without_stochastic_layers() -> None:
    results = BackpropagationVerificationSuite().run_full_verification(
        SNN(4, [5], 2, seed=0), _loader(), options=VerificationOptions.only("escape_noise")
    )
    assert "no escape-noise" in results["escape_noise"].reason
