r"""Finite-difference verification of autograd gradients (exact and fast mode), for any ``nn.Module`` + loss.

Exact mode compares, for every coordinate :math:`i` of every studied parameter, the central difference

.. math:: n_i = \frac{L(w + \varepsilon e_i) - L(w - \varepsilon e_i)}{2\varepsilon}

with the autograd gradient :math:`a_i = \partial L / \partial w_i`. Fast mode (like ``gradcheck``'s fast mode)
compares, for a few seeded random unit directions :math:`v` per parameter tensor,
:math:`(L(w+\varepsilon v) - L(w-\varepsilon v))/2\varepsilon` with :math:`\langle \nabla L, v\rangle`; a tensor that
fails gets an exact pass that names its worst coordinate.

A coordinate passes when :math:`|n - a| \le \text{atol} + \text{rtol}\,|a|` (``torch.allclose``/``gradcheck``
convention). The reported relative error is :math:`|n-a| / \max(|a|, |n|, \text{atol})`. Every evaluation runs on a
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from evoexp.results import Result
from evoexp.verification._batched import DEFAULT_MEMORY_BUDGET, LossFn, LossProblem
from evoexp.verification.alignment import AlignmentResult, verify_gradient_alignment
from evoexp.verification.surrogate_check import SurrogateVerificationResult, verify_surrogate_gradient

__all__ = [
    "CoordinateError",
    "GradientVerificationResult",
    "GradientVerifier",
    "TensorGradientStats",
]

Mode = Literal["exact", "fast"]
Comparison = Literal["gradient", "surrogate_bias"]


@dataclass
class CoordinateError:
    r"""One compared value: a parameter coordinate (exact mode) or a random direction (fast mode).

    Attributes:
        tensor: Parameter name, e.g. ``"hidden.0.weight"``.
        index: Coordinate inside the tensor (exact), or ``None`` for a direction.
        direction: Index of the random direction (fast), or ``None`` for a coordinate.
        numerical: Central-difference value.
        analytical: Autograd value.
        abs_error: :math:`|n - a|`.
        rel_error: :math:`|n - a| / \max(|a|, |n|, \text{atol})`.
    """

    tensor: str
    index: tuple[int, ...] | None
    direction: int | None
    numerical: float
    analytical: float
    abs_error: float
    rel_error: float

    def describe(self) -> str:
        """One-line description: where, numerical vs analytical, errors."""
        where = f"index {self.index}" if self.index is not None else f"direction {self.direction}"
        return (
            f"'{self.tensor}' {where}: numerical {self.numerical:.10g} vs analytical {self.analytical:.10g} "
            f"(abs err {self.abs_error:.3g}, rel err {self.rel_error:.3g})"
        )


@dataclass
class TensorGradientStats:
    """Error statistics of one parameter tensor.

    Attributes:
        name: Parameter name.
        shape: Tensor shape.
        n_checked: Coordinates (exact) or directions (fast) compared.
        n_failed: How many violate ``abs_error <= atol + rtol * |analytical|``.
        max_abs_error: Largest :math:`|n-a|`.
        mean_abs_error: Mean :math:`|n-a|`.
        max_rel_error: Largest relative error.
        worst: The compared value that violates the tolerance most (largest ``abs / (atol + rtol|a|)``).
        passed: ``n_failed == 0`` (``None`` for surrogate bias).
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


