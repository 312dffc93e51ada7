"""One call that runs every enabled verification check on a model and returns their typed results.

:meth:`BackpropagationVerificationSuite.run_full_verification` returns a dict with one entry per check, in this
order (:data:`CHECKS`): ``gradient_verification``, ``surrogate_verification``, ``gradient_alignment``,
``gradient_stability``, ``weight_stability``, ``convergence``, ``benchmark``, and the three checks of Gygax & Zenke
(2025), which are opt-in: ``circulation``, ``sign_disagreement``, ``escape_noise``. A check that is disabled, or that
cannot run on the given inputs (no surrogate on the model, no ANN twin), is present as a
:class:`~evoexp.results.SkippedResult` with the reason, so a report always shows all of them.
:meth:`BackpropagationVerificationSuite.generate_report` renders the dict as Markdown.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evoexp.models.snn import LIFLayer
from evoexp.results import Result, SkippedResult
from evoexp.verification.benchmark import BenchmarkLoaders, ComparativeBenchmark
from evoexp.verification.circulation import check_circulation
from evoexp.verification.convergence import ConvergenceAnalyzer
from evoexp.verification.escape_noise import verify_escape_noise
from evoexp.verification.gradient import GradientVerifier
from evoexp.verification.report import generate_report
from evoexp.verification.sign import measure_sign_disagreement
from evoexp.verification.spiking import private_copy
from evoexp.verification.stability import Batch, LossFn, NumericalStabilityTester, OptimizerFactory
from evoexp.verification.surrogate_check import SurrogateVerificationResult

__all__ = [
    "CHECKS",
    "OPT_IN",
    "BackpropagationVerificationSuite",
    "ProgressCallback",
    "VerificationOptions",
    "check_spike_functions",
]

_log = logging.getLogger(__name__)

CHECKS: tuple[str, ...] = (
    "gradient_verification",
    "surrogate_verification",
    "gradient_alignment",
    "gradient_stability",
    "weight_stability",
    "convergence",
    "benchmark",
    "circulation",
    "sign_disagreement",
    "escape_noise",
)
"""Result keys of :meth:`BackpropagationVerificationSuite.run_full_verification`, in run order."""

OPT_IN: tuple[str, ...] = ("circulation", "sign_disagreement", "escape_noise")
"""Checks that :class:`VerificationOptions` leaves off unless asked for (the Gygax & Zenke checks)."""

ProgressCallback = Callable[[str, int, int], None]
"""Called before each check as ``progress(check, index, total)`` with a 1-based ``index`` over all checks."""


@dataclass(frozen=True)
class VerificationOptions:
    """Which checks run, and the keyword arguments each one receives.

    Every ``*_kwargs`` mapping is passed unchanged to the underlying verifier, so its keyword-only tolerances and
    thresholds (with their documented defaults) are set here.

    Attributes:
        gradient_verification: Finite differences vs autograd
            (:meth:`~evoexp.verification.gradient.GradientVerifier.verify_finite_difference`).
        surrogate_verification: The spike function the model's neurons really compute (for evoexp SNNs: the
            LIF node's backward, probed with a one-neuron current; for peer libraries: their own spike function) vs
            its declared derivative
            (:meth:`~evoexp.verification.gradient.GradientVerifier.verify_surrogate_gradient`); needs a spiking
            network or ``model.surrogate``.
        gradient_alignment: Surrogate gradient vs the gradient of the Gaussian-smoothed spiking loss
            (:meth:`~evoexp.verification.gradient.GradientVerifier.verify_gradient_alignment`).
        gradient_stability: Gradient norms over batches
            (:meth:`~evoexp.verification.stability.NumericalStabilityTester.check_gradient_stability`).
        weight_stability: Weights over optimiser steps
            (:meth:`~evoexp.verification.stability.NumericalStabilityTester.check_weight_stability`).
        convergence: Training with early stopping
            (:meth:`~evoexp.verification.convergence.ConvergenceAnalyzer.analyze_convergence`).
        benchmark: SNN vs ANN twin
            (:meth:`~evoexp.verification.benchmark.ComparativeBenchmark.benchmark_training`); needs ``ann``.
        circulation: Circulation of the (surrogate) gradient around closed loops in weight space, with its
            smooth-mode control (:func:`~evoexp.verification.circulation.check_circulation`); off by default.
        sign_disagreement: Fraction of directions where the surrogate and the smoothed-loss gradient disagree in
            sign (:func:`~evoexp.verification.sign.measure_sign_disagreement`); off by default.
        escape_noise: The escape-noise identity on the model's stochastic LIF layers
            (:func:`~evoexp.verification.escape_noise.verify_escape_noise`); needs escape-noise layers; off by
            default.
        gradient_samples: Samples of the first training batch used by the finite-difference, alignment,
            circulation and sign checks (their cost grows with the batch).
        gradient_kwargs: Keyword arguments of ``verify_finite_difference`` (e.g. ``mode``, ``atol``).
        surrogate_kwargs: Keyword arguments of ``verify_surrogate_gradient`` (e.g. ``x_range``, ``h``).
        alignment_kwargs: Keyword arguments of ``verify_gradient_alignment`` (e.g. ``sigmas``).
        gradient_stability_kwargs: Keyword arguments of ``check_gradient_stability`` (e.g. ``n_batches``).
        weight_stability_kwargs: Keyword arguments of ``check_weight_stability`` (e.g. ``n_steps``).
        convergence_kwargs: Keyword arguments of ``analyze_convergence`` (e.g. ``max_epochs``, ``patience``).
        benchmark_kwargs: Keyword arguments of ``benchmark_training`` (e.g. ``epochs``, ``lr``).
        circulation_kwargs: Keyword arguments of ``check_circulation`` (e.g. ``radius``, ``n_points``).
        sign_kwargs: Keyword arguments of ``measure_sign_disagreement`` (e.g. ``sigma``, ``n_directions``).
        escape_noise_kwargs: Keyword arguments of ``verify_escape_noise`` (e.g. ``n_neurons``, ``atol``).

    """

    gradient_verification: bool = True
    surrogate_verification: bool = True
    gradient_alignment: bool = True
    gradient_stability: bool = True
    weight_stability: bool = True
    convergence: bool = True
    benchmark: bool = True
    circulation: bool = False
    sign_disagreement: bool = False
    escape_noise: bool = False
    gradient_samples: int = 8
    gradient_kwargs: Mapping[str, Any] = field(default_factory=dict)
    surrogate_kwargs: Mapping[str, Any] = field(default_factory=dict)
    alignment_kwargs: Mapping[str, Any] = field(default_factory=dict)
    gradient_stability_kwargs: Mapping[str, Any] = field(default_factory=dict)
    weight_stability_kwargs: Mapping[str, Any] = field(default_factory=dict)
    convergence_kwargs: Mapping[str, Any] = field(default_factory=dict)
    benchmark_kwargs: Mapping[str, Any] = field(default_factory=dict)
    circulation_kwargs: Mapping[str, Any] = field(default_factory=dict)
    sign_kwargs: Mapping[str, Any] = field(default_factory=dict)
    escape_noise_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            isinstance(self.gradient_samples, bool)
            or not isinstance(self.gradient_samples, int)
            or self.gradient_samples < 1
        ):
            raise ValueError(f"gradient_samples must be a positive integer, got {self.gradient_samples!r}")

    @classmethod
    def only(cls, *checks: str, **options: Any) -> VerificationOptions:
        """Options that enable exactly ``checks`` (names from :data:`CHECKS`); other fields from ``options``.

        Raises:
            ValueError: If a name is not in :data:`CHECKS`.

        """
        unknown = sorted(set(checks) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown checks {unknown}; available: {', '.join(CHECKS)}")
        enabled: dict[str, Any] = {name: name in checks for name in CHECKS}
        return cls(**enabled, **options)

    def enabled(self, check: str) -> bool:
        """Whether ``check`` is switched on."""
        return bool(getattr(self, check))


def _default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class BackpropagationVerificationSuite:
    """Runs the verification checks and renders their report.

    Args:
        verifier: Finite-difference verifier (default: float64 :class:`GradientVerifier`).
        stability: Stability tester.
        convergence: Convergence analyzer; after a run its ``best_state_dict`` holds the best epoch's weights.
        benchmark: SNN-vs-ANN benchmark.

    """

    def __init__(
        self,
        *,
        verifier: GradientVerifier | None = None,
        stability: NumericalStabilityTester | None = None,
        convergence: ConvergenceAnalyzer | None = None,
        benchmark: ComparativeBenchmark | None = None,
    ) -> None:
        self.verifier = verifier or GradientVerifier()
        self.stability = stability or NumericalStabilityTester()
        self.convergence = convergence or ConvergenceAnalyzer()
        self.benchmark = benchmark or ComparativeBenchmark()

    def run_full_verification(
        self,
        model: nn.Module,
        train_loader: Iterable[Batch],
        val_loader: Iterable[Batch] | None = None,
        loss_fn: LossFn | None = None,
        optimizer_factory: OptimizerFactory | None = None,
        *,
        options: VerificationOptions | None = None,
        ann: nn.Module | Callable[[int], nn.Module] | None = None,
        ann_train_loader: Iterable[Batch] | None = None,
        ann_val_loader: Iterable[Batch] | None = None,
        progress: ProgressCallback | None = None,
        **checks: bool,
    ) -> dict[str, Result]:
        """Run every enabled check on ``model`` (never modified) and return the results keyed by :data:`CHECKS`.

        Args:
            model: The model under test (an evoexp SNN or any ``nn.Module`` producing logits).
            train_loader: Training batches ``(inputs, targets)``.
            val_loader: Validation batches (convergence monitors them; the benchmark evaluates on them).
            loss_fn: ``loss_fn(outputs, targets) -> scalar``; cross-entropy if None.
            optimizer_factory: ``params -> optimizer`` for the weight-stability and convergence checks (and the
                benchmark unless ``benchmark_kwargs`` names an optimizer); Adam(lr=1e-3) if None.
            options: Enabled checks and their arguments (default: all enabled, default arguments).
            ann: ANN twin for the benchmark (ready model or factory ``seed -> model``); the benchmark is
                skipped without it.
            ann_train_loader: The ANN's training batches (default: ``train_loader``, for ANNs that take the
                same inputs).
            ann_val_loader: The ANN's validation batches (default: ``val_loader``).
            progress: Called before each check (see :data:`ProgressCallback`).
            **checks: Switches that override ``options``, e.g. ``benchmark=False``.

        Returns:
            ``{check: Result}`` for every name in :data:`CHECKS`; disabled or impossible checks map to a
            :class:`SkippedResult` with the reason.

        Raises:
            ValueError: If a keyword in ``checks`` is not a check name.
        """
        opts = _merged_options(options, checks)
        loss = F.cross_entropy if loss_fn is None else loss_fn
        make_optimizer = optimizer_factory or _default_optimizer
        runners: dict[str, Callable[[], Result | str]] = {
            "gradient_verification": lambda: self._gradient(model, train_loader, loss, opts),
            "surrogate_verification": lambda: self._surrogate(model, opts),
            "gradient_alignment": lambda: self._alignment(model, train_loader, loss, opts),
            "gradient_stability": lambda: self.stability.check_gradient_stability(
                model, train_loader, loss, **opts.gradient_stability_kwargs
            ),
            "weight_stability": lambda: self.stability.check_weight_stability(
                model, train_loader, loss, make_optimizer, **opts.weight_stability_kwargs
            ),
            "convergence": lambda: self.convergence.analyze_convergence(
                model, train_loader, val_loader, loss, make_optimizer, **opts.convergence_kwargs
            ),
            "benchmark": lambda: self._benchmark(
                model, ann, train_loader, val_loader, ann_train_loader, ann_val_loader, loss, make_optimizer, opts
            ),
            "circulation": lambda: check_circulation(
                model, *_first_samples(train_loader, opts.gradient_samples), loss, **opts.circulation_kwargs
            ),
            "sign_disagreement": lambda: measure_sign_disagreement(
                model, *_first_samples(train_loader, opts.gradient_samples), loss, **opts.sign_kwargs
            ),
            "escape_noise": lambda: self._escape_noise(model, opts),
        }
        return _run_checks(runners, opts, progress)

    @staticmethod
    def generate_report(results: Mapping[str, Result], *, title: str = "Backpropagation verification report") -> str:
        """Render ``results`` as Markdown (see :func:`evoexp.verification.report.generate_report`)."""
        return generate_report(results, title=title)

    def _gradient(self, model: nn.Module, loader: Iterable[Batch], loss: LossFn, opts: VerificationOptions) -> Result:
        inputs, targets = _first_samples(loader, opts.gradient_samples)
        return self.verifier.verify_finite_difference(model, inputs, targets, loss, **opts.gradient_kwargs)

    def _alignment(self, model: nn.Module, loader: Iterable[Batch], loss: LossFn, opts: VerificationOptions) -> Result:
        inputs, targets = _first_samples(loader, opts.gradient_samples)
        return self.verifier.verify_gradient_alignment(model, inputs, targets, loss, **opts.alignment_kwargs)

    def _surrogate(self, model: nn.Module, opts: VerificationOptions) -> Result | str:
        """The spike function the model's neurons really compute (their node's backward) vs the declared derivative.

        Spiking networks are probed through their adapter (:meth:`~evoexp.verification.spiking.SpikingAdapter.
        spike_probes`: for evoexp, a one-neuron current through the real LIF node; for snnTorch, SpikingJelly and
        Norse, the library's own spike function against the equal evoexp shape or its documented derivative), with
        the probe's kinks on the grid, its H(0) convention and its extremes (finite membranes for a whole neuron);
        with several distinct spike functions the first failing one (else the first) is returned, naming the others
        in its warnings. Other models with a ``surrogate`` attribute are checked through ``surrogate.spike``.
        """
        results = check_spike_functions(model, self.verifier, **opts.surrogate_kwargs)
        if results:
            failed = [r for r in results if not r.passed]
            chosen = (failed or results)[0]
            if len(results) > 1:
                verdicts = ", ".join(f"{r.name}: {'passed' if r.passed else 'FAILED'}" for r in results)
                chosen.warnings.append(f"{len(results)} distinct spike functions probed ({verdicts})")
            return chosen
        surrogate = getattr(model, "surrogate", None)
        if surrogate is None or not hasattr(surrogate, "spike") or not hasattr(surrogate, "derivative"):
            return "the model has no surrogate gradient (model.surrogate with spike/derivative)"
        kwargs = {
            "primitive": getattr(surrogate, "primitive", None),
            "slope": getattr(surrogate, "slope", None),
            "name": getattr(surrogate, "name", None),
            "kinks": getattr(surrogate, "kinks", ()),
            **opts.surrogate_kwargs,
        }
        return self.verifier.verify_surrogate_gradient(surrogate.spike, surrogate.derivative, **kwargs)

    @staticmethod
    def _escape_noise(model: nn.Module, opts: VerificationOptions) -> Result | str:
        """The escape-noise identity for each distinct stochastic LIF layer (constants, surrogate, BPTT path).

        With several, the first failing one (else the first) is returned, naming the others in its warnings.
        """
        groups: dict[tuple[object, ...], list[str]] = {}
        layers: dict[tuple[object, ...], LIFLayer] = {}
        for name, module in model.named_modules():
            if isinstance(module, LIFLayer) and module.params.escape_noise is not None:
                key: tuple[object, ...] = (module.params, module.surrogate, module.bptt)
                groups.setdefault(key, []).append(name)
                layers.setdefault(key, module)
        if not groups:
            return "the model has no escape-noise (stochastic) LIF layers"
        results = []
        for key, names in groups.items():
            layer = layers[key]
            result = verify_escape_noise(layer.params, layer.surrogate, bptt=layer.bptt, **opts.escape_noise_kwargs)
            result.warnings.insert(0, f"layers: {', '.join(names)}")
            results.append(result)
        chosen = ([r for r in results if not r.passed] or results)[0]
        if len(results) > 1:
            verdicts = ", ".join(f"{r.warnings[0]}: {'passed' if r.passed else 'FAILED'}" for r in results)
            chosen.warnings.append(f"{len(results)} distinct escape-noise layer groups checked ({verdicts})")
        return chosen

    def _benchmark(
        self,
        model: nn.Module,
        ann: nn.Module | Callable[[int], nn.Module] | None,
        train_loader: Iterable[Batch],
        val_loader: Iterable[Batch] | None,
        ann_train_loader: Iterable[Batch] | None,
        ann_val_loader: Iterable[Batch] | None,
        loss: LossFn,
        make_optimizer: OptimizerFactory,
        opts: VerificationOptions,
    ) -> Result | str:
        if ann is None:
            return "no ANN twin given (ann=None)"
        loaders = BenchmarkLoaders(
            snn_train=train_loader,
            ann_train=train_loader if ann_train_loader is None else ann_train_loader,
            snn_eval=val_loader,
            ann_eval=val_loader if ann_val_loader is None else ann_val_loader,
        )
        kwargs: dict[str, Any] = {"optimizer": make_optimizer, "loss_fn": loss, **opts.benchmark_kwargs}
        return self.benchmark.benchmark_training(model, ann, loaders, **kwargs)


def check_spike_functions(
    model: nn.Module, verifier: GradientVerifier | None = None, **kwargs: Any
) -> list[SurrogateVerificationResult]:
    """The runtime surrogate check of each distinct spike function of ``model``'s neurons, through its adapter.

    Each :class:`~evoexp.verification.spiking.SpikeProbe` of the adapter that claims a private copy of ``model`` (one
    per spike function and declared derivative) is checked with
    :meth:`~evoexp.verification.gradient.GradientVerifier.verify_surrogate_gradient`, with its kinks on the grid, its
    H(0) convention and its extremes (finite membranes for a whole neuron); ``kwargs`` (``x_range``, ``n_points``,
    ``h``, ...) go to every check.

    Returns:
        One result per probe (empty for a model that no adapter claims).
    """
    verifier = verifier or GradientVerifier()
    work = private_copy(model)
    probes = work.adapter.spike_probes(work.model) if work.adapter is not None else []
    return [
        verifier.verify_surrogate_gradient(
            probe.spike_fn,
            probe.derivative,
            **{
                "primitive": probe.primitive,
                "slope": probe.slope,
                "name": probe.name,
                "kinks": probe.kinks,
                "heaviside_at_zero": probe.heaviside_at_zero,
                "extremes": probe.extremes,
                **kwargs,
            },
        )
        for probe in probes
    ]


def _merged_options(options: VerificationOptions | None, checks: Mapping[str, bool]) -> VerificationOptions:
    """``options`` (default: all checks, default arguments) with the switches ``checks`` applied.

    Raises:
        ValueError: If a key of ``checks`` is not a check name.
    """
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; available: {', '.join(CHECKS)}")
    flags: dict[str, Any] = dict(checks)
    return dataclasses.replace(options or VerificationOptions(), **flags)


def _run_checks(
    runners: Mapping[str, Callable[[], Result | str]], opts: VerificationOptions, progress: ProgressCallback | None
) -> dict[str, Result]:
    """Run each enabled check of :data:`CHECKS` in order, logging its verdict; a reason string becomes a skip."""
    results: dict[str, Result] = {}
    for index, name in enumerate(CHECKS, start=1):
        if progress is not None:
            progress(name, index, len(CHECKS))
        if not opts.enabled(name):
            results[name] = SkippedResult(name, "disabled in the options")
            _log.info("[%d/%d] %s: skipped (disabled)", index, len(CHECKS), name)
            continue
        _log.info("[%d/%d] %s: running", index, len(CHECKS), name)
        outcome = runners[name]()
        results[name] = SkippedResult(name, outcome) if isinstance(outcome, str) else outcome
        _log.info("[%d/%d] %s: %s", index, len(CHECKS), name, _verdict_word(results[name]))
    return results


def _first_samples(loader: Iterable[Batch], n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` samples of the loader's first batch."""
    for batch in loader:
        return batch[0][:n], batch[1][:n]
    raise ValueError("train_loader yielded no batch")


def _verdict_word(result: Result) -> str:
    if isinstance(result, SkippedResult):
        return f"skipped ({result.reason})"
    return {True: "passed", False: "FAILED", None: "done (informational)"}[result.passed]
