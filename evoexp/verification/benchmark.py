"""SNN versus its ANN twin: the same split, seeds, optimiser and epochs; accuracy, loss, time and size.

:meth:`ComparativeBenchmark.benchmark_training` trains both models once per seed with
:func:`evoexp.training.train_model` and compares them with :func:`compare_training`, which the Hydra job calls too
with the runs it trained (or reused) itself. Per seed it keeps the per-epoch curves and the test numbers at the
best-validation and at the last epoch; over seeds it reports the mean and sample standard deviation (NaN for a
single seed) of the final losses and accuracies and of the time per epoch, plus the SNN/ANN ratios.

Timing: the wall time of each training epoch (evaluation excluded); the first ``warmup_epochs`` epochs are trained
but left out of the time per epoch (allocator and kernel warm-up). The torch intra-op thread count of every run is
recorded because it changes the times more than anything else on a CPU: the SNN/ANN time ratio is computed only
when both models ran with the same thread count, and is marked not comparable (NaN, ``time_comparable=False``)
otherwise, e.g. for an ANN baseline reused from a process with other settings.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn

from evoexp.data.dataset import DatasetSplits, make_loader
from evoexp.results import Result
from evoexp.stats import describe
from evoexp.training import TrainingRun, train_model
from evoexp.verification.stability import Batch, LossFn, OptimizerFactory

__all__ = [
    "BenchmarkLoaders",
    "BenchmarkResult",
    "ComparativeBenchmark",
    "MeanStd",
    "ModelBenchmark",
    "ModelSpec",
    "RunCallback",
    "SeedRun",
    "compare_training",
]

ModelSpec = nn.Module | Callable[[int], nn.Module]
"""A ready model (benchmarked for one seed, on a deep copy) or a factory ``seed -> fresh model``."""

RunCallback = Callable[[str, int, int, Mapping[str, float]], None]
"""Called for epoch 0 and after each epoch as ``on_epoch(model_name, seed, epoch, metrics)``, metrics as in
:meth:`evoexp.training.EpochRecord.metrics`; ``model_name`` is ``"snn"`` or ``"ann"``."""

_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


@dataclass(frozen=True)
class BenchmarkLoaders:
    """Ready loaders for both models (the SNN's yield spikes, the ANN's the static features).

    With ready loaders every seed sees the same batches; pass :class:`evoexp.data.DatasetSplits` instead to get
    loaders whose shuffling is seeded by each seed.

    Attributes:
        snn_train: SNN training batches.
        snn_eval: SNN evaluation batches (None: evaluate on ``snn_train``).
        ann_train: ANN training batches.
        ann_eval: ANN evaluation batches (None: evaluate on ``ann_train``).
        snn_test: SNN test batches (None: no test numbers).
        ann_test: ANN test batches (None: no test numbers).
    """

    snn_train: Iterable[Batch]
    ann_train: Iterable[Batch]
    snn_eval: Iterable[Batch] | None = None
    ann_eval: Iterable[Batch] | None = None
    snn_test: Iterable[Batch] | None = None
    ann_test: Iterable[Batch] | None = None


@dataclass
class MeanStd:
    """Mean and sample standard deviation over seeds (std is NaN for one value).

    Attributes:
        mean: Mean of the finite values (NaN if none).
        std: Sample standard deviation (``ddof=1``) of the finite values.
        n: Number of finite values.

    """

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> MeanStd:
        """Aggregate ``values``, ignoring NaN/Inf (diverged runs)."""
        summary = describe(values)
        return cls(summary.mean, summary.std, summary.n)


@dataclass
class SeedRun:
    """One model trained with one seed.

    Attributes:
        seed: The seed (global torch seed, factory argument and loader shuffling).
        train_loss: Training-set loss after each epoch (evaluated as at epoch 0).
        train_acc: Training-set accuracy after each epoch (evaluated the same way).
        eval_loss: Evaluation loss after each epoch.
        eval_acc: Evaluation accuracy after each epoch.
        epoch_seconds: Wall time of each training epoch.
        warmup_epochs: Leading epochs left out of ``time_per_epoch``.
        diverged: Whether training stopped on a NaN/Inf loss or gradient.
        torch_threads: Torch intra-op threads during training (None: unknown).
        best_epoch: The best-validation epoch whose weights were kept (None: none qualified).
        test_acc_best: Test accuracy with the best-validation weights (NaN: not tested).
        test_acc_last: Test accuracy with the last epoch's weights (NaN: not tested).
        time_per_epoch: Mean of ``epoch_seconds`` without the warm-up epochs (derived; NaN if none is left).
    """

    seed: int
    train_loss: list[float]
    train_acc: list[float]
    eval_loss: list[float]
    eval_acc: list[float]
    epoch_seconds: list[float]
    warmup_epochs: int
    diverged: bool = False
    torch_threads: int | None = None
    best_epoch: int | None = None
    test_acc_best: float = math.nan
    test_acc_last: float = math.nan
    time_per_epoch: float = field(init=False)

    def __post_init__(self) -> None:
        timed = self.epoch_seconds[self.warmup_epochs :]
        self.time_per_epoch = sum(timed) / len(timed) if timed else float("nan")

    @classmethod
    def from_training(cls, run: TrainingRun, *, seed: int, warmup_epochs: int) -> SeedRun:
        """The benchmark's view of a :class:`~evoexp.training.TrainingRun` (evaluation = its validation set)."""

        def curve(values: Iterable[float | None]) -> list[float]:
            return [math.nan if v is None else float(v) for v in values]

        return cls(
            seed=seed,
            train_loss=curve(r.train_eval_loss for r in run.history),
            train_acc=curve(r.train_eval_acc for r in run.history),
            eval_loss=curve(r.val_loss for r in run.history),
            eval_acc=curve(r.val_acc for r in run.history),
            epoch_seconds=[r.seconds for r in run.history],
            warmup_epochs=warmup_epochs,
            diverged=run.diverged is not None,
            torch_threads=run.torch_threads,
            best_epoch=run.best_epoch,
            test_acc_best=math.nan if run.test_best is None else run.test_best.acc,
            test_acc_last=math.nan if run.test_last is None else run.test_last.acc,
        )

    def final(self, curve: Literal["train_loss", "train_acc", "eval_loss", "eval_acc"]) -> float:
        """Last value of a curve; NaN for a diverged or empty run."""
        values: list[float] = getattr(self, curve)
        return values[-1] if values and not self.diverged else float("nan")


