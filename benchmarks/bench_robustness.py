"""Seconds per training epoch of ``experiment=robustness`` against a plain hand-written BPTT re-implementation.

The preset is composed with Hydra (so the benchmark follows the preset), its Randman data and SNN built by
:mod:`evoexp.job.build`, as the app builds them. The reference is an independent implementation of the same network
in plain PyTorch: input and readout projections as GEMMs over all steps, and one ``torch.autograd.Function`` for
the LIF layer whose forward loops over time and whose backward runs the adjoint recursion by hand, in time-major
memory:

.. math::

    s[t] = H(m[t] - 1),\\quad c[t+1] = \\alpha c[t] + I[t],\\quad m[t+1] = (\\beta m[t] + c[t])(1 - s[t])

(reset to zero, detached), then the leaky readout :math:`o[t] = \\beta o[t-1] + W_2 s[t]`, logits
:math:`\\max_t o[t]`, cross-entropy. Before timing, loss and gradients of both are compared on one batch in float64
(they must agree to 1e-9). Then both train with Adam on the preset's loader, one epoch each in turn (round-robin,
so that machine drift cancels), and the median seconds per epoch, their ratio and the torch thread count are printed.

Usage: ``python benchmarks/bench_robustness.py [--quick] [--epochs N] [--threads 1]`` (default 5 timed epochs each
after one warm-up epoch; about a minute at 1 thread on an idle core; ``--quick``: 100 samples per class and 1 timed
epoch each, seconds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from hydra import compose, initialize_config_module
from torch import Tensor, nn
from torch.nn import functional as F

from evoexp.data import DatasetSplits, make_loader
from evoexp.job.build import build_dataset, build_model
from evoexp.job.config import Config, load_config, register_configs
from evoexp.surrogate import SurrogateGradient


def preset(*overrides: str) -> Config:
    """The validated config of ``experiment=robustness`` (plus ``overrides``)."""
    register_configs()
    with initialize_config_module("evoexp.conf", version_base=None):
        return load_config(
            compose(config_name="config", overrides=["experiment=robustness", "tracking=off", *overrides])
        )


class _LIFZeroReset(torch.autograd.Function):
    """LIF layer over time-major current ``I [T, B, H]`` with a hand-written backward (see the module docstring)."""

    @staticmethod
    def forward(ctx, current: Tensor, alpha: float, beta: float, surrogate: SurrogateGradient) -> Tensor:  # type: ignore[override]
        steps = current.shape[0]
        syn = current.new_zeros(current.shape[1:])
        mem = torch.zeros_like(syn)
        spikes = torch.empty_like(current)
        membranes = torch.empty_like(current)
        for t in range(steps):
            membranes[t] = mem
            spike = (mem > 1.0).to(current.dtype)
            spikes[t] = spike
            mem = (beta * mem + syn) * (1.0 - spike)
            syn = alpha * syn + current[t]
        ctx.save_for_backward(spikes, membranes)
        ctx.constants = (alpha, beta, surrogate)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        spikes, membranes = ctx.saved_tensors
        alpha, beta, surrogate = ctx.constants
        local = grad_spikes * surrogate.derivative(membranes - 1.0)
        keep = 1.0 - spikes
        grad_current = torch.empty_like(grad_spikes)
        lam_mem = torch.zeros_like(grad_spikes[0])
        lam_syn = torch.zeros_like(lam_mem)
        for t in range(grad_spikes.shape[0] - 1, -1, -1):
            grad_current[t] = lam_syn  # I[t] enters syn[t + 1]
            carried = lam_mem * keep[t]
            lam_syn = carried + alpha * lam_syn
            lam_mem = local[t] + beta * carried
        return grad_current, None, None, None


class HandWritten(nn.Module):
    """The preset's network, re-implemented (no bias, reset to zero with the reset detached, max-over-time readout).

    Args:
        reference: An evoexp SNN of the preset; its initial weights are copied, so both start from the same point.
    """

    def __init__(self, reference: nn.Module) -> None:
        super().__init__()
        self.w1 = nn.Parameter(reference.hidden[0].weight.detach().clone())
        self.w2 = nn.Parameter(reference.readout.weight.detach().clone())
        params = reference.params
        self.alpha, self.beta, self.readout_beta = params.alpha, params.beta, reference.readout.beta
        self.surrogate = reference.surrogate

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.w1.dtype).transpose(0, 1)  # [T, B, C]
        spikes = _LIFZeroReset.apply(x @ self.w1.T, self.alpha, self.beta, self.surrogate)
        drive = spikes @ self.w2.T  # [T, B, O]
        steps = drive.shape[0]
        lag = torch.arange(steps)[:, None] - torch.arange(steps)[None, :]
        kernel = torch.where(lag >= 0, self.readout_beta ** lag.clamp(min=0).to(drive.dtype), 0.0)
        trace = torch.einsum("ts,sbo->tbo", kernel.to(drive.dtype), drive)
        return trace.max(dim=0).values  # the gradient goes to one maximising step, as in evoexp and SpyTorch


def check_agreement(snn: nn.Module, other: nn.Module, data: DatasetSplits) -> float:
    """Largest relative difference of loss and gradients of the two networks on one batch, in float64."""
    x, y = next(iter(make_loader(data.train, batch_size=64)))
    a, b = snn.double(), other.double()
    loss_a, loss_b = F.cross_entropy(a(x), y), F.cross_entropy(b(x), y)
    grads_a = torch.autograd.grad(loss_a, [a.hidden[0].weight, a.readout.weight])
    grads_b = torch.autograd.grad(loss_b, [b.w1, b.w2])
    worst = abs(loss_a.item() - loss_b.item()) / abs(loss_b.item())
    for ga, gb in zip(grads_a, grads_b):
        worst = max(worst, ((ga - gb).norm() / gb.norm()).item())
    a.float(), b.float()
    return worst


def epoch_runner(model: nn.Module, loader: object, lr: float) -> Callable[[], float]:
    """A function that trains ``model`` for one epoch (Adam, cross-entropy) and returns its wall time."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def run() -> float:
        start = time.perf_counter()
        for x, y in loader:  # type: ignore[attr-defined]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        return time.perf_counter() - start

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per contender (after 1 warm-up): 5")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run (seconds): 100 samples per class, 1 timed epoch each"
    )
    args = parser.parse_args()
    args.epochs = args.epochs or (1 if args.quick else 5)
    torch.set_num_threads(args.threads)
    config = preset(*(["dataset.samples_per_class=100"] if args.quick else []))
    torch.manual_seed(config.seed)
    data = build_dataset(config)
    snn = build_model(config, data).model
    reference = HandWritten(snn)
    worst = check_agreement(snn, reference, data)
    print(f"agreement on one batch (float64): max relative difference of loss and gradients {worst:.1e}")
    if not worst < 1e-9:
        raise SystemExit(f"the re-implementation computes another function ({worst:.1e} >= 1e-9)")
    loader = make_loader(data.train, batch_size=config.trainer.batch_size, shuffle=True, seed=config.seed)
    runners = {
        "evoexp": epoch_runner(snn, loader, config.trainer.lr),
        "hand-written": epoch_runner(reference, loader, config.trainer.lr),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for epoch in range(1 + args.epochs):
        for name, run in runners.items():
            seconds = run()
            if epoch:  # the first epoch of each is warm-up
                times[name].append(seconds)
    print(
        f"experiment=robustness: {len(data.train)} training samples, batch {config.trainer.batch_size}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.epochs} timed epochs each, round-robin"
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        spread = f"[{min(values):.2f}, {max(values):.2f}]"
        print(f"  {name:13s} median {medians[name]:.2f} s/epoch  range {spread}")
    print(f"  ratio evoexp / hand-written: {medians['evoexp'] / medians['hand-written']:.2f}")


if __name__ == "__main__":
    main()
