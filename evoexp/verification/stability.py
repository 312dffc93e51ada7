r"""Numerical stability of training: gradient norms over batches and weights over optimiser steps.

Two checks, both on a deep copy of the user's model (the model passed in is never changed, not even
its ``.grad`` fields or its train/eval mode):

* :meth:`NumericalStabilityTester.check_gradient_stability` draws ``n_batches`` batches, computes the
  loss gradient on each and reports the total gradient norm :math:`\|g\|_2`, the per-layer norms
  :math:`\|g_l\|_2` and the per-layer RMS per element :math:`\mathrm{rms}_l = \|g_l\|_2/\sqrt{n_l}`
  (:math:`n_l` the layer's parameter count; mean, std, min, max over batches), the number of NaN/Inf
  gradient entries and the *depth conditioning* :math:`\kappa_{\text{depth}} = \max_l
  \overline{\mathrm{rms}_l} / \min_l \overline{\mathrm{rms}_l}` (ratio of the largest to the smallest
  mean layer RMS), which grows when gradients vanish or explode with depth. The RMS makes layers of
  different sizes comparable: a raw-norm ratio would grow with the ratio of the layers' sizes alone.
* :meth:`NumericalStabilityTester.check_weight_stability` runs ``n_steps`` optimiser steps and
  reports per-tensor weight norms, relative update sizes :math:`\|\Delta W\|_2 / \|W\|_2`, the
  condition numbers :math:`\sigma_{\max}/\sigma_{\min}` of weight matrices (from
  :func:`torch.linalg.svdvals`) before and after, and NaN/Inf counts.

A *layer* is a module that owns parameters directly; its name is the parameter name without the last
component (``"hidden.0.weight"`` and ``"hidden.0.bias"`` belong to layer ``"hidden.0"``). Both checks run
on a private copy (:func:`~evoexp.verification.spiking.private_copy`), spiking networks in spiking mode
(what training runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evoexp.arguments import checked_by
from evoexp.results import Result
from evoexp.stats import describe
from evoexp.training import batch_to, layer_name
from evoexp.verification.spiking import private_copy

__all__ = [
    "DEPTH_CONDITIONING",
    "GradientStabilityResult",
    "GradientStabilityThresholds",
    "LossFn",
    "NormStats",
    "NumericalStabilityTester",
    "OptimizerFactory",
    "WeightStabilityResult",
    "WeightStabilityThresholds",
    "WeightTensorStats",
    "check_gradient_stability_arguments",
    "check_weight_stability_arguments",
]

DEPTH_CONDITIONING = (
    "max_l mean_b rms_l / min_l mean_b rms_l, where rms_l = ||g_l||_2 / sqrt(n_l) is the root mean square of "
    "layer l's gradient entries on batch b (n_l: its parameter count) and layers are the modules that own "
    "parameters, readout included"
)
"""Definition of the depth conditioning, as stated in results and reports."""

LossFn = Callable[[Tensor, Tensor], Tensor]
"""A loss ``loss_fn(outputs, targets) -> scalar``; ``None`` means cross-entropy on logits."""

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
"""Builds an optimiser for the given parameters, e.g. ``lambda p: torch.optim.Adam(p, lr=1e-3)``."""

Batch = Sequence[Tensor]


@dataclass
class NormStats:
    """Summary of a norm over batches (or steps).

    Attributes:
        mean: Arithmetic mean.
        std: Population standard deviation (0 for a single value).
        min: Smallest value.
        max: Largest value.

    """

    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> NormStats:
        """Summarise ``values``; all NaN when ``values`` is empty."""
        summary = describe(values, ddof=0, finite_only=False)
        return cls(mean=summary.mean, std=summary.std, min=summary.min, max=summary.max)


@dataclass(frozen=True)
class GradientStabilityThresholds:
    """Thresholds of the gradient-stability verdict.

    Attributes:
        max_grad_norm: Largest total gradient norm allowed on any batch (above: exploding).
        min_grad_norm: Smallest total gradient norm allowed on any batch (below: vanishing).
        max_depth_conditioning: Largest allowed ratio between the largest and the smallest mean
            layer gradient RMS per element (above: gradients vanish or explode with depth, or a layer
            is dead).

    """

    max_grad_norm: float
    min_grad_norm: float
    max_depth_conditioning: float


@dataclass
class GradientStabilityResult(Result):
    """Outcome of :meth:`NumericalStabilityTester.check_gradient_stability`.

    Attributes:
        n_batches: Number of batches the gradient was computed on.
        total_norm: Statistics of the total gradient norm over the batches with finite gradients.
        layer_norms: Per layer, statistics of that layer's gradient norm ``‖g_l‖₂`` over the same
            batches.
        layer_rms: Per layer, statistics of its gradient RMS per element ``‖g_l‖₂ / sqrt(n_l)``.
        layer_sizes: Per layer, its parameter count ``n_l``.
        depth_conditioning: ``max_l mean rms_l / min_l mean rms_l`` (``inf`` if a layer's gradient is
            zero, NaN if no batch had finite gradients); see ``depth_conditioning_definition``.
        nan_count: NaN gradient entries, summed over all batches and parameters.
        inf_count: Infinite gradient entries, summed over all batches and parameters.
        nonfinite_batches: Batches whose gradient had at least one NaN/Inf entry.
        nonfinite_losses: Batches whose loss was NaN/Inf.
        thresholds: The thresholds the verdict used.
        issues: Human-readable reasons for a failed verdict; the check passed when it is empty.
        depth_conditioning_definition: :data:`DEPTH_CONDITIONING`, in words.

    """

    n_batches: int
    total_norm: NormStats
    layer_norms: dict[str, NormStats]
    layer_rms: dict[str, NormStats]
    layer_sizes: dict[str, int]
    depth_conditioning: float
    nan_count: int
    inf_count: int
    nonfinite_batches: int
    nonfinite_losses: int
    thresholds: GradientStabilityThresholds
    issues: list[str] = field(default_factory=list)
    depth_conditioning_definition: str = DEPTH_CONDITIONING

    check: ClassVar[str] = "gradient_stability"

    @property
    def passed(self) -> bool:
        """True when no gradient entry or loss is NaN/Inf and every threshold holds."""
        return not self.issues

    def summary(self) -> dict[str, float]:
        """Flat metrics under ``stability/…`` (per layer: ``stability/grad_norm/<layer>``, ``.../grad_rms/<layer>``)."""
        out = {
            "stability/gradient_ok": float(self.passed),
            "stability/grad_norm_mean": self.total_norm.mean,
            "stability/grad_norm_max": self.total_norm.max,
            "stability/grad_norm_min": self.total_norm.min,
            "stability/depth_conditioning": self.depth_conditioning,
            "stability/grad_nan_count": float(self.nan_count),
            "stability/grad_inf_count": float(self.inf_count),
        }
        for layer, stats in self.layer_norms.items():
            out[f"stability/grad_norm/{layer}"] = stats.mean
            out[f"stability/grad_rms/{layer}"] = self.layer_rms[layer].mean
        return out


@dataclass(frozen=True)
class WeightStabilityThresholds:
    """Thresholds of the weight-stability verdict (applied to weight matrices, ``ndim >= 2``).

    Attributes:
        max_relative_update: Largest allowed single-step ``‖ΔW‖/‖W‖``.
        max_norm_growth: Largest allowed ``‖W_final‖/‖W_initial‖``.
        max_condition_number: Largest allowed final condition number ``σ_max/σ_min``.

    """

    max_relative_update: float
    max_norm_growth: float
    max_condition_number: float


@dataclass
class WeightTensorStats:
    """Weight statistics of one parameter tensor over the optimiser steps.

    Attributes:
        shape: Shape of the tensor.
        initial_norm: ``‖W‖₂`` (Frobenius) before the first step.
        final_norm: ``‖W‖₂`` after the last step.
        norms: ``‖W‖₂`` after each step.
        relative_updates: ``‖W_{k+1} − W_k‖ / ‖W_k‖`` per step (NaN where ``‖W_k‖ = 0``, ``inf``
            where a weight became NaN/Inf).
        max_relative_update: Largest entry of ``relative_updates`` that is not NaN (NaN if none).
        initial_condition: ``σ_max/σ_min`` before training (NaN for vectors; matrices of ``ndim > 2``
            are reshaped to ``[shape[0], -1]``).
        final_condition: ``σ_max/σ_min`` after the last step.
        nonfinite_count: NaN/Inf entries after the last step.

    """

    shape: list[int]
    initial_norm: float
    final_norm: float
    norms: list[float]
    relative_updates: list[float]
    max_relative_update: float
    initial_condition: float
    final_condition: float
    nonfinite_count: int

    @property
    def is_matrix(self) -> bool:
        """True for weight matrices (two or more dimensions)."""
        return len(self.shape) >= 2


@dataclass
class WeightStabilityResult(Result):
    """Outcome of :meth:`NumericalStabilityTester.check_weight_stability`.

    Attributes:
        n_steps: Optimiser steps taken (fewer than requested if the loss became NaN/Inf).
        losses: Training loss before each step.
        tensors: Per parameter tensor, its :class:`WeightTensorStats`.
        max_relative_update: Largest relative update of any weight matrix in any step.
        max_norm_growth: Largest ``final/initial`` norm ratio of any weight matrix.
        max_condition_number: Largest final condition number of any weight matrix.
        nonfinite_weights: NaN/Inf weight entries after the last step, over all tensors.
        nonfinite_losses: Steps whose loss was NaN/Inf.
        thresholds: The thresholds the verdict used.
        issues: Human-readable reasons for a failed verdict; the check passed when it is empty.

    """

    n_steps: int
    losses: list[float]
    tensors: dict[str, WeightTensorStats]
    max_relative_update: float
    max_norm_growth: float
    max_condition_number: float
    nonfinite_weights: int
    nonfinite_losses: int
    thresholds: WeightStabilityThresholds
    issues: list[str] = field(default_factory=list)

    check: ClassVar[str] = "weight_stability"

    @property
    def passed(self) -> bool:
        """True when all weights and losses are finite and every threshold holds."""
        return not self.issues

    def summary(self) -> dict[str, float]:
        """Flat metrics under ``stability/…``."""
        return {
            "stability/weight_ok": float(self.passed),
            "stability/max_relative_update": self.max_relative_update,
            "stability/max_norm_growth": self.max_norm_growth,
            "stability/max_condition_number": self.max_condition_number,
            "stability/nonfinite_weights": float(self.nonfinite_weights),
        }


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _cycle_batches(batches: Iterable[Batch], n: int) -> Iterator[Batch]:
    """Yield ``n`` batches, re-iterating ``batches`` (a loader or a list) when it runs out.

    A one-shot iterator that runs out early yields fewer than ``n`` batches.
    """
    produced = 0
    while produced < n:
        got_any = False
        for batch in batches:
            got_any = True
            yield batch
            produced += 1
            if produced == n:
                return
        if not got_any:
            return


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters that require gradients")
    return params


def _relative_update(step_norm: float, old_norm: float) -> float:
    """``step_norm / old_norm``: NaN when ``old_norm`` is 0 (undefined), ``inf`` when non-finite."""
    if old_norm == 0.0:
        return float("nan")
    ratio = step_norm / old_norm
    return ratio if math.isfinite(ratio) else math.inf


def _condition_number(weight: Tensor) -> float:
    """``σ_max / σ_min`` of a weight matrix (``ndim > 2`` reshaped to ``[shape[0], -1]``).

    Returns ``inf`` for a rank-deficient matrix, NaN for non-finite entries or vectors.
    """
    if weight.ndim < 2 or not bool(torch.isfinite(weight).all()):
        return float("nan")
    sv = torch.linalg.svdvals(weight.detach().reshape(weight.shape[0], -1).double())
    smallest, largest = float(sv.min()), float(sv.max())
    if largest == 0.0:
        return float("nan")
    return largest / smallest if smallest > 0.0 else float("inf")


def _gradient_thresholds(
    n_batches: int, max_grad_norm: float, min_grad_norm: float, max_depth_conditioning: float
) -> GradientStabilityThresholds:
    """Validated thresholds of :meth:`NumericalStabilityTester.check_gradient_stability`."""
    _check_count("n_batches", n_batches)
    for name, value in (
        ("max_grad_norm", max_grad_norm),
        ("min_grad_norm", min_grad_norm),
        ("max_depth_conditioning", max_depth_conditioning),
    ):
        _check_positive(name, value)
    if min_grad_norm >= max_grad_norm:
        raise ValueError(
            f"min_grad_norm={min_grad_norm:g} must be below max_grad_norm={max_grad_norm:g}: "
            "no gradient norm could pass"
        )
    return GradientStabilityThresholds(max_grad_norm, min_grad_norm, max_depth_conditioning)


def _batch_gradients(
    work: nn.Module, params: list[tuple[str, nn.Parameter]], batch: Batch, loss_fn: LossFn
) -> tuple[bool, list[Tensor]]:
    """Whether the loss of ``batch`` is finite, and its gradient for every parameter (zeros where unused)."""
    inputs, targets = batch_to(batch, params[0][1])
    loss = loss_fn(work(inputs), targets)
    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    return bool(torch.isfinite(loss)), [
        torch.zeros_like(p) if g is None else g.detach() for (_, p), g in zip(params, grads)
    ]


@dataclass
class _GradientTally:
    """Gradient norms and non-finite counts gathered batch by batch, per layer."""

    params: list[tuple[str, nn.Parameter]]
    sizes: dict[str, int]
    per_layer: dict[str, list[float]]
    totals: list[float] = field(default_factory=list)
    nan_count: int = 0
    inf_count: int = 0
    nonfinite_batches: int = 0
    nonfinite_losses: int = 0
    seen: int = 0

    @classmethod
    def of(cls, params: list[tuple[str, nn.Parameter]]) -> _GradientTally:
        """An empty tally over ``params``, grouped into layers (:func:`~evoexp.training.layer_name`)."""
        sizes: dict[str, int] = {}
        for name, p in params:
            sizes[layer_name(name)] = sizes.get(layer_name(name), 0) + p.numel()
        return cls(params, sizes, {layer: [] for layer in sizes})

    def add(self, finite_loss: bool, grads: list[Tensor]) -> None:
        """Count one batch; a batch with a NaN/Inf gradient entry is counted, not measured."""
        self.seen += 1
        self.nonfinite_losses += not finite_loss
        batch_nan = sum(int(torch.isnan(g).sum()) for g in grads)
        batch_inf = sum(int(torch.isinf(g).sum()) for g in grads)
        self.nan_count, self.inf_count = self.nan_count + batch_nan, self.inf_count + batch_inf
        if batch_nan or batch_inf:
            self.nonfinite_batches += 1
            return
        squares: dict[str, float] = dict.fromkeys(self.sizes, 0.0)
        for (name, _), g in zip(self.params, grads):
            squares[layer_name(name)] += float(g.double().pow(2).sum())
        for layer, square in squares.items():
            self.per_layer[layer].append(math.sqrt(square))
        self.totals.append(math.sqrt(sum(squares.values())))

    def result(self, thresholds: GradientStabilityThresholds) -> GradientStabilityResult:
        """Norm statistics, depth conditioning and the issues the thresholds find."""
        layer_norms = {layer: NormStats.of(values) for layer, values in self.per_layer.items()}
        layer_rms = {
            layer: NormStats.of([v / math.sqrt(self.sizes[layer]) for v in values])
            for layer, values in self.per_layer.items()
        }
        depth_conditioning = float("nan")
        if self.totals:
            means = [s.mean for s in layer_rms.values()]
            largest, smallest = max(means), min(means)
            depth_conditioning = largest / smallest if smallest > 0 else float("inf")
        total_norm = NormStats.of(self.totals)
        return GradientStabilityResult(
            n_batches=self.seen,
            total_norm=total_norm,
            layer_norms=layer_norms,
            layer_rms=layer_rms,
            layer_sizes=self.sizes,
            depth_conditioning=depth_conditioning,
            nan_count=self.nan_count,
            inf_count=self.inf_count,
            nonfinite_batches=self.nonfinite_batches,
            nonfinite_losses=self.nonfinite_losses,
            thresholds=thresholds,
            issues=self._issues(thresholds, total_norm, layer_rms, depth_conditioning),
        )

    def _issues(
        self,
        thresholds: GradientStabilityThresholds,
        total_norm: NormStats,
        layer_rms: dict[str, NormStats],
        depth_conditioning: float,
    ) -> list[str]:
        issues: list[str] = []
        if self.nan_count or self.inf_count:
            issues.append(
                f"{self.nan_count} NaN and {self.inf_count} Inf gradient entries in {self.nonfinite_batches} of "
                f"{self.seen} batches"
            )
        if self.nonfinite_losses:
            issues.append(f"loss was NaN/Inf on {self.nonfinite_losses} of {self.seen} batches")
        if not self.totals:
            return issues
        if total_norm.max > thresholds.max_grad_norm:
            issues.append(f"exploding: max gradient norm {total_norm.max:.4g} > {thresholds.max_grad_norm:g}")
        if total_norm.min < thresholds.min_grad_norm:
            issues.append(f"vanishing: min gradient norm {total_norm.min:.4g} < {thresholds.min_grad_norm:g}")
        if not depth_conditioning <= thresholds.max_depth_conditioning:
            rms = {layer: s.mean for layer, s in layer_rms.items()}
            low, high = min(rms, key=rms.__getitem__), max(rms, key=rms.__getitem__)
            issues.append(
                f"depth conditioning {depth_conditioning:.4g} > {thresholds.max_depth_conditioning:g}: gradient RMS "
                f"per element {rms[high]:.3g} in layer '{high}' vs {rms[low]:.3g} in layer '{low}'"
            )
        return issues


def _weight_thresholds(
    n_steps: int, max_relative_update: float, max_norm_growth: float, max_condition_number: float
) -> WeightStabilityThresholds:
    """Validated thresholds of :meth:`NumericalStabilityTester.check_weight_stability`."""
    _check_count("n_steps", n_steps)
    for name, value in (
        ("max_relative_update", max_relative_update),
        ("max_norm_growth", max_norm_growth),
        ("max_condition_number", max_condition_number),
    ):
        _check_positive(name, value)
    return WeightStabilityThresholds(max_relative_update, max_norm_growth, max_condition_number)


@dataclass
class _WeightTally:
    """Weight norms and relative updates gathered optimiser step by step, per parameter tensor."""

    params: list[tuple[str, nn.Parameter]]
    initial: dict[str, Tensor]
    norms: dict[str, list[float]]
    updates: dict[str, list[float]]
    losses: list[float] = field(default_factory=list)
    nonfinite_losses: int = 0

    @classmethod
    def of(cls, params: list[tuple[str, nn.Parameter]]) -> _WeightTally:
        """An empty tally over ``params``, holding a copy of their initial values."""
        return cls(
            params,
            {name: p.detach().clone() for name, p in params},
            {name: [] for name, _ in params},
            {name: [] for name, _ in params},
        )

    def step(self, work: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, loss_fn: LossFn) -> bool:
        """Take one optimiser step on ``batch`` and measure it; False (no step) when the loss is NaN/Inf."""
        inputs, targets = batch_to(batch, self.params[0][1])
        before = {name: p.detach().clone() for name, p in self.params}
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(work(inputs), targets)
        self.losses.append(float(loss.detach()))
        if not bool(torch.isfinite(loss)):
            self.nonfinite_losses += 1
            return False
        loss.backward()
        optimizer.step()
        for name, p in self.params:
            old_norm = float(before[name].double().norm())
            step = float((p.detach() - before[name]).double().norm())
            self.norms[name].append(float(p.detach().double().norm()))
            self.updates[name].append(_relative_update(step, old_norm))
        return True

    def tensors(self) -> dict[str, WeightTensorStats]:
        """Per parameter tensor, its statistics over the steps taken."""
        tensors: dict[str, WeightTensorStats] = {}
        for name, p in self.params:
            defined = [u for u in self.updates[name] if not math.isnan(u)]
            tensors[name] = WeightTensorStats(
                shape=list(p.shape),
                initial_norm=float(self.initial[name].double().norm()),
                final_norm=float(p.detach().double().norm()),
                norms=self.norms[name],
                relative_updates=self.updates[name],
                max_relative_update=max(defined, default=float("nan")),
                initial_condition=_condition_number(self.initial[name]),
                final_condition=_condition_number(p.detach()),
                nonfinite_count=int((~torch.isfinite(p.detach())).sum()),
            )
        return tensors


def check_gradient_stability_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :meth:`NumericalStabilityTester.check_gradient_stability` (the thresholds).

    Raises:
        ValueError: The first invalid setting, named first.
    """
    _gradient_thresholds(*(args[k] for k in ("n_batches", "max_grad_norm", "min_grad_norm", "max_depth_conditioning")))


