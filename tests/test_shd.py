"""SHD/SSC from HDF5 files in the real layout (h5py vlen datasets): binning, ANN view, splits, errors, configs, app."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from evoexp.data import available_datasets, get_dataset, make_shd, make_ssc
from evoexp.data.shd import N_CHANNELS, bin_events, check_layout, read_events
from evoexp.job.build import build_dataset, build_model
from evoexp.job.config import ConfigValidationError, load_config

REPO = Path(__file__).resolve().parents[1]


def write_file(
    path: Path,
    times: Sequence[Sequence[float]],
    units: Sequence[Sequence[int]],
    labels: Sequence[int],
    *,
    time_dtype: type = np.float16,
    unit_dtype: type = np.uint16,
) -> Path:
    """Write samples in the layout of the SHD/SSC files: vlen ``spikes/times`` and ``spikes/units``, ``labels``."""
    with h5py.File(path, "w") as f:
        spikes = f.create_group("spikes")
        for name, rows, dtype in (("times", times, time_dtype), ("units", units, unit_dtype)):
            ds = spikes.create_dataset(name, (len(rows),), dtype=h5py.vlen_dtype(dtype))
            for i, row in enumerate(rows):
                ds[i] = np.asarray(row, dtype=dtype)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), dtype=np.uint16))  # as in the real files
    return path


def random_file(path: Path, *, n_classes: int = 20, per_class: int = 5, seed: int = 0) -> Path:
    """A small random file: 20-60 spikes per sample over 0-1.6 s (some after the default 1.4 s window)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    rng.shuffle(labels)
    counts = rng.integers(20, 60, size=len(labels))
    times = [np.sort(rng.uniform(0.0, 1.6, size=k)) for k in counts]
    units = [rng.integers(0, N_CHANNELS, size=k) for k in counts]
    return write_file(path, times, units, labels, time_dtype=np.float32)


@pytest.fixture
def shd_files(tmp_path: Path) -> tuple[Path, Path]:
    return random_file(tmp_path / "shd_train.h5", per_class=10), random_file(tmp_path / "shd_test.h5", seed=1)


# ---------------------------------------------------------------- binning and the ANN view


def test_binning_hand_values(tmp_path: Path) -> None:
    times = [[0.0, 0.1, 0.25, 0.5, 0.99, 1.0, 1.5], [], [0.3]]
    units = [[0, 0, 1, 2, 699, 3, 3], [], [7]]
    events = read_events(write_file(tmp_path / "a.h5", times, units, [3, 0, 19]), n_classes=20)
    spikes, dropped = bin_events(events, time_steps=4, duration=1.0)
    expected = torch.zeros(3, 4, N_CHANNELS)
    expected[0, 0, 0] = 2  # 0.0 and 0.1 s share bin [0, 0.25): counted
    expected[0, 1, 1] = expected[0, 2, 2] = expected[0, 3, 699] = 1
    expected[2, 1, 7] = 1
    assert torch.equal(spikes, expected)
    assert dropped == 2  # 1.0 s and 1.5 s lie outside [0, duration)
    assert events.labels.tolist() == [3, 0, 19]


def test_features_are_the_spike_counts_flattened_time_major(shd_files: tuple[Path, Path]) -> None:
    data = make_shd(path=shd_files[0], test_path=shd_files[1], time_steps=7, duration=1.4)
    for part in (data.train, data.val, data.test):
        assert part.features.shape == (len(part), 7 * N_CHANNELS)
        n, k, c = 1, 3, 123
        assert part.features[n, k * N_CHANNELS + c] == part.spikes[n, k, c]
        assert torch.equal(part.features.reshape(-1, 7, N_CHANNELS), part.spikes)
    assert (data.n_inputs, data.n_classes, data.time_steps, data.name) == (700, 20, 7, "shd")


def test_every_spike_in_the_window_is_counted(shd_files: tuple[Path, Path]) -> None:
    data = make_shd(path=shd_files[0], test_path=shd_files[1], time_steps=50, duration=1.4)
    events = read_events(shd_files[1], n_classes=20)
    in_window = sum(int((t < 1.4).sum()) for t in events.times)
    assert 0 < in_window < sum(len(t) for t in events.times)  # the file has spikes on both sides of 1.4 s
    assert data.test.spikes.sum().item() == in_window
    assert torch.equal(data.test.labels, torch.from_numpy(events.labels))  # the test file, in file order


# ---------------------------------------------------------------- splits


