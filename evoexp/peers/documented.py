r"""What snnTorch 1.0, SpikingJelly 2.0 and Norse 1.1 document for each surrogate spike function, with the source.

Each :class:`DocumentedSurrogate` holds the derivative a library's documentation states (as torch code in the
variable ``x`` = membrane minus threshold and the library's parameters), the documentation's source, the
documented (or, for SpikingJelly, the library's own ``spiking=False``) primitive when there is one, its kinks, the
parameter grid the audit uses (the default first) and the parameter that acts as the slope. ``python -m
evoexp.audit`` checks every installed library's functions against this table.

Sources were read from the installed packages' docstrings (file and object named in ``source``) and their online
API pages: snnTorch https://snntorch.readthedocs.io/en/latest/snntorch.surrogate.html (and its
``docs/examples/example_sur`` pages), SpikingJelly
https://spikingjelly.readthedocs.io/zh-cn/latest/sub_module/spikingjelly.activation_based.surrogate.html, Norse
https://norse.github.io/norse/auto_api/norse.torch.functional.threshold.html.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import torch
from torch import Tensor

from evoexp.peers.names import get_peer

__all__ = ["DOCUMENTED", "FORWARD_CONVENTIONS", "DocumentedSurrogate", "documented_for"]

P = Mapping[str, Any]


class Formula(Protocol):
    """A documented formula as torch code: ``(x, p) -> value`` with the surrogate's parameters ``p``."""

    def __call__(self, x: Tensor, p: P) -> Tensor: ...



@dataclass(frozen=True)
class DocumentedSurrogate:
    """One documented surrogate spike function.

    Attributes:
        library: ``snntorch``, ``spikingjelly`` or ``norse``.
        function: Its name (``PiecewiseQuadratic``; ``FastSigmoid.apply`` for a documented direct use).
        formula: The documented derivative as the docs write it.
        source: Where the docs say so (file and object in the installed package; see the module docstring for URLs).
        derivative: The documented derivative as torch code ``(x, params) -> g``.
        grid: Parameter sets to audit; the first is the library's default.
        primitive: The documented primitive, or the library's own smooth function, ``(x, params) -> P``.
        primitive_source: ``"documented"`` or ``"code"`` (what ``primitive`` is).
        kinks: Points where the documented derivative jumps or has a kink, ``params -> points``.
        slope: The parameter varied by the slope-dependence check (``None``: none).
        build: ``params -> spike_fn`` when the function is not built by :mod:`evoexp.peers.names`.
        variant: Which of two disagreeing documents this entry is (e.g. the backward helper's docstring).
        skip: Why the function cannot be audited against a formula (stochastic forward or backward).
        note: What the audit's reader must know about reading the docs.
    """

    library: str
    function: str
    formula: str
    source: str
    derivative: Formula
    grid: tuple[P, ...] = ({},)
    primitive: Formula | None = None
    primitive_source: str = ""
    kinks: Callable[[P], tuple[float, ...]] | None = None
    slope: str | None = None
    build: Callable[[P], Callable[[Tensor], Tensor]] | None = None
    variant: str = ""
    skip: str = ""
    note: str = ""

    @property
    def label(self) -> str:
        """``library:function`` plus the variant, when there is one."""
        return f"{self.library}:{self.function}" + (f" ({self.variant})" if self.variant else "")

    def spike_fn(self, params: P) -> Callable[[Tensor], Tensor]:
        """The library's own spike function at ``params``."""
        if self.build is not None:
            return self.build(params)
        return get_peer(f"{self.library}:{self.function}").build(**params)


def _sig(u: Tensor) -> Tensor:
    return torch.sigmoid(u)


def _pick(condition: Tensor, a: float, b: float, like: Tensor) -> Tensor:
    """``where(condition, a, b)`` in ``like``'s dtype (``torch.where`` of two Python floats gives float32)."""
    return torch.where(condition, torch.tensor(a, dtype=like.dtype), torch.tensor(b, dtype=like.dtype))


def _sj_primitive(name: str) -> Formula:
    """SpikingJelly's own ``primitive_function`` (what ``spiking=False`` runs)."""

    def primitive(x: Tensor, p: P) -> Tensor:
        from spikingjelly.activation_based import surrogate

        return getattr(surrogate, name).primitive_function(x, **p)

    return primitive


