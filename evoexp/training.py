r"""Training and evaluation loops shared by the app and the verifiers.

The objective is the cross-entropy of the readout logits (or any ``loss_fn(logits, targets)``), optionally plus a
firing-rate regulariser on the hidden spikes of the last forward:

.. math::

    L = \mathrm{CE}(z, y) + \lambda \sum_l \frac{1}{H_l}\sum_{h=1}^{H_l} \bigl(\bar r_{l,h} - r^\ast\bigr)^2,
    \qquad \bar r_{l,h} = \frac{1}{BT}\sum_{b,t} s_{l}[b,t,h],

with :math:`\lambda` = ``rate_reg`` and :math:`r^\ast` = ``target_rate`` (spikes per time step). The spikes are read
with ``spikes_fn(model)``; by default from ``model.last_spikes`` (a sequence of ``[B, T, H]`` tensors, one per hidden
layer, that :class:`evoexp.models.SNN` keeps from its last forward).

The loops work for any model mapping a batch ``x`` to logits ``[B, K]``: SNNs fed spikes ``[B, T, C]`` and ANNs
fed features ``[B, F]`` (the loader's ``view`` decides). Floating inputs are cast to the dtype and device of the
model's parameters, so float64 models train on the same loaders. Progress is logged once per epoch on the
``"evoexp.training"`` logger. A non-finite loss or gradient norm raises :class:`DivergenceError`.

:func:`train_model` is the one training pipeline of evoexp: the Hydra app, the convergence analysis
(:meth:`~evoexp.verification.convergence.ConvergenceAnalyzer.analyze_convergence`) and the SNN-vs-ANN benchmark
(:meth:`~evoexp.verification.benchmark.ComparativeBenchmark.benchmark_training`) all train through it. It measures
epoch 0 (the untrained model) and every later epoch the same way, with :func:`evaluate` on the training and
validation sets, stops early on the validation loss when asked, keeps the best-validation weights
(:class:`BestWeights`) and tests the final and the best-validation weights. Its typed :class:`TrainingRun`
serialises to JSON and back, so a stored baseline is a run like any other.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evoexp.arguments import checked_by
from evoexp.functional import backward_once
from evoexp.results import Result

__all__ = [
    "BestWeights",
    "DivergenceError",
    "EarlyStopping",
    "EpochCallback",
    "EpochProbe",
    "EpochRecord",
    "EpochStats",
    "EvalStats",
    "OptimizerName",
    "TrainingRun",
    "accuracy",
    "batch_to",
    "check_optimizer_arguments",
    "check_training_arguments",
    "evaluate",
    "firing_rate_penalty",
    "fit",
    "last_spikes",
    "layer_name",
    "make_optimizer",
    "train_epoch",
    "train_model",
]

logger = logging.getLogger("evoexp.training")

LossFn = Callable[[Tensor, Tensor], Tensor]
SpikesFn = Callable[[nn.Module], Sequence[Tensor]]
Batch = Sequence[Tensor]
EpochCallback = Callable[[int, Mapping[str, float]], None]
"""Called as ``on_epoch(epoch, metrics)`` for epoch 0 (before training) and after every epoch; keys as in
:meth:`EpochRecord.metrics` (epoch 0: only the evaluated ``train/eval_*`` and ``val/*`` keys), plus the probes'."""
EpochProbe = Callable[[int, nn.Module], Mapping[str, float]]
"""A measurement during training, called as ``probe(epoch, model)`` for epoch 0 and after every epoch (before the
best weights are restored). It returns that epoch's metrics (empty on epochs it skips, e.g. all but every k-th), which
are merged into the metrics ``on_epoch`` receives and kept in :attr:`TrainingRun.probe_metrics`. Its wall time is
:attr:`TrainingRun.probe_seconds`, not part of any epoch's time. A probe must not change the model (measure a copy):
e.g. :class:`~evoexp.verification.sign.SignDisagreementProbe`."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or gradient norm.

    Attributes:
        loss: The offending loss value (may be finite when the gradient norm diverged).
        grad_norm: The gradient norm of the batch, NaN when the loss itself was non-finite (no backward ran).
        batch: Index of the batch within its epoch (0-based).
        epoch: Epoch number (1-based) when raised by :func:`fit`, else ``None``.
        history: Records of the epochs completed before the divergence (filled by :func:`fit`).
    """

    def __init__(
        self,
        message: str,
        *,
        loss: float,
        grad_norm: float = math.nan,
        batch: int,
        epoch: int | None = None,
        history: Sequence[EpochRecord] = (),
    ) -> None:
        super().__init__(message)
        self.loss = loss
        self.grad_norm = grad_norm
        self.batch = batch
        self.epoch = epoch
        self.history = list(history)


@dataclass(frozen=True)
class EpochStats:
    """Statistics of one training epoch.

    Attributes:
        loss: Sample-weighted mean of the data loss (cross-entropy) over the epoch's batches, before each update.
        acc: Fraction of training samples classified correctly (before each update).
        grad_norm: Mean over batches of the total gradient L2 norm (before clipping).
        grad_norms: Mean over batches of the gradient norm of each layer (parameter names minus their last
            component, e.g. ``"hidden.0"``, ``"readout"``).
        n_samples: Samples seen.
        seconds: Wall time of the epoch.
        rate_loss: Sample-weighted mean of the unweighted firing-rate penalty (0 when ``rate_reg == 0``).
    """

    loss: float
    acc: float
    grad_norm: float
    grad_norms: dict[str, float]
    n_samples: int
    seconds: float
    rate_loss: float = 0.0


@dataclass(frozen=True)
class EvalStats:
    """Statistics of one evaluation pass.

    Attributes:
        loss: Sample-weighted mean data loss.
        acc: Fraction of samples classified correctly.
        n_samples: Samples seen.
    """

    loss: float
    acc: float
    n_samples: int


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of :func:`fit`: training statistics plus validation (``None`` without a validation loader).

    Attributes:
        epoch: Epoch number, starting at 1.
        train_loss: Training data loss (see :class:`EpochStats`).
        train_acc: Training accuracy.
        val_loss: Validation loss after the epoch, or ``None``.
        val_acc: Validation accuracy after the epoch, or ``None``.
        grad_norm: Mean total gradient norm.
        grad_norms: Mean gradient norm per layer.
        seconds: Wall time of the training epoch (validation excluded).
        n_samples: Training samples seen.
        rate_loss: Mean firing-rate penalty.
        train_eval_loss: Training-set loss of the weights at the end of the epoch, measured by :func:`evaluate`
            exactly as epoch 0 is (None when not evaluated); the loss convergence analysis uses.
        train_eval_acc: Training-set accuracy measured the same way (None when not evaluated).
    """

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    grad_norm: float
    grad_norms: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    n_samples: int = 0
    rate_loss: float = 0.0
    train_eval_loss: float | None = None
    train_eval_acc: float | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain-dict copy (JSON-safe apart from NaN floats)."""
        return dataclasses.asdict(self)

    def metrics(self) -> dict[str, float]:
        """The epoch's numbers under metric names (unprefixed; the app logs them as ``<model>/<name>``).

        ``train/loss`` and ``train/acc`` are the running means over the epoch's batches (before each update);
        ``train/eval_loss`` and ``train/eval_acc`` the training set evaluated after the epoch, as at epoch 0;
        ``val/loss``, ``val/acc``, ``grad_norm``, ``grad_norm/<layer>`` and ``epoch_seconds``. Values that were not
        measured are left out.
        """
        values: dict[str, float | None] = {
            "train/loss": self.train_loss,
            "train/acc": self.train_acc,
            "train/eval_loss": self.train_eval_loss,
            "train/eval_acc": self.train_eval_acc,
            "val/loss": self.val_loss,
            "val/acc": self.val_acc,
            "grad_norm": self.grad_norm,
            "epoch_seconds": self.seconds,
            **{f"grad_norm/{layer}": norm for layer, norm in self.grad_norms.items()},
        }
        return {key: value for key, value in values.items() if value is not None}


class BestWeights:
    """Copy of the weights of the best-validation epoch, to restore after training.

    The best-validation epoch is the epoch with the highest validation accuracy (the epoch behind the objective
    ``*/val/best_acc``); among equal accuracies the one with the lower validation loss, then the earlier one.
    Without a validation set, the training set evaluated after the epoch (``train_eval_*``) takes its place.
    Epochs without a finite accuracy never count.

    Attributes:
        epoch: The best-validation epoch (None until an epoch with a finite validation accuracy was seen).
        val_acc: Its validation accuracy.
        val_loss: Its validation loss.
        state: CPU copy of the model's ``state_dict`` at the end of that epoch.
    """

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.val_acc = -math.inf
        self.val_loss = math.inf
        self.state: dict[str, Tensor] | None = None

    def update(self, model: nn.Module, record: EpochRecord) -> bool:
        """Keep ``model``'s weights if ``record`` is a better validation epoch than the best so far.

        Returns:
            Whether the weights were kept.
        """
        acc, loss = record.val_acc, record.val_loss
        if acc is None and loss is None:
            acc, loss = record.train_eval_acc, record.train_eval_loss
        if acc is None or not math.isfinite(acc):
            return False
        loss = math.inf if loss is None or not math.isfinite(loss) else loss
        if acc < self.val_acc or (acc == self.val_acc and loss >= self.val_loss):
            return False
        self.epoch, self.val_acc, self.val_loss = record.epoch, acc, loss
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return True

    def restore(self, model: nn.Module) -> nn.Module:
        """Load the kept weights into ``model`` (in place) and return it.

        Raises:
            RuntimeError: If no epoch was kept.
        """
        if self.state is None:
            raise RuntimeError("no best-validation weights were kept (no epoch had a finite validation accuracy)")
        model.load_state_dict(self.state)
        return model


def layer_name(parameter_name: str) -> str:
    """Layer (module) that owns a parameter: its name without the last component (``hidden.0.weight`` -> ``hidden.0``).

    Args:
        parameter_name: A name from ``model.named_parameters()``.

    Returns:
        The layer name; a name without a dot is returned unchanged.
    """
    return parameter_name.rsplit(".", 1)[0] if "." in parameter_name else parameter_name


def accuracy(logits: Tensor, targets: Tensor) -> float:
    """Fraction of rows whose arg-max logit equals the target.

    Args:
        logits: Tensor ``[B, K]``.
        targets: Long tensor ``[B]``.

    Returns:
        Accuracy in ``[0, 1]`` (NaN for an empty batch).

    Raises:
        ValueError: If the shapes do not match.
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"logits must be [B, K] and targets [B], got {tuple(logits.shape)}, {tuple(targets.shape)}")
    if targets.numel() == 0:
        return math.nan
    return (logits.argmax(dim=1) == targets).float().mean().item()


