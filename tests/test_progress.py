"""Sweep progress: job counting, sweep identity, run names, the progress board's count and ETA, console lines."""

from __future__ import annotations

import logging
import math
import multiprocessing
from pathlib import Path

import pytest
from hydra.conf import HydraConf
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from evoexp.job.outcome import JobOutcome
from evoexp.job.progress import (
    JobProgress,
    ProgressBoard,
    QuietInSweeps,
    SweepPlan,
    format_duration,
    format_job_line,
    job_label,
    plan_sweep,
    run_name,
)


def test_plan_counts_the_cartesian_product_of_the_basic_sweeper() -> None:
    overrides = ["experiment=smoke", "surrogate=atan,sigmoid", "seed=range(0,3)", "model.dt=0.5,1.0"]
    axes, total = plan_sweep(overrides, sweeper_params={}, basic_sweeper=True)
    assert (axes, total) == (["surrogate", "seed", "model.dt"], 12)
    # preset params come first; a command-line value replaces the preset's sweep of the same key
    axes, total = plan_sweep(
        ["seed=4"], sweeper_params={"seed": "0,1,2", "surrogate.slope": "1,10"}, basic_sweeper=True
    )
    assert (axes, total) == (["surrogate.slope"], 2)
    assert plan_sweep(overrides, sweeper_params={}, basic_sweeper=False, n_trials=30)[1] == 30
    assert plan_sweep(["lr=interval(0.1,1)"], sweeper_params={}, basic_sweeper=True)[1] is None


def test_sweep_id_is_the_sweeps_definition() -> None:
    def sweep_id(*overrides: str, experiment: str = "evoexp") -> str:
        return SweepPlan.create(overrides, sweeper_params={}, basic_sweeper=True, experiment=experiment).sweep_id

    base = sweep_id("experiment=smoke", "seed=0,1", "surrogate=atan,sigmoid")
    assert base.startswith("smoke-")
    assert sweep_id("surrogate=atan,sigmoid", "seed=0,1", "experiment=smoke") == base  # order does not matter
    assert sweep_id("experiment=smoke", "seed=0,1", "surrogate=atan,sigmoid", "hydra/launcher=parallel") == base
    assert sweep_id("experiment=smoke", "seed=0,1,2", "surrogate=atan,sigmoid") != base
    assert sweep_id("experiment=smoke", "seed=0,1", "surrogate=atan,sigmoid", experiment="other") != base
    fixed = SweepPlan.create(["seed=0,1"], sweeper_params={}, basic_sweeper=True, experiment="e", sweep_id="mine")
    assert fixed.sweep_id == "mine"


def test_plan_roundtrips_through_the_sweep_dir(tmp_path: Path) -> None:
    assert SweepPlan.load(tmp_path) is None
    plan = SweepPlan("s-1", ["seed"], 3, "run123")
    plan.save(tmp_path)
    assert SweepPlan.load(tmp_path) == plan


def test_run_names_differ_in_every_swept_key() -> None:
    axes = ["surrogate", "surrogate.slope", "model.dt", "dataset.split", "seed"]
    names, labels = set(), set()
    for dt in ("0.5", "1.0"):
        for split in ("[0.8,0.1,0.1]", "[0.6,0.2,0.2]"):
            cfg = OmegaConf.create({"surrogate": {"name": "atan", "slope": 10.0}, "seed": 2})
            overrides = ["surrogate=atan", "surrogate.slope=10", f"model.dt={dt}", f"dataset.split={split}", "seed=2"]
            names.add(run_name(cfg, overrides, axes))
            labels.add(job_label(cfg, overrides, axes))
    assert len(names) == len(labels) == 4
    assert "atan-b10-s2-dt=0.5-split=[0.8,0.1,0.1]" in names
    assert "atan β=10 seed 2 dt=0.5 split=[0.8,0.1,0.1]" in labels
    cfg = OmegaConf.create({"surrogate": {"name": "atan", "slope": 10.0}, "seed": 0})
    assert run_name(cfg) == "atan-b10-s0"
    two_dts = ["model.dt", "dataset.dt"]
    assert job_label(cfg, ["model.dt=1", "dataset.dt=2"], two_dts) == "atan β=10 seed 0 model.dt=1 dataset.dt=2"
    optuna = ["surrogate.scale=2.693883019285411", "model.reset=zero"]
    assert job_label(cfg, optuna, ["surrogate.scale", "model.reset"]) == "atan β=10 seed 0 scale=2.69388 reset=zero"
    assert run_name(cfg, optuna, ["surrogate.scale"]) == "atan-b10-s0-scale=2.693883019285411"  # exact


