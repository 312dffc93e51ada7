r"""Alignment of surrogate gradients with the gradient of the Gaussian-smoothed spiking loss.

For a spiking network the loss :math:`L(w)` is piecewise constant in the weights, so its true gradient is zero
almost everywhere. What a surrogate gradient approximates is the gradient of a smoothed loss (Gygax & Zenke). Along
a unit direction :math:`v` we use

.. math:: \tilde L_\sigma(t) = \mathbb{E}_{z\sim\mathcal N(0,1)}[L(w + (t + \sigma z) v)], \qquad
          \tilde L_\sigma'(0) = \frac{1}{\sigma}\,\mathbb{E}_z[z\,L(w + \sigma z v)]

(Stein's identity), evaluated by Gauss--Hermite quadrature with the probabilists' nodes :math:`z_i`, weights
:math:`\omega_i` (``scipy.special.roots_hermitenorm``): symmetric node pairs give

.. math:: \tilde L_\sigma'(0) \approx \frac{1}{\sigma\sqrt{2\pi}} \sum_{z_i > 0} \omega_i z_i
          \bigl(L(w + \sigma z_i v) - L(w - \sigma z_i v)\bigr).

For :math:`K` seeded random unit directions the vectors :math:`s_k = \langle \nabla_{\text{sur}} L, v_k\rangle`
(autograd through the spiking network, as training computes it) and :math:`t_k = \tilde L_\sigma'(0)` along
:math:`v_k` are compared: cosine similarity :math:`\langle s, t\rangle/\|s\|\|t\|` (for isotropic :math:`v` an
estimate of the cosine between the two gradients), sign agreement and norm ratio :math:`\|s\|/\|t\|`, with jackknife
standard errors over directions. "Overall" directions span every parameter; per-layer directions are restricted to
one parameter tensor.

Two sources of error are reported separately. The *standard error* (jackknife over directions) is the sampling
error of using :math:`K` directions. The *quadrature error* compares :math:`t` computed with ``n_quadrature`` nodes
and with ``n_quadrature // 2`` nodes (for a piecewise-constant spiking loss the quadrature converges slowly). The
cosine is *inconclusive* when its sign cannot be told: :math:`|\cos| \le 2\,\mathrm{SE} + \text{quadrature
error}` (or either is undefined); the summary then reports no number for it. Sign agreement counts only directions
with :math:`t_k \ne 0` (along the others the smoothed loss is flat to rounding: neither agreement nor
disagreement). What the check means, beside the other checks: docs/design/verification.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.special import roots_hermitenorm
from torch import Tensor, nn

from evoexp.arguments import checked_by
from evoexp.results import Result
from evoexp.verification._batched import DEFAULT_MEMORY_BUDGET, LossFn, LossProblem

__all__ = [
    "AlignmentResult",
    "AlignmentStats",
    "check_alignment_arguments",
    "verify_gradient_alignment",
]

OVERALL = "overall"
_SIGN_Z = 2.0  # standard errors a cosine must lie away from zero (beyond the quadrature error) to have a sign


@dataclass
class AlignmentStats:
    r"""Alignment over :math:`K` directions for one scope (all parameters, or one tensor) and one :math:`\sigma`.

    Attributes:
        scope: ``"overall"`` or a parameter name.
        sigma: Smoothing scale.
        n_directions: Directions :math:`K`.
        cosine: Estimate :math:`\langle s, t\rangle / \|s\|\|t\|` (``nan`` if either vector is zero); read it only
            when ``conclusive``.
        cosine_se: Jackknife standard error of ``cosine`` over the directions.
        cosine_quadrature_error: :math:`|\cos_n - \cos_{n/2}|`, the cosine's change between ``n_quadrature`` and
            ``n_quadrature // 2`` Gauss--Hermite nodes.
        conclusive: Whether the cosine's sign is known: :math:`|\cos| > 2\,\mathrm{SE} + \text{quadrature error}`.
        smoothed_quadrature_error: :math:`\max_k |t_k^{(n)} - t_k^{(n/2)}| / \max_k |t_k^{(n)}|` (``nan`` if all
            :math:`t_k = 0`).
        n_informative: Directions with :math:`t_k \ne 0` (the only ones sign agreement counts).
        sign_agreement: Fraction of informative directions where :math:`s_k` and :math:`t_k` have the same sign
            (``nan`` if none is informative).
        sign_agreement_se: :math:`\sqrt{p(1-p)/n_{\text{informative}}}`.
        norm_ratio: :math:`\|s\| / \|t\|` (``inf`` when the smoothed derivatives are all zero).
        norm_ratio_se: Jackknife standard error of ``norm_ratio``.
        surrogate: The directional surrogate derivatives :math:`s_k`.
        smoothed: The directional derivatives of the smoothed loss :math:`t_k` (``n_quadrature`` nodes).
    """

    scope: str
    sigma: float
    n_directions: int
    cosine: float
    cosine_se: float
    cosine_quadrature_error: float
    conclusive: bool
    smoothed_quadrature_error: float
    n_informative: int
    sign_agreement: float
    sign_agreement_se: float
    norm_ratio: float
    norm_ratio_se: float
    surrogate: list[float]
    smoothed: list[float]

    @property
    def reported_cosine(self) -> float:
        """``cosine`` when ``conclusive``, else ``nan`` (what summaries and tables show)."""
        return self.cosine if self.conclusive else math.nan


@dataclass
class AlignmentResult(Result):
    """Outcome of :func:`verify_gradient_alignment` (informational: ``passed`` is ``None``).

    Attributes:
        sigmas: Smoothing scales, in the given order.
        n_directions: Directions per scope.
        n_quadrature: Gauss--Hermite nodes.
        n_quadrature_check: The coarser node count the quadrature error compares with (``n_quadrature // 2``).
        seed: Seed of the directions.
        smooth_mode: Whether the spiking network ran in smooth mode (``None`` for other models).
        dtype: Dtype of the model copy.
        overall: One :class:`AlignmentStats` per sigma for directions over all parameters.
        per_layer: Parameter name -> one :class:`AlignmentStats` per sigma.
        n_evaluations: Loss evaluations.
        batched: Whether ``vmap`` batching was used.
        seconds: Wall time.
        held_resets: Smooth mode: layers whose detached reset was held at its unperturbed value.
        warnings: Non-float64 dtype, vmap fallback, inconclusive cosines, ...
    """

    check: ClassVar[str] = "alignment"

    sigmas: list[float]
    n_directions: int
    n_quadrature: int
    n_quadrature_check: int
    seed: int
    smooth_mode: bool | None
    dtype: str
    overall: list[AlignmentStats]
    per_layer: dict[str, list[AlignmentStats]]
    n_evaluations: int
    batched: bool
    seconds: float
    held_resets: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def stats(self, scope: str = OVERALL, sigma: float | None = None) -> AlignmentStats:
        """Statistics of ``scope`` (``"overall"`` or a parameter name) at ``sigma`` (default: the first)."""
        rows = self.overall if scope == OVERALL else self.per_layer[scope]
        if sigma is None:
            return rows[0]
        for row in rows:
            if math.isclose(row.sigma, sigma):
                return row
        raise ValueError(f"sigma={sigma!r} was not evaluated; sigmas: {self.sigmas}")

    def summary(self) -> dict[str, float]:
        """Overall metrics at the first sigma (``alignment/cosine`` ...) and at every sigma (``.../sigma=<s>``).

        ``alignment/cosine`` is ``nan`` when the cosine is inconclusive; ``alignment/cosine_estimate`` is the raw
        estimate, ``alignment/cosine_conclusive`` 1 or 0.
        """
        out: dict[str, float] = {}
        for i, row in enumerate(self.overall):
            values = {
                "cosine": row.reported_cosine,
                "cosine_estimate": row.cosine,
                "cosine_se": row.cosine_se,
                "cosine_quadrature_error": row.cosine_quadrature_error,
                "cosine_conclusive": float(row.conclusive),
                "sign_agreement": row.sign_agreement,
                "norm_ratio": row.norm_ratio,
            }
            for metric, value in values.items():
                if i == 0:
                    out[f"alignment/{metric}"] = float(value)
                out[f"alignment/{metric}/sigma={row.sigma:g}"] = float(value)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows: one per (scope, sigma); ``cosine`` is ``nan`` when inconclusive (``cosine_estimate`` is not)."""
        all_stats = [*self.overall, *(s for rows in self.per_layer.values() for s in rows)]
        return [
            {
                "scope": s.scope,
                "sigma": s.sigma,
                "cosine": s.reported_cosine,
                "cosine_estimate": s.cosine,
                "cosine_se": s.cosine_se,
                "cosine_quadrature_error": s.cosine_quadrature_error,
                "conclusive": s.conclusive,
                "n_informative": s.n_informative,
                "sign_agreement": s.sign_agreement,
                "sign_agreement_se": s.sign_agreement_se,
                "norm_ratio": s.norm_ratio,
                "norm_ratio_se": s.norm_ratio_se,
            }
            for s in all_stats
        ]


def _cosine(s: np.ndarray, t: np.ndarray) -> float:
    denom = float(np.linalg.norm(s) * np.linalg.norm(t))
    return float(s @ t) / denom if denom > 0 else math.nan


def _norm_ratio(s: np.ndarray, t: np.ndarray) -> float:
    nt = float(np.linalg.norm(t))
    return float(np.linalg.norm(s)) / nt if nt > 0 else math.inf


def _jackknife_se(s: np.ndarray, t: np.ndarray, stat: Any) -> float:
    """Jackknife standard error of ``stat(s, t)`` over the paired entries (directions)."""
    k = len(s)
    if k < 2:
        return math.nan
    keep = ~np.eye(k, dtype=bool)
    values = np.array([stat(s[m], t[m]) for m in keep])
    if not np.all(np.isfinite(values)):
        return math.nan
    return float(math.sqrt((k - 1) / k * np.sum((values - values.mean()) ** 2)))


def _stats(scope: str, sigma: float, s: np.ndarray, t: np.ndarray, t_coarse: np.ndarray) -> AlignmentStats:
    """Statistics of one scope at one sigma; ``t_coarse`` is ``t`` computed with the coarser quadrature."""
    cosine, cosine_se = _cosine(s, t), _jackknife_se(s, t, _cosine)
    quadrature = abs(cosine - _cosine(s, t_coarse))
    conclusive = bool(math.isfinite(cosine) and math.isfinite(cosine_se) and math.isfinite(quadrature))
    conclusive = conclusive and abs(cosine) > _SIGN_Z * cosine_se + quadrature
    scale = float(np.max(np.abs(t)))
    informative = t != 0
    n_informative = int(informative.sum())
    agree = float(np.mean(np.sign(s[informative]) == np.sign(t[informative]))) if n_informative else math.nan
    return AlignmentStats(
        scope=scope,
        sigma=sigma,
        n_directions=len(s),
        cosine=cosine,
        cosine_se=cosine_se,
        cosine_quadrature_error=quadrature,
        conclusive=conclusive,
        smoothed_quadrature_error=float(np.max(np.abs(t - t_coarse))) / scale if scale > 0 else math.nan,
        n_informative=n_informative,
        sign_agreement=agree,
        sign_agreement_se=math.sqrt(agree * (1 - agree) / n_informative) if n_informative else math.nan,
        norm_ratio=_norm_ratio(s, t),
        norm_ratio_se=_jackknife_se(s, t, _norm_ratio),
        surrogate=s.tolist(),
        smoothed=t.tolist(),
    )


def positive_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Positive probabilists' Gauss--Hermite nodes of an ``n``-point rule and their weights.

    SciPy's rule stays finite for every ``n`` (NumPy's ``hermegauss`` overflows to NaN weights from 372 nodes).
    """
    nodes, weights = roots_hermitenorm(n)
    positive = nodes > 0
    return nodes[positive], weights[positive]


def smoothed_derivatives(
    problem: LossProblem, directions: dict[str, Tensor], sigma: float, nodes: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    r"""Gauss--Hermite directional derivatives of the smoothed loss along ``K`` directions.

    Args:
        problem: The loss.
        directions: Parameter name -> ``[K, numel]`` components of the unit directions (absent tensors: 0).
        sigma: Smoothing scale.
        nodes: Positive probabilists' Hermite nodes.
        weights: Their weights.

    Returns:
        ``[K]`` array of :math:`\tilde L_\sigma'(0)`.
    """
    first = next(iter(directions.values()))
    k, device = first.shape[0], first.device
    # Row layout: direction d, node j, sign s -> row (d * n_nodes + j) * 2 + s.
    offsets = torch.as_tensor(np.stack([nodes, -nodes], axis=1).reshape(-1) * sigma, dtype=problem.dtype, device=device)
    n_rows = k * offsets.numel()
    numel = sum(problem.params[name].numel() for name in directions)
    values = []
    for rows in problem.chunks(n_rows, numel):
        r = torch.arange(rows.start, rows.stop, device=device)
        d, o = r // offsets.numel(), offsets[r % offsets.numel()]
        overrides = {
            name: (problem.params[name].detach().reshape(1, -1) + o[:, None] * v[d]).reshape(
                -1, *problem.params[name].shape
            )
            for name, v in directions.items()
        }
        values.append(problem.losses(overrides))
    losses = torch.cat(values).reshape(k, len(nodes), 2).double().cpu().numpy()
    return ((losses[:, :, 0] - losses[:, :, 1]) @ (weights * nodes)) / (sigma * math.sqrt(2 * math.pi))


def check_alignment_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`verify_gradient_alignment` (:func:`evoexp.arguments.checked_by`).

    Raises:
        ValueError: The first invalid setting, named first.
    """
    sigmas, n_directions, n_quadrature = args["sigmas"], args["n_directions"], args["n_quadrature"]
    if not sigmas or not all(isinstance(s, (int, float)) and math.isfinite(s) and s > 0 for s in sigmas):
        raise ValueError(f"sigmas must be a non-empty sequence of finite numbers > 0, got {sigmas!r}")
    if n_directions < 2:
        raise ValueError(f"n_directions must be >= 2 (standard errors need two directions), got {n_directions!r}")
    if n_quadrature < 4:
        raise ValueError(
            f"n_quadrature must be >= 4 (the quadrature error compares with n_quadrature // 2 nodes), "
            f"got {n_quadrature!r}"
        )


