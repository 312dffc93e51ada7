r"""Telling a wrong gradient from a non-differentiable point of the loss (private helper of the gradient check).

A central difference :math:`n = (L(w+\varepsilon e) - L(w-\varepsilon e))/2\varepsilon` that disagrees with the
analytical value :math:`a` has three possible causes:

1. the loss bends on a scale below :math:`\varepsilon` (a steep smooth transition, or a kink at a distance
   :math:`\delta < \varepsilon` from :math:`w`): a smaller step agrees with :math:`a`;
2. the loss has a kink *at* :math:`w` (closer than any step that float64 resolves), e.g. a near-tie between two time
   steps of a ``max`` readout: the one-sided differences
   :math:`d_+ = (L(w+he) - L(w))/h` and :math:`d_- = (L(w) - L(w-he))/h` disagree with each other however small
   :math:`h`, and autograd returns the derivative of one of the two pieces (or a value between them);
3. the gradient is wrong: at every step the differences converge to another value than :math:`a`.

:func:`resolve` re-evaluates the disagreeing entries at the steps :math:`h_k = \varepsilon / 4^k` (``k = 1, 2, ...``)
while rounding cannot fake an agreement there (the central difference's rounding bound, ``16`` float units of the
loss over :math:`h`, stays below half the tolerance). An entry is

* ``refined`` (cause 1) when the central difference agrees with :math:`a` at two consecutive steps (one agreement
  could be a crossing on the way to another value; two cannot);
* ``nondifferentiable`` (cause 2) when, at every step tried, the central difference agrees or the one-sided
  differences disagree with each other (by more than the tolerance plus rounding) with :math:`a` equal to one of
  them or between them, the latter at least once;
* ``nondifferentiable`` too when the one-sided differences disagree at the finest step but several pieces kink at
  the same point (e.g. the ``max`` readouts of several samples tie at once, with opposite signs in the loss):
  autograd's value is then a sum of one-sided choices that need not lie between the loss's one-sided differences,
  so the gradient is checked just beside the kink, on both sides, where the loss is smooth (:func:`_both_sides`);
* ``wrong`` (cause 3) otherwise. At a smooth point the one-sided differences agree with each other as the step
  shrinks, so a wrong gradient cannot pass as a kink; beside a kink a wrong gradient is as wrong as anywhere.

An entry whose central difference has settled (it moved by less than a quarter of the tolerance from one step to the
next) while disagreeing is decided at once: a smaller step would not change it. A wrong gradient at a smooth point
therefore costs two more loss evaluations, not sixteen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["AGREES", "NONDIFFERENTIABLE", "REFINED", "WRONG", "Resolution", "resolve"]

AGREES, REFINED, NONDIFFERENTIABLE, WRONG = 0, 1, 2, 3
"""Status codes of :attr:`Resolution.status`."""

_STEP_RATIO = 4.0
_MAX_REFINEMENTS = 8
_ROUNDING_ULPS = 16.0
_SETTLED = 0.25

Losses = Callable[[Tensor, Tensor], Tensor]
"""``losses(entries, steps)``: the loss at :math:`w + \\text{steps}[k]\\,e_{\\text{entries}[k]}` for every ``k``
(``steps`` are the requested shifts; a step of 0 is the unperturbed loss)."""


@dataclass
class Resolution:
    """How every compared entry was resolved.

    Attributes:
        status: Per entry: ``AGREES``, ``REFINED``, ``NONDIFFERENTIABLE`` or ``WRONG``.
        numerical: The central difference that decides the entry: at ``eps``, or at the finer step that agreed.
        step: The step of ``numerical``.
        left: One-sided difference :math:`(L(w) - L(w-h))/h` at the finest step tried (NaN where not refined).
        right: One-sided difference :math:`(L(w+h) - L(w))/h` at the same step.
        finest: That finest step (NaN where not refined).
    """

    status: Tensor
    numerical: Tensor
    step: Tensor
    left: Tensor
    right: Tensor
    finest: Tensor


def _rounding(values: Tensor, step: Tensor) -> Tensor:
    """Bound on the rounding error of a difference quotient of losses of size ``values`` with step ``step``."""
    unit = torch.finfo(values.dtype).eps
    return _ROUNDING_ULPS * unit * values.abs().amax(dim=0).clamp_min(1e-300) / step


def _kink(left: Tensor, right: Tensor, analytical: Tensor, allowed: Tensor, rounding: Tensor) -> Tensor:
    """One-sided differences that disagree with each other, with the analytical value one of them or between."""
    low, high = torch.minimum(left, right), torch.maximum(left, right)
    disagree = (right - left).abs() > allowed + 2 * rounding
    between = (analytical >= low - allowed - rounding) & (analytical <= high + allowed + rounding)
    return disagree & between


def resolve(
    losses: Losses,
    analytical: Tensor,
    numerical: Tensor,
    *,
    eps: float,
    atol: float,
    rtol: float,
    refine: bool = True,
    analytical_at: Losses | None = None,
) -> Resolution:
    r"""Classify each entry of ``numerical`` (central differences at ``eps``) against ``analytical``.

    Args:
        losses: Evaluates the loss at single-entry shifts (see :data:`Losses`).
        analytical: 1-D analytical values (autograd).
        numerical: 1-D central differences at ``eps``.
        eps: The step of ``numerical``.
        atol: Absolute tolerance (an entry agrees when :math:`|n - a| \le \text{atol} + \text{rtol}|a|`).
        rtol: Relative tolerance.
        refine: Re-evaluate the disagreeing entries; ``False`` only compares at ``eps`` (all disagreements wrong).
        analytical_at: ``analytical_at(entries, steps)``: the analytical value of each entry at the shifted point
            :math:`w + \text{steps}[k]\,e_{\text{entries}[k]}` (for the check on both sides of a kink); None skips
            that check.

    Returns:
        The :class:`Resolution` of every entry (the disagreeing ones re-evaluated at finer steps).
    """
    allowed = atol + rtol * analytical.abs()
    agrees = (numerical - analytical).abs() <= allowed
    nan = torch.full_like(numerical, float("nan"))
    resolution = Resolution(
        status=torch.where(agrees, AGREES, WRONG),
        numerical=numerical.clone(),
        step=torch.full_like(numerical, eps),
        left=nan.clone(),
        right=nan.clone(),
        finest=nan.clone(),
    )
    disagreeing = torch.nonzero(~agrees).flatten()
    if disagreeing.numel() == 0 or not refine:
        return resolution
    base = losses(disagreeing[:1], torch.zeros(1, dtype=numerical.dtype, device=numerical.device))
    record = _refine(losses, analytical, allowed, base, resolution, _Pending(disagreeing, numerical[disagreeing]), eps)
    undecided = disagreeing[resolution.status[disagreeing] == WRONG]
    kinks = undecided[record.kink_like[undecided]]
    resolution.status[kinks] = NONDIFFERENTIABLE
    split = undecided[~record.kink_like[undecided] & record.split[undecided]]
    if analytical_at is not None and split.numel():
        both_sides = _both_sides(losses, analytical_at, split, resolution.finest[split], atol=atol, rtol=rtol)
        resolution.status[split[both_sides]] = NONDIFFERENTIABLE
    return resolution


@dataclass
class _Record:
    """Per entry (full length): what its refinement showed."""

    kink_like: Tensor  # every usable step agreed or showed a kink signature, at least one kink
    split: Tensor  # the one-sided differences disagreed with each other at the finest usable step


def _refine(
    losses: Losses,
    analytical: Tensor,
    allowed: Tensor,
    base: Tensor,
    resolution: Resolution,
    state: _Pending,
    eps: float,
) -> _Record:
    r"""Re-evaluate the entries of ``state`` at :math:`\varepsilon/4^k`; mark the refined ones in ``resolution``."""
    flags = torch.zeros_like(resolution.status, dtype=torch.bool)
    record = _Record(kink_like=flags.clone(), split=flags.clone())
    step = eps
    for _ in range(_MAX_REFINEMENTS):
        step /= _STEP_RATIO
        pending = state.entries
        a, tol = analytical[pending], allowed[pending]
        shifts = torch.full((pending.numel(),), step, dtype=analytical.dtype, device=analytical.device)
        values = losses(torch.cat([pending, pending]), torch.cat([shifts, -shifts])).reshape(2, -1)
        rounding = _rounding(torch.cat([values, base.expand(1, pending.numel())]), shifts)
        usable = rounding <= 0.5 * tol  # finer steps only round worse: an unusable entry is finished
        plus, minus = values[0], values[1]
        central = (plus - minus) / (2 * step)
        right, left = (plus - base) / step, (base - minus) / step
        agree = usable & ((central - a).abs() <= tol)
        kink = usable & _kink(left, right, a, tol, rounding)
        seen = pending[usable]
        resolution.left[seen], resolution.right[seen], resolution.finest[seen] = left[usable], right[usable], step
        record.split[seen] = ((right - left).abs() > tol + 2 * rounding)[usable]
        confirmed = agree & state.agreed
        refined = pending[confirmed]
        resolution.status[refined], resolution.numerical[refined] = REFINED, central[confirmed]
        resolution.step[refined] = step
        # A central difference that no longer moves and still disagrees will not agree at a smaller step either.
        settled = usable & ~agree & ((central - state.central).abs() <= _SETTLED * tol)
        state.update(usable, agree, kink, central)
        record.kink_like[pending] = state.kink_like
        state.keep(usable & ~settled & ~confirmed)
        if state.entries.numel() == 0:
            break
    return record


def _both_sides(
    losses: Losses, analytical_at: Losses, entries: Tensor, steps: Tensor, *, atol: float, rtol: float
) -> Tensor:
    r"""Whether the gradient is right just beside the kink, on both sides (several kinks at one point).

    When several pieces of the loss kink at the same point (e.g. the ``max`` readouts of several samples tie at
    once), autograd's value is a sum of one-sided choices that need not lie between the loss's one-sided
    differences. The gradient is then checked where the loss is smooth: at :math:`w \pm 2h` (``h`` the entry's
    finest step) the analytical value must agree with the central difference of step :math:`h/2`, whose stencil
    stays clear of the kink.
    """
    ok = torch.ones(entries.numel(), dtype=torch.bool, device=entries.device)
    for sign in (1.0, -1.0):
        centre = sign * 2 * steps
        a = analytical_at(entries, centre)
        values = losses(torch.cat([entries, entries]), torch.cat([centre + steps / 2, centre - steps / 2]))
        values = values.reshape(2, -1)
        central = (values[0] - values[1]) / steps
        rounding = _rounding(values, steps / 2)
        ok &= (central - a).abs() <= atol + rtol * a.abs() + rounding
    return ok


class _Pending:
    """The entries still being refined, with what their steps so far showed."""

    def __init__(self, entries: Tensor, central: Tensor) -> None:
        self.entries = entries
        self.central = central  # at the last step
        self.agreed = torch.zeros(entries.numel(), dtype=torch.bool, device=entries.device)  # at the last step
        self.kink_seen = torch.zeros_like(self.agreed)
        self.explained = torch.ones_like(self.agreed)  # every usable step: agreement or a kink signature

    @property
    def kink_like(self) -> Tensor:
        """Entries whose every step agreed or showed a kink, with at least one kink."""
        return self.explained & self.kink_seen

    def update(self, usable: Tensor, agree: Tensor, kink: Tensor, central: Tensor) -> None:
        """Record one step's outcome (entries where the step was not usable keep their record)."""
        self.kink_seen |= kink
        self.explained &= ~usable | agree | kink
        self.agreed = agree
        self.central = torch.where(usable, central, self.central)

    def keep(self, mask: Tensor) -> None:
        """Keep only the entries in ``mask``."""
        self.entries, self.agreed, self.central = self.entries[mask], self.agreed[mask], self.central[mask]
        self.kink_seen, self.explained = self.kink_seen[mask], self.explained[mask]
