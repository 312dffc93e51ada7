"""Any network and any dataset from a config: signature checks, feeding and reading, the installed surrogate, the
checks before a run, the SNN-vs-ANN comparison given or not configured (in-process; the app: tests/test_examples.py).

The networks and datasets a config names here live in this module, which the test run can import
(``model._target_=test_your_network.Recurrent``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from evoexp import surrogate as surrogate_module
from evoexp.data import DatasetSplits, make_digits
from evoexp.examples import tonic_nmnist
from evoexp.job.config import Config, ConfigValidationError, Target, load_config
from evoexp.job.config.targets import source_digests
from evoexp.job.prepare import prepare
from evoexp.job.run import ANN_NOT_CONFIGURED, run_experiment
from evoexp.models import FedNetwork, feed
from evoexp.results import SkippedResult
from evoexp.surrogate import get_surrogate
from evoexp.verification.spiking import install_surrogate, keep_state_fresh

HERE = "test_your_network"
# A time-first network returning (scores, scores) per step, on tiny_data, trained briefly.
RECURRENT = [
    "trainer.epochs=2",
    "trainer.batch_size=16",
    "trainer.lr=0.02",
    "verifier.samples=4",
    "verifier.gradient.n_directions=1",
    "verifier.stability.n_batches=2",
    "verifier.surrogate.n_points=1000",
    "figures=false",
    "tracking=off",
    "dataset=custom",
    f"dataset._target_={HERE}.tiny_data",
    "model=custom",
    f"model._target_={HERE}.Recurrent",
    "model.input_layout=time_first",
    "model.output_index=0",
    "model.time_reduction=mean",
    "surrogate.install=false",
    "verifier.checks=[gradient_verification,gradient_stability,convergence,benchmark]",
]


# ------------------------------------------------------------------ what a config names


def tiny_data(n_classes: int = 3, per_split: int = 24, seed: int = 0) -> DatasetSplits:
    """Three classes of noisy prototypes, 5 steps of 4 channels, with static features."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(n_classes, 4, generator=generator)

    def split() -> tuple[Tensor, Tensor, Tensor]:
        labels = torch.arange(per_split) % n_classes
        features = (prototypes[labels] + 0.05 * torch.randn(per_split, 4, generator=generator)).clamp(0, 1)
        spikes = (torch.rand(per_split, 5, 4, generator=generator) < features[:, None]).float()
        return spikes, labels, features

    return DatasetSplits.from_tensors(split(), split(), split(), n_classes=n_classes, name="tiny")


def no_features() -> DatasetSplits:
    x, y = torch.rand(12, 5, 4), torch.arange(12) % 3
    return DatasetSplits.from_tensors((x, y), (x, y), (x, y))


class Recurrent(nn.Module):
    """A leaky integrator over time-first input ``[T, B, C]``; returns per-step scores twice (a tuple)."""

    def __init__(self, n_inputs: int, n_classes: int, hidden: int = 8) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(n_inputs, hidden), nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, steps = torch.zeros(x.shape[1], self.fc1.out_features), []
        for t in range(x.shape[0]):
            h = 0.5 * h + self.fc1(x[t])
            steps.append(self.fc2(torch.tanh(h)))
        scores = torch.stack(steps)
        return scores, 2 * scores


class Typed(nn.Module):
    """A network with annotated arguments and a required one."""

    def __init__(self, n_inputs: int, n_classes: int, *, width: int, mode: str = "a") -> None:
        super().__init__()
        self.fc = nn.Linear(n_inputs, n_classes)


class Ann(nn.Module):
    """The user's ANN on the static features."""

    def __init__(self, n_inputs: int, n_classes: int, hidden: int = 8) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # type: ignore[no-any-return]


@pytest.fixture
def config_of(compose_config: Callable[..., DictConfig]) -> Callable[..., Config]:
    """Compose and load the config of ``overrides``, as a job does."""
    return lambda *overrides: load_config(compose_config(*overrides))


# ------------------------------------------------------------------ a network from a config


