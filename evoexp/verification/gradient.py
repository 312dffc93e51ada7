r"""Finite-difference verification of autograd gradients (exact and fast mode), for any ``nn.Module`` + loss.

Exact mode compares, for every coordinate :math:`i` of every studied parameter, the central difference

.. math:: n_i = \frac{L(w + \varepsilon e_i) - L(w - \varepsilon e_i)}{2\varepsilon}

with the autograd gradient :math:`a_i = \partial L / \partial w_i`. Fast mode (like ``gradcheck``'s fast mode)
compares, for a few seeded random unit directions :math:`v` per parameter tensor,
:math:`(L(w+\varepsilon v) - L(w-\varepsilon v))/2\varepsilon` with :math:`\langle \nabla L, v\rangle`; a tensor that
fails gets an exact pass that names its worst coordinate.

A coordinate passes when :math:`|n - a| \le \text{atol} + \text{rtol}\,|a|` (``torch.allclose``/``gradcheck``
convention). The reported relative error is :math:`|n-a| / \max(|a|, |n|, \text{atol})`. A value that disagrees at
:math:`\varepsilon` is re-evaluated at smaller steps and with one-sided differences
(:mod:`evoexp.verification._kinks`): it passes when a smaller step agrees (the loss bends on a scale below
:math:`\varepsilon`), and it is a *non-differentiable point* -- counted and explained, not an error -- when the
one-sided differences disagree with each other and the analytical value is one of them or lies between them (a kink of
the loss, e.g. a near-tie of two time steps in a ``max``-over-time readout), or when they disagree and the gradient
agrees with the finite differences just beside the kink on both sides (several samples tie at once). At a smooth
point the one-sided differences agree, so a wrong gradient stays an error. Every evaluation runs on a
private float64 copy of the model; perturbed losses are batched with ``torch.func.functional_call`` + ``vmap``.

Spiking networks (those a :mod:`~evoexp.verification.spiking` adapter claims: evoexp SNNs, snnTorch, SpikingJelly and
Norse networks) are checked in smooth mode (forward = surrogate primitive, so the surrogate gradient is the true
gradient). In spiking mode the finite difference of a step function is not a gradient: the same numbers are then
reported as *surrogate bias* with ``passed = None``, never as a verdict.

The check verifies the network as it is trained: the analytical gradient is the one a training step computes, and
every finite-difference evaluation (batched, sequential or structure-aware) runs the training forward. What the
training gradient deliberately ignores is held fixed: a detached reset (``detach_reset``; in a peer library's network,
every ``detach()``) is replayed, in every perturbed forward, at its value in the unperturbed forward, so the central
differences are the detached gradient exactly (``held_resets`` names those layers). The adapter's notes (e.g. a
substituted spike function) are the result's warnings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from evoexp.arguments import checked_by
from evoexp.keys import GRADIENT_NONDIFFERENTIABLE, GRADIENT_REFINED
from evoexp.results import Result
from evoexp.verification._batched import DEFAULT_MEMORY_BUDGET, LossFn, LossProblem
from evoexp.verification._kinks import NONDIFFERENTIABLE, REFINED, WRONG, Resolution, resolve
from evoexp.verification.alignment import AlignmentResult, verify_gradient_alignment
from evoexp.verification.surrogate_check import SurrogateVerificationResult, verify_surrogate_gradient

__all__ = [
    "CoordinateError",
    "GradientVerificationResult",
    "GradientVerifier",
    "NondifferentiablePoint",
    "TensorGradientStats",
    "check_finite_difference_arguments",
]

Mode = Literal["exact", "fast"]
Comparison = Literal["gradient", "surrogate_bias"]

_MAX_EXAMPLES = 5
_FLOAT64_EPS = torch.finfo(torch.float64).eps


@dataclass
class CoordinateError:
    r"""One compared value: a parameter coordinate (exact mode) or a random direction (fast mode).

    Attributes:
        tensor: Parameter name, e.g. ``"hidden.0.weight"``.
        index: Coordinate inside the tensor (exact), or ``None`` for a direction.
        direction: Index of the random direction (fast), or ``None`` for a coordinate.
        numerical: Central-difference value (at a smaller step when that step agreed; see ``step``).
        analytical: Autograd value.
        abs_error: :math:`|n - a|`.
        rel_error: :math:`|n - a| / \max(|a|, |n|, \text{atol})`.
        step: Step of ``numerical`` (``eps``, or the smaller step that resolved the value).
    """

    tensor: str
    index: tuple[int, ...] | None
    direction: int | None
    numerical: float
    analytical: float
    abs_error: float
    rel_error: float
    step: float = math.nan

    def describe(self) -> str:
        """One-line description: where, numerical vs analytical, errors."""
        where = f"index {self.index}" if self.index is not None else f"direction {self.direction}"
        return (
            f"'{self.tensor}' {where}: numerical {self.numerical:.10g} vs analytical {self.analytical:.10g} "
            f"(abs err {self.abs_error:.3g}, rel err {self.rel_error:.3g})"
        )


@dataclass
class NondifferentiablePoint:
    """A compared value where the loss has a kink: the one-sided differences disagree, autograd gave one of them.

    Attributes:
        tensor: Parameter name.
        index: Coordinate inside the tensor (exact), or ``None`` for a direction.
        direction: Index of the random direction (fast), or ``None`` for a coordinate.
        analytical: Autograd value.
        left: :math:`(L(w) - L(w - h e))/h`.
        right: :math:`(L(w + h e) - L(w))/h`.
        step: The step :math:`h` of the one-sided differences (the smallest one tried).
    """

    tensor: str
    index: tuple[int, ...] | None
    direction: int | None
    analytical: float
    left: float
    right: float
    step: float

    def describe(self) -> str:
        """One line: where, the two one-sided differences and the analytical value."""
        where = f"index {self.index}" if self.index is not None else f"direction {self.direction}"
        return (
            f"'{self.tensor}' {where}: one-sided differences {self.left:.10g} (left) and {self.right:.10g} (right) "
            f"at step {self.step:.3g}, analytical {self.analytical:.10g}"
        )


@dataclass
class TensorGradientStats:
    """Error statistics of one parameter tensor.

    Attributes:
        name: Parameter name.
        shape: Tensor shape.
        n_checked: Coordinates (exact) or directions (fast) compared.
        n_failed: How many are wrong: they violate ``abs_error <= atol + rtol * |analytical|`` at ``eps`` and at
            every smaller step, and are no non-differentiable point.
        max_abs_error: Largest :math:`|n-a|` over the differentiable values (``n`` at the step that decided them;
            0 when every value is a non-differentiable point).
        mean_abs_error: Mean :math:`|n-a|` over the differentiable values.
        max_rel_error: Largest relative error over the differentiable values.
        worst: The compared value that violates the tolerance most (largest ``abs / (atol + rtol|a|)``).
        passed: ``n_failed == 0`` (``None`` for surrogate bias).
        n_refined: Values that disagreed at ``eps`` and agreed at two consecutive smaller steps.
        n_nondifferentiable: Values at a non-differentiable point of the loss (not errors, not in the statistics).
    """

    name: str
    shape: tuple[int, ...]
    n_checked: int
    n_failed: int
    max_abs_error: float
    mean_abs_error: float
    max_rel_error: float
    worst: CoordinateError
    passed: bool | None
    n_refined: int = 0
    n_nondifferentiable: int = 0


@dataclass
class GradientVerificationResult(Result):
    """Outcome of :meth:`GradientVerifier.verify_finite_difference`.

    Attributes:
        mode: ``"exact"`` (every coordinate) or ``"fast"`` (random directions).
        comparison: ``"gradient"`` (a verdict) or ``"surrogate_bias"`` (spiking SNN: informational).
        max_abs_error: Over all differentiable compared values.
        mean_abs_error: Over all differentiable compared values.
        max_rel_error: Over all differentiable compared values.
        worst: Overall worst value; in fast mode, the worst coordinate of the exact pass over failing tensors.
        per_tensor: Statistics per parameter tensor.
        eps: Finite-difference step.
        atol: Absolute tolerance.
        rtol: Relative tolerance.
        dtype: Dtype of the verification copy.
        smooth_mode: ``True``/``False`` for spiking networks, ``None`` for other models.
        n_parameters: Scalar parameters studied.
        n_evaluations: Loss evaluations performed (forwards, including the one forward of the gradient passes).
        batched: Whether ``vmap`` batching was used (``False`` after a fallback to a sequential loop).
        structured_tensors: Tensors whose coordinates were evaluated by the structure-aware evoexp-SNN path
            (:mod:`evoexp.verification._snn_coordinates`; same central differences, cheaper forwards).
        held_resets: Layers whose detached reset was held at its unperturbed value in the finite differences.
        determinism_max_diff: Max abs difference between two autograd gradients of the same loss.
        nondet_tol: Tolerance on ``determinism_max_diff``.
        exact_pass_tensors: Fast mode: tensors that failed and got an exact pass.
        n_refined: Values that disagreed at ``eps`` and agreed at smaller steps (the loss bends below ``eps``).
        n_nondifferentiable: Values at non-differentiable points of the loss (kinks): not errors.
        nondifferentiable: Up to five of them, with their one-sided differences.
        seconds: Wall time.
        warnings: Non-float64 dtype, vmap fallback, non-determinism, ...
        message: Human-readable verdict naming failing tensors with numerical vs analytical values.
    """

    check: ClassVar[str] = "gradient"

    mode: Mode
    comparison: Comparison
    max_abs_error: float
    mean_abs_error: float
    max_rel_error: float
    worst: CoordinateError | None
    per_tensor: dict[str, TensorGradientStats]
    eps: float
    atol: float
    rtol: float
    dtype: str
    smooth_mode: bool | None
    n_parameters: int
    n_evaluations: int
    batched: bool
    determinism_max_diff: float
    nondet_tol: float
    exact_pass_tensors: list[str] = field(default_factory=list)
    structured_tensors: list[str] = field(default_factory=list)
    held_resets: list[str] = field(default_factory=list)
    n_refined: int = 0
    n_nondifferentiable: int = 0
    nondifferentiable: list[NondifferentiablePoint] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def deterministic(self) -> bool:
        """Whether two backward passes agreed within ``nondet_tol``."""
        return self.determinism_max_diff <= self.nondet_tol

    @property
    def failing_tensors(self) -> list[str]:
        """Names of the parameter tensors whose check failed."""
        return [name for name, stats in self.per_tensor.items() if stats.passed is False]

    @property
    def passed(self) -> bool | None:
        """``None`` for surrogate bias, else every tensor within tolerance and the backward deterministic."""
        if self.comparison == "surrogate_bias":
            return None
        return not self.failing_tensors and self.deterministic

    def summary(self) -> dict[str, float]:
        """Flat metrics ``gradient/...`` (``gradient/bias_...`` in spiking mode)."""
        prefix = "gradient/" if self.comparison == "gradient" else "gradient/bias_"
        out = {
            f"{prefix}max_abs_error": self.max_abs_error,
            f"{prefix}mean_abs_error": self.mean_abs_error,
            f"{prefix}max_rel_error": self.max_rel_error,
            "gradient/determinism_max_diff": self.determinism_max_diff,
            "gradient/n_evaluations": float(self.n_evaluations),
            "gradient/seconds": self.seconds,
        }
        if self.passed is not None:
            out["gradient/passed"] = float(self.passed)
            out[GRADIENT_NONDIFFERENTIABLE] = float(self.n_nondifferentiable)
            out[GRADIENT_REFINED] = float(self.n_refined)
        return out


@dataclass(frozen=True)
class _Settings:
    """The comparison's step and tolerances, and whether it gives a verdict."""

    eps: float
    atol: float
    rtol: float
    verdict: bool


