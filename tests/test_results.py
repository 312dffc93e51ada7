"""Result base class: strict JSON, nested dataclasses, tensors, non-finite floats."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from evoexp.results import Result, SkippedResult


@dataclass
class _Inner:
    value: float


@dataclass
class _Toy(Result):
    check = "toy"
    error: float
    per_tensor: dict[str, _Inner] = field(default_factory=dict)
    history: torch.Tensor | None = None
    counts: np.ndarray | None = None

    @property
    def passed(self) -> bool | None:
        return self.error < 1.0

    def summary(self) -> dict[str, float]:
        return {"toy/error": self.error}


def test_to_json_is_strict_and_complete(tmp_path) -> None:
    r = _Toy(error=math.nan, per_tensor={"w": _Inner(math.inf)}, history=torch.tensor([1.0, 2.0]),
             counts=np.array([3, 4]))
    data = json.loads(r.to_json())
    assert data == {"check": "toy", "passed": False, "error": "NaN", "per_tensor": {"w": {"value": "Infinity"}},
                    "history": [1.0, 2.0], "counts": [3, 4]}
    path = r.save_json(tmp_path / "r.json")
    assert json.loads(path.read_text()) == data
    assert _Toy(error=0.5).to_dict()["passed"] is True
    assert r.summary() == {"toy/error": r.error}


def test_skipped_result_names_its_check() -> None:
    s = SkippedResult(name="benchmark", reason="disabled by verifier.benchmark=false")
    assert s.check == "benchmark" and s.passed is None and s.summary() == {}
    assert s.to_dict() == {"check": "benchmark", "passed": None, "name": "benchmark",
                           "reason": "disabled by verifier.benchmark=false"}
