"""Time one SNN training step (forward + backward + Adam) against the GEMM floor and snnTorch.

Sizes: 100->128->10 (T=100, B=128) and 700->256->20 (T=100, B=256), a simple LIF (alpha=0) with beta=0.9,
threshold 1, reset by subtraction (detached, as in snnTorch), fast-sigmoid slope 25, leaky readout, max-over-time
logits, cross-entropy. Contenders, timed round-robin in one process so that machine drift cancels:

* ``floor``    — the bare GEMMs of the same shapes: input projection and readout GEMMs, their backward GEMMs, Adam;
* ``evoexp``   — :class:`evoexp.models.SNN` with the hand-written BPTT node (default);
* ``autograd`` — the same model with ``bptt="autograd"`` (a plain PyTorch loop);
* ``snntorch`` — ``snn.Leaky`` stepped over time (input and readout projections batched over time as for evoexp).

Before timing, loss and gradients of evoexp and an equivalent snnTorch network are compared (float64 and float32).
evoexp's spikes lag snnTorch's by two steps (``I[t]`` enters ``syn[t+1]``, then ``mem[t+2]``; snnTorch:
``U[t] = beta U[t-1] + I[t] - S[t-1] theta``), so in that comparison evoexp gets the input with two zero steps
appended and snnTorch's readout gets two zero spike frames prepended; both then compute the same function.

Usage: ``python benchmarks/bench_engine.py [--quick] [--reps N] [--threads 1 2] [--sizes small large] [--thp]``
(``--quick``: a smoke run of seconds, size small at 1 thread). ``--thp`` re-runs the
process with ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch then backs tensors >= 2 MB with transparent huge pages); on this VM
first-touch page faults of fresh ``[B, T, H]`` buffers are a large part of every contender's step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from evoexp.functional import backward_once
from evoexp.models import SNN
from evoexp.surrogate import get_surrogate

try:
    import snntorch
    from snntorch import surrogate as snn_surrogate
except ImportError:  # snnTorch is an optional extra ("bench")
    snntorch = None

BETA = 0.9
THRESHOLD = 1.0
SLOPE = 25.0
SIZES = {"small": (100, 128, 10, 100, 128), "large": (700, 256, 20, 100, 256)}  # C, H, O, T, B


@dataclass
class Problem:
    x: Tensor
    y: Tensor
    sizes: tuple[int, int, int, int, int]


def make_problem(name: str, seed: int = 0) -> Problem:
    c, _, o, t, b = SIZES[name]
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(b, t, c, generator=g) < 0.05).float()
    y = torch.randint(0, o, (b,), generator=g)
    return Problem(x, y, SIZES[name])


def make_evoexp(p: Problem, bptt: str = "custom") -> SNN:
    c, h, o, _, _ = p.sizes
    return SNN(
        c,
        [h],
        o,
        surrogate=get_surrogate("fast_sigmoid", slope=SLOPE),
        alpha=0.0,
        beta=BETA,
        threshold=THRESHOLD,
        reset="subtract",
        detach_reset=True,
        readout="max",
        readout_beta=BETA,
        weight_scale=3.0,
        seed=0,
        bptt=bptt,  # type: ignore[arg-type]
    )


class SnnTorchNet(nn.Module):
    """fc1 -> snn.Leaky (stepped) -> fc2 -> snn.Leaky without reset as leaky readout -> max over time."""

    def __init__(self, model: SNN, pad: int = 0) -> None:
        super().__init__()
        dtype = model.readout.weight.dtype
        layer, readout = model.hidden[0], model.readout
        self.fc1 = nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
        self.fc2 = nn.Linear(readout.weight.shape[1], readout.weight.shape[0], dtype=dtype)
        with torch.no_grad():  # same initial weights as the evoexp model
            self.fc1.weight.copy_(layer.weight)
            self.fc1.bias.copy_(layer.bias)
            self.fc2.weight.copy_(readout.weight)
            self.fc2.bias.copy_(readout.bias)
        spike_grad = snn_surrogate.fast_sigmoid(slope=SLOPE)
        beta = torch.tensor(BETA, dtype=dtype)  # a Python float would be rounded to float32 inside snnTorch
        self.lif1 = snntorch.Leaky(beta=beta, threshold=THRESHOLD, spike_grad=spike_grad, reset_mechanism="subtract")
        self.lif2 = snntorch.Leaky(beta=beta.clone(), reset_mechanism="none")
        self.to(dtype)
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        steps = x.shape[1]
        if self.pad:  # project the same padded input as evoexp: identical GEMM shapes, identical rounding
            x = torch.cat([x, x.new_zeros(x.shape[0], self.pad, x.shape[2])], 1)
        current = self.fc1(x)[:, :steps]
        mem1 = self.lif1.init_leaky()
        spikes = []
        for cur in current.unbind(1):
            spk, mem1 = self.lif1(cur, mem1)
            spikes.append(spk)
        s = torch.stack(spikes, 1).to(x.dtype)
        self.last_spikes = s.detach()
        if self.pad:
            s = torch.cat([s.new_zeros(s.shape[0], self.pad, s.shape[2]), s], 1)
        z = self.fc2(s)
        mem2 = self.lif2.init_leaky()
        out = []
        for zt in z.unbind(1):
            _, mem2 = self.lif2(zt, mem2)
            out.append(mem2)
        return torch.stack(out, 1).max(1).values


class Floor(nn.Module):
    """Bare GEMMs of the SNN's shapes: input projection and readout (no neuron dynamics)."""

    def __init__(self, model: SNN) -> None:
        super().__init__()
        layer, readout = model.hidden[0], model.readout
        self.w1 = nn.Parameter(layer.weight.detach().clone())
        self.w2 = nn.Parameter(readout.weight.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.linear(x, self.w1), self.w2).mean(1)


