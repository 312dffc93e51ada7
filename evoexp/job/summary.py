"""What a finished job reports: its verdicts, as an MLflow note and verdict tag and as the end-of-run terminal block.

* :func:`check_verdicts` turns the typed results into one verdict per check (``PASS``, ``FAIL``, ``info``,
  ``skipped``) and :func:`job_verdict` into the run's verdict (``pass`` / ``fail`` / ``diverged`` / ``nothing
  checked``), the tag ``evoexp.verdict`` to filter on.
* :func:`summarize_run` records them in the job's outcome and on its MLflow run: the verdict tag, the checks' verdicts
  (tag ``evoexp.checks``, :func:`format_checks`), the headline metrics ``test_acc`` and ``checks_failed``, and a
  Markdown ``mlflow.note.content`` (verdicts, test accuracy, a link to the ANN baseline run), shown on the run's page.
* :func:`format_run_summary` is what a single run prints when it ends: the verdict table, test accuracy, the
  report's path, the MLflow run id and the UI URL.
* :class:`SweepTally` counts a sweep's jobs by outcome, verdict and check verdict, for the summary a sweep prints
  and its parent run's note and metrics. A job skipped on resume counts as what its earlier run was.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from evoexp.job.outcome import JobOutcome
from evoexp.job.run_logger import RunLogger
from evoexp.job.tracking import FinishedRun, Tracker
from evoexp.keys import (
    ANN_TEST_ACC,
    HEADLINE_CHECKS_FAILED,
    HEADLINE_TEST_ACC,
    OBJECTIVE,
    SNN_TEST_ACC,
    SWEEP_CHECK_PREFIX,
    SWEEP_JOBS_PREFIX,
    SWEEP_VERDICT_PREFIX,
    Tags,
)
from evoexp.results import Result, SkippedResult
from evoexp.verification.report import CHECK_TITLES

__all__ = [
    "ANN_TEST_ACC",
    "CHECK_VERDICTS",
    "TEST_ACC",
    "VERDICTS",
    "SweepTally",
    "check_verdicts",
    "format_checks",
    "format_run_summary",
    "job_verdict",
    "jobs_text",
    "parse_checks",
    "run_note",
    "summarize_run",
    "summarize_skipped",
]

TEST_ACC = SNN_TEST_ACC
"""Test accuracy of the SNN with its best-validation weights: the accuracy evoexp reports."""
VERDICTS = ("pass", "fail", "diverged", "nothing checked")
CHECK_VERDICTS = ("FAIL", "PASS", "info", "skipped")
"""The verdicts of one check, in the order :func:`format_checks` lists them (failures first)."""


def check_verdicts(results: Mapping[str, Result]) -> dict[str, str]:
    """Verdict of each check: ``PASS``, ``FAIL``, ``info`` (no verdict) or ``skipped``, in the results' order."""
    verdicts = {}
    for name, result in results.items():
        if isinstance(result, SkippedResult):
            verdicts[name] = "skipped"
        else:
            verdicts[name] = {True: "PASS", False: "FAIL", None: "info"}[result.passed]
    return verdicts


def format_checks(checks: Mapping[str, str]) -> str:
    """The checks' verdicts in one line, failures first: ``FAIL: gradient_stability · PASS: convergence, benchmark``.

    The value of tag ``evoexp.checks``: a column of the runs table that shows at a glance which checks failed;
    :func:`parse_checks` reads it back (a resumed sweep counts the verdicts of the runs it reuses).
    """
    groups = {verdict: [name for name, v in checks.items() if v == verdict] for verdict in CHECK_VERDICTS}
    return " · ".join(f"{verdict}: {', '.join(names)}" for verdict, names in groups.items() if names) or "none"


def parse_checks(text: str) -> dict[str, str]:
    """The checks' verdicts written by :func:`format_checks` (empty for ``none`` or an unreadable value)."""
    checks = {}
    for group in text.split(" · "):
        verdict, _, names = group.partition(": ")
        if verdict in CHECK_VERDICTS:
            checks.update({name: verdict for name in names.split(", ") if name})
    return checks


def job_verdict(checks: Mapping[str, str], *, diverged: bool) -> str:
    """The run's verdict: ``diverged`` if training diverged, else ``fail`` if a check failed, else ``pass``.

    A run in which no check gave a verdict (``verifier.checks=[]``, or only informational checks) is ``nothing
    checked``, never ``pass``.
    """
    if diverged:
        return "diverged"
    if "FAIL" in checks.values():
        return "fail"
    return "pass" if "PASS" in checks.values() else "nothing checked"


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
        ann_link=None if ann_run is None else tracker.run_link(ann_run),
        ann_test_acc=float(metrics.get(ANN_TEST_ACC, math.nan)),
    )
    failed = sum(verdict == "FAIL" for verdict in outcome.checks.values())
    run.log_metrics({HEADLINE_TEST_ACC: outcome.test_acc, HEADLINE_CHECKS_FAILED: float(failed)})
    run.set_tags({Tags.VERDICT: outcome.verdict, Tags.CHECKS: format_checks(outcome.checks), Tags.NOTE: note})


def summarize_skipped(outcome: JobOutcome, previous: FinishedRun) -> None:
    """Fill a skipped job's outcome from the FINISHED run it reuses (run id, name, verdicts, test accuracy)."""
    outcome.run_id = previous.run_id
    outcome.run_name = previous.tags.get(Tags.RUN_NAME)
    outcome.verdict = previous.tags.get(Tags.VERDICT)
    outcome.checks = parse_checks(previous.tags.get(Tags.CHECKS, ""))
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
        if outcome.verdict == "nothing checked":
            head += " (no enabled check gives a verdict: see verifier.checks)"
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