def _snn_apply(name: str) -> Callable[[P], Callable[[Tensor], Tensor]]:
    """``spike_grad=surrogate.<Name>.apply``, the docs' "Method 2": the neuron calls it with the membrane only."""

    def build(p: P) -> Callable[[Tensor], Tensor]:
        from snntorch import surrogate

        return getattr(surrogate, name).apply

    return build


def _fourier(x: Tensor, p: P) -> Tensor:
    w = 2 * math.pi / p["T_period"]
    return sum((4 / p["T_period"]) * torch.cos((2 * i - 1) * w * x) for i in range(1, int(p["n"])))


def _fourier_primitive(x: Tensor, p: P) -> Tensor:
    w = 2 * math.pi / p["T_period"]
    terms = (torch.sin((2 * i - 1) * w * x) / (2 * i - 1) for i in range(1, int(p["n"])))
    return 0.5 + (2 / math.pi) * sum(terms, torch.zeros_like(x))


_SNN = "snntorch/surrogate.py"
_SJ = "spikingjelly/activation_based/surrogate.py"
_NORSE = "norse/torch/functional/threshold.py"
_SNN_EXAMPLES = ("snnTorch docs, examples/example_sur/example_sur_{}.rst ('Method 2 applies the autograd inherited "
                 "method directly, using the default value')")
_ALPHA_GRID = ({"alpha": 100.0}, {"alpha": 0.5}, {"alpha": 3.0})

