"""Tests of evoexp.training: metrics, rate regulariser, train/evaluate/fit loops and divergence detection."""

from __future__ import annotations

import copy
import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evoexp.data import make_loader, make_randman, make_synthetic
from evoexp.models import ANN, SNN
from evoexp.training import (
    BestWeights,
    DivergenceError,
    EpochRecord,
    TrainingRun,
    accuracy,
    evaluate,
    firing_rate_penalty,
    fit,
    last_spikes,
    layer_name,
    train_epoch,
    train_model,
)


def _mlp(n_in: int, n_out: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, n_out))


class _Sqrt(nn.Module):
    """Finite loss with an infinite gradient: logits = sqrt(w) at w = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sqrt(self.w).expand(x.shape[0], 2)


def test_accuracy_hand_values() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert math.isnan(accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="logits"):
        accuracy(logits, torch.tensor([0, 1]))


def test_firing_rate_penalty_hand_values() -> None:
    layer1 = torch.zeros(1, 4, 2, dtype=torch.float64)
    layer1[0, 1, 0] = layer1[0, 3, 0] = 1  # neuron 0 rate 0.5, neuron 1 rate 0
    layer2 = torch.ones(2, 4, 1, dtype=torch.float64)  # rate 1
    layer1.requires_grad_(True)
    penalty = firing_rate_penalty([layer1, layer2], 0.25)
    assert penalty.item() == pytest.approx((0.25**2 + 0.25**2) / 2 + 0.75**2, abs=1e-15)
    penalty.backward()
    # d/ds of mean_h (mean_{b,t} s - r)^2 = 2 (r_h - r*) / (H * B * T)
    expected = torch.tensor([2 * 0.25 / 8, 2 * -0.25 / 8], dtype=torch.float64).expand(1, 4, 2)
    assert torch.allclose(layer1.grad, expected, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="target_rate"):
        firing_rate_penalty([layer2], 1.5)
    with pytest.raises(ValueError, match="spikes"):
        firing_rate_penalty([], 0.1)


def test_layer_name() -> None:
    assert layer_name("hidden.0.weight") == "hidden.0"
    assert layer_name("readout.bias") == "readout"
    assert layer_name("w") == "w"


def test_train_epoch_statistics_match_manual_single_batch() -> None:
    ds = make_synthetic(n_channels=5, samples_per_class=20).train
    model = _mlp(5, 2)
    reference = copy.deepcopy(model)
    loader = make_loader(ds, batch_size=len(ds), view="features")
    stats = train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.1))
    logits = reference(ds.features)
    loss = F.cross_entropy(logits, ds.labels)
    loss.backward()
    per_layer = {
        "0": math.sqrt(sum(float(p.grad.pow(2).sum()) for p in reference[0].parameters())),
        "2": math.sqrt(sum(float(p.grad.pow(2).sum()) for p in reference[2].parameters())),
    }
    assert stats.n_samples == len(ds)
    assert stats.loss == pytest.approx(loss.item(), rel=1e-6)
    assert stats.acc == pytest.approx(accuracy(logits, ds.labels))
    assert stats.grad_norms.keys() == per_layer.keys()
    for key, value in per_layer.items():
        assert stats.grad_norms[key] == pytest.approx(value, rel=1e-5)
    assert stats.grad_norm == pytest.approx(math.hypot(*per_layer.values()), rel=1e-5)
    assert stats.seconds > 0
    assert stats.rate_loss == 0.0
    for p, q in zip(model.parameters(), reference.parameters()):  # the step was applied: p = q - lr * grad
        assert torch.allclose(p, q - 0.1 * q.grad, atol=1e-6)


def test_grad_clip_limits_update() -> None:
    ds = make_synthetic(n_channels=5).train
    model = _mlp(5, 2)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    loader = make_loader(ds, batch_size=len(ds), view="features")
    stats = train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=1.0), grad_clip=1e-3)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert stats.grad_norm > 1e-2  # statistics keep the unclipped norm
    assert (after - before).norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_evaluate_matches_manual_and_restores_mode() -> None:
    ds = make_synthetic(n_channels=5, samples_per_class=30).train
    model = _mlp(5, 2)
    model.train()
    stats = evaluate(model, make_loader(ds, batch_size=7, view="features"))
    with torch.no_grad():
        logits = model(ds.features)
    assert stats.n_samples == len(ds)
    assert stats.loss == pytest.approx(F.cross_entropy(logits, ds.labels).item(), rel=1e-6)
    assert stats.acc == pytest.approx(accuracy(logits, ds.labels))
    assert model.training
    model.eval()
    evaluate(model, make_loader(ds, batch_size=7, view="features"))
    assert not model.training


def test_nan_loss_raises_without_step() -> None:
    ds = make_synthetic(n_channels=5).train
    model = _mlp(5, 2)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(DivergenceError, match="non-finite loss") as info:
        train_epoch(
            model,
            make_loader(ds, batch_size=8, view="features"),
            torch.optim.SGD(model.parameters(), lr=0.1),
            loss_fn=lambda logits, y: F.cross_entropy(logits, y) * float("nan"),
        )
    assert info.value.batch == 0
    assert math.isnan(info.value.loss)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_infinite_gradient_raises() -> None:
    ds = make_synthetic(n_channels=5).train
    model = _Sqrt()
    with pytest.raises(DivergenceError, match="gradient norm") as info:
        train_epoch(model, make_loader(ds, batch_size=8, view="features"), torch.optim.SGD(model.parameters(), lr=0.1))
    assert info.value.loss == pytest.approx(math.log(2))
    assert not math.isfinite(info.value.grad_norm)
    assert model.w.item() == 0.0


def test_fit_divergence_reports_epoch_and_history() -> None:
    ds = make_synthetic(n_channels=5).train
    model = _mlp(5, 2)
    calls = {"n": 0}
    n_batches = len(make_loader(ds, batch_size=16))

    def flaky(logits: Tensor, y: Tensor) -> Tensor:
        calls["n"] += 1
        loss = F.cross_entropy(logits, y)
        return loss * float("inf") if calls["n"] > n_batches else loss

    with pytest.raises(DivergenceError) as info:
        fit(
            model,
            make_loader(ds, batch_size=16, view="features"),
            epochs=3,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loss_fn=flaky,
            progress=False,
        )
    assert info.value.epoch == 2
    assert [r.epoch for r in info.value.history] == [1]


def test_fit_logs_each_epoch_and_stops_early(caplog: pytest.LogCaptureFixture) -> None:
    splits = make_synthetic(n_channels=5)
    model = _mlp(5, 2)
    with caplog.at_level(logging.INFO, logger="evoexp.training"):
        history = fit(
            model,
            make_loader(splits.train, batch_size=16, view="features"),
            make_loader(splits.val, batch_size=16, view="features"),
            epochs=3,
            optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
            label="ann",
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "evoexp.training"]
    assert len(lines) == 3
    assert lines[2].startswith("ann epoch 3/3") and "val loss" in lines[2]
    assert [r.epoch for r in history] == [1, 2, 3]
    assert all(isinstance(r, EpochRecord) and r.val_acc is not None for r in history)
    assert history[0].to_dict()["epoch"] == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="evoexp.training"):
        stopped = fit(
            model,
            make_loader(splits.train, batch_size=16, view="features"),
            epochs=5,
            optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
            progress=False,
            on_epoch=lambda record: record.epoch == 2,
        )
    assert len(stopped) == 2
    assert stopped[-1].val_loss is None
    assert not [r for r in caplog.records if r.name == "evoexp.training"]


def test_fit_rejects_bad_args() -> None:
    ds = make_synthetic(n_channels=5).train
    model = _mlp(5, 2)
    loader = make_loader(ds, batch_size=8, view="features")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, loader, epochs=0, optimizer=opt)
    with pytest.raises(ValueError, match="rate_reg"):
        train_epoch(model, loader, opt, rate_reg=-1.0)
    with pytest.raises(ValueError, match="last_spikes"):
        train_epoch(model, loader, opt, rate_reg=0.1)
    with pytest.raises(ValueError, match="no batches"):
        train_epoch(model, [], opt)


def test_fit_is_deterministic_and_casts_to_float64() -> None:
    splits = make_synthetic(n_channels=5)

    def run() -> list[EpochRecord]:
        model = _mlp(5, 2).double()
        return fit(
            model,
            make_loader(splits.train, batch_size=16, shuffle=True, seed=3, view="features"),
            epochs=2,
            optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
            progress=False,
        )

    a, b = run(), run()
    assert [(r.train_loss, r.grad_norm) for r in a] == [(r.train_loss, r.grad_norm) for r in b]


def test_last_spikes_reads_snn() -> None:
    model = SNN(3, [4, 5], 2, seed=0)
    model(torch.ones(2, 6, 3))
    assert [tuple(s.shape) for s in last_spikes(model)] == [(2, 6, 4), (2, 6, 5)]


def test_rate_regulariser_lowers_snn_firing() -> None:
    splits = make_synthetic(n_channels=10, samples_per_class=32, coding="rate", time_steps=20)
    loader = make_loader(splits.train, batch_size=8)

    def rate_after(rate_reg: float) -> float:
        model = SNN(10, [16], 2, seed=0, weight_scale=3.0)
        history = fit(
            model,
            loader,
            epochs=3,
            optimizer=torch.optim.Adam(model.parameters(), lr=0.02),
            rate_reg=rate_reg,
            target_rate=0.0,
            progress=False,
        )
        model(splits.train.spikes)
        assert (history[-1].rate_loss > 0) == (rate_reg > 0)
        return model.firing_rates()["hidden.0"]

    free, regularised = rate_after(0.0), rate_after(20.0)
    assert regularised < 0.6 * free


def test_snn_learns_randman() -> None:
    splits = make_randman(n_classes=3, n_channels=20, samples_per_class=200, time_steps=50, alpha=1.0, seed=0)
    model = SNN(splits.n_inputs, [64], splits.n_classes, seed=0, weight_scale=2.0)
    history = fit(
        model,
        make_loader(splits.train, batch_size=32, shuffle=True, seed=0),
        make_loader(splits.val, batch_size=256),
        epochs=8,
        optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
        progress=False,
    )
    test = evaluate(model, make_loader(splits.test, batch_size=256))
    assert history[-1].train_loss < 0.5 * history[0].train_loss
    assert history[-1].val_acc is not None and history[-1].val_acc > 0.75
    assert test.acc > 0.75  # chance is 1/3
    assert set(history[-1].grad_norms) == {"hidden.0", "readout"}


def test_ann_learns_randman_features() -> None:
    splits = make_randman(n_classes=3, n_channels=20, samples_per_class=200, time_steps=50, alpha=1.0, seed=0)
    torch.manual_seed(0)
    model = ANN(splits.n_features, [64], splits.n_classes)
    fit(
        model,
        make_loader(splits.train, batch_size=32, shuffle=True, view="features"),
        epochs=8,
        optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
        progress=False,
    )
    assert evaluate(model, make_loader(splits.test, batch_size=256, view="features")).acc > 0.8


def _record(epoch: int, val_acc: float | None, val_loss: float | None) -> EpochRecord:
    return EpochRecord(epoch=epoch, train_loss=1.0, train_acc=0.5, val_loss=val_loss, val_acc=val_acc, grad_norm=1.0)


def test_best_weights_keep_highest_val_acc_ties_to_lower_loss_and_restore() -> None:
    model = nn.Linear(2, 2)
    best = BestWeights()
    with pytest.raises(RuntimeError, match="no best-validation weights"):
        best.restore(model)
    steps = [
        (1, 0.5, 0.9, True),
        (2, None, None, False),
        (3, 0.7, 0.8, True),
        (4, 0.7, 0.85, False),
        (5, 0.7, 0.6, True),
        (6, 0.6, 0.1, False),
        (7, math.nan, 0.1, False),
    ]
    kept = {}
    for epoch, acc, loss, expected in steps:
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        assert best.update(model, _record(epoch, acc, loss)) is expected, epoch
        if expected:
            kept = {k: v.clone() for k, v in model.state_dict().items()}
    assert (best.epoch, best.val_acc, best.val_loss) == (5, 0.7, 0.6)
    best.restore(model)
    assert torch.equal(model.weight, kept["weight"])
    assert model.weight[0, 0].item() == 5.0


def test_fit_with_best_weights_keeps_the_best_validation_epoch() -> None:
    splits = make_synthetic(n_channels=5)
    model = _mlp(5, 2)
    best = BestWeights()
    history = fit(
        model,
        make_loader(splits.train, batch_size=16, view="features"),
        make_loader(splits.val, batch_size=16, view="features"),
        epochs=4,
        optimizer=torch.optim.Adam(model.parameters(), lr=0.05),
        progress=False,
        best=best,
    )
    top = max(history, key=lambda r: (r.val_acc, -r.val_loss, -r.epoch))
    assert best.epoch == top.epoch
    restored = evaluate(best.restore(model), make_loader(splits.val, batch_size=16, view="features"))
    assert (restored.acc, restored.loss) == pytest.approx((top.val_acc, top.val_loss), rel=1e-12)


def _blobs(n: int, seed: int) -> torch.utils.data.DataLoader:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=gen) * 0.5 + (2.0 * y - 1.0).unsqueeze(1)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def test_train_model_measures_epoch_zero_keeps_best_weights_and_tests_best_and_last() -> None:
    model = _mlp(2, 2)
    train, val, test = _blobs(64, 0), _blobs(32, 1), _blobs(32, 2)
    seen: list[tuple[int, set[str]]] = []
    initial = evaluate(model, train)
    run = train_model(
        model,
        train,
        val,
        test,
        epochs=6,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
        on_epoch=lambda epoch, metrics: seen.append((epoch, set(metrics))),
        label="ann",
        progress=False,
    )
    assert [e for e, _ in seen] == list(range(7))
    assert seen[0][1] == {"train/eval_loss", "train/eval_acc", "val/loss", "val/acc"}
    assert {"train/loss", "train/eval_loss", "grad_norm", "epoch_seconds"} <= seen[1][1]
    assert run.initial_train == initial
    assert all(r.train_eval_loss is not None for r in run.history)
    best = run.history[run.best_epoch - 1]
    assert best.val_acc == max(r.val_acc for r in run.history)
    assert evaluate(model, val).acc == best.val_acc  # the model holds the best-validation weights
    assert run.test_best == evaluate(model, test)
    assert run.test_last is not None and run.stop_epoch is None and run.diverged is None
    summary = run.summary()
    assert summary["ann/test/acc_best"] == run.test_best.acc and summary["ann/best_epoch"] == run.best_epoch
    assert summary["ann/val/best_acc"] == best.val_acc and summary["ann/epochs"] == 6
    again = TrainingRun.from_dict(json.loads(run.to_json()))
    assert again.to_dict() == run.to_dict()
    with pytest.raises(ValueError, match="not a serialised TrainingRun"):
        TrainingRun.from_dict({"history": []})


def test_train_model_stops_early_and_records_divergence_without_testing() -> None:
    model = _mlp(2, 2)
    frozen = train_model(
        model,
        _blobs(32, 0),
        _blobs(16, 1),
        _blobs(16, 2),
        epochs=10,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        patience=2,
        progress=False,
    )
    assert (frozen.stop_epoch, len(frozen.history), frozen.best_epoch) == (3, 3, 1)
    calls = {"n": 0}

    def flaky(logits: Tensor, y: Tensor) -> Tensor:
        calls["n"] += 1
        return F.cross_entropy(logits, y) * (math.nan if calls["n"] > 8 else 1.0)  # epoch 1 + evaluations, then NaN

    diverging = _mlp(2, 2)
    run = train_model(
        diverging,
        _blobs(32, 0),
        _blobs(16, 1),
        _blobs(16, 2),
        epochs=5,
        optimizer=torch.optim.SGD(diverging.parameters(), lr=0.1),
        loss_fn=flaky,
        progress=False,
    )
    assert run.diverged is not None and "diverged in epoch" in run.diverged
    assert math.isnan(run.divergence_loss)
    assert run.test_best is None and run.test_last is None
    assert math.isnan(run.best_val_acc)
    assert run.best_epoch == 1 and len(run.history) == 1  # the finite epoch's weights are kept
    assert not any("/test/" in key for key in run.summary())
