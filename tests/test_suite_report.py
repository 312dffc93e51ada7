"""The verification suite on the real evoexp SNN and data, and the Markdown report built from its results."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from evoexp.data import DatasetSplits, make_loader, make_synthetic
from evoexp.models import SNN, ann_twin
from evoexp.results import Result, SkippedResult
from evoexp.verification.benchmark import BenchmarkResult
from evoexp.verification.convergence import ConvergenceResult
from evoexp.verification.report import format_number, generate_report
from evoexp.verification.stability import GradientStabilityResult, NumericalStabilityTester, WeightStabilityResult
from evoexp.verification.suite import CHECKS, OPT_IN, BackpropagationVerificationSuite, VerificationOptions

FAST = VerificationOptions(
    gradient_samples=4,
    alignment_kwargs={"sigmas": (0.05,), "n_directions": 4, "n_quadrature": 4, "per_layer": False},
    surrogate_kwargs={"n_points": 400},
    gradient_stability_kwargs={"n_batches": 3},
    weight_stability_kwargs={"n_steps": 3},
    convergence_kwargs={"max_epochs": 3, "patience": 2},
    benchmark_kwargs={"epochs": 2},
)


@pytest.fixture(scope="module")
def splits() -> DatasetSplits:
    return make_synthetic(n_classes=2, n_channels=8, samples_per_class=24, time_steps=10, seed=0)


@pytest.fixture(scope="module")
def full_run(splits: DatasetSplits) -> tuple[SNN, dict[str, Result], list[tuple[str, int, int]]]:
    torch.manual_seed(0)
    snn = SNN(splits.n_inputs, [12], splits.n_classes, seed=0)
    calls: list[tuple[str, int, int]] = []
    results = BackpropagationVerificationSuite().run_full_verification(
        snn,
        make_loader(splits.train, batch_size=16, shuffle=True, seed=0),
        make_loader(splits.val, batch_size=16),
        None,
        lambda p: torch.optim.Adam(p, lr=1e-2),
        options=FAST,
        ann=ann_twin(snn, splits.n_features),
        ann_train_loader=make_loader(splits.train, batch_size=16, shuffle=True, seed=0, view="features"),
        ann_val_loader=make_loader(splits.val, batch_size=16, view="features"),
        progress=lambda name, i, n: calls.append((name, i, n)),
    )
    return snn, results, calls


def test_full_run_returns_every_check(full_run: tuple[SNN, dict[str, Result], list]) -> None:
    _, results, calls = full_run
    assert list(results) == list(CHECKS)
    assert calls == [(name, i, len(CHECKS)) for i, name in enumerate(CHECKS, start=1)]
    skipped = {name for name, r in results.items() if isinstance(r, SkippedResult)}
    assert skipped == set(OPT_IN)  # the Gygax & Zenke checks are opt-in (tests/test_theory_suite.py)
    assert isinstance(results["gradient_stability"], GradientStabilityResult)
    assert isinstance(results["weight_stability"], WeightStabilityResult)
    assert isinstance(results["convergence"], ConvergenceResult)
    assert isinstance(results["benchmark"], BenchmarkResult)
    assert results["gradient_verification"].passed is True  # smooth mode: BPTT matches finite differences
    assert results["surrogate_verification"].passed is True
    assert results["gradient_alignment"].passed is None
    assert results["convergence"].epochs_run <= 3


def test_user_model_is_unchanged(splits: DatasetSplits, full_run: tuple[SNN, dict[str, Result], list]) -> None:
    snn, _, _ = full_run
    fresh = SNN(splits.n_inputs, [12], splits.n_classes, seed=0)
    for (name, a), b in zip(snn.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_results_round_trip_through_json(full_run: tuple[SNN, dict[str, Result], list]) -> None:
    _, results, _ = full_run
    for name, result in results.items():
        data = json.loads(result.to_json())
        assert data == result.to_dict(), name
    merged = {k: v for r in results.values() for k, v in r.summary().items()}
    assert all(isinstance(v, float) for v in merged.values())
    assert "stability/gradient_ok" in merged
    assert "benchmark/time_ratio" in merged


def test_report_carries_the_numbers(full_run: tuple[SNN, dict[str, Result], list]) -> None:
    _, results, _ = full_run
    report = BackpropagationVerificationSuite.generate_report(results)
    assert report.startswith("# Backpropagation verification report")
    assert "## Summary" in report
    gs = results["gradient_stability"]
    ws = results["weight_stability"]
    conv = results["convergence"]
    bench = results["benchmark"]
    expected = [
        gs.total_norm.mean,
        gs.total_norm.max,
        gs.depth_conditioning,
        gs.thresholds.max_depth_conditioning,
        *(s.mean for s in gs.layer_norms.values()),
        ws.max_relative_update,
        ws.max_condition_number,
        ws.thresholds.max_relative_update,
        *(t.final_norm for t in ws.tensors.values()),
        conv.convergence_rate,
        conv.best_value,
        *conv.train_loss,
        *conv.val_acc,
        conv.patience,
        bench.time_ratio,
        bench.param_ratio,
        bench.acc_gap,
        bench.snn.n_params,
        bench.ann.n_params,
        results["gradient_verification"].max_abs_error,
        results["gradient_verification"].atol,
        results["surrogate_verification"].approx_l1,
        results["surrogate_verification"].area,
        results["gradient_alignment"].overall[0].cosine,
    ]
    missing = [v for v in expected if format_number(v) not in report]
    assert not missing
    for title in ("Gradient stability — PASS", "Weight stability — PASS", "SNN vs ANN benchmark — info"):
        assert title in report
    assert report.count("*What it measures.*") == len(CHECKS)


def _blobs() -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(32) % 2
    x = torch.randn(32, 4, generator=gen) + 2.0 * y.unsqueeze(1)
    return DataLoader(TensorDataset(x, y), batch_size=8)


def test_disabled_and_impossible_checks_are_skipped_with_reasons() -> None:
    mlp = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    results = BackpropagationVerificationSuite().run_full_verification(
        mlp,
        _blobs(),
        _blobs(),
        options=VerificationOptions.only(
            "surrogate_verification", "gradient_stability", "benchmark", gradient_stability_kwargs={"n_batches": 2}
        ),
    )
    assert list(results) == list(CHECKS)
    assert isinstance(results["gradient_stability"], GradientStabilityResult)
    assert "no surrogate" in results["surrogate_verification"].reason
    assert "ann=None" in results["benchmark"].reason
    assert results["convergence"].reason == "disabled in the options"
    report = generate_report(results)
    assert "Skipped: no ANN twin given (ann=None)." in report
    assert "**Overall: PASS** — 1 passed, 0 failed, 0 informational, 9 skipped." in report


def test_keyword_switches_override_options() -> None:
    mlp = nn.Sequential(nn.Linear(4, 2))
    results = BackpropagationVerificationSuite().run_full_verification(
        mlp,
        _blobs(),
        options=VerificationOptions.only("weight_stability", weight_stability_kwargs={"n_steps": 2}),
        weight_stability=False,
        gradient_stability=True,
    )
    assert isinstance(results["weight_stability"], SkippedResult)
    assert isinstance(results["gradient_stability"], GradientStabilityResult)
    with pytest.raises(ValueError, match="unknown checks"):
        BackpropagationVerificationSuite().run_full_verification(mlp, _blobs(), stabilty=True)
    with pytest.raises(ValueError, match="unknown checks"):
        VerificationOptions.only("gradient")
    with pytest.raises(ValueError, match="gradient_samples"):
        VerificationOptions(gradient_samples=0)


def test_report_explains_a_failure() -> None:
    mlp = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    exploding = NumericalStabilityTester().check_weight_stability(
        mlp, _blobs(), None, lambda p: torch.optim.SGD(p, lr=1e4), n_steps=3
    )
    report = generate_report({"weight_stability": exploding})
    assert "**Overall: FAIL**" in report
    assert "Weight stability — FAIL" in report
    assert "**Why it failed**" in report
    assert all(issue in report for issue in exploding.issues)
    with pytest.raises(ValueError, match="results"):
        generate_report({})


def test_format_number() -> None:
    assert format_number(0.123456) == "0.1235"
    assert format_number(12345678.0) == "1.235e+07"
    assert format_number(3) == "3"
    assert format_number(True) == "yes"
    assert format_number(None) == "–"
    assert format_number(math.nan) == "NaN"
    assert format_number(-math.inf) == "-inf"
