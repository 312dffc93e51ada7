r"""The peers' surrogate names: which evoexp shape equals each snnTorch 1.0, SpikingJelly 2.0 and Norse 1.1 function.

A peer function is named ``"<library>:<function>"`` (``"snntorch:fast_sigmoid"``, ``"spikingjelly:PiecewiseQuadratic"``,
``"norse:super"``) with the parameters of that library (snnTorch's ``slope``/``alpha``, SpikingJelly's ``alpha``,
Norse's ``alpha`` of :class:`norse.torch.LIFParameters`). :func:`peer_surrogate` builds the evoexp shape whose
derivative equals what the peer's backward computes -- the code, not the name or the docstring: SpikingJelly's
``PiecewiseQuadratic`` names its primitive, so its derivative is evoexp's ``triangular``; Norse 1.1's ``super``
ignores ``alpha``. ``tests/test_peers_names.py`` compares every mapping with the peer's actual backward.

Norse's functions are the ``method`` strings of ``norse.torch.functional.threshold.threshold(x, method, alpha)``;
their default ``alpha`` is ``LIFParameters``' 100.

Example:
    >>> peer_surrogate("spikingjelly:PiecewiseQuadratic", alpha=2.0)
    triangular(slope=2.0, scale=1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import Tensor

from evoexp.surrogate import SurrogateGradient, available_surrogates, get_surrogate

__all__ = [
    "LIBRARIES",
    "PeerSurrogate",
    "available_peer_surrogates",
    "evoexp_table_markdown",
    "get_peer",
    "peer_surrogate",
    "unmapped_table_markdown",
]

LIBRARIES: Mapping[str, str] = MappingProxyType({"snntorch": "snnTorch 1.0", "spikingjelly": "SpikingJelly 2.0",
                                                 "norse": "Norse 1.1"})
"""Library key -> the name and version the mapping was checked against."""

Params = dict[str, float]


@dataclass(frozen=True)
class PeerSurrogate:
    """One surrogate spike function of a peer library and the evoexp shape that equals it.

    Attributes:
        library: ``snntorch``, ``spikingjelly`` or ``norse``.
        function: The peer's name: a function of ``snntorch.surrogate``, a class of
            ``spikingjelly.activation_based.surrogate``, a ``method`` of Norse's ``threshold``.
        defaults: The peer's parameters and their defaults, in the peer's order.
        shape: Name of the equal evoexp shape, ``None`` when no evoexp shape equals it.
        convert: Peer parameters -> evoexp parameters (``None`` when ``shape`` is).
        conversion: The conversion in words, e.g. ``"slope = alpha"``.
        note: What a reader must know (where the code departs from the docs, why there is no evoexp shape).
        grid: Parameter sets checked against the peer's backward: the default and two others.
        constraint: Returns an error message for peer parameters the mapping does not cover, else ``None``.
    """

    library: str
    function: str
    defaults: Mapping[str, float]
    shape: str | None = None
    convert: Callable[[Params], Params] | None = None
    conversion: str = ""
    note: str = ""
    grid: tuple[Mapping[str, float], ...] = ()
    constraint: Callable[[Params], str | None] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """``"<library>:<function>"``."""
        return f"{self.library}:{self.function}"

    def params(self, **params: float) -> Params:
        """The peer parameters: ``defaults`` updated with ``params``.

        Raises:
            ValueError: An unknown parameter name (the message lists the valid ones).
        """
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(self.defaults) or "none"
            raise ValueError(f"{self.key}: unknown parameter(s) {', '.join(unknown)}; valid parameters: {valid}")
        return {**self.defaults, **params}

    def evoexp(self, **params: float) -> SurrogateGradient:
        """The evoexp shape equal to this peer function at ``params``.

        Raises:
            ValueError: No evoexp shape equals this function (or not at these parameters), or a bad parameter.
        """
        values = self.params(**params)
        if self.shape is None or self.convert is None:
            raise ValueError(
                f"{self.key} has no equal evoexp shape ({self.note}); peer names with an evoexp shape: "
                f"{', '.join(available_peer_surrogates(mapped_only=True))}"
            )
        problem = self.constraint(values) if self.constraint is not None else None
        if problem:
            raise ValueError(f"{self.key}: {problem}")
        return get_surrogate(self.shape, **self.convert(values))

    def build(self, **params: float) -> Callable[[Tensor], Tensor]:
        """The peer's own spike function at ``params`` (imports the peer library).

        Raises:
            ImportError: The peer library is not installed (``pip install evoexp[peers]``).
        """
        values = self.params(**params)
        if self.library == "snntorch":
            from snntorch import surrogate

            return getattr(surrogate, self.function)(**values)
        if self.library == "spikingjelly":
            from spikingjelly.activation_based import surrogate

            return getattr(surrogate, self.function)(**values)
        from norse.torch.functional.threshold import threshold

        method, alpha = self.function, values.get("alpha", 0.0)
        return lambda x: threshold(x, method, alpha)


def _same(**names: str) -> Callable[[Params], Params]:
    """Conversion that renames peer parameters: ``_same(slope="alpha")`` gives ``{"slope": params["alpha"]}``."""
    return lambda p: {evo: p[peer] for evo, peer in names.items()}


def _c_is_zero(p: Params) -> str | None:
    if p["c"] != 0.0:
        return (f"c={p['c']:g}: with c != 0 the derivative has constant tails c (infinite area) and no evoexp "
                "shape equals it; c=0 is evoexp's rectangular with slope = 1/(2w)")
    return None


def _alpha_above_one(p: Params) -> str | None:
    return None if p["alpha"] > 1.0 else f"alpha must be > 1 (the tail index), got {p['alpha']:g}"


_SQRT2 = math.sqrt(2.0)
_NORSE_ALPHA = 100.0
_NORSE_GRID = ({"alpha": 100.0}, {"alpha": 0.5}, {"alpha": 3.0})

_ENTRIES: tuple[PeerSurrogate, ...] = (
    # ---- snnTorch 1.0 (snntorch.surrogate; spikes are float32, H(0) = 0) ----
    PeerSurrogate("snntorch", "fast_sigmoid", {"slope": 25.0}, "fast_sigmoid", _same(slope="slope"),
                  "slope = slope", grid=({"slope": 25.0}, {"slope": 1.0}, {"slope": 5.0})),
    PeerSurrogate("snntorch", "sigmoid", {"slope": 25.0}, "sigmoid", _same(slope="slope"), "slope = slope",
                  note="the code evaluates slope*exp(-slope*x)/(exp(-slope*x)+1)^2 unguarded: NaN (inf/inf) once "
                       "slope*exp(-slope*x) overflows, i.e. x < -3.42 at slope 25 in float32 (x < -28.3 in float64)",
                  grid=({"slope": 25.0}, {"slope": 1.0}, {"slope": 5.0})),
    PeerSurrogate("snntorch", "atan", {"alpha": 2.0}, "atan", _same(slope="alpha"), "slope = alpha",
                  note="the code's (alpha/2)/(1+(pi*alpha*x/2)^2) is what the docstring's primitive implies; the "
                       "docstring's derivative (1/pi)/(1+(pi*alpha*x/2)^2) is smaller by pi*alpha/2",
                  grid=({"alpha": 2.0}, {"alpha": 0.5}, {"alpha": 10.0})),
    PeerSurrogate("snntorch", "straight_through_estimator", {},
                  note="g = 1 everywhere (unbounded area); evoexp's straight_through is the saturated STE"),
    PeerSurrogate("snntorch", "triangular", {"threshold": 1.0},
                  note="g = threshold for x < 0 and -threshold for x >= 0: the derivative of a triangle, negative "
                       "above threshold"),
    PeerSurrogate("snntorch", "heaviside", {}, note="g = H(x): 1 above threshold, 0 below (no surrogate below)"),
    PeerSurrogate("snntorch", "spike_rate_escape", {"beta": 1.0, "slope": 25.0},
                  note="g = slope*exp(-beta*|x-1|): a Laplace bump centred one unit above threshold"),
    PeerSurrogate("snntorch", "SFS", {"slope": 25.0, "B": 1.0},
                  note="fast sigmoid set to 0 for x <= B (sparse gradient)"),
    PeerSurrogate("snntorch", "SSO", {"mean": 0.0, "variance": 0.2}, note="stochastic backward below threshold"),
    PeerSurrogate("snntorch", "LSO", {"slope": 0.1}, note="calls the stochastic operator with a missing argument: "
                                                          "raises TypeError when used"),
    # ---- SpikingJelly 2.0 (spikingjelly.activation_based.surrogate; H(0) = 1) ----
    PeerSurrogate("spikingjelly", "Sigmoid", {"alpha": 4.0}, "sigmoid", _same(slope="alpha"), "slope = alpha",
                  grid=({"alpha": 4.0}, {"alpha": 1.0}, {"alpha": 10.0})),
    PeerSurrogate("spikingjelly", "ATan", {"alpha": 2.0}, "atan", _same(slope="alpha"), "slope = alpha",
                  grid=({"alpha": 2.0}, {"alpha": 0.5}, {"alpha": 10.0})),
    PeerSurrogate("spikingjelly", "PiecewiseQuadratic", {"alpha": 1.0}, "triangular", _same(slope="alpha"),
                  "slope = alpha",
                  note="named after its primitive: the derivative is the triangle alpha - alpha^2|x| (evoexp's "
                       "piecewise_quadratic is the Epanechnikov kernel)",
                  grid=({"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 4.0})),
    PeerSurrogate("spikingjelly", "PiecewiseExp", {"alpha": 1.0}, "exponential", _same(slope="alpha"),
                  "slope = alpha", grid=({"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 5.0})),
    PeerSurrogate("spikingjelly", "Rect", {"alpha": 1.0}, "rectangular", _same(slope="alpha"), "slope = alpha",
                  grid=({"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 4.0})),
    PeerSurrogate("spikingjelly", "Erf", {"alpha": 2.0}, "gaussian", lambda p: {"slope": _SQRT2 * p["alpha"]},
                  "slope = √2·alpha (a Gaussian of standard deviation 1/(√2·alpha))",
                  grid=({"alpha": 2.0}, {"alpha": 0.5}, {"alpha": 5.0})),
    PeerSurrogate("spikingjelly", "SoftSign", {"alpha": 2.0}, "superspike",
                  lambda p: {"slope": p["alpha"], "scale": 0.5}, "slope = alpha, scale = 0.5",
                  note="its derivative alpha/(2(1+alpha|x|)^2) is the rational soft sign's, as the class docstring "
                       "says; the soft_sign_backward docstring's 1/(2 alpha (1+|x/alpha|)^2) is not what it computes",
                  grid=({"alpha": 2.0}, {"alpha": 0.5}, {"alpha": 10.0})),
    PeerSurrogate("spikingjelly", "SuperSpike", {"alpha": 1.0}, "fast_sigmoid",
                  lambda p: {"slope": 1.0, "scale": p["alpha"]}, "slope = 1, scale = alpha",
                  note="alpha only scales alpha/(|x|+1)^2; the width is fixed (slope 1); its primitive raises "
                       "NotImplementedError",
                  grid=({"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 4.0})),
    PeerSurrogate("spikingjelly", "QPseudoSpike", {"alpha": 2.0}, "q_pseudo",
                  lambda p: {"slope": 1.0, "tail": p["alpha"]}, "slope = 1, tail = alpha",
                  grid=({"alpha": 2.0}, {"alpha": 1.5}, {"alpha": 4.0}), constraint=_alpha_above_one),
    PeerSurrogate("spikingjelly", "PiecewiseLeakyReLU", {"w": 1.0, "c": 0.01}, "rectangular",
                  lambda p: {"slope": 1.0 / (2.0 * p["w"])}, "slope = 1/(2w); only for c = 0",
                  note="with the default c = 0.01 the tails are the constant c (no evoexp shape); the code uses "
                       "|x| < w where its docs say -w <= x <= w",
                  grid=({"w": 1.0, "c": 0.0}, {"w": 0.5, "c": 0.0}, {"w": 2.0, "c": 0.0}), constraint=_c_is_zero),
    PeerSurrogate("spikingjelly", "NonzeroSignLogAbs", {"alpha": 1.0},
                  note="g = 1/(1/alpha + |x|): tails 1/|x|, infinite area"),
    PeerSurrogate("spikingjelly", "SquarewaveFourierSeries", {"n": 2, "T_period": 8.0},
                  note="a truncated Fourier series of a square wave: periodic, not a step"),
    PeerSurrogate("spikingjelly", "S2NN", {"alpha": 4.0, "beta": 1.0},
                  note="sigmoid derivative below threshold, beta/(x+1) above (asymmetric, infinite area)"),
    PeerSurrogate("spikingjelly", "LeakyKReLU", {"leak": 0.0, "k": 1.0},
                  note="constant k above and leak below threshold (a ReLU's derivative)"),
    PeerSurrogate("spikingjelly", "FakeNumericalGradient", {"alpha": 0.3}, note="g = min(1/|x|, alpha)"),
    PeerSurrogate("spikingjelly", "LogTailedReLU", {"alpha": 0.0},
                  note="alpha below threshold, 1 on (0, 1], 1/x above 1"),
    PeerSurrogate("spikingjelly", "DeterministicPass", {}, note="g = 1 everywhere (plain straight-through)"),
    PeerSurrogate("spikingjelly", "PoissonPass", {}, note="stochastic (Bernoulli) forward, g = 1"),
    # ---- Norse 1.1 (threshold(x, method, alpha); alpha defaults to LIFParameters' 100; H(0) = 0) ----
    PeerSurrogate("norse", "super", {"alpha": _NORSE_ALPHA}, "fast_sigmoid", lambda p: {"slope": 1.0},
                  "slope = 1 (alpha is ignored)",
                  note="Norse 1.1's SuperSpike backward computes 1/(|x|+1)^2 and ignores alpha; earlier Norse "
                       "releases computed 1/(alpha|x|+1)^2 (slope = alpha)",
                  grid=_NORSE_GRID),
    PeerSurrogate("norse", "triangle", {"alpha": _NORSE_ALPHA}, "triangular",
                  lambda p: {"slope": 1.0, "scale": p["alpha"]}, "slope = 1, scale = alpha",
                  note="alpha is the height (Bellec et al.'s dampening factor; triangle_fn's own default is 0.3), "
                       "the width is fixed",
                  grid=({"alpha": 100.0}, {"alpha": 0.3}, {"alpha": 3.0})),
    PeerSurrogate("norse", "tanh", {"alpha": _NORSE_ALPHA}, "sigmoid",
                  lambda p: {"slope": 2.0 * p["alpha"], "scale": 2.0 / p["alpha"]}, "slope = 2·alpha, scale = 2/alpha",
                  note="the code's 1 - tanh(alpha*x)^2 is 2/alpha times the derivative of its documented "
                       "1/2 + tanh(alpha*x)/2",
                  grid=_NORSE_GRID),
    PeerSurrogate("norse", "circ", {"alpha": _NORSE_ALPHA}, "soft_sign",
                  lambda p: {"slope": 1.0 / p["alpha"], "scale": 2.0 * p["alpha"]},
                  "slope = 1/alpha, scale = 2·alpha",
                  note="the code's alpha^3/(x^2+alpha^2)^1.5 is 2·alpha times the derivative of its documented "
                       "1/2 + x/(2 sqrt(x^2+alpha^2))",
                  grid=_NORSE_GRID),
    PeerSurrogate("norse", "heavi_erfc", {"alpha": _NORSE_ALPHA}, "gaussian",
                  lambda p: {"slope": _SQRT2 * p["alpha"], "scale": 2.0 / p["alpha"]},
                  "slope = √2·alpha, scale = 2/alpha",
                  note="the code's (2/sqrt(pi))exp(-(alpha*x)^2) is 2/alpha times a unit-area Gaussian; its "
                       "docstring's 1/2 + erfc(alpha*x)/2 decreases",
                  grid=_NORSE_GRID),
    PeerSurrogate("norse", "heaviside", {}, note="no surrogate: the step has no gradient"),
)

_REGISTRY: Mapping[str, PeerSurrogate] = MappingProxyType({entry.key: entry for entry in _ENTRIES})


def available_peer_surrogates(*, library: str | None = None, mapped_only: bool = False) -> list[str]:
    """Known peer names ``"<library>:<function>"``, in table order.

    Args:
        library: Only this library's names.
        mapped_only: Only names that have an equal evoexp shape.
    """
    return [
        key for key, entry in _REGISTRY.items()
        if (library is None or entry.library == library) and (not mapped_only or entry.shape is not None)
    ]


def get_peer(name: str) -> PeerSurrogate:
    """The :class:`PeerSurrogate` called ``name`` (``"<library>:<function>"``).

    Raises:
        ValueError: Unknown name; the message lists the known peer names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown peer surrogate {name!r}; known peer names: {', '.join(available_peer_surrogates())}"
        ) from None