def test_validation_split_is_stratified_and_seeded(shd_files: tuple[Path, Path]) -> None:
    train_file, test_file = shd_files
    data = make_shd(path=train_file, test_path=test_file, time_steps=5, seed=3)
    assert data.val.class_counts().tolist() == [1] * 20  # round(10 * 0.1) per class
    assert data.train.class_counts().tolist() == [9] * 20
    again = make_shd(path=train_file, test_path=test_file, time_steps=5, seed=3)
    other = make_shd(path=train_file, test_path=test_file, time_steps=5, seed=4)
    assert torch.equal(again.val.spikes, data.val.spikes)
    assert torch.equal(again.train.labels, data.train.labels)
    assert not torch.equal(other.val.spikes, data.val.spikes)
    # train + val are exactly the training file's samples
    file_spikes = bin_events(read_events(train_file, n_classes=20), time_steps=5, duration=1.4)[0]
    assert data.train.spikes.sum() + data.val.spikes.sum() == file_spikes.sum()


def test_single_file_split_into_all_three(shd_files: tuple[Path, Path]) -> None:
    data = make_shd(path=shd_files[0], split=[0.8, 0.1, 0.1], time_steps=5)
    assert [len(data.train), len(data.val), len(data.test)] == [160, 20, 20]
    assert data.test.class_counts().tolist() == [1] * 20


def test_ssc_has_35_classes_and_takes_each_split_from_its_file(tmp_path: Path) -> None:
    files = [random_file(tmp_path / f"ssc_{p}.h5", n_classes=35, per_class=2, seed=i) for i, p in enumerate("tvs")]
    data = make_ssc(path=files[0], val_path=files[1], test_path=files[2], time_steps=5)
    assert data.n_classes == 35
    assert [len(data.train), len(data.val), len(data.test)] == [70, 70, 70]
    assert torch.equal(data.val.labels, torch.from_numpy(read_events(files[1], n_classes=35).labels))
    with pytest.raises(ValueError, match=r"^test_path: .*ssc_s\.h5: sample \d+ has label \d+ outside \[0, 20\)"):
        make_shd(path=random_file(tmp_path / "shd.h5", per_class=2), test_path=files[2])
    assert {"shd", "ssc"} <= set(available_datasets())
    assert get_dataset("ssc", path=files[0], val_path=files[1], test_path=files[2], time_steps=5).name == "ssc"


# ---------------------------------------------------------------- errors: one line naming the path


def _valid() -> dict:
    return {"times": [[0.1, 0.2], [0.3], [0.5, 0.6, 0.7]], "units": [[1, 2], [3], [4, 5, 6]], "labels": [0, 1, 2]}


def _malformed(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.h5"
    v = _valid()
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "not_hdf5":
        path.write_text("this is not HDF5\n")
    elif kind == "gzip":
        raw = write_file(tmp_path / "raw.h5", v["times"], v["units"], v["labels"])
        path.write_bytes(gzip.compress(raw.read_bytes()))
    elif kind == "no_units":
        with h5py.File(path, "w") as f:
            f.create_dataset("spikes/times", (3,), dtype=h5py.vlen_dtype(np.float16))
            f.create_dataset("labels", data=np.zeros(3, dtype=np.uint16))
    elif kind == "lengths":
        write_file(path, v["times"], v["units"], [0, 1])
    elif kind == "padded":
        with h5py.File(path, "w") as f:
            f.create_dataset("spikes/times", data=np.zeros((3, 4)))
            f.create_dataset("spikes/units", data=np.zeros((3, 4), dtype=np.int64))
            f.create_dataset("labels", data=np.zeros(3, dtype=np.uint16))
    elif kind == "int_times":
        write_file(path, [[1, 2], [3], [4, 5, 6]], v["units"], v["labels"], time_dtype=np.int32)
    elif kind == "sample_lengths":
        write_file(path, v["times"], [[1, 2], [3], [4, 5]], v["labels"])
    elif kind == "unit_range":
        write_file(path, v["times"], [[1, 2], [3], [4, 700, 6]], v["labels"])
    elif kind == "negative_time":
        write_file(path, [[0.1, 0.2], [-0.3], [0.5, 0.6, 0.7]], v["units"], v["labels"])
    elif kind == "nan_time":
        write_file(path, [[0.1, 0.2], [0.3], [0.5, math.nan, 0.7]], v["units"], v["labels"])
    elif kind == "label_range":
        write_file(path, v["times"], v["units"], [0, 20, 2])
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("not_hdf5", "not a readable HDF5 file"),
        ("gzip", r"is gzip-compressed; unpack it first \(gunzip gzip\.h5\)"),
        ("no_units", "no dataset 'spikes/units'"),
        ("lengths", r"datasets differ in length \(spikes/times 3, spikes/units 3, labels 2\)"),
        ("padded", r"spikes/times must be 1-d .* got shape \(3, 4\)"),
        ("int_times", "spikes/times must hold one array of float seconds per sample"),
        ("sample_lengths", "sample 2 has 3 spike times but 2 units"),
        ("unit_range", r"sample 2 has unit 700 outside \[0, 700\)"),
        ("negative_time", r"sample 1 has spike time -0\.3\d* \(must be finite seconds >= 0\)"),
        ("nan_time", "sample 2 has spike time nan"),
        ("label_range", r"sample 1 has label 20 outside \[0, 20\)"),
    ],
)
def test_malformed_files_fail_with_one_line_naming_the_path(tmp_path: Path, kind: str, message: str) -> None:
    path = _malformed(tmp_path, kind)
    with pytest.raises(ValueError, match=message) as info:
        make_shd(path=path, split=[0.4, 0.3, 0.3])
    text = str(info.value)
    assert text.startswith(f"path: {path}")
    assert "\n" not in text


