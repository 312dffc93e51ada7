r"""Spike encoders: turn static values in ``[0, 1]`` into spike trains ``[..., T, C]``.

Two codes are provided:

* **Latency** (time-to-first-spike): every value emits at most one spike, at step
  :math:`t = \min(\lfloor u\,T \rfloor, T - 1)` with :math:`u = v` (low values fire early, the Randman
  convention of Zenke & Vogels 2021) or :math:`u = 1 - v` (``high_first=True``: bright pixels fire early).
* **Rate** (Bernoulli): at every step a value fires independently with probability :math:`p = v\cdot p_{\max}`.

Both take values of shape ``[..., C]`` and return float tensors of shape ``[..., T, C]`` holding 0/1 spikes.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_unit_interval", "latency_encode", "latency_steps", "rate_encode"]


def check_unit_interval(values: Tensor, *, name: str = "values") -> None:
    """Raise ``ValueError`` unless every entry of ``values`` is finite and in ``[0, 1]``.

    Args:
        values: Tensor to check.
        name: Parameter name used in the error message.

    Raises:
        ValueError: If ``values`` is not floating point or has an entry outside ``[0, 1]`` (NaN included).
    """
    if not torch.is_floating_point(values):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {values.dtype}")
    if values.numel() and not bool(((values >= 0) & (values <= 1)).all()):
        low, high = values.min().item(), values.max().item()
        raise ValueError(f"{name} must lie in [0, 1] (finite), got min {low}, max {high}")


def _check_time_steps(time_steps: int) -> None:
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise ValueError(f"time_steps must be a positive int, got {time_steps!r}")


def latency_steps(values: Tensor, time_steps: int, *, high_first: bool = False) -> Tensor:
    r"""Time step at which each value fires under the latency code.

    :math:`t = \min(\lfloor u\,T \rfloor, T-1)` with :math:`u = v`, or :math:`u = 1 - v` when ``high_first``.

    Args:
        values: Values in ``[0, 1]``, any shape.
        time_steps: Number of time steps ``T`` (>= 1).
        high_first: If True, larger values fire earlier.

    Returns:
        Long tensor of the same shape as ``values`` with entries in ``[0, T-1]``.

    Raises:
        ValueError: If ``values`` leaves ``[0, 1]`` or ``time_steps`` is not a positive int.
    """
    _check_time_steps(time_steps)
    check_unit_interval(values)
    u = 1.0 - values if high_first else values
    return torch.clamp(torch.floor(u * time_steps), max=time_steps - 1).long()


def latency_encode(
    values: Tensor,
    time_steps: int,
    *,
    high_first: bool = False,
    threshold: float | None = None,
) -> Tensor:
    r"""Latency (time-to-first-spike) code: one spike per value, at :func:`latency_steps`.

    Args:
        values: Values in ``[0, 1]`` of shape ``[..., C]``.
        time_steps: Number of time steps ``T`` (>= 1).
        high_first: If True, larger values fire earlier (:math:`u = 1 - v`).
        threshold: If given, values ``<= threshold`` stay silent (e.g. ``0.0`` silences black pixels).

    Returns:
        Tensor ``[..., T, C]`` with the dtype of ``values`` (float), exactly one 1 per value along the time axis
        (none for silenced values).

    Raises:
        ValueError: If ``values`` has no channel axis, leaves ``[0, 1]``, or ``time_steps`` is invalid.
    """
    if values.dim() < 1:
        raise ValueError("values must have at least one (channel) dimension")
    steps = latency_steps(values, time_steps, high_first=high_first)
    spikes = torch.zeros(*values.shape[:-1], time_steps, values.shape[-1], dtype=values.dtype)
    active = torch.ones_like(values, dtype=values.dtype)
    if threshold is not None:
        active = (values > threshold).to(values.dtype)
    spikes.scatter_(-2, steps.unsqueeze(-2), active.unsqueeze(-2))
    return spikes


def rate_encode(
    values: Tensor,
    time_steps: int,
    *,
    max_prob: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Bernoulli rate code: spike at each step independently with probability :math:`p = v\,p_{\max}`.

    The draw is ``torch.rand(*values.shape[:-1], T, C, generator=generator) < p`` (``p`` broadcast over time),
    so a seeded ``generator`` makes the code reproducible.

    Args:
        values: Values in ``[0, 1]`` of shape ``[..., C]``.
        time_steps: Number of time steps ``T`` (>= 1).
        max_prob: Spike probability per step of a value of 1, in ``(0, 1]``.
        generator: Random generator (CPU); ``None`` uses torch's global one.

    Returns:
        Tensor ``[..., T, C]`` of 0/1 spikes with the dtype of ``values``.

    Raises:
        ValueError: If ``values`` leaves ``[0, 1]``, ``time_steps`` is invalid or ``max_prob`` not in ``(0, 1]``.
    """
    _check_time_steps(time_steps)
    check_unit_interval(values)
    if values.dim() < 1:
        raise ValueError("values must have at least one (channel) dimension")
    if not 0.0 < max_prob <= 1.0:
        raise ValueError(f"max_prob must be in (0, 1], got {max_prob!r}")
    prob = (values * max_prob).unsqueeze(-2)
    draws = torch.rand(*values.shape[:-1], time_steps, values.shape[-1], generator=generator, dtype=values.dtype)
    return (draws < prob).to(values.dtype)