def firing_rate_penalty(spikes: Sequence[Tensor], target_rate: float) -> Tensor:
    r"""Squared deviation of per-neuron firing rates from a target, summed over layers.

    :math:`\sum_l \mathrm{mean}_h (\bar r_{l,h} - r^\ast)^2` with :math:`\bar r_{l,h}` the mean of
    ``spikes[l][..., h]`` over batch and time. Differentiable through the spikes (surrogate gradients).

    Args:
        spikes: One tensor ``[B, T, H_l]`` per layer.
        target_rate: Target spikes per neuron per time step, in ``[0, 1]``.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: If ``spikes`` is empty, a tensor is not 3-d, or ``target_rate`` is outside ``[0, 1]``.
    """
    _check_target_rate(target_rate)
    if len(spikes) == 0:
        raise ValueError("spikes must hold at least one layer's [B, T, H] tensor")
    total: Tensor | None = None
    for layer, s in enumerate(spikes):
        if s.dim() != 3:
            raise ValueError(f"spikes[{layer}] must have shape [B, T, H], got {tuple(s.shape)}")
        term = (s.mean(dim=(0, 1)) - target_rate).pow(2).mean()
        total = term if total is None else total + term
    assert total is not None
    return total


def last_spikes(model: nn.Module) -> Sequence[Tensor]:
    """Default ``spikes_fn``: the hidden spikes ``model.last_spikes`` of the model's last forward.

    Args:
        model: A model with a ``last_spikes`` attribute (e.g. :class:`evoexp.models.SNN`).

    Returns:
        The sequence of ``[B, T, H]`` tensors.

    Raises:
        ValueError: If the model has no ``last_spikes`` or it is empty.
    """
    spikes = getattr(model, "last_spikes", None)
    if not spikes:
        raise ValueError(
            f"{type(model).__name__} exposes no hidden spikes (model.last_spikes); rate_reg needs an SNN or a spikes_fn"
        )
    return spikes


