r"""The escape-noise identity of Gygax & Zenke (2025), checked on evoexp's real LIF node.

See docs/guides/theory.md, "3. Escape noise".

A stochastic LIF neuron with escape noise fires at step :math:`t` with probability
:math:`p[t] = \sigma(\beta_n(U[t] - \theta))` given its history (its earlier spikes, which enter the membrane through
the reset). The derivative of its expected output is therefore

.. math:: \frac{\partial}{\partial w}\,\mathbb{E}[s[t] \mid s[<t]]
          = \beta_n\,\sigma'(\beta_n(U[t]-\theta))\,\frac{\partial U[t]}{\partial w}
          = g(U[t]-\theta)\,\frac{\partial U[t]}{\partial w}, \qquad g(x) = \frac{d}{dx}\sigma(\beta_n x),

which is the surrogate gradient of the sampled spike when the surrogate derivative is the escape function's
derivative :math:`g` (evoexp's ``sigmoid`` surrogate with slope :math:`\beta_n`). For a single layer of :math:`N`
independent neurons and an output linear in the spikes, :math:`y = \sum_{b,t,i} c_{bti}\, s_i[b, t]`, the same
holds for :math:`\partial\,\mathbb{E}[y \mid \text{history}]/\partial W` by linearity, exactly and for every sample:
the surrogate gradient does not depend on the sampled spikes at the step it differentiates.

:func:`verify_escape_noise` checks this statement on the code that trains: one seeded sample of the layer's spikes
(uniform draws through :func:`~evoexp.functional.linear_lif_sequence`, its hand-written adjoint, ``bptt`` as
configured), the reset held at the sampled history (``detach_reset``: the history is given, as in the statement),
against the exact derivative of the expected output computed independently in float64:

* the membrane :math:`U` from the sampled history by a plain autograd loop of the LIF equations (not the node);
* the expected output by enumeration: at every (sample, step), all :math:`2^N` joint spike patterns :math:`z` of the
  layer with probability :math:`\prod_i p_i^{z_i}(1-p_i)^{1-z_i}` (and by the closed form :math:`\sum c\,p`, which
  must agree);
* its gradient by autograd through that enumeration.

Two cases run: a single neuron (:math:`N = 1`) and a single layer (``n_neurons``). They must agree to float64
precision (``atol``, ``rtol``); a wrong derivative anywhere in the adjoint, or a surrogate that is not the escape
function's derivative, fails the check (the latter is reported by :attr:`EscapeNoiseResult.configured_surrogate`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from evoexp import keys
from evoexp.arguments import checked_by
from evoexp.functional.lif import BPTTMode, LIFParameters, linear_lif_sequence
from evoexp.results import Result
from evoexp.surrogate import SurrogateGradient, get_surrogate

__all__ = [
    "EscapeNoiseCase",
    "EscapeNoiseResult",
    "check_escape_noise_arguments",
    "escape_derivative",
    "verify_escape_noise",
]

_MAX_ENUMERATED = 12  # neurons whose 2^N joint spike patterns are enumerated


def escape_derivative(escape_noise: float) -> SurrogateGradient:
    r"""The escape function's derivative :math:`\frac{d}{dx}\sigma(\beta_n x)` as a surrogate.

    It is evoexp's ``sigmoid`` shape with slope :math:`\beta_n` and scale 1: the surrogate for which the identity
    of this module holds.
    """
    return get_surrogate("sigmoid", slope=escape_noise, scale=1.0)


@dataclass
class EscapeNoiseCase:
    r"""One case of the identity (a single neuron, or a single layer).

    Attributes:
        name: ``"single neuron"`` or ``"single layer"``.
        n_neurons: Neurons :math:`N` of the layer.
        time_steps: Steps of the sampled spike train.
        spike_rate: Fraction of sampled spikes (the history the check conditions on).
        max_abs_error: :math:`\max |\text{surrogate} - \text{exact}|` over every weight and bias coordinate.
        max_rel_error: ``max_abs_error`` relative to the largest exact derivative.
        worst: The coordinate of the largest violation of ``atol + rtol * |exact|``, with both values.
        enumeration_error: :math:`|E_\text{enumeration} - E_\text{closed form}|` of the expected output (must be at
            rounding level; it checks the enumeration).
        passed: Every coordinate within ``atol + rtol * |exact|`` and the enumeration consistent.
    """

    name: str
    n_neurons: int
    time_steps: int
    spike_rate: float
    max_abs_error: float
    max_rel_error: float
    worst: str
    enumeration_error: float
    passed: bool


@dataclass
class EscapeNoiseResult(Result):
    r"""Outcome of :func:`verify_escape_noise`.

    Attributes:
        escape_noise: :math:`\beta_n`.
        surrogate: The surrogate whose backward was checked (the escape function's derivative).
        bptt: The node's BPTT path (``custom``: hand-written adjoint; ``autograd``: the reference loop).
        params: The layer constants (``detach_reset`` forced on: the statement holds the history).
        atol: Absolute tolerance.
        rtol: Relative tolerance.
        seed: Seed of inputs, weights, readout and the spike sample.
        cases: The single-neuron and single-layer cases.
        configured_surrogate: The layer's own surrogate when it is not the escape derivative, else None.
        configured_max_rel_error: How far that surrogate's gradient is from the exact derivative (single layer;
            NaN when ``configured_surrogate`` is None). Informational: the identity holds for the escape derivative
            only.
        message: One line: what passed, or the worst numerical vs analytical value.
        warnings: Caveats (a reset the check held, a configured surrogate that is not the escape derivative).
    """

    check: ClassVar[str] = "escape_noise"

    escape_noise: float
    surrogate: str
    bptt: str
    params: dict[str, float | str | bool | None]
    atol: float
    rtol: float
    seed: int
    cases: list[EscapeNoiseCase]
    configured_surrogate: str | None = None
    configured_max_rel_error: float = math.nan
    message: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every case satisfies the identity."""
        return all(case.passed for case in self.cases)

    def summary(self) -> dict[str, float]:
        """``escape_noise/max_abs_error``, ``escape_noise/max_rel_error`` (over cases) and ``escape_noise/passed``."""
        return {
            keys.ESCAPE_MAX_ABS_ERROR: max(c.max_abs_error for c in self.cases),
            keys.ESCAPE_MAX_REL_ERROR: max(c.max_rel_error for c in self.cases),
            keys.ESCAPE_PASSED: float(self.passed),
        }


