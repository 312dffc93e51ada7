"""Known-answer tests of convergence analysis and early stopping."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from evoexp.training import evaluate
from evoexp.verification.convergence import (
    ConvergenceAnalyzer,
    ConvergenceResult,
    EarlyStopping,
    analyze_loss_history,
    convergence_rate,
    epochs_to_fraction,
)


def _blobs(n: int, *, seed: int) -> TensorDataset:
    """Two linearly separable Gaussian blobs at ±2 in 2-D."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64) * 0.5 + (2.0 * y - 1.0).unsqueeze(1) * 2.0
    return TensorDataset(x, y)


def _loaders() -> tuple[DataLoader, DataLoader]:
    return DataLoader(_blobs(64, seed=0), batch_size=16), DataLoader(_blobs(32, seed=1), batch_size=32)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()


def test_convergence_rate_of_exponential_decay_is_exact() -> None:
    losses = [2.0 * math.exp(-0.3 * e) for e in range(10)]
    assert convergence_rate(losses) == pytest.approx(0.3, rel=1e-12)
    assert convergence_rate(losses[3:], range(3, 10)) == pytest.approx(0.3, rel=1e-12)
    assert convergence_rate([1.0, 2.0, 4.0]) == pytest.approx(-math.log(2.0), rel=1e-12)
    assert math.isnan(convergence_rate([1.0]))
    assert math.isnan(convergence_rate([1.0, 0.0]))


def test_epochs_to_fraction_hits_exact_boundaries() -> None:
    losses = [1.0, 0.55, 0.19, 0.145, 0.1]  # total reduction 0.9; 90 % reached at 0.19, 95 % at 0.145
    assert epochs_to_fraction(losses, 0.9) == 2
    assert epochs_to_fraction(losses, 0.95) == 3
    assert epochs_to_fraction(losses, 1.0) == 4
    assert epochs_to_fraction([1.0, 1.0, 1.2], 0.9) is None
    with pytest.raises(ValueError, match="fraction"):
        epochs_to_fraction(losses, 0.0)


def test_scripted_plateau_stops_at_exact_epoch() -> None:
    val = [1.0, 0.8, 0.6, 0.6, 0.6, 0.6, 0.5, 0.4]
    train = [1.1, 0.9, 0.7, 0.65, 0.62, 0.6, 0.55, 0.5]
    result = analyze_loss_history(train, val, patience=3)
    assert result.stopped_early
    assert result.epochs_run == 6
    assert result.epochs == [1, 2, 3, 4, 5, 6]
    assert result.train_loss == train[:6]
    assert result.best_epoch == 3
    assert result.best_value == 0.6
    assert result.monitor == "val_loss"
    assert result.max_epochs == 8
    # Patience 4 sees the improvement at epoch 7 and runs to the end.
    longer = analyze_loss_history(train, val, patience=4)
    assert not longer.stopped_early
    assert longer.best_epoch == 8


def test_min_delta_decides_what_counts_as_improvement() -> None:
    val = [1.0, 0.9, 0.895, 0.891, 0.8905, 0.5]
    with_delta = analyze_loss_history(val, val, patience=3, min_delta=0.01)
    assert with_delta.epochs_run == 5
    assert with_delta.best_epoch == 2
    without = analyze_loss_history(val, val, patience=3)
    assert without.epochs_run == 6
    assert without.best_epoch == 6


def test_early_stopping_state() -> None:
    stopper = EarlyStopping(patience=2)
    assert not stopper.step(1, 1.0)
    assert stopper.improved
    assert not stopper.step(2, 1.0)
    assert not stopper.improved
    assert stopper.step(3, 1.0)
    assert stopper.stop_epoch == 3
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(patience=1, min_delta=-0.1)


def test_history_rate_and_verdict() -> None:
    train = [math.exp(-0.5 * e) for e in range(1, 9)]
    result = analyze_loss_history(train, initial_train_loss=1.0, patience=10)
    assert result.convergence_rate == pytest.approx(0.5, rel=1e-12)
    assert result.relative_reduction == pytest.approx(1.0 - math.exp(-4.0), rel=1e-12)
    # 90 % of the reduction 1 - e^-4 needs e^{-e/2} <= 0.1 + 0.9 e^-4, first at epoch 5.
    assert result.epochs_to_90 == 5
    assert result.monitor == "train_loss"
    assert result.passed
    flat = analyze_loss_history([1.0, 1.0, 1.0], patience=10)
    assert not flat.passed
    assert flat.epochs_to_90 is None


