"""Dataset containers, seeded stratified splits, DataLoader helper and the dataset registry.

Every dataset in :mod:`evoexp.data` is a :class:`SpikeDataset`: spike trains ``[N, T, ...]`` for the SNN (one
step's sample is ``[C]`` channels or an image ``[C, H, W]``), the static features ``[N, ...]`` behind them for an ANN,
and integer labels. Generators return :class:`DatasetSplits` (train/val/test) built by :func:`split_dataset`, which
stratifies by class with a seeded permutation, so a seed fixes every split exactly. Data from elsewhere (tensors or
torch ``Dataset`` objects) becomes :class:`DatasetSplits` with :meth:`DatasetSplits.from_tensors` or
:meth:`DatasetSplits.from_datasets`; :func:`check_splits` validates any splits before a run (the job does).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from evoexp.arguments import checked_by

__all__ = [
    "SPLITS",
    "DatasetSplits",
    "SpikeDataset",
    "available_datasets",
    "check_fits_in_memory",
    "check_generated",
    "check_int",
    "check_loader_arguments",
    "check_seed",
    "check_spike_tensor",
    "check_split",
    "check_split_sizes",
    "check_splits",
    "get_dataset",
    "make_loader",
    "register_dataset",
    "split_dataset",
    "stratified_split",
]

View = Literal["spikes", "features"]
SPLITS = ("train", "val", "test")
"""The split names of :class:`DatasetSplits`, in order."""


@dataclass
class SpikeDataset:
    """A labelled dataset with a spiking view and its static twin.

    Attributes:
        spikes: Float32 tensor ``[N, T, ...]`` of spikes (0/1; spike counts where a generator documents it): ``T``
            steps of one sample each, a step ``[C]`` channels or an image ``[C, H, W]``.
        features: Float32 tensor ``[N, ...]``, the static values the spikes encode (input of an ANN); ``[N, 0]``
            when the dataset has none.
        labels: Long tensor ``[N]`` with entries in ``[0, n_classes)``.
        n_classes: Number of classes.
        name: Dataset name, e.g. ``"randman"``.
    """

    spikes: Tensor
    features: Tensor
    labels: Tensor
    n_classes: int
    name: str

    def __post_init__(self) -> None:
        """Validate shapes and dtypes.

        Raises:
            ValueError: On inconsistent sizes, wrong ranks or dtypes, or labels outside ``[0, n_classes)``.
        """
        if self.spikes.dim() < 3:
            raise ValueError(f"spikes must have shape [N, T, C] or [N, T, C, H, W], got {tuple(self.spikes.shape)}")
        if self.features.dim() < 2:
            raise ValueError(f"features must have shape [N, F] (or [N, ...]), got {tuple(self.features.shape)}")
        if self.labels.dim() != 1 or self.labels.dtype != torch.long:
            raise ValueError(f"labels must be a 1-d long tensor, got {tuple(self.labels.shape)} {self.labels.dtype}")
        n = self.labels.shape[0]
        if self.spikes.shape[0] != n or self.features.shape[0] != n:
            raise ValueError(
                f"spikes, features and labels must have the same length, got "
                f"{self.spikes.shape[0]}, {self.features.shape[0]}, {n}"
            )
        if self.n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {self.n_classes}")
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.n_classes):
            raise ValueError(
                f"labels must lie in [0, {self.n_classes}), got [{int(self.labels.min())}, {int(self.labels.max())}]"
            )

    def __len__(self) -> int:
        """Number of samples."""
        return int(self.labels.shape[0])

    @property
    def time_steps(self) -> int:
        """Number of time steps ``T``."""
        return int(self.spikes.shape[1])

    @property
    def n_channels(self) -> int:
        """Number of input channels ``C`` of the spiking view (the first axis of a step's sample)."""
        return int(self.spikes.shape[2])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one time step of one sample: ``(C,)``, or ``(C, H, W)`` for image-shaped spikes."""
        return tuple(int(n) for n in self.spikes.shape[2:])

    @property
    def n_inputs(self) -> int:
        """Number of input values per time step (the product of :attr:`input_shape`)."""
        return math.prod(self.input_shape)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one sample's static features: ``(F,)``, or e.g. ``(C, H, W)``."""
        return tuple(int(n) for n in self.features.shape[1:])

    @property
    def n_features(self) -> int:
        """Number of static features ``F`` (the product of :attr:`feature_shape`; 0 when there are none)."""
        return math.prod(self.feature_shape)

    def subset(self, indices: Tensor | Sequence[int]) -> SpikeDataset:
        """Return the samples at ``indices`` (in that order) as a new dataset.

        Args:
            indices: Integer indices into this dataset.

        Returns:
            A :class:`SpikeDataset` with the same ``n_classes`` and ``name``.
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        return SpikeDataset(self.spikes[idx], self.features[idx], self.labels[idx], self.n_classes, self.name)

    def class_counts(self) -> Tensor:
        """Number of samples per class, a long tensor ``[n_classes]``."""
        return torch.bincount(self.labels, minlength=self.n_classes)


@dataclass
class DatasetSplits:
    """Train/validation/test splits of one dataset.

    Attributes:
        train: Training split.
        val: Validation split (may be empty).
        test: Test split (may be empty).
    """

    train: SpikeDataset
    val: SpikeDataset
    test: SpikeDataset

    @property
    def n_inputs(self) -> int:
        """Number of spiking input values per time step (``C`` channels, or ``C*H*W`` for images)."""
        return self.train.n_inputs

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one time step of one sample: ``(C,)`` or ``(C, H, W)``."""
        return self.train.input_shape

    @property
    def n_features(self) -> int:
        """Number of static features ``F`` (ANN input size; 0 when the dataset has none)."""
        return self.train.n_features

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one sample's static features."""
        return self.train.feature_shape

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return self.train.n_classes

    @property
    def time_steps(self) -> int:
        """Number of time steps ``T``."""
        return self.train.time_steps

    @property
    def name(self) -> str:
        """Dataset name."""
        return self.train.name

    def split(self, name: str) -> SpikeDataset:
        """The split called ``name`` (one of :data:`SPLITS`)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        return getattr(self, name)

    @classmethod
    def from_tensors(
        cls,
        train: tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor],
        val: tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor],
        test: tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor],
        *,
        n_classes: int | None = None,
        name: str = "custom",
    ) -> DatasetSplits:
        """Splits from tensors: per split ``(spikes, labels)`` or ``(spikes, labels, features)``.

        ``spikes`` is ``[N, T, C]`` or ``[N, T, C, H, W]`` (any numeric dtype; stored as float32), ``labels`` ``[N]``
        integers in ``[0, n_classes)``, ``features`` (optional) the static input of an ANN, ``[N, ...]``. Without
        features an ANN comparison is not possible (:attr:`n_features` is 0).

        Args:
            train: The training split.
            val: The validation split (where the objective and the best epoch are measured).
            test: The test split.
            n_classes: Number of classes (default: the largest label over the splits + 1).
            name: Dataset name in reports.

        Returns:
            The splits, validated with :func:`check_splits`.

        Raises:
            ValueError: One line naming the split and what is wrong (shapes, labels, empty, non-finite values).
        """
        parts = {"train": train, "val": val, "test": test}
        for split, part in parts.items():
            if not isinstance(part, (tuple, list)) or len(part) not in (2, 3):
                raise ValueError(f"split '{split}' must be (spikes, labels) or (spikes, labels, features)")
        labels = {split: torch.as_tensor(part[1]) for split, part in parts.items()}
        if n_classes is None:
            n_classes = 1 + max((int(y.max()) for y in labels.values() if y.numel()), default=0)
        built = {}
        for split, part in parts.items():
            spikes = torch.as_tensor(part[0]).float()
            features = torch.as_tensor(part[2]).float() if len(part) == 3 else spikes.new_zeros(spikes.shape[0], 0)
            try:
                built[split] = SpikeDataset(spikes, features, labels[split].long(), n_classes, name)
            except ValueError as exc:
                raise ValueError(f"split '{split}': {exc}") from None
        data = cls(built["train"], built["val"], built["test"])
        check_splits(data)
        return data

    @classmethod
    def from_datasets(
        cls,
        train: Dataset,
        val: Dataset,
        test: Dataset,
        *,
        n_classes: int | None = None,
        name: str = "custom",
    ) -> DatasetSplits:
        """Splits from torch ``Dataset`` objects whose items are ``(spikes, label)`` or ``(spikes, label, features)``.

        Each item's ``spikes`` is one sample ``[T, C]`` or ``[T, C, H, W]`` (a tensor or an array); all items are read
        once and stacked (the datasets must fit in memory), then passed to :meth:`from_tensors`.

        Raises:
            ValueError: One line naming the split (and the item) that is wrong.
        """
        parts = {split: _stack(split, dataset) for split, dataset in (("train", train), ("val", val), ("test", test))}
        return cls.from_tensors(parts["train"], parts["val"], parts["test"], n_classes=n_classes, name=name)


def _stack(split: str, dataset: Dataset) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """The items of ``dataset`` stacked per field: ``(spikes, labels[, features])``."""
    try:
        items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"split '{split}' must be a map-style torch Dataset (len and indexing)") from None
    if not items:
        raise ValueError(f"split '{split}' is empty")
    widths = {len(item) for item in items}
    if len(widths) != 1 or widths.pop() not in (2, 3):
        raise ValueError(f"split '{split}': every item must be (spikes, label) or (spikes, label, features)")
    fields: list[Tensor] = []
    for k, what in enumerate(("spikes", "labels", "features")[: len(items[0])]):
        values = [torch.as_tensor(item[k]) for item in items]
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) != 1:
            first = next(i for i, v in enumerate(values) if tuple(v.shape) != tuple(values[0].shape))
            raise ValueError(
                f"split '{split}': item {first} has {what} of shape {tuple(values[first].shape)}, item 0 "
                f"{tuple(values[0].shape)}; every item must have the same shape"
            )
        fields.append(torch.stack(values))
    return (fields[0], fields[1]) if len(fields) == 2 else (fields[0], fields[1], fields[2])


def check_splits(data: DatasetSplits) -> None:
    """Validate splits before a run: none empty, shapes and classes agree, labels in range, values finite.

    Raises:
        ValueError: One line naming the split and what is wrong, e.g. ``split 'val' is empty``.
    """
    reference = data.train
    for split in SPLITS:
        part = data.split(split)
        if len(part) == 0:
            raise ValueError(f"split '{split}' is empty: every split needs samples")
        if part.n_classes != reference.n_classes:
            raise ValueError(
                f"split '{split}' has n_classes={part.n_classes}, split 'train' {reference.n_classes}"
            )
        if part.spikes.shape[1:] != reference.spikes.shape[1:]:
            raise ValueError(
                f"split '{split}' has spikes of shape [N, {', '.join(map(str, part.spikes.shape[1:]))}], split "
                f"'train' [N, {', '.join(map(str, reference.spikes.shape[1:]))}]"
            )
        if part.features.shape[1:] != reference.features.shape[1:]:
            raise ValueError(
                f"split '{split}' has features of shape {tuple(part.features.shape[1:])} per sample, split 'train' "
                f"{tuple(reference.features.shape[1:])}"
            )
        for what, values in (("spikes", part.spikes), ("features", part.features)):
            if values.is_floating_point() and not bool(torch.isfinite(values).all()):
                bad = int((~torch.isfinite(values)).flatten(1).any(dim=1).nonzero()[0])
                raise ValueError(f"split '{split}' has non-finite {what} (NaN or Inf), first in sample {bad}")
        if part.time_steps < 1:
            raise ValueError(f"split '{split}' has no time steps (spikes {tuple(part.spikes.shape)})")


def check_int(value: int, *, name: str, minimum: int = 1) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int ``>= minimum``.

    Args:
        value: The value to check.
        name: Parameter name used in the error message.
        minimum: Smallest allowed value.

    Raises:
        ValueError: If ``value`` is not an int (bools excluded) or is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")



def _memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``74.5 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def check_fits_in_memory(what: str, needed: float) -> None:
    """Raise a ValueError when ``needed`` bytes exceed this machine's memory (estimated before allocating).

    Args:
        what: What needs it, naming the arguments and the shape (the message starts with it).
        needed: Bytes.
    """
    available = _memory_bytes()
    if available is not None and needed > available:
        raise ValueError(f"{what} need {_bytes(needed)}, more than this machine's {_bytes(available)} of memory")


def check_spike_tensor(*, samples: int, time_steps: int, channels: int, what: str) -> None:
    """Refuse a float32 spike tensor ``[samples, time_steps, channels]`` that cannot fit in memory.

    ``what`` names the sizes, e.g. ``"samples_per_class=32 × n_classes=2 × time_steps=10 × n_channels=8"``.
    """
    check_fits_in_memory(f"{what} float32 spikes", 4.0 * samples * time_steps * channels)


def check_generated(args: Mapping[str, Any]) -> None:
    """Check the arguments every generated dataset (Randman, synthetic) shares; messages start with the name.

    ``n_classes`` (>= 2), ``n_channels``, ``samples_per_class`` and ``time_steps`` (>= 1), ``seed``, ``split`` (no
    split left empty by ``samples_per_class``), and the memory of the spike tensor
    ``[samples_per_class * n_classes, time_steps, n_channels]``.

    Raises:
        ValueError: The first invalid argument.
    """
    check_int(args["n_classes"], name="n_classes", minimum=2)
    for name in ("n_channels", "samples_per_class", "time_steps"):
        check_int(args[name], name=name)
    check_seed(args["seed"])
    check_split(args["split"], nonempty=True)
    check_split_sizes(args["samples_per_class"], args["split"])
    sizes = ("samples_per_class", "n_classes", "time_steps", "n_channels")
    check_spike_tensor(
        samples=args["samples_per_class"] * args["n_classes"],
        time_steps=args["time_steps"],
        channels=args["n_channels"],
        what=" × ".join(f"{name}={args[name]}" for name in sizes),
    )

def check_seed(seed: int) -> None:
    """Raise ``ValueError`` unless ``seed`` is an int in ``[0, 2**64 - 1]`` (torch's generators take 64 bits).

    Args:
        seed: The seed to check.

    Raises:
        ValueError: If ``seed`` is not such an int; the message starts with ``seed``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= 2**64 - 1:
        raise ValueError(f"seed must be an int in [0, 2**64 - 1] (torch's generators take 64 bits), got {seed!r}")


def check_split(split: Sequence[float], *, nonempty: bool = False) -> tuple[float, float, float]:
    """Validate train/val/test fractions.

    Args:
        split: Three non-negative fractions summing to 1, the first positive.
        nonempty: Also require the validation and test fractions to be > 0 (a split cut from one set of samples:
            an empty validation or test split would be logged as a result instead of failing).

    Returns:
        The fractions as a tuple of floats.

    Raises:
        ValueError: If ``split`` is malformed; the message starts with ``split``.
    """
    fractions = tuple(float(f) for f in split)
    if len(fractions) != 3:
        raise ValueError(f"split must have three fractions (train, val, test), got {list(split)!r}")
    if any(not math.isfinite(f) or f < 0 for f in fractions) or fractions[0] <= 0:
        raise ValueError(f"split must be three fractions >= 0 (train > 0), got {list(split)!r}")
    if nonempty:
        for name, fraction in zip(("validation", "test"), fractions[1:]):
            if fraction == 0:
                raise ValueError(
                    f"split leaves the {name} split empty, got {list(split)!r}; every fraction must be > 0"
                )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split must sum to 1, got {list(split)!r} (sum {sum(fractions):g})")
    return fractions[0], fractions[1], fractions[2]


def check_split_sizes(per_class: int, split: Sequence[float]) -> None:
    """Raise a ValueError naming ``samples_per_class`` when that many samples per class leave a split empty.

    Mirrors :func:`stratified_split`: per class, ``round(n * val)`` validation and ``round(n * test)`` test samples,
    the rest for training.
    """

    def sizes(n: int) -> tuple[int, int, int]:
        n_val, n_test = round(n * split[1]), round(n * split[2])
        return n - n_val - n_test, n_val, n_test

    if min(sizes(per_class)) >= 1:
        return
    empty = [name for name, size in zip(("train", "validation", "test"), sizes(per_class)) if size < 1]
    enough = next(n for n in range(per_class + 1, 10**7) if min(sizes(n)) >= 1)
    raise ValueError(
        f"samples_per_class={per_class} leaves the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} empty "
        f"with split={list(split)!r} (per class: train, val, test = {sizes(per_class)}); use at least {enough}"
    )


def stratified_split(
    labels: Tensor, split: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Seeded stratified split of sample indices into train/val/test.

    For each class with ``n`` samples, ``round(n * val)`` go to validation, ``round(n * test)`` to test and the rest
    to training, chosen by a seeded permutation; each split is then shuffled (seeded) so classes are interleaved.

    Args:
        labels: Long tensor ``[N]`` of class labels.
        split: Train/val/test fractions (sum 1).
        seed: Seed of the permutations.

    Returns:
        Three disjoint long index tensors covering ``range(N)``.

    Raises:
        ValueError: If ``split`` or ``seed`` is invalid.
    """
    _, val_frac, test_frac = check_split(split)
    check_seed(seed)
    rng = np.random.default_rng(seed)
    labels_np = labels.cpu().numpy()
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for cls in np.unique(labels_np):
        idx = rng.permutation(np.flatnonzero(labels_np == cls))
        n_val = round(len(idx) * val_frac)
        n_test = round(len(idx) * test_frac)
        n_train = len(idx) - n_val - n_test
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_val])
        parts[2].append(idx[n_train + n_val :])
    result = []
    for chunks in parts:
        joined = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
        result.append(torch.from_numpy(rng.permutation(joined).astype(np.int64)))
    return result[0], result[1], result[2]


def split_dataset(ds: SpikeDataset, split: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0) -> DatasetSplits:
    """Split a dataset with :func:`stratified_split`.

    Args:
        ds: The full dataset.
        split: Train/val/test fractions (sum 1).
        seed: Seed of the split.

    Returns:
        The :class:`DatasetSplits`.
    """
    train, val, test = stratified_split(ds.labels, split, seed=seed)
    return DatasetSplits(ds.subset(train), ds.subset(val), ds.subset(test))


def check_loader_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`make_loader` (:func:`evoexp.arguments.checked_by`).

    Raises:
        ValueError: ``batch_size``, ``view`` or ``seed`` is invalid (named first).
    """
    check_int(args["batch_size"], name="batch_size")
    if args["view"] not in ("spikes", "features"):
        raise ValueError(f"view must be 'spikes' or 'features', got {args['view']!r}")
    check_seed(args["seed"])


@checked_by(check_loader_arguments)
def make_loader(
    ds: SpikeDataset,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    view: View = "spikes",
    drop_last: bool = False,
) -> DataLoader:
    """DataLoader of ``(x, y)`` batches over one view of a dataset.

    Batches are gathered with one fancy-indexing call each (no per-sample collation). With ``shuffle`` the order
    comes from a ``torch.Generator`` seeded with ``seed``; it changes from epoch to epoch but two loaders built with
    the same seed yield the same sequence of epochs.

    Args:
        ds: The dataset.
        batch_size: Samples per batch (>= 1).
        shuffle: Reshuffle every epoch.
        seed: Seed of the shuffling generator.
        view: ``"spikes"`` gives ``x`` of shape ``[B, T, ...]`` (SNN), ``"features"`` gives ``[B, ...]`` (ANN).
        drop_last: Drop the last incomplete batch.

    Returns:
        A ``DataLoader`` yielding ``(x, y)`` with ``y`` a long tensor ``[B]``.

    Raises:
        ValueError: If ``batch_size``, ``view`` or ``seed`` is invalid.
    """
    x = ds.spikes if view == "spikes" else ds.features
    data = TensorDataset(x, ds.labels)
    base = (
        RandomSampler(data, generator=torch.Generator().manual_seed(int(seed)))
        if shuffle
        else (SequentialSampler(data))
    )
    sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(data, sampler=sampler, batch_size=None)


DatasetFactory = Callable[..., DatasetSplits]
_REGISTRY: dict[str, DatasetFactory] = {}


def register_dataset(name: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """Decorator registering a dataset factory under ``name`` for :func:`get_dataset`.

    Args:
        name: Registry name (must be new).

    Returns:
        The decorator, which returns the factory unchanged.

    Raises:
        ValueError: If ``name`` is already registered.
    """

    def decorator(factory: DatasetFactory) -> DatasetFactory:
        if name in _REGISTRY:
            raise ValueError(f"dataset name {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_datasets() -> list[str]:
    """Sorted names of the registered datasets."""
    return sorted(_REGISTRY)


def get_dataset(name: str, **params: object) -> DatasetSplits:
    """Build a registered dataset by name.

    Args:
        name: Registry name, one of :func:`available_datasets`.
        **params: Keyword arguments of the dataset's factory (e.g. ``seed``, ``time_steps``).

    Returns:
        The dataset's :class:`DatasetSplits`.

    Raises:
        ValueError: If ``name`` is unknown (the message lists the valid names) or a parameter is invalid.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset name {name!r}; available: {', '.join(available_datasets())}")
    return _REGISTRY[name](**params)