def _reference_parameter(model: nn.Module) -> Tensor:
    try:
        return next(model.parameters())
    except StopIteration:
        raise ValueError("model has no parameters") from None


def batch_to(batch: Batch, reference: Tensor) -> tuple[Tensor, Tensor]:
    """Move ``(inputs, targets)`` to the reference's device; floating inputs also to its dtype.

    Raises:
        ValueError: The batch is not a pair.
    """
    if len(batch) < 2:
        raise ValueError("each batch must be a pair (inputs, targets)")
    inputs, targets = batch[0], batch[1]
    if inputs.is_floating_point():
        inputs = inputs.to(device=reference.device, dtype=reference.dtype)
    else:
        inputs = inputs.to(reference.device)
    return inputs, targets.to(reference.device)


def _grad_norms(model: nn.Module) -> tuple[float, dict[str, float]]:
    """Total and per-layer gradient L2 norms, in float64, read from the device in one transfer."""
    named = [(layer_name(name), p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if not named:
        return 0.0, {}
    values = torch.stack([grad.detach().double().pow(2).sum() for _, grad in named]).tolist()
    squares: dict[str, float] = {}
    for (layer, _), value in zip(named, values):
        squares[layer] = squares.get(layer, 0.0) + value
    return math.sqrt(sum(squares.values())), {k: math.sqrt(v) for k, v in squares.items()}


def _check_nonnegative(name: str, value: float) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_target_rate(target_rate: float) -> None:
    if not 0.0 <= target_rate <= 1.0:
        raise ValueError(f"target_rate must be in [0, 1], got {target_rate!r}")


def _check_epochs(epochs: int) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")


def _check_early_stopping(patience: int, min_delta: float) -> None:
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be a positive integer, got {patience!r}")
    if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
        raise ValueError(f"min_delta must be a non-negative number, got {min_delta!r}")


def _check_epoch_arguments(rate_reg: float, grad_clip: float | None) -> None:
    _check_nonnegative("rate_reg", rate_reg)
    if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
        raise ValueError(f"grad_clip must be a number > 0 or None, got {grad_clip!r}")


def _objective(
    model: nn.Module, loss: Tensor, rate_reg: float, target_rate: float, spikes_fn: SpikesFn
) -> tuple[Tensor, float]:
    """The loss plus the weighted firing-rate penalty (when ``rate_reg > 0``), and the penalty's value."""
    if rate_reg <= 0:
        return loss, 0.0
    penalty = firing_rate_penalty(spikes_fn(model), target_rate)
    return loss + rate_reg * penalty, penalty.item()


def _finite_grad_norms(model: nn.Module, loss_value: float, index: int) -> tuple[float, dict[str, float]]:
    """:func:`_grad_norms` of batch ``index``; a :class:`DivergenceError` when the total norm is not finite."""
    total_norm, layer_norms = _grad_norms(model)
    if not math.isfinite(total_norm):
        raise DivergenceError(
            f"non-finite gradient norm {total_norm} at batch {index}",
            loss=loss_value,
            grad_norm=total_norm,
            batch=index,
        )
    return total_norm, layer_norms


def train_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: LossFn | None = None,
    rate_reg: float = 0.0,
    target_rate: float = 0.05,
    spikes_fn: SpikesFn | None = None,
    grad_clip: float | None = None,
) -> EpochStats:
    """Train ``model`` for one pass over ``loader``.

    Args:
        model: Maps inputs to logits ``[B, K]``; put in training mode.
        loader: Yields ``(x, y)`` batches.
        optimizer: Optimiser over the model's parameters.
        loss_fn: ``loss_fn(logits, targets)`` returning a scalar mean loss; defaults to cross-entropy.
        rate_reg: Weight of the firing-rate penalty (0 disables it).
        target_rate: Target firing rate of the penalty (spikes per step).
        spikes_fn: Returns the hidden spikes of the last forward; defaults to :func:`last_spikes`.
        grad_clip: If given, clip the total gradient norm to this value (statistics use the unclipped norm).

    Returns:
        The epoch's :class:`EpochStats`.

    Raises:
        DivergenceError: If a batch's loss or gradient norm is not finite (the step is not applied).
        ValueError: On invalid arguments or an empty loader.
    """
    _check_epoch_arguments(rate_reg, grad_clip)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    spikes_fn = last_spikes if spikes_fn is None else spikes_fn
    reference = _reference_parameter(model)
    model.train()
    start = time.perf_counter()
    loss_sum = rate_sum = grad_sum = 0.0
    correct = n_samples = n_batches = 0
    layer_sums: dict[str, float] = {}
    for index, batch in enumerate(loader):
        inputs, targets = batch_to(batch, reference)
        optimizer.zero_grad(set_to_none=True)
        with backward_once():  # one backward per graph: evoexp LIF layers reuse their saved memory for dL/dI
            logits = model(inputs)
        loss = loss_fn(logits, targets)
        objective, rate_value = _objective(model, loss, rate_reg, target_rate, spikes_fn)
        loss_value = objective.item()
        if not math.isfinite(loss_value):
            raise DivergenceError(f"non-finite loss {loss_value} at batch {index}", loss=loss_value, batch=index)
        objective.backward()
        total_norm, layer_norms = _finite_grad_norms(model, loss_value, index)
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        size = targets.shape[0]
        loss_sum += loss.item() * size
        rate_sum += rate_value * size
        correct += int((logits.detach().argmax(dim=1) == targets).sum())
        n_samples += size
        n_batches += 1
        grad_sum += total_norm
        for layer, norm in layer_norms.items():
            layer_sums[layer] = layer_sums.get(layer, 0.0) + norm
    if n_batches == 0:
        raise ValueError("loader yielded no batches")
    return EpochStats(
        loss=loss_sum / n_samples,
        acc=correct / n_samples,
        grad_norm=grad_sum / n_batches,
        grad_norms={layer: total / n_batches for layer, total in layer_sums.items()},
        n_samples=n_samples,
        seconds=time.perf_counter() - start,
        rate_loss=rate_sum / n_samples,
    )


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Batch], *, loss_fn: LossFn | None = None) -> EvalStats:
    """Loss and accuracy of ``model`` on ``loader`` without gradients, in eval mode (the mode is restored).

    Args:
        model: Maps inputs to logits ``[B, K]``.
        loader: Yields ``(x, y)`` batches.
        loss_fn: ``loss_fn(logits, targets)`` returning a scalar mean loss; defaults to cross-entropy.

    Returns:
        :class:`EvalStats` (NaN loss and accuracy for an empty loader).
    """
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    reference = _reference_parameter(model)
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    correct = n_samples = 0
    try:
        for batch in loader:
            inputs, targets = batch_to(batch, reference)
            logits = model(inputs)
            size = targets.shape[0]
            loss_sum += loss_fn(logits, targets).item() * size
            correct += int((logits.argmax(dim=1) == targets).sum())
            n_samples += size
    finally:
        model.train(was_training)
    if n_samples == 0:
        return EvalStats(loss=math.nan, acc=math.nan, n_samples=0)
    return EvalStats(loss=loss_sum / n_samples, acc=correct / n_samples, n_samples=n_samples)