DOCUMENTED: tuple[DocumentedSurrogate, ...] = (
    # ---------------- snnTorch 1.0 ----------------
    DocumentedSurrogate(
        "snntorch", "fast_sigmoid", "dS/dU = 1/(1+k|U|)^2, S ≈ U/(1+k|U|)", f"{_SNN}, FastSigmoid docstring",
        lambda x, p: 1 / (1 + p["slope"] * x.abs()) ** 2, ({"slope": 25.0}, {"slope": 1.0}, {"slope": 5.0}),
        primitive=lambda x, p: x / (1 + p["slope"] * x.abs()), primitive_source="documented", slope="slope"),
    DocumentedSurrogate(
        "snntorch", "sigmoid", "dS/dU = k exp(-kU)/(exp(-kU)+1)^2, S ≈ 1/(1+exp(-kU))", f"{_SNN}, Sigmoid docstring",
        lambda x, p: p["slope"] * _sig(p["slope"] * x) * _sig(-p["slope"] * x),
        ({"slope": 25.0}, {"slope": 1.0}, {"slope": 5.0}),
        primitive=lambda x, p: _sig(p["slope"] * x), primitive_source="documented", slope="slope",
        note="the documented formula is evaluated in its overflow-free form k·σ(kx)·σ(-kx)"),
    DocumentedSurrogate(
        "snntorch", "atan", "dS/dU = (1/π)·1/(1+(πUα/2)^2), S ≈ (1/π)·arctan(πUα/2)", f"{_SNN}, ATan docstring",
        lambda x, p: (1 / math.pi) / (1 + (math.pi * x * p["alpha"] / 2) ** 2),
        ({"alpha": 2.0}, {"alpha": 0.5}, {"alpha": 10.0}),
        primitive=lambda x, p: torch.atan(math.pi * x * p["alpha"] / 2) / math.pi, primitive_source="documented",
        slope="alpha"),
    DocumentedSurrogate(
        "snntorch", "straight_through_estimator", "dS/dU = 1", f"{_SNN}, StraightThroughEstimator docstring",
        lambda x, p: torch.ones_like(x)),
    DocumentedSurrogate(
        "snntorch", "triangular", "dS/dU = U_thr if U < U_thr, -U_thr if U ≥ U_thr", f"{_SNN}, Triangular docstring",
        lambda x, p: _pick(x < 0, p["threshold"], -p["threshold"], x),
        ({"threshold": 1.0}, {"threshold": 0.5}, {"threshold": 2.0}), slope="threshold"),
    DocumentedSurrogate(
        "snntorch", "heaviside", "dS/dU = 1 if U ≥ U_thr, 0 if U < U_thr", f"{_SNN}, Heaviside docstring",
        lambda x, p: (x >= 0).to(x.dtype)),
    DocumentedSurrogate(
        "snntorch", "spike_rate_escape", "dS/dU = k exp(-β|U-1|)", f"{_SNN}, SpikeRateEscape docstring",
        lambda x, p: p["slope"] * torch.exp(-p["beta"] * (x - 1).abs()),
        ({"beta": 1.0, "slope": 25.0}, {"beta": 2.0, "slope": 25.0}, {"beta": 1.0, "slope": 5.0}),
        kinks=lambda p: (1.0,), slope="beta",
        note="read with U = the spike function's input (membrane minus threshold), as in the other docstrings"),
    DocumentedSurrogate(
        "snntorch", "SFS", "dS/dU = 1/(1+k|U|)^2 if U > B, else 0", f"{_SNN}, SparseFastSigmoid docstring",
        lambda x, p: (x > p["B"]).to(x.dtype) / (1 + p["slope"] * x.abs()) ** 2,
        ({"slope": 25.0, "B": 1.0}, {"slope": 25.0, "B": 0.5}, {"slope": 5.0, "B": 1.0}),
        kinks=lambda p: (p["B"],), slope="slope"),
    DocumentedSurrogate(
        "snntorch", "SSO", "dS/dU = 1 above threshold, (U[-0.5, 0.5)+μ)σ² below", f"{_SNN}, StochasticSpikeOperator",
        lambda x, p: torch.ones_like(x), ({"mean": 0.0, "variance": 0.2},),
        skip="stochastic backward below threshold: no formula to compare with"),
    DocumentedSurrogate(
        "snntorch", "LSO", "dS/dU = 1 if U ≥ U_thr, k if U < U_thr", f"{_SNN}, LeakySpikeOperator docstring",
        lambda x, p: _pick(x >= 0, 1.0, p["slope"], x),
        ({"slope": 0.1}, {"slope": 0.2}, {"slope": 0.5}), slope="slope"),
    *(DocumentedSurrogate(
        "snntorch", f"{name}.apply", f"as {doc} (default {defaults})", _SNN_EXAMPLES.format(example), formula,
        build=_snn_apply(name), variant="docs' Method 2",
        note="the docs pass the autograd Function's apply as spike_grad, 'using the default value'")
      for name, doc, defaults, example, formula in (
          ("FastSigmoid", "fast_sigmoid", "slope=25", "fs", lambda x, p: 1 / (1 + 25 * x.abs()) ** 2),
          ("Sigmoid", "sigmoid", "slope=25", "s", lambda x, p: 25 * _sig(25 * x) * _sig(-25 * x)),
          ("SpikeRateEscape", "spike_rate_escape", "beta=1, slope=25", "sre",
           lambda x, p: 25 * torch.exp(-(x - 1).abs())),
          ("LeakySpikeOperator", "LSO", "slope=0.2", "lso", lambda x, p: _pick(x >= 0, 1.0, 0.2, x)),
      )),
    # ---------------- SpikingJelly 2.0 ----------------
    DocumentedSurrogate(
        "spikingjelly", "PiecewiseQuadratic", "g'(x) = 0 if |x| > 1/α, -α²|x|+α if |x| ≤ 1/α",
        f"{_SJ}, PiecewiseQuadratic.__init__ docstring",
        lambda x, p: torch.where(x.abs() > 1 / p["alpha"], 0.0, -p["alpha"] ** 2 * x.abs() + p["alpha"]),
        ({"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 4.0}), _sj_primitive("PiecewiseQuadratic"), "code",
        kinks=lambda p: (-1 / p["alpha"], 1 / p["alpha"]), slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "PiecewiseExp", "g'(x) = (α/2)e^{-α|x|}", f"{_SJ}, PiecewiseExp.__init__ docstring",
        lambda x, p: p["alpha"] / 2 * torch.exp(-p["alpha"] * x.abs()),
        ({"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 5.0}), _sj_primitive("PiecewiseExp"), "code", slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "Sigmoid", "g'(x) = α(1-sigmoid(αx))sigmoid(αx)", f"{_SJ}, Sigmoid.__init__ docstring",
        lambda x, p: p["alpha"] * _sig(p["alpha"] * x) * _sig(-p["alpha"] * x),
        ({"alpha": 4.0}, {"alpha": 1.0}, {"alpha": 10.0}), _sj_primitive("Sigmoid"), "code", slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "SoftSign", "g'(x) = α/(2(1+|αx|)^2)", f"{_SJ}, SoftSign.__init__ docstring",
        lambda x, p: p["alpha"] / (2 * (1 + (p["alpha"] * x).abs()) ** 2),
        ({"alpha": 2.0}, {"alpha": 0.5}, {"alpha": 10.0}), _sj_primitive("SoftSign"), "code", slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "SoftSign", "∂SoftSign/∂x = 1/(2α(1+|x/α|)^2)", f"{_SJ}, soft_sign_backward docstring",
        lambda x, p: 1 / (2 * p["alpha"] * (1 + (x / p["alpha"]).abs()) ** 2),
        ({"alpha": 2.0}, {"alpha": 0.5}, {"alpha": 10.0}), slope="alpha", variant="soft_sign_backward docstring"),
    DocumentedSurrogate(
        "spikingjelly", "SuperSpike", "g'(x) = α/(1+|x|)^2", f"{_SJ}, SuperSpike.__init__ docstring",
        lambda x, p: p["alpha"] / (1 + x.abs()) ** 2, ({"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 4.0}),
        _sj_primitive("SuperSpike"), "code", slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "ATan", "g'(x) = α/(2(1+(παx/2)^2))", f"{_SJ}, ATan.__init__ docstring",
        lambda x, p: p["alpha"] / (2 * (1 + (math.pi / 2 * p["alpha"] * x) ** 2)),
        ({"alpha": 2.0}, {"alpha": 0.5}, {"alpha": 10.0}), _sj_primitive("ATan"), "code", slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "NonzeroSignLogAbs", "g'(x) = α/(1+|αx|)", f"{_SJ}, NonzeroSignLogAbs.__init__ docstring",
        lambda x, p: p["alpha"] / (1 + (p["alpha"] * x).abs()), ({"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 4.0}),
        _sj_primitive("NonzeroSignLogAbs"), "code", slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "Erf", "g'(x) = (α/√π)e^{-α²x²}", f"{_SJ}, Erf.__init__ docstring",
        lambda x, p: p["alpha"] / math.sqrt(math.pi) * torch.exp(-(p["alpha"] * x) ** 2),
        ({"alpha": 2.0}, {"alpha": 0.5}, {"alpha": 5.0}), _sj_primitive("Erf"), "code", slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "PiecewiseLeakyReLU", "g'(x) = 1/(2w) if -w ≤ x ≤ w, c if x < -w or x > w",
        f"{_SJ}, PiecewiseLeakyReLU.__init__ docstring",
        lambda x, p: _pick(x.abs() <= p["w"], 1 / (2 * p["w"]), p["c"], x),
        ({"w": 1.0, "c": 0.01}, {"w": 0.5, "c": 0.01}, {"w": 1.0, "c": 0.0}), _sj_primitive("PiecewiseLeakyReLU"),
        "code", kinks=lambda p: (-p["w"], p["w"]), slope="w"),
    DocumentedSurrogate(
        "spikingjelly", "SquarewaveFourierSeries", "g(x) = 1/2 + (2/π)Σ_{i=1}^{n-1} sin((2i-1)ωx)/(2i-1), ω = 2π/T "
        "(primitive only; g' is its derivative)", f"{_SJ}, SquarewaveFourierSeries.__init__ docstring", _fourier,
        ({"n": 2, "T_period": 8.0}, {"n": 3, "T_period": 8.0}, {"n": 2, "T_period": 4.0}), _fourier_primitive,
        "documented", slope="T_period"),
    DocumentedSurrogate(
        "spikingjelly", "S2NN", "g'(x) = α(1-sigmoid(αx))sigmoid(αx) for x < 0, β/(x+1) for x ≥ 0",
        f"{_SJ}, S2NN.__init__ docstring",
        lambda x, p: torch.where(x < 0, p["alpha"] * _sig(p["alpha"] * x) * _sig(-p["alpha"] * x),
                                 p["beta"] / (x.clamp(min=0) + 1)),
        ({"alpha": 4.0, "beta": 1.0}, {"alpha": 2.0, "beta": 1.0}, {"alpha": 4.0, "beta": 0.5}),
        _sj_primitive("S2NN"), "code", slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "QPseudoSpike", "g'(x) = (1+2|x|/(α-1))^{-α}", f"{_SJ}, QPseudoSpike.__init__ docstring",
        lambda x, p: (1 + 2 * x.abs() / (p["alpha"] - 1)) ** -p["alpha"],
        ({"alpha": 2.0}, {"alpha": 1.5}, {"alpha": 4.0}), _sj_primitive("QPseudoSpike"), "code", slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "LeakyKReLU", "g'(x) = k if x ≥ 0, leak if x < 0", f"{_SJ}, LeakyKReLU.__init__ docstring",
        lambda x, p: _pick(x >= 0, p["k"], p["leak"], x),
        ({"leak": 0.0, "k": 1.0}, {"leak": 0.1, "k": 1.0}, {"leak": 0.0, "k": 2.0}), _sj_primitive("LeakyKReLU"),
        "code", slope="k"),
    DocumentedSurrogate(
        "spikingjelly", "FakeNumericalGradient", "g'(x) = clip(sign(x)/x, α)",
        f"{_SJ}, FakeNumericalGradient.__init__ docstring",
        lambda x, p: torch.where(x == 0, p["alpha"], (1 / x.abs()).clamp(max=p["alpha"])),
        ({"alpha": 0.3}, {"alpha": 0.1}, {"alpha": 1.0}), slope="alpha",
        note="clip(·, α) read as an upper bound; sign(x)/x = 1/|x| (α at x = 0, its limit)"),
    DocumentedSurrogate(
        "spikingjelly", "FakeNumericalGradient", "g'(x) = (2-sign(x))/x if |(2-sign(x))/x| ≤ α, "
        "α·sign((2-sign(x))/x) otherwise", f"{_SJ}, fake_numerical_gradient_backward docstring",
        lambda x, p: torch.where(((2 - torch.sign(x)) / x).abs() <= p["alpha"], (2 - torch.sign(x)) / x,
                                 p["alpha"] * torch.sign((2 - torch.sign(x)) / x)).nan_to_num(p["alpha"]),
        ({"alpha": 0.3}, {"alpha": 0.1}, {"alpha": 1.0}), slope="alpha",
        variant="fake_numerical_gradient_backward docstring"),
    DocumentedSurrogate(
        "spikingjelly", "LogTailedReLU", "g'(x) = α if x ≤ 0, 1 if 0 < x ≤ 1, 1/x if x > 1",
        f"{_SJ}, LogTailedReLU.__init__ docstring",
        lambda x, p: torch.where(x <= 0, p["alpha"], torch.where(x <= 1, 1.0, 1 / x.clamp(min=1))),
        ({"alpha": 0.0}, {"alpha": 0.1}, {"alpha": 0.5}), _sj_primitive("LogTailedReLU"), "code",
        kinks=lambda p: (1.0,), slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "DeterministicPass", "backward directly passes the gradient (g' = 1)",
        f"{_SJ}, DeterministicPass.__init__ docstring", lambda x, p: torch.ones_like(x)),
    DocumentedSurrogate(
        "spikingjelly", "Rect", "g'(x) = α if |x| < 0.5/α, 0 if |x| ≥ 0.5/α", f"{_SJ}, Rect.__init__ docstring",
        lambda x, p: p["alpha"] * (x.abs() < 0.5 / p["alpha"]).to(x.dtype),
        ({"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 4.0}), _sj_primitive("Rect"), "code",
        kinks=lambda p: (-0.5 / p["alpha"], 0.5 / p["alpha"]), slope="alpha"),
    DocumentedSurrogate(
        "spikingjelly", "MultiLevelSpikeCount", "round(clamp(x, 0, max_spike_count)) forward, rectangular STE",
        f"{_SJ}, MultiLevelSpikeCount.__init__ docstring", lambda x, p: torch.ones_like(x),
        skip="multi-level spike counts, not a binary spike function"),
    DocumentedSurrogate(
        "spikingjelly", "PoissonPass", "Bernoulli forward, g' = 1", f"{_SJ}, PoissonPass.__init__ docstring",
        lambda x, p: torch.ones_like(x), skip="stochastic (Bernoulli) forward: not a step function"),
    # ---------------- Norse 1.1 ----------------
    DocumentedSurrogate(
        "norse", "super", "SuperSpike (Zenke & Ganguli 2018, §3.3.2, β → alpha): 1/(alpha|x|+1)^2",
        "norse/torch/functional/superspike.py, SuperSpike docstring and the comment 'section 3.3.2 (beta -> alpha)'; "
        "LIFParameters: 'alpha: hyper parameter to use in surrogate gradient computation'",
        lambda x, p: 1 / (p["alpha"] * x.abs() + 1) ** 2, _ALPHA_GRID, slope="alpha",
        note="earlier Norse releases computed exactly this (norse.github.io, _modules/norse/torch/functional/"
             "superspike.html)"),
    DocumentedSurrogate(
        "norse", "heaviside", "H[n] = 0 for n ≤ 0, 1 for n > 0", "norse/torch/functional/heaviside.py",
        lambda x, p: torch.zeros_like(x), skip="no surrogate gradient by design: the step has no backward"),
    DocumentedSurrogate(
        "norse", "triangle", "triangular / piecewise linear (Esser et al. 2016; Bellec et al. 2020): "
        "alpha·max(0, 1-|x|)", f"{_NORSE}, Triangle docstring (the formula is the cited papers')",
        lambda x, p: p["alpha"] * (1 - x.abs()).clamp(min=0), ({"alpha": 100.0}, {"alpha": 0.3}, {"alpha": 3.0}),
        kinks=lambda p: (-1.0, 1.0), slope="alpha"),
    DocumentedSurrogate(
        "norse", "tanh", "h(x,k) = 1/2 + tanh(kx)/2", f"{_NORSE}, HeaviTanh docstring",
        lambda x, p: p["alpha"] / 2 * (1 - torch.tanh(p["alpha"] * x) ** 2), _ALPHA_GRID,
        primitive=lambda x, p: 0.5 + 0.5 * torch.tanh(p["alpha"] * x), primitive_source="documented", slope="alpha"),
    DocumentedSurrogate(
        "norse", "circ", "h(x,α) = 1/2 + x/(2(x²+α²)^{1/2})", f"{_NORSE}, HeaviCirc docstring",
        lambda x, p: p["alpha"] ** 2 / (2 * (x**2 + p["alpha"] ** 2) ** 1.5), _ALPHA_GRID,
        primitive=lambda x, p: 0.5 + 0.5 * x / torch.sqrt(x**2 + p["alpha"] ** 2), primitive_source="documented",
        slope="alpha"),
    DocumentedSurrogate(
        "norse", "heavi_erfc", "h(x,k) = 1/2 + erfc(kx)/2", f"{_NORSE}, HeaviErfc docstring",
        lambda x, p: -p["alpha"] / math.sqrt(math.pi) * torch.exp(-(p["alpha"] * x) ** 2), _ALPHA_GRID,
        primitive=lambda x, p: 0.5 + 0.5 * torch.erfc(p["alpha"] * x), primitive_source="documented",
        slope="alpha"),
)

FORWARD_CONVENTIONS: Mapping[str, tuple[float, str, str]] = MappingProxyType({
    "snntorch": (1.0, "S = 1 if U ≥ U_thr (every snntorch.surrogate docstring's forward pass)", "atan"),
    "spikingjelly": (1.0, "heaviside: g(x) = 1 for x ≥ 0 (spikingjelly.activation_based.surrogate.heaviside)",
                     "Sigmoid"),
    "norse": (0.0, "H[n] = 0 for n ≤ 0, 1 for n > 0 (norse.torch.functional.heaviside)", "super"),
})
"""Library -> (documented H(0), the documentation, the function whose forward is checked: the library default)."""


@functools.cache
def documented_for(library: str) -> tuple[DocumentedSurrogate, ...]:
    """The documented functions of ``library``, in table order."""
    return tuple(entry for entry in DOCUMENTED if entry.library == library)