def compare_with_snntorch(p: Problem, dtype: torch.dtype) -> tuple[float, int]:
    """Max relative difference of loss and gradients between evoexp and the equivalent snnTorch network.

    Also returns the number of hidden spikes that differ (float32 rounding can flip a spike whose membrane lies
    within an ulp of the threshold; snnTorch's spikes are float32 even in a float64 network, so its float64
    gradients carry float32 rounding, ~1e-8 relative).
    """
    ours = make_evoexp(p).to(dtype)
    theirs = SnnTorchNet(ours, pad=2)
    x = p.x.to(dtype)
    x_padded = torch.cat([x, x.new_zeros(x.shape[0], 2, x.shape[2])], 1)
    loss_ours = F.cross_entropy(ours(x_padded), p.y)
    loss_theirs = F.cross_entropy(theirs(x), p.y)
    grads_ours = torch.autograd.grad(
        loss_ours, [ours.hidden[0].weight, ours.hidden[0].bias, ours.readout.weight, ours.readout.bias]
    )
    grads_theirs = torch.autograd.grad(
        loss_theirs, [theirs.fc1.weight, theirs.fc1.bias, theirs.fc2.weight, theirs.fc2.bias]
    )
    worst = abs(loss_ours.item() - loss_theirs.item()) / abs(loss_theirs.item())
    for a, b in zip(grads_ours, grads_theirs):
        worst = max(worst, ((a - b).norm() / b.norm()).item())
    rate = ours.firing_rates()["hidden.0"]
    flips = int((ours.last_spikes[0][:, 2:] != theirs.last_spikes).sum())
    print(
        f"  {dtype}: loss {loss_ours.item():.6f} vs {loss_theirs.item():.6f}, max rel diff {worst:.2e}, "
        f"firing rate {rate:.3f}, spikes that differ {flips} of {theirs.last_spikes.numel()}"
    )
    return worst, flips


def make_step(model: nn.Module, x: Tensor, y: Tensor) -> Callable[[], None]:
    """One training step as ``evoexp.training.train_epoch`` takes it (``backward_once``: one backward per graph)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with backward_once():
            logits = model(x)
        F.cross_entropy(logits, y).backward()
        opt.step()

    return step


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def summarize(times: dict[str, list[float]], label: str) -> dict[str, float]:
    """Print median, IQR and ratio to the floor per contender; return the medians (ms)."""
    medians = {}
    print(f"  {label}:")
    for key, values in times.items():
        q1, med, q3 = quartiles([v * 1e3 for v in values])
        medians[key] = med
        print(f"    {key:9s} median {med:8.2f} ms  IQR [{q1:.2f}, {q3:.2f}]  ({len(values)} reps)")
    floor = medians["floor"]
    ratios = ", ".join(f"{k}/floor {v / floor:.2f}" for k, v in medians.items() if k != "floor")
    print(f"    ratios: {ratios}")
    if "snntorch" in medians:
        print(f"    evoexp speed-up over snnTorch: {medians['snntorch'] / medians['evoexp']:.2f}x")
    return medians


def run_size(name: str, reps: int, warmup: int) -> None:
    """Time all contenders round-robin; report wall-clock and process CPU time (robust on a shared machine)."""
    p = make_problem(name)
    base = make_evoexp(p)
    contenders: dict[str, Callable[[], None]] = {
        "floor": make_step(Floor(base), p.x, p.y),
        "evoexp": make_step(make_evoexp(p), p.x, p.y),
        "autograd": make_step(make_evoexp(p, "autograd"), p.x, p.y),
    }
    if snntorch is not None:
        contenders["snntorch"] = make_step(SnnTorchNet(base), p.x, p.y)
    wall: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    for i in range(warmup + reps):
        for key, step in contenders.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step()
            if i >= warmup:
                wall[key].append(time.perf_counter() - start_wall)
                cpu[key].append(time.process_time() - start_cpu)
    summarize(wall, "wall-clock")
    summarize(cpu, "process CPU time (all threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run (seconds): 3 repetitions, size small, 1 thread by default"
    )
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per contender")
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 2 (--quick: 1)")
    parser.add_argument("--sizes", nargs="+", default=None, choices=list(SIZES), help="default: all (--quick: small)")
    parser.add_argument("--thp", action="store_true", help="re-run with THP_MEM_ALLOC_ENABLE=1")
    args = parser.parse_args()
    if args.thp and os.environ.get("THP_MEM_ALLOC_ENABLE") != "1":  # must be set before torch is imported
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "THP_MEM_ALLOC_ENABLE": "1"})
    reps = args.reps or (3 if args.quick else 30)
    warmup = 1 if args.quick else 3
    args.threads = args.threads or ([1] if args.quick else [1, 2])
    args.sizes = args.sizes or (["small"] if args.quick else list(SIZES))
    print(
        f"torch {torch.__version__}, snntorch {getattr(snntorch, '__version__', 'not installed')}, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, reps {reps}, warm-up {warmup}"
    )
    if snntorch is not None:
        print("agreement with snnTorch (loss and gradients, tolerance 1e-5 relative):")
        torch.set_num_threads(1)
        for name in args.sizes:
            print(f" {name}:")
            for dtype in (torch.float64, torch.float32):
                worst, flips = compare_with_snntorch(make_problem(name), dtype)
                if worst > 1e-5 and (dtype == torch.float64 or flips == 0):
                    raise SystemExit(f"evoexp and snnTorch disagree at size {name}, {dtype}: {worst:.2e} > 1e-5")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.sizes:
            print(f"size {name} {SIZES[name]} (C, H, O, T, B), threads={torch.get_num_threads()}:")
            run_size(name, reps, warmup)


if __name__ == "__main__":
    main()