@dataclass
class GradientVerificationResult(Result):
    """Outcome of :meth:`GradientVerifier.verify_finite_difference`.

    Attributes:
        mode: ``"exact"`` (every coordinate) or ``"fast"`` (random directions).
        comparison: ``"gradient"`` (a verdict) or ``"surrogate_bias"`` (spiking SNN: informational).
        max_abs_error: Over all compared values.
        mean_abs_error: Over all compared values.
        max_rel_error: Over all compared values.
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
        return out


def _error_stats(
    name: str,
    shape: tuple[int, ...],
    numerical: Tensor,
    analytical: Tensor,
    *,
    atol: float,
    rtol: float,
    verdict: bool,
    indices: Tensor | None,
) -> TensorGradientStats:
    """Statistics of 1-D ``numerical`` vs ``analytical``; ``indices`` maps entries to flat coordinates."""
    numerical, analytical = numerical.detach().cpu(), analytical.detach().cpu()
    abs_err = (numerical - analytical).abs()
    rel_err = abs_err / torch.maximum(torch.maximum(analytical.abs(), numerical.abs()), torch.tensor(atol))
    allowed = atol + rtol * analytical.abs()
    ratio = abs_err / allowed
    # NaN compares false: count it as a failure and make it the worst entry.
    failed = ~(abs_err <= allowed)
    ratio = torch.where(torch.isnan(ratio), torch.full_like(ratio, math.inf), ratio)
    k = int(torch.argmax(ratio))
    index = None if indices is None else tuple(int(i) for i in torch.unravel_index(indices[k], shape))
    worst = CoordinateError(
        tensor=name,
        index=index,
        direction=k if indices is None else None,
        numerical=float(numerical[k]),
        analytical=float(analytical[k]),
        abs_error=float(abs_err[k]),
        rel_error=float(rel_err[k]),
    )
    n_failed = int(failed.sum())
    return TensorGradientStats(
        name=name,
        shape=shape,
        n_checked=int(numerical.numel()),
        n_failed=n_failed,
        max_abs_error=float(abs_err.max()),
        mean_abs_error=float(abs_err.mean()),
        max_rel_error=float(rel_err.max()),
        worst=worst,
        passed=(n_failed == 0) if verdict else None,
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
        comparable. The model is deep-copied (and cast to the verifier's dtype); it is never modified.

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
        if mode not in ("exact", "fast"):
            raise ValueError(f"mode must be 'exact' or 'fast', got {mode!r}")
        for name, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not nondet_tol >= 0:
            raise ValueError(f"nondet_tol must be >= 0, got {nondet_tol!r}")
        if n_directions < 1:
            raise ValueError(f"n_directions must be >= 1, got {n_directions!r}")
        start = time.perf_counter()
        problem = self._problem(model, inputs, targets, loss_fn, parameters)
        snn = problem.copy.spiking
        if smooth and not snn:
            raise ValueError(
                "smooth=True needs a spiking network with a smooth mode (evoexp.verification.spiking); "
                f"{type(model).__name__} has none"
            )
        smooth_mode = (True if smooth is None else smooth) if snn else None
        comparison: Comparison = "surrogate_bias" if snn and not smooth_mode else "gradient"
        warnings: list[str] = []
        if self.dtype != torch.float64:
            warnings.append(
                f"verification dtype is {self.dtype}, not torch.float64: finite differences are dominated by "
                "rounding error and tolerances must be loosened"
            )
        problem.copy.set_smooth(bool(smooth_mode))
        warnings.extend(problem.copy.notes)
        grad, grad_again = problem.gradients(2)
        determinism = max(float((g - grad_again[n]).abs().max()) for n, g in grad.items())
        held = problem.copy.hold_resets(problem.forward)
        if mode == "exact":
            per_tensor = {
                name: self._exact_stats(problem, name, grad[name], eps=eps, atol=atol, rtol=rtol, comparison=comparison)
                for name in problem.params
            }
            exact_pass: list[str] = []
            worst_candidates = [s.worst for s in per_tensor.values()]
        else:
            per_tensor = self._fast_stats(
                problem,
                grad,
                eps=eps,
                atol=atol,
                rtol=rtol,
                n_directions=n_directions,
                seed=seed,
                comparison=comparison,
            )
            exact_pass = [name for name, s in per_tensor.items() if s.passed is False]
            worst_candidates = [
                self._exact_stats(problem, name, grad[name], eps=eps, atol=atol, rtol=rtol, comparison=comparison).worst
                for name in exact_pass
            ] or [s.worst for s in per_tensor.values()]
        if determinism > nondet_tol:
            warnings.append(
                f"backward is non-deterministic: two gradients of the same loss differ by up to {determinism:.3g} "
                f"(nondet_tol={nondet_tol:g})"
            )
        warnings.extend(problem.warnings)
        worst = max(worst_candidates, key=lambda c: c.abs_error / (atol + rtol * abs(c.analytical)))
        n_total = sum(s.n_checked for s in per_tensor.values())
        result = GradientVerificationResult(
            mode=mode,
            comparison=comparison,
            max_abs_error=max(s.max_abs_error for s in per_tensor.values()),
            mean_abs_error=sum(s.mean_abs_error * s.n_checked for s in per_tensor.values()) / n_total,
            max_rel_error=max(s.max_rel_error for s in per_tensor.values()),
            worst=worst,
            per_tensor=per_tensor,
            eps=eps,
            atol=atol,
            rtol=rtol,
            dtype=str(self.dtype),
            smooth_mode=smooth_mode,
            n_parameters=problem.n_parameters,
            n_evaluations=problem.n_evaluations,
            batched=problem.batched,
            determinism_max_diff=determinism,
            nondet_tol=nondet_tol,
            exact_pass_tensors=exact_pass,
            structured_tensors=[n for n in problem.params if n in problem.structured_names],
            held_resets=held,
            seconds=time.perf_counter() - start,
            warnings=warnings,
        )
        result.message = _message(result)
        return result

    def verify_surrogate_gradient(
        self, spike_fn: Callable[[Tensor], Tensor], surrogate_fn: Callable[[Tensor], Tensor], **kwargs: Any
    ) -> SurrogateVerificationResult:
        """Check ``spike_fn``'s backward against ``surrogate_fn`` on a grid (DESIGN §5).

        Keyword arguments are those of :func:`evoexp.verification.surrogate_check.verify_surrogate_gradient`.
        """
        return verify_surrogate_gradient(spike_fn, surrogate_fn, **kwargs)

    def verify_gradient_alignment(
        self, model: nn.Module, inputs: Any, targets: Any, loss_fn: LossFn, **kwargs: Any
    ) -> AlignmentResult:
        """Alignment of surrogate and Gaussian-smoothed gradients (DESIGN §5), on a copy in the verifier's dtype.

        Keyword arguments are those of :func:`evoexp.verification.alignment.verify_gradient_alignment`.
        """
        options = {"dtype": self.dtype, "memory_budget": self.memory_budget, "chunk_size": self.chunk_size, **kwargs}
        return verify_gradient_alignment(model, inputs, targets, loss_fn, **options)

    @staticmethod
    def _exact_stats(
        problem: LossProblem,
        name: str,
        analytical: Tensor,
        *,
        eps: float,
        atol: float,
        rtol: float,
        comparison: Comparison,
    ) -> TensorGradientStats:
        """Central differences over every coordinate of parameter ``name``, batched and chunked."""
        numerical = central_differences(problem, name, eps=eps)
        return _error_stats(
            name,
            tuple(analytical.shape),
            numerical,
            analytical.reshape(-1),
            atol=atol,
            rtol=rtol,
            verdict=comparison == "gradient",
            indices=torch.arange(analytical.numel()),
        )

    @staticmethod
    def _fast_stats(
        problem: LossProblem,
        grad: dict[str, Tensor],
        *,
        eps: float,
        atol: float,
        rtol: float,
        n_directions: int,
        seed: int,
        comparison: Comparison,
    ) -> dict[str, TensorGradientStats]:
        """Directional central differences along seeded unit directions, one set per tensor, in one batch."""
        generator = torch.Generator().manual_seed(seed)  # on the CPU: the same directions on every device
        names = list(problem.params)
        directions = {}
        for name in names:
            param = problem.params[name]
            v = torch.randn((n_directions, param.numel()), generator=generator, dtype=torch.float64)
            directions[name] = (v / v.norm(dim=1, keepdim=True)).to(device=param.device, dtype=problem.dtype)
        n_rows = 2 * n_directions * len(names)
        numerical: dict[str, Tensor] = {}
        # Row layout: tensor k, direction d, sign s -> row (k * n_directions + d) * 2 + s.
        losses = []
        total_numel = problem.n_parameters
        for rows in problem.chunks(n_rows, total_numel):
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
        for k, name in enumerate(names):
            numerical[name] = (values[k, :, 0] - values[k, :, 1]) / (2 * eps)
        return {
            name: _error_stats(
                name,
                tuple(problem.params[name].shape),
                numerical[name],
                directions[name] @ grad[name].reshape(-1),
                atol=atol,
                rtol=rtol,
                verdict=comparison == "gradient",
                indices=None,
            )
            for name in names
        }


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
            f"(atol={result.atol:g}, rtol={result.rtol:g})"
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
    return "\n".join(lines)