def _directions(
    problem: LossProblem, *, n_directions: int, seed: int, per_layer: bool, dtype: torch.dtype
) -> dict[str, dict[str, Tensor]]:
    """Seeded unit directions per scope: ``OVERALL`` over all parameters, then (``per_layer``) one per tensor.

    Drawn in float64 on the CPU (the same directions on every device), in this order, then placed on each
    parameter's device in ``dtype``.
    """
    generator = torch.Generator().manual_seed(seed)
    names = list(problem.params)
    overall_raw = {
        name: torch.randn((n_directions, problem.params[name].numel()), generator=generator, dtype=torch.float64)
        for name in names
    }
    squares = (v.pow(2).sum(dim=1) for v in overall_raw.values())
    norm = torch.sqrt(sum(squares, torch.zeros(n_directions, dtype=torch.float64)))

    def placed(name: str, v: Tensor) -> Tensor:
        return v.to(device=problem.params[name].device, dtype=dtype)

    scopes: dict[str, dict[str, Tensor]] = {OVERALL: {n: placed(n, v / norm[:, None]) for n, v in overall_raw.items()}}
    if per_layer:
        for name in names:
            v = torch.randn((n_directions, problem.params[name].numel()), generator=generator, dtype=torch.float64)
            scopes[name] = {name: placed(name, v / v.norm(dim=1, keepdim=True))}
    return scopes


