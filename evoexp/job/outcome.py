"""The outcome record of one job: what it did, written as JSON into its output directory.

The sweep's end-of-run summary (:mod:`evoexp.job.sweep`) and the Optuna sweeper (``hydra_plugins/evoexp_optuna``) read
these files back, so the record works with every launcher without shared state. Records are written atomically
(:func:`evoexp.job.files.write_atomic`); a job that could not write its record, or left an unreadable one, counts
as failed, with the reason. A record the disk refused is kept in memory, so the process that made it (the job's
progress line; with the basic launcher, the sweep's summary too) still reports what the job did.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evoexp.job.files import write_atomic

__all__ = ["OUTCOMES", "OUTCOME_FILE", "JobOutcome", "read_outcome", "write_outcome"]

OUTCOME_FILE = "evoexp_outcome.json"
OUTCOMES = ("finished", "diverged", "skipped", "failed", "killed")
"""``killed``: interrupted (SIGINT, SIGTERM) while it ran; its MLflow run ends KILLED."""


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
        label: The job's label in the sweep's progress lines (:func:`evoexp.job.progress.job_label` of its resolved
            config: a peer surrogate shows as the evoexp shape it resolves to); None when the config did not load.
        invocation: Id of the sweep invocation that ran the job (:attr:`evoexp.job.progress.SweepPlan.invocation`;
            None for a single run): a record left in a reused sweep directory by an earlier invocation is not
            counted again.
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
    label: str | None = None
    invocation: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}; got {self.outcome!r}")


_UNWRITTEN: dict[Path, JobOutcome] = {}
"""Records this process could not write, by job directory (read back by :func:`read_outcome`)."""


def write_outcome(directory: Path, outcome: JobOutcome) -> Path:
    """Write ``outcome`` as JSON to ``directory / OUTCOME_FILE`` atomically and return the path.

    Raises:
        OSError: It could not be written (full disk, read-only file system); no partial file is left, and this
            process's :func:`read_outcome` returns the record from memory.
    """
    text = json.dumps(asdict(outcome), indent=2, allow_nan=True) + "\n"
    try:
        path = write_atomic(Path(directory) / OUTCOME_FILE, text)
    except OSError:
        _UNWRITTEN[Path(directory).resolve()] = outcome
        raise
    _UNWRITTEN.pop(Path(directory).resolve(), None)
    return path


def read_outcome(directory: Path) -> JobOutcome | None:
    """The outcome recorded in ``directory`` (or, failing that, the one this process could not write), or None.

    Args:
        directory: A job's output directory.

    Raises:
        ValueError: The record is unreadable (truncated, not JSON, not an outcome); the message says why.
    """
    path = Path(directory) / OUTCOME_FILE
    if not path.is_file():
        return _UNWRITTEN.get(Path(directory).resolve())
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
        known = {name: value for name, value in fields.items() if name in JobOutcome.__dataclass_fields__}
        return JobOutcome(**known)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable {OUTCOME_FILE}: {type(exc).__name__}: {exc}") from None