def test_a_network_from_a_config_is_checked_and_trained_and_the_benchmark_is_not_configured(
    config_of: Callable[..., Config],
) -> None:
    outcome = run_experiment(config_of(*RECURRENT))
    assert outcome.model["target"] == f"{HERE}.Recurrent" and outcome.model["library"] == "torch"
    assert outcome.model["params"] == sum(p.numel() for p in Recurrent(4, 3).parameters())
    assert outcome.results["gradient_verification"].passed is True
    benchmark = outcome.results["benchmark"]
    assert isinstance(benchmark, SkippedResult) and benchmark.reason == ANN_NOT_CONFIGURED
    assert "ann" not in outcome.training and not any(key.startswith(("ann/", "benchmark/")) for key in outcome.metrics)
    assert math.isfinite(outcome.metrics["snn/test/acc_best"])


def test_the_users_ann_is_trained_and_compared_through_the_library(config_of: Callable[..., Config]) -> None:
    checked = "verifier.gradient.parameters=[network.fc2.weight]"
    outcome = run_experiment(config_of(*RECURRENT, f"ann._target_={HERE}.Ann", "+ann.hidden=6", checked))
    assert list(outcome.results["gradient_verification"].per_tensor) == ["network.fc2.weight"]
    assert outcome.model["ann"] == f"{HERE}.Ann"
    assert outcome.training["ann"].n_params == sum(p.numel() for p in Ann(4, 3, hidden=6).parameters())
    gap = outcome.metrics["snn/val/best_acc"] - outcome.metrics["ann/val/best_acc"]
    assert outcome.metrics["benchmark/ann_params"] == outcome.training["ann"].n_params
    assert math.isfinite(outcome.metrics["benchmark/acc_gap"]) and math.isfinite(gap)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([f"model._target_={HERE}.Nope"], f"model._target_={HERE}.Nope: {HERE} has no attribute 'Nope'"),
        (["+model.width=3"], f"model.width is not an argument of {HERE}.Recurrent (its arguments: hidden)"),
        (["+model.n_classes=3"], "model.n_classes is passed by evoexp from the data"),
        ([f"model._target_={HERE}.Typed"], f"model.width is required by {HERE}.Typed (no default)"),
        ([f"model._target_={HERE}.Typed", "+model.width=wide"], "model.width='wide' does not fit int"),
        ([f"model._target_={HERE}.Typed", "+model.width=3", "+model.mode=1"], "model.mode=1 does not fit str"),
        (["ann._target_=torch.nn.Linear", "+ann.nope=1"], "ann.nope is not an argument of torch.nn.Linear"),
        (["dataset._target_=evoexp.data.make_digits", "+dataset.bins=3"], "dataset.bins is not an argument"),
    ],
)
def test_a_call_that_does_not_fit_the_signature_fails_at_load_with_one_line(
    overrides: list[str], message: str, config_of: Callable[..., Config]
) -> None:
    with pytest.raises(ConfigValidationError, match=re.escape(message)) as info:
        config_of(*RECURRENT, *overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.output_index=null"], "model.output_index is null, but the network returned a tuple of 2 ([5, 2, 3]"),
        (["model.output_index=2"], "model.output_index=2 is out of range: the network returned 2 elements"),
        (["model.time_reduction=none"], "model.time_reduction=none expects class scores [batch=2, classes], got [5"),
        (["model.input_layout=batch_first"], "model.input_layout=batch_first: the scores of a sample change with"),
        (["model.time_reduction=median"], "model.time_reduction must be one of none, sum, mean, max, last"),
        (["+model.hidden=-1"], f"model: {HERE}.Recurrent raised RuntimeError"),
        (
            [
                "model._target_=torch.nn.Linear",
                "+model.in_features=4",
                "+model.out_features=5",
                "model.output_index=null",
                "model.input_layout=batch_first",
            ],
            "model: torch.nn.Linear gives 5 class scores per sample (read [2, 5]), but the dataset has 3 classes",
        ),
        (["surrogate.install=true"], f"surrogate.install=true, but {HERE}.Recurrent holds no neuron"),
        (["trainer.rate_reg=0.1"], "trainer.rate_reg=0.1 needs the hidden spikes"),
        (
            ["verifier.gradient.parameters=[fc1.weight]"],
            "verifier.gradient.parameters names fc1.weight, which the "
            "model does not have (its tensors: network.fc1.weight, network.fc1.bias, network.fc2.weight",
        ),
        ([f"ann._target_={HERE}.Ann", "+ann.hidden=-1"], f"ann: {HERE}.Ann raised RuntimeError"),
        (
            ["ann._target_=torch.nn.Linear", "+ann.in_features=4", "+ann.out_features=2"],
            "ann: torch.nn.Linear must return class scores [2, 3] for 2 samples, got [2, 2]",
        ),
        ([f"dataset._target_={HERE}.no_features", f"ann._target_={HERE}.Ann"], "the dataset has no static features"),
    ],
)
def test_a_network_that_does_not_fit_fails_before_training_with_one_line(
    overrides: list[str], message: str, config_of: Callable[..., Config]
) -> None:
    config = config_of(*RECURRENT, *overrides)
    with pytest.raises(ConfigValidationError, match=re.escape(message)) as info:
        prepare(config)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ feeding and reading