def test_divergence_cuts_history_and_fails() -> None:
    result = analyze_loss_history([1.0, 0.5, float("nan"), 0.3], patience=5)
    assert result.diverged
    assert result.epochs_run == 3
    assert not result.passed
    assert "NaN/Inf at epoch 3" in result.issues[0]
    json.loads(result.to_json())


def test_separable_data_converges_with_positive_rate() -> None:
    train_loader, val_loader = _loaders()
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[int] = []
    analyzer = ConvergenceAnalyzer()
    result = analyzer.analyze_convergence(
        model,
        train_loader,
        val_loader,
        None,
        lambda p: torch.optim.Adam(p, lr=0.05),
        max_epochs=12,
        patience=3,
        on_epoch=lambda e, m: seen.append(e),
    )
    assert isinstance(result, ConvergenceResult)
    assert result.passed, result.issues
    assert result.convergence_rate > 0
    assert result.val_acc[-1] == 1.0
    assert result.epochs_to_90 is not None
    assert result.epochs_to_90 <= result.epochs_to_95 <= result.epochs_run
    assert seen == [0, *result.epochs]  # epoch 0 (before training) is reported like every other epoch
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # user's model unchanged

    # The kept weights are those of the best-validation epoch (highest validation accuracy) and restore into a
    # fresh model with that epoch's validation numbers.
    run = analyzer.run
    assert run is not None and run.best_epoch is not None
    best = run.history[run.best_epoch - 1]
    assert best.val_acc == max(result.val_acc)
    restored = evaluate(analyzer.restore_best_weights(_mlp()), val_loader)
    assert (restored.acc, restored.loss) == pytest.approx((best.val_acc, best.val_loss), rel=1e-12)

    # Replaying the recorded curves gives the same analysis.
    replay = analyze_loss_history(
        result.train_loss, result.val_loss, initial_train_loss=result.initial_train_loss, max_epochs=12, patience=3
    )
    assert replay.best_epoch == result.best_epoch
    assert replay.convergence_rate == result.convergence_rate
    assert replay.epochs_to_90 == result.epochs_to_90


def test_frozen_training_plateaus_and_stops_after_patience() -> None:
    train_loader, val_loader = _loaders()
    result = ConvergenceAnalyzer().analyze_convergence(
        _mlp(), train_loader, val_loader, None, lambda p: torch.optim.SGD(p, lr=0.0), max_epochs=20, patience=4
    )
    assert result.epochs_run == 5  # epoch 1 sets the best value, epochs 2-5 do not improve on it
    assert result.best_epoch == 1
    assert result.stopped_early
    assert not result.passed


def test_result_json_round_trip_and_summary() -> None:
    result = analyze_loss_history([1.0, 0.5, 0.25], [1.1, 0.6, 0.7], patience=5)
    data = json.loads(result.to_json())
    assert data == result.to_dict()
    assert data["check"] == "convergence"
    assert data["train_acc"] == ["NaN"] * 3
    summary = result.summary()
    assert summary["convergence/best_epoch"] == 2.0
    assert summary["convergence/rate"] == result.convergence_rate
    assert result.epoch_metrics(2)["val/loss"] == 0.6


def test_restore_before_analysis_raises() -> None:
    with pytest.raises(RuntimeError, match="analyze_convergence"):
        ConvergenceAnalyzer().restore_best_weights(_mlp())


def test_epoch_zero_and_later_epochs_are_the_same_kind_of_loss() -> None:
    """With frozen weights every epoch's loss must equal epoch 0's: no reduction, no rate, no epochs-to-90 %.

    Dropout makes the train-mode running loss of an epoch differ from an evaluation of the same weights, so a curve
    that mixed an evaluated epoch 0 with running means of later epochs would show a spurious change.
    """
    train_loader, val_loader = _loaders()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 2)).double()
    analyzer = ConvergenceAnalyzer()
    result = analyzer.analyze_convergence(
        model, train_loader, val_loader, None, lambda p: torch.optim.SGD(p, lr=0.0), max_epochs=4, patience=None
    )
    assert analyzer.run is not None
    assert [r.train_loss for r in analyzer.run.history] != result.train_loss  # the running means differ...
    assert result.train_loss == [result.initial_train_loss] * 4  # ...the evaluated losses are epoch 0's exactly
    assert result.convergence_rate == 0.0
    assert result.relative_reduction == 0.0
    assert result.epochs_to_90 is None
    assert not result.stopped_early and result.epochs_run == 4
