"""What a finished job reports: verdicts per check, the run's verdict, its MLflow note and the terminal block."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from evoexp.job.outcome import JobOutcome
from evoexp.job.summary import check_verdicts, format_run_summary, job_verdict, run_note
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

