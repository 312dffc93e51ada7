"""Tests of the SNN-versus-ANN benchmark on the real evoexp SNN, its ANN twin and synthetic data."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from evoexp.data import DatasetSplits, make_synthetic
from evoexp.models import SNN, ann_twin
from evoexp.verification.benchmark import (
    BenchmarkLoaders,
    BenchmarkResult,
    ComparativeBenchmark,
    MeanStd,
    ModelBenchmark,
    SeedRun,
)
from evoexp.verification.report import generate_report


@pytest.fixture(scope="module")
def splits() -> DatasetSplits:
    return make_synthetic(n_classes=2, n_channels=8, samples_per_class=24, time_steps=10, seed=0)


def _snn_factory(splits: DatasetSplits) -> Callable[[int], nn.Module]:
    return lambda seed: SNN(splits.n_inputs, [12], splits.n_classes, seed=seed)


def _ann_factory(splits: DatasetSplits) -> Callable[[int], nn.Module]:
    return lambda seed: ann_twin(SNN(splits.n_inputs, [12], splits.n_classes), splits.n_features)


def test_snn_vs_ann_over_two_seeds(splits: DatasetSplits) -> None:
    calls: list[tuple[str, int, int]] = []
    result = ComparativeBenchmark().benchmark_training(
        _snn_factory(splits),
        _ann_factory(splits),
        splits,
        epochs=3,
        seeds=(0, 1),
        lr=1e-2,
        batch_size=16,
        on_epoch=lambda name, seed, epoch, metrics: calls.append((name, seed, epoch)),
    )
    assert isinstance(result, BenchmarkResult)
    assert result.passed is None
    assert result.torch_threads == torch.get_num_threads()
    assert result.eval_split == "val"
    assert result.time_comparable
    assert len(calls) == 2 * 2 * 4  # epoch 0 (before training) and three epochs per model and seed
    assert calls[:4] == [("snn", 0, 0), ("snn", 0, 1), ("snn", 0, 2), ("snn", 0, 3)]
    for model in (result.snn, result.ann):
        assert [r.seed for r in model.runs] == [0, 1]
        for run in model.runs:
            assert len(run.train_loss) == len(run.eval_acc) == len(run.epoch_seconds) == 3
            assert run.time_per_epoch == pytest.approx(sum(run.epoch_seconds[1:]) / 2)  # warm-up excluded
            assert run.torch_threads == torch.get_num_threads()
            assert run.best_epoch == max(range(1, 4), key=lambda e: (run.eval_acc[e - 1], -run.eval_loss[e - 1], -e))
            assert 0.0 <= run.test_acc_best <= 1.0 and 0.0 <= run.test_acc_last <= 1.0
        assert model.test_acc_best.n == 2
        finals = [r.eval_acc[-1] for r in model.runs]
        assert model.final_eval_acc.mean == pytest.approx(statistics.mean(finals))
        assert model.final_eval_acc.std == pytest.approx(statistics.stdev(finals))
        assert model.final_eval_acc.n == 2
    snn = SNN(splits.n_inputs, [12], splits.n_classes)
    assert result.snn.n_params == sum(p.numel() for p in snn.parameters())
    assert result.ann.n_params == sum(p.numel() for p in ann_twin(snn, splits.n_features).parameters())
    assert result.param_ratio == result.snn.n_params / result.ann.n_params
    assert result.time_ratio == result.snn.time_per_epoch.mean / result.ann.time_per_epoch.mean
    assert result.acc_gap == result.snn.final_eval_acc.mean - result.ann.final_eval_acc.mean
    # Different seeds give different initialisations, hence different curves.
    assert result.snn.runs[0].train_loss != result.snn.runs[1].train_loss


def test_same_seed_reproduces_the_curves(splits: DatasetSplits) -> None:
    bench = ComparativeBenchmark()
    kwargs = {"epochs": 2, "seeds": (3,), "batch_size": 16}
    first = bench.benchmark_training(_snn_factory(splits), _ann_factory(splits), splits, **kwargs)
    second = bench.benchmark_training(_snn_factory(splits), _ann_factory(splits), splits, **kwargs)
    assert first.snn.runs[0].train_loss == second.snn.runs[0].train_loss
    assert first.ann.runs[0].eval_loss == second.ann.runs[0].eval_loss


def _blob_loader(seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(32) % 2
    x = torch.randn(32, 3, generator=gen) + 2.0 * y.unsqueeze(1)
    return DataLoader(TensorDataset(x, y), batch_size=8)


def test_ready_models_with_loaders_are_not_mutated() -> None:
    snn_like = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2))
    ann = nn.Sequential(nn.Linear(3, 2))
    before = [p.detach().clone() for p in snn_like.parameters()]
    loaders = BenchmarkLoaders(snn_train=_blob_loader(0), ann_train=_blob_loader(0), snn_eval=_blob_loader(1))
    result = ComparativeBenchmark().benchmark_training(
        snn_like, ann, loaders, epochs=2, warmup_epochs=0, optimizer=lambda p: torch.optim.SGD(p, lr=0.1)
    )
    assert all(torch.equal(a, b) for a, b in zip(before, snn_like.parameters()))
    assert result.eval_split == "loaders"
    assert result.optimizer == "SGD"
    assert result.lr == 0.1
    assert result.snn.n_params == 3 * 6 + 6 + 6 * 2 + 2
    assert result.ann.runs[0].time_per_epoch == pytest.approx(sum(result.ann.runs[0].epoch_seconds) / 2)
    assert math.isnan(result.snn.final_eval_acc.std)  # one seed: no standard deviation
    data = json.loads(result.to_json())
    assert data == result.to_dict()
    assert data["snn"]["runs"][0]["train_loss"] == result.snn.runs[0].train_loss
    summary = result.summary()
    assert summary["benchmark/time_ratio"] == result.time_ratio
    assert summary["benchmark/snn_params"] == result.snn.n_params
    assert all(k.startswith("benchmark/") for k in summary)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"seeds": (0, 1)}, "snn"),
        ({"seeds": ()}, "seeds"),
        ({"epochs": 1}, "epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"optimizer": "lbfgsx"}, "optimizer"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_bad_parameters_are_rejected(kwargs: dict[str, object], name: str) -> None:
    loaders = BenchmarkLoaders(snn_train=_blob_loader(0), ann_train=_blob_loader(0))
    with pytest.raises(ValueError, match=name):
        ComparativeBenchmark().benchmark_training(nn.Linear(3, 2), nn.Linear(3, 2), loaders, **kwargs)


def test_mean_std_ignores_diverged_runs() -> None:
    agg = MeanStd.of([1.0, float("nan"), 3.0])
    assert (agg.mean, agg.n) == (2.0, 2)
    assert agg.std == pytest.approx(math.sqrt(2.0))


def _model(name: str, threads: int | None, seconds: float) -> ModelBenchmark:
    run = SeedRun(0, [1.0], [0.5], [1.0], [0.5], [seconds, seconds], warmup_epochs=1, torch_threads=threads)
    return ModelBenchmark(name, 10, [run])


def _result(snn_threads: int | None, ann_threads: int | None) -> BenchmarkResult:
    return BenchmarkResult(
        snn=_model("snn", snn_threads, 2.0),
        ann=_model("ann", ann_threads, 1.0),
        seeds=[0],
        epochs=2,
        warmup_epochs=1,
        optimizer="adam",
        lr=1e-3,
        eval_split="val",
    )


def test_time_ratio_only_when_thread_counts_match() -> None:
    same = _result(2, 2)
    assert same.time_comparable and same.torch_threads == 2 and same.time_ratio == 2.0
    for snn_threads, ann_threads in ((1, 4), (1, None), (None, None)):
        other = _result(snn_threads, ann_threads)
        assert not other.time_comparable and other.torch_threads is None
        assert math.isnan(other.time_ratio)
        summary = other.summary()
        assert summary["benchmark/time_comparable"] == 0.0 and math.isnan(summary["benchmark/time_ratio"])
    assert _result(1, 4).summary()["benchmark/ann_torch_threads"] == 4.0
    report = generate_report({"benchmark": _result(1, 4)})
    assert "torch threads SNN 1, ANN 4 (different: the time ratio is not comparable)" in report