@pytest.mark.parametrize("reduction", ["sum", "mean", "max", "last"])
def test_fed_network_reads_the_time_axis_of_either_layout(reduction: str) -> None:
    scores = torch.randn(6, 2, 3)  # [T, B, K]
    expected = {"sum": scores.sum(0), "mean": scores.mean(0), "max": scores.amax(0), "last": scores[-1]}[reduction]
    time_first = FedNetwork(nn.Identity(), input_layout="time_first", time_reduction=reduction)  # type: ignore[arg-type]
    assert torch.equal(time_first(scores.transpose(0, 1)), expected)  # fed [B, T, K], the network sees [T, B, K]
    batch_first = FedNetwork(nn.Identity(), time_reduction=reduction)  # type: ignore[arg-type]
    assert torch.equal(batch_first(scores.transpose(0, 1)), expected)
    assert feed(net := nn.Linear(3, 2)) is net  # nothing to do: the network itself


# ------------------------------------------------------------------ the surrogate installed into the library's neurons


def _input_grad(model: nn.Module, x: Tensor) -> Tensor:
    x = x.clone().requires_grad_(True)
    output = model(x)
    (output[0] if isinstance(output, tuple) else output).sum().backward()
    assert x.grad is not None
    return x.grad


def _snntorch_net(spike_grad: Any) -> nn.Module:
    snn = pytest.importorskip("snntorch")

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.lif = nn.Linear(4, 3), snn.Leaky(beta=0.9, spike_grad=spike_grad)

        def forward(self, x: Tensor) -> Tensor:
            mem, out = self.lif.init_leaky(), []
            for t in range(x.shape[0]):
                spk, mem = self.lif(self.fc(x[t]), mem)
                out.append(spk)
            return torch.stack(out)

    return Net()


def test_an_installed_surrogate_is_the_one_snntorch_neurons_run() -> None:
    surrogate = pytest.importorskip("snntorch.surrogate")
    x = 2 * torch.rand(6, 2, 4)
    net = _snntorch_net(surrogate.fast_sigmoid(slope=25))
    reference = _snntorch_net(surrogate.atan(alpha=2.0))  # snnTorch's atan(alpha) is evoexp's atan(slope=alpha)
    reference.load_state_dict(net.state_dict())
    before = _input_grad(net, x)
    (record,) = install_surrogate(net, get_surrogate("atan", slope=2.0))
    assert (record.module, record.library, record.neuron) == ("lif", "snntorch", "Leaky")
    assert record.previous.startswith("snntorch.surrogate.fast_sigmoid") and record.installed.startswith("atan(")
    after = _input_grad(net, x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _input_grad(reference, x))


def test_an_installed_surrogate_is_the_one_spikingjelly_nodes_run_and_their_state_is_fresh() -> None:
    pytest.importorskip("spikingjelly.activation_based.neuron")
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def net(fn: nn.Module) -> nn.Module:
        model = nn.Sequential(layer.Linear(4, 3), neuron.LIFNode(surrogate_function=fn))
        functional.set_step_mode(model, "m")
        return model

    x = 2 * torch.rand(6, 2, 4)
    model, reference = net(surrogate.Sigmoid()), net(surrogate.ATan(alpha=2.0))
    reference.load_state_dict(model.state_dict())
    install_surrogate(model, get_surrogate("atan", slope=2.0))
    torch.testing.assert_close(_input_grad(model, x), _input_grad(reference, x))
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        _input_grad(reference, x)  # its nodes kept the last forward's state (and graph)
    assert keep_state_fresh(model) == ("spikingjelly",)
    torch.testing.assert_close(_input_grad(model, x), _input_grad(model, x))  # every forward from reset nodes


