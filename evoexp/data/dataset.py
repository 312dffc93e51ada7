"""Dataset containers, seeded stratified splits, DataLoader helper and the dataset registry.

Every dataset in :mod:`evoexp.data` is a :class:`SpikeDataset`: spike trains ``[N, T, C]`` for the SNN, the static
features ``[N, F]`` behind them for the ANN twin, and integer labels. Generators return :class:`DatasetSplits`
(train/val/test) built by :func:`split_dataset`, which stratifies by class with a seeded permutation, so a seed fixes
every split exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

__all__ = [
    "DatasetSplits",
    "SpikeDataset",
    "available_datasets",
    "check_int",
    "check_seed",
    "check_split",
    "get_dataset",
    "make_loader",
    "register_dataset",
    "split_dataset",
    "stratified_split",
]

View = Literal["spikes", "features"]


@dataclass
class SpikeDataset:
    """A labelled dataset with a spiking view and its static twin.

    Attributes:
        spikes: Float32 tensor ``[N, T, C]`` of spikes (0/1; spike counts where a generator documents it).
        features: Float32 tensor ``[N, F]``, the static values the spikes encode (input of the ANN twin).
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
        if self.spikes.dim() != 3:
            raise ValueError(f"spikes must have shape [N, T, C], got {tuple(self.spikes.shape)}")
        if self.features.dim() != 2:
            raise ValueError(f"features must have shape [N, F], got {tuple(self.features.shape)}")
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
        """Number of input channels ``C`` of the spiking view."""
        return int(self.spikes.shape[2])

    @property
    def n_features(self) -> int:
        """Number of static features ``F``."""
        return int(self.features.shape[1])

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
        """Number of spiking input channels ``C``."""
        return self.train.n_channels

    @property
    def n_features(self) -> int:
        """Number of static features ``F`` (ANN input size)."""
        return self.train.n_features

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


def check_seed(seed: int) -> None:
    """Raise ``ValueError`` unless ``seed`` is a non-negative int.

    Args:
        seed: The seed to check.

    Raises:
        ValueError: If ``seed`` is not a non-negative int.
    """
    check_int(seed, name="seed", minimum=0)


def check_split(split: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test fractions.

    Args:
        split: Three non-negative fractions summing to 1, the first positive.

    Returns:
        The fractions as a tuple of floats.

    Raises:
        ValueError: If ``split`` is malformed.
    """
    fractions = tuple(float(f) for f in split)
    if len(fractions) != 3:
        raise ValueError(f"split must have three fractions (train, val, test), got {split!r}")
    if any(not math.isfinite(f) or f < 0 for f in fractions) or fractions[0] <= 0:
        raise ValueError(f"split fractions must be finite, >= 0 and the train fraction > 0, got {split!r}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {split!r} (sum {sum(fractions)})")
    return fractions[0], fractions[1], fractions[2]


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
        view: ``"spikes"`` gives ``x`` of shape ``[B, T, C]`` (SNN), ``"features"`` gives ``[B, F]`` (ANN).
        drop_last: Drop the last incomplete batch.

    Returns:
        A ``DataLoader`` yielding ``(x, y)`` with ``y`` a long tensor ``[B]``.

    Raises:
        ValueError: If ``batch_size``, ``view`` or ``seed`` is invalid.
    """
    check_int(batch_size, name="batch_size")
    if view == "spikes":
        x = ds.spikes
    elif view == "features":
        x = ds.features
    else:
        raise ValueError(f"view must be 'spikes' or 'features', got {view!r}")
    check_seed(seed)
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
