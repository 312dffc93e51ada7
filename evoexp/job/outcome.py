"""The outcome record of one job: what it did, written as JSON into its output directory.

The sweep's end-of-run summary (:mod:`evoexp.job.sweep`) and the Optuna sweeper (``hydra_plugins/evoexp_optuna``) read
these files back, so the record works with every launcher without shared state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["OUTCOMES", "OUTCOME_FILE", "JobOutcome", "write_outcome"]

OUTCOME_FILE = "evoexp_outcome.json"
OUTCOMES = ("finished", "diverged", "skipped", "failed")


@dataclass
class JobOutcome:
    """What one job did, as recorded in its output directory.

    Attributes:
        outcome: One of :data:`OUTCOMES`.
        job: Hydra job number (0 for single runs).
        overrides: The job's command-line overrides.
        config_hash: Identity of the job's config.
        run_id: MLflow run id (the earlier run's id when skipped; None when untracked or failed before a run).
        objective: Value returned to the sweeper (validation accuracy; NaN when there is none).
        error: ``Type: message`` of the failure or divergence, else None.
        output_dir: The job's output directory.
        run_name: The MLflow run name.
        verdict: ``pass`` / ``fail`` / ``diverged`` (tag ``evoexp.verdict``); None when the job failed.
        checks: Verdict of each check (``PASS``, ``FAIL``, ``info``, ``skipped``).
        test_acc: SNN test accuracy with best-validation weights (NaN when there is none).
        report: Path of the job's ``report.md``.
    """

    outcome: str
    job: int = 0
    overrides: list[str] = field(default_factory=list)
    config_hash: str | None = None
    run_id: str | None = None
    objective: float = float("nan")
    error: str | None = None
    output_dir: str | None = None
    run_name: str | None = None
    verdict: str | None = None
    checks: dict[str, str] = field(default_factory=dict)
    test_acc: float = float("nan")
    report: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}; got {self.outcome!r}")


def write_outcome(directory: Path, outcome: JobOutcome) -> Path:
    """Write ``outcome`` as JSON to ``directory / OUTCOME_FILE`` and return the path."""
    path = Path(directory) / OUTCOME_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(outcome), indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return path
