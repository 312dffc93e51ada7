"""What a finished job reports: its verdicts, as an MLflow note and verdict tag and as the end-of-run terminal block.

* :func:`check_verdicts` turns the typed results into one verdict per check (``PASS``, ``FAIL``, ``info``,
  ``skipped``) and :func:`job_verdict` into the run's verdict (``pass`` / ``fail`` / ``diverged``), the tag
  ``evoexp.verdict`` to filter on.
* :func:`summarize_run` records them in the job's outcome and on its MLflow run: the verdict tag and a Markdown
  ``mlflow.note.content`` (verdicts, test accuracy, a link to the ANN baseline run), shown on the run's page.
* :func:`format_run_summary` is what a single run prints when it ends: the verdict table, test accuracy, the
  report's path, the MLflow run id and the UI URL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from evoexp.job.outcome import JobOutcome
from evoexp.job.tracking import FinishedRun, RunLogger, Tracker
from evoexp.keys import ANN_TEST_ACC, OBJECTIVE, SNN_TEST_ACC, Tags
from evoexp.results import Result, SkippedResult
from evoexp.verification.report import CHECK_TITLES

__all__ = [
    "ANN_TEST_ACC",
    "TEST_ACC",
    "VERDICTS",
    "check_verdicts",
    "format_run_summary",
    "job_verdict",
    "run_note",
    "summarize_run",
    "summarize_skipped",
]

TEST_ACC = SNN_TEST_ACC
"""Test accuracy of the SNN with its best-validation weights: the accuracy evoexp reports."""
VERDICTS = ("pass", "fail", "diverged")


def check_verdicts(results: Mapping[str, Result]) -> dict[str, str]:
    """Verdict of each check: ``PASS``, ``FAIL``, ``info`` (no verdict) or ``skipped``, in the results' order."""
    verdicts = {}
    for name, result in results.items():
        if isinstance(result, SkippedResult):
            verdicts[name] = "skipped"
        else:
            verdicts[name] = {True: "PASS", False: "FAIL", None: "info"}[result.passed]
    return verdicts


def job_verdict(checks: Mapping[str, str], *, diverged: bool) -> str:
    """The run's verdict: ``diverged`` if training diverged, else ``fail`` if a check failed, else ``pass``."""
    if diverged:
        return "diverged"
    return "fail" if "FAIL" in checks.values() else "pass"


def _percent(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}%"


def run_note(
    outcome: JobOutcome,
    *,
    val_acc: float,
    ann_link: str | None = None,
    ann_test_acc: float = math.nan,
) -> str:
    """Markdown summary of a finished job for ``mlflow.note.content`` (the run page's description).

    The first line holds the verdict, the test accuracy and the link to the ANN baseline (the UI shows the first
    lines of a note); a table of the checks' verdicts follows.

    Args:
        outcome: The job's outcome (verdict, checks, test accuracy, error).
        val_acc: Best SNN validation accuracy.
        ann_link: UI link to the ANN baseline run the job compared against, if any.
        ann_test_acc: The baseline's test accuracy.
    """
    failed = [CHECK_TITLES.get(c, c) for c, v in outcome.checks.items() if v == "FAIL"]
    head = f"**Verdict: {outcome.verdict}**"
    if outcome.verdict == "diverged":
        head += f" ({outcome.error})"
    elif failed:
        head += f" ({', '.join(failed)} failed)"
    head += f" · SNN test accuracy {_percent(outcome.test_acc)}, validation {_percent(val_acc)}"
    if ann_link is not None:
        head += f" · [ANN baseline]({ann_link}) test accuracy {_percent(ann_test_acc)}"
    lines = [head, "", "| check | verdict |", "|---|---|"]
    lines += [f"| {CHECK_TITLES.get(check, check)} | {verdict} |" for check, verdict in outcome.checks.items()]
    lines += [
        "",
        "Test accuracy uses the best-validation weights. "
        f"Config hash `{outcome.config_hash}`; `report.md` is in the run's artifacts.",
    ]
    return "\n".join(lines) + "\n"


