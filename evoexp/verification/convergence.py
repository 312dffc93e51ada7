r"""Convergence of training: loss curves, convergence rate, early stopping and the best epoch.

Conventions (epochs count from 1; epoch 0 is the model before training):

* **The loss of an epoch** is the training-set loss of the weights at the end of that epoch, measured by
  :func:`evoexp.training.evaluate` (eval mode, no gradient) exactly like the loss of epoch 0, so the curve
  :math:`L_0, L_1, \dots` holds one kind of number and the rate and the epochs-to-90 % are unbiased. (The running
  mean over an epoch's batches, taken while the weights move, would mix two kinds with epoch 0.)
* **Convergence rate** :math:`r`: minus the least-squares slope of :math:`\log L_e` against the epoch
  :math:`e`, i.e. the fit :math:`L_e \approx L_0 e^{-r e}`. Positive means the loss decreases.
* **Epochs to 90 % / 95 %**: the first epoch :math:`e` at which
  :math:`L_{ref} - L_e \ge f\,(L_{ref} - \min_k L_k)` for :math:`f = 0.9, 0.95`, where :math:`L_{ref}` is
  the loss before training (or after the first epoch when the initial loss was not measured).
* **Early stopping** on the monitored loss (validation loss, or the evaluated training loss without a validation
  set): an epoch *improves* when its loss is below ``best - min_delta``; training stops at the first
  epoch that ends ``patience`` consecutive epochs without improvement. The *best epoch* of the analysis is the
  last improving epoch (lowest monitored loss).
* **Kept weights**: training keeps the weights of the best-validation epoch (highest validation accuracy,
  :class:`evoexp.training.BestWeights`), the ones behind the app's objective and ``*/test/acc_best``.

Training goes through :func:`evoexp.training.train_model`, the pipeline the Hydra app uses too, and
:func:`analyze_training` turns its :class:`~evoexp.training.TrainingRun` into a :class:`ConvergenceResult`;
:func:`analyze_loss_history` applies the same analysis to a recorded (or scripted) history, so that the live run
and a replay of its curves give identical numbers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from evoexp.arguments import checked_by
from evoexp.results import Result
from evoexp.training import EarlyStopping, EpochCallback, TrainingRun, train_model
from evoexp.verification.stability import LossFn, OptimizerFactory

__all__ = [
    "ConvergenceAnalyzer",
    "ConvergenceResult",
    "EarlyStopping",
    "EpochCallback",
    "analyze_loss_history",
    "analyze_training",
    "check_convergence_arguments",
    "convergence_rate",
    "epochs_to_fraction",
]


def convergence_rate(losses: Sequence[float], epochs: Sequence[float] | None = None) -> float:
    r"""Minus the least-squares slope of :math:`\log L` against the epoch.

    Args:
        losses: Loss values.
        epochs: The epoch of each loss; ``0, 1, 2, …`` if None.

    Returns:
        The rate :math:`r` of the fit :math:`L_e \approx c\,e^{-r e}`; NaN with fewer than two points
        or when a loss is not finite and positive.

    Raises:
        ValueError: If ``epochs`` and ``losses`` differ in length.
    """
    xs = list(range(len(losses))) if epochs is None else list(epochs)
    if len(xs) != len(losses):
        raise ValueError(f"epochs has {len(xs)} entries but losses has {len(losses)}")
    if len(losses) < 2 or not all(math.isfinite(v) and v > 0 for v in losses):
        return float("nan")
    x = torch.tensor(xs, dtype=torch.float64)
    y = torch.log(torch.tensor(list(losses), dtype=torch.float64))
    xc = x - x.mean()
    denominator = float((xc * xc).sum())
    if denominator == 0.0:
        return float("nan")
    return -float((xc * (y - y.mean())).sum()) / denominator


def epochs_to_fraction(losses: Sequence[float], fraction: float, epochs: Sequence[int] | None = None) -> int | None:
    r"""First epoch at which the loss has fallen by ``fraction`` of its total reduction.

    The reference is ``losses[0]``; the total reduction is :math:`L_0 - \min_k L_k`.

    Args:
        losses: Loss values; ``losses[0]`` is the reference.
        fraction: A number in ``(0, 1]``, e.g. 0.9.
        epochs: The epoch of each loss; ``0, 1, 2, …`` if None.

    Returns:
        The epoch, or None when the loss never fell below ``losses[0]`` (or is not finite).

    Raises:
        ValueError: If ``fraction`` is outside ``(0, 1]`` or the lengths differ.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    xs = list(range(len(losses))) if epochs is None else list(epochs)
    if len(xs) != len(losses):
        raise ValueError(f"epochs has {len(xs)} entries but losses has {len(losses)}")
    if not losses or not all(math.isfinite(v) for v in losses):
        return None
    reference = losses[0]
    total = reference - min(losses)
    if total <= 0.0:
        return None
    # A relative slack of 1e-12 keeps exact fractions (0.9 of a reduction) from failing on rounding.
    target = fraction * total * (1.0 - 1e-12)
    return next(e for e, v in zip(xs, losses) if reference - v >= target)