def _membrane(current: Tensor, history: Tensor, params: LIFParameters) -> Tensor:
    """Membrane ``U[t]`` (``[B, T, N]``) of the LIF equations for input current ``I`` and the given spike history.

    A plain loop, independent of the node: ``syn[t+1] = α syn[t] + I[t]``, ``mem[t+1] = β mem[t] + syn[t] - θ r[t]``
    (subtract) or ``(β mem[t] + syn[t]) (1 - r[t])`` (zero), ``r`` the history.
    """
    syn = torch.zeros_like(current[:, 0])
    mem = torch.zeros_like(syn)
    membranes = []
    for t in range(current.shape[1]):
        membranes.append(mem)
        drive = params.beta * mem + syn
        subtract = params.reset == "subtract"
        mem = drive - params.threshold * history[:, t] if subtract else drive * (1.0 - history[:, t])
        syn = params.alpha * syn + current[:, t]
    return torch.stack(membranes, dim=1)


def _expected_output(probability: Tensor, readout: Tensor) -> tuple[Tensor, Tensor]:
    r"""Expected output :math:`\sum c\,s` given the firing probabilities: by enumeration and in closed form.

    The enumeration sums, at every (sample, step), over all :math:`2^N` joint spike patterns of the layer.
    """
    n = probability.shape[-1]
    patterns = torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=probability.dtype)  # [2^N, N]
    p = probability.unsqueeze(-2)  # [B, T, 1, N]
    weights = (patterns * p + (1.0 - patterns) * (1.0 - p)).prod(dim=-1)  # [B, T, 2^N]
    outputs = patterns @ readout.unsqueeze(-1)  # [B, T, 2^N, 1]
    enumerated = (weights * outputs.squeeze(-1)).sum()
    return enumerated, (probability * readout).sum()