def summarize_run(
    run: RunLogger,
    tracker: Tracker,
    outcome: JobOutcome,
    results: Mapping[str, Result],
    metrics: Mapping[str, float],
    *,
    diverged: str | None,
    report: Path,
) -> None:
    """Record a finished job's verdicts in ``outcome`` and on its run (``evoexp.verdict`` and the note).

    Args:
        run: The job's open run (its ``evoexp.ann_run_id`` tag, if set, links the ANN baseline).
        tracker: The store (for the baseline's link).
        outcome: The job's outcome record, completed in place (verdict, checks, test accuracy, report).
        results: The typed results by check.
        metrics: The job's summary metrics.
        diverged: The divergence message when training diverged, else None.
        report: Path of the job's ``report.md``.
    """
    outcome.checks = check_verdicts(results)
    outcome.verdict = job_verdict(outcome.checks, diverged=diverged is not None)
    outcome.test_acc = float(metrics.get(TEST_ACC, math.nan))
    outcome.report = str(report)
    if diverged is not None:
        outcome.error = diverged
    ann_run = run.tags.get(Tags.ANN_RUN)
    note = run_note(
        outcome,
        val_acc=float(metrics.get(OBJECTIVE, math.nan)),
        ann_link=None if ann_run is None else tracker.run_link(ann_run, baseline=True),
        ann_test_acc=float(metrics.get(ANN_TEST_ACC, math.nan)),
    )
    run.set_tags({Tags.VERDICT: outcome.verdict, Tags.NOTE: note})


def summarize_skipped(outcome: JobOutcome, previous: FinishedRun) -> None:
    """Fill a skipped job's outcome from the FINISHED run it reuses (run id, name, verdict, test accuracy)."""
    outcome.run_id = previous.run_id
    outcome.run_name = previous.tags.get(Tags.RUN_NAME)
    outcome.verdict = previous.tags.get(Tags.VERDICT)
    outcome.test_acc = float(previous.metrics.get(TEST_ACC, math.nan))
    outcome.objective = float(previous.metrics.get(OBJECTIVE, math.nan))


def format_run_summary(outcome: JobOutcome, *, store: str | None = None, url: str | None = None) -> str:
    """The block a single run prints when it ends.

    One line per check with its verdict, then test accuracy, the path of ``report.md``, the MLflow run id and the
    UI URL (with how to start the UI when the store is not a server).

    Args:
        outcome: The run's outcome.
        store: Tracking URI of the run's store (None when untracked).
        url: UI URL of the run.
    """
    if outcome.outcome == "failed":
        head = f"evoexp: run FAILED: {outcome.error}"
    elif outcome.outcome == "skipped":
        head = f"evoexp: skipped: this config already has FINISHED run {outcome.run_id} (verdict {outcome.verdict})"
    else:
        head = f"evoexp: verdict {outcome.verdict}" + (f" ({outcome.error})" if outcome.verdict == "diverged" else "")
    lines = [head]
    width = max((len(CHECK_TITLES.get(c, c)) for c in outcome.checks), default=0)
    lines += [f"  {CHECK_TITLES.get(c, c):<{width}}  {v}" for c, v in outcome.checks.items()]
    if outcome.outcome != "failed":
        lines.append(f"  test accuracy {_percent(outcome.test_acc)} (SNN, best-validation weights)")
    if outcome.report and Path(outcome.report).is_file():
        lines.append(f"  report  {outcome.report}")
    if outcome.run_id and store is not None:
        lines.append(f"  MLflow  run {outcome.run_id} in {store}")
    if outcome.run_id and url is not None:
        served = store is not None and url.startswith(store.rstrip("/"))
        lines.append(f"  UI      {url}" + ("" if served else f"  (start it: mlflow ui --backend-store-uri {store})"))
    return "\n".join(lines)
