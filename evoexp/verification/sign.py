r"""Sign disagreement between the surrogate gradient and the gradient of the smoothed loss (Gygax & Zenke 2025).

Along :math:`K` seeded random unit directions :math:`v_k` (over every studied parameter), the directional surrogate
derivative :math:`s_k = \langle \nabla_{\text{sur}} L, v_k\rangle` (autograd through the network, as training
computes it) is compared with the directional derivative :math:`t_k` of the Gaussian-smoothed loss
:math:`\mathbb{E}_z[L(w + \sigma z v_k)]`, computed by Gauss--Hermite quadrature exactly as the alignment check does
(:mod:`evoexp.verification.alignment`). The *sign disagreement* is the fraction of informative directions
(:math:`t_k \ne 0`) with :math:`\operatorname{sign} s_k \ne \operatorname{sign} t_k`, with the binomial standard
error :math:`\sqrt{p(1-p)/K_\text{informative}}`. For isotropic directions it estimates :math:`\angle(s, t)/\pi`, the
angle between the two gradients over :math:`\pi`: 0 when they point the same way, 1/2 when they are unrelated.

For a differentiable network and a small :math:`\sigma` the smoothed derivative is the true directional derivative,
so the measure answers the question of Gygax & Zenke directly: does the surrogate gradient point against the true
gradient? *Unresolved* directions are those whose smoothed derivative changes sign between ``n_quadrature`` and
``n_quadrature // 2`` nodes (their sign is not known to the quadrature's accuracy).

:class:`SignDisagreementProbe` measures it every ``every`` epochs during training through the training pipeline's
probes (:func:`evoexp.training.train_model`), and :class:`SignDisagreementTrace` holds the curve.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evoexp import keys
from evoexp.arguments import checked_by
from evoexp.results import Result
from evoexp.verification._batched import DEFAULT_MEMORY_BUDGET, LossFn, LossProblem
from evoexp.verification.alignment import positive_nodes, smoothed_derivatives

DEFAULT_EVERY = 5
"""Default epochs between two measurements during training (``benchmarks/bench_sign_disagreement.py``)."""

__all__ = [
    "DEFAULT_EVERY",
    "SignDisagreementProbe",
    "SignDisagreementResult",
    "SignDisagreementTrace",
    "check_probe_arguments",
    "check_sign_arguments",
    "measure_sign_disagreement",
]


@dataclass
class SignDisagreementResult(Result):
    r"""Outcome of :func:`measure_sign_disagreement` (informational).

    Attributes:
        sigma: Smoothing scale :math:`\sigma`.
        n_directions: Directions :math:`K`.
        n_quadrature: Gauss--Hermite nodes (the unresolved count compares with ``n_quadrature // 2``).
        seed: Seed of the directions.
        smooth_mode: Whether a spiking network ran in smooth mode (None for other models).
        disagreement: Fraction of informative directions with opposite signs (NaN when none is informative).
        disagreement_se: :math:`\sqrt{p(1-p)/K_\text{informative}}`.
        n_informative: Directions with :math:`t_k \ne 0`.
        n_unresolved: Informative directions whose :math:`t_k` changes sign between the two quadratures.
        surrogate: :math:`s_k`.
        smoothed: :math:`t_k`.
        n_evaluations: Loss evaluations.
        seconds: Wall time.
        warnings: Caveats.
    """

    check: ClassVar[str] = "sign_disagreement"

    sigma: float
    n_directions: int
    n_quadrature: int
    seed: int
    smooth_mode: bool | None
    disagreement: float
    disagreement_se: float
    n_informative: int
    n_unresolved: int
    surrogate: list[float]
    smoothed: list[float]
    n_evaluations: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Disagreement, its SE, informative and unresolved directions."""
        return {
            keys.SIGN_DISAGREEMENT: self.disagreement,
            keys.SIGN_DISAGREEMENT_SE: self.disagreement_se,
            keys.SIGN_INFORMATIVE: float(self.n_informative),
            keys.SIGN_UNRESOLVED: float(self.n_unresolved),
        }


def check_sign_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`measure_sign_disagreement` (:func:`evoexp.arguments.checked_by`).

    Raises:
        ValueError: The first invalid setting, named first.
    """
    sigma, n_directions, n_quadrature = args["sigma"], args["n_directions"], args["n_quadrature"]
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    if isinstance(n_directions, bool) or not isinstance(n_directions, int) or n_directions < 2:
        raise ValueError(f"n_directions must be an int >= 2, got {n_directions!r}")
    if isinstance(n_quadrature, bool) or not isinstance(n_quadrature, int) or n_quadrature < 4:
        raise ValueError(f"n_quadrature must be an int >= 4 (compared with n // 2 nodes), got {n_quadrature!r}")


def _directions(problem: LossProblem, n_directions: int, seed: int, dtype: torch.dtype) -> dict[str, Tensor]:
    """Seeded unit directions over all studied parameters together.

    Drawn in float64 on the CPU (the same directions on every device), then placed on each parameter's device in
    ``dtype``.
    """
    generator = torch.Generator().manual_seed(seed)
    raw = {
        name: torch.randn((n_directions, p.numel()), generator=generator, dtype=torch.float64)
        for name, p in problem.params.items()
    }
    norm = torch.stack([v.pow(2).sum(dim=1) for v in raw.values()]).sum(dim=0).sqrt()
    return {name: (v / norm[:, None]).to(device=problem.params[name].device, dtype=dtype) for name, v in raw.items()}


def _sign_counts(s: np.ndarray, t: np.ndarray, t_coarse: np.ndarray) -> tuple[float, int, int]:
    """Sign disagreement, informative directions and unresolved directions.

    Returns the fraction of informative directions (``t != 0``) whose surrogate sign ``s`` disagrees, their number,
    and how many of them the coarser quadrature ``t_coarse`` gives the opposite sign.
    """
    informative = t != 0
    n_informative = int(informative.sum())
    disagree = np.sign(s[informative]) != np.sign(t[informative])
    p = float(disagree.mean()) if n_informative else math.nan
    return p, n_informative, int((np.sign(t[informative]) != np.sign(t_coarse[informative])).sum())


@checked_by(check_sign_arguments)
def measure_sign_disagreement(
    model: nn.Module,
    inputs: Any,
    targets: Any,
    loss_fn: LossFn,
    *,
    sigma: float = 0.05,
    n_directions: int = 32,
    n_quadrature: int = 8,
    seed: int = 0,
    smooth: bool = False,
    parameters: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float64,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> SignDisagreementResult:
    r"""Fraction of random directions along which the surrogate and the smoothed-loss gradient disagree in sign.

    Runs on a private copy of ``model`` (cast to ``dtype``; the user's model is never modified). Spiking networks run
    in spiking mode unless ``smooth`` (then a detached reset is held, as in the alignment check).

    Args:
        model: Any ``nn.Module``.
        inputs: Model input(s) (a tuple is unpacked).
        targets: Second argument of ``loss_fn``.
        loss_fn: ``loss_fn(model_output, targets) -> scalar tensor``.
        sigma: Smoothing scale :math:`\sigma > 0` (parameter units along unit directions).
        n_directions: Seeded random unit directions :math:`K \ge 2`.
        n_quadrature: Gauss--Hermite nodes (>= 4); ``n_quadrature + n_quadrature // 2`` forwards per direction.
        seed: Seed of the directions.
        smooth: Run a spiking network in smooth mode.
        parameters: Parameter names to include (default: all trainable).
        dtype: Dtype of the copy.
        memory_budget: Bound in bytes on one batched evaluation.

    Returns:
        A :class:`SignDisagreementResult`.

    Raises:
        ValueError: bad ``sigma``/``n_directions``/``n_quadrature``, ``smooth=True`` for a model without a smooth
            mode, or unknown ``parameters``.
    """
    start = time.perf_counter()
    problem = LossProblem(
        model, inputs, targets, loss_fn, dtype=dtype, parameters=parameters, memory_budget=memory_budget
    )
    spiking = problem.spiking(smooth)
    directions = _directions(problem, n_directions, seed, dtype)
    problem.copy.set_smooth(smooth)
    warnings = list(problem.copy.notes)
    grad = problem.gradient()
    if smooth:
        problem.copy.hold_resets(problem.forward)
    s = torch.as_tensor(sum(v @ grad[name].reshape(-1) for name, v in directions.items())).double().cpu().numpy()
    t = smoothed_derivatives(problem, directions, float(sigma), *positive_nodes(n_quadrature))
    t_coarse = smoothed_derivatives(problem, directions, float(sigma), *positive_nodes(n_quadrature // 2))
    p, n_informative, n_unresolved = _sign_counts(s, t, t_coarse)
    if not n_informative:
        warnings.append("the smoothed loss is flat along every direction: no sign to compare (raise sigma)")
    warnings.extend(problem.warnings)
    return SignDisagreementResult(
        sigma=float(sigma),
        n_directions=n_directions,
        n_quadrature=n_quadrature,
        seed=seed,
        smooth_mode=smooth if spiking else None,
        disagreement=p,
        disagreement_se=math.sqrt(p * (1 - p) / n_informative) if n_informative else math.nan,
        n_informative=n_informative,
        n_unresolved=n_unresolved,
        surrogate=s.tolist(),
        smoothed=t.tolist(),
        n_evaluations=problem.n_evaluations,
        seconds=time.perf_counter() - start,
        warnings=warnings,
    )


@dataclass
class SignDisagreementTrace(Result):
    """Sign disagreement measured during training (informational).

    Attributes:
        every: Epochs between measurements (epoch 0, the untrained network, is measured too).
        sigma: Smoothing scale.
        n_directions: Directions per measurement.
        epochs: Epochs measured.
        disagreement: Disagreement at each measured epoch.
        disagreement_se: Its standard error.
        seconds: Total wall time of the measurements.
    """

    check: ClassVar[str] = "sign_disagreement_training"

    every: int
    sigma: float
    n_directions: int
    epochs: list[int]
    disagreement: list[float]
    disagreement_se: list[float]
    seconds: float

    def summary(self) -> dict[str, float]:
        """Disagreement at the first and the last measured epoch, and its mean over the measurements."""
        if not self.epochs:
            return {}
        return {
            keys.SIGN_TRACE_FIRST: self.disagreement[0],
            keys.SIGN_TRACE_LAST: self.disagreement[-1],
            keys.SIGN_TRACE_MEAN: float(np.nanmean(self.disagreement)),
        }


def check_probe_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :class:`SignDisagreementProbe` (:func:`evoexp.arguments.checked_by`).

    Raises:
        ValueError: ``every`` is not an int >= 0.
    """
    every = args["every"]
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"every must be an int >= 0 (0: no measurement during training), got {every!r}")


class SignDisagreementProbe:
    r"""Measures the sign disagreement every ``every`` epochs during :func:`evoexp.training.train_model`.

    A probe of the training pipeline: called as ``probe(epoch, model)`` for epoch 0 and after every epoch, it returns
    ``{"sign_disagreement": p, "sign_disagreement_se": se}`` on measured epochs (``epoch % every == 0``) and ``{}``
    otherwise; the app logs them per epoch as ``snn/sign_disagreement`` (:mod:`evoexp.keys`). The loss is evaluated
    on a fixed set of samples given at construction, with the same seeded directions at every epoch, so the curve
    shows the network changing, not the sample.

    Args:
        inputs: Fixed model inputs (e.g. the first samples of the training set).
        targets: Their targets.
        loss_fn: The training loss (cross-entropy if None).
        every: Epochs between measurements (>= 1); 0 measures nothing.
        dtype: Dtype of the measurement's copy; None (default): the model's own (training) dtype, which keeps the
            default probe's cost within 20 % of the training time (``benchmarks/bench_sign_disagreement.py``; a
            float64 copy costs about three times as much on a CPU).
        **options: Keyword arguments of :func:`measure_sign_disagreement` (``sigma``, ``n_directions``,
            ``n_quadrature``, ``seed``, ...).
    """

    @checked_by(check_probe_arguments)
    def __init__(
        self,
        inputs: Tensor,
        targets: Tensor,
        *,
        loss_fn: LossFn | None = None,
        every: int = DEFAULT_EVERY,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        self.inputs, self.targets = inputs, targets
        self.loss_fn: LossFn = F.cross_entropy if loss_fn is None else loss_fn
        self.every = every
        self.dtype = dtype
        self.options = options
        self.results: dict[int, SignDisagreementResult] = {}

    def __call__(self, epoch: int, model: nn.Module) -> Mapping[str, float]:
        """Measure at a measured epoch (``{}`` otherwise); the model is not modified."""
        if not self.every or epoch % self.every:
            return {}
        dtype = self.dtype or next(model.parameters()).dtype
        result = measure_sign_disagreement(model, self.inputs, self.targets, self.loss_fn, dtype=dtype, **self.options)
        self.results[epoch] = result
        return {
            keys.SIGN_DISAGREEMENT_CURVE: result.disagreement,
            keys.SIGN_DISAGREEMENT_CURVE_SE: result.disagreement_se,
        }

    def trace(self) -> SignDisagreementTrace:
        """The measurements so far as a result."""
        epochs = sorted(self.results)
        first = self.results[epochs[0]] if epochs else None
        return SignDisagreementTrace(
            every=self.every,
            sigma=first.sigma if first is not None else float(self.options.get("sigma", math.nan)),
            n_directions=first.n_directions if first is not None else int(self.options.get("n_directions", 0)),
            epochs=epochs,
            disagreement=[self.results[e].disagreement for e in epochs],
            disagreement_se=[self.results[e].disagreement_se for e in epochs],
            seconds=sum(r.seconds for r in self.results.values()),
        )
