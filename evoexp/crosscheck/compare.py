r"""The cross-library comparison: one network in every library, forward and gradients compared per pair.

For every pair of libraries it compares

* the **forward** (float64, spiking mode): each spiking layer's spikes and membranes per step and the readout's
  values; the first step where they differ (spikes unequal, or a value off by more than
  :data:`FORWARD_TOL` relative to its scale);
* the **smooth-mode gradient** (float64): every library's spike functions replaced by the surrogate's primitive
  (the verifiers' adapters, :mod:`evoexp.verification.spiking`), so each computes the true gradient of a smooth
  network; where the math agrees (no cause that changes the gradient) the gradients must agree to
  :data:`SMOOTH_TOL` relative;
* the **spiking-mode gradient** as each library trains (Heaviside forward, its own surrogate backward) in float64 and
  float32,

and names the causes of their differences (:func:`~evoexp.crosscheck.catalogue.attribute`). It also checks each
library's stated model: evoexp's engine, configured with the library's conventions and constants
(:class:`~evoexp.crosscheck.libraries.EngineChain`), must reproduce that library's forward and smooth gradient. A
difference no cause explains is reported as unexplained. The loss is the cross-entropy of the readout's mean over
time for fixed random targets; inputs are seeded Bernoulli spike trains.
"""

from __future__ import annotations

import copy
import itertools
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from evoexp.crosscheck.catalogue import CATALOGUE, GRADIENT, MEMBRANE, SPIKES, attribute, explains
from evoexp.crosscheck.libraries import LIBRARIES, EngineChain, EvoexpLibrary, Library, Participant
from evoexp.crosscheck.spec import NetworkSpec, Unmappable, network_spec
from evoexp.keys import CROSSCHECK_PASSED, CROSSCHECK_SECONDS, crosscheck_pair_metric
from evoexp.nir.network import NIRNetwork, from_nir
from evoexp.results import Result
from evoexp.verification.spiking import private_copy

__all__ = [
    "FORWARD_TOL",
    "SMOOTH_TOL",
    "CrosscheckResult",
    "EmulationCheck",
    "ForwardComparison",
    "GradientComparison",
    "PairAgreement",
    "compare_pair",
    "crosscheck",
    "gradients",
    "inputs",
    "run_forward",
]

FORWARD_TOL = 1e-9
"""Relative tolerance of membranes and readout values in the float64 forward comparison."""
SMOOTH_TOL = 1e-6
"""Relative tolerance of float64 smooth-mode gradients where the math agrees."""
_GRAD_FLOOR = 1e-8
"""Elements smaller than this fraction of their tensor's largest gradient are compared absolutely."""


@dataclass
class ForwardComparison:
    """Forward agreement of two networks on the same input (float64, spiking mode).

    Attributes:
        first_divergence: First time step where anything differs (``None``: identical within tolerance).
        what: What differs first: ``"spikes"``, ``"membrane"`` or ``"output"`` (with the layer), ``""`` if nothing.
        spike_mismatches: Spikes that differ, over all layers, steps and samples.
        max_membrane_diff: Largest membrane difference relative to the membranes' scale.
        max_output_diff: Largest readout difference relative to its scale.
    """

    first_divergence: int | None
    what: str
    spike_mismatches: int
    max_membrane_diff: float
    max_output_diff: float

    @property
    def spikes_agree(self) -> bool:
        """Whether every spike is equal."""
        return self.spike_mismatches == 0

    @property
    def agrees(self) -> bool:
        """Whether nothing differs."""
        return self.first_divergence is None


@dataclass
class GradientComparison:
    """Per-parameter agreement of two networks' gradients of the same loss.

    Attributes:
        max_rel: Largest relative difference over all parameters (elements below
            ``1e-8 * max|g|`` of their tensor are compared against that floor).
        worst: The parameter where it occurs.
        per_parameter: Largest relative difference per parameter (canonical names).
    """

    max_rel: float
    worst: str
    per_parameter: dict[str, float] = field(default_factory=dict)


@dataclass
class EmulationCheck:
    """Does evoexp's engine, with a library's stated model, reproduce that library?

    Attributes:
        library: The library.
        forward: Forward agreement of the emulation with the library.
        smooth: Smooth-mode gradient agreement.
    """

    library: str
    forward: ForwardComparison
    smooth: GradientComparison

    @property
    def reproduced(self) -> bool:
        """Forward identical within tolerance and smooth gradients within :data:`SMOOTH_TOL`."""
        return self.forward.agrees and self.smooth.max_rel <= SMOOTH_TOL


