r"""The statistics behind every table, figure and report number: sample summaries and the interval of a mean.

One definition of uncertainty is used everywhere in evoexp's analysis (tables, figures, captions): the **percentile
bootstrap interval of the mean over seeds** (:func:`scipy.stats.bootstrap`, ``method="percentile"``,
:data:`N_RESAMPLES` resamples, a fixed seed so that a table is reproducible). A percentile interval of the mean lies
between the smallest and the largest observed value, so it never leaves the range of a bounded metric: an accuracy
band stays in [0, 1], a loss band above 0, a cosine band in [-1, 1]. With the three seeds of a typical sweep it is
wide and close to the range of the seeds, which is what three seeds can tell; figures therefore also show the seeds
as points.

:func:`describe` is the one mean/std summariser (numpy's reductions), used by the analysis and by the verification
results (benchmark means over seeds, gradient-norm statistics over batches). The module imports numpy only (scipy
when an interval is computed), so that verifiers can use it without loading the analysis stack.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "INTERVAL_DESCRIPTION",
    "N_RESAMPLES",
    "Description",
    "check_confidence",
    "describe",
    "mean_intervals",
]

N_RESAMPLES = 9999
"""Bootstrap resamples per interval."""
SEED = 0
"""Seed of the bootstrap resampling (intervals are reproducible)."""
INTERVAL_DESCRIPTION = "percentile-bootstrap confidence interval of the mean over seeds"
"""How captions, headers and legends name the interval (prefixed with its coverage, e.g. "95% ")."""
_CHUNK_VALUES = 1 << 22  # resampled values held in memory at once


@dataclass(frozen=True)
class Description:
    """Summary of one sample.

    Attributes:
        mean: Arithmetic mean (NaN for an empty sample).
        std: Standard deviation with the requested ``ddof`` (NaN when ``n <= ddof``).
        n: Number of values used.
        min: Smallest value (NaN for an empty sample).
        max: Largest value (NaN for an empty sample).
    """

    mean: float
    std: float
    n: int
    min: float
    max: float


def describe(values: Iterable[float], *, ddof: int = 1, finite_only: bool = True) -> Description:
    """Mean, standard deviation, count, minimum and maximum of a sample.

    Args:
        values: The sample.
        ddof: Delta degrees of freedom of the standard deviation (1: sample std, 0: population std).
        finite_only: Drop NaN and ±Inf first (a diverged run has no value); with False they propagate as in
            IEEE arithmetic (a NaN makes every statistic NaN, an Inf makes the mean and the extreme infinite).

    Returns:
        The :class:`Description`.
    """
    x = np.asarray(list(values), dtype=np.float64)
    if finite_only:
        x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Description(math.nan, math.nan, 0, math.nan, math.nan)
    with np.errstate(invalid="ignore"):  # inf - inf in the std of an infinite sample is NaN, as it should be
        return Description(
            mean=float(x.mean()),
            std=float(x.std(ddof=ddof)) if n > ddof else math.nan,
            n=n,
            min=float(x.min()),
            max=float(x.max()),
        )


def check_confidence(confidence: float) -> None:
    """Raise ``ValueError`` unless ``confidence`` lies in (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")


def _bootstrap(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the mean of each row of ``samples`` ``[G, n]`` (n >= 2).

    Every call starts a generator from :data:`SEED`; scipy draws one set of resampling indices for all rows of a
    call, so a row's interval depends on its own values only, not on the rows bootstrapped with it.
    """
    from scipy import stats

    low, high = np.empty(len(samples)), np.empty(len(samples))
    rows = max(1, _CHUNK_VALUES // (N_RESAMPLES * samples.shape[1]))
    for start in range(0, len(samples), rows):
        chunk = samples[start : start + rows]
        spread = np.ptp(chunk, axis=1) > 0
        low[start : start + rows] = chunk[:, 0]  # a constant sample: the interval is the value itself
        high[start : start + rows] = chunk[:, 0]
        if spread.any():
            result = stats.bootstrap(
                (chunk[spread],),
                np.mean,
                axis=-1,
                vectorized=True,
                n_resamples=N_RESAMPLES,
                confidence_level=confidence,
                method="percentile",
                rng=np.random.default_rng(SEED),
            )
            low[start : start + rows][spread] = result.confidence_interval.low
            high[start : start + rows][spread] = result.confidence_interval.high
    return low, high


def mean_intervals(samples: Sequence[Iterable[float]], *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap confidence interval of the mean of each sample (see the module docstring).

    Non-finite values are dropped first. Samples of equal size are bootstrapped together in one vectorised call,
    so aggregating a few thousand curve points stays fast.

    Args:
        samples: The samples (e.g. one per configuration, each holding a metric's value for every seed).
        confidence: Coverage of the intervals, in (0, 1).

    Returns:
        ``(low, high)``, arrays with one bound per sample: NaN for fewer than two values, ``(x, x)`` for a sample
        whose values all equal ``x``; always within ``[min, max]`` of the sample.

    Raises:
        ValueError: If ``confidence`` is outside (0, 1).
    """
    check_confidence(confidence)
    arrays = [np.asarray(list(s), dtype=np.float64) for s in samples]
    arrays = [a[np.isfinite(a)] for a in arrays]
    low, high = np.full(len(arrays), math.nan), np.full(len(arrays), math.nan)
    sizes = np.array([a.size for a in arrays], dtype=np.int64)
    for size in sorted(set(sizes[sizes >= 2].tolist())):
        index = np.flatnonzero(sizes == size)
        group_low, group_high = _bootstrap(np.stack([arrays[i] for i in index]), confidence)
        low[index], high[index] = group_low, group_high
    return low, high
