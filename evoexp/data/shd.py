r"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC) from local HDF5 files (Cramer et al. 2020).

Nothing is downloaded: the user fetches the files (https://zenkelab.org/datasets/, ``shd_train.h5.gz``,
``shd_test.h5.gz``; SSC also has ``ssc_valid.h5.gz``) and unpacks them. Each file holds, per sample, the spikes of
700 cochlear channels as two ragged arrays plus the class label:

* ``spikes/times``: one float array of spike times per sample, in seconds;
* ``spikes/units``: one integer array of the same length per sample, the channels ``0..699``;
* ``labels``: one integer per sample, in ``[0, 20)`` (SHD) or ``[0, 35)`` (SSC).

**Binning.** ``time_steps`` bins of width :math:`\Delta = d / T` cover ``[0, duration)``: a spike at time
:math:`t` of channel :math:`c` adds 1 to ``spikes[n, k, c]`` with :math:`k = \lfloor t\,T / d \rfloor`, so a bin
holds the spike *count* (several spikes of one channel can share a bin). Spikes at :math:`t \ge d` are dropped;
how many is logged.

**ANN view.** The static twin is the same counts flattened time-major, ``features[n, k * 700 + c] =
spikes[n, k, c]``: the ANN sees exactly the SNN's input, all bins at once (``T * 700`` features).

