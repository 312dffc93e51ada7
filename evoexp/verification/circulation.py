r"""Circulation of the surrogate gradient around closed loops in weight space (Gygax & Zenke 2025).

See docs/guides/theory.md, "1. Circulation".

A true gradient field :math:`g = \nabla L` is conservative: its line integral around any closed loop vanishes. Gygax &
Zenke show that surrogate gradients are not the gradient of any function, so their circulation does not vanish. For a
circle of radius :math:`r` around the current weights :math:`w_0`, spanned by two orthonormal directions
:math:`u, v`,

.. math:: w(\theta) = w_0 + r(\cos\theta\,u + \sin\theta\,v), \qquad
          C = \oint g \cdot dw = \int_0^{2\pi} r\,\bigl(-\sin\theta\,\langle g(w(\theta)), u\rangle
              + \cos\theta\,\langle g(w(\theta)), v\rangle\bigr)\,d\theta,

where :math:`g(w)` is the gradient training computes at :math:`w` (autograd through the network, surrogate derivative
in the backward). It is reported normalised by the loop length times the mean norm of the gradient projected onto the
plane,

.. math:: c = \frac{C}{2\pi r \cdot \overline{\|(\langle g, u\rangle, \langle g, v\rangle)\|}} \in [-1, 1]

(:math:`|c| = 1` only for a field tangent to the circle with constant magnitude: a pure vortex).

**Quadrature.** The integrand is :math:`2\pi`-periodic, so the trapezoid rule on :math:`n` equally spaced angles
:math:`\theta_k = 2\pi k/n` (``n_points``), :math:`C_n = \frac{2\pi}{n}\sum_k f(\theta_k)`, is spectrally accurate
for a smooth field: its error falls faster than any power of :math:`n`. The quadrature error is estimated as
:math:`|c_n - c_{n/2}|`, with :math:`c_{n/2}` from the even-numbered points of the same loop (no extra
evaluations); for a smooth field it bounds the error of :math:`c_n` by far. In spiking mode the surrogate gradient
jumps where a spike appears or disappears along the loop; the rule then converges like :math:`O(1/n)` and the estimate
is of the order of the error itself.

**Verdict.** A loop is *conservative* when :math:`|c| \le 3\,\text{quadrature errors} + \text{atol}` (the factor
covers fields that jump, whose error estimate gives only the error's order) and *resolved* when
its quadrature error is at most ``max_quadrature_error``. In smooth mode (and for networks without spiking neurons)
the field is a true gradient, so every loop must be conservative and resolved: that is the check's control, which a
wrong backward fails (``passed``). A detached reset is then held at its value at the centre of the loop, as in the
finite-difference check, so that the field is the gradient of one function. In spiking mode the circulation is the
finding (informational); with ``control=True`` the same loops are also integrated in smooth mode and their verdict is
the result's ``passed``.

**Planes.** The overall planes span every studied parameter (across layers); with ``per_layer`` each parameter tensor
also gets planes of its own (within one layer's weights). ``n_planes`` seeded planes per scope give a mean
:math:`|c|` with a standard error. Networks of snnTorch, SpikingJelly and Norse are handled through the adapters of
:mod:`evoexp.verification.spiking`, like every other check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from evoexp import keys
from evoexp.arguments import checked_by
from evoexp.results import Result
from evoexp.verification._batched import LossFn, LossProblem

__all__ = [
    "CirculationResult",
    "CirculationStats",
    "PlaneCirculation",
    "check_circulation",
    "check_circulation_arguments",
]

OVERALL = "overall"
SAFETY = 3.0
r"""A loop is conservative when :math:`|c| \le` ``SAFETY`` quadrature errors + ``atol``: for a field that jumps (a
max-over-time readout, a box surrogate) :math:`|c_n - c_{n/2}|` gives the order of the error, not a bound."""
Mode = Literal["spiking", "smooth", "differentiable"]


@dataclass
class PlaneCirculation:
    r"""The circulation around one circle.

    Attributes:
        circulation: Normalised circulation :math:`c_n` (``n_points`` angles); NaN when the projected gradient
            vanishes on the whole loop.
        coarse: :math:`c_{n/2}` from every second angle.
        quadrature_error: :math:`|c_n - c_{n/2}|`.
        raw: Unnormalised :math:`C_n = \oint g\cdot dw`.
        mean_projected_norm: Mean over the angles of the norm of the gradient projected onto the plane.
        n_points: Angles used (more than requested when the loop was refined).
        conservative: :math:`|c_n| \le 3` quadrature errors + ``atol`` (:data:`SAFETY`).
    """

    circulation: float
    coarse: float
    quadrature_error: float
    raw: float
    mean_projected_norm: float
    n_points: int
    conservative: bool


@dataclass
class CirculationStats:
    r"""Circulation of one scope (all parameters, or one tensor) over its planes.

    Attributes:
        scope: ``"overall"`` or a parameter name.
        circulation: Mean of :math:`|c|` over the planes.
        circulation_se: Its standard error over the planes (NaN for one plane).
        quadrature_error: Largest quadrature error over the planes.
        conservative: Every plane conservative (:math:`|c| \le 3` quadrature errors + ``atol``).
        resolved: Every plane's quadrature error at most ``max_quadrature_error``.
        planes: Per plane.
    """

    scope: str
    circulation: float
    circulation_se: float
    quadrature_error: float
    conservative: bool
    resolved: bool
    planes: list[PlaneCirculation]


@dataclass
class CirculationResult(Result):
    """Outcome of :func:`check_circulation`.

    Attributes:
        mode: ``"spiking"`` (surrogate gradient of a spiking network), ``"smooth"`` (its smooth mode: a true gradient)
            or ``"differentiable"`` (a network without spiking neurons: a true gradient).
        radius: Radius :math:`r` of the circles (parameter units; the directions are unit vectors).
        n_points: Angles :math:`n` of the trapezoid rule.
        n_check: Angles of the coarse rule (:math:`n/2`).
        max_points: Most angles of a refined loop.
        n_planes: Planes per scope.
        seed: Seed of the planes.
        dtype: Dtype of the model copy.
        atol: Absolute tolerance on :math:`|c|`.
        max_quadrature_error: Largest quadrature error of a resolved loop.
        overall: Planes across all studied parameters.
        per_layer: Parameter name -> planes within that tensor.
        n_evaluations: Forward-backward evaluations.
        seconds: Wall time (control included).
        held_resets: Layers whose detached reset was held at the centre of the loops (smooth mode).
        control: The same loops in smooth mode, when run from spiking mode with ``control=True``.
        warnings: Caveats.
    """

    check: ClassVar[str] = "circulation"

    mode: Mode
    radius: float
    n_points: int
    n_check: int
    max_points: int
    n_planes: int
    seed: int
    dtype: str
    atol: float
    max_quadrature_error: float
    overall: CirculationStats
    per_layer: dict[str, CirculationStats]
    n_evaluations: int
    seconds: float
    held_resets: list[str] = field(default_factory=list)
    control: CirculationResult | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def scopes(self) -> list[CirculationStats]:
        """The overall scope, then each tensor's."""
        return [self.overall, *self.per_layer.values()]

    @property
    def conservative(self) -> bool:
        """Whether every loop's circulation vanishes within 3 quadrature errors (+ ``atol``)."""
        return all(s.conservative for s in self.scopes)

    @property
    def resolved(self) -> bool:
        """Whether every loop's quadrature error is at most ``max_quadrature_error``."""
        return all(s.resolved for s in self.scopes)

    @property
    def passed(self) -> bool | None:
        """A true-gradient field (smooth, differentiable): conservative and resolved. Spiking: the control's verdict."""
        if self.mode == "spiking":
            return None if self.control is None else self.control.passed
        return self.conservative and self.resolved

    def summary(self) -> dict[str, float]:
        """Overall and per-tensor circulation, quadrature error, conservative; the control's when it ran."""
        out = {
            keys.CIRCULATION: self.overall.circulation,
            keys.CIRCULATION_SE: self.overall.circulation_se,
            keys.CIRCULATION_QUADRATURE_ERROR: self.overall.quadrature_error,
            keys.CIRCULATION_CONSERVATIVE: float(self.conservative),
        }
        out.update({keys.CIRCULATION_LAYER_PREFIX + name: s.circulation for name, s in self.per_layer.items()})
        if self.control is not None:
            out[keys.CIRCULATION_CONTROL] = self.control.overall.circulation
            out[keys.CIRCULATION_CONTROL_PASSED] = float(bool(self.control.passed))
        return out