def test_the_valid_twin_of_the_malformed_files_loads(tmp_path: Path) -> None:
    v = _valid()
    path = write_file(tmp_path / "ok.h5", v["times"], v["units"], v["labels"])
    assert check_layout(path) == 3
    data = make_shd(path=path, val_path=path, test_path=path, split=[1.0, 0.0, 0.0], time_steps=10, duration=1.0)
    assert [len(p) for p in (data.train, data.val, data.test)] == [3, 3, 3]
    with pytest.raises(ValueError, match=r"^path: .*ok\.h5: split=\[0\.4, 0\.3, 0\.3\] leaves the validation and test"):
        make_shd(path=path, split=[0.4, 0.3, 0.3], time_steps=10, duration=1.0)  # one sample per class: empty splits


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": None}, r"path must name the HDF5 file to train on .*zenkelab\.org"),
        ({"split": [0.8, 0.1, 0.1]}, r"^split gives test a fraction 0\.1 but test_path is the test set; .*0\]$"),
        ({"test_path": None}, "split leaves no test samples: set test_path"),
        ({"split": [1.0, 0.0, 0.0]}, "split leaves no validation samples: set val_path"),
        ({"test_path": "nowhere.h5"}, r"test_path: .*nowhere\.h5: no such file"),
    ],
)
def test_sources_must_fit_the_split(shd_files: tuple[Path, Path], kwargs: dict, message: str) -> None:
    arguments = {"path": shd_files[0], "test_path": shd_files[1], "split": [0.9, 0.1, 0.0], **kwargs}
    with pytest.raises(ValueError, match=message):
        make_shd(**arguments)


# ---------------------------------------------------------------- configs: dataset=shd / ssc, model=shd


def test_dataset_and_model_presets_build_the_700_256_20_network(
    compose_config: Callable[..., DictConfig], shd_files: tuple[Path, Path],
) -> None:
    overrides = ["dataset=shd", "model=shd", f"dataset.path={shd_files[0]}", f"dataset.test_path={shd_files[1]}"]
    config = load_config(compose_config(*overrides, "dataset.time_steps=6"))
    d, m = config.dataset.args, config.model.args
    assert config.dataset.path == "evoexp.data.make_shd"
    assert (d["duration"], d["split"], d["val_path"]) == (1.4, [0.9, 0.1, 0.0], None)
    data = build_dataset(config)
    assert (data.name, data.n_inputs, data.n_classes, data.time_steps) == ("shd", 700, 20, 6)
    snn = build_model(config, data).model
    assert snn(data.train.spikes[:2]).shape == (2, 20)
    settings = (m["hidden_sizes"], m["recurrent"], m["reset"], m["detach_reset"], m["readout"])
    assert settings == ([256], True, "zero", True, "max")
    # the per-step decays of Zenke's SHD tutorial at the 14 ms bins of 100 steps over 1.4 s
    assert m["dt"] == pytest.approx(1000 * 1.4 / 100)
    assert math.exp(-m["dt"] / m["tau_syn"]) == pytest.approx(math.exp(-1 / 5))
    assert math.exp(-m["dt"] / m["tau_mem"]) == pytest.approx(math.exp(-1 / 10))


