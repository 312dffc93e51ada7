r"""N-MNIST as Tonic keeps it on local disk, read without Tonic (nothing is downloaded), for ``dataset=custom``.

``tonic.datasets.NMNIST(save_to=ROOT)`` downloads and unpacks the recordings of Orchard et al. (2015) into
``ROOT/NMNIST/Train/<digit>/<id>.bin`` and ``ROOT/NMNIST/Test/<digit>/<id>.bin``. Each file is a list of 40-bit
events: byte 0 is ``x``, byte 1 ``y``, bit 7 of byte 2 the polarity ``p`` and the remaining 23 bits (byte 2 bits 0-6,
bytes 3 and 4) the time ``t`` in microseconds, on the 34 x 34 sensor. :func:`read_events` returns them in Tonic's
``xytp`` structured-array form; :func:`to_frames` bins them as Tonic's ``ToFrame(sensor_size=(34, 34, 2),
n_time_bins=T)`` does, into ``[T, 2, 34, 34]`` event counts (polarity, y, x); :func:`nmnist` builds evoexp's splits::

    python -m evoexp dataset=custom dataset._target_=evoexp.examples.tonic_nmnist.nmnist +dataset.root=/data/tonic \\
        model=snntorch_conv ...

Training samples of ``Train`` are split into training and validation (stratified, seeded); ``Test`` is the test split.
The ANN's static features are the event counts of the whole recording, ``[2, 34, 34]``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from evoexp.data import DatasetSplits, stratified_split

__all__ = ["EVENT_DTYPE", "SENSOR_SIZE", "find_recordings", "nmnist", "read_events", "to_frames"]

SENSOR_SIZE = (34, 34, 2)
"""Width, height and polarities of the N-MNIST sensor (Tonic's ``NMNIST.sensor_size``)."""

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
"""Tonic's ``xytp`` event record."""


def read_events(path: str | Path) -> np.ndarray:
    """The events of one N-MNIST ``.bin`` file as a structured array with fields ``x``, ``y``, ``t``, ``p``.

    Raises:
        ValueError: The file is not a list of 5-byte events, or an event lies outside the sensor.
    """
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise ValueError(f"root: {path} is not an N-MNIST event file ({raw.size} bytes, not a multiple of 5)")
    words = raw.reshape(-1, 5).astype(np.int64)
    events = np.empty(len(words), dtype=EVENT_DTYPE)
    events["x"], events["y"] = words[:, 0], words[:, 1]
    events["p"] = words[:, 2] >> 7
    events["t"] = ((words[:, 2] & 0x7F) << 16) | (words[:, 3] << 8) | words[:, 4]
    width, height, _ = SENSOR_SIZE
    if len(events) and (events["x"].max() >= width or events["y"].max() >= height):
        raise ValueError(f"root: {path} has events outside the {width}x{height} sensor")
    return events


def to_frames(events: np.ndarray, n_time_bins: int) -> np.ndarray:
    """Event counts ``[n_time_bins, 2, 34, 34]`` (bin, polarity, y, x) in equal bins from the first event to the last.

    Raises:
        ValueError: ``n_time_bins`` < 1.
    """
    if n_time_bins < 1:
        raise ValueError(f"time_steps must be an int >= 1, got {n_time_bins!r}")
    width, height, polarities = SENSOR_SIZE
    frames = np.zeros((n_time_bins, polarities, height, width), dtype=np.float32)
    if len(events) == 0:
        return frames
    t = events["t"] - events["t"].min()
    span = int(t.max()) + 1
    bins = np.minimum(t * n_time_bins // span, n_time_bins - 1)
    np.add.at(frames, (bins, events["p"].astype(np.int64), events["y"], events["x"]), 1.0)
    return frames


def find_recordings(root: str | Path, part: str) -> list[tuple[Path, int]]:
    """``(file, digit)`` of every recording of ``part`` (``"Train"`` or ``"Test"``), in file-name order.

    Looks for ``root/NMNIST/<part>`` (Tonic's layout), then ``root/<part>``.

    Raises:
        ValueError: Neither folder exists or holds recordings.
    """
    for folder in (Path(root) / "NMNIST" / part, Path(root) / part):
        if folder.is_dir():
            found = [(file, int(file.parent.name)) for file in sorted(folder.glob("[0-9]/*.bin"))]
            if found:
                return found
    raise ValueError(
        f"root: {root} holds no N-MNIST {part} recordings (Tonic's layout: {root}/NMNIST/{part}/<digit>/<id>.bin); "
        "evoexp never downloads: get them with tonic.datasets.NMNIST(save_to=...)"
    )


def _first_per_digit(files: Sequence[tuple[Path, int]], n: int) -> list[tuple[Path, int]]:
    """The first ``n`` recordings of each digit, in the order of ``files``."""
    counts: Counter[int] = Counter()
    kept = []
    for file, digit in files:
        if counts[digit] < n:
            kept.append((file, digit))
            counts[digit] += 1
    return kept


def _load(files: Sequence[tuple[Path, int]], time_steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    frames = np.stack([to_frames(read_events(file), time_steps) for file, _ in files])
    spikes = torch.from_numpy(frames)
    return spikes, torch.tensor([digit for _, digit in files]), spikes.sum(dim=1)


def nmnist(
    root: str,
    *,
    time_steps: int = 20,
    max_per_class: int | None = 100,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetSplits:
    """N-MNIST from Tonic's folders under ``root`` as evoexp's splits (see the module docstring).

    Args:
        root: The folder Tonic saved to (``save_to``), holding ``NMNIST/Train`` and ``NMNIST/Test``.
        time_steps: Time bins ``T`` of every recording.
        max_per_class: Recordings per digit read from each part (the first ones by file name); None reads all
            (60,000 training recordings: about 11 GB of float32 frames at ``T = 20``).
        val_fraction: Fraction of the training recordings, per digit, held out for validation, in (0, 1).
        seed: Seed of the training/validation split.

    Returns:
        Splits named ``"nmnist"``: spikes ``[N, T, 2, 34, 34]`` (event counts), features ``[N, 2, 34, 34]``.

    Raises:
        ValueError: A missing folder or file, a file that is not N-MNIST, or an invalid argument; the message starts
            with the argument's name.
    """
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"max_per_class must be an int >= 1 or null, got {max_per_class!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    parts = {}
    for part in ("Train", "Test"):
        files = find_recordings(root, part)
        parts[part] = _load(files if max_per_class is None else _first_per_digit(files, max_per_class), time_steps)
    spikes, labels, features = parts["Train"]
    train, val, _ = stratified_split(labels, (1.0 - val_fraction, val_fraction, 0.0), seed=seed)
    return DatasetSplits.from_tensors(
        (spikes[train], labels[train], features[train]),
        (spikes[val], labels[val], features[val]),
        parts["Test"],
        n_classes=10,
        name="nmnist",
    )