def test_eta_is_remaining_work_over_the_observed_parallelism(tmp_path: Path) -> None:
    board = ProgressBoard(tmp_path, total=5)
    board.job_started(0, now=0.0)
    board.job_started(1, now=0.0)  # two workers
    progress, seconds = board.job_finished(0, ran=True, now=10.0)
    # mean 10 s; 4 jobs left, job 1 has done 10 s of its work: (4 * 10 - 10) / 2
    assert (progress, seconds) == (JobProgress(1, 5, 15.0), 10.0)
    board.job_started(2, now=10.0)
    progress, _ = board.job_finished(1, ran=True, now=12.0)
    assert progress == JobProgress(2, 5, (3 * 11 - 2) / 2)
    board.job_started(3, now=12.0)
    progress, _ = board.job_finished(3, ran=False, now=12.1)  # skipped: done, but not in the mean job time
    assert progress == JobProgress(3, 5, (2 * 11 - 2.1) / 2)
    progress, seconds = board.job_finished(4, ran=True, now=13.0)  # its start was never recorded
    assert progress.done == 4
    assert math.isnan(seconds)
    assert ProgressBoard(tmp_path / "other", total=None).job_finished(0, ran=True)[0].eta is None


def _finish(sweep_dir: str, job: int) -> int:
    board = ProgressBoard(Path(sweep_dir), total=8)
    board.job_started(job)
    return board.job_finished(job, ran=True)[0].done


def test_parallel_jobs_count_each_finish_once(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        counts = pool.starmap(_finish, [(str(tmp_path), job) for job in range(8)])
    assert sorted(counts) == list(range(1, 9))


def outcome(kind: str, **fields: object) -> JobOutcome:
    return JobOutcome(kind, **fields)  # type: ignore[arg-type]


def test_job_lines_mark_failures_divergences_and_skips() -> None:
    mid = JobProgress(17, 105, 185.0)
    ok = outcome("finished", test_acc=0.941, checks={"gradient_verification": "PASS"})
    assert format_job_line(mid, "fast_sigmoid β=10 seed 2", ok, seconds=2.3) == (
        "[17/105] fast_sigmoid β=10 seed 2 · test 94.1% · 2.3 s · ETA 3 min"
    )
    failed = outcome("failed", error="RuntimeError: " + "x" * 200)
    line = format_job_line(mid, "a", failed, seconds=0.4)
    assert line.startswith("[17/105] a · FAILED RuntimeError: xxx")
    assert len(line) < 160
    checks = {"convergence": "FAIL", "gradient_verification": "PASS"}
    assert "checks FAIL (convergence)" in format_job_line(mid, "a", outcome("finished", checks=checks), seconds=1)
    assert " · DIVERGED · " in format_job_line(mid, "a", outcome("diverged", error="nan loss"), seconds=1)
    skipped = format_job_line(mid, "a", outcome("skipped", run_id="0123456789abcdef", test_acc=0.5), seconds=0.1)
    assert "skipped (finished run 01234567) · test 50.0%" in skipped
    last = format_job_line(JobProgress(105, 105, 0.0), "a", ok, seconds=2.3)
    assert "ETA" not in last
    assert format_job_line(JobProgress(3, None, None), "a", ok, seconds=math.nan) == "[3/?] a · test 94.1%"


@pytest.mark.parametrize(("seconds", "text"), [(0.44, "0.4 s"), (12.4, "12 s"), (185, "3 min"), (3900, "1 h 05 min")])
def test_durations_read_naturally(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("mode", [RunMode.RUN, RunMode.MULTIRUN])
def test_console_filter_keeps_sweeps_to_one_line_per_job(mode: RunMode) -> None:
    hydra = OmegaConf.structured(HydraConf)
    hydra.mode = mode
    HydraConfig.instance().set_config(OmegaConf.create({"hydra": hydra}))
    try:
        quiet = QuietInSweeps()
    finally:
        HydraConfig.instance().cfg = None
    info = logging.LogRecord("evoexp.training", logging.INFO, "", 0, "snn epoch 1/2", None, None)
    warning = logging.LogRecord("evoexp.training", logging.WARNING, "", 0, "snn epoch 1/2 diverged", None, None)
    error = logging.LogRecord("evoexp", logging.ERROR, "", 0, "store unreachable", None, None)
    failure = (RuntimeError, None, None)
    traceback = logging.LogRecord("evoexp.job.task", logging.ERROR, "", 0, "job failed", None, failure)
    passed = [quiet.filter(r) for r in (info, warning, error, traceback)]
    assert passed == ([False, False, True, False] if mode == RunMode.MULTIRUN else [True] * 4)
