"""The committed default-sweep results are what the committed code computes (issue: results the code reproduces).

Two jobs of the default sweep (``make run`` = ``./multirun.sh``, preset ``experiment=surrogate_sweep``) are re-run
here exactly as a sweep worker runs them (same composed config, one torch thread, tracking off) and their metrics are
compared with the per-run record ``docs/results/surrogate_sweep/runs.csv`` that the analysis wrote next to the tables.

The rule (docs/guides/results.md, "Provenance"): the numbers decide, exactly (one thread on the CPU computes the same
floats every time). Equal numbers pass even when the code identity recorded in the file differs from this code's (a
change that does not move a result leaves the committed results valid). Different numbers fail; the message says
whether the record was made by other code (stale: regenerate) or by this very code (not deterministic here).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module

from evoexp import keys
from evoexp.functional import lif
from evoexp.identity import code_identity
from evoexp.job.analysis.provenance import CODE_COL, RECORD_METRICS, RUNS_FILE
from evoexp.job.config import load_config, register_configs
from evoexp.job.run import run_experiment

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "docs" / "results" / "surrogate_sweep" / RUNS_FILE
REGENERATE = "make run && docs/regenerate.sh surrogate_sweep"
SLICE = ("superspike", 10.0, 0)
"""The row issue 21 found stale: SuperSpike, β = 10, seed 0."""


def sweep_job_metrics(surrogate: str, slope: float, seed: int) -> dict[str, float]:
    """Metrics of one default-sweep job, composed and run as a ``make run`` worker runs it, without tracking."""
    return job_metrics("experiment=surrogate_sweep", f"surrogate={surrogate}", f"surrogate.slope={slope:g}",
                       f"seed={seed}")


def job_metrics(*overrides: str) -> dict[str, float]:
    """Metrics of one job of a sweep preset, composed and run as a sweep worker runs it, without tracking."""
    register_configs()
    with initialize_config_module(config_module="evoexp.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, "tracking=off"])
    config = load_config(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return dict(run_experiment(config).metrics)
    finally:
        torch.set_num_threads(threads)


def committed_runs(record: Path, surrogate: str, slope: float, seed: int) -> pd.DataFrame:
    """The committed runs of one configuration (several if runs were pooled); fails when there are none."""
    if not record.is_file():
        pytest.fail(f"{record.relative_to(REPO)}: no per-run record of the default sweep; regenerate: {REGENERATE}")
    runs = pd.read_csv(record)
    name, slope_col, seed_col = (
        keys.param(k) for k in (keys.SURROGATE_NAME_PARAM, keys.SURROGATE_SLOPE_PARAM, keys.SEED_PARAM)
    )
    rows = runs[(runs[name] == surrogate) & (runs[slope_col] == slope) & (runs[seed_col] == seed)]
    if rows.empty:
        where = f"{record.relative_to(REPO)}: no run of {surrogate} β={slope:g} seed {seed}"
        pytest.fail(f"{where}; regenerate: {REGENERATE}")
    return rows


def mismatches(committed: pd.DataFrame, metrics: dict[str, float], identity: str) -> list[str]:
    """One line per committed run and metric whose value differs from ``metrics`` (NaN equals NaN).

    Each line names the code identity that made the run and says whether it is this code's (``identity``).
    """
    lines = []
    for _, row in committed.iterrows():
        made_by = str(row.get(CODE_COL, "unknown"))
        why = "same code: not deterministic here?" if made_by == identity else f"stale: made by {made_by!r}"
        for key in RECORD_METRICS:
            column = keys.metric(key)
            if column not in row.index or key not in metrics:
                continue
            want, got = float(row[column]), float(metrics[key])
            if not (want == got or (math.isnan(want) and math.isnan(got))):
                lines.append(f"{key}: committed {want!r}, this code {got!r} ({why})")
    return lines


def test_committed_default_sweep_runs_are_what_this_code_computes() -> None:
    surrogate, slope, seed = SLICE
    committed = committed_runs(RECORD, surrogate, slope, seed)
    identity = code_identity()
    errors = mismatches(committed, sweep_job_metrics(surrogate, slope, seed), identity)
    assert not errors, (
        f"docs/results/surrogate_sweep does not match this code ({identity}) for {surrogate} β={slope:g} seed "
        f"{seed}:\n" + "\n".join(errors) + f"\nregenerate: {REGENERATE}"
    )


@pytest.mark.slow
def test_the_check_fails_when_the_engine_changes_slightly(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine change of the kind issue 21 met (membrane decay 1e-6 relative smaller) no longer matches the record.

    Together with the test above (the unperturbed code matches), this shows that the check sees such a change.
    """
    surrogate, slope, seed = SLICE
    committed = committed_runs(RECORD, surrogate, slope, seed)
    original = lif.decay_from_time_constant
    monkeypatch.setattr(lif, "decay_from_time_constant", lambda tau, dt=1.0: original(tau, dt) * (1 - 1e-6))
    errors = mismatches(committed, sweep_job_metrics(surrogate, slope, seed), code_identity())
    assert any(e.startswith(f"{keys.SNN_TEST_LOSS}:") for e in errors), errors