@dataclass
class ConvergenceResult(Result):
    """Outcome of :meth:`ConvergenceAnalyzer.analyze_convergence` or :func:`analyze_loss_history`.

    Per-epoch lists have one entry per epoch run (epoch ``i + 1`` at index ``i``); entries that were
    not measured are NaN.

    Attributes:
        epochs: ``[1, …, epochs_run]``.
        train_loss: Training-set loss after each epoch, measured like ``initial_train_loss`` (for a live run;
            a replayed history holds whatever it was given).
        train_acc: Training-set accuracy after each epoch, measured the same way.
        val_loss: Validation loss after each epoch.
        val_acc: Validation accuracy after each epoch.
        grad_norm: Mean total gradient norm of each epoch.
        epoch_seconds: Wall time of each training epoch.
        initial_train_loss: Training loss before training (NaN if not measured).
        initial_val_loss: Validation loss before training (NaN if not measured).
        convergence_rate: Minus the least-squares slope of log training loss per epoch (epoch 0 included
            when measured); positive when the loss decreases.
        epochs_to_90: First epoch with 90 % of the total training-loss reduction (None: no reduction).
        epochs_to_95: Same for 95 %.
        relative_reduction: ``(L_ref - min L) / L_ref`` of the training loss.
        monitor: ``"val_loss"`` or ``"train_loss"``, the loss early stopping watched.
        best_epoch: Epoch with the lowest monitored loss (last improving epoch).
        best_value: The monitored loss at ``best_epoch``.
        stopped_early: Whether early stopping ended training before ``max_epochs``.
        epochs_run: Epochs actually run.
        max_epochs: Epoch budget.
        patience: Early-stopping patience used.
        min_delta: Early-stopping minimum improvement used.
        min_relative_reduction: Threshold of the verdict on ``relative_reduction``.
        diverged: Whether the loss became NaN/Inf (training stopped there).

    """

    epochs: list[int]
    train_loss: list[float]
    train_acc: list[float]
    val_loss: list[float]
    val_acc: list[float]
    grad_norm: list[float]
    epoch_seconds: list[float]
    initial_train_loss: float
    initial_val_loss: float
    convergence_rate: float
    epochs_to_90: int | None
    epochs_to_95: int | None
    relative_reduction: float
    monitor: Literal["val_loss", "train_loss"]
    best_epoch: int | None
    best_value: float
    stopped_early: bool
    epochs_run: int
    max_epochs: int
    patience: int
    min_delta: float
    min_relative_reduction: float
    diverged: bool = False
    issues: list[str] = field(default_factory=list)

    check: ClassVar[str] = "convergence"

    @property
    def passed(self) -> bool:
        """True when training did not diverge, the rate is positive and the loss fell enough."""
        return not self.issues

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        """Metrics of one epoch: ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``grad_norm``, ``seconds``.

        Raises:
            ValueError: If ``epoch`` was not run.

        """
        i = self.epochs.index(epoch)
        return {
            "train/loss": self.train_loss[i],
            "train/acc": self.train_acc[i],
            "val/loss": self.val_loss[i],
            "val/acc": self.val_acc[i],
            "grad_norm": self.grad_norm[i],
            "seconds": self.epoch_seconds[i],
        }

    def summary(self) -> dict[str, float]:
        """Flat metrics under ``convergence/…`` (epoch counts are NaN when undefined)."""

        def opt(v: int | None) -> float:
            return float("nan") if v is None else float(v)

        return {
            "convergence/ok": float(self.passed),
            "convergence/rate": self.convergence_rate,
            "convergence/epochs_to_90": opt(self.epochs_to_90),
            "convergence/epochs_to_95": opt(self.epochs_to_95),
            "convergence/relative_reduction": self.relative_reduction,
            "convergence/best_epoch": opt(self.best_epoch),
            "convergence/best_value": self.best_value,
            "convergence/epochs_run": float(self.epochs_run),
            "convergence/stopped_early": float(self.stopped_early),
            "convergence/diverged": float(self.diverged),
        }