def _orthonormal_pair(generator: torch.Generator, sizes: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Two orthonormal float64 vectors of length ``sum(sizes)`` (Gram--Schmidt on seeded Gaussian vectors)."""
    numel = sum(sizes)
    u = torch.randn(numel, generator=generator, dtype=torch.float64)
    v = torch.randn(numel, generator=generator, dtype=torch.float64)
    u = u / u.norm()
    v = v - (v @ u) * u
    return u, v / v.norm()


def _split(vector: Tensor, names: Sequence[str], problem: LossProblem) -> dict[str, Tensor]:
    """Cut a flat vector into the shapes, dtype and device of the named parameters."""
    out, start = {}, 0
    for name in names:
        param = problem.params[name]
        out[name] = vector[start : start + param.numel()].reshape(param.shape).to(param.dtype).to(param.device)
        start += param.numel()
    return out


def _plane(
    problem: LossProblem,
    names: Sequence[str],
    u: Tensor,
    v: Tensor,
    *,
    radius: float,
    n_points: int,
    max_points: int,
    atol: float,
    max_quadrature_error: float,
) -> PlaneCirculation:
    r"""Integrate the gradient around one circle with the trapezoid rule (``n`` and ``n/2`` angles).

    While the quadrature error exceeds ``max_quadrature_error``, the angles are doubled (the new midpoints only: the
    rules are nested), up to ``max_points``. A large circulation is no reason to stop: an under-resolved loop can
    show a large :math:`c_n` close to :math:`c_{n/2}` (both aliased).
    """
    directions = (_split(u, names, problem), _split(v, names, problem))

    def sample(theta: float) -> tuple[float, float]:
        cos, sin = math.cos(theta), math.sin(theta)
        point = {
            name: problem.params[name].detach() + radius * (cos * directions[0][name] + sin * directions[1][name])
            for name in names
        }
        grad = problem.gradient_at(point)
        gu = float(sum((grad[name] * directions[0][name]).sum() for name in names))
        gv = float(sum((grad[name] * directions[1][name]).sum() for name in names))
        return radius * (-sin * gu + cos * gv), math.hypot(gu, gv)

    def normalised(values: np.ndarray, projected: np.ndarray) -> tuple[float, float]:
        raw = 2.0 * math.pi * float(values.mean())  # trapezoid rule on a periodic integrand
        scale = 2.0 * math.pi * radius * float(projected.mean())
        return raw, (raw / scale if scale > 0 else math.nan)

    samples = np.array([sample(2.0 * math.pi * k / n_points) for k in range(n_points)])  # [n, (f, |Pg|)]
    while True:
        n = len(samples)
        raw, circulation = normalised(samples[:, 0], samples[:, 1])
        _, coarse = normalised(samples[::2, 0], samples[::2, 1])
        error = abs(circulation - coarse)
        if error <= max_quadrature_error or not math.isfinite(error) or 2 * n > max_points:
            break
        midpoints = np.array([sample(2.0 * math.pi * (k + 0.5) / n) for k in range(n)])
        samples = np.stack([samples, midpoints], axis=1).reshape(2 * n, 2)
    return PlaneCirculation(
        circulation=circulation,
        coarse=coarse,
        quadrature_error=error,
        raw=raw,
        mean_projected_norm=float(samples[:, 1].mean()),
        n_points=n,
        conservative=bool(abs(circulation) <= SAFETY * error + atol) if math.isfinite(circulation) else True,
    )


def _stats(scope: str, planes: list[PlaneCirculation], max_quadrature_error: float) -> CirculationStats:
    magnitudes = np.array([abs(p.circulation) for p in planes if math.isfinite(p.circulation)])
    errors = [p.quadrature_error for p in planes if math.isfinite(p.quadrature_error)]
    se = float(magnitudes.std(ddof=1) / math.sqrt(len(magnitudes))) if len(magnitudes) > 1 else math.nan
    return CirculationStats(
        scope=scope,
        circulation=float(magnitudes.mean()) if len(magnitudes) else math.nan,
        circulation_se=se,
        quadrature_error=max(errors) if errors else math.nan,
        conservative=all(p.conservative for p in planes),
        resolved=all(e <= max_quadrature_error for e in errors),
        planes=planes,
    )


@dataclass(frozen=True)
class _Loops:
    """How the loops are integrated (the arguments of :func:`check_circulation`)."""

    radius: float
    n_points: int
    max_points: int
    n_planes: int
    seed: int
    atol: float
    max_quadrature_error: float


def _loops(problem: LossProblem, scopes: dict[str, list[str]], options: _Loops) -> dict[str, CirculationStats]:
    """Every scope's planes (seeded: the same planes for every mode)."""
    generator = torch.Generator().manual_seed(options.seed)  # on the CPU: the same planes on every device
    stats = {}
    for scope, names in scopes.items():
        sizes = [problem.params[name].numel() for name in names]
        planes = []
        for _ in range(options.n_planes):
            u, v = _orthonormal_pair(generator, sizes)
            planes.append(
                _plane(
                    problem,
                    names,
                    u,
                    v,
                    radius=options.radius,
                    n_points=options.n_points,
                    max_points=options.max_points,
                    atol=options.atol,
                    max_quadrature_error=options.max_quadrature_error,
                )
            )
        stats[scope] = _stats(scope, planes, options.max_quadrature_error)
    return stats


def _run(problem: LossProblem, scopes: dict[str, list[str]], mode: Mode, options: _Loops) -> CirculationResult:
    start = time.perf_counter()
    held: list[str] = []
    if problem.copy.spiking:
        problem.copy.set_smooth(mode == "smooth")
        if mode == "smooth":
            held = problem.copy.hold_resets(problem.forward)
    warnings = list(problem.copy.notes)
    stats = _loops(problem, scopes, options)
    overall = stats.pop(OVERALL)
    for scope in (overall, *stats.values()):
        if any(not math.isfinite(p.circulation) for p in scope.planes):
            warnings.append(f"{scope.scope}: the projected gradient vanishes on a whole loop (no circulation to show)")
        if not scope.resolved and mode != "spiking":
            warnings.append(
                f"{scope.scope}: quadrature error {scope.quadrature_error:.3g} > max_quadrature_error "
                f"{options.max_quadrature_error:g} with {options.max_points} angles; raise max_points or reduce "
                "the radius"
            )
    return CirculationResult(
        mode=mode,
        radius=options.radius,
        n_points=options.n_points,
        n_check=options.n_points // 2,
        max_points=options.max_points,
        n_planes=options.n_planes,
        seed=options.seed,
        dtype=str(problem.dtype),
        atol=options.atol,
        max_quadrature_error=options.max_quadrature_error,
        overall=overall,
        per_layer=stats,
        n_evaluations=problem.n_evaluations,
        seconds=time.perf_counter() - start,
        held_resets=held,
        warnings=warnings,
    )


def check_circulation_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`check_circulation` (:func:`evoexp.arguments.checked_by`).

    Raises:
        ValueError: The first invalid setting, named first.
    """
    radius, n_points, max_points, n_planes = (args[k] for k in ("radius", "n_points", "max_points", "n_planes"))
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a finite number > 0, got {radius!r}")
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 8 or n_points % 2:
        raise ValueError(f"n_points must be an even int >= 8 (the error estimate uses n_points // 2), got {n_points!r}")
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < n_points:
        raise ValueError(f"max_points must be an int >= n_points ({n_points}), got {max_points!r}")
    if isinstance(n_planes, bool) or not isinstance(n_planes, int) or n_planes < 1:
        raise ValueError(f"n_planes must be a positive int, got {n_planes!r}")
    for name in ("max_quadrature_error", "atol"):
        value = args[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _scopes(problem: LossProblem, per_layer: bool) -> tuple[dict[str, list[str]], list[str]]:
    """Parameter names per scope (``OVERALL``, then one per tensor) and the one-element tensors skipped.

    A plane needs two coordinates, so a tensor of one element gets no scope of its own.
    """
    names = list(problem.params)
    scopes = {OVERALL: names}
    skipped = []
    if per_layer:
        for name in names:
            if problem.params[name].numel() >= 2:
                scopes[name] = [name]
            else:
                skipped.append(name)
    return scopes, skipped


@checked_by(check_circulation_arguments)
def check_circulation(
    model: nn.Module,
    inputs: Any,
    targets: Any,
    loss_fn: LossFn,
    *,
    radius: float = 0.1,
    n_points: int = 64,
    max_points: int = 512,
    smooth: bool = False,
    seed: int = 0,
    n_planes: int = 1,
    per_layer: bool = True,
    control: bool = True,
    parameters: Sequence[str] | None = None,
    atol: float = 1e-2,
    max_quadrature_error: float = 1e-3,
    dtype: torch.dtype = torch.float64,
) -> CirculationResult:
    r"""Integrate the (surrogate) gradient around seeded circles in weight space (module docstring).

    Runs on private copies of ``model`` (cast to ``dtype``); the user's model is never modified.

    Args:
        model: Any ``nn.Module``; spiking networks run in spiking mode unless ``smooth``.
        inputs: Model input(s) (a tuple is unpacked).
        targets: Second argument of ``loss_fn``.
        loss_fn: ``loss_fn(model_output, targets) -> scalar tensor``.
        radius: Radius :math:`r > 0` of the circles, in parameter units.
        n_points: Angles of the trapezoid rule (even, >= 8); each costs one forward and backward per plane.
        max_points: A loop whose quadrature error exceeds ``max_quadrature_error`` gets twice the angles, up to
            this many (``n_points``: no refinement).
        smooth: Integrate the smooth-mode gradient of a spiking network (a true gradient: the control).
        seed: Seed of the planes.
        n_planes: Planes per scope (>= 1).
        per_layer: Also integrate within each parameter tensor (tensors of one element are skipped).
        control: In spiking mode, also integrate the same loops in smooth mode (the result's ``control``).
        parameters: Parameter names to study (default: all trainable).
        atol: Absolute tolerance on the normalised circulation: a loop is conservative when
            :math:`|c| \le 3` quadrature errors + ``atol``. The default 0.01 is what the control of a network with a
            max-over-time readout can show (its field jumps; measured :math:`|c| \approx 10^{-3}`); a smooth
            network resolves far below it (``atol=1e-9`` in ``experiment=theory_circulation`` and the tests).
        max_quadrature_error: Largest quadrature error of a resolved loop.
        dtype: Dtype of the copies.

    Returns:
        A :class:`CirculationResult`.

    Raises:
        ValueError: bad ``radius``/``n_points``/``n_planes``, ``smooth=True`` for a model without a smooth mode, or
            unknown ``parameters``.
    """
    start = time.perf_counter()

    def problem() -> LossProblem:
        return LossProblem(model, inputs, targets, loss_fn, dtype=dtype, parameters=parameters, structure_aware=False)

    first = problem()
    spiking = first.spiking(smooth)
    scopes, skipped = _scopes(first, per_layer)
    options = _Loops(float(radius), n_points, max_points, n_planes, seed, atol, max_quadrature_error)
    mode: Mode = ("smooth" if smooth else "spiking") if spiking else "differentiable"
    result = _run(first, scopes, mode, options)
    if mode == "spiking" and control:
        result.control = _run(problem(), scopes, "smooth", options)
    if skipped:
        result.warnings.append(f"no plane within {', '.join(skipped)}: a plane needs two coordinates")
    if dtype != torch.float64:
        result.warnings.append(f"circulation computed in {dtype}, not torch.float64")
    result.warnings.extend(first.warnings)
    result.seconds = time.perf_counter() - start
    return result