@dataclass(frozen=True)
class _Setup:
    """Sizes, seed, BPTT path and tolerances shared by the cases."""

    n_inputs: int
    time_steps: int
    batch: int
    seed: int
    bptt: BPTTMode
    atol: float
    rtol: float


def _case(
    name: str, n_neurons: int, params: LIFParameters, surrogate: SurrogateGradient, setup: _Setup
) -> EscapeNoiseCase:
    n_inputs, time_steps, batch, atol, rtol = setup.n_inputs, setup.time_steps, setup.batch, setup.atol, setup.rtol
    generator = torch.Generator().manual_seed(setup.seed)
    dtype = torch.float64
    x = torch.rand(batch, time_steps, n_inputs, generator=generator, dtype=dtype)
    # Membranes of order theta, so that firing probabilities are neither 0 nor 1.
    weight = torch.randn(n_neurons, n_inputs, generator=generator, dtype=dtype) * (params.threshold / n_inputs**0.5)
    bias = torch.randn(n_neurons, generator=generator, dtype=dtype) * 0.2 * params.threshold
    readout = torch.randn(batch, time_steps, n_neurons, generator=generator, dtype=dtype)
    draws = torch.rand(batch, time_steps, n_neurons, generator=generator, dtype=dtype)
    weight.requires_grad_(True)
    bias.requires_grad_(True)

    spikes = linear_lif_sequence(x, weight, bias, params, surrogate, bptt=setup.bptt, noise=draws)
    surrogate_grads = torch.autograd.grad((spikes * readout).sum(), [weight, bias])

    history = spikes.detach()
    current = x @ weight.T + bias
    escape = float(params.escape_noise or 0.0)  # set: checked by verify_escape_noise
    probability = torch.sigmoid(escape * (_membrane(current, history, params) - params.threshold))
    enumerated, closed = _expected_output(probability, readout)
    exact = torch.autograd.grad(enumerated, [weight, bias])

    worst_excess, worst, max_abs, scale = -math.inf, "", 0.0, atol
    for label, analytic, reference in zip(("weight", "bias"), surrogate_grads, exact):
        diff = (analytic - reference).abs()
        max_abs, scale = max(max_abs, float(diff.max())), max(scale, float(reference.abs().max()))
        excess = diff - (atol + rtol * reference.abs())
        k = int(excess.argmax())
        if float(excess.reshape(-1)[k]) > worst_excess:
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(k), reference.shape))
            worst_excess = float(excess.reshape(-1)[k])
            worst = (
                f"{label}{list(index)}: surrogate gradient {float(analytic.reshape(-1)[k])!r} vs exact derivative "
                f"of the expected output {float(reference.reshape(-1)[k])!r}"
            )
    enumeration_error = float((enumerated - closed).detach().abs())
    consistent = enumeration_error <= 1e-12 * max(1.0, float(closed.detach().abs()))
    return EscapeNoiseCase(
        name=name,
        n_neurons=n_neurons,
        time_steps=time_steps,
        spike_rate=float(history.mean()),
        max_abs_error=max_abs,
        max_rel_error=max_abs / scale,
        worst=worst,
        enumeration_error=enumeration_error,
        passed=bool(worst_excess <= 0.0 and consistent),
    )


