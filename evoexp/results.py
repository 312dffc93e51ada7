"""Base class of every verification result: typed dataclasses that serialise to JSON.

Each verifier returns a ``@dataclass`` subclassing :class:`Result`. The base class gives them

* :meth:`Result.to_dict` -- a JSON-safe dict (nested dataclasses, tensors, numpy values and non-finite floats
  converted; ``nan``/``inf`` become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``),
* :meth:`Result.to_json` / :meth:`Result.save_json`,
* :meth:`Result.summary` -- the flat ``{"check/metric": float}`` numbers that trackers log,
* :attr:`Result.passed` -- ``True``/``False`` for a verdict, ``None`` for informational results.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Result", "SkippedResult", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` (dataclasses, tensors, numpy, tuples, non-finite floats) into JSON-safe Python objects."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


class Result:
    """Mixin for result dataclasses: JSON serialisation, flat summary metrics and a verdict.

    Subclasses are ``@dataclass`` classes; they override :meth:`summary` (and :attr:`passed` when the check has a
    verdict). ``check`` names the result in reports and metric keys.
    """

    check: str = "result"

    @property
    def passed(self) -> bool | None:
        """Verdict of the check: ``True``/``False``, or ``None`` when it is informational."""
        return None

    def summary(self) -> dict[str, float]:
        """Flat numeric summary for trackers, keys ``"<check>/<metric>"``."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of all fields plus ``check`` and ``passed``."""
        data = to_jsonable(self)
        if not isinstance(data, dict):
            raise TypeError(f"{type(self).__name__} must be a dataclass to serialise")
        return {"check": self.check, "passed": self.passed, **data}

    def to_json(self, *, indent: int | None = 2) -> str:
        """Serialise :meth:`to_dict` to a JSON string (strict JSON: no bare NaN/Infinity)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` and return it."""
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path


@dataclasses.dataclass
class SkippedResult(Result):
    """Placeholder for a check that was not run, with the reason (shown in reports, never a failure)."""

    name: str
    reason: str

    @property
    def check(self) -> str:  # type: ignore[override]
        """The skipped check's name."""
        return self.name
