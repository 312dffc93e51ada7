"""scikit-learn's 8x8 handwritten digits (1797 samples, 10 classes, 64 pixels) as spike trains.

The images ship with scikit-learn (:func:`sklearn.datasets.load_digits`), so nothing is downloaded. Pixel
intensities ``0..16`` are normalised to ``[0, 1]``; these 64 values are the static twin. Spikes are either

* ``"latency"``: one spike per lit pixel, brighter pixels earlier (``t = min(floor((1 - v) T), T - 1)``), black
  pixels silent; or
* ``"rate"``: Bernoulli spikes with probability ``v * max_prob`` per step, drawn from a generator seeded by ``seed``.

With ``image=True`` every step is the 8x8 image with one channel (spikes ``[N, T, 1, 8, 8]``, features
``[N, 1, 8, 8]``), the input of convolutional networks; otherwise the 64 pixels are 64 channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from evoexp.arguments import checked_by
from evoexp.data.dataset import (
    DatasetSplits,
    SpikeDataset,
    check_int,
    check_seed,
    check_spike_tensor,
    check_split,
    register_dataset,
    split_dataset,
)
from evoexp.data.encoding import latency_encode, rate_encode

__all__ = ["DIGITS_MAX_INTENSITY", "DIGITS_SAMPLES", "check_digits", "make_digits"]

DIGITS_SAMPLES = 1797
"""Images in scikit-learn's digits."""
DIGITS_MAX_INTENSITY = 16.0
"""Largest pixel value in scikit-learn's digits images."""
_IMAGE = (1, 8, 8)


def check_digits(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`make_digits` (:func:`~evoexp.arguments.checked_by`).

    Raises:
        ValueError: The first invalid argument (the message starts with its name).
    """
    if args["encoding"] not in ("latency", "rate"):
        raise ValueError(f"encoding must be 'latency' or 'rate', got {args['encoding']!r}")
    check_int(args["time_steps"], name="time_steps")
    if not 0.0 < args["max_prob"] <= 1.0:
        raise ValueError(f"max_prob must be in (0, 1], got {args['max_prob']!r}")
    if not isinstance(args["image"], bool):
        raise ValueError(f"image must be true or false, got {args['image']!r}")
    check_seed(args["seed"])
    check_split(args["split"], nonempty=True)
    check_spike_tensor(
        samples=DIGITS_SAMPLES,
        time_steps=args["time_steps"],
        channels=64,
        what=f"{DIGITS_SAMPLES} samples × time_steps={args['time_steps']} × 64 channels",
    )


@register_dataset("digits")
@checked_by(check_digits)
def make_digits(
    *,
    encoding: Literal["latency", "rate"] = "latency",
    time_steps: int = 50,
    max_prob: float = 1.0,
    image: bool = False,
    seed: int = 0,
    split: Sequence[float] = (0.8, 0.1, 0.1),
) -> DatasetSplits:
    """Load scikit-learn's digits and encode them as spikes.

    Args:
        encoding: ``"latency"`` or ``"rate"`` (see the module docstring).
        time_steps: Number of time steps ``T``.
        max_prob: Rate code only: spike probability per step of a full-intensity pixel, in ``(0, 1]``.
        image: Image-shaped samples ``[1, 8, 8]`` per step (for convolutional networks) instead of 64 channels.
        seed: Seed of the rate code's draws and of the split.
        split: Train/val/test fractions (stratified).

    Returns:
        :class:`DatasetSplits` named ``"digits"``: spikes ``[N, T, 64]``, features ``[N, 64]`` in ``[0, 1]``
        (``image``: ``[N, T, 1, 8, 8]`` and ``[N, 1, 8, 8]``).

    Raises:
        ValueError: Naming the first invalid parameter.
    """
    from sklearn.datasets import load_digits  # imported lazily: scikit-learn is slow to import

    bunch = load_digits()
    features = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32) / DIGITS_MAX_INTENSITY)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    encode_seq, split_seq = np.random.SeedSequence(int(seed)).spawn(2)
    if encoding == "latency":
        spikes = latency_encode(features, time_steps, high_first=True, threshold=0.0)
    else:
        generator = torch.Generator().manual_seed(int(encode_seq.generate_state(1)[0]))
        spikes = rate_encode(features, time_steps, max_prob=max_prob, generator=generator)
    if image:
        spikes, features = spikes.reshape(*spikes.shape[:2], *_IMAGE), features.reshape(-1, *_IMAGE)
    full = SpikeDataset(spikes, features, labels, 10, "digits")
    return split_dataset(full, split, seed=int(split_seq.generate_state(1)[0]))