def jobs_text(n: int | None) -> str:
    """``1 job``, ``105 jobs``, ``an unknown number of jobs``."""
    if n is None:
        return "an unknown number of jobs"
    return f"{n} job" + ("" if n == 1 else "s")


def _state(job: JobOutcome) -> str:
    """What ``job`` counts as in its sweep: a skipped job as its earlier run (``finished`` or ``diverged``)."""
    if job.outcome == "skipped":
        return "diverged" if job.verdict == "diverged" else "finished"
    return job.outcome


@dataclass
class SweepTally:
    """A sweep's jobs counted by outcome, verdict and check verdict: the whole sweep's state.

    A job that a resumed sweep skipped (its config has a FINISHED run) counts as what that run was, finished or
    diverged, with its verdicts; ``reused`` says how many such jobs there were.

    Attributes:
        jobs: Jobs per state: ``finished``, ``diverged``, ``failed`` and, when there are any, ``killed``.
        reused: Jobs skipped for an earlier run (counted in ``jobs`` as that run).
        verdicts: Jobs per verdict (``pass``, ``fail``, ``diverged``; failed jobs have none).
        checks: Per check, jobs per check verdict (``PASS``, ``FAIL``, ``info``, ``skipped``), checks in order of
            first appearance; a check that every job skipped (not enabled in the sweep) is left out.
    """

    jobs: dict[str, int] = field(default_factory=dict)
    reused: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    checks: dict[str, Counter[str]] = field(default_factory=dict)

    @classmethod
    def count(cls, outcomes: Iterable[JobOutcome]) -> SweepTally:
        """Tally the outcomes of a sweep's jobs."""
        outcomes = list(outcomes)
        states = Counter(_state(job) for job in outcomes)
        tally = cls({state: states.get(state, 0) for state in ("finished", "diverged", "failed")})
        if states.get("killed"):  # interrupted jobs (Ctrl-C, SIGTERM): shown only when there are some
            tally.jobs["killed"] = states["killed"]
        tally.reused = sum(job.outcome == "skipped" for job in outcomes)
        tally.verdicts = Counter(job.verdict for job in outcomes if job.verdict is not None)
        for job in outcomes:
            for check, verdict in job.checks.items():
                tally.checks.setdefault(check, Counter())[verdict] += 1
        tally.checks = {check: counts for check, counts in tally.checks.items() if set(counts) != {"skipped"}}
        return tally

    @property
    def total(self) -> int:
        """Number of jobs."""
        return sum(self.jobs.values())

    def headline(self) -> str:
        """``finished 105, diverged 0, failed 0 (100 reused from earlier runs)``."""
        text = ", ".join(f"{state} {n}" for state, n in self.jobs.items())
        return text + (f" ({self.reused} reused from earlier runs)" if self.reused else "")

    def verdict_line(self) -> str:
        """``pass 61, fail 44`` (``none`` when no job has a verdict)."""
        ordered = [v for v in VERDICTS if v in self.verdicts] + sorted(set(self.verdicts) - set(VERDICTS))
        return ", ".join(f"{v} {self.verdicts[v]}" for v in ordered) or "none"

    def _columns(self) -> list[str]:
        """The check verdicts that occur, ``PASS`` and ``FAIL`` always."""
        seen = {verdict for counts in self.checks.values() for verdict in counts}
        return [v for v in ("PASS", "FAIL", "info", "skipped") if v in ("PASS", "FAIL") or v in seen]

    def check_lines(self) -> list[str]:
        """One aligned line per check: its name and the number of jobs per check verdict."""
        if not self.checks:
            return []
        columns = self._columns()
        width = max(len(check) for check in self.checks)
        lines = [f"  {'check':<{width}}  " + "  ".join(f"{c:>7}" for c in columns)]
        lines += [
            f"  {check:<{width}}  " + "  ".join(f"{counts[c]:>7}" for c in columns)
            for check, counts in self.checks.items()
        ]
        return lines

    def markdown(self) -> list[str]:
        """The verdict counts and the per-check table, as Markdown lines (for the sweep run's note)."""
        lines = [f"Verdicts: {self.verdict_line()}."]
        if self.checks:
            columns = self._columns()
            lines += ["", "| check | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
            lines += [
                f"| {CHECK_TITLES.get(check, check)} | " + " | ".join(str(counts[c]) for c in columns) + " |"
                for check, counts in self.checks.items()
            ]
        return lines

    def metrics(self) -> dict[str, float]:
        """The counts as the sweep run's metrics (``sweep/jobs_*``, ``sweep/verdict_*``, ``sweep/check/*``)."""
        metrics = {f"{SWEEP_JOBS_PREFIX}{state}": float(n) for state, n in self.jobs.items()}
        metrics[f"{SWEEP_JOBS_PREFIX}reused"] = float(self.reused)
        metrics.update({f"{SWEEP_VERDICT_PREFIX}{v.replace(' ', '_')}": float(n) for v, n in self.verdicts.items()})
        for check, counts in self.checks.items():
            for verdict in ("PASS", "FAIL"):
                metrics[f"{SWEEP_CHECK_PREFIX}{check}/{verdict.lower()}"] = float(counts[verdict])
        return metrics
