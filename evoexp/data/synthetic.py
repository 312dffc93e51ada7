r"""A tiny synthetic task for fast tests: noisy class prototypes, latency or rate coded.

Class :math:`k` has a prototype :math:`p_k \sim \mathcal U([0,1]^C)`; a sample of class :math:`k` is
:math:`v = \mathrm{clip}(p_k + \sigma\,\varepsilon, 0, 1)` with :math:`\varepsilon \sim \mathcal N(0, I)` and
:math:`\sigma` = ``noise``. The static twin is :math:`v`; the spikes are its latency code (one spike per channel at
:math:`\min(\lfloor v\,T\rfloor, T-1)`) or its Bernoulli rate code (probability :math:`v\,p_{\max}` per step).
With the defaults a small SNN or MLP learns it in a few epochs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from evoexp.arguments import checked_by
from evoexp.data.dataset import (
    DatasetSplits,
    SpikeDataset,
    check_generated,
    register_dataset,
    split_dataset,
)
from evoexp.data.encoding import latency_encode, rate_encode

__all__ = ["check_synthetic", "make_synthetic"]


def check_synthetic(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`make_synthetic` (:func:`~evoexp.arguments.checked_by`).

    Raises:
        ValueError: The first invalid argument (the message starts with its name).
    """
    check_generated(args)
    if args["coding"] not in ("latency", "rate"):
        raise ValueError(f"coding must be 'latency' or 'rate', got {args['coding']!r}")
    noise = args["noise"]
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    if not 0.0 < args["max_prob"] <= 1.0:
        raise ValueError(f"max_prob must be in (0, 1], got {args['max_prob']!r}")


@register_dataset("synthetic")
@checked_by(check_synthetic)
def make_synthetic(
    *,
    n_classes: int = 2,
    n_channels: int = 10,
    samples_per_class: int = 64,
    time_steps: int = 20,
    coding: Literal["latency", "rate"] = "latency",
    noise: float = 0.1,
    max_prob: float = 1.0,
    seed: int = 0,
    split: Sequence[float] = (0.8, 0.1, 0.1),
) -> DatasetSplits:
    """Generate the synthetic prototype task (see the module docstring).

    Args:
        n_classes: Number of classes (>= 2).
        n_channels: Number of channels ``C`` (= number of features).
        samples_per_class: Samples per class.
        time_steps: Number of time steps ``T``.
        coding: ``"latency"`` or ``"rate"``.
        noise: Standard deviation of the Gaussian jitter around the prototypes (>= 0).
        max_prob: Rate code only: spike probability per step of a value of 1, in ``(0, 1]``.
        seed: Seed of prototypes, samples, spikes and split.
        split: Train/val/test fractions (stratified).

    Returns:
        :class:`DatasetSplits` named ``"synthetic"``: spikes ``[N, T, C]``, features ``[N, C]`` in ``[0, 1]``.

    Raises:
        ValueError: Naming the first invalid parameter.
    """
    data_seq, encode_seq, split_seq = np.random.SeedSequence(int(seed)).spawn(3)
    rng = np.random.default_rng(data_seq)
    prototypes = rng.random((n_classes, n_channels))
    labels_np = np.repeat(np.arange(n_classes), samples_per_class)
    values = np.clip(prototypes[labels_np] + noise * rng.standard_normal((labels_np.size, n_channels)), 0.0, 1.0)
    features = torch.from_numpy(values.astype(np.float32))
    if coding == "latency":
        spikes = latency_encode(features, time_steps)
    else:
        generator = torch.Generator().manual_seed(int(encode_seq.generate_state(1)[0]))
        spikes = rate_encode(features, time_steps, max_prob=max_prob, generator=generator)
    full = SpikeDataset(spikes, features, torch.from_numpy(labels_np.astype(np.int64)), n_classes, "synthetic")
    return split_dataset(full, split, seed=int(split_seq.generate_state(1)[0]))