def test_an_installed_surrogate_is_the_one_norse_cells_run_and_norse_is_left_as_it_was() -> None:
    norse = pytest.importorskip("norse.torch")
    from norse.torch.functional import lif as norse_lif

    class Net(nn.Module):
        def __init__(self, method: str) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.cell = norse.LIFCell(p=norse.LIFParameters(method=method), dt=5e-3)

        def forward(self, x: Tensor) -> Tensor:
            state, out = None, []
            for t in range(x.shape[0]):
                z, state = self.cell(self.fc(x[t]), state)
                out.append(z)
            return torch.stack(out)

    x = 4 * torch.rand(8, 2, 4)
    model, reference = Net("tanh"), Net("super")  # Norse 1.1's super is evoexp's fast_sigmoid(slope=1)
    reference.load_state_dict(model.state_dict())
    original = norse_lif.threshold
    (record,) = install_surrogate(model, get_surrogate("fast_sigmoid", slope=1.0))
    assert (record.module, record.library) == ("cell", "norse")
    torch.testing.assert_close(_input_grad(model, x), _input_grad(reference, x))
    assert norse_lif.threshold is original  # routed only while the installed cell runs


def test_a_surrogate_that_fails_the_runtime_check_after_installing_stops_the_job(
    monkeypatch: Any, config_of: Callable[..., Config]
) -> None:
    pytest.importorskip("snntorch")
    overrides = [
        "model=snntorch_conv",
        "dataset=digits",
        "dataset.image=true",
        "dataset.time_steps=3",
        "surrogate=atan",
        "surrogate.slope=2",
    ]
    config = config_of(*overrides)
    assert prepare(config).built.installed  # passes as installed
    for function in (surrogate_module._SurrogateSpike, surrogate_module._EagerSurrogateSpike):
        backward = function.backward  # the installed spike's backward (both forms), 1 % off
        monkeypatch.setattr(
            function,
            "backward",
            staticmethod(lambda ctx, grad, backward=backward: (1.01 * backward(ctx, grad)[0], None)),
        )
    with pytest.raises(
        ConfigValidationError,
        match=r"surrogate\.install: .*network\.lif1, network\.lif2.* fails the "
        r"runtime surrogate check after installing",
    ):
        prepare(config)


# ------------------------------------------------------------------ data


def test_splits_from_tensors_are_checked_naming_the_split() -> None:
    x, y = torch.rand(6, 5, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match=r"^split 'val': labels must lie in \[0, 3\), got \[0, 7\]$"):
        DatasetSplits.from_tensors((x, y), (x, y.clone().index_fill_(0, torch.tensor([1]), 7)), (x, y), n_classes=3)
    with pytest.raises(ValueError, match=r"^split 'test' is empty"):
        DatasetSplits.from_tensors((x, y), (x, y), (x[:0], y[:0]))
    with pytest.raises(ValueError, match=r"^split 'val' has spikes of shape \[N, 5, 3\], split 'train' \[N, 5, 4\]$"):
        DatasetSplits.from_tensors((x, y), (x[..., :3], y), (x, y))
    bad = x.clone()
    bad[2, 0, 0] = math.inf
    with pytest.raises(ValueError, match=r"^split 'train' has non-finite spikes \(NaN or Inf\), first in sample 2$"):
        DatasetSplits.from_tensors((bad, y), (x, y), (x, y))
    data = DatasetSplits.from_tensors((x, y, x[:, 0]), (x, y, x[:, 0]), (x, y, x[:, 0]))
    assert (data.n_classes, data.n_inputs, data.input_shape, data.n_features) == (3, 4, (4,), 4)


