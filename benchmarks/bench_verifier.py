"""Benchmark the finite-difference gradient verifier against ``torch.autograd.gradcheck`` (one process, 1 thread).

Usage::

    python benchmarks/bench_verifier.py            # full run (a few minutes)
    python benchmarks/bench_verifier.py --quick    # smoke run with small models

For each case it prints wall times, the speed-up over gradcheck on the same scalar loss, both verdicts (they must
agree), peak resident memory during the call, and the cost floor of an exact check: ``2P`` forward evaluations
(``2P * t_forward`` with ``t_forward`` one unbatched forward of the loss). Exact mode runs before and after
gradcheck (interleaved, so a busy machine slows both alike); the ratio uses the mean of the two runs. Fast mode is
timed as the median of five calls (its cost includes the two forward and backward passes that give the gradient as
a training step computes it and the determinism check). For evoexp
SNNs the exact check uses the structure-aware path by default (a ratio below 1x the 2P-forward floor is possible:
a perturbation there costs less than a forward); the generic ``vmap`` path is timed too.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from evoexp.models import SNN, smooth_mode
from evoexp.verification.gradient import GradientVerifier


class _PeakRSS:
    """Sample the process's resident set size every 2 ms (peak memory of a call, in MiB)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    @contextmanager
    def measure(self) -> Iterator[_PeakRSS]:
        self.peak = self.rss()
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self._stop.clear()


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Return ``(value, seconds, peak MiB)`` of one call."""
    meter = _PeakRSS()
    with meter.measure():
        start = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - start
    return value, seconds, meter.peak / 2**20


def _median_seconds(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Median wall time of ``repeats`` calls (a cheap call's single timing is at the mercy of a busy machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _forward_seconds(model: nn.Module, x: Tensor, y: Tensor, repeats: int = 20) -> float:
    with torch.no_grad():
        F.cross_entropy(model(x), y)
        start = time.perf_counter()
        for _ in range(repeats):
            F.cross_entropy(model(x), y)
    return (time.perf_counter() - start) / repeats


def _gradcheck(model: nn.Module, x: Tensor, y: Tensor, *, fast_mode: bool) -> bool:
    """gradcheck on the same scalar loss as a function of all parameters (float64 copy)."""
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def loss(*ps: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, dict(zip(names, ps)), (x,)), y)

    return torch.autograd.gradcheck(loss, params, fast_mode=fast_mode, raise_exception=False)


class _ScaledGrad(torch.autograd.Function):
    """Identity whose backward is off by a factor 1.01 (a bug both checkers must catch)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return 1.01 * grad


class _MLP(nn.Module):
    def __init__(self, sizes: tuple[int, ...], *, buggy: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b, dtype=torch.float64) for a, b in itertools.pairwise(sizes))
        self.buggy = buggy

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.tanh(_ScaledGrad.apply(x) if self.buggy else x)
        return x