@dataclass
class ModelBenchmark:
    """One model over all seeds.

    Attributes:
        name: ``"snn"`` or ``"ann"``.
        n_params: Trainable parameters.
        runs: One :class:`SeedRun` per seed.
        final_train_loss: Final training loss over seeds.
        final_train_acc: Final training accuracy over seeds.
        final_eval_loss: Final evaluation loss over seeds.
        final_eval_acc: Final evaluation accuracy over seeds.
        test_acc_best: Test accuracy with the best-validation weights over seeds.
        test_acc_last: Test accuracy with the last epoch's weights over seeds.
        time_per_epoch: Seconds per training epoch (warm-up excluded) over seeds.
        torch_threads: The thread count all runs shared (None when they differ or are unknown).
    """

    name: str
    n_params: int
    runs: list[SeedRun]
    final_train_loss: MeanStd = field(init=False)
    final_train_acc: MeanStd = field(init=False)
    final_eval_loss: MeanStd = field(init=False)
    final_eval_acc: MeanStd = field(init=False)
    test_acc_best: MeanStd = field(init=False)
    test_acc_last: MeanStd = field(init=False)
    time_per_epoch: MeanStd = field(init=False)
    torch_threads: int | None = field(init=False)

    def __post_init__(self) -> None:
        self.final_train_loss = MeanStd.of([r.final("train_loss") for r in self.runs])
        self.final_train_acc = MeanStd.of([r.final("train_acc") for r in self.runs])
        self.final_eval_loss = MeanStd.of([r.final("eval_loss") for r in self.runs])
        self.final_eval_acc = MeanStd.of([r.final("eval_acc") for r in self.runs])
        self.test_acc_best = MeanStd.of([r.test_acc_best for r in self.runs])
        self.test_acc_last = MeanStd.of([r.test_acc_last for r in self.runs])
        self.time_per_epoch = MeanStd.of([r.time_per_epoch for r in self.runs])
        threads = {r.torch_threads for r in self.runs}
        self.torch_threads = threads.pop() if len(threads) == 1 else None