def peer_surrogate(name: str, **params: Any) -> SurrogateGradient:
    """Build the evoexp shape equal to the peer function ``name`` at the peer's ``params``.

    ``evoexp.surrogate.get_surrogate`` delegates the names of these libraries here (the plug-in declared in
    ``pyproject.toml``).

    Raises:
        ValueError: Unknown name (lists the known peer names), unknown parameter, a function without an equal
            evoexp shape, or parameters outside the mapping.
    """
    return get_peer(name).evoexp(**params)


def _cell(entry: PeerSurrogate) -> str:
    args = ", ".join(f"{k}={v:g}" for k, v in entry.defaults.items())
    return f"`{entry.function}({args})`: {entry.conversion}"


def evoexp_table_markdown() -> str:
    """The Markdown table evoexp shape -> equal function of each peer library, with the parameter conversions."""
    header = "| evoexp shape | " + " | ".join(LIBRARIES.values()) + " |"
    lines = [header, "|" + "---|" * (len(LIBRARIES) + 1)]
    for shape in available_surrogates():
        cells = []
        for library in LIBRARIES:
            matches = [e for e in _ENTRIES if e.library == library and e.shape == shape]
            cells.append("<br>".join(_cell(e) for e in matches) or "none")
        lines.append(f"| `{shape}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unmapped_table_markdown() -> str:
    """The Markdown table of peer functions that no evoexp shape equals, and the notes of the mapped ones."""
    lines = ["| peer function | why it matters |", "|---|---|"]
    lines += [f"| `{e.key}` | {'no evoexp shape: ' if e.shape is None else ''}{e.note} |" for e in _ENTRIES
              if e.shape is None or e.note]
    return "\n".join(lines)