def check_weight_stability_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :meth:`NumericalStabilityTester.check_weight_stability` (the thresholds).

    Raises:
        ValueError: The first invalid setting, named first.
    """
    names = ("n_steps", "max_relative_update", "max_norm_growth", "max_condition_number")
    _weight_thresholds(*(args[k] for k in names))


class NumericalStabilityTester:
    """Gradient and weight stability checks for any ``nn.Module`` trained with a loss.

    The tester is stateless; both checks work on deep copies of the model.
    """

    @checked_by(check_gradient_stability_arguments)
    def check_gradient_stability(
        self,
        model: nn.Module,
        batches: Iterable[Batch],
        loss_fn: LossFn | None = None,
        *,
        n_batches: int = 10,
        max_grad_norm: float = 1e5,
        min_grad_norm: float = 1e-8,
        max_depth_conditioning: float = 1e4,
    ) -> GradientStabilityResult:
        r"""Gradient norms, NaN/Inf counts and depth conditioning over ``n_batches`` batches.

        The model copy is in training mode; inputs are cast to the dtype of its parameters.

        Args:
            model: Any module mapping inputs to outputs accepted by ``loss_fn``.
            batches: A loader or sequence of ``(inputs, targets)``; re-iterated if shorter than
                ``n_batches``.
            loss_fn: ``loss_fn(outputs, targets) -> scalar``; cross-entropy on logits if None.
            n_batches: Number of batches to draw.
            max_grad_norm: A batch whose total gradient norm exceeds this fails (exploding).
            min_grad_norm: A batch whose total gradient norm is below this fails (vanishing).
            max_depth_conditioning: The verdict fails when :math:`\max_l \overline{\mathrm{rms}_l}/
                \min_l \overline{\mathrm{rms}_l}` (mean gradient RMS per element of each layer)
                exceeds this.

        Returns:
            A :class:`GradientStabilityResult`.

        Raises:
            ValueError: If a count or threshold is not positive, ``min_grad_norm >= max_grad_norm``,
                the model has no trainable parameters or ``batches`` yields nothing.

        """
        thresholds = _gradient_thresholds(n_batches, max_grad_norm, min_grad_norm, max_depth_conditioning)
        loss_fn = F.cross_entropy if loss_fn is None else loss_fn
        work = private_copy(model).model.train()
        tally = _GradientTally.of(_trainable(work))
        for batch in _cycle_batches(batches, n_batches):
            tally.add(*_batch_gradients(work, tally.params, batch, loss_fn))
        if tally.seen == 0:
            raise ValueError("batches yielded no batch")
        return tally.result(thresholds)

    @checked_by(check_weight_stability_arguments)
    def check_weight_stability(
        self,
        model: nn.Module,
        batches: Iterable[Batch],
        loss_fn: LossFn | None,
        optimizer_factory: OptimizerFactory,
        *,
        n_steps: int = 20,
        max_relative_update: float = 0.5,
        max_norm_growth: float = 10.0,
        max_condition_number: float = 1e6,
    ) -> WeightStabilityResult:
        r"""Weight norms, relative updates and condition numbers over ``n_steps`` optimiser steps.

        The steps are taken on a deep copy of ``model`` with an optimiser built by
        ``optimizer_factory`` for the copy's parameters; ``model`` is left unchanged. The verdict
        applies the thresholds to weight matrices (``ndim >= 2``); vectors (biases, decays) are
        reported but not judged, since a zero-initialised bias has no meaningful relative update.
        Training stops early when the loss becomes NaN/Inf.

        Args:
            model: Any module mapping inputs to outputs accepted by ``loss_fn``.
            batches: A loader or sequence of ``(inputs, targets)``; re-iterated if shorter than
                ``n_steps``.
            loss_fn: ``loss_fn(outputs, targets) -> scalar``; cross-entropy on logits if None.
            optimizer_factory: ``optimizer_factory(parameters) -> torch.optim.Optimizer``.
            n_steps: Number of optimiser steps (one batch each).
            max_relative_update: The verdict fails when a step changes a weight matrix by more than
                this fraction of its norm, :math:`\|\Delta W\|/\|W\|`.
            max_norm_growth: The verdict fails when :math:`\|W_{final}\|/\|W_{initial}\|` exceeds this.
            max_condition_number: The verdict fails when a final :math:`\sigma_{\max}/\sigma_{\min}`
                exceeds this.

        Returns:
            A :class:`WeightStabilityResult`.

        Raises:
            ValueError: If a count or threshold is not positive, the model has no trainable
                parameters or ``batches`` yields nothing.

        """
        thresholds = _weight_thresholds(n_steps, max_relative_update, max_norm_growth, max_condition_number)
        loss_fn = F.cross_entropy if loss_fn is None else loss_fn
        work = private_copy(model).model.train()
        tally = _WeightTally.of(_trainable(work))
        optimizer = optimizer_factory([p for _, p in tally.params])
        for batch in _cycle_batches(batches, n_steps):
            if not tally.step(work, optimizer, batch, loss_fn):
                break
        if not tally.losses:
            raise ValueError("batches yielded no batch")
        return self._weight_verdict(tally.tensors(), tally.losses, tally.nonfinite_losses, thresholds)

    @staticmethod
    def _weight_verdict(
        tensors: dict[str, WeightTensorStats],
        losses: list[float],
        nonfinite_losses: int,
        thresholds: WeightStabilityThresholds,
    ) -> WeightStabilityResult:
        """Aggregate per-tensor statistics and apply the thresholds."""
        matrices = [t for t in tensors.values() if t.is_matrix]
        max_rel = max(
            (t.max_relative_update for t in matrices if not math.isnan(t.max_relative_update)),
            default=float("nan"),
        )
        growth = [t.final_norm / t.initial_norm if t.initial_norm > 0 else float("nan") for t in matrices]
        max_growth = max((g if math.isfinite(g) else math.inf for g in growth), default=float("nan"))
        conds = [t.final_condition for t in matrices if not math.isnan(t.final_condition)]
        max_cond = max(conds, default=float("nan"))
        nonfinite_weights = sum(t.nonfinite_count for t in tensors.values())

        issues: list[str] = []
        if nonfinite_weights:
            issues.append(f"{nonfinite_weights} NaN/Inf weight entries after {len(losses)} steps")
        if nonfinite_losses:
            issues.append(f"loss became NaN/Inf at step {len(losses)}")
        if max_rel > thresholds.max_relative_update:
            issues.append(f"relative update {max_rel:.4g} > {thresholds.max_relative_update:g}")
        if max_growth > thresholds.max_norm_growth:
            issues.append(f"weight norm growth {max_growth:.4g} > {thresholds.max_norm_growth:g}")
        if max_cond > thresholds.max_condition_number:
            issues.append(f"condition number {max_cond:.4g} > {thresholds.max_condition_number:g}")
        return WeightStabilityResult(
            n_steps=len(losses) - nonfinite_losses,
            losses=losses,
            tensors=tensors,
            max_relative_update=max_rel,
            max_norm_growth=max_growth,
            max_condition_number=max_cond,
            nonfinite_weights=nonfinite_weights,
            nonfinite_losses=nonfinite_losses,
            thresholds=thresholds,
            issues=issues,
        )
