"""evoexp: verify backpropagation in spiking neural networks.

The public API (the seed design's names) is importable from the package root; heavy submodules load on first use::

    from evoexp import FastSigmoid, GradientVerifier, BackpropagationVerificationSuite
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "FastSigmoid": "evoexp.surrogate",
    "spike_function": "evoexp.surrogate",
    "SurrogateGradient": "evoexp.surrogate",
    "get_surrogate": "evoexp.surrogate",
    "available_surrogates": "evoexp.surrogate",
    "register_surrogate": "evoexp.surrogate",
    "SNN": "evoexp.models",
    "ANN": "evoexp.models",
    "ann_twin": "evoexp.models",
    "smooth_mode": "evoexp.models",
    "get_dataset": "evoexp.data",
    "available_datasets": "evoexp.data",
    "GradientVerifier": "evoexp.verification",
    "NumericalStabilityTester": "evoexp.verification",
    "ConvergenceAnalyzer": "evoexp.verification",
    "ComparativeBenchmark": "evoexp.verification",
    "BackpropagationVerificationSuite": "evoexp.verification",
    "Result": "evoexp.verification",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    """Import public names lazily so that ``import evoexp`` stays cheap."""
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'evoexp' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
