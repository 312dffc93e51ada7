"""Tests of evoexp.data: encoders, Randman, digits, synthetic task, splits, loaders and the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from evoexp.data import (
    DatasetSplits,
    RandomManifold,
    SpikeDataset,
    available_datasets,
    get_dataset,
    latency_encode,
    latency_steps,
    make_digits,
    make_loader,
    make_randman,
    make_synthetic,
    rate_encode,
    register_dataset,
    stratified_split,
)
from evoexp.data.randman import n_frequencies

SMALL_RANDMAN = {"n_classes": 3, "n_channels": 8, "samples_per_class": 40, "time_steps": 25, "alpha": 2.0}


def _all(splits: DatasetSplits) -> SpikeDataset:
    parts = (splits.train, splits.val, splits.test)
    return SpikeDataset(
        torch.cat([p.spikes for p in parts]),
        torch.cat([p.features for p in parts]),
        torch.cat([p.labels for p in parts]),
        splits.n_classes,
        splits.name,
    )


def _assert_same(a: DatasetSplits, b: DatasetSplits) -> None:
    for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)):
        assert torch.equal(x.spikes, y.spikes)
        assert torch.equal(x.features, y.features)
        assert torch.equal(x.labels, y.labels)


# ---------------------------------------------------------------- encoders


def test_latency_steps_hand_values() -> None:
    values = torch.tensor([0.0, 0.05, 0.5, 0.55, 0.999, 1.0], dtype=torch.float64)
    assert latency_steps(values, 10).tolist() == [0, 0, 5, 5, 9, 9]
    assert latency_steps(values, 10, high_first=True).tolist() == [9, 9, 5, 4, 0, 0]


def test_latency_encode_hand_values() -> None:
    values = torch.tensor([[0.0, 0.25, 0.75], [1.0, 0.5, 0.3]], dtype=torch.float64)
    expected = torch.zeros(2, 4, 3, dtype=torch.float64)
    expected[0, 0, 0] = expected[0, 1, 1] = expected[0, 3, 2] = 1
    expected[1, 3, 0] = expected[1, 2, 1] = expected[1, 1, 2] = 1
    assert torch.equal(latency_encode(values, 4), expected)
    silent = latency_encode(values, 4, threshold=0.0)
    expected[0, 0, 0] = 0
    assert torch.equal(silent, expected)
    bright_first = latency_encode(torch.tensor([[1.0, 0.0, 0.5]]), 5, high_first=True)
    assert bright_first[0].nonzero().tolist() == [[0, 0], [2, 2], [4, 1]]


def test_rate_encode_extremes_and_statistics() -> None:
    values = torch.tensor([0.0, 1.0, 0.3], dtype=torch.float64)
    spikes = rate_encode(values, 4000, generator=torch.Generator().manual_seed(1))
    assert spikes.shape == (4000, 3)
    assert spikes[:, 0].sum() == 0
    assert spikes[:, 1].sum() == 4000
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    p = 0.3
    assert abs(spikes[:, 2].mean().item() - p) < 4 * math.sqrt(p * (1 - p) / 4000)
    halved = rate_encode(values, 4000, max_prob=0.5, generator=torch.Generator().manual_seed(1))
    assert abs(halved[:, 1].mean().item() - 0.5) < 4 * math.sqrt(0.25 / 4000)


def test_rate_encode_seeded() -> None:
    values = torch.rand(5, 7)
    a = rate_encode(values, 30, generator=torch.Generator().manual_seed(3))
    b = rate_encode(values, 30, generator=torch.Generator().manual_seed(3))
    c = rate_encode(values, 30, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: latency_encode(torch.tensor([1.5]), 5), "values"),
        (lambda: latency_encode(torch.tensor([float("nan")]), 5), "values"),
        (lambda: latency_encode(torch.tensor([0.5]), 0), "time_steps"),
        (lambda: latency_encode(torch.tensor([1, 0]), 5), "values"),
        (lambda: rate_encode(torch.tensor([-0.1]), 5), "values"),
        (lambda: rate_encode(torch.tensor([0.5]), 5, max_prob=0.0), "max_prob"),
    ],
)
def test_encoders_reject_bad_input(call: object, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()  # type: ignore[operator]


# ---------------------------------------------------------------- randman


def test_n_frequencies() -> None:
    assert n_frequencies(1.0) == 1000
    assert n_frequencies(2.0) == 32  # ceil(sqrt(1000)) = ceil(31.62)
    assert n_frequencies(3.0) == 10
    assert n_frequencies(0.5) == 1000  # capped


def test_random_manifold_matches_formula() -> None:
    manifold = RandomManifold.random(5, 2, 1.5, np.random.default_rng(7))
    params = manifold.params.numpy()
    assert params.shape == (5, 2, 3, n_frequencies(1.5))
    assert np.all(params[:, :, 0, 0] == 0)
    x = np.random.default_rng(8).random((6, 2))
    expected = np.ones((6, 5))
    for s in range(6):
        for i in range(5):
            for d in range(2):
                a, b, c = params[i, d]
                expected[s, i] *= sum(
                    a[k] / (k + 1) ** 1.5 * math.sin(2 * math.pi * (k * b[k] * x[s, d] + c[k])) for k in range(len(a))
                )
    np.testing.assert_allclose(manifold(torch.from_numpy(x)).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_randman_shapes_and_dtypes() -> None:
    splits = make_randman(**SMALL_RANDMAN)
    assert (splits.n_inputs, splits.n_features, splits.n_classes, splits.time_steps) == (8, 8, 3, 25)
    assert splits.name == "randman"
    for part in (splits.train, splits.val, splits.test):
        assert part.spikes.dtype == torch.float32
        assert part.features.dtype == torch.float32
        assert part.labels.dtype == torch.long
        assert part.spikes.shape == (len(part), 25, 8)
        assert part.features.shape == (len(part), 8)


def test_randman_one_spike_per_channel_at_feature_latency() -> None:
    full = _all(make_randman(**SMALL_RANDMAN))
    assert torch.equal(full.spikes.sum(dim=1), torch.ones(len(full), 8))
    assert set(full.spikes.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(full.spikes, latency_encode(full.features, 25))


def test_randman_step_frac_puts_every_spike_in_the_leading_window() -> None:
    half = _all(make_randman(**SMALL_RANDMAN, step_frac=0.5))
    full = _all(make_randman(**SMALL_RANDMAN))
    assert torch.equal(half.features, full.features)  # the same points, only the latency code differs
    steps = half.spikes.argmax(dim=1)
    assert torch.equal(steps, torch.floor(0.5 * 25 * half.features).long())
    assert int(steps.max()) <= 12 and torch.equal(half.spikes.sum(dim=1), torch.ones(len(half), 8))
    assert int(full.spikes.argmax(dim=1).max()) > 12


def test_randman_multiple_spikes_per_unit() -> None:
    full = _all(make_randman(**SMALL_RANDMAN, spikes_per_unit=3))
    assert full.features.shape == (len(full), 24)
    assert torch.equal(full.spikes.sum(dim=1), torch.full((len(full), 8), 3.0))
    blocks = full.features.split(8, dim=1)
    assert torch.equal(full.spikes, sum(latency_encode(b, 25) for b in blocks))
    # the three manifolds of a class are different functions
    assert not torch.equal(blocks[0], blocks[1])


def test_randman_features_standardised_per_class() -> None:
    full = _all(make_randman(**SMALL_RANDMAN))
    assert full.features.min() >= 0 and full.features.max() < 1
    for cls in range(3):
        feats = full.features[full.labels == cls]
        assert torch.all(feats.amin(dim=0) == 0)
        assert torch.all(feats.amax(dim=0) > 0.999)


def test_randman_manifold_dim_two_and_class_counts() -> None:
    splits = make_randman(**{**SMALL_RANDMAN, "manifold_dim": 2})
    assert torch.equal(_all(splits).class_counts(), torch.full((3,), 40))


def test_randman_deterministic() -> None:
    _assert_same(make_randman(**SMALL_RANDMAN, seed=5), make_randman(**SMALL_RANDMAN, seed=5))
    a, b = make_randman(**SMALL_RANDMAN, seed=5), make_randman(**SMALL_RANDMAN, seed=6)
    assert not torch.equal(a.train.features, b.train.features)
    assert not torch.equal(a.train.labels, b.train.labels)


def test_randman_classes_differ() -> None:
    # Each class is its own manifold: class-mean latencies differ between classes.
    full = _all(make_randman(**SMALL_RANDMAN))
    means = torch.stack([full.features[full.labels == c].mean(dim=0) for c in range(3)])
    assert torch.cdist(means, means)[~torch.eye(3, dtype=torch.bool)].min() > 0.1


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n_classes", 1),
        ("n_channels", 0),
        ("manifold_dim", 0),
        ("alpha", 0.0),
        ("alpha", float("nan")),
        ("samples_per_class", 0),
        ("time_steps", 0),
        ("spikes_per_unit", 0),
        ("step_frac", 0.0),
        ("step_frac", 1.5),
        ("step_frac", float("nan")),
        ("seed", -1),
        ("n_channels", 2.5),
        ("split", (0.5, 0.5, 0.5)),
    ],
)
def test_randman_rejects_bad_params(param: str, value: object) -> None:
    with pytest.raises(ValueError, match=param):
        make_randman(**{**SMALL_RANDMAN, param: value})


# ---------------------------------------------------------------- splits


def test_split_sizes_disjoint_and_stratified() -> None:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate((10, 20, 30))])
    train, val, test = stratified_split(labels, (0.5, 0.3, 0.2), seed=0)
    everything = torch.cat([train, val, test])
    assert torch.equal(everything.sort().values, torch.arange(60))
    assert torch.bincount(labels[val], minlength=3).tolist() == [3, 6, 9]
    assert torch.bincount(labels[test], minlength=3).tolist() == [2, 4, 6]
    assert torch.bincount(labels[train], minlength=3).tolist() == [5, 10, 15]


def test_split_seeded() -> None:
    labels = torch.arange(50) % 5
    a = stratified_split(labels, seed=1)
    b = stratified_split(labels, seed=1)
    c = stratified_split(labels, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_randman_default_split_sizes() -> None:
    splits = make_randman(**{**SMALL_RANDMAN, "samples_per_class": 50})
    assert (len(splits.train), len(splits.val), len(splits.test)) == (120, 15, 15)
    assert splits.train.class_counts().tolist() == [40, 40, 40]
    assert splits.val.class_counts().tolist() == [5, 5, 5]


@pytest.mark.parametrize("split", [(0.5, 0.5, 0.5), (0.0, 0.5, 0.5), (0.8, 0.3, -0.1), (0.9, 0.1)])
def test_split_rejects_bad_fractions(split: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="split"):
        stratified_split(torch.zeros(10, dtype=torch.long), split)


def test_spike_dataset_validates() -> None:
    spikes, feats = torch.zeros(4, 3, 2), torch.zeros(4, 2)
    with pytest.raises(ValueError, match="same length"):
        SpikeDataset(spikes, feats, torch.zeros(3, dtype=torch.long), 2, "x")
    with pytest.raises(ValueError, match="labels"):
        SpikeDataset(spikes, feats, torch.full((4,), 2), 2, "x")
    with pytest.raises(ValueError, match="spikes"):
        SpikeDataset(torch.zeros(4, 3), feats, torch.zeros(4, dtype=torch.long), 2, "x")


# ---------------------------------------------------------------- loaders


def test_loader_covers_dataset_in_order() -> None:
    ds = make_synthetic(samples_per_class=25).train
    loader = make_loader(ds, batch_size=16)
    batches = list(loader)
    assert len(loader) == len(batches) == math.ceil(len(ds) / 16)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert torch.equal(x, ds.spikes)
    assert torch.equal(y, ds.labels)
    assert batches[0][0].shape == (16, ds.time_steps, ds.n_channels)
    feats = next(iter(make_loader(ds, batch_size=16, view="features")))[0]
    assert torch.equal(feats, ds.features[:16])
    assert all(b[0].shape[0] == 16 for b in make_loader(ds, batch_size=16, drop_last=True))


def test_loader_shuffle_seeded() -> None:
    ds = make_synthetic(samples_per_class=25).train

    def order(seed: int, epochs: int = 2) -> list[torch.Tensor]:
        loader = make_loader(ds, batch_size=8, shuffle=True, seed=seed, view="features")
        return [torch.cat([x for x, _ in loader]) for _ in range(epochs)]

    a, b, c = order(0), order(0), order(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])  # reshuffled each epoch
    assert not torch.equal(a[0], c[0])
    assert torch.equal(a[0].sort(dim=0).values, ds.features.sort(dim=0).values)


@pytest.mark.parametrize(("kwargs", "name"), [({"batch_size": 0}, "batch_size"), ({"view": "pixels"}, "view")])
def test_loader_rejects_bad_args(kwargs: dict[str, object], name: str) -> None:
    ds = make_synthetic().train
    with pytest.raises(ValueError, match=name):
        make_loader(ds, **{"batch_size": 4, **kwargs})  # type: ignore[arg-type]


# ---------------------------------------------------------------- digits


def test_digits_latency() -> None:
    splits = make_digits(time_steps=20)
    full = _all(splits)
    reference = load_digits()
    assert (splits.n_inputs, splits.n_features, splits.n_classes, splits.time_steps) == (64, 64, 10, 20)
    assert len(full) == 1797
    assert torch.equal(full.class_counts(), torch.bincount(torch.as_tensor(reference.target), minlength=10))
    pixels = torch.as_tensor(reference.data, dtype=torch.float32) / 16
    assert torch.equal(full.features.sum(dim=0).sort().values, pixels.sum(dim=0).sort().values)
    assert torch.equal(full.spikes, latency_encode(full.features, 20, high_first=True, threshold=0.0))
    assert torch.equal(full.spikes.sum(dim=1), (full.features > 0).float())
    first = full.spikes[:, 0, :]  # full-intensity pixels fire at step 0
    assert torch.equal(first, (full.features == 1).float())


def test_digits_rate_and_determinism() -> None:
    a = make_digits(encoding="rate", time_steps=10, max_prob=0.5, seed=1)
    full = _all(a)
    assert torch.all(full.spikes.sum(dim=1)[full.features == 0] == 0)
    expected = 0.5 * full.features.mean().item()
    assert abs(full.spikes.mean().item() - expected) < 0.01
    _assert_same(a, make_digits(encoding="rate", time_steps=10, max_prob=0.5, seed=1))
    b = make_digits(encoding="rate", time_steps=10, max_prob=0.5, seed=2)
    assert not torch.equal(a.train.labels, b.train.labels)


@pytest.mark.parametrize(
    ("param", "value"), [("encoding", "phase"), ("time_steps", 0), ("max_prob", 1.5), ("seed", -3)]
)
def test_digits_rejects_bad_params(param: str, value: object) -> None:
    with pytest.raises(ValueError, match=param):
        make_digits(**{param: value})  # type: ignore[arg-type]


# ---------------------------------------------------------------- synthetic and registry


def test_synthetic_latency_and_rate() -> None:
    splits = make_synthetic(n_classes=3, n_channels=6, samples_per_class=20, time_steps=15)
    full = _all(splits)
    assert full.spikes.shape == (60, 15, 6)
    assert full.features.shape == (60, 6)
    assert torch.equal(full.spikes, latency_encode(full.features, 15))
    rate = _all(make_synthetic(coding="rate", time_steps=15))
    assert torch.all(rate.spikes.sum(dim=1)[rate.features == 0] == 0)
    assert torch.all(rate.spikes.sum(dim=1)[rate.features == 1] == 15)


def test_synthetic_deterministic() -> None:
    _assert_same(make_synthetic(seed=3), make_synthetic(seed=3))
    assert not torch.equal(make_synthetic(seed=3).train.features, make_synthetic(seed=4).train.features)


@pytest.mark.parametrize(("param", "value"), [("noise", -0.1), ("coding", "phase"), ("n_classes", 1)])
def test_synthetic_rejects_bad_params(param: str, value: object) -> None:
    with pytest.raises(ValueError, match=param):
        make_synthetic(**{param: value})  # type: ignore[arg-type]


def test_registry() -> None:
    assert {"randman", "digits", "synthetic"} <= set(available_datasets())
    _assert_same(get_dataset("synthetic", seed=2, n_channels=4), make_synthetic(seed=2, n_channels=4))
    with pytest.raises(ValueError, match="randman"):
        get_dataset("mnist")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("randman")(make_synthetic)