@dataclass
class _Compared:
    """One tensor's compared values: flat ``numerical``/``analytical`` and how each was resolved."""

    name: str
    shape: tuple[int, ...]
    analytical: Tensor
    resolution: Resolution
    indices: Tensor | None  # flat coordinates (exact mode) or None (directions)

    def where(self, k: int) -> tuple[tuple[int, ...] | None, int | None]:
        """``(index, direction)`` of entry ``k``."""
        if self.indices is None:
            return None, k
        return tuple(int(i) for i in torch.unravel_index(self.indices[k], self.shape)), None

    def kinks(self) -> list[NondifferentiablePoint]:
        """The non-differentiable points among the entries that have one-sided differences (at most five).

        Directions relabelled after an exact pass over their tensor have none: their coordinates are listed instead.
        """
        r = self.resolution
        shown = (r.status == NONDIFFERENTIABLE) & torch.isfinite(r.left) & torch.isfinite(r.right)
        found = torch.nonzero(shown).flatten()[:_MAX_EXAMPLES].tolist()
        return [
            NondifferentiablePoint(
                self.name,
                *self.where(k),
                float(self.analytical[k]),
                float(r.left[k]),
                float(r.right[k]),
                float(r.finest[k]),
            )
            for k in found
        ]

    def stats(self, settings: _Settings) -> TensorGradientStats:
        """Error statistics over the differentiable entries; the non-differentiable ones are counted apart."""
        r, analytical = self.resolution, self.analytical
        numerical = r.numerical
        abs_err = (numerical - analytical).abs()
        rel_err = abs_err / torch.maximum(torch.maximum(analytical.abs(), numerical.abs()), torch.tensor(settings.atol))
        ratio = abs_err / (settings.atol + settings.rtol * analytical.abs())
        # NaN compares false: count it as a failure and make it the worst entry; kinks are never the worst.
        ratio = torch.where(torch.isnan(ratio), torch.full_like(ratio, math.inf), ratio)
        kink = r.status == NONDIFFERENTIABLE
        smooth = ~kink
        ratio = torch.where(smooth, ratio, torch.full_like(ratio, -math.inf))
        k = int(torch.argmax(ratio))
        index, direction = self.where(k)
        worst = CoordinateError(
            self.name,
            index,
            direction,
            float(numerical[k]),
            float(analytical[k]),
            float(abs_err[k]),
            float(rel_err[k]),
            float(r.step[k]),
        )
        n_failed = int((r.status == WRONG).sum())
        return TensorGradientStats(
            name=self.name,
            shape=self.shape,
            n_checked=int(numerical.numel()),
            n_failed=n_failed,
            max_abs_error=_largest(abs_err[smooth]),
            mean_abs_error=float(abs_err[smooth].mean()) if bool(smooth.any()) else 0.0,
            max_rel_error=_largest(rel_err[smooth]),
            worst=worst,
            passed=(n_failed == 0) if settings.verdict else None,
            n_refined=int((r.status == REFINED).sum()),
            n_nondifferentiable=int(kink.sum()),
        )