def _ratio(a: float, b: float) -> float:
    return a / b if b != 0 and math.isfinite(a) and math.isfinite(b) else float("nan")


@dataclass
class BenchmarkResult(Result):
    """Outcome of :meth:`ComparativeBenchmark.benchmark_training` (informational: ``passed`` is None).

    Attributes:
        snn: The SNN's numbers.
        ann: The ANN twin's numbers.
        seeds: Seeds used.
        epochs: Epochs per run (warm-up included).
        warmup_epochs: Leading epochs excluded from the time per epoch.
        optimizer: Optimiser name; for a factory, the class name of what it built for the first run.
        lr: Learning rate; for a factory, the first parameter group's ``lr`` of the first run (NaN if none).
        eval_split: Which data the evaluation numbers come from (``"val"``, ``"test"``, ``"train"`` or
            ``"loaders"`` for caller-supplied loaders).
        torch_threads: The thread count both models ran with (None when they differ: times not comparable).
        time_comparable: Whether both models' times were measured with one known thread count.
        time_ratio: SNN / ANN mean seconds per epoch (NaN when not ``time_comparable``).
        param_ratio: SNN / ANN trainable parameters.
        loss_ratio: SNN / ANN mean final evaluation loss.
        acc_gap: SNN − ANN mean final evaluation accuracy.

    """

    snn: ModelBenchmark
    ann: ModelBenchmark
    seeds: list[int]
    epochs: int
    warmup_epochs: int
    optimizer: str
    lr: float
    eval_split: str
    torch_threads: int | None = field(init=False)
    time_comparable: bool = field(init=False)
    time_ratio: float = field(init=False)
    param_ratio: float = field(init=False)
    loss_ratio: float = field(init=False)
    acc_gap: float = field(init=False)

    check: ClassVar[str] = "benchmark"

    def __post_init__(self) -> None:
        self.time_comparable = self.snn.torch_threads is not None and self.snn.torch_threads == self.ann.torch_threads
        self.torch_threads = self.snn.torch_threads if self.time_comparable else None
        self.time_ratio = (
            _ratio(self.snn.time_per_epoch.mean, self.ann.time_per_epoch.mean) if self.time_comparable else math.nan
        )
        self.param_ratio = _ratio(float(self.snn.n_params), float(self.ann.n_params))
        self.loss_ratio = _ratio(self.snn.final_eval_loss.mean, self.ann.final_eval_loss.mean)
        self.acc_gap = self.snn.final_eval_acc.mean - self.ann.final_eval_acc.mean

    def summary(self) -> dict[str, float]:
        """Flat metrics under ``benchmark/…`` (per model: ``benchmark/<snn|ann>_<metric>``).

        ``benchmark/time_ratio`` is NaN and ``benchmark/time_comparable`` 0 when the thread counts differ.
        """
        out = {
            "benchmark/time_ratio": self.time_ratio,
            "benchmark/param_ratio": self.param_ratio,
            "benchmark/loss_ratio": self.loss_ratio,
            "benchmark/acc_gap": self.acc_gap,
            "benchmark/time_comparable": float(self.time_comparable),
        }
        for model in (self.snn, self.ann):
            out[f"benchmark/{model.name}_params"] = float(model.n_params)
            out[f"benchmark/{model.name}_torch_threads"] = (
                math.nan if model.torch_threads is None else float(model.torch_threads)
            )
            out[f"benchmark/{model.name}_test_acc_best"] = model.test_acc_best.mean
            out[f"benchmark/{model.name}_test_acc_last"] = model.test_acc_last.mean
            out[f"benchmark/{model.name}_time_per_epoch"] = model.time_per_epoch.mean
            out[f"benchmark/{model.name}_eval_acc"] = model.final_eval_acc.mean
            out[f"benchmark/{model.name}_eval_loss"] = model.final_eval_loss.mean
            out[f"benchmark/{model.name}_train_loss"] = model.final_train_loss.mean
        return out