def _nan_list(values: Sequence[float] | None, n: int, name: str) -> list[float]:
    if values is None:
        return [float("nan")] * n
    if len(values) < n:
        raise ValueError(f"{name} has {len(values)} entries, fewer than train_loss ({n})")
    return [float(v) for v in values[:n]]


def _replay_stopping(
    train_loss: Sequence[float], val_loss: Sequence[float] | None, stopper: EarlyStopping
) -> tuple[int, bool]:
    """``(epochs a live run would have run, diverged)``: stop at early stopping or at the first NaN/Inf loss.

    The monitored loss is ``val_loss`` if given, else ``train_loss``.
    """
    monitor_values = _nan_list(val_loss, len(train_loss), "val_loss") if val_loss is not None else list(train_loss)
    for i in range(len(train_loss)):
        if not math.isfinite(train_loss[i]) or not math.isfinite(monitor_values[i]):
            return i + 1, True
        if stopper.step(i + 1, monitor_values[i]):
            return i + 1, False
    return len(train_loss), False


def _issues(*, diverged: bool, epochs: int, rate: float, reduction: float, required: float) -> list[str]:
    """Why a loss history fails the convergence verdict (empty when it passes)."""
    issues: list[str] = []
    if diverged:
        issues.append(f"loss became NaN/Inf at epoch {epochs}")
    if not rate > 0:
        issues.append(f"convergence rate {rate:.4g} is not positive")
    if not reduction >= required:
        issues.append(f"loss fell by {reduction:.4g} of its initial value, less than {required:g}")
    return issues


def _check_reduction(min_relative_reduction: float) -> None:
    if isinstance(min_relative_reduction, bool) or not 0.0 <= min_relative_reduction < 1.0:
        raise ValueError(f"min_relative_reduction must be in [0, 1), got {min_relative_reduction!r}")