def _in_epoch(err: DivergenceError, label: str, epoch: int, history: list[EpochRecord]) -> DivergenceError:
    """``err`` (from :func:`train_epoch`) with the model's label, the epoch and the history before it."""
    return DivergenceError(
        f"{label} diverged in epoch {epoch}: {err}",
        loss=err.loss,
        grad_norm=err.grad_norm,
        batch=err.batch,
        epoch=epoch,
        history=history,
    )


def _epoch_record(epoch: int, stats: EpochStats, val: EvalStats | None, train_eval: EvalStats | None) -> EpochRecord:
    """The record of one epoch: its training statistics and the evaluations after it."""
    return EpochRecord(
        epoch=epoch,
        train_loss=stats.loss,
        train_acc=stats.acc,
        val_loss=None if val is None else val.loss,
        val_acc=None if val is None else val.acc,
        grad_norm=stats.grad_norm,
        grad_norms=stats.grad_norms,
        seconds=stats.seconds,
        n_samples=stats.n_samples,
        rate_loss=stats.rate_loss,
        train_eval_loss=None if train_eval is None else train_eval.loss,
        train_eval_acc=None if train_eval is None else train_eval.acc,
    )


def _log_epoch(level: int, label: str, epoch: int, epochs: int, stats: EpochStats, val: EvalStats | None) -> None:
    """One progress line: the epoch, its training loss and accuracy, validation, gradient norm and time."""
    val_text = "" if val is None else f" | val loss {val.loss:.4f} acc {val.acc:.3f}"
    logger.log(
        level,
        "%s epoch %d/%d | loss %.4f acc %.3f%s | grad %.3e | %.2fs",
        label,
        epoch,
        epochs,
        stats.loss,
        stats.acc,
        val_text,
        stats.grad_norm,
        stats.seconds,
    )