@dataclass
class PairAgreement:
    """One row of the agreement matrix.

    Attributes:
        library_a: First library.
        library_b: Second library.
        causes: Names of the catalogue's causes by which the two differ.
        forward: Forward comparison.
        smooth: Smooth-mode gradient comparison (float64).
        spiking64: Spiking-mode gradient comparison in float64.
        spiking32: Spiking-mode gradient comparison in float32.
    """

    library_a: str
    library_b: str
    causes: tuple[str, ...]
    forward: ForwardComparison
    smooth: GradientComparison
    spiking64: GradientComparison
    spiking32: GradientComparison

    @property
    def math_agrees(self) -> bool:
        """Whether no cause changes the smooth network's gradient (then it must agree to :data:`SMOOTH_TOL`)."""
        return not explains(self.causes, GRADIENT)

    @property
    def unexplained(self) -> list[str]:
        """Differences that none of the causes explains (empty: every difference is attributed)."""
        problems = []
        if not self.forward.spikes_agree and not explains(self.causes, SPIKES) and not explains(self.causes, "ties"):
            problems.append("spikes differ")
        if self.forward.max_membrane_diff > FORWARD_TOL and not explains(self.causes, MEMBRANE):
            problems.append("membranes differ")
        if self.math_agrees and self.smooth.max_rel > SMOOTH_TOL:
            problems.append(f"smooth gradients differ by {self.smooth.max_rel:.2g}")
        return problems


@dataclass
class CrosscheckResult(Result):
    """The comparison of one network across libraries.

    Attributes:
        network: Label of the network (file name or reference name).
        settings: The evoexp network's settings (one line).
        libraries: Libraries compared (evoexp first).
        skipped: Library -> why it was not compared (not installed, or the network cannot be mapped into it).
        pairs: One entry per library pair.
        emulations: evoexp's emulation of each peer.
        nonfinite: Library -> the gradients (``"smooth float64"``, ``"spiking float64"``, ``"spiking float32"``)
            in which it produced NaN or infinity (a library's numerics, not a convention: never attributed).
        steps: Time steps of the input.
        batch: Samples.
        seconds: Wall time.
    """

    check = "crosscheck"

    network: str
    settings: str
    libraries: list[str]
    skipped: dict[str, str]
    pairs: list[PairAgreement]
    emulations: list[EmulationCheck]
    nonfinite: dict[str, list[str]]
    steps: int
    batch: int
    seconds: float = 0.0

    @property
    def passed(self) -> bool | None:
        """``False`` if a difference is unexplained or an emulation fails to reproduce its library, else ``True``."""
        return not any(p.unexplained for p in self.pairs) and all(e.reproduced for e in self.emulations)

    def summary(self) -> dict[str, float]:
        """Seconds, verdict, and per pair the first divergent step (-1: none) and the gradient differences.

        Names: ``evoexp.keys.CROSSCHECK_SECONDS``, ``CROSSCHECK_PASSED``, ``crosscheck_pair_metric``.
        """
        out: dict[str, float] = {CROSSCHECK_SECONDS: self.seconds, CROSSCHECK_PASSED: float(bool(self.passed))}
        for p in self.pairs:
            first = -1.0 if p.forward.first_divergence is None else float(p.forward.first_divergence)
            values = {"first_divergence": first, "smooth_grad_max_rel": p.smooth.max_rel,
                      "spiking_grad_max_rel": p.spiking64.max_rel}
            out.update({crosscheck_pair_metric(p.library_a, p.library_b, k): v for k, v in values.items()})
        return out


