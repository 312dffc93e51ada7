r"""Randman: random smooth manifolds as a spike-timing classification task (Zenke & Vogels 2021).

Each class is a random smooth manifold of intrinsic dimension :math:`D` (``manifold_dim``) embedded in
:math:`C` dimensions (``n_channels``). Embedding coordinate :math:`i` is a product over intrinsic coordinates of
random 1-d Fourier series with power-law spectral falloff :math:`\alpha`:

.. math::

    y_i(x) = \prod_{d=1}^{D} \sum_{k=0}^{K-1} \frac{a_{idk}}{(k+1)^{\alpha}}
             \sin\bigl(2\pi\,(k\,b_{idk}\,x_d + c_{idk})\bigr),
    \qquad a, b, c \sim \mathcal U(0, 1),\; a_{id0} = 0,

with :math:`x \sim \mathcal U([0,1]^D)` and :math:`K = \min(\lceil 10^{3/\alpha}\rceil, 1000)` frequencies (the
cut-off where :math:`(k+1)^{-\alpha}` drops below ``1e-3``). Larger :math:`\alpha` gives smoother manifolds.
Per class and channel the samples are min-max standardised to :math:`u = (y - \min y)/(\max y - \min y + 10^{-7})
\in [0, 1)`, and each channel emits one spike at latency :math:`\min(\lfloor f\,u\,T\rfloor, T-1)`, where the
spike window :math:`f` (``step_frac``, default 1) is the fraction of the :math:`T` steps, from the start, that holds
spikes: the reference code of Zenke & Vogels (2021) uses :math:`f = 0.5`, so every spike falls in the first half
and the network sees the second half in silence, time for its readout to integrate the answer. With
``spikes_per_unit = m`` every class has ``m`` independent manifolds evaluated at the same intrinsic point, giving
each channel exactly ``m`` spikes; two that land in the same time bin are counted (the bin holds 2), so the spike
count per channel is always exactly ``m``. The information is in spike timing only: every sample has the same count.

The static twin (ANN input) is the standardised coordinates ``u``, shape ``[N, m * C]`` (block ``j`` holds
manifold ``j``), i.e. exactly the values whose latencies make up the spikes.

Randomness is a :class:`numpy.random.SeedSequence` tree rooted at ``seed``: class ``k``'s manifolds depend only on
``(seed, k, n_channels, manifold_dim, alpha, spikes_per_unit)``, its samples on ``(seed, k)``, the split on ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from evoexp.arguments import checked_by
from evoexp.data.dataset import (
    DatasetSplits,
    SpikeDataset,
    check_generated,
    check_int,
    register_dataset,
    split_dataset,
)
from evoexp.data.encoding import latency_encode

__all__ = ["RandomManifold", "check_randman", "make_randman", "n_frequencies", "standardize"]

PRECISION = 1e-3
"""Spectral cut-off: frequencies whose weight :math:`(k+1)^{-\\alpha}` is below this are dropped."""
MAX_FREQUENCIES = 1000
"""Upper bound on the number of frequencies per 1-d random function."""
STANDARDIZE_EPS = 1e-7
"""Added to the range in :func:`standardize`, so standardised values stay below 1."""
_CHUNK_ELEMENTS = 1 << 22


def n_frequencies(alpha: float) -> int:
    r"""Number of Fourier terms :math:`K = \min(\lceil \mathrm{prec}^{-1/\alpha}\rceil, 1000)` for falloff ``alpha``.

    Args:
        alpha: Spectral falloff exponent (> 0).

    Returns:
        The number of frequencies ``K``.
    """
    return int(min(math.ceil(PRECISION ** (-1.0 / alpha)), MAX_FREQUENCIES))


def standardize(values: Tensor) -> Tensor:
    """Min-max standardise each column to ``[0, 1)``: ``(v - min) / (max - min + 1e-7)``.

    Args:
        values: Tensor ``[S, C]``.

    Returns:
        Tensor of the same shape with entries in ``[0, 1)``.
    """
    low = values.amin(dim=0, keepdim=True)
    high = values.amax(dim=0, keepdim=True)
    return (values - low) / (high - low + STANDARDIZE_EPS)


@dataclass(frozen=True, eq=False)
class RandomManifold:
    r"""One random smooth manifold :math:`y: [0,1]^D \to \mathbb R^C` (see the module docstring).

    Attributes:
        params: Float64 tensor ``[C, D, 3, K]`` of the uniform parameters :math:`(a, b, c)` of every 1-d random
            function.
        alpha: Spectral falloff exponent.
    """

    params: Tensor
    alpha: float

    @classmethod
    def random(cls, n_channels: int, manifold_dim: int, alpha: float, rng: np.random.Generator) -> RandomManifold:
        """Draw a manifold's parameters from ``rng``.

        Args:
            n_channels: Embedding dimension ``C``.
            manifold_dim: Intrinsic dimension ``D``.
            alpha: Spectral falloff exponent (> 0).
            rng: Source of randomness.

        Returns:
            The manifold, with the constant (``k = 0``) amplitude set to zero.
        """
        params = torch.from_numpy(rng.random((n_channels, manifold_dim, 3, n_frequencies(alpha))))
        params[:, :, 0, 0] = 0.0
        return cls(params=params, alpha=float(alpha))

    @property
    def n_channels(self) -> int:
        """Embedding dimension ``C``."""
        return int(self.params.shape[0])

    @property
    def manifold_dim(self) -> int:
        """Intrinsic dimension ``D``."""
        return int(self.params.shape[1])

    def __call__(self, x: Tensor) -> Tensor:
        """Evaluate the embedding of intrinsic points (in float64).

        Args:
            x: Tensor ``[S, D]`` of intrinsic coordinates in ``[0, 1]``.

        Returns:
            Float64 tensor ``[S, C]`` of embedding coordinates.

        Raises:
            ValueError: If ``x`` does not have shape ``[S, D]``.
        """
        if x.dim() != 2 or x.shape[1] != self.manifold_dim:
            raise ValueError(f"x must have shape [S, {self.manifold_dim}], got {tuple(x.shape)}")
        x = x.to(torch.float64)
        n_freq = self.params.shape[-1]
        k = torch.arange(n_freq, dtype=torch.float64)
        weight = (k + 1.0) ** (-self.alpha)
        out = torch.ones(x.shape[0], self.n_channels, dtype=torch.float64)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, x.shape[0] * n_freq))
        for start in range(0, self.n_channels, chunk):
            p = self.params[start : start + chunk]  # [c, D, 3, K]
            for d in range(self.manifold_dim):
                amp = p[:, d, 0] * weight  # [c, K]
                freq = p[:, d, 1] * k  # [c, K]
                phase = torch.addcmul(p[None, :, d, 2], x[:, d, None, None], freq[None])  # [S, c, K]
                phase.mul_(2.0 * math.pi).sin_()
                out[:, start : start + chunk] *= torch.einsum("sck,ck->sc", phase, amp)
        return out


def check_randman(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`make_randman` (:func:`~evoexp.arguments.checked_by`).

    Raises:
        ValueError: The first invalid argument (the message starts with its name).
    """
    check_generated(args)
    check_int(args["manifold_dim"], name="manifold_dim")
    alpha = args["alpha"]
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    check_int(args["spikes_per_unit"], name="spikes_per_unit")
    step_frac = args["step_frac"]
    if isinstance(step_frac, bool) or not (isinstance(step_frac, (int, float)) and 0.0 < step_frac <= 1.0):
        raise ValueError(f"step_frac must be a number in (0, 1], got {step_frac!r}")


