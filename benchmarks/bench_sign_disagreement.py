"""Cost of measuring the sign disagreement during training, relative to the training itself (target: <= 20 %).

The network and data are those of ``experiment=robustness`` (Randman, 10 classes, 20 channels, 100 steps with the
spikes in the first half; 20 -> 128 -> 10 current-based LIF, reset to zero and detached, no bias, fast sigmoid of
slope 20; Adam 5e-3, batch 250), built with the library. Two contenders train the same initial network with
:func:`evoexp.training.train_model` (training, then the training and validation sets evaluated after every epoch):
without probes, and with the default :class:`~evoexp.verification.sign.SignDisagreementProbe` (every 5 epochs, epoch
0 included; 32 training samples, 32 directions, 8 Gauss--Hermite nodes, sigma 0.05, in the training dtype float32).
They run in turn
(round-robin over repeats, so that machine drift cancels). Printed: median wall time of each, the probe's own time
inside the probed runs (``TrainingRun.probe_seconds``), its ratio to the training time of the same run, and the torch
thread count. Exit status 1 when the median ratio exceeds 20 %.

Usage: ``python benchmarks/bench_sign_disagreement.py [--quick] [--epochs N] [--repeats R] [--threads 1]``
(default 20 epochs x 2 repeats, about 4 minutes at 1 thread; ``--quick``: 10 epochs, 1 repeat, under a minute).
Besides the ratio of the runs (epoch 0 is measured too, so short runs pay one extra measurement), the steady-state
ratio of a long training is printed: one measurement over ``every`` epochs of training.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from evoexp.data import DatasetSplits, get_dataset, make_loader
from evoexp.models import SNN
from evoexp.surrogate import get_surrogate
from evoexp.training import TrainingRun, train_model
from evoexp.verification.sign import DEFAULT_EVERY, SignDisagreementProbe

_TARGET = 0.20
_SAMPLES = 32


def dataset(samples_per_class: int = 1000) -> DatasetSplits:
    """The Randman data of ``experiment=robustness`` (seed 0)."""
    return get_dataset(
        "randman",
        n_classes=10,
        n_channels=20,
        manifold_dim=1,
        alpha=1.0,
        samples_per_class=samples_per_class,
        time_steps=100,
        spikes_per_unit=1,
        step_frac=0.5,
        split=(0.8, 0.1, 0.1),
        seed=0,
    )


def network(data: DatasetSplits) -> SNN:
    """The SNN of ``experiment=robustness`` (seed 0)."""
    return SNN(
        data.n_inputs,
        [128],
        data.n_classes,
        surrogate=get_surrogate("fast_sigmoid", slope=20.0),
        tau_mem=20.0,
        tau_syn=10.0,
        dt=2.0,
        reset="zero",
        detach_reset=True,
        bias=False,
        weight_scale=0.666,
        seed=0,
    )


def train(data: DatasetSplits, epochs: int, probe: bool) -> tuple[float, TrainingRun]:
    """Train a fresh network; return the wall time and the run."""
    model = network(data)
    loaders = [make_loader(getattr(data, split), batch_size=250, shuffle=split == "train", seed=0) for split in
               ("train", "val")]
    probes = []
    if probe:
        x, y = next(iter(make_loader(data.train, batch_size=_SAMPLES, shuffle=True, seed=0)))
        probes.append(SignDisagreementProbe(x, y))  # the defaults: every 5 epochs, 32 directions, 8 nodes
    start = time.perf_counter()
    run = train_model(
        model, loaders[0], loaders[1], epochs=epochs, optimizer=torch.optim.Adam(model.parameters(), lr=5e-3),
        probes=probes, progress=False,
    )
    return time.perf_counter() - start, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 epochs, 1 repeat")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 20, quick 10)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per contender (default 2, quick 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    epochs = args.epochs or (10 if args.quick else 20)
    repeats = args.repeats or (1 if args.quick else 2)
    data = dataset(1000)
    walls: dict[str, list[float]] = {"without probe": [], "with probe": []}
    ratios, probe_seconds, per_measurement, per_epoch, measured = [], [], [], [], []
    for _ in range(repeats):
        for name in walls:
            wall, run = train(data, epochs, probe=name == "with probe")
            walls[name].append(wall)
            if run.probe_metrics:
                probe_seconds.append(run.probe_seconds)
                ratios.append(run.probe_seconds / (wall - run.probe_seconds))
                measured = sorted(run.probe_metrics)
                per_measurement.append(run.probe_seconds / len(measured))
                per_epoch.append((wall - run.probe_seconds) / epochs)
    print(
        f"sign disagreement during training: experiment=robustness network, {len(data.train)} training samples, "
        f"{epochs} epochs, {repeats} repeat(s), round-robin; torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}; probe measured epochs {measured}"
    )
    for name, values in walls.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:14s} median wall {statistics.median(values):.2f} s  (runs: {runs})")
    ratio = statistics.median(ratios)
    overhead = statistics.median(walls["with probe"]) / statistics.median(walls["without probe"]) - 1.0
    print(f"  probe time {statistics.median(probe_seconds):.2f} s per run = {100 * ratio:.1f} % of the training time "
          f"of the same run (target <= {100 * _TARGET:.0f} %); wall-time overhead vs the run without probe "
          f"{100 * overhead:+.1f} %")
    every = DEFAULT_EVERY
    steady = statistics.median(per_measurement) / (every * statistics.median(per_epoch))
    print(f"  one measurement {statistics.median(per_measurement):.2f} s, one epoch of training (with its evaluation) "
          f"{statistics.median(per_epoch):.2f} s: steady state every {every} epochs {100 * steady:.1f} %")
    if ratio > _TARGET:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
