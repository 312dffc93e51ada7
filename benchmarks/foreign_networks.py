"""Finite-difference verdicts on snnTorch, SpikingJelly and Norse networks: the table of docs/guides/peers.md.

Runs :meth:`evoexp.verification.gradient.GradientVerifier.verify_finite_difference` (exact mode, float64, gradcheck's
tolerances) on the very networks and data of ``tests/test_peers_adapters.py`` -- correct ones and the same with a
×1.01 custom backward inserted between two layers -- and prints a Markdown table of the max absolute and relative
errors, the verdict and the neurons whose detached values were held. Every network is built after
``torch.manual_seed(0)`` with one thread, as the tests are (``tests/conftest.py``). Needs the ``peers`` extra.

Usage: ``python benchmarks/foreign_networks.py [--quick]`` (seconds either way: ``--quick`` runs the same table, so that
``make bench-quick`` calls every benchmark alike).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import norse.torch as norse
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_peers_adapters as networks  # the test module's networks, so the figures are the tests'


def _norse(cell: str, *, bug: bool = False) -> nn.Module:
    first = norse.LIFRecurrentCell(6, 6) if cell == "LIFRecurrentCell" else getattr(norse, cell)()
    model = networks._Net(first, None, bug=bug)
    model.fc1.weight.data *= 40.0  # as in the tests: Norse integrates with dt = 1e-3
    return model


CASES: dict[str, Any] = {
    "snnTorch `Leaky` + `Synaptic` (default `atan`)": lambda: networks._snntorch_net(),
    "snnTorch, ×1.01 custom backward between the layers": lambda: networks._snntorch_net(bug=True),
    "SpikingJelly `LIFNode` (`ATan`) + `IFNode`": lambda: networks._spikingjelly_net(),
    "SpikingJelly, `detach_reset=True`": lambda: networks._spikingjelly_net(detach_reset=True),
    "SpikingJelly, ×1.01 custom backward between the layers": lambda: networks._spikingjelly_net(bug=True),
    "Norse `LIFCell`": lambda: _norse("LIFCell"),
    "Norse `LIFBoxCell`": lambda: _norse("LIFBoxCell"),
    "Norse `LIFRecurrentCell`": lambda: _norse("LIFRecurrentCell"),
    "Norse `LIFCell`, ×1.01 custom backward": lambda: _norse("LIFCell", bug=True),
}


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same table (it takes seconds)")
    parser.parse_args()
    torch.set_num_threads(1)
    print("| network | max abs error | max rel error | verdict | held |")
    print("|---|---|---|---|---|")
    for label, build in CASES.items():
        torch.manual_seed(0)
        result = networks._verify(build())
        verdict = "passed" if result.passed else f"FAILED (`{result.worst.tensor}`)"
        held = ", ".join(result.held_resets) or "—"
        print(f"| {label} | {result.max_abs_error:.2g} | {result.max_rel_error:.2g} | {verdict} | {held} |")


if __name__ == "__main__":
    main()