@register_dataset("randman")
@checked_by(check_randman)
def make_randman(
    *,
    n_classes: int = 10,
    n_channels: int = 20,
    manifold_dim: int = 1,
    alpha: float = 1.0,
    samples_per_class: int = 1000,
    time_steps: int = 100,
    spikes_per_unit: int = 1,
    step_frac: float = 1.0,
    seed: int = 0,
    split: Sequence[float] = (0.8, 0.1, 0.1),
) -> DatasetSplits:
    """Generate a Randman spike-latency classification dataset (see the module docstring).

    Args:
        n_classes: Number of classes (one manifold family each, >= 2).
        n_channels: Embedding dimension = number of input channels ``C``.
        manifold_dim: Intrinsic manifold dimension ``D``.
        alpha: Spectral falloff exponent (> 0); larger is smoother.
        samples_per_class: Samples drawn per class.
        time_steps: Number of time steps ``T``.
        spikes_per_unit: Spikes per channel ``m`` (independent manifolds per class).
        step_frac: Fraction of the time steps, from the start, that holds the spikes, in ``(0, 1]``; a coordinate
            ``u`` fires at step ``min(floor(step_frac * u * T), T - 1)``.
        seed: Seed of the whole generation and the split.
        split: Train/val/test fractions (stratified).

    Returns:
        :class:`DatasetSplits` named ``"randman"``: spikes ``[N, T, C]`` with exactly ``m`` spikes per channel,
        features ``[N, m*C]`` in ``[0, 1)``.

    Raises:
        ValueError: Naming the first invalid parameter.
    """
    *class_seqs, split_seq = np.random.SeedSequence(int(seed)).spawn(n_classes + 1)
    spikes, features, labels = [], [], []
    for label, class_seq in enumerate(class_seqs):
        manifold_seq, sample_seq = class_seq.spawn(2)
        manifold_rng = np.random.default_rng(manifold_seq)
        manifolds = [
            RandomManifold.random(n_channels, manifold_dim, alpha, manifold_rng) for _ in range(spikes_per_unit)
        ]
        x = torch.from_numpy(np.random.default_rng(sample_seq).random((samples_per_class, manifold_dim)))
        blocks = [standardize(manifold(x)).float() for manifold in manifolds]
        spikes.append(torch.stack([latency_encode(b * step_frac, time_steps) for b in blocks]).sum(dim=0))
        features.append(torch.cat(blocks, dim=1))
        labels.append(torch.full((samples_per_class,), label, dtype=torch.long))
    full = SpikeDataset(torch.cat(spikes), torch.cat(features), torch.cat(labels), n_classes, "randman")
    return split_dataset(full, split, seed=int(split_seq.generate_state(1)[0]))
