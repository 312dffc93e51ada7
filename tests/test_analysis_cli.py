"""Loader and command line against a small MLflow store populated here (params/metrics/tags as a job writes them)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from evoexp.job.analysis import load_history, load_runs, run_analysis
from evoexp.job.analysis.__main__ import main

EXPERIMENT = "cli-test"
SWEEP = "sweep-a"
EPOCHS = 3
LAYERS = ("hidden.0.weight", "readout.weight")


def _log_run(
    client: MlflowClient,
    exp_id: str,
    *,
    name: str,
    slope: float,
    seed: int,
    sweep: str,
    outcome: str,
    scale: float = 1.0,
) -> str:
    run = client.create_run(exp_id, run_name=f"{name}-{slope}-{seed}")
    run_id = run.info.run_id
    params = {
        "surrogate.name": name,
        "surrogate.slope": str(slope),
        "surrogate.scale": str(scale),
        "surrogate._target_": f"evoexp.surrogate.{name}",
        "seed": str(seed),
        "model.hidden_sizes": "[16]",
        "model.recurrent": "False",
        "trainer.epochs": str(EPOCHS),
        "hydra.job.num": str(seed + 10 * slope),  # per-job bookkeeping: must not split configurations
    }
    tags = {"evoexp.sweep_id": sweep, "evoexp.job": str(seed), "evoexp.outcome": outcome}
    base = 0.5 + 0.1 * math.log10(slope) + (0.05 if name == "atan" else 0.0) + 0.01 * seed - 0.1 * math.log10(scale)
    metrics: list[Metric] = []
    for epoch in range(EPOCHS):
        for key, value in {
            "snn/train/loss": 2.0 - 0.3 * epoch,
            "snn/val/acc": base - 0.1 * (EPOCHS - 1 - epoch),
            "ann/train/loss": 1.5 - 0.3 * epoch,
            "ann/val/acc": 0.8 + 0.01 * epoch,
            **{f"snn/grad_norm/{layer}": (i + 1) * (1.0 + epoch) for i, layer in enumerate(LAYERS)},
        }.items():
            metrics.append(Metric(key, value, 0, epoch))
    if outcome == "finished":
        summary = {
            "snn/test/acc_best": base,
            "ann/test/acc_best": 0.8 + 0.001 * seed,
            "snn/test/loss_best": 1.0,
            "ann/test/loss_best": 0.7,
            "snn/time_per_epoch": 2.0 + 0.1 * seed,
            "ann/time_per_epoch": 0.5,
            "snn/params": 500.0,
            "ann/params": 400.0,
            "snn/epochs_to_converge": 2.0,
            "alignment/cosine": 0.9 - 0.1 * math.log10(slope),
            "surrogate/l1_error": 0.5 / slope,
            "stability/gradient_ok": 1.0,
            "stability/weight_ok": 1.0,
        }
        metrics += [Metric(k, v, 0, 0) for k, v in summary.items()]
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    client.set_terminated(run_id, status="FAILED" if outcome == "failed" else "FINISHED")  # diverged: FINISHED
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    for name in ("atan", "fast_sigmoid"):
        for slope in (1.0, 10.0):
            for seed in (0, 1):
                _log_run(client, exp_id, name=name, slope=slope, seed=seed, sweep=SWEEP, outcome="finished")
    _log_run(client, exp_id, name="atan", slope=1.0, seed=2, sweep=SWEEP, outcome="diverged")
    _log_run(client, exp_id, name="atan", slope=10.0, seed=3, sweep=SWEEP, outcome="failed")
    _log_run(client, exp_id, name="atan", slope=1.0, seed=0, sweep="sweep-b", outcome="finished")
    return uri


def test_load_runs_tidy_frame(store):
    runs = load_runs(EXPERIMENT, sweep_id=SWEEP, tracking_uri=store)
    assert len(runs) == 10
    assert runs["run_id"].is_unique
    assert set(runs["status"]) == {"FINISHED", "FAILED"}
    assert runs["params.surrogate.slope"].dtype == "float64"
    assert runs["params.seed"].dtype == "int64"
    assert runs["params.model.recurrent"].dtype == "boolean"
    assert runs["params.model.hidden_sizes"].iloc[0] == "[16]"
    assert runs["metrics.snn/test/acc_best"].isna().sum() == 2  # the diverged and the failed run have no test metrics
    assert (runs["tags.evoexp.sweep_id"] == SWEEP).all()
    assert not any(c.startswith("tags.mlflow.") for c in runs.columns)
    # latest value of a per-epoch metric
    assert runs["metrics.ann/val/acc"].iloc[0] == pytest.approx(0.8 + 0.01 * (EPOCHS - 1))
    assert len(load_runs(EXPERIMENT, tracking_uri=store)) == 11


def test_load_runs_unknown_experiment(store):
    with pytest.raises(ValueError, match=r"no MLflow experiment named 'nope'.*cli-test"):
        load_runs("nope", tracking_uri=store)


def test_load_history_long_frame(store):
    runs = load_runs(EXPERIMENT, sweep_id="sweep-b", tracking_uri=store)
    history = load_history(runs, ["snn/val/acc", "snn/test/acc_best", "missing/key"], tracking_uri=store)
    assert list(history.columns) == ["run_id", "key", "step", "value", "timestamp"]
    assert len(history) == EPOCHS + 1
    acc = history[history["key"] == "snn/val/acc"]
    assert list(acc["step"]) == list(range(EPOCHS))
    assert acc["value"].iloc[-1] == pytest.approx(0.55)
    with pytest.raises(ValueError, match="run_id"):
        load_history(pd.DataFrame({"x": [1]}), ["snn/val/acc"], tracking_uri=store)


def test_run_analysis_tables_and_figures(store, tmp_path):
    result = run_analysis(EXPERIMENT, sweep_id=SWEEP, tracking_uri=store, out_dir=tmp_path, log_summary=False)
    assert set(result.tables) == {"snn_vs_ann", "surrogate_slope", "best_slope"}
    table = result.tables["surrogate_slope"]
    assert list(table.rows.columns) == ["params.surrogate.name", "params.surrogate.slope"]
    assert table.row_n() == [3, 2, 2, 2]  # the FAILED run is left out; the diverged (FINISHED) one counts
    diverged = table.stats[("derived.diverged", "mean")].to_numpy()
    assert diverged[0] == pytest.approx(1 / 3)
    best = result.tables["best_slope"]
    assert list(best.rows["params.surrogate.slope"]) == [10.0, 10.0]
    names = {p.name for p in result.files}
    for stem in ("snn_vs_ann", "surrogate_slope", "best_slope"):
        assert {f"{stem}.csv", f"{stem}.md", f"{stem}.tex"} <= names
    for stem in (
        "accuracy_vs_slope",
        "alignment_vs_slope",
        "surrogate_gallery",
        "training_curves",
        "grad_norm_per_layer",
    ):
        assert {f"{stem}.pdf", f"{stem}.png"} <= names
    assert all(p.stat().st_size > 0 for p in result.files)
    assert result.summary_run_id is None


def test_scale_sweep_gets_an_accuracy_vs_scale_figure_and_no_slope_figure(store, tmp_path):
    client = MlflowClient(tracking_uri=store)
    exp_id = client.create_experiment("cli-scales")
    for scale in (0.1, 1.0, 10.0):
        for seed in (0, 1):
            _log_run(
                client, exp_id, name="fast_sigmoid", slope=20.0, seed=seed, sweep="s", outcome="finished", scale=scale
            )
    result = run_analysis("cli-scales", client=client, out_dir=tmp_path, formats=["csv", "png"], log_summary=False)
    table = result.tables["surrogate_slope"]
    assert list(table.rows["params.surrogate.scale"]) == [0.1, 1.0, 10.0]
    assert "Scale" in table.row_labels
    names = {p.name for p in result.files}
    assert "accuracy_vs_scale.png" in names
    assert not names & {"accuracy_vs_slope.png", "alignment_vs_slope.png"}  # the slope does not vary


def test_cli_end_to_end_and_summary_run(store, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--experiment", EXPERIMENT, "--sweep-id", SWEEP, "--tracking-uri", store, "--out", str(out)]
    assert main([*argv, "--formats", "md", "csv"]) == 0  # figures: see test_run_analysis_tables_and_figures
    printed = capsys.readouterr().out
    assert "| Surrogate | Slope β | n | SNN acc (%) [95% CI] | ANN acc (%) [95% CI] |" in printed
    assert "9 run(s)" in printed
    table_lines = [line for line in printed.splitlines() if line.startswith("|")]
    assert table_lines and max(map(len, table_lines)) <= 120  # fits a terminal; the files hold every column
    assert "more columns in snn_vs_ann.csv/.md" in printed
    written = (out / "snn_vs_ann.md").read_text(encoding="utf-8")
    assert "SNN s/epoch [95% CI]" in written and "percentile-bootstrap" in written
    assert not (out / "snn_vs_ann.tex").exists()
    assert (out / "surrogate_slope.csv").stat().st_size > 0
    assert not (out / "accuracy_vs_slope.png").exists()
    client = MlflowClient(tracking_uri=store)
    everything = load_runs(EXPERIMENT, client=client, include_summary=True)
    summaries = everything[everything["tags.evoexp.kind"] == "summary"]
    assert len(summaries) == 1
    summary_id = summaries["run_id"].iloc[0]
    assert summaries["tags.evoexp.sweep_id"].iloc[0] == SWEEP
    artifacts = {a.path for a in client.list_artifacts(summary_id, "analysis")}
    assert {"analysis/snn_vs_ann.md", "analysis/surrogate_slope.csv", "analysis/best_slope.md"} <= artifacts
    # the summary run is not a job run, and a second analysis reuses it
    assert len(load_runs(EXPERIMENT, sweep_id=SWEEP, client=client)) == 10
    assert main([*argv, "--formats", "md"]) == 0
    everything = load_runs(EXPERIMENT, client=client, include_summary=True)
    assert (everything["tags.evoexp.kind"] == "summary").sum() == 1


def test_cli_reports_bad_input(store, tmp_path, capsys):
    assert main(["--experiment", "nope", "--tracking-uri", store, "--out", str(tmp_path)]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err
    assert (
        main(["--experiment", EXPERIMENT, "--sweep-id", "none", "--tracking-uri", store, "--out", str(tmp_path)]) == 2
    )
    assert "no finished job runs in sweep 'none'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--experiment", EXPERIMENT, "--formats", "docx"])


@pytest.mark.slow
def test_cli_on_tiny_real_sweep(tmp_path, capsys):
    """``python -m evoexp -m`` (2 slopes x 2 seeds of the smoke experiment), then the analysis CLI."""
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo), "MLFLOW_TRACKING_URI": ""}
    command = [
        sys.executable,
        "-m",
        "evoexp",
        "-m",
        "experiment=smoke",
        "surrogate.slope=1,10",
        "seed=0,1",
        "tracking.experiment=tiny",
        "tracking.sweep_id=tiny-1",
    ]
    subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    out = tmp_path / "analysis"
    argv = ["--experiment", "tiny", "--sweep-id", "tiny-1", "--tracking-uri", store, "--out", str(out)]
    assert main([*argv, "--formats", "md", "csv", "png"]) == 0
    assert "| Slope β | n | SNN acc (%) [95% CI] | SNN acc last (%) [95% CI] |" in capsys.readouterr().out
    table = pd.read_csv(out / "surrogate_slope.csv")
    assert list(table["surrogate.slope"]) == [1.0, 10.0]
    assert list(table["snn/test/acc_best_n"]) == [2, 2]
    assert table["snn/test/acc_best_mean"].between(0.0, 1.0).all()
    for stem in ("accuracy_vs_slope", "training_curves", "grad_norm_per_layer", "surrogate_gallery"):
        assert (out / f"{stem}.png").stat().st_size > 0
