"""Seconds of the reference cross-library comparison (target: <= 30 s), against the bare work it cannot avoid.

The comparison is what ``python -m evoexp.crosscheck`` runs: both reference networks (:mod:`evoexp.crosscheck.
references`, 50 steps x 4 samples) across evoexp, snnTorch, SpikingJelly and Norse -- per library a float64 forward,
the smooth-mode gradient (float64) and the spiking-mode gradients (float64, float32), evoexp's emulation of each
peer, and the pairwise comparisons. The baseline is the least the comparison must do: one float64 forward and
backward of every library's network on the same input (no copies, no smooth mode, no comparison). Comparison and
baseline run in turn (round-robin, so that machine drift cancels); the median seconds of each, their ratio and the
torch thread count are printed. The user-facing number is the command itself, cold (a fresh interpreter: imports of
torch and the three peer libraries included, report and figures written): it is timed once, in a subprocess, and
checked against the 30 s target (PASS/FAIL).

Usage: ``python benchmarks/bench_crosscheck.py [--quick] [--repeats N] [--threads N]`` (``--quick``: one repeat).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch.nn import functional as F

from evoexp.crosscheck import REFERENCE_SETTINGS, REFERENCES, crosscheck, reference_graph
from evoexp.crosscheck.compare import inputs
from evoexp.crosscheck.libraries import LIBRARIES, EvoexpLibrary
from evoexp.crosscheck.spec import network_spec
from evoexp.nir import from_nir

TARGET_S = 30.0
STEPS, BATCH = 50, 4


def comparison() -> float:
    """Seconds of the reference comparison (both networks)."""
    start = time.perf_counter()
    for name in REFERENCES:
        result = crosscheck(from_nir(reference_graph(name), **REFERENCE_SETTINGS), steps=STEPS, batch=BATCH,
                            threads=None)
        assert result.passed, f"{name}: the comparison found an unexplained difference"
    return time.perf_counter() - start


def baseline() -> float:
    """Seconds of one float64 forward and backward of every library's network on both reference networks."""
    start = time.perf_counter()
    for name in REFERENCES:
        net = from_nir(reference_graph(name), **REFERENCE_SETTINGS).double()
        spec = network_spec(net)
        x, targets = inputs(spec, steps=STEPS, batch=BATCH, seed=0)
        for library in [EvoexpLibrary(net)] + [cls() for cls in LIBRARIES]:
            network = library.build(spec, frozenset())
            F.cross_entropy(network(x).mean(dim=1), targets).backward()
    return time.perf_counter() - start


def command() -> float:
    """Wall seconds of ``python -m evoexp.crosscheck`` in a fresh interpreter (output to a temporary folder)."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "evoexp.crosscheck", "--out", folder], check=True,
                       capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each (default 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads of comparison and baseline (default 1, the command's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    comparison(), baseline()  # warm-up: imports, first-call overheads
    timed_comparison, timed_baseline = [], []
    for _ in range(repeats):
        timed_comparison.append(comparison())
        timed_baseline.append(baseline())
    seconds, base = statistics.median(timed_comparison), statistics.median(timed_baseline)
    cold = command()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {repeats} repeat(s), round-robin")
    print(f"reference comparison (2 networks x 4 libraries): {seconds:.2f} s (median; runs {timed_comparison})")
    print(f"baseline (one float64 forward+backward per library and network): {base:.2f} s")
    print(f"ratio comparison/baseline: {seconds / base:.1f}")
    print(f"python -m evoexp.crosscheck, cold (fresh interpreter, imports and report included): {cold:.1f} s")
    print(f"{'PASS' if cold <= TARGET_S else 'FAIL'}: target <= {TARGET_S:g} s for the cold command")


if __name__ == "__main__":
    main()
