"""The catalogue of causes: every way two SNN libraries can compute the "same" network differently.

Each library's network is described by a :class:`LibraryModel`: the step conventions its neurons use
(:class:`~evoexp.functional.discrete.StepConventions`) and the effective discrete constants it ends up with (decays,
input scales, threshold, readout). Two libraries differ by the fields in which their models differ, and each field
belongs to one named :class:`Cause` of :data:`CATALOGUE`. :func:`attribute` names the causes of a pair; each cause
says what it can change (the recorded membrane, the spikes, the gradient), so a comparison knows which differences a
pair's causes explain. docs/guides/crosscheck.md has the table of which library does what.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from evoexp.functional.discrete import StepConventions
from evoexp.functional.lif import ResetMode

__all__ = [
    "CATALOGUE",
    "Cause",
    "LayerModel",
    "LibraryModel",
    "attribute",
    "explains",
]

MEMBRANE, SPIKES, GRADIENT, TIES = "membrane", "spikes", "gradient", "ties"


@dataclass(frozen=True)
class Cause:
    """One documented way in which libraries compute a step differently.

    Attributes:
        name: Short key (the ``causes`` column of ``agreement.csv``).
        title: What differs, in words.
        description: The two choices, and which library makes which.
        effects: What it can change: ``"membrane"`` (the recorded membrane), ``"spikes"``, ``"gradient"``, or
            ``"ties"`` (spikes only where a membrane is exactly at threshold).
    """

    name: str
    title: str
    description: str
    effects: frozenset[str]


_CAUSES = (
    Cause("reset_timing", "reset applied in the same step or the next",
          "the membrane recorded at a spike step is already reset (NIR's reference, SpikingJelly, Norse) or still "
          "above threshold, the reset entering the next update (snnTorch's reset_delay=True, its default; evoexp's "
          "LIF layer)", frozenset({MEMBRANE})),
    Cause("reset_leak", "threshold subtracted before or after the leak",
          "the next step's leak acts on the reset membrane, so the subtracted threshold decays by beta (NIR, "
          "SpikingJelly, Norse; snnTorch with reset_delay=False), or the threshold is subtracted undecayed after the "
          "leak (snnTorch's delayed reset, evoexp's LIF layer); for a zero reset, 'after' also discards that step's "
          "input", frozenset({MEMBRANE, SPIKES, GRADIENT})),
    Cause("initial_reset", "reset computed from the initial membrane",
          "step 0's reset term is computed from the initial membrane (snnTorch's delayed reset: H(0 - threshold), "
          "zero when spiking but the primitive's value below threshold in smooth mode) or there is none (every other "
          "library)", frozenset({GRADIENT})),
    Cause("reset_detached", "reset detached from the gradient or not",
          "the reset term is a constant in the backward pass (snnTorch always; SpikingJelly with detach_reset=True; "
          "Norse's recurrent cells) or part of it (NIR import in evoexp by default, SpikingJelly's default, Norse's "
          "feed-forward cells)", frozenset({GRADIENT})),
    Cause("spike_condition", "spike condition > vs >= (H(0))",
          "a membrane exactly at threshold does not spike (>: evoexp, snnTorch, Norse, NIR) or does (>=: "
          "SpikingJelly)", frozenset({TIES})),
    Cause("decay_mapping", "beta = 1 - dt/tau vs exp(-dt/tau)",
          "a time constant becomes the forward-Euler decay 1 - dt/tau (NIR's reference; snnTorch's, Norse's and "
          "SpikingJelly's tau parameters) or the exact exponential exp(-dt/tau) (evoexp's SNN from time constants; "
          "from_nir(decay='exp'))", frozenset({MEMBRANE, SPIKES, GRADIENT})),
    Cause("input_scaling", "input current scaling (w_in, r)",
          "the current enters the membrane scaled by (1 - beta) R and the synapse by (1 - alpha) w_in (NIR's Euler "
          "step; SpikingJelly's decay_input=True with R = 1; Norse's membrane with R = 1) or unscaled (snnTorch; "
          "SpikingJelly's decay_input=False; Norse's synaptic current)", frozenset({MEMBRANE, SPIKES, GRADIENT})),
    Cause("input_delay", "steps from an input to the membrane",
          "an input at step t reaches the membrane at step t (NIR's reference, snnTorch, SpikingJelly, Norse 1.1) "
          "or later (evoexp's LIF layer: t + 2; an explicit Euler synapse: t + 1)", frozenset({MEMBRANE, SPIKES,
                                                                                             GRADIENT})),
    Cause("readout", "readout convention",
          "the non-spiking readout integrates its input scaled by (1 - beta) R (NIR's LI, SpikingJelly's "
          "NonSpikingLIFNode, Norse's LIBoxCell) or unscaled, o = beta o + W s (snnTorch's Leaky without reset, "
          "evoexp's SNN readout)", frozenset({MEMBRANE, GRADIENT})),
)

CATALOGUE: Mapping[str, Cause] = MappingProxyType({cause.name: cause for cause in _CAUSES})
"""Every cause, by name, in the order of docs/guides/crosscheck.md."""


@dataclass(frozen=True)
class LayerModel:
    """The effective constants of one spiking layer as a library computes it (one value per layer).

    Attributes:
        alpha: Synaptic decay (0: no synaptic current).
        beta: Membrane decay.
        k_in: Scale of the drive into the synaptic current.
        k_mem: Scale of the current into the membrane.
        leak: Constant added to the membrane each step.
        threshold: Firing threshold.
        v_reset: Reset potential.
    """

    alpha: float
    beta: float
    k_in: float
    k_mem: float
    leak: float
    threshold: float
    v_reset: float


@dataclass(frozen=True)
class LibraryModel:
    """What a library computes for the network: step conventions and effective constants.

    Attributes:
        library: The library's name.
        conventions: How its neurons compute a step.
        layers: Effective constants of each spiking layer.
        readout_beta: Decay of the non-spiking readout.
        readout_k: Scale of the readout's input.
        reset: ``"subtract"`` or ``"zero"``.
    """

    library: str
    conventions: StepConventions
    layers: tuple[LayerModel, ...]
    readout_beta: float
    readout_k: float
    reset: ResetMode


def _close(a: float, b: float, rtol: float) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=rtol)


_STEP_CAUSES = {"reset_timing": "reset_timing", "reset_leak": "reset_leak", "reset_detached": "reset_detached",
                "spike_at_threshold": "spike_condition", "input_delay": "input_delay",
                "current_delay": "input_delay", "initial_reset": "initial_reset"}


def attribute(a: LibraryModel, b: LibraryModel, *, rtol: float = 1e-12) -> tuple[str, ...]:
    """The causes (names in :data:`CATALOGUE` order) by which the models ``a`` and ``b`` differ.

    Constants are compared with relative tolerance ``rtol`` (two libraries' formulas for the same value round
    differently).

    Raises:
        ValueError: the models have different numbers of layers or different reset mechanisms (not the same
            network).
    """
    if len(a.layers) != len(b.layers) or a.reset != b.reset:
        raise ValueError(f"{a.library} and {b.library} do not model the same network (layers or reset differ)")
    found = {_STEP_CAUSES[field] for field in a.conventions.differences(b.conventions)}
    for la, lb in zip(a.layers, b.layers):
        if not (_close(la.alpha, lb.alpha, rtol) and _close(la.beta, lb.beta, rtol)):
            found.add("decay_mapping")
        if not all(_close(x, y, rtol) for x, y in ((la.k_in, lb.k_in), (la.k_mem, lb.k_mem), (la.leak, lb.leak))):
            found.add("input_scaling")
        if not (_close(la.threshold, lb.threshold, rtol) and _close(la.v_reset, lb.v_reset, rtol)):
            raise ValueError(f"{a.library} and {b.library} have different thresholds or reset potentials")
    if not _close(a.readout_beta, b.readout_beta, rtol):
        found.add("decay_mapping")
    if not _close(a.readout_k, b.readout_k, rtol):
        found.add("readout")
    return tuple(name for name in CATALOGUE if name in found)


def explains(causes: tuple[str, ...], effect: str) -> bool:
    """Whether one of ``causes`` can change ``effect`` (``"membrane"``, ``"spikes"``, ``"gradient"``, ``"ties"``)."""
    return any(effect in CATALOGUE[name].effects for name in causes)
