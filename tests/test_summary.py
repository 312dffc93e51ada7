"""What a finished job reports: verdicts per check, the run's verdict, its MLflow note and the terminal block."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evoexp import keys
from evoexp.job.outcome import JobOutcome
from evoexp.job.run_logger import RunLogger
from evoexp.job.summary import (
    SweepTally,
    check_verdicts,
    format_checks,
    format_run_summary,
    job_verdict,
    parse_checks,
    run_note,
    summarize_run,
    summarize_skipped,
)
from evoexp.job.tracking import FinishedRun, NullTracker
from evoexp.keys import Tags
from evoexp.results import Result, SkippedResult


@dataclasses.dataclass
class Verdict(Result):
    ok: bool | None
    check: str = "gradient_verification"

    @property
    def passed(self) -> bool | None:
        return self.ok


def test_verdicts_per_check_and_for_the_run() -> None:
    results = {
        "gradient_verification": Verdict(True),
        "convergence": Verdict(False, "convergence"),
        "benchmark": Verdict(None, "benchmark"),
        "gradient_alignment": SkippedResult("gradient_alignment", "disabled"),
    }
    checks = check_verdicts(results)
    assert checks == {
        "gradient_verification": "PASS",
        "convergence": "FAIL",
        "benchmark": "info",
        "gradient_alignment": "skipped",
    }
    assert job_verdict(checks, diverged=False) == "fail"
    assert job_verdict({"a": "PASS", "b": "info", "c": "skipped"}, diverged=False) == "pass"
    assert job_verdict({"a": "PASS"}, diverged=True) == "diverged"


def test_note_leads_with_verdict_accuracy_and_the_ann_baseline_link() -> None:
    outcome = JobOutcome(
        "finished", verdict="fail", checks={"convergence": "FAIL", "benchmark": "info"}, test_acc=0.941, config_hash="h"
    )
    note = run_note(outcome, val_acc=0.95, ann_link="#/experiments/2/runs/abc", ann_test_acc=0.97)
    first = note.splitlines()[0]
    assert first == (
        "**Verdict: fail** (Convergence failed) · SNN test accuracy 94.1%, validation 95.0% · "
        "[ANN baseline](#/experiments/2/runs/abc) test accuracy 97.0%"
    )
    assert "| Convergence | FAIL |" in note
    diverged = JobOutcome("diverged", verdict="diverged", error="snn diverged in epoch 3", test_acc=math.nan)
    assert run_note(diverged, val_acc=math.nan).startswith(
        "**Verdict: diverged** (snn diverged in epoch 3) · SNN test accuracy –"
    )


def test_single_run_block_lists_checks_accuracy_report_run_and_url(tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    report.write_text("# r\n")
    outcome = JobOutcome(
        "finished",
        run_id="abc",
        verdict="pass",
        checks={"gradient_verification": "PASS", "benchmark": "info"},
        test_acc=0.9,
        report=str(report),
    )
    local = format_run_summary(outcome, store="sqlite:////p/mlruns.db", url="http://127.0.0.1:5000/#/x").splitlines()
    assert local[0] == "evoexp: verdict pass"
    assert local[1].split() == ["Gradient", "verification", "(finite", "differences", "vs", "autograd)", "PASS"]
    assert local[2].split()[-1] == "info"
    assert local[3:] == [
        "  test accuracy 90.0% (SNN, best-validation weights)",
        f"  report  {report}",
        "  MLflow  run abc in sqlite:////p/mlruns.db",
        "  UI      http://127.0.0.1:5000/#/x  (start it: mlflow ui --backend-store-uri sqlite:////p/mlruns.db)",
    ]
    served = format_run_summary(outcome, store="http://h:5000", url="http://h:5000/#/x")
    assert served.splitlines()[-1] == "  UI      http://h:5000/#/x"
    failed = format_run_summary(JobOutcome("failed", error="RuntimeError: boom"))
    assert failed == "evoexp: run FAILED: RuntimeError: boom"



def test_checks_tag_lists_failures_first_and_reads_back() -> None:
    checks = {"gradient_verification": "PASS", "gradient_stability": "FAIL", "benchmark": "info", "convergence": "PASS"}
    text = format_checks(checks)
    assert text == "FAIL: gradient_stability · PASS: gradient_verification, convergence · info: benchmark"
    assert parse_checks(text) == checks
    assert format_checks({}) == "none" and parse_checks("none") == {} and parse_checks("garbled") == {}


class Recorder(RunLogger):
    """A run that keeps what is logged to it."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.logged_tags: dict[str, str] = {}

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        self.metrics.update(metrics)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.logged_tags.update({k: str(v) for k, v in tags.items()})


def test_a_job_run_carries_headline_metrics_and_its_checks(tmp_path: Path) -> None:
    run, outcome = Recorder(), JobOutcome("finished")
    results = {"gradient_verification": Verdict(True), "convergence": Verdict(False, "convergence")}
    summarize_run(
        run, NullTracker(), outcome, results, {keys.SNN_TEST_ACC: 0.875}, diverged=None, report=tmp_path / "r.md"
    )
    assert run.metrics == {keys.HEADLINE_TEST_ACC: 0.875, keys.HEADLINE_CHECKS_FAILED: 1.0}
    assert run.logged_tags[Tags.VERDICT] == "fail"
    assert parse_checks(run.logged_tags[Tags.CHECKS]) == {"gradient_verification": "PASS", "convergence": "FAIL"}

    # A resumed sweep skips the job and counts it as the run it reuses: finished, with that run's verdicts.
    skipped = JobOutcome("skipped")
    summarize_skipped(skipped, FinishedRun("r1", dict(run.metrics), run.logged_tags))
    tally = SweepTally.count([skipped, JobOutcome("failed")])
    assert (tally.jobs, tally.reused) == ({"finished": 1, "diverged": 0, "failed": 1}, 1)
    assert tally.verdicts == {"fail": 1}
    assert tally.checks == {"gradient_verification": {"PASS": 1}, "convergence": {"FAIL": 1}}
    assert tally.metrics()["sweep/check/convergence/fail"] == 1.0
    assert all(keys.is_declared_metric(name) for name in tally.metrics())