def test_splits_from_torch_datasets_stack_their_items() -> None:
    x, y = torch.rand(6, 5, 1, 2, 2), torch.arange(6) % 2
    data = DatasetSplits.from_datasets(TensorDataset(x, y), TensorDataset(x, y), TensorDataset(x, y), name="mine")
    assert torch.equal(data.train.spikes, x) and data.input_shape == (1, 2, 2) and data.n_inputs == 4
    assert data.n_features == 0  # no features: an ANN cannot be compared

    class Ragged(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[Tensor, int]:
            return torch.zeros(5, 4 + i), 0

    with pytest.raises(ValueError, match=r"^split 'val': item 1 has spikes of shape \(5, 5\), item 0 \(5, 4\)"):
        DatasetSplits.from_datasets(TensorDataset(x, y), Ragged(), TensorDataset(x, y))


def test_digits_as_images_are_the_same_pixels() -> None:
    flat, image = make_digits(time_steps=4), make_digits(time_steps=4, image=True)
    assert image.input_shape == (1, 8, 8) and image.feature_shape == (1, 8, 8) and image.n_inputs == 64
    assert torch.equal(image.train.spikes.flatten(2), flat.train.spikes)


def _write_recording(path: Path, events: list[tuple[int, int, int, int]]) -> None:
    """Write (x, y, t, p) events in N-MNIST's 40-bit format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = bytearray()
    for x, y, t, p in events:
        raw += bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])
    path.write_bytes(bytes(raw))


def test_tonic_nmnist_folders_are_read_without_tonic(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for part, n in (("Train", 10), ("Test", 2)):
        for digit in range(10):
            for k in range(n):
                events = [
                    (int(rng.integers(34)), int(rng.integers(34)), int(t), int(rng.integers(2)))
                    for t in sorted(rng.integers(0, 300_000, size=40))
                ]
                _write_recording(tmp_path / "NMNIST" / part / str(digit) / f"{k:05d}.bin", events)
    first = tmp_path / "NMNIST" / "Train" / "3" / "00000.bin"
    _write_recording(first, [(5, 7, 0, 1), (33, 0, 99_999, 0), (5, 7, 300_000, 1), (5, 7, 2**23 - 1, 0)])
    events = tonic_nmnist.read_events(first)
    assert events.tolist() == [(5, 7, 0, 1), (33, 0, 99_999, 0), (5, 7, 300_000, 1), (5, 7, 2**23 - 1, 0)]
    frames = tonic_nmnist.to_frames(events, 4)
    assert frames.shape == (4, 2, 34, 34) and frames.sum() == 4
    assert (frames[0, 1, 7, 5], frames[0, 0, 0, 33], frames[3, 0, 7, 5]) == (2.0, 1.0, 1.0)  # 300 ms < a quarter
    data = tonic_nmnist.nmnist(str(tmp_path), time_steps=4, max_per_class=5, val_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 20)
    assert data.input_shape == (2, 34, 34) and data.feature_shape == (2, 34, 34)
    assert torch.equal(data.train.spikes.sum(dim=1), data.train.features)
    (tmp_path / "NMNIST" / "Test" / "0" / "00000.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match=r"^root: .*00000\.bin is not an N-MNIST event file \(7 bytes"):
        tonic_nmnist.nmnist(str(tmp_path), time_steps=4, max_per_class=5)
    with pytest.raises(ValueError, match=r"^root: .* holds no N-MNIST Train recordings \(Tonic's layout"):
        tonic_nmnist.nmnist(str(tmp_path / "nowhere"))


def test_a_users_file_is_part_of_the_jobs_identity(tmp_path: Path, monkeypatch: Any) -> None:
    """An edit to the file that defines the network runs the job again instead of resuming it."""
    source = tmp_path / "user_nets_for_identity.py"
    source.write_text("from torch import nn\n\n\nclass Net(nn.Linear):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = Target("model", "user_nets_for_identity.Net")
    before = source_digests(model, Target("ann", None), Target("dataset", "evoexp.data.make_digits"))
    assert list(before) == ["model"]  # evoexp's own code is the code identity's
    source.write_text(source.read_text().replace("pass", "pass  # edited"))
    assert source_digests(model) != before