def _scope_stats(
    problem: LossProblem,
    scope: str,
    directions: dict[str, Tensor],
    grad: dict[str, Tensor],
    sigmas: Sequence[float],
    rules: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> list[AlignmentStats]:
    """One scope's statistics at every sigma: surrogate vs smoothed directional derivatives (fine and coarse rule)."""
    surrogate = sum(v @ grad[name].reshape(-1) for name, v in directions.items())
    s = torch.as_tensor(surrogate).double().cpu().numpy()
    rows = []
    for sigma in sigmas:
        t, t_coarse = (smoothed_derivatives(problem, directions, float(sigma), *rule) for rule in rules)
        rows.append(_stats(scope, float(sigma), s, t, t_coarse))
    return rows


def _loss_problem(
    model: nn.Module,
    inputs: Any,
    targets: Any,
    loss_fn: LossFn,
    dtype: torch.dtype,
    parameters: Sequence[str] | None,
    memory_budget: int,
    chunk_size: int | None,
) -> LossProblem:
    """The loss of a private copy of ``model`` in ``dtype``, as a function of the studied parameters."""
    return LossProblem(
        model,
        inputs,
        targets,
        loss_fn,
        dtype=dtype,
        parameters=parameters,
        memory_budget=memory_budget,
        chunk_size=chunk_size,
    )


def _measure(
    problem: LossProblem,
    scopes: dict[str, dict[str, Tensor]],
    sigmas: Sequence[float],
    rules: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    smooth: bool,
) -> tuple[dict[str, list[AlignmentStats]], list[str], list[str]]:
    """Every scope's statistics in the requested mode; also the copy's notes and the resets held (smooth mode)."""
    problem.copy.set_smooth(smooth)
    notes = problem.copy.notes
    grad = problem.gradient()
    held = problem.copy.hold_resets(problem.forward) if smooth else []
    results = {scope: _scope_stats(problem, scope, dirs, grad, sigmas, rules) for scope, dirs in scopes.items()}
    return results, notes, held


def _inconclusive(overall: Sequence[AlignmentStats]) -> list[str]:
    """The warning naming the overall rows whose cosine sign is not resolved (none when all are conclusive)."""
    unknown = [f"{row.scope} at sigma={row.sigma:g}" for row in overall if not row.conclusive]
    if not unknown:
        return []
    return [
        f"cosine inconclusive ({'; '.join(unknown)}): its sign is within 2 standard errors plus the quadrature "
        "error of zero; use more directions (n_directions) or another sigma"
    ]


@checked_by(check_alignment_arguments)
def verify_gradient_alignment(
    model: nn.Module,
    inputs: Any,
    targets: Any,
    loss_fn: LossFn,
    *,
    sigmas: Sequence[float] = (0.01, 0.1),
    n_directions: int = 32,
    n_quadrature: int = 16,
    seed: int = 0,
    per_layer: bool = True,
    smooth: bool = False,
    parameters: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float64,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    chunk_size: int | None = None,
) -> AlignmentResult:
    r"""Compare directional surrogate derivatives with directional derivatives of the Gaussian-smoothed loss.

    Runs on a private copy of ``model`` (cast to ``dtype``); the user's model is never modified. Spiking networks
    (see :mod:`evoexp.verification.spiking`) run in spiking mode unless ``smooth=True`` (in smooth mode the surrogate
    gradient is the true gradient, so for small :math:`\sigma` the cosine tends to 1: a sanity check of the
    estimator; detached resets are then held at their unperturbed values, as in the finite-difference check, so that
    the surrogate gradient is exactly the gradient of the smooth loss). In spiking mode a detached reset is part of
    what the surrogate gradient approximates, so it is not held: the smoothed loss is the network's actual loss.

    Args:
        model: Any ``nn.Module``.
        inputs: Model input(s) (a tuple is unpacked).
        targets: Second argument of ``loss_fn``.
        loss_fn: ``loss_fn(model_output, targets) -> scalar tensor``.
        sigmas: Smoothing scales :math:`\sigma > 0` (in parameter units, along unit directions).
        n_directions: Seeded random unit directions :math:`K \ge 2` per scope.
        n_quadrature: Gauss--Hermite nodes (>= 4); ``2 * (n_quadrature // 2)`` forwards per direction and sigma, plus
            half as many for the quadrature error (``n_quadrature // 2`` nodes).
        seed: Seed of the directions (the same directions are used for every sigma).
        per_layer: Also evaluate directions restricted to each parameter tensor.
        smooth: Run a spiking network in smooth mode.
        parameters: Parameter names to include (default: all trainable).
        dtype: Dtype of the copy.
        memory_budget: Bound in bytes on one batched evaluation.
        chunk_size: Fixed forward evaluations per batched call.

    Returns:
        An :class:`AlignmentResult`.

    Raises:
        ValueError: Empty or non-positive ``sigmas``, ``n_directions < 2``, ``n_quadrature < 4``, ``smooth=True``
            for a model without a smooth mode, or unknown ``parameters``.
    """
    start = time.perf_counter()
    problem = _loss_problem(model, inputs, targets, loss_fn, dtype, parameters, memory_budget, chunk_size)
    snn = problem.spiking(smooth)
    n_check = n_quadrature // 2
    rules = (positive_nodes(n_quadrature), positive_nodes(n_check))

    scopes = _directions(problem, n_directions=n_directions, seed=seed, per_layer=per_layer, dtype=dtype)
    results, notes, held = _measure(problem, scopes, sigmas, rules, smooth=smooth)
    overall = results.pop(OVERALL)
    dtype_note = [] if dtype == torch.float64 else [f"alignment computed in {dtype}, not torch.float64"]
    return AlignmentResult(
        sigmas=[float(s) for s in sigmas],
        n_directions=n_directions,
        n_quadrature=n_quadrature,
        n_quadrature_check=n_check,
        seed=seed,
        smooth_mode=smooth if snn else None,
        dtype=str(dtype),
        overall=overall,
        per_layer=results,
        n_evaluations=problem.n_evaluations,
        batched=problem.batched,
        seconds=time.perf_counter() - start,
        held_resets=held,
        warnings=[*dtype_note, *notes, *_inconclusive(overall), *problem.warnings],
    )