**Splits.** The samples of ``path`` are split by ``split`` (train/val/test fractions, seeded and stratified by
class like every evoexp dataset). ``test_path`` (the official test file) and ``val_path`` (SSC's validation file)
give those splits instead; the corresponding fraction of ``split`` must then be 0. SHD's official test file holds
speakers absent from its training file, so a validation split carved from the training file measures
generalisation to known speakers only.
"""

from __future__ import annotations

import logging
import math
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from evoexp.arguments import checked_by
from evoexp.data.dataset import (
    DatasetSplits,
    SpikeDataset,
    check_int,
    check_seed,
    check_spike_tensor,
    check_split,
    register_dataset,
    stratified_split,
)

if TYPE_CHECKING:
    import h5py

__all__ = [
    "N_CHANNELS",
    "N_CLASSES",
    "SPIKE_KEYS",
    "SpikeEvents",
    "bin_events",
    "check_contents",
    "check_layout",
    "check_shd",
    "check_sources",
    "check_ssc",
    "load_spiking_audio",
    "make_shd",
    "make_ssc",
    "read_events",
]

log = logging.getLogger(__name__)

N_CHANNELS = 700
"""Cochlear channels of SHD and SSC (the range of ``spikes/units``)."""
N_CLASSES = {"shd": 20, "ssc": 35}
"""Classes of each dataset (the range of ``labels``)."""
SPIKE_KEYS = ("spikes/times", "spikes/units", "labels")
"""Datasets every file must hold, one entry per sample each."""
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class SpikeEvents:
    """The spike events of one file: per sample, spike times (seconds) and channels, and the labels.

    Attributes:
        times: Float64 array of spike times per sample.
        units: Int64 array of channels per sample (same lengths as ``times``).
        labels: Int64 array ``[N]``.
        path: The file the events come from.
    """

    times: list[np.ndarray]
    units: list[np.ndarray]
    labels: np.ndarray
    path: str

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.labels)

    def subset(self, indices: Sequence[int] | np.ndarray) -> SpikeEvents:
        """The samples at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return SpikeEvents([self.times[i] for i in idx], [self.units[i] for i in idx], self.labels[idx], self.path)


def _open(path: str | Path, key: str) -> h5py.File:
    """Open ``path`` read-only with h5py, raising a one-line ValueError naming ``key`` and the path."""
    import h5py  # imported lazily: only SHD/SSC need it

    file = Path(path).expanduser()
    if not file.exists():
        raise ValueError(f"{key}: {file}: no such file")
    if file.is_dir():
        raise ValueError(f"{key}: {file}: is a directory; give the HDF5 file itself (e.g. shd_train.h5)")
    kind = _special_kind(file.stat().st_mode)
    if kind is not None:  # opening a named pipe would wait for a writer forever
        raise ValueError(f"{key}: {file}: is a {kind}, not a regular file; give the HDF5 file itself")
    try:
        with file.open("rb") as handle:
            compressed = handle.read(2) == _GZIP_MAGIC
        if compressed:
            raise ValueError(f"{key}: {file}: is gzip-compressed; unpack it first (gunzip {file.name})")
        return h5py.File(file, "r")
    except OSError as exc:  # unreadable, or not HDF5 (h5py reports "file signature not found")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{key}: {file}: not a readable HDF5 file ({reason})") from None


def _special_kind(mode: int) -> str | None:
    """What a non-regular file is (``"named pipe"``, ``"socket"``, ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def _check_datasets(handle: h5py.File, file: str, key: str) -> int:
    """Check the SHD layout of an open file (keys, ranks, equal lengths); return the number of samples."""
    import h5py

    lengths = []
    for name in SPIKE_KEYS:
        node = handle.get(name)
        if not isinstance(node, h5py.Dataset):
            raise ValueError(
                f"{key}: {file}: not in the SHD/SSC layout: no dataset {name!r} (expected {', '.join(SPIKE_KEYS)})"
            )
        if node.ndim != 1:
            raise ValueError(f"{key}: {file}: {name} must be 1-d (one entry per sample), got shape {node.shape}")
        lengths.append(node.shape[0])
    if len(set(lengths)) != 1:
        counts = ", ".join(f"{name} {n}" for name, n in zip(SPIKE_KEYS, lengths))
        raise ValueError(f"{key}: {file}: datasets differ in length ({counts})")
    return lengths[0]


def check_layout(path: str | Path, *, key: str = "path") -> int:
    """Check that ``path`` is an HDF5 file in the SHD/SSC layout, reading only its headers.

    Args:
        path: The file.
        key: Name of the parameter (or config key) in error messages.

    Returns:
        The number of samples.

    Raises:
        ValueError: One line naming ``key`` and the path: missing, a directory, gzip-compressed, not HDF5, a
            dataset of :data:`SPIKE_KEYS` missing or not 1-d, or datasets of different lengths.
    """
    with _open(path, key) as handle:
        return _check_datasets(handle, str(Path(path).expanduser()), key)


def _first_bad(lengths: np.ndarray, flat_index: int) -> int:
    """Sample that holds entry ``flat_index`` of the concatenated per-sample arrays."""
    return int(np.searchsorted(np.cumsum(lengths), flat_index, side="right"))


def _read(ds: h5py.Dataset, name: str, file: str, key: str) -> np.ndarray:
    """All entries of ``ds``; a damaged file gives one line naming the first sample that cannot be read."""
    try:
        return ds[...]
    except (OSError, RuntimeError) as exc:  # h5py reports a corrupt chunk or heap as an OSError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sample = _first_unreadable(ds)
        raise ValueError(
            f"{key}: {file}: {name} of sample {sample} cannot be read ({reason}): the file is damaged; fetch it again"
        ) from None


def _first_unreadable(ds: h5py.Dataset) -> int:
    """The first entry of ``ds`` that h5py cannot read (chunk by chunk, then entry by entry in the bad chunk)."""
    block = ds.chunks[0] if ds.chunks else 1024
    for start in range(0, ds.shape[0], block):
        try:
            ds[start : start + block]
        except (OSError, RuntimeError):
            for n in range(start, min(start + block, ds.shape[0])):
                try:
                    ds[n]
                except (OSError, RuntimeError):
                    return n
            return start
    return 0


def _check_dtypes(times_ds: h5py.Dataset, units_ds: h5py.Dataset, labels_ds: h5py.Dataset, file: str, key: str) -> None:
    """One array of float times and of integer units per sample, integer labels."""
    import h5py

    for name, ds, kinds, what in (
        ("spikes/times", times_ds, "f", "float seconds"),
        ("spikes/units", units_ds, "iu", "integer channels"),
    ):
        base = h5py.check_vlen_dtype(ds.dtype)
        if base is None or base.kind not in kinds:
            raise ValueError(f"{key}: {file}: {name} must hold one array of {what} per sample, got {ds.dtype}")
    if labels_ds.dtype.kind not in "iu":
        raise ValueError(f"{key}: {file}: labels must be integers, got {labels_ds.dtype}")


def _check_values(events: SpikeEvents, *, n_classes: int, key: str) -> None:
    """Vectorised checks of every spike and label; one line naming the first bad sample."""
    file = events.path
    if not len(events):
        raise ValueError(f"{key}: {file}: holds no samples")
    lengths = np.fromiter((len(t) for t in events.times), dtype=np.int64, count=len(events))
    unit_lengths = np.fromiter((len(u) for u in events.units), dtype=np.int64, count=len(events))
    mismatch = np.flatnonzero(lengths != unit_lengths)
    if mismatch.size:
        n = int(mismatch[0])
        raise ValueError(f"{key}: {file}: sample {n} has {lengths[n]} spike times but {unit_lengths[n]} units")
    all_t = np.concatenate(events.times)
    all_u = np.concatenate(events.units)
    bad_t = np.flatnonzero(~np.isfinite(all_t) | (all_t < 0))
    if bad_t.size:
        n = _first_bad(lengths, int(bad_t[0]))
        raise ValueError(f"{key}: {file}: sample {n} has spike time {all_t[bad_t[0]]:g} (must be finite seconds >= 0)")
    bad_u = np.flatnonzero((all_u < 0) | (all_u >= N_CHANNELS))
    if bad_u.size:
        n = _first_bad(lengths, int(bad_u[0]))
        raise ValueError(f"{key}: {file}: sample {n} has unit {int(all_u[bad_u[0]])} outside [0, {N_CHANNELS})")
    labels = events.labels
    bad_l = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad_l.size:
        n = int(bad_l[0])
        raise ValueError(f"{key}: {file}: sample {n} has label {int(labels[n])} outside [0, {n_classes})")


def read_events(path: str | Path, *, n_classes: int, key: str = "path") -> SpikeEvents:
    """Read and validate every spike and label of an SHD/SSC file.

    Args:
        path: The HDF5 file.
        n_classes: Labels must lie in ``[0, n_classes)``.
        key: Name of the parameter (or config key) in error messages.

    Returns:
        The file's :class:`SpikeEvents`.

    Raises:
        ValueError: One line naming ``key``, the path and (for bad values) the first bad sample: the layout errors of
            :func:`check_layout`, a named pipe or other non-regular file, non-float times, non-integer units or
            labels, a damaged (unreadable) data chunk, no samples, a sample whose times and units differ in length,
            a time that is negative or not finite, a unit outside ``[0, 700)``, a label outside ``[0, n_classes)``.
    """
    check_int(n_classes, name="n_classes", minimum=2)
    file = str(Path(path).expanduser())
    with _open(path, key) as handle:
        _check_datasets(handle, file, key)
        times_ds, units_ds, labels_ds = (handle[name] for name in SPIKE_KEYS)
        _check_dtypes(times_ds, units_ds, labels_ds, file, key)
        raw = {name: _read(ds, name, file, key) for name, ds in zip(SPIKE_KEYS, (times_ds, units_ds, labels_ds))}
    times = [np.asarray(t, dtype=np.float64) for t in raw["spikes/times"]]
    units = [np.asarray(u, dtype=np.int64) for u in raw["spikes/units"]]
    events = SpikeEvents(times, units, np.asarray(raw["labels"], dtype=np.int64), file)
    _check_values(events, n_classes=n_classes, key=key)
    return events


_CHECKED: dict[tuple[str, int, int, int], np.ndarray] = {}
"""Labels of the files :func:`check_contents` validated, by (path, size, mtime, classes): a config validated twice in
one process (the callback, then the job) reads each file once."""


def check_contents(path: str | Path, *, n_classes: int, key: str = "path") -> np.ndarray:
    """Validate every value of an SHD/SSC file (see :func:`read_events`) and return its labels.

    Raises:
        ValueError: One line naming ``key``, the path and the first bad sample (the errors of :func:`read_events`).
    """
    file = Path(path).expanduser()
    identity = None
    if file.is_file():
        info = file.stat()
        identity = (str(file.resolve()), info.st_size, info.st_mtime_ns, n_classes)
        if identity in _CHECKED:
            return _CHECKED[identity]
    labels = read_events(file, n_classes=n_classes, key=key).labels
    if identity is not None:
        _CHECKED[identity] = labels
    return labels


def _check_split_sizes(labels: np.ndarray, fractions: tuple[float, float, float], *, prefix: str, file: str) -> None:
    """Mirror :func:`~evoexp.data.stratified_split` on ``labels``: every split ``path`` gives must get a sample."""
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    _, val, test = fractions
    sizes = {
        "validation": int(sum(round(n * val) for n in counts)),
        "test": int(sum(round(n * test) for n in counts)),
    }
    sizes = {"training": len(labels) - sizes["validation"] - sizes["test"], **sizes}
    given = {"training": 1.0, "validation": val, "test": test}
    empty = [part for part, size in sizes.items() if given[part] > 0 and size < 1]
    if empty:
        smallest = int(counts.min())
        raise ValueError(
            f"{prefix}path: {file}: {prefix}split={[float(f) for f in fractions]} leaves the {' and '.join(empty)} "
            f"split{'s' if len(empty) > 1 else ''} empty (the split is per class, rounded, and the smallest class has "
            f"{smallest} sample{'s' if smallest != 1 else ''}); give more samples per class, a larger fraction, or "
            "the split's own file"
        )


def bin_events(events: SpikeEvents, *, time_steps: int, duration: float) -> tuple[Tensor, int]:
    r"""Count spikes per time bin and channel (see the module docstring).

    Args:
        events: The samples.
        time_steps: Number of bins ``T`` (>= 1).
        duration: Seconds ``d`` covered by the bins (> 0); bin :math:`k` is :math:`[k d/T, (k+1) d/T)`.

    Returns:
        ``(spikes, dropped)``: float32 counts ``[N, T, 700]`` and the number of spikes at ``t >= duration``.

    Raises:
        ValueError: If ``time_steps`` or ``duration`` is invalid.
    """
    check_int(time_steps, name="time_steps")
    if not (isinstance(duration, (int, float)) and np.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")
    spikes = torch.zeros(len(events), time_steps, N_CHANNELS)
    if not len(events):
        return spikes, 0
    lengths = np.array([len(t) for t in events.times], dtype=np.int64)
    t = np.concatenate(events.times)
    keep = t < duration
    # times are >= 0 (read_events checks), so truncation is the floor; the clip guards t * T / d rounding up to T
    step = np.minimum((t[keep] * (time_steps / duration)).astype(np.int64), time_steps - 1)
    sample = np.repeat(np.arange(len(events), dtype=np.int64), lengths)[keep]
    flat = (sample * time_steps + step) * N_CHANNELS + np.concatenate(events.units)[keep]
    spikes.view(-1).index_add_(0, torch.from_numpy(flat), torch.ones(flat.shape[0]))
    return spikes, int(t.shape[0] - flat.shape[0])


def check_sources(
    path: str | Path | None,
    *,
    test_path: str | Path | None,
    val_path: str | Path | None,
    split: Sequence[float],
    prefix: str = "",
    n_classes: int | None = None,
) -> None:
    """Check where the splits come from: the files exist in the SHD layout and ``split`` fits them.

    Args:
        path: The file split by ``split`` (required).
        test_path: The test file, or None to take the test split from ``path``.
        val_path: The validation file, or None to take the validation split from ``path``.
        split: Train/val/test fractions of ``path``'s samples.
        prefix: Prepended to parameter names in messages (``"dataset."`` for config keys).
        n_classes: When given, every value of every file is validated too (:func:`check_contents`), and each split
            ``path`` gives must get at least one sample.

    Raises:
        ValueError: One line naming the parameter: ``path`` missing, a file that fails :func:`check_layout` (or
            :func:`check_contents`), a fraction > 0 for a split a file gives, no validation or no test samples at
            all, or a split of ``path`` that its per-class counts leave empty.
    """
    fractions = check_split(split)
    if path is None:
        raise ValueError(
            f"{prefix}path must name the HDF5 file to train on (e.g. {prefix}path=/data/shd_train.h5; nothing is "
            "downloaded: get the files from https://zenkelab.org/datasets/)"
        )
    check_layout(path, key=f"{prefix}path")
    for name, source, fraction in (("val_path", val_path, fractions[1]), ("test_path", test_path, fractions[2])):
        if source is None:
            continue
        check_layout(source, key=f"{prefix}{name}")
        if fraction > 0:
            part = name.removesuffix("_path")
            raise ValueError(
                f"{prefix}split gives {part} a fraction {fraction:g} but {prefix}{name} is the {part} set; "
                f"set that fraction to 0, e.g. {prefix}split={_example(fractions, part)}"
            )
    for part, source, fraction, example in (
        ("validation", val_path, fractions[1], "val_path (e.g. ssc_valid.h5)"),
        ("test", test_path, fractions[2], "test_path (e.g. shd_test.h5)"),
    ):
        if source is None and fraction == 0:
            raise ValueError(
                f"{prefix}split leaves no {part} samples: set {prefix}{example} or a {part} fraction in {prefix}split"
            )
    if n_classes is None:
        return
    labels = check_contents(path, n_classes=n_classes, key=f"{prefix}path")
    for name, source in (("val_path", val_path), ("test_path", test_path)):
        if source is not None:
            check_contents(source, n_classes=n_classes, key=f"{prefix}{name}")
    _check_split_sizes(labels, fractions, prefix=prefix, file=str(Path(path).expanduser()))


def _example(fractions: tuple[float, float, float], part: str) -> str:
    """``fractions`` with ``part``'s fraction moved to training, formatted as a config override value."""
    train, val, test = fractions
    if part == "val":
        train, val = train + val, 0.0
    else:
        train, test = train + test, 0.0
    return f"[{train:g},{val:g},{test:g}]"


def load_spiking_audio(
    name: str,
    *,
    path: str | Path | None,
    test_path: str | Path | None = None,
    val_path: str | Path | None = None,
    time_steps: int = 100,
    duration: float = 1.4,
    seed: int = 0,
    split: Sequence[float] = (0.9, 0.1, 0.0),
) -> DatasetSplits:
    """Load SHD or SSC files, split them and bin the spikes (see the module docstring).

    Args:
        name: ``"shd"`` or ``"ssc"`` (fixes the number of classes, :data:`N_CLASSES`).
        path: The file split by ``split``, e.g. ``shd_train.h5``.
        test_path: The test file (``shd_test.h5``), or None to take the test split from ``path``.
        val_path: The validation file (``ssc_valid.h5``), or None to take it from ``path``.
        time_steps: Number of time bins ``T``.
        duration: Seconds binned; later spikes are dropped.
        seed: Seed of the stratified split.
        split: Train/val/test fractions of ``path``'s samples (0 for a split a file gives).

    Returns:
        :class:`DatasetSplits` named ``name``: spike counts ``[N, T, 700]``, features ``[N, T * 700]`` (the same
        counts flattened time-major).

    Raises:
        ValueError: One line naming the first invalid parameter, file or sample.
    """
    if name not in N_CLASSES:
        raise ValueError(f"name must be one of {', '.join(N_CLASSES)}; got {name!r}")
    check_int(time_steps, name="time_steps")
    check_seed(seed)
    check_sources(path, test_path=test_path, val_path=val_path, split=split)
    n_classes = N_CLASSES[name]
    events = read_events(path, n_classes=n_classes)  # type: ignore[arg-type]  # None is rejected by check_sources
    split_seed = int(np.random.SeedSequence(int(seed)).generate_state(1)[0])
    train_idx, val_idx, test_idx = stratified_split(torch.from_numpy(events.labels), split, seed=split_seed)
    parts = {
        "train": events.subset(train_idx.numpy()),
        "val": events.subset(val_idx.numpy())
        if val_path is None
        else read_events(val_path, n_classes=n_classes, key="val_path"),
        "test": events.subset(test_idx.numpy())
        if test_path is None
        else read_events(test_path, n_classes=n_classes, key="test_path"),
    }
    datasets = {}
    for part, part_events in parts.items():
        spikes, dropped = bin_events(part_events, time_steps=time_steps, duration=duration)
        total = sum(len(t) for t in part_events.times)
        log.info(
            "%s %s: %d samples from %s, %d spikes binned into %d steps over %g s, %d (%.2f%%) later ones dropped",
            name,
            part,
            len(part_events),
            part_events.path,
            total,
            time_steps,
            duration,
            dropped,
            100.0 * dropped / max(total, 1),
        )
        features = spikes.reshape(len(part_events), time_steps * N_CHANNELS)  # a view: no second copy
        labels = torch.from_numpy(part_events.labels)
        datasets[part] = SpikeDataset(spikes, features, labels, n_classes, name)
    return DatasetSplits(datasets["train"], datasets["val"], datasets["test"])


def _check_spiking_audio(args: Mapping[str, Any], *, n_classes: int) -> None:
    """The argument check of :func:`make_shd` and :func:`make_ssc` (:func:`~evoexp.arguments.checked_by`).

    Every value of every file is validated (:func:`check_sources` with the dataset's classes, each file read once per
    process), and the binned spikes must fit in memory.

    Raises:
        ValueError: The first invalid argument, file or sample (the message starts with the argument's name).
    """
    check_int(args["time_steps"], name="time_steps")
    check_seed(args["seed"])
    duration = args["duration"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration < math.inf:
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")
    path, test_path, val_path = args["path"], args["test_path"], args["val_path"]
    check_sources(path, test_path=test_path, val_path=val_path, split=args["split"], n_classes=n_classes)
    samples = sum(check_layout(f) for f in (path, val_path, test_path) if f is not None)
    check_spike_tensor(
        samples=samples,
        time_steps=args["time_steps"],
        channels=N_CHANNELS,
        what=f"{samples} samples (path and the split files) × time_steps={args['time_steps']} × {N_CHANNELS} channels",
    )


def check_shd(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`make_shd`: the files and every value in them (20 classes)."""
    _check_spiking_audio(args, n_classes=N_CLASSES["shd"])


def check_ssc(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`make_ssc`: the files and every value in them (35 classes)."""
    _check_spiking_audio(args, n_classes=N_CLASSES["ssc"])


@register_dataset("shd")
@checked_by(check_shd)
def make_shd(
    *,
    path: str | Path | None,
    test_path: str | Path | None = None,
    val_path: str | Path | None = None,
    time_steps: int = 100,
    duration: float = 1.4,
    seed: int = 0,
    split: Sequence[float] = (0.9, 0.1, 0.0),
) -> DatasetSplits:
    """Spiking Heidelberg Digits (20 classes) from local files; see :func:`load_spiking_audio`."""
    return load_spiking_audio(
        "shd",
        path=path,
        test_path=test_path,
        val_path=val_path,
        time_steps=time_steps,
        duration=duration,
        seed=seed,
        split=split,
    )


@register_dataset("ssc")
@checked_by(check_ssc)
def make_ssc(
    *,
    path: str | Path | None,
    test_path: str | Path | None = None,
    val_path: str | Path | None = None,
    time_steps: int = 100,
    duration: float = 1.4,
    seed: int = 0,
    split: Sequence[float] = (1.0, 0.0, 0.0),
) -> DatasetSplits:
    """Spiking Speech Commands (35 classes) from local files (by default all three); see :func:`load_spiking_audio`."""
    return load_spiking_audio(
        "ssc",
        path=path,
        test_path=test_path,
        val_path=val_path,
        time_steps=time_steps,
        duration=duration,
        seed=seed,
        split=split,
    )