def _build(spec: ModelSpec, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if isinstance(spec, nn.Module):
        return copy.deepcopy(spec)
    model = spec(seed)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model factory returned {type(model).__name__}, not an nn.Module")
    return model


class ComparativeBenchmark:
    """Trains an SNN and its ANN twin under identical conditions and compares them."""

    def benchmark_training(
        self,
        snn: ModelSpec,
        ann: ModelSpec,
        data: DatasetSplits | BenchmarkLoaders,
        *,
        epochs: int = 5,
        seeds: Sequence[int] = (0,),
        lr: float = 1e-3,
        optimizer: str | OptimizerFactory = "adam",
        batch_size: int = 64,
        eval_split: Literal["val", "test"] = "val",
        warmup_epochs: int = 1,
        loss_fn: LossFn | None = None,
        grad_clip: float | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        rate_reg: float = 0.0,
        target_rate: float = 0.05,
        on_epoch: RunCallback | None = None,
    ) -> BenchmarkResult:
        """Train ``snn`` and ``ann`` for ``epochs`` epochs per seed and compare them.

        For each seed both models get the same global torch seed, the same loader shuffling (built from
        ``data`` when it is a :class:`evoexp.data.DatasetSplits`: spikes for the SNN, static features for the ANN)
        and a fresh optimiser of the same kind and learning rate, and are trained by
        :func:`evoexp.training.train_model` (early stopping and the best-validation weights as there). The models
        passed in are never trained: ready models are deep-copied, factories are called with the seed.

        Args:
            snn: SNN (ready model or factory ``seed -> model``).
            ann: ANN twin (ready model or factory).
            data: A ``DatasetSplits`` (loaders built per seed) or :class:`BenchmarkLoaders`.
            epochs: Epochs per run, warm-up included; must exceed ``warmup_epochs``.
            seeds: Seeds; more than one needs factories for both models.
            lr: Learning rate of a named optimiser.
            optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"rmsprop"``, or a factory ``params -> optimizer``
                (then ``lr`` is ignored).
            batch_size: Batch size of loaders built from ``DatasetSplits``.
            eval_split: Split of ``DatasetSplits`` to evaluate on (and to select the best weights on).
            warmup_epochs: Leading epochs excluded from the time per epoch (>= 0).
            loss_fn: ``loss_fn(logits, targets) -> scalar``; cross-entropy if None.
            grad_clip: Total gradient-norm clip of each step (None: no clipping).
            patience: Early stopping on the evaluation loss after this many epochs without improvement (None: off).
            min_delta: Early-stopping minimum improvement.
            rate_reg: Weight of the firing-rate penalty, applied to the SNN only.
            target_rate: Target firing rate of the penalty.
            on_epoch: Called for epoch 0 and after every epoch of every run (see :data:`RunCallback`).

        Returns:
            A :class:`BenchmarkResult`.

        Raises:
            ValueError: If ``seeds`` is empty or repeats a seed, several seeds come with a ready model, an epoch
                count, ``lr``, ``batch_size``, ``eval_split`` or ``optimizer`` is invalid.
        """
        seeds = _checked_seeds(snn, ann, seeds)
        _check_schedule(epochs=epochs, warmup_epochs=warmup_epochs, eval_split=eval_split)
        trainer = _Trainer(
            *_optimizer_factory(optimizer, lr),
            epochs=epochs,
            loss_fn=loss_fn,
            rate_reg=rate_reg,
            target_rate=target_rate,
            grad_clip=grad_clip,
            patience=patience,
            min_delta=min_delta,
            on_epoch=on_epoch,
        )
        return trainer.benchmark(
            snn, ann, data, seeds, batch_size=batch_size, eval_split=eval_split, warmup_epochs=warmup_epochs
        )


@dataclass
class _Trainer:
    """Trains the benchmark's runs with shared settings; names a factory's optimiser after the first one it builds.

    Attributes:
        make_optimizer: ``params -> optimizer``, called once per run.
        optimizer_name: The optimiser's name (``""`` for a factory until its first run).
        lr: Its learning rate (NaN for a factory until its first run).
        epochs: Epochs per run.
        loss_fn: The loss (cross-entropy if None).
        rate_reg: Weight of the firing-rate penalty, applied to the SNN only.
        target_rate: Target firing rate of the penalty.
        grad_clip: Gradient-norm clip (None: off).
        patience: Early-stopping patience (None: off).
        min_delta: Early-stopping minimum improvement.
        on_epoch: The benchmark's epoch callback (None: none).
    """

    make_optimizer: OptimizerFactory
    optimizer_name: str
    lr: float
    epochs: int
    loss_fn: LossFn | None
    rate_reg: float
    target_rate: float
    grad_clip: float | None
    patience: int | None
    min_delta: float
    on_epoch: RunCallback | None

    def benchmark(
        self,
        snn: ModelSpec,
        ann: ModelSpec,
        data: DatasetSplits | BenchmarkLoaders,
        seeds: list[int],
        *,
        batch_size: int,
        eval_split: str,
        warmup_epochs: int,
    ) -> BenchmarkResult:
        """Per seed, train the SNN and then the ANN on that seed's loaders; compare them."""
        runs: dict[str, list[TrainingRun]] = {"snn": [], "ann": []}
        for seed in seeds:
            loaders = (
                data
                if isinstance(data, BenchmarkLoaders)
                else _loaders_from_splits(data, batch_size=batch_size, seed=seed, eval_split=eval_split)
            )
            runs["snn"].append(self.train("snn", snn, seed, loaders.snn_train, loaders.snn_eval, loaders.snn_test))
            runs["ann"].append(self.train("ann", ann, seed, loaders.ann_train, loaders.ann_eval, loaders.ann_test))
        return compare_training(
            runs["snn"],
            runs["ann"],
            seeds=seeds,
            epochs=self.epochs,
            warmup_epochs=warmup_epochs,
            optimizer=self.optimizer_name,
            lr=self.lr,
            eval_split="loaders" if isinstance(data, BenchmarkLoaders) else eval_split,
        )

    def train(
        self,
        name: str,
        spec: ModelSpec,
        seed: int,
        train: Iterable[Batch],
        held_out: Iterable[Batch] | None,
        test: Iterable[Batch] | None,
    ) -> TrainingRun:
        """Train a fresh ``name`` model for ``seed`` with a fresh optimiser (validated on ``train`` if no held-out)."""
        model = _build(spec, seed)
        built = self.make_optimizer([p for p in model.parameters() if p.requires_grad])
        if not self.optimizer_name:  # a factory: describe what it builds
            self.optimizer_name = type(built).__name__
            self.lr = float(built.param_groups[0].get("lr", math.nan))
        return train_model(
            model,
            train,
            train if held_out is None else held_out,
            test,
            epochs=self.epochs,
            optimizer=built,
            loss_fn=self.loss_fn,
            rate_reg=self.rate_reg if name == "snn" else 0.0,
            target_rate=self.target_rate,
            grad_clip=self.grad_clip,
            patience=self.patience,
            min_delta=self.min_delta,
            on_epoch=None if self.on_epoch is None else _bind(self.on_epoch, name, seed),
            label=name,
        )


def _checked_seeds(snn: ModelSpec, ann: ModelSpec, seeds: Sequence[int]) -> list[int]:
    """The seeds as ints; raise ``ValueError`` if they are empty or repeat, or several come with a ready model."""
    checked = [int(s) for s in seeds]
    if not checked or len(set(checked)) != len(checked):
        raise ValueError(f"seeds must be non-empty and distinct, got {checked!r}")
    for name, spec in (("snn", snn), ("ann", ann)):
        if isinstance(spec, nn.Module) and len(checked) > 1:
            raise ValueError(
                f"{name}: a ready model can only be benchmarked for one seed; "
                "pass a factory seed -> model to re-initialise it per seed"
            )
    return checked


def _check_schedule(*, epochs: int, warmup_epochs: int, eval_split: str) -> None:
    """Raise ``ValueError`` naming the first invalid epoch count or evaluation split."""
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be a non-negative integer, got {warmup_epochs!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= warmup_epochs:
        raise ValueError(f"epochs must be an integer > warmup_epochs ({warmup_epochs}), got {epochs!r}")
    if eval_split not in ("val", "test"):
        raise ValueError(f"eval_split must be 'val' or 'test', got {eval_split!r}")


def _optimizer_factory(optimizer: str | OptimizerFactory, lr: float) -> tuple[OptimizerFactory, str, float]:
    """``(factory, name, lr)`` of a named optimiser; a given factory has no name or lr yet (``""``, nan).

    Raises:
        ValueError: Unknown optimiser name or a non-positive ``lr`` for a named one.
    """
    if not isinstance(optimizer, str):
        return optimizer, "", float("nan")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; available: {', '.join(sorted(_OPTIMIZERS))}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    optimizer_cls = _OPTIMIZERS[optimizer]
    return (lambda params: optimizer_cls(params, lr=lr)), optimizer, float(lr)


def compare_training(
    snn: Sequence[TrainingRun],
    ann: Sequence[TrainingRun],
    *,
    seeds: Sequence[int],
    epochs: int,
    warmup_epochs: int,
    optimizer: str,
    lr: float,
    eval_split: str,
) -> BenchmarkResult:
    """The SNN-vs-ANN comparison of trained runs: one :class:`~evoexp.training.TrainingRun` per seed and model.

    Each run's evaluation numbers are its validation set's (:meth:`SeedRun.from_training`); parameter counts are the
    first run's.

    Args:
        snn: The SNN's runs, in the order of ``seeds``.
        ann: The ANN's runs, in the order of ``seeds``.
        seeds: The seeds.
        epochs: Epoch budget of each run (warm-up included).
        warmup_epochs: Leading epochs left out of the time per epoch.
        optimizer: Name of the optimiser both were trained with.
        lr: Its learning rate.
        eval_split: Where the evaluation numbers come from (``"val"``, ``"test"``, ``"loaders"``).

    Raises:
        ValueError: The run lists and ``seeds`` differ in length, or are empty.
    """
    if not seeds or len(snn) != len(seeds) or len(ann) != len(seeds):
        raise ValueError(
            f"need one run per seed and model, got {len(snn)} SNN and {len(ann)} ANN runs for {len(seeds)} seeds"
        )
    models = {}
    for name, runs in (("snn", snn), ("ann", ann)):
        seed_runs = [SeedRun.from_training(r, seed=seed, warmup_epochs=warmup_epochs) for r, seed in zip(runs, seeds)]
        models[name] = ModelBenchmark(name, runs[0].n_params, seed_runs)
    return BenchmarkResult(
        snn=models["snn"],
        ann=models["ann"],
        seeds=list(seeds),
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        optimizer=optimizer,
        lr=lr,
        eval_split=eval_split,
    )


def _bind(on_epoch: RunCallback, name: str, seed: int) -> Callable[[int, Mapping[str, float]], None]:
    """The per-run epoch callback of ``on_epoch`` for model ``name`` and ``seed``."""
    return lambda epoch, metrics: on_epoch(name, seed, epoch, metrics)


def _loaders_from_splits(data: DatasetSplits, *, batch_size: int, seed: int, eval_split: str) -> BenchmarkLoaders:
    """Spike loaders for the SNN and feature loaders for the ANN, shuffled by ``seed``."""
    held_out = getattr(data, eval_split)
    return BenchmarkLoaders(
        snn_train=make_loader(data.train, batch_size=batch_size, shuffle=True, seed=seed, view="spikes"),
        ann_train=make_loader(data.train, batch_size=batch_size, shuffle=True, seed=seed, view="features"),
        snn_eval=make_loader(held_out, batch_size=batch_size, view="spikes"),
        ann_eval=make_loader(held_out, batch_size=batch_size, view="features"),
        snn_test=make_loader(data.test, batch_size=batch_size, view="spikes"),
        ann_test=make_loader(data.test, batch_size=batch_size, view="features"),
    )