def _compare(label: str, model: nn.Module, x: Tensor, y: Tensor, *, gradcheck_fast: bool = True) -> None:
    n_params = sum(p.numel() for p in model.parameters())
    verifier = GradientVerifier()
    verifier.verify_finite_difference(model, x, y, F.cross_entropy, mode="fast")  # warm-up

    def exact_run() -> Any:
        return verifier.verify_finite_difference(model, x, y, F.cross_entropy)

    exact, t_exact_1, mem_exact = _timed(exact_run)

    def fast_run() -> Any:
        return verifier.verify_finite_difference(model, x, y, F.cross_entropy, mode="fast")

    fast, _, mem_fast = _timed(fast_run)
    t_fast = _median_seconds(fast_run)
    with smooth_mode(model) if isinstance(model, SNN) else _null():
        t_fwd = _forward_seconds(model, x, y)
        gc, t_gc, mem_gc = _timed(lambda: _gradcheck(model, x, y, fast_mode=False))
        if gradcheck_fast:
            gc_fast, t_gc_fast, _ = _timed(lambda: _gradcheck(model, x, y, fast_mode=True))
    exact_again, t_exact_2, _ = _timed(exact_run)
    t_exact = (t_exact_1 + t_exact_2) / 2
    floor = 2 * n_params * t_fwd
    print(f"\n== {label}: P={n_params}, one forward {t_fwd * 1e3:.3f} ms")
    print(
        f"  exact   : {t_exact_1:8.3f} s / {t_exact_2:.3f} s (before/after gradcheck)  passed={exact.passed}  "
        f"peak RSS {mem_exact:7.1f} MiB  max abs err {exact.max_abs_error:.2e}  evals {exact.n_evaluations}"
    )
    if exact.structured_tensors:
        generic, t_generic, mem_generic = _timed(
            lambda: GradientVerifier(structure_aware=False).verify_finite_difference(model, x, y, F.cross_entropy)
        )
        print(
            f"  exact, generic vmap path: {t_generic:8.3f} s  passed={generic.passed}  peak RSS {mem_generic:7.1f} MiB"
            f"  ({t_generic / floor:.2f}x the floor; structure-aware tensors: {', '.join(exact.structured_tensors)})"
        )
    print(f"  gradcheck default: {t_gc:8.3f} s  passed={gc}  peak RSS {mem_gc:7.1f} MiB")
    print(
        f"  speed-up exact vs gradcheck: {t_gc / t_exact:6.1f}x   verdicts identical: "
        f"{exact.passed == gc == exact_again.passed}"
    )
    print(f"  2P-forward floor {floor:.3f} s -> exact takes {t_exact / floor:.2f}x the floor")
    print(
        f"  fast    : {t_fast:8.4f} s  passed={fast.passed}  = {t_fast / t_fwd:.1f} forward-equivalents "
        f"({fast.n_evaluations} loss evaluations)  peak RSS {mem_fast:7.1f} MiB"
    )
    if gradcheck_fast:
        print(f"  gradcheck fast: {t_gc_fast:8.4f} s  passed={gc_fast}  verdicts identical: {fast.passed == gc_fast}")


@contextmanager
def _null() -> Iterator[None]:
    yield


def _spikes(batch: int, steps: int, channels: int, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, steps, channels, generator=gen) < 0.1).double()
    return x, torch.randint(0, 10, (batch,), generator=gen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small models, seconds instead of minutes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float64")

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 20, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (32,), generator=gen)
    torch.manual_seed(0)
    _compare("MLP 20->32->4 (804 params)", _MLP((20, 32, 4)), x, y)
    torch.manual_seed(0)
    _compare("MLP 20->32->4 with backward off by 1.01", _MLP((20, 32, 4), buggy=True), x, y)

    sizes, steps, batch = ((30, 16, 10), 20, 4) if args.quick else ((100, 32, 10), 50, 8)
    snn = SNN(sizes[0], [sizes[1]], sizes[2], seed=0).double()
    _compare(
        f"SNN {sizes[0]}->{sizes[1]}->{sizes[2]}, T={steps}, batch {batch}, smooth mode",
        snn,
        *_spikes(batch, steps, sizes[0], 1),
    )

    sizes, steps, batch = ((30, 32, 10), 30, 8) if args.quick else ((100, 128, 10), 100, 16)
    big = SNN(sizes[0], [sizes[1]], sizes[2], seed=0).double()
    bx, by = _spikes(batch, steps, sizes[0], 2)
    verifier = GradientVerifier()
    result, seconds, peak = _timed(lambda: verifier.verify_finite_difference(big, bx, by, F.cross_entropy))
    with smooth_mode(big):
        t_fwd = _forward_seconds(big, bx, by, repeats=5)
    floor = 2 * result.n_parameters * t_fwd
    print(
        f"\n== exact check, SNN {sizes[0]}->{sizes[1]}->{sizes[2]}, T={steps}, batch {batch}: P={result.n_parameters}"
    )
    print(
        f"  {seconds:.1f} s (target <= 60 s)  passed={result.passed}  max abs err {result.max_abs_error:.2e}  "
        f"peak RSS {peak:.0f} MiB"
    )
    print(f"  one forward {t_fwd * 1e3:.2f} ms; 2P-forward floor {floor:.1f} s -> {seconds / floor:.2f}x the floor")
    print(f"  structure-aware tensors: {', '.join(result.structured_tensors) or 'none'}")

    def fast_run() -> Any:
        return verifier.verify_finite_difference(big, bx, by, F.cross_entropy, mode="fast")

    fast = fast_run()
    t_fast = _median_seconds(fast_run)
    print(f"  fast mode {t_fast:.3f} s = {t_fast / t_fwd:.1f} forward-equivalents, passed={fast.passed}")


if __name__ == "__main__":
    main()