def test_ssc_preset_takes_three_files(compose_config: Callable[..., DictConfig], tmp_path: Path) -> None:
    files = [random_file(tmp_path / f"ssc_{p}.h5", n_classes=35, per_class=1, seed=i) for i, p in enumerate("tvs")]
    keys = ("path", "val_path", "test_path")
    overrides = ["dataset=ssc", *(f"dataset.{k}={f}" for k, f in zip(keys, files)), "dataset.time_steps=4"]
    config = load_config(compose_config(*overrides))
    data = build_dataset(config)
    assert (data.n_classes, len(data.train), len(data.val), len(data.test)) == (35, 35, 35, 35)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], r"dataset\.path must name the HDF5 file"),
        (["dataset.path={missing}"], r"^dataset\.path: .*nowhere\.h5: no such file$"),
        (["dataset.path={train}"], r"dataset\.split leaves no test samples: set dataset\.test_path"),
        (
            ["dataset.path={train}", "dataset.test_path={test}", "dataset.split=[0.8,0.1,0.1]"],
            r"^dataset\.split gives test a fraction 0\.1 but .* e\.g\. dataset\.split=\[0\.9,0\.1,0\]$",
        ),
        (["dataset.path={train}", "dataset.test_path={test}", "dataset.duration=0"], r"dataset\.duration must be"),
    ],
)
def test_config_errors_name_the_key(
    compose_config: Callable[..., DictConfig], shd_files: tuple[Path, Path], overrides: list[str], message: str,
) -> None:
    names = {"train": shd_files[0], "test": shd_files[1], "missing": shd_files[0].parent / "nowhere.h5"}
    cfg = compose_config("dataset=shd", *(o.format(**names) for o in overrides))
    with pytest.raises(ConfigValidationError, match=message):
        build_dataset(load_config(cfg))  # make_shd checks its files first (prepare, before any run)


# ---------------------------------------------------------------- the app


def _evoexp(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "evoexp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_app_without_the_file_fails_in_one_line_before_any_run(tmp_path: Path) -> None:
    done = _evoexp(tmp_path, "dataset=shd", "dataset.path=data/shd_train.h5", "dataset.test_path=data/shd_test.h5")
    assert done.returncode == 1
    assert done.stderr.strip() == "evoexp: error: dataset.path: data/shd_train.h5: no such file"
    assert not (tmp_path / "mlruns.db").exists()


def test_app_trains_and_verifies_on_a_generated_shd_file(tmp_path: Path, shd_files: tuple[Path, Path]) -> None:
    done = _evoexp(
        tmp_path,
        "dataset=shd",
        "model=shd",
        f"dataset.path={shd_files[0]}",
        f"dataset.test_path={shd_files[1]}",
        "dataset.time_steps=8",
        "model.hidden_sizes=[16]",
        "trainer.epochs=2",
        "trainer.batch_size=50",
        "verifier.samples=2",
        "verifier.gradient.n_directions=1",
        "verifier.surrogate.n_points=500",
        "verifier.stability.n_batches=1",
        "verifier.stability.n_steps=1",
        "figures=false",
        "tracking=off",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shd test: 100 samples from" in done.stdout + done.stderr  # the binning log line
    (results_file,) = (tmp_path / "outputs").rglob("results.json")
    results = json.loads(results_file.read_text())
    assert results["outcome"] == "finished"
    assert results["config"]["dataset"]["path"] == str(shd_files[0])
    assert results["results"]["gradient_verification"]["passed"] is True
    assert 0.0 <= results["objective"] <= 1.0
    assert results["results"]["benchmark"]["ann"]["n_params"] == 8 * 700 * 16 + 16 + 16 * 20 + 20


# ---------------------------------------------------------------- bad data inside files (issue 20 §4)


def _damaged(path: Path) -> Path:
    """A valid file whose labels are stored in gzip chunks of 2 samples, the chunk of samples 2-3 overwritten."""
    v = _valid()
    times, units, labels = v["times"] * 2, v["units"] * 2, v["labels"] * 2
    write_file(path, times, units, labels)
    with h5py.File(path, "a") as f:
        del f["labels"]
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16), chunks=(2,), compression="gzip")
        info = f["labels"].id.get_chunk_info(1)
    with path.open("r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(b"\xff" * info.size)
    return path


def _bad_content(tmp_path: Path, kind: str) -> Path:
    """A file whose layout is right and whose values are not (or that cannot be read past its headers)."""
    path = tmp_path / f"{kind}.h5"
    if kind == "damaged":
        return _damaged(path)
    if kind == "no_samples":
        return write_file(path, [], [], [])
    if kind == "float_labels":
        v = _valid()
        write_file(path, v["times"], v["units"], v["labels"])
        with h5py.File(path, "a") as f:
            del f["labels"]
            f.create_dataset("labels", data=np.asarray(v["labels"], dtype=np.float32))
        return path
    return _malformed(tmp_path, kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("sample_lengths", "sample 2 has 3 spike times but 2 units"),
        ("unit_range", r"sample 2 has unit 700 outside \[0, 700\)"),
        ("negative_time", r"sample 1 has spike time -0\.3\d* \(must be finite seconds >= 0\)"),
        ("nan_time", "sample 2 has spike time nan"),
        ("label_range", r"sample 1 has label 20 outside \[0, 20\)"),
        ("int_times", "spikes/times must hold one array of float seconds per sample"),
        ("float_labels", "labels must be integers, got float32"),
        ("damaged", r"labels of sample 2 cannot be read \(.*\): the file is damaged"),
        ("no_samples", "holds no samples"),
    ],
)
def test_bad_values_fail_at_composition_naming_key_file_and_sample(
    compose_config: Callable[..., DictConfig], tmp_path: Path, shd_files: tuple[Path, Path], kind: str, message: str
) -> None:
    bad = _bad_content(tmp_path, kind)
    for key, overrides in (
        ("dataset.path", [f"dataset.path={bad}", f"dataset.test_path={shd_files[1]}"]),
        ("dataset.test_path", [f"dataset.path={shd_files[0]}", f"dataset.test_path={bad}"]),
    ):
        cfg = compose_config("dataset=shd", *overrides)
        with pytest.raises(ConfigValidationError, match=message) as info:
            load_config(cfg)
        text = str(info.value)
        assert text.startswith(f"{key}: {bad}: ") and "\n" not in text, text