def _largest(values: Tensor) -> float:
    """Largest value (NaN propagates); 0 when there is none (every value was a non-differentiable point)."""
    return float(values.max()) if values.numel() else 0.0


def check_finite_difference_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :meth:`GradientVerifier.verify_finite_difference` (:func:`evoexp.arguments.checked_by`).

    Besides the ranges, float64 must resolve the step: the central difference ``(L(w+eps) - L(w-eps)) / (2 eps)``
    rounds by about float64's machine epsilon / eps for a loss of order 1, and beyond ``atol`` even an exact gradient
    would fail.

    Raises:
        ValueError: The first invalid argument, named first.
    """
    mode, eps, atol = args["mode"], args["eps"], args["atol"]
    if mode not in ("exact", "fast"):
        raise ValueError(f"mode must be 'exact' or 'fast', got {mode!r}")
    for name in ("eps", "atol", "rtol"):
        value = args[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not args["nondet_tol"] >= 0:
        raise ValueError(f"nondet_tol must be >= 0, got {args['nondet_tol']!r}")
    if args["n_directions"] < 1:
        raise ValueError(f"n_directions must be >= 1, got {args['n_directions']!r}")
    smallest = _FLOAT64_EPS / atol
    if eps < smallest:
        raise ValueError(
            f"eps={eps:g} is below what float64 resolves: the central difference rounds by about "
            f"{_FLOAT64_EPS:.2g}/eps = {_FLOAT64_EPS / eps:.2g}, more than atol={atol:g}; use eps >= {smallest:.2g}"
        )


class GradientVerifier:
    """Finite-difference checks of autograd gradients, surrogate shapes and surrogate-gradient alignment.

    Args:
        dtype: Dtype of the private model copy (float64 recommended; anything else is warned about).
        memory_budget: Bound in bytes on the extra memory of one batched ``vmap`` evaluation.
        chunk_size: Fixed number of forward evaluations per batched call (default: sized by ``memory_budget``).
        structure_aware: Evaluate exact-mode perturbations of plain evoexp SNNs structure-aware (same central
            differences, far fewer operations; see :mod:`evoexp.verification._snn_coordinates`). ``False`` forces
            the generic ``vmap`` path.

    Raises:
        ValueError: ``dtype`` is not a floating dtype.
    """

    def __init__(
        self,
        *,
        dtype: torch.dtype = torch.float64,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        chunk_size: int | None = None,
        structure_aware: bool = True,
    ) -> None:
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.chunk_size = chunk_size
        self.structure_aware = structure_aware

    def _problem(
        self, model: nn.Module, inputs: Any, targets: Any, loss_fn: LossFn, parameters: Sequence[str] | None
    ) -> LossProblem:
        return LossProblem(
            model,
            inputs,
            targets,
            loss_fn,
            dtype=self.dtype,
            parameters=parameters,
            memory_budget=self.memory_budget,
            chunk_size=self.chunk_size,
            structure_aware=self.structure_aware,
        )

    @checked_by(check_finite_difference_arguments)
    def verify_finite_difference(
        self,
        model: nn.Module,
        inputs: Any,
        targets: Any,
        loss_fn: LossFn,
        *,
        mode: Mode = "exact",
        eps: float = 1e-6,
        atol: float = 1e-5,
        rtol: float = 1e-3,
        nondet_tol: float = 0.0,
        smooth: bool | None = None,
        n_directions: int = 1,
        seed: int = 0,
        parameters: Sequence[str] | None = None,
    ) -> GradientVerificationResult:
        r"""Compare central differences of ``loss_fn(model(inputs), targets)`` with its autograd gradient.

        Defaults of ``eps``/``atol``/``rtol``/``nondet_tol`` are ``torch.autograd.gradcheck``'s, so verdicts are
        comparable. The model is deep-copied (and cast to the verifier's dtype); it is never modified. Values that
        disagree at ``eps`` are resolved at smaller steps and with one-sided differences (module docstring): a
        non-differentiable point of the loss is counted, not failed.

        Args:
            model: Any ``nn.Module``; ``inputs`` is passed positionally (a tuple is unpacked).
            inputs: Model input(s).
            targets: Second argument of ``loss_fn``.
            loss_fn: ``loss_fn(model_output, targets) -> scalar tensor``.
            mode: ``"exact"`` (every coordinate) or ``"fast"`` (``n_directions`` random directions per tensor).
            eps: Central-difference step :math:`\varepsilon`.
            atol: Absolute tolerance.
            rtol: Relative tolerance (to :math:`|a|`).
            nondet_tol: Allowed max difference between two backward passes.
            smooth: Smooth mode for spiking networks; ``None`` = smooth for spiking networks. ``False`` on a
                spiking network reports the comparison as surrogate bias (``passed is None``).
            n_directions: Fast mode: random unit directions per parameter tensor.
            seed: Seed of the fast-mode directions.
            parameters: Parameter names to check (default: all trainable).

        Returns:
            A :class:`GradientVerificationResult`.

        Raises:
            ValueError: Bad ``mode``/``eps``/tolerances/``n_directions``, ``smooth=True`` on a model without a
                smooth mode, unknown ``parameters``, or a non-scalar loss.
        """
        start = time.perf_counter()
        problem = self._problem(model, inputs, targets, loss_fn, parameters)
        smooth_mode, comparison = _mode(problem, smooth)
        warnings = _dtype_warnings(self.dtype)
        problem.copy.set_smooth(bool(smooth_mode))
        warnings += problem.copy.notes
        grad, determinism = _analytical(problem)
        held = problem.copy.hold_resets(problem.forward)
        settings = _Settings(eps, atol, rtol, verdict=comparison == "gradient")
        per_tensor, exact_pass, worst, compared = _compare(problem, grad, settings, mode, n_directions, seed)
        warnings += _determinism_warnings(determinism, nondet_tol) + problem.warnings
        result = _assemble(
            per_tensor,
            compared,
            mode=mode,
            comparison=comparison,
            settings=settings,
            worst=worst,
            exact_pass=exact_pass,
            problem=problem,
            smooth_mode=smooth_mode,
            held=held,
            determinism=determinism,
            nondet_tol=nondet_tol,
            dtype=self.dtype,
            seconds=time.perf_counter() - start,
            warnings=warnings,
        )
        result.message = _message(result)
        return result

    def verify_surrogate_gradient(
        self, spike_fn: Callable[[Tensor], Tensor], surrogate_fn: Callable[[Tensor], Tensor], **kwargs: Any
    ) -> SurrogateVerificationResult:
        """Check ``spike_fn``'s backward against ``surrogate_fn`` on a grid (docs/design/verification.md).

        Keyword arguments are those of :func:`evoexp.verification.surrogate_check.verify_surrogate_gradient`.
        """
        return verify_surrogate_gradient(spike_fn, surrogate_fn, **kwargs)

    def verify_gradient_alignment(
        self, model: nn.Module, inputs: Any, targets: Any, loss_fn: LossFn, **kwargs: Any
    ) -> AlignmentResult:
        """Alignment of surrogate and Gaussian-smoothed gradients, on a copy in the verifier's dtype.

        Semantics: docs/design/verification.md. Keyword arguments are those of
        :func:`evoexp.verification.alignment.verify_gradient_alignment`.
        """
        options = {"dtype": self.dtype, "memory_budget": self.memory_budget, "chunk_size": self.chunk_size, **kwargs}
        return verify_gradient_alignment(model, inputs, targets, loss_fn, **options)


# ---- the steps of verify_finite_difference ---------------------------------------------------------------------


def _mode(problem: LossProblem, smooth: bool | None) -> tuple[bool | None, Comparison]:
    """Smooth mode (``None`` for a model without spiking neurons) and what the comparison means."""
    snn = problem.spiking(smooth)
    smooth_mode = (True if smooth is None else smooth) if snn else None
    return smooth_mode, "surrogate_bias" if snn and not smooth_mode else "gradient"


def _dtype_warnings(dtype: torch.dtype) -> list[str]:
    if dtype == torch.float64:
        return []
    return [
        f"verification dtype is {dtype}, not torch.float64: finite differences are dominated by rounding error and "
        "tolerances must be loosened"
    ]


def _analytical(problem: LossProblem) -> tuple[dict[str, Tensor], float]:
    """The training gradient, and how far a second backward pass of the same loss lands from it."""
    grad, grad_again = problem.gradients(2)
    return grad, max(float((g - grad_again[n]).abs().max()) for n, g in grad.items())


def _determinism_warnings(determinism: float, nondet_tol: float) -> list[str]:
    if determinism <= nondet_tol:
        return []
    return [
        f"backward is non-deterministic: two gradients of the same loss differ by up to {determinism:.3g} "
        f"(nondet_tol={nondet_tol:g})"
    ]


Shifted = Callable[[Tensor, Tensor], Tensor]
"""``f(entries, steps)``: a value at the parameters shifted by ``steps[k]`` along entry ``entries[k]``."""


def _resolved(
    losses: Shifted, analytical_at: Shifted, analytical: Tensor, numerical: Tensor, settings: _Settings
) -> Resolution:
    """Resolve disagreeing values (with a verdict only: surrogate bias is the comparison at ``eps``)."""
    return resolve(
        losses,
        analytical,
        numerical,
        eps=settings.eps,
        atol=settings.atol,
        rtol=settings.rtol,
        refine=settings.verdict,
        analytical_at=analytical_at,
    )


def _compare_coordinates(problem: LossProblem, name: str, analytical: Tensor, settings: _Settings) -> _Compared:
    """Central differences over every coordinate of ``name`` vs autograd, disagreements resolved."""
    flat = analytical.reshape(-1).detach()
    numerical = central_differences(problem, name, eps=settings.eps)

    def losses(index: Tensor, steps: Tensor) -> Tensor:
        return coordinate_losses(problem, name, index, steps, guard_eps=settings.eps)

    def analytical_at(index: Tensor, steps: Tensor) -> Tensor:
        base = problem.params[name].detach()
        values = []
        for i, step in zip(index.tolist(), steps.tolist()):
            shifted = base.clone()
            shifted.view(-1)[i] += step
            values.append(problem.gradient_at({name: shifted})[name].reshape(-1)[i])
        return torch.stack(values)

    resolution = _resolved(losses, analytical_at, flat, numerical, settings)
    return _Compared(name, tuple(analytical.shape), flat.cpu(), _on_cpu(resolution), torch.arange(flat.numel()))


def _compare_directions(
    problem: LossProblem, grad: dict[str, Tensor], settings: _Settings, *, n_directions: int, seed: int
) -> list[_Compared]:
    """Directional central differences along seeded unit directions, one set per tensor, in one batch."""
    directions = _directions(problem, n_directions, seed)
    numerical = _directional_differences(problem, directions, settings.eps)
    compared = []
    for name, v in directions.items():
        analytical = v @ grad[name].reshape(-1)

        def losses(rows: Tensor, steps: Tensor, name: str = name, v: Tensor = v) -> Tensor:
            return direction_losses(problem, name, v[rows], steps)

        def analytical_at(rows: Tensor, steps: Tensor, name: str = name, v: Tensor = v) -> Tensor:
            base = problem.params[name].detach()
            values = []
            for r, step in zip(rows.tolist(), steps.tolist()):
                shifted = base + step * v[r].reshape(base.shape)
                values.append(problem.gradient_at({name: shifted})[name].reshape(-1) @ v[r])
            return torch.stack(values)

        resolution = _resolved(losses, analytical_at, analytical, numerical[name], settings)
        compared.append(_Compared(name, tuple(problem.params[name].shape), analytical.cpu(), _on_cpu(resolution), None))
    return compared


def _compare(
    problem: LossProblem, grad: dict[str, Tensor], settings: _Settings, mode: Mode, n_directions: int, seed: int
) -> tuple[dict[str, TensorGradientStats], list[str], CoordinateError, list[_Compared]]:
    """Per-tensor statistics, the tensors given an exact pass, the worst value and every comparison made."""
    if mode == "exact":
        compared = [_compare_coordinates(problem, name, grad[name], settings) for name in problem.params]
        return (*_exact_outcome(compared, settings), compared)
    compared = _compare_directions(problem, grad, settings, n_directions=n_directions, seed=seed)
    return _fast_outcome(problem, grad, compared, settings)


def _exact_outcome(
    compared: list[_Compared], settings: _Settings
) -> tuple[dict[str, TensorGradientStats], list[str], CoordinateError]:
    per_tensor = {c.name: c.stats(settings) for c in compared}
    return per_tensor, [], _worst([s.worst for s in per_tensor.values()], settings)


def _fast_outcome(
    problem: LossProblem, grad: dict[str, Tensor], compared: list[_Compared], settings: _Settings
) -> tuple[dict[str, TensorGradientStats], list[str], CoordinateError, list[_Compared]]:
    """Direction statistics; a tensor with a wrong direction gets an exact pass that names its worst coordinate.

    When the exact pass finds every coordinate of the tensor right or at a non-differentiable point, its wrong
    directions crossed kinks (a directional derivative is the sum of the coordinates'): they become non-differentiable
    values and the tensor passes.
    """
    per_tensor = {c.name: c.stats(settings) for c in compared}
    exact_pass = [name for name, s in per_tensor.items() if s.passed is False]
    exact = [_compare_coordinates(problem, name, grad[name], settings) for name in exact_pass]
    for coordinates in exact:
        if coordinates.stats(settings).n_failed == 0:
            direction = next(c for c in compared if c.name == coordinates.name)
            status = direction.resolution.status
            status[status == WRONG] = NONDIFFERENTIABLE
            per_tensor[coordinates.name] = direction.stats(settings)
    candidates = [c.stats(settings).worst for c in exact] or [s.worst for s in per_tensor.values()]
    return per_tensor, exact_pass, _worst(candidates, settings), compared + exact


def _worst(candidates: list[CoordinateError], settings: _Settings) -> CoordinateError:
    return max(candidates, key=lambda c: c.abs_error / (settings.atol + settings.rtol * abs(c.analytical)))


def _assemble(
    per_tensor: dict[str, TensorGradientStats],
    compared: list[_Compared],
    *,
    mode: Mode,
    comparison: Comparison,
    settings: _Settings,
    worst: CoordinateError,
    exact_pass: list[str],
    problem: LossProblem,
    smooth_mode: bool | None,
    held: list[str],
    determinism: float,
    nondet_tol: float,
    dtype: torch.dtype,
    seconds: float,
    warnings: list[str],
) -> GradientVerificationResult:
    """The result dataclass from the per-tensor statistics (the direction statistics in fast mode)."""
    stats = list(per_tensor.values())
    n_total = sum(s.n_checked for s in stats)
    kinks = [p for c in compared for p in c.kinks()]
    return GradientVerificationResult(
        mode=mode,
        comparison=comparison,
        max_abs_error=max(s.max_abs_error for s in stats),
        mean_abs_error=sum(s.mean_abs_error * s.n_checked for s in stats) / n_total,
        max_rel_error=max(s.max_rel_error for s in stats),
        worst=worst,
        per_tensor=per_tensor,
        eps=settings.eps,
        atol=settings.atol,
        rtol=settings.rtol,
        dtype=str(dtype),
        smooth_mode=smooth_mode,
        n_parameters=problem.n_parameters,
        n_evaluations=problem.n_evaluations,
        batched=problem.batched,
        determinism_max_diff=determinism,
        nondet_tol=nondet_tol,
        exact_pass_tensors=exact_pass,
        structured_tensors=[n for n in problem.params if n in problem.structured_names],
        held_resets=held,
        n_refined=sum(s.n_refined for s in stats),
        n_nondifferentiable=sum(s.n_nondifferentiable for s in stats),
        nondifferentiable=kinks[:_MAX_EXAMPLES],
        seconds=seconds,
        warnings=warnings,
    )


def _on_cpu(resolution: Resolution) -> Resolution:
    return Resolution(*(t.detach().cpu() for t in vars(resolution).values()))


# ---- loss evaluations -----------------------------------------------------------------------------------------


def _directions(problem: LossProblem, n_directions: int, seed: int) -> dict[str, Tensor]:
    """Seeded unit directions ``[n_directions, numel]`` per tensor (drawn on the CPU: the same on every device)."""
    generator = torch.Generator().manual_seed(seed)
    directions = {}
    for name, param in problem.params.items():
        v = torch.randn((n_directions, param.numel()), generator=generator, dtype=torch.float64)
        directions[name] = (v / v.norm(dim=1, keepdim=True)).to(device=param.device, dtype=problem.dtype)
    return directions


def _directional_differences(problem: LossProblem, directions: dict[str, Tensor], eps: float) -> dict[str, Tensor]:
    """Central differences along every direction of every tensor, all tensors' perturbations in one batch."""
    names = list(directions)
    n_directions = next(iter(directions.values())).shape[0]
    n_rows = 2 * n_directions * len(names)
    losses = []
    # Row layout: tensor k, direction d, sign s -> row (k * n_directions + d) * 2 + s.
    for rows in problem.chunks(n_rows, problem.n_parameters):
        overrides = {}
        for k, name in enumerate(names):
            base = problem.params[name].detach().reshape(1, -1)
            block = base.repeat(rows.stop - rows.start, 1)
            for r in range(rows.start, rows.stop):
                owner, rest = divmod(r, 2 * n_directions)
                if owner == k:
                    d, s = divmod(rest, 2)
                    block[r - rows.start] += (eps if s == 0 else -eps) * directions[name][d]
            overrides[name] = block.reshape(-1, *problem.params[name].shape)
        losses.append(problem.losses(overrides))
    values = torch.cat(losses).reshape(len(names), n_directions, 2)
    return {name: (values[k, :, 0] - values[k, :, 1]) / (2 * eps) for k, name in enumerate(names)}


def direction_losses(problem: LossProblem, name: str, directions: Tensor, steps: Tensor) -> Tensor:
    r"""Losses at :math:`w + \text{steps}[k]\,v_k` (parameter ``name`` only), for directions ``[K, numel]``."""
    base = problem.params[name].detach().reshape(1, -1)
    shape = problem.params[name].shape
    out = []
    for rows in problem.chunks(steps.numel(), base.numel()):
        shifted = base + steps[rows, None].to(base) * directions[rows]
        out.append(problem.losses({name: shifted.reshape(-1, *shape)}))
    return torch.cat(out)


def coordinate_losses(problem: LossProblem, name: str, index: Tensor, steps: Tensor, *, guard_eps: float) -> Tensor:
    r"""Losses at :math:`w + \text{steps}[k]\,e_{\text{index}[k]}` (flat coordinates of parameter ``name``).

    Uses the structure-aware evaluator when :meth:`LossProblem.coordinates` grants it for ``(name, guard_eps)``
    (the step it was cross-checked at), else the generic batched path; a step of 0 gives the unperturbed loss on
    the same path.
    """
    base = problem.params[name].detach().reshape(-1)
    index = index.to(base.device)
    values = base[index]
    delta = (values + steps.to(base)) - values
    evaluator = problem.coordinates(name, eps=guard_eps)
    if evaluator is not None:
        per_chunk = max(1, evaluator.perturbations_per_chunk(name))
        out = []
        for start in range(0, index.numel(), per_chunk):
            part = slice(start, start + per_chunk)
            out.append(evaluator.losses(name, index[part], delta[part]))
            problem.n_evaluations += out[-1].numel()
        return torch.cat(out)
    shape = problem.params[name].shape
    out = []
    for rows in problem.chunks(index.numel(), base.numel()):
        perturbed = base.repeat(rows.stop - rows.start, 1)
        perturbed[torch.arange(rows.stop - rows.start, device=base.device), index[rows]] += delta[rows]
        out.append(problem.losses({name: perturbed.reshape(-1, *shape)}))
    return torch.cat(out)


def central_differences(problem: LossProblem, name: str, *, eps: float) -> Tensor:
    r"""Central differences over every coordinate of parameter ``name``, in memory-bounded ``vmap`` chunks.

    For a plain evoexp SNN the perturbed losses come from the structure-aware evaluator
    (:meth:`LossProblem.coordinates`, cross-checked against the generic path first): the same losses at the same
    perturbed parameters, computed without re-running the parts of the network a single coordinate cannot change.

    Returns:
        Flat tensor of :math:`(L(w+\varepsilon e_i) - L(w-\varepsilon e_i))/2\varepsilon` for every coordinate
        :math:`i` of the tensor (row-major).
    """
    base = problem.params[name].detach().reshape(-1)
    numel, device = base.numel(), base.device
    shape = problem.params[name].shape
    out = torch.empty(numel, dtype=base.dtype, device=device)
    evaluator = problem.coordinates(name, eps=eps)
    if evaluator is not None:
        problem.structured_names.add(name)
        coords_per_chunk = max(1, evaluator.perturbations_per_chunk(name) // 2)
        for start in range(0, numel, coords_per_chunk):
            idx = torch.arange(start, min(numel, start + coords_per_chunk), device=device)
            c = idx.numel()
            values = base[idx]
            delta = torch.cat([(values + eps) - values, (values - eps) - values])
            losses = evaluator.losses(name, torch.cat([idx, idx]), delta)
            problem.n_evaluations += 2 * c
            out[idx] = (losses[:c] - losses[c:]) / (2 * eps)
        return out
    coords_per_chunk = max(1, problem.forwards_per_chunk(numel) // 2)
    for start in range(0, numel, coords_per_chunk):
        idx = torch.arange(start, min(numel, start + coords_per_chunk), device=device)
        c = idx.numel()
        perturbed = base.repeat(2 * c, 1)
        rows = torch.arange(c, device=device)
        perturbed[rows, idx] += eps
        perturbed[rows + c, idx] -= eps
        losses = problem.losses({name: perturbed.reshape(2 * c, *shape)})
        out[idx] = (losses[:c] - losses[c:]) / (2 * eps)
    return out


def _message(result: GradientVerificationResult) -> str:
    """Human-readable verdict naming the failing tensors with numerical vs analytical values."""
    what = "every coordinate" if result.mode == "exact" else "random directions per tensor"
    held = f", detached reset held in {', '.join(result.held_resets)}" if result.held_resets else ""
    head = f"{result.mode} finite-difference check ({what}, eps={result.eps:g}, {result.n_parameters} parameters{held})"
    if result.comparison == "surrogate_bias":
        return (
            f"{head} of a spiking SNN: surrogate bias (informational, finite differences of a step function are "
            f"not a gradient): max abs diff {result.max_abs_error:.3g}, mean abs diff {result.mean_abs_error:.3g}"
        )
    if result.passed:
        return (
            f"{head} passed: max abs error {result.max_abs_error:.3g}, max rel error {result.max_rel_error:.3g} "
            f"(atol={result.atol:g}, rtol={result.rtol:g}){_resolved_note(result)}"
        )
    lines = [f"{head} FAILED (atol={result.atol:g}, rtol={result.rtol:g}):"]
    for name in result.failing_tensors:
        stats = result.per_tensor[name]
        unit = "coordinates" if result.mode == "exact" else "directions"
        lines.append(
            f"  tensor '{name}': {stats.n_failed}/{stats.n_checked} {unit} out of tolerance; worst "
            f"{stats.worst.describe()}"
        )
    if result.mode == "fast" and result.exact_pass_tensors and result.worst is not None:
        lines.append(f"  exact pass over failing tensor(s): worst coordinate {result.worst.describe()}")
    if not result.deterministic:
        lines.append(f"  backward is non-deterministic (max diff {result.determinism_max_diff:.3g})")
    note = _resolved_note(result)
    if note:
        lines.append(f"  {note.removeprefix('; ')}")
    return "\n".join(lines)


def _resolved_note(result: GradientVerificationResult) -> str:
    """What the smaller steps and one-sided differences resolved (empty when nothing needed them)."""
    parts = []
    if result.n_refined:
        parts.append(f"{result.n_refined} value(s) agreed only at a smaller step (the loss bends below eps)")
    if result.n_nondifferentiable:
        example = f", e.g. {result.nondifferentiable[0].describe()}" if result.nondifferentiable else ""
        parts.append(
            f"{result.n_nondifferentiable} non-differentiable point(s) of the loss (one-sided differences disagree, "
            f"the analytical value is one of them or between them: a kink, not an error{example})"
        )
    return "; " + "; ".join(parts) if parts else ""
