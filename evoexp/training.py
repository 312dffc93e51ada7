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
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evoexp.functional import backward_once

__all__ = [
    "DivergenceError",
    "EpochRecord",
    "EpochStats",
    "EvalStats",
    "accuracy",
    "batch_to",
    "evaluate",
    "firing_rate_penalty",
    "fit",
    "last_spikes",
    "layer_name",
    "train_epoch",
]

logger = logging.getLogger("evoexp.training")

LossFn = Callable[[Tensor, Tensor], Tensor]
SpikesFn = Callable[[nn.Module], Sequence[Tensor]]
Batch = Sequence[Tensor]


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

    def to_dict(self) -> dict[str, object]:
        """Plain-dict copy (JSON-safe apart from NaN floats)."""
        return dataclasses.asdict(self)


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
    if not 0.0 <= target_rate <= 1.0:
        raise ValueError(f"target_rate must be in [0, 1], got {target_rate!r}")
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
    squares: dict[str, float] = {}
    for name, param in model.named_parameters():
        if param.grad is not None:
            layer = layer_name(name)
            squares[layer] = squares.get(layer, 0.0) + param.grad.detach().double().pow(2).sum().item()
    return math.sqrt(sum(squares.values())), {k: math.sqrt(v) for k, v in squares.items()}


def _check_nonnegative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


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
    _check_nonnegative("rate_reg", rate_reg)
    if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
        raise ValueError(f"grad_clip must be a number > 0 or None, got {grad_clip!r}")
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
        objective = loss
        rate_value = 0.0
        if rate_reg > 0:
            penalty = firing_rate_penalty(spikes_fn(model), target_rate)
            objective = loss + rate_reg * penalty
            rate_value = penalty.item()
        loss_value = objective.item()
        if not math.isfinite(loss_value):
            raise DivergenceError(f"non-finite loss {loss_value} at batch {index}", loss=loss_value, batch=index)
        objective.backward()
        total_norm, layer_norms = _grad_norms(model)
        if not math.isfinite(total_norm):
            raise DivergenceError(
                f"non-finite gradient norm {total_norm} at batch {index}",
                loss=loss_value,
                grad_norm=total_norm,
                batch=index,
            )
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
        label: Name shown in the progress lines (e.g. ``"snn"``).

    Returns:
        One :class:`EpochRecord` per completed epoch.

    Raises:
        DivergenceError: On a non-finite loss or gradient, with ``epoch`` and ``history`` filled in.
        ValueError: If ``epochs`` is not a positive int, or on invalid training arguments.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
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
            raise DivergenceError(
                f"{label} diverged in epoch {epoch}: {err}",
                loss=err.loss,
                grad_norm=err.grad_norm,
                batch=err.batch,
                epoch=epoch,
                history=history,
            ) from err
        val = evaluate(model, val_loader, loss_fn=loss_fn) if val_loader is not None else None
        record = EpochRecord(
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
        )
        history.append(record)
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
        if on_epoch is not None and on_epoch(record):
            logger.log(level, "%s stopped after epoch %d (on_epoch)", label, epoch)
            break
    return history