def check_escape_noise_arguments(args: Mapping[str, Any]) -> None:
    """The argument check of :func:`verify_escape_noise` (:func:`evoexp.arguments.checked_by`): the cases' sizes.

    Raises:
        ValueError: The first invalid setting, named first.
    """
    n_neurons = args["n_neurons"]
    if isinstance(n_neurons, bool) or not isinstance(n_neurons, int) or not 1 <= n_neurons <= _MAX_ENUMERATED:
        raise ValueError(f"n_neurons must be in [1, {_MAX_ENUMERATED}] (2^N patterns enumerated), got {n_neurons!r}")
    for key in ("n_inputs", "time_steps", "batch"):
        value = args[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")
    for key in ("atol", "rtol"):
        value = args[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{key} must be a finite number > 0, got {value!r}")


@checked_by(check_escape_noise_arguments)
def verify_escape_noise(
    params: LIFParameters,
    surrogate: SurrogateGradient | None = None,
    *,
    n_neurons: int = 4,
    n_inputs: int = 3,
    time_steps: int = 8,
    batch: int = 2,
    seed: int = 0,
    bptt: BPTTMode = "custom",
    atol: float = 1e-12,
    rtol: float = 1e-9,
) -> EscapeNoiseResult:
    r"""Check that the surrogate gradient of sampled escape-noise spikes is the derivative of the expected output.

    See the module docstring for the statement. The check runs the real node (:func:`~evoexp.functional.
    linear_lif_sequence`) with the escape function's derivative as surrogate and compares, for every weight and bias
    coordinate, with the exact derivative of the expected output given the sampled history (enumeration, float64).

    Args:
        params: Layer constants with ``escape_noise`` :math:`= \beta_n` (``detach_reset`` is forced on: the
            statement conditions on the neuron's history).
        surrogate: The layer's configured surrogate; when it is not the escape derivative its distance from the
            exact derivative is reported too (informational). The check itself always uses the escape derivative.
        n_neurons: Neurons of the single-layer case (at most 12: :math:`2^N` patterns are enumerated).
        n_inputs: Input channels.
        time_steps: Steps of the sampled spike train.
        batch: Samples.
        seed: Seed of inputs, weights, readout coefficients and the spike sample.
        bptt: The node's BPTT path to check.
        atol: Absolute tolerance.
        rtol: Relative tolerance.

    Returns:
        An :class:`EscapeNoiseResult`.

    Raises:
        ValueError: ``params`` without escape noise, or sizes out of range.
    """
    escape_noise = params.escape_noise
    if escape_noise is None:
        raise ValueError("params.escape_noise is None: the identity concerns escape-noise (stochastic) neurons")
    held = dataclasses.replace(params, detach_reset=True)
    escape = escape_derivative(escape_noise)
    setup = _Setup(n_inputs, time_steps, batch, seed, bptt, atol, rtol)
    sizes = (("single neuron", 1), ("single layer", n_neurons))
    cases = [_case(name, n, held, escape, setup) for name, n in sizes]
    result = EscapeNoiseResult(
        escape_noise=escape_noise,
        surrogate=repr(escape),
        bptt=bptt,
        params=dataclasses.asdict(held),
        atol=atol,
        rtol=rtol,
        seed=seed,
        cases=cases,
    )
    if not params.detach_reset:
        result.warnings.append(
            "the layer's reset is attached; the identity holds its history, so it was checked with detach_reset"
        )
    if surrogate is not None and surrogate != escape:
        configured = _case("single layer", n_neurons, held, surrogate, setup)
        result.configured_surrogate = repr(surrogate)
        result.configured_max_rel_error = configured.max_rel_error
        result.warnings.append(
            f"the layer trains with {surrogate!r}, not the escape derivative {escape!r}: its surrogate gradient is "
            f"not the derivative of the expected output (max relative error {configured.max_rel_error:.3g})"
        )
    result.message = _message(cases, n_neurons)
    return result


def _message(cases: list[EscapeNoiseCase], n_neurons: int) -> str:
    """The first failing case and its worst value, or the identity held with the largest error."""
    failed = [c for c in cases if not c.passed]
    if failed:
        return f"{failed[0].name}: {failed[0].worst}"
    worst = max(c.max_abs_error for c in cases)
    return (
        f"surrogate gradient = derivative of the expected output (single neuron and layer of {n_neurons}); "
        f"max abs error {worst:.3g}"
    )