def fit(
    model: nn.Module,
    train_loader: Iterable[Batch],
    val_loader: Iterable[Batch] | None = None,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn | None = None,
    rate_reg: float = 0.0,
    target_rate: float = 0.05,
    spikes_fn: SpikesFn | None = None,
    grad_clip: float | None = None,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], bool | None] | None = None,
    best: BestWeights | None = None,
    evaluate_train: bool = False,
    label: str = "model",
) -> list[EpochRecord]:
    """Train for ``epochs`` epochs, evaluating on ``val_loader`` after each, and log one line per epoch.

    Args:
        model: Maps inputs to logits.
        train_loader: Training batches ``(x, y)``; iterated once per epoch.
        val_loader: Optional validation batches.
        epochs: Number of epochs (>= 1).
        optimizer: Optimiser over the model's parameters.
        loss_fn: Loss on logits; defaults to cross-entropy.
        rate_reg: Weight of the firing-rate penalty (see the module docstring).
        target_rate: Target firing rate of the penalty.
        spikes_fn: Source of hidden spikes for the penalty; defaults to ``model.last_spikes``.
        grad_clip: Optional total gradient-norm clip.
        progress: Log each epoch at INFO (else DEBUG) on logger ``"evoexp.training"``.
        on_epoch: Called with each :class:`EpochRecord`; returning True stops training (early stopping).
        best: Updated after each epoch with the model and its record (keeps the best-validation weights).
        evaluate_train: Also evaluate the training set after each epoch (``train_eval_loss``/``train_eval_acc``).
        label: Name shown in the progress lines (e.g. ``"snn"``).

    Returns:
        One :class:`EpochRecord` per completed epoch.

    Raises:
        DivergenceError: On a non-finite loss or gradient, with ``epoch`` and ``history`` filled in.
        ValueError: If ``epochs`` is not a positive int, or on invalid training arguments.
    """
    _check_epochs(epochs)
    level = logging.INFO if progress else logging.DEBUG
    history: list[EpochRecord] = []
    for epoch in range(1, epochs + 1):
        try:
            stats = train_epoch(
                model,
                train_loader,
                optimizer,
                loss_fn=loss_fn,
                rate_reg=rate_reg,
                target_rate=target_rate,
                spikes_fn=spikes_fn,
                grad_clip=grad_clip,
            )
        except DivergenceError as err:
            logger.warning("%s epoch %d/%d diverged: %s", label, epoch, epochs, err)
            raise _in_epoch(err, label, epoch, history) from err
        val = evaluate(model, val_loader, loss_fn=loss_fn) if val_loader is not None else None
        train_eval = evaluate(model, train_loader, loss_fn=loss_fn) if evaluate_train else None
        record = _epoch_record(epoch, stats, val, train_eval)
        history.append(record)
        if best is not None:
            best.update(model, record)
        _log_epoch(level, label, epoch, epochs, stats, val)
        if on_epoch is not None and on_epoch(record):
            logger.log(level, "%s stopped after epoch %d (on_epoch)", label, epoch)
            break
    return history


class EarlyStopping:
    """Patience-based early stopping on a loss that should decrease.

    Args:
        patience: Epochs without improvement after which training stops (>= 1).
        min_delta: An epoch improves when its value is below ``best - min_delta`` (>= 0).

    Attributes:
        best_value: Best (lowest) value seen so far (``inf`` before the first step).
        best_epoch: Epoch of ``best_value`` (None before the first improvement).
        stop_epoch: Epoch at which :meth:`step` first returned True (None while running).
        wait: Consecutive epochs without improvement.
    """

    def __init__(self, *, patience: int, min_delta: float = 0.0) -> None:
        _check_early_stopping(patience, min_delta)
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best_value = math.inf
        self.best_epoch: int | None = None
        self.stop_epoch: int | None = None
        self.wait = 0

    def step(self, epoch: int, value: float) -> bool:
        """Record ``value`` for ``epoch``; return True when training should stop now.

        Returns:
            Whether ``value`` ends a run of ``patience`` epochs without improvement.
        """
        if value < self.best_value - self.min_delta:
            self.best_value = value
            self.best_epoch = epoch
            self.wait = 0
        else:
            self.wait += 1
        if self.wait >= self.patience and self.stop_epoch is None:
            self.stop_epoch = epoch
        return self.stop_epoch is not None

    @property
    def improved(self) -> bool:
        """True when the last :meth:`step` improved on the best value."""
        return self.wait == 0 and self.best_epoch is not None