THEORY_RECORD = REPO / "docs" / "results" / "theory" / "runs.csv"
THEORY_REGENERATE = "./multirun.sh --experiment theory_<name> && .venv/bin/python docs/theory_results.py"
THEORY_SLICES = {"theory_circulation": 5.0, "theory_sign": 1.0}
"""One job of each fast theory experiment (seconds each): its surrogate slope. The escape-noise experiment (42 min)
is not re-run here."""


def theory_mismatches(experiment: str, slope: float, metrics: dict[str, float]) -> list[str]:
    """Metrics of the committed theory run of ``experiment`` at ``slope`` that differ from ``metrics``."""
    runs = pd.read_csv(THEORY_RECORD)
    rows = runs[(runs["experiment"] == experiment) & (runs[keys.param(keys.SURROGATE_SLOPE_PARAM)] == slope)]
    assert len(rows) == 1, f"{THEORY_RECORD.relative_to(REPO)}: no single run of {experiment} at β={slope:g}"
    row, lines = rows.iloc[0], []
    made_by = str(row[CODE_COL])
    why = "same code: not deterministic here?" if made_by == code_identity() else f"stale: made by {made_by!r}"
    for column in (c for c in runs.columns if c.startswith(keys.METRIC_PREFIX) and not pd.isna(row[c])):
        key = column.removeprefix(keys.METRIC_PREFIX)
        if key not in metrics or float(metrics[key]) != float(row[column]):
            lines.append(f"{key}: committed {float(row[column])!r}, this code {metrics.get(key)!r} ({why})")
    return lines


@pytest.mark.parametrize(("experiment", "slope"), list(THEORY_SLICES.items()))
def test_committed_theory_runs_are_what_this_code_computes(experiment: str, slope: float) -> None:
    metrics = job_metrics(f"experiment={experiment}", f"surrogate.slope={slope:g}")
    errors = theory_mismatches(experiment, slope, metrics)
    assert not errors, (f"docs/results/theory does not match this code ({code_identity()}) for {experiment} "
                        f"β={slope:g}:\n" + "\n".join(errors) + f"\nregenerate: {THEORY_REGENERATE}")


def test_the_theory_check_fails_when_the_engine_changes_slightly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The membrane decay 1e-6 relative smaller changes the circulation the record holds."""
    original = lif.decay_from_time_constant
    monkeypatch.setattr(lif, "decay_from_time_constant", lambda tau, dt=1.0: original(tau, dt) * (1 - 1e-6))
    slope = THEORY_SLICES["theory_circulation"]
    metrics = job_metrics("experiment=theory_circulation", f"surrogate.slope={slope:g}")
    errors = theory_mismatches("theory_circulation", slope, metrics)
    assert any(e.startswith(f"{keys.CIRCULATION}:") for e in errors), errors