def check_convergence_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`analyze_training` (:func:`evoexp.arguments.checked_by`).

    Raises:
        ValueError: ``min_relative_reduction`` is outside [0, 1).
    """
    _check_reduction(args["min_relative_reduction"])


def _history_budget(n_given: int, max_epochs: int | None, min_relative_reduction: float) -> int:
    """The epoch budget of a history of ``n_given`` epochs, after checking the arguments of the analysis."""
    if n_given == 0:
        raise ValueError("train_loss must contain at least one epoch")
    _check_reduction(min_relative_reduction)
    budget = n_given if max_epochs is None else max_epochs
    if budget < n_given:
        raise ValueError(f"max_epochs ({budget}) is smaller than the history ({n_given} epochs)")
    return budget


def _reference_curve(train: list[float], initial_train: float) -> tuple[list[float], list[int]]:
    """The loss curve and its epochs, starting at epoch 0 when the loss before training is finite."""
    curve, curve_epochs = train, list(range(1, len(train) + 1))
    if math.isfinite(initial_train):
        curve, curve_epochs = [initial_train, *train], [0, *curve_epochs]
    return curve, curve_epochs


def _relative_reduction(curve: list[float]) -> float:
    """``(L_ref - min L) / L_ref`` over the finite losses of ``curve`` (NaN when undefined)."""
    finite = [v for v in curve if math.isfinite(v)]
    reference = curve[0]
    return (reference - min(finite)) / reference if finite and reference > 0 else float("nan")


def analyze_loss_history(
    train_loss: Sequence[float],
    val_loss: Sequence[float] | None = None,
    *,
    initial_train_loss: float | None = None,
    initial_val_loss: float | None = None,
    train_acc: Sequence[float] | None = None,
    val_acc: Sequence[float] | None = None,
    grad_norm: Sequence[float] | None = None,
    epoch_seconds: Sequence[float] | None = None,
    max_epochs: int | None = None,
    patience: int = 5,
    min_delta: float = 0.0,
    min_relative_reduction: float = 0.1,
) -> ConvergenceResult:
    """Analyse a recorded loss history as :meth:`ConvergenceAnalyzer.analyze_convergence` would live.

    Early stopping is replayed on the monitored loss (``val_loss`` if given, else ``train_loss``); the
    history is cut at the stopping epoch or at the first NaN/Inf training loss (divergence), and every
    number is computed on the part that a live run would have seen.

    Args:
        train_loss: Training loss per epoch (epoch ``i + 1`` at index ``i``).
        val_loss: Validation loss per epoch, at least as long as ``train_loss``.
        initial_train_loss: Training loss before training; the reference of the reduction if given.
        initial_val_loss: Validation loss before training (reported only).
        train_acc: Training accuracy per epoch.
        val_acc: Validation accuracy per epoch.
        grad_norm: Gradient norm per epoch.
        epoch_seconds: Wall time per epoch.
        max_epochs: Epoch budget (default: ``len(train_loss)``).
        patience: Early-stopping patience.
        min_delta: Early-stopping minimum improvement.
        min_relative_reduction: The verdict requires ``(L_ref - min L)/L_ref`` at least this.

    Returns:
        A :class:`ConvergenceResult`.

    Raises:
        ValueError: If ``train_loss`` is empty, a companion list is shorter than it, or a parameter
            is out of range.
    """
    budget = _history_budget(len(train_loss), max_epochs, min_relative_reduction)
    stopper = EarlyStopping(patience=patience, min_delta=min_delta)
    n, diverged = _replay_stopping(train_loss, val_loss, stopper)

    train = [float(v) for v in train_loss[:n]]
    initial_train = float("nan") if initial_train_loss is None else float(initial_train_loss)
    curve, curve_epochs = _reference_curve(train, initial_train)
    rate = convergence_rate(curve, curve_epochs)
    reduction = _relative_reduction(curve)

    issues = _issues(diverged=diverged, epochs=n, rate=rate, reduction=reduction, required=min_relative_reduction)
    return ConvergenceResult(
        epochs=list(range(1, n + 1)),
        train_loss=train,
        train_acc=_nan_list(train_acc, n, "train_acc"),
        val_loss=_nan_list(val_loss, n, "val_loss"),
        val_acc=_nan_list(val_acc, n, "val_acc"),
        grad_norm=_nan_list(grad_norm, n, "grad_norm"),
        epoch_seconds=_nan_list(epoch_seconds, n, "epoch_seconds"),
        initial_train_loss=initial_train,
        initial_val_loss=float("nan") if initial_val_loss is None else float(initial_val_loss),
        convergence_rate=rate,
        epochs_to_90=epochs_to_fraction(curve, 0.9, curve_epochs) if not diverged else None,
        epochs_to_95=epochs_to_fraction(curve, 0.95, curve_epochs) if not diverged else None,
        relative_reduction=reduction,
        monitor="val_loss" if val_loss is not None else "train_loss",
        best_epoch=stopper.best_epoch,
        best_value=stopper.best_value,
        stopped_early=stopper.stop_epoch is not None and n < budget,
        epochs_run=n,
        max_epochs=budget,
        patience=patience,
        min_delta=float(min_delta),
        min_relative_reduction=min_relative_reduction,
        diverged=diverged,
        issues=issues,
    )


@checked_by(check_convergence_arguments)
def analyze_training(run: TrainingRun, *, min_relative_reduction: float = 0.1) -> ConvergenceResult:
    """Convergence analysis of a :class:`~evoexp.training.TrainingRun` (the app's and the analyzer's route).

    The training curve is the evaluated training loss (``train_eval_loss``) with the evaluated epoch 0 as its
    reference; early stopping is replayed with the run's patience (its epoch budget when it had none) on the same
    monitored loss the run watched. A diverged run enters with one non-finite epoch, so the result says diverged.

    Args:
        run: The training run.
        min_relative_reduction: The verdict requires the loss to fall by at least this fraction.

    Returns:
        A :class:`ConvergenceResult`.

    Raises:
        ValueError: If the run has no completed epoch and did not diverge, or its records lack
            ``train_eval_loss`` (it was not trained by :func:`~evoexp.training.train_model`).
    """
    records = run.history
    if any(r.train_eval_loss is None for r in records):
        raise ValueError("the run's epochs have no evaluated training loss (train it with evoexp.training.train_model)")
    curves: dict[str, list[float]] = {
        "train_loss": [float(r.train_eval_loss) for r in records],  # type: ignore[arg-type]  # None rejected above
        "train_acc": [float(r.train_eval_acc) for r in records],  # type: ignore[arg-type]  # set with the loss
        "val_loss": [math.nan if r.val_loss is None else r.val_loss for r in records],
        "val_acc": [math.nan if r.val_acc is None else r.val_acc for r in records],
        "grad_norm": [r.grad_norm for r in records],
        "epoch_seconds": [r.seconds for r in records],
    }
    if run.diverged is not None:
        for key, values in curves.items():
            loss = run.divergence_loss
            values.append(loss if key == "train_loss" and not math.isfinite(loss) else math.nan)
    has_val = run.initial_val is not None or any(r.val_loss is not None for r in records)
    return analyze_loss_history(
        curves["train_loss"],
        curves["val_loss"] if has_val else None,
        initial_train_loss=None if run.initial_train is None else run.initial_train.loss,
        initial_val_loss=None if run.initial_val is None else run.initial_val.loss,
        train_acc=curves["train_acc"],
        val_acc=curves["val_acc"],
        grad_norm=curves["grad_norm"],
        epoch_seconds=curves["epoch_seconds"],
        max_epochs=run.max_epochs,
        patience=run.max_epochs if run.patience is None else run.patience,
        min_delta=run.min_delta,
        min_relative_reduction=min_relative_reduction,
    )


def _default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class ConvergenceAnalyzer:
    """Trains a copy of a model with early stopping and analyses its convergence.

    After :meth:`analyze_convergence`, :attr:`run` holds the :class:`~evoexp.training.TrainingRun` and
    :attr:`best_state_dict` the weights of its best-validation epoch (CPU copies);
    :meth:`restore_best_weights` loads them into a model of the same architecture.

    Attributes:
        run: The training run of the last analysis (None before).
        best_state_dict: State dict of the best-validation epoch of the last analysis (None before, or when no
            epoch qualified).
    """

    def __init__(self) -> None:
        self.run: TrainingRun | None = None
        self.best_state_dict: dict[str, Tensor] | None = None

    def restore_best_weights(self, model: nn.Module) -> nn.Module:
        """Load the best epoch's weights into ``model`` (in place) and return it.

        Raises:
            RuntimeError: If no analysis has recorded a best epoch yet.
        """
        if self.best_state_dict is None:
            raise RuntimeError("no best weights recorded: run analyze_convergence first")
        model.load_state_dict(self.best_state_dict)
        return model

    def analyze_convergence(
        self,
        model: nn.Module,
        train_loader: Iterable[Sequence[Tensor]],
        val_loader: Iterable[Sequence[Tensor]] | None = None,
        loss_fn: LossFn | None = None,
        optimizer_factory: OptimizerFactory | None = None,
        *,
        max_epochs: int = 50,
        patience: int | None = 5,
        min_delta: float = 0.0,
        min_relative_reduction: float = 0.1,
        evaluate_initial: bool = True,
        grad_clip: float | None = None,
        rate_reg: float = 0.0,
        target_rate: float = 0.05,
        test_loader: Iterable[Sequence[Tensor]] | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> ConvergenceResult:
        """Train a deep copy of ``model`` for up to ``max_epochs`` epochs with early stopping and analyse it.

        Training is :func:`evoexp.training.train_model` (the pipeline of the Hydra app); the analysis is
        :func:`analyze_training`. Early stopping watches the validation loss (the evaluated training loss without
        ``val_loader``). ``model`` itself is not changed.

        Args:
            model: Any classifier module (logits out).
            train_loader: Training batches ``(inputs, targets)``.
            val_loader: Validation batches; early stopping falls back to the training loss if None.
            loss_fn: ``loss_fn(outputs, targets) -> scalar``; cross-entropy if None.
            optimizer_factory: Builds the optimiser for the copy's parameters; Adam(lr=1e-3) if None.
            max_epochs: Epoch budget.
            patience: Stop after this many epochs without improvement of the monitored loss (None: never).
            min_delta: Minimum decrease of the monitored loss that counts as improvement.
            min_relative_reduction: The verdict requires the training loss to fall by at least this
                fraction of its reference value.
            evaluate_initial: Measure the losses before training (epoch 0) as the reference.
            grad_clip: Total gradient-norm clip of each step (None: no clipping).
            rate_reg: Weight of the firing-rate penalty (SNNs).
            target_rate: Target firing rate of the penalty.
            test_loader: Test batches; the test numbers land in :attr:`run`.
            on_epoch: Called for epoch 0 and after each epoch with ``(epoch, metrics)`` (see
                :data:`evoexp.training.EpochCallback`), e.g. to log curves.

        Returns:
            A :class:`ConvergenceResult`; the training run is in :attr:`run`, the best-validation weights in
            :attr:`best_state_dict`.

        Raises:
            ValueError: If ``max_epochs`` is not a positive integer or another parameter is out of range.
        """
        if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
            raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}")
        _check_reduction(min_relative_reduction)
        work = copy.deepcopy(model)
        optimizer = (optimizer_factory or _default_optimizer)([p for p in work.parameters() if p.requires_grad])
        self.run = train_model(
            work,
            train_loader,
            val_loader,
            test_loader,
            epochs=max_epochs,
            optimizer=optimizer,
            loss_fn=loss_fn,
            rate_reg=rate_reg,
            target_rate=target_rate,
            grad_clip=grad_clip,
            patience=patience,
            min_delta=min_delta,
            evaluate_initial=evaluate_initial,
            on_epoch=on_epoch,
            label="model",
        )
        self.best_state_dict = (
            None
            if self.run.best_epoch is None
            else {k: v.detach().to("cpu", copy=True) for k, v in work.state_dict().items()}
        )
        return analyze_training(self.run, min_relative_reduction=min_relative_reduction)