def _number(value: Any) -> Any:
    """Undo :func:`~evoexp.results.to_jsonable` on one value (``"NaN"`` -> nan, etc.)."""
    return float(value) if value in ("NaN", "Infinity", "-Infinity") else value


def _eval_stats(data: Mapping[str, Any] | None) -> EvalStats | None:
    return None if data is None else EvalStats(_number(data["loss"]), _number(data["acc"]), int(data["n_samples"]))


@dataclass
class TrainingRun(Result):
    """One model trained by :func:`train_model` (informational result, ``passed`` is None).

    Attributes:
        label: Name of the model (``snn``, ``ann``, ...), the prefix of its metrics.
        n_params: Trainable parameters.
        max_epochs: Epoch budget.
        history: One :class:`EpochRecord` per completed epoch.
        initial_train: Training set evaluated before training (epoch 0), or None when not measured.
        initial_val: Validation set evaluated before training, or None.
        best_epoch: The best-validation epoch whose weights the model holds after training (see
            :class:`BestWeights`), or None when no epoch qualified.
        stop_epoch: Epoch at which early stopping ended training, or None.
        patience: Early-stopping patience (None: no early stopping).
        min_delta: Early-stopping minimum improvement.
        test_best: Test set evaluated with the best-validation weights (None: no test set, or diverged).
        test_last: Test set evaluated with the weights after the last epoch (None: no test set, or diverged).
        diverged: The divergence message when training hit a non-finite loss or gradient, else None.
        divergence_loss: The loss of the diverging batch (NaN when none).
        torch_threads: ``torch.get_num_threads()`` during training (time per epoch depends on it).
        probe_metrics: Epoch -> metrics of the probes (:data:`EpochProbe`) on the epochs they measured.
        probe_seconds: Total wall time of the probes.
    """

    label: str
    n_params: int
    max_epochs: int
    history: list[EpochRecord]
    initial_train: EvalStats | None = None
    initial_val: EvalStats | None = None
    best_epoch: int | None = None
    stop_epoch: int | None = None
    patience: int | None = None
    min_delta: float = 0.0
    test_best: EvalStats | None = None
    test_last: EvalStats | None = None
    diverged: str | None = None
    divergence_loss: float = math.nan
    torch_threads: int = 1
    probe_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    probe_seconds: float = 0.0

    check: ClassVar[str] = "training"

    @property
    def best_val_acc(self) -> float:
        """Highest validation accuracy over the epochs (the app's objective); NaN when diverged or unmeasured."""
        values = [r.val_acc for r in self.history if r.val_acc is not None and math.isfinite(r.val_acc)]
        return max(values) if values and self.diverged is None else math.nan

    def epoch_metrics(self) -> dict[int, dict[str, float]]:
        """Unprefixed metrics by epoch: epoch 0 (the evaluated untrained model, when measured), then each epoch.

        The probes' metrics are merged into their epochs.
        """
        steps: dict[int, dict[str, float]] = {}
        if self.initial_train is not None:
            steps[0] = {"train/eval_loss": self.initial_train.loss, "train/eval_acc": self.initial_train.acc}
            if self.initial_val is not None:
                steps[0].update({"val/loss": self.initial_val.loss, "val/acc": self.initial_val.acc})
        steps.update({record.epoch: record.metrics() for record in self.history})
        for epoch, metrics in self.probe_metrics.items():
            steps.setdefault(epoch, {}).update(metrics)
        return dict(sorted(steps.items()))

    def summary(self) -> dict[str, float]:
        """Run-level metrics under ``<label>/`` (``best_epoch`` and ``test/...`` only when measured).

        Keys: ``params``, ``epochs`` (run), ``val/best_acc``, ``torch_threads``, ``best_epoch``,
        ``test/acc_best``, ``test/loss_best``, ``test/acc_last``, ``test/loss_last``.
        """
        prefix = self.label
        out = {
            f"{prefix}/params": float(self.n_params),
            f"{prefix}/epochs": float(len(self.history)),
            f"{prefix}/val/best_acc": self.best_val_acc,
            f"{prefix}/torch_threads": float(self.torch_threads),
        }
        if self.best_epoch is not None:
            out[f"{prefix}/best_epoch"] = float(self.best_epoch)
        for which, stats in (("best", self.test_best), ("last", self.test_last)):
            if stats is not None:
                out[f"{prefix}/test/acc_{which}"] = stats.acc
                out[f"{prefix}/test/loss_{which}"] = stats.loss
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingRun:
        """Rebuild a run from :meth:`to_dict` (e.g. a stored ANN baseline).

        Raises:
            ValueError: ``data`` is not a serialised :class:`TrainingRun`.
        """
        try:
            history = [
                EpochRecord(
                    **{  # type: ignore[arg-type]  # from to_dict; a wrong field raises TypeError, reported below
                        k: {layer: _number(x) for layer, x in v.items()} if k == "grad_norms" else _number(v)
                        for k, v in record.items()
                    }
                )
                for record in data["history"]
            ]
            return cls(
                label=str(data["label"]),
                n_params=int(data["n_params"]),
                max_epochs=int(data["max_epochs"]),
                history=history,
                initial_train=_eval_stats(data["initial_train"]),
                initial_val=_eval_stats(data["initial_val"]),
                best_epoch=data["best_epoch"],
                stop_epoch=data["stop_epoch"],
                patience=data["patience"],
                min_delta=float(data["min_delta"]),
                test_best=_eval_stats(data["test_best"]),
                test_last=_eval_stats(data["test_last"]),
                diverged=data["diverged"],
                divergence_loss=float(_number(data["divergence_loss"])),
                torch_threads=int(data["torch_threads"]),
                probe_metrics={
                    int(epoch): {k: _number(v) for k, v in metrics.items()}
                    for epoch, metrics in data.get("probe_metrics", {}).items()
                },
                probe_seconds=float(data.get("probe_seconds", 0.0)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a serialised TrainingRun ({type(exc).__name__}: {exc})") from None


def _count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


OptimizerName = Literal["adam", "sgd"]


def check_optimizer_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`make_optimizer` (:func:`evoexp.arguments.checked_by`).

    Raises:
        ValueError: The first invalid argument, named first; a momentum that Adam would ignore is refused.
    """
    optimizer, momentum = args["optimizer"], args["momentum"]
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be one of adam, sgd, got {optimizer!r}")
    lr = args["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    _check_nonnegative("weight_decay", args["weight_decay"])
    _check_nonnegative("momentum", momentum)
    if momentum and optimizer != "sgd":
        raise ValueError(
            f"momentum={momentum!r} is an SGD setting that {optimizer} ignores; "
            "use optimizer=sgd or leave momentum at 0"
        )
    if momentum >= 1:
        raise ValueError(f"momentum must be < 1 (SGD diverges otherwise), got {momentum!r}")


@checked_by(check_optimizer_arguments)
def make_optimizer(
    parameters: Iterable[nn.Parameter],
    *,
    optimizer: OptimizerName = "adam",
    lr: float = 5e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
) -> torch.optim.Optimizer:
    """The optimiser of a training run over ``parameters``: Adam, or SGD with momentum.

    Args:
        parameters: The parameters to train.
        optimizer: ``adam`` or ``sgd``.
        lr: Learning rate (> 0; 5e-3 is Zenke & Vogels' (2021) Adam setting).
        weight_decay: L2 penalty (>= 0).
        momentum: SGD momentum in [0, 1); Adam has none (a momentum with ``adam`` is refused, not ignored).

    Returns:
        A ``torch.optim.Adam`` or ``torch.optim.SGD``.
    """
    if optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)


def check_training_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`train_model` (:func:`evoexp.arguments.checked_by`).

    ``epochs`` is checked when it is given (the config's ``verifier.convergence`` node is checked without it).

    Raises:
        ValueError: The first invalid argument, named first.
    """
    if "epochs" in args:
        _check_epochs(args["epochs"])
    _check_epoch_arguments(args["rate_reg"], args["grad_clip"])
    _check_target_rate(args["target_rate"])
    if args["patience"] is not None:
        _check_early_stopping(args["patience"], args["min_delta"])
    _check_nonnegative("min_delta", args["min_delta"])


@checked_by(check_training_arguments)
def train_model(
    model: nn.Module,
    train_loader: Iterable[Batch],
    val_loader: Iterable[Batch] | None = None,
    test_loader: Iterable[Batch] | None = None,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn | None = None,
    rate_reg: float = 0.0,
    target_rate: float = 0.05,
    spikes_fn: SpikesFn | None = None,
    grad_clip: float | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    evaluate_initial: bool = True,
    on_epoch: EpochCallback | None = None,
    probes: Sequence[EpochProbe] = (),
    progress: bool = True,
    label: str = "model",
) -> TrainingRun:
    """Train ``model`` in place; measure epoch 0 and every epoch alike; keep the best-validation weights; test.

    1. Epoch 0: the untrained model is evaluated on the training and validation sets (:func:`evaluate`).
    2. :func:`fit` trains up to ``epochs`` epochs; after each, the training set is evaluated the same way
       (``train_eval_loss``): the losses of all epochs are one kind of number. Early stopping (``patience`` set)
       watches the validation loss, else that training loss (:class:`EarlyStopping`).
    3. The final weights are tested (``test_last``), then the best-validation weights (:class:`BestWeights`) are
       restored into ``model`` and tested (``test_best``). A diverged run keeps its best weights, untested.

    Args:
        model: Maps inputs to logits; trained in place.
        train_loader: Training batches (also evaluated after each epoch).
        val_loader: Validation batches (early stopping, best-weight selection).
        test_loader: Test batches.
        epochs: Epoch budget (>= 1).
        optimizer: Optimiser over the model's parameters.
        loss_fn: Loss on logits; cross-entropy if None.
        rate_reg: Weight of the firing-rate penalty (SNNs).
        target_rate: Target firing rate of the penalty.
        spikes_fn: Source of hidden spikes for the penalty.
        grad_clip: Optional total gradient-norm clip.
        patience: Early-stopping patience (None: train every epoch).
        min_delta: Early-stopping minimum improvement.
        evaluate_initial: Measure epoch 0.
        on_epoch: Called for epoch 0 and after every epoch (see :data:`EpochCallback`).
        probes: Measurements during training (see :data:`EpochProbe`), e.g. the sign disagreement every k epochs.
        progress: Log each epoch at INFO (else DEBUG).
        label: Name of the model in logs and metrics.

    Returns:
        The :class:`TrainingRun`; a divergence is recorded in it, not raised.

    Raises:
        ValueError: On invalid arguments.
    """
    hooks = _start(
        label, model, train_loader, val_loader, loss_fn, epochs, patience, min_delta, evaluate_initial, probes, on_epoch
    )
    try:
        hooks.run.history = fit(
            model,
            train_loader,
            val_loader,
            epochs=epochs,
            optimizer=optimizer,
            loss_fn=loss_fn,
            rate_reg=rate_reg,
            target_rate=target_rate,
            spikes_fn=spikes_fn,
            grad_clip=grad_clip,
            progress=progress,
            on_epoch=hooks.after_epoch,
            best=hooks.best,
            evaluate_train=True,
            label=label,
        )
    except DivergenceError as err:
        hooks.run.history, hooks.run.diverged, hooks.run.divergence_loss = list(err.history), str(err), err.loss
    return hooks.finish(test_loader, loss_fn)


def _start(
    label: str,
    model: nn.Module,
    train_loader: Iterable[Batch],
    val_loader: Iterable[Batch] | None,
    loss_fn: LossFn | None,
    epochs: int,
    patience: int | None,
    min_delta: float,
    evaluate_initial: bool,
    probes: Sequence[EpochProbe],
    on_epoch: EpochCallback | None,
) -> _EpochHooks:
    """The run of :func:`train_model` with epoch 0 measured (when ``evaluate_initial``), probed and reported."""
    stopper = None if patience is None else EarlyStopping(patience=patience, min_delta=min_delta)
    threads = torch.get_num_threads()
    initial_train = initial_val = None
    if evaluate_initial:
        initial_train = evaluate(model, train_loader, loss_fn=loss_fn)
        initial_val = None if val_loader is None else evaluate(model, val_loader, loss_fn=loss_fn)
    run = TrainingRun(
        label,
        _count_trainable(model),
        epochs,
        [],
        initial_train=initial_train,
        initial_val=initial_val,
        patience=patience,
        min_delta=float(min_delta),
        torch_threads=threads,
    )
    hooks = _EpochHooks(run, model, probes, on_epoch, stopper)
    hooks.start()
    return hooks


@dataclass
class _EpochHooks:
    """A run of :func:`train_model` and what it does at epoch 0, after every epoch and at the end.

    After every epoch: the probes, the caller's callback and early stopping; at the end: the tests.
    """

    run: TrainingRun
    model: nn.Module
    probes: Sequence[EpochProbe]
    on_epoch: EpochCallback | None
    stopper: EarlyStopping | None
    best: BestWeights = field(default_factory=BestWeights)

    def measure(self, epoch: int) -> dict[str, float]:
        """Run the probes; their metrics and time are recorded in the run."""
        start = time.perf_counter()
        values: dict[str, float] = {}
        for probe in self.probes:
            values.update(probe(epoch, self.model))
        self.run.probe_seconds += time.perf_counter() - start
        if values:
            self.run.probe_metrics[epoch] = values
        return values

    def start(self) -> None:
        """Epoch 0: probe the untrained model and report it with the initial evaluation."""
        initial_metrics = {**self.run.epoch_metrics().get(0, {}), **self.measure(0)}
        if self.on_epoch is not None and initial_metrics:
            self.on_epoch(0, initial_metrics)

    def after_epoch(self, record: EpochRecord) -> bool:
        """Probe and report the epoch; True when early stopping ends training."""
        probed = self.measure(record.epoch)
        if self.on_epoch is not None:
            self.on_epoch(record.epoch, {**record.metrics(), **probed})
        if self.stopper is None:
            return False
        monitored = record.val_loss if record.val_loss is not None else record.train_eval_loss
        return self.stopper.step(record.epoch, math.nan if monitored is None else monitored)

    def finish(self, test_loader: Iterable[Batch] | None, loss_fn: LossFn | None) -> TrainingRun:
        """Record the stop; test the final weights, then restore the best-validation weights and test them.

        A diverged run (or one without ``test_loader``) only gets its best weights back.
        """
        run, model, best = self.run, self.model, self.best
        run.stop_epoch = None if self.stopper is None else self.stopper.stop_epoch
        test = None if run.diverged is not None else test_loader
        if test is not None:
            run.test_last = evaluate(model, test, loss_fn=loss_fn)
        if best.epoch is not None:
            run.best_epoch = best.epoch
            if test is not None and best.epoch == len(run.history):
                run.test_best = run.test_last  # the last epoch is the best one: same weights
            else:
                best.restore(model)
                if test is not None:
                    run.test_best = evaluate(model, test, loss_fn=loss_fn)
        return run
