"""Seconds per training epoch of a foreign network through evoexp's pipeline vs a hand-written loop in its library.

For each example preset (``model=snntorch_conv``, ``model=spikingjelly_mlp``, ``model=norse_lif`` on rate-coded
digits, ``T = 10``, batch 64) the network is built twice from the same weights:

* **evoexp**: the job's route (:func:`evoexp.job.prepare.prepare`: the config's call, the configured surrogate
  installed into the neurons, fed and read as the preset says, its neurons reset before each forward), trained with
  :func:`evoexp.training.train_epoch`, the training pipeline of every job (it also measures the loss, the accuracy
  and the per-layer gradient norms of every batch);
* **hand-written**: the library's own network class with the library's equal surrogate (snnTorch ``atan``,
  SpikingJelly ``ATan``, Norse ``super`` for the configured evoexp ``atan``/``fast_sigmoid``), trained by the loop of
  the library's tutorials: time-first batches, the same readout, ``loss.backward()``, ``optimizer.step()``, the loss
  read with ``.item()``, SpikingJelly's ``functional.reset_net`` after each batch.

Both train with Adam on the same batches, one epoch each in turn (round-robin, so that machine drift cancels); the
first epoch of each is warm-up. Printed: median seconds per epoch, their ratio (target <= 1.05), the ratio of the
fastest epochs (less sensitive to a shared machine's load) and the torch thread count. ``--quick`` times 2 epochs
each of snntorch_conv only (CI).

Usage: ``python benchmarks/bench_foreign_epoch.py [--epochs N] [--threads 1] [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable

import torch
from hydra import compose, initialize_config_module
from torch import Tensor, nn
from torch.nn import functional as F

from evoexp.job.build import build_loader
from evoexp.job.config import load_config, register_configs
from evoexp.job.prepare import prepare
from evoexp.training import train_epoch

PRESETS = {
    "snntorch_conv": ["model=snntorch_conv", "dataset.image=true", "surrogate=atan", "surrogate.slope=2"],
    "spikingjelly_mlp": ["model=spikingjelly_mlp", "surrogate=atan", "surrogate.slope=2"],
    "norse_lif": ["model=norse_lif", "surrogate=fast_sigmoid", "surrogate.slope=1"],
}
COMMON = ["dataset=digits", "dataset.encoding=rate", "dataset.time_steps=10", "trainer.batch_size=64", "tracking=off"]


def hand_written(name: str, trained: nn.Module) -> tuple[nn.Module, Callable[[nn.Module, Tensor, Tensor], Tensor]]:
    """The library's network with its own equal surrogate (weights copied from ``trained``) and the tutorial's step."""
    if name == "snntorch_conv":
        from snntorch import surrogate

        from evoexp.examples.snntorch_conv import SnnTorchConv

        net: nn.Module = SnnTorchConv(10, (1, 8, 8))
        net.lif1.spike_grad = net.lif2.spike_grad = surrogate.atan(alpha=2.0)

        def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            _, mem_rec = model(x)
            return F.cross_entropy(mem_rec.mean(0), y)

    elif name == "spikingjelly_mlp":
        from spikingjelly.activation_based import functional

        from evoexp.examples.spikingjelly_mlp import SpikingJellyMLP

        net = SpikingJellyMLP(64, 10)

        def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            value = F.cross_entropy(model(x).sum(0), y)
            functional.reset_net(model)  # the tutorial's reset after each batch (the graph is kept until backward)
            return value

    else:
        from norse.torch import LIFParameters

        from evoexp.examples.norse_lif import NorseLIF

        net = NorseLIF(64, 10, dt=0.005)
        net.lif.p = LIFParameters(**{**net.lif.p._asdict(), "method": "super"})

        def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(model(x).amax(0), y)

    state = {k.removeprefix("network."): v for k, v in trained.state_dict().items()}
    net.load_state_dict(state, strict=False)
    return net, loss


def library_epoch(
    model: nn.Module, loss: Callable[[nn.Module, Tensor, Tensor], Tensor], loader: Iterable[tuple[Tensor, Tensor]]
) -> Callable[[], float]:
    """One epoch of the tutorial's loop: time-first batches, backward, step, the loss read per batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)

    def run() -> float:
        start = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad()
            value = loss(model, x.transpose(0, 1), y)
            value.backward()
            optimizer.step()
            value.item()
        return time.perf_counter() - start

    return run


def evoexp_epoch(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]]) -> Callable[[], float]:
    """One epoch of :func:`evoexp.training.train_epoch` (its own wall time)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    return lambda: train_epoch(model, loader, optimizer).seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs per contender (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="2 timed epochs of snntorch_conv (CI)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    presets = ["snntorch_conv"] if args.quick else list(PRESETS)
    epochs = 2 if args.quick else args.epochs
    register_configs()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {epochs} timed epochs each, round-robin")
    for name in presets:
        with initialize_config_module("evoexp.conf", version_base=None):
            config = load_config(compose(config_name="config", overrides=[*PRESETS[name], *COMMON]))
        prepared = prepare(config)
        loader = build_loader(config, prepared.data, "train", view="spikes")
        reference, loss = hand_written(name, prepared.built.model)
        runners = {
            "evoexp": evoexp_epoch(prepared.built.model, loader),
            "hand-written": library_epoch(reference, loss, loader),
        }
        times: dict[str, list[float]] = {contender: [] for contender in runners}
        for epoch in range(1 + epochs):
            for contender, run in runners.items():
                seconds = run()
                if epoch:
                    times[contender].append(seconds)
        medians = {contender: statistics.median(values) for contender, values in times.items()}
        print(f"model={name}: {len(prepared.data.train)} samples, batch {config.trainer.batch_size}")
        for contender, values in times.items():
            spread = f"[{min(values):.3f}, {max(values):.3f}]"
            print(f"  {contender:13s} median {medians[contender]:.3f} s/epoch  range {spread}")
        ratio, best = medians["evoexp"] / medians["hand-written"], min(times["evoexp"]) / min(times["hand-written"])
        print(f"  ratio evoexp / hand-written: {ratio:.3f} (medians; target <= 1.05), {best:.3f} (fastest epochs)")


if __name__ == "__main__":
    main()