def run_forward(network: nn.Module, x: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """``(records, output)`` of a participant network without gradients."""
    with torch.no_grad():
        output = network(x)
    # Why the type ignore below: records() is a method of the participant (Module attributes read as Tensor | Module)
    return [(s.detach(), m.detach()) for s, m in network.records()], output.detach()  # type: ignore[operator]


def _rel(a: Tensor, b: Tensor) -> Tensor:
    scale = torch.maximum(a.abs().amax(), b.abs().amax()).clamp_min(1.0)
    return (a - b).abs() / scale


def _compare_forward(a: tuple[list[tuple[Tensor, Tensor]], Tensor],
                     b: tuple[list[tuple[Tensor, Tensor]], Tensor]) -> ForwardComparison:
    steps = a[1].shape[1]
    first: int | None = None
    what = ""
    mismatches, max_mem = 0, 0.0
    for i, ((sa, ma), (sb, mb)) in enumerate(zip(a[0], b[0])):
        diff_spikes = (sa != sb).any(dim=2).any(dim=0)
        mem_rel = _rel(ma, mb)
        diff_mem = (mem_rel > FORWARD_TOL).any(dim=2).any(dim=0)
        mismatches += int((sa != sb).sum())
        max_mem = max(max_mem, float(mem_rel.max()))
        for label, mask in (("spikes", diff_spikes), ("membrane", diff_mem)):
            if bool(mask.any()):
                t = int(mask.nonzero()[0])
                if first is None or t < first:
                    first, what = t, f"{label} of layer {i}"
    out_rel = _rel(a[1], b[1])
    diff_out = (out_rel > FORWARD_TOL).reshape(out_rel.shape[0], steps, -1).any(dim=2).any(dim=0)
    if bool(diff_out.any()):
        t = int(diff_out.nonzero()[0])
        if first is None or t < first:
            first, what = t, "output"
    return ForwardComparison(first, what, mismatches, max_mem, float(out_rel.max()))


def _loss(output: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(output.mean(dim=1), targets)


def gradients(network: nn.Module, x: Tensor, targets: Tensor, *, smooth: bool,
              dtype: torch.dtype) -> dict[str, Tensor]:
    """The gradient of the comparison's loss w.r.t. each canonical parameter, on a private copy of ``network``.

    Args:
        network: A participant's network (never modified).
        x: Input ``[batch, time, channels]``.
        targets: Class indices ``[batch]``.
        smooth: Smooth mode (every spike function replaced by the surrogate's primitive) or spiking mode.
        dtype: Dtype of the copy.
    """
    copy = private_copy(network, dtype=dtype)
    copy.set_smooth(smooth)
    params = copy.model.parameters_by_name()  # type: ignore[operator]  # a participant method
    loss = _loss(copy.model(x.to(dtype)), targets)
    grads = torch.autograd.grad(loss, list(params.values()))
    return {name: g.detach().double() for name, g in zip(params, grads)}


def _compare_gradients(a: dict[str, Tensor], b: dict[str, Tensor]) -> GradientComparison:
    per: dict[str, float] = {}
    for name, ga in a.items():
        gb = b[name]
        floor = torch.maximum(ga.abs().amax(), gb.abs().amax()) * _GRAD_FLOOR
        scale = torch.maximum(torch.maximum(ga.abs(), gb.abs()), floor)
        rel = ((ga - gb).abs() / scale.clamp_min(torch.finfo(torch.float64).tiny)).amax()
        per[name] = float(rel)
    worst = max(per, key=lambda k: per[k])
    return GradientComparison(per[worst], worst, per)


@dataclass
class _Run:
    """Everything measured on one participant."""

    participant: Participant
    forward: tuple[list[tuple[Tensor, Tensor]], Tensor]
    smooth: dict[str, Tensor]
    spiking64: dict[str, Tensor]
    spiking32: dict[str, Tensor]


def _measure(participant: Participant, x: Tensor, targets: Tensor) -> _Run:
    network = participant.network
    return _Run(participant, run_forward(network, x),
                gradients(network, x, targets, smooth=True, dtype=torch.float64),
                gradients(network, x, targets, smooth=False, dtype=torch.float64),
                gradients(network, x, targets, smooth=False, dtype=torch.float32))


def compare_pair(a: Participant, b: Participant, x: Tensor, targets: Tensor) -> PairAgreement:
    """Compare two participants on input ``x`` (module docstring)."""
    return _pair(_measure(a, x, targets), _measure(b, x, targets))


def _pair(ra: _Run, rb: _Run) -> PairAgreement:
    return PairAgreement(ra.participant.name, rb.participant.name,
                         attribute(ra.participant.model, rb.participant.model),
                         _compare_forward(ra.forward, rb.forward), _compare_gradients(ra.smooth, rb.smooth),
                         _compare_gradients(ra.spiking64, rb.spiking64),
                         _compare_gradients(ra.spiking32, rb.spiking32))


def _emulate(spec: NetworkSpec, run: _Run, x: Tensor, targets: Tensor) -> EmulationCheck:
    engine = EngineChain(spec, run.participant.model)
    forward = _compare_forward(run_forward(engine, x), run.forward)
    smooth = _compare_gradients(gradients(engine, x, targets, smooth=True, dtype=torch.float64), run.smooth)
    return EmulationCheck(run.participant.name, forward, smooth)


def inputs(spec: NetworkSpec, *, steps: int, batch: int, seed: int, rate: float = 0.3) -> tuple[Tensor, Tensor]:
    """Seeded Bernoulli input spikes ``[batch, steps, channels]`` (float64) and random class targets."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, steps, spec.input_size, generator=generator) < rate).double()
    classes = spec.readout.weight.shape[0]
    targets = torch.randint(0, classes, (batch,), generator=generator)
    return x, targets


def crosscheck(
    network: NIRNetwork | str | os.PathLike[str],
    *,
    libraries: Sequence[str] | None = None,
    align: Iterable[str] = (),
    steps: int = 50,
    batch: int = 4,
    seed: int = 0,
    label: str | None = None,
    from_nir_kwargs: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    threads: int | None = 1,
) -> CrosscheckResult:
    """Compare one network across evoexp and the installed peer libraries (module docstring).

    Args:
        network: An imported NIR network, or a NIR file (read with ``from_nir(path, **from_nir_kwargs)``).
        libraries: Peer libraries to compare (default: snnTorch, SpikingJelly, Norse).
        align: Causes to align in the peers where the library has a setting for it (``input_scaling``, ``readout``,
            ``reset_detached``).
        steps: Time steps of the input.
        batch: Samples.
        seed: Seed of the input and targets.
        label: Name of the network in the report.
        from_nir_kwargs: Settings for reading a file (``dt``, ``reset``, ``surrogate``, ...).
        progress: Called with a short message before each library.
        threads: torch intra-op threads while the comparison runs (restored afterwards; ``None``: leave them). Its
            tensors are tiny: on a busy machine every extra thread waits for a core (one thread was measured up to
            20x faster than two on a shared 2-core machine, benchmarks/bench_crosscheck.py).

    Raises:
        ValueError: an unknown library or cause, or ``steps``/``batch`` < 1.
        evoexp.nir.NIRError: the file cannot be read.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _crosscheck(network, libraries, frozenset(align), steps, batch, seed, label, from_nir_kwargs,
                           progress)
    finally:
        torch.set_num_threads(previous)


def _crosscheck(network: NIRNetwork | str | os.PathLike[str], libraries: Sequence[str] | None,
                aligned: frozenset[str], steps: int, batch: int, seed: int, label: str | None,
                from_nir_kwargs: dict[str, Any] | None, progress: Callable[[str], None] | None) -> CrosscheckResult:
    start = time.perf_counter()
    unknown = sorted(aligned - set(CATALOGUE))
    if unknown:
        raise ValueError(f"align: unknown cause(s) {', '.join(unknown)}; causes: {', '.join(CATALOGUE)}")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got steps={steps}, batch={batch}")
    by_name = {cls.name: cls for cls in LIBRARIES}
    wanted = list(by_name) if libraries is None else list(libraries)
    bad = sorted(set(wanted) - set(by_name))
    if bad:
        raise ValueError(f"libraries: unknown {', '.join(bad)}; known: {', '.join(by_name)}")
    if isinstance(network, NIRNetwork):
        net, name = network, label or "network"
    else:
        net, name = from_nir(network, **(from_nir_kwargs or {})), label or os.fspath(network)
    net = copy.deepcopy(net).double()
    skipped: dict[str, str] = {}
    try:
        spec: NetworkSpec | None = network_spec(net)
    except Unmappable as error:
        spec = None
        skipped.update({lib: f"the network cannot be mapped into the peers: {error}" for lib in wanted})
    runs: list[_Run] = []
    emulations: list[EmulationCheck] = []
    if spec is not None:
        x, targets = inputs(spec, steps=steps, batch=batch, seed=seed)
        participants: list[Library] = [EvoexpLibrary(net)] + [by_name[lib]() for lib in wanted]
        for library in participants:
            reason = library.missing()
            if reason is None:
                try:
                    participant = library.participant(spec, aligned)
                except Unmappable as error:
                    reason = f"cannot build the network in {library.title}: {error}"
            if reason is not None:
                skipped[library.name] = reason
                continue
            if progress is not None:
                progress(f"running {library.title}")
            runs.append(_measure(participant, x, targets))
        emulations = [_emulate(spec, run, x, targets) for run in runs[1:]]
    pairs = [_pair(a, b) for a, b in itertools.combinations(runs, 2)]
    compared = [r.participant.name for r in runs] if runs else [EvoexpLibrary.name]
    nonfinite = {r.participant.name: bad for r in runs if (bad := _nonfinite(r))}
    return CrosscheckResult(name, net.settings.describe(), compared, skipped, pairs, emulations, nonfinite, steps,
                            batch, time.perf_counter() - start)


def _nonfinite(run: _Run) -> list[str]:
    modes = {"smooth float64": run.smooth, "spiking float64": run.spiking64, "spiking float32": run.spiking32}
    return [mode for mode, grads in modes.items() if not all(bool(torch.isfinite(g).all()) for g in grads.values())]
