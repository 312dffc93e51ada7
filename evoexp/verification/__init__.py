"""Verification of backpropagation: gradients, surrogates, alignment, stability, convergence, SNN vs ANN.

Every verifier returns a typed :class:`~evoexp.results.Result` dataclass. Names load lazily so that
importing one verifier does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Result": "evoexp.results",
    "SkippedResult": "evoexp.results",
    "GradientVerifier": "evoexp.verification.gradient",
    "GradientVerificationResult": "evoexp.verification.gradient",
    "SurrogateVerificationResult": "evoexp.verification.surrogate_check",
    "AlignmentResult": "evoexp.verification.alignment",
    "NumericalStabilityTester": "evoexp.verification.stability",
    "GradientStabilityResult": "evoexp.verification.stability",
    "WeightStabilityResult": "evoexp.verification.stability",
    "ConvergenceAnalyzer": "evoexp.verification.convergence",
    "ConvergenceResult": "evoexp.verification.convergence",
    "ComparativeBenchmark": "evoexp.verification.benchmark",
    "BenchmarkResult": "evoexp.verification.benchmark",
    "BenchmarkLoaders": "evoexp.verification.benchmark",
    "BackpropagationVerificationSuite": "evoexp.verification.suite",
    "VerificationOptions": "evoexp.verification.suite",
    "CHECKS": "evoexp.verification.suite",
    "analyze_loss_history": "evoexp.verification.convergence",
    "EarlyStopping": "evoexp.verification.convergence",
    "generate_report": "evoexp.verification.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access."""
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'evoexp.verification' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