def test_one_sample_per_class_leaves_the_validation_split_empty(
    compose_config: Callable[..., DictConfig], tmp_path: Path, shd_files: tuple[Path, Path]
) -> None:
    single = random_file(tmp_path / "one_per_class.h5", per_class=1)
    sources = [f"dataset.path={single}", f"dataset.test_path={shd_files[1]}"]
    cfg = compose_config("dataset=shd", *sources)
    with pytest.raises(ConfigValidationError) as info:
        load_config(cfg)
    assert str(info.value).startswith(f"dataset.path: {single}: dataset.split=[0.9, 0.1, 0.0] leaves the validation")
    assert "smallest class has 1 sample" in str(info.value)
    # the validation set from its own file: nothing is carved out of the single-sample classes
    overrides = [f"dataset.val_path={shd_files[0]}", "dataset.split=[1.0,0.0,0.0]"]
    cfg = compose_config("dataset=shd", *sources, *overrides)
    assert load_config(cfg).dataset.args["path"] == str(single)


def test_a_file_is_validated_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evoexp.data import shd

    path = random_file(tmp_path / "f.h5", per_class=2)
    reads: list[Path] = []
    real = shd.read_events
    monkeypatch.setattr(shd, "read_events", lambda p, **kw: reads.append(p) or real(p, **kw))
    for _ in range(2):
        assert len(shd.check_contents(path, n_classes=20)) == 40
    assert len(reads) == 1
    write_file(path, [[0.1]], [[1]], [0])  # rewritten: validated again
    assert len(shd.check_contents(path, n_classes=20)) == 1 and len(reads) == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_fails_at_once(tmp_path: Path) -> None:
    pipe = tmp_path / "shd_train.h5"
    os.mkfifo(pipe)
    with pytest.raises(ValueError, match=rf"^dataset\.path: {pipe}: is a named pipe, not a regular file"):
        check_layout(pipe, key="dataset.path")


def test_app_bad_file_or_named_pipe_fails_in_one_line_and_leaves_nothing(
    tmp_path: Path, shd_files: tuple[Path, Path]
) -> None:
    """The real CLI, in a fresh directory: one line, exit 1, no outputs/ and no store (a pipe does not hang it)."""
    bad = _malformed(tmp_path, "label_range")
    cases = [(bad, f"evoexp: error: dataset.path: {bad}: sample 1 has label 20 outside [0, 20)")]
    if hasattr(os, "mkfifo"):
        pipe = tmp_path / "pipe.h5"
        os.mkfifo(pipe)
        text = "is a named pipe, not a regular file; give the HDF5 file itself"
        cases.append((pipe, f"evoexp: error: dataset.path: {pipe}: {text}"))
    for source, expected in cases:
        cwd = tmp_path / f"run_{source.stem}"
        cwd.mkdir()
        done = _evoexp(cwd, "dataset=shd", f"dataset.path={source}", f"dataset.test_path={shd_files[1]}")
        assert done.returncode == 1 and done.stderr.strip() == expected, done.stderr[-2000:]
        assert sorted(p.name for p in cwd.iterdir()) == [], list(cwd.iterdir())
