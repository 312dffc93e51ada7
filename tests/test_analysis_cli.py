"""Loader and command line against a small MLflow store populated here (params/metrics/tags as a job writes them)."""

import json
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

from evoexp.job.analysis import load_history, load_runs, pipeline, run_analysis
from evoexp.job.analysis.__main__ import main
from evoexp.keys import Tags

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
    checks: bool = True,
    diverge_param: bool | None = None,
    history_epochs: int = EPOCHS,
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
        "dataset.n_classes": "4",
    }
    if diverge_param is not None:
        params["debug.diverge"] = str(diverge_param)
    tags = {"evoexp.sweep_id": sweep, "evoexp.job": str(seed), "evoexp.outcome": outcome}
    if outcome != "failed":
        tags["evoexp.verdict"] = "pass" if outcome == "finished" else "diverged"
    base = 0.5 + 0.1 * math.log10(slope) + (0.05 if name == "atan" else 0.0) + 0.01 * seed - 0.1 * math.log10(scale)
    metrics: list[Metric] = []
    for epoch in range(history_epochs):
        for key, value in {
            "snn/train/loss": 2.0 - 0.3 * epoch,
            "snn/val/acc": base - 0.1 * (EPOCHS - 1 - epoch),
            "ann/train/loss": 1.5 - 0.3 * epoch,
            "ann/val/acc": 0.8 + 0.01 * epoch,
            **{f"snn/grad_norm/{layer}": (i + 1) * (1.0 + epoch) for i, layer in enumerate(LAYERS) if epoch},
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
        if not checks:  # a sweep run without the alignment and stability checks
            summary = {k: v for k, v in summary.items() if not k.startswith(("alignment/", "stability/"))}
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
    assert set(result.tables) == {"snn_vs_ann", "verdicts", "surrogate_slope", "best_slope"}
    table = result.tables["surrogate_slope"]
    assert list(table.rows.columns) == ["params.surrogate.name", "params.surrogate.slope"]
    assert table.row_n() == [3, 2, 2, 2]  # the FAILED run is left out; the diverged (FINISHED) one counts
    diverged = table.stats[("derived.diverged", "mean")].to_numpy()
    assert diverged[0] == pytest.approx(1 / 3)
    best = result.tables["best_slope"]
    assert list(best.rows["params.surrogate.slope"]) == [10.0, 10.0]
    names = {p.name for p in result.files}
    for stem in ("snn_vs_ann", "verdicts", "surrogate_slope", "best_slope"):
        assert {f"{stem}.csv", f"{stem}.md", f"{stem}.tex"} <= names
    header, body = result.tables["verdicts"].cells()
    assert body[0][header.index("Verdict pass (runs)")] == "2/3"  # atan, β = 1: two passed, one diverged
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


def test_provenance_names_the_code_of_the_runs_it_counts(store, tmp_path):
    """Runs of two code identities: the analysis counts the newest code's only, and its provenance says which."""
    client = MlflowClient(tracking_uri=store)
    exp_id = client.create_experiment("cli-provenance")
    codes = ("evoexp 0.1.0 src aaaaaaaaaaaa torch 2.13.0", "evoexp 0.1.0 src bbbbbbbbbbbb torch 2.13.0")
    for seed, code in enumerate(codes):
        run_id = _log_run(client, exp_id, name="atan", slope=1.0, seed=seed, sweep="p", outcome="finished")
        client.set_tag(run_id, Tags.CODE_IDENTITY, code)
        client.set_tag(run_id, Tags.GIT_COMMIT, "abc123")
    client.create_run(
        exp_id, run_name="p", tags={Tags.KIND: "sweep", Tags.SWEEP_ID: "p", Tags.OVERRIDES: "experiment=x seed=0,1"}
    )
    command = "python -m evoexp.job.analysis --experiment cli-provenance"
    result = run_analysis(
        "cli-provenance", client=client, out_dir=tmp_path, formats=["md"], log_summary=False, command=command
    )
    assert {"provenance.json", "runs.csv"} <= {p.name for p in result.files}
    record = json.loads((tmp_path / "provenance.json").read_text(encoding="utf-8"))
    assert record["code_identities"] == {codes[1]: 1}  # the newest code; the older run is dropped, never pooled
    assert record["pooled"] is False
    assert record["git_commits"] == {"abc123": 1}
    assert record["sweeps"] == {"p": "python -m evoexp --multirun experiment=x seed=0,1"}
    assert record["analysis_command"] == command
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs["params.seed"]) == [1]
    assert list(runs["params.surrogate.name"]) == ["atan"]
    assert list(runs["tags.evoexp.code_identity"]) == [codes[1]]
    line = (tmp_path / "snn_vs_ann.md").read_text(encoding="utf-8").splitlines()[-1]
    assert line.startswith("Provenance: 1 run(s) computed by ")
    assert "POOLED" not in line and codes[1] in line and codes[0] not in line and command in line


def test_cli_end_to_end_and_summary_run(store, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--experiment", EXPERIMENT, "--sweep-id", SWEEP, "--tracking-uri", store, "--out", str(out)]
    assert main([*argv, "--formats", "md", "csv"]) == 0  # figures: see test_run_analysis_tables_and_figures
    printed = capsys.readouterr().out
    assert "| Surrogate | Slope β | n | Verdict pass (runs) | SNN acc (%) [95% CI] | ANN acc (%) [95% CI] |" in printed
    assert "verdicts of 9 run(s): 8 pass, 0 fail, 1 diverged" in printed
    assert "9 run(s); wrote" in printed
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


@pytest.fixture(scope="module")
def diverge_store(store: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The README's diverge example: every config with debug.diverge false and true, no alignment or stability checks.

    Experiment ``diverge`` holds both halves; experiment ``all-diverged`` only the diverged jobs, which log the
    epoch-0 evaluation and nothing after it (no test accuracy, no gradient norms). Same database as ``store``.
    """
    root = tmp_path_factory.mktemp("artifacts-diverge")
    client = MlflowClient(tracking_uri=store)
    for experiment, flags in (("diverge", (False, True)), ("all-diverged", (True,))):
        exp_id = client.create_experiment(experiment, artifact_location=(root / experiment).as_uri())
        for name in ("atan", "fast_sigmoid"):
            for slope in (1.0, 10.0):
                for diverge in flags:
                    _log_run(
                        client,
                        exp_id,
                        name=name,
                        slope=slope,
                        seed=0,
                        sweep=experiment,
                        outcome="diverged" if diverge else "finished",
                        checks=False,
                        diverge_param=diverge,
                        history_epochs=1 if diverge else EPOCHS,
                    )
    return store


def test_diverge_sweep_without_checks_skips_what_it_lacks(diverge_store, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--experiment", "diverge", "--tracking-uri", diverge_store, "--out", str(out), "--no-summary-run"]
    assert main([*argv, "--formats", "md", "png"]) == 0
    captured = capsys.readouterr()
    assert "verdicts of 8 run(s): 4 pass, 0 fail, 4 diverged" in captured.out
    names = {p.name for p in out.iterdir()}
    # the per-layer gradient norms come from a configuration that did not diverge (the best finite accuracy)
    assert {"accuracy_vs_slope.png", "training_curves.png", "grad_norm_per_layer.png", "verdicts.md"} <= names
    assert "alignment_vs_slope.png" not in names  # no alignment check ran
    assert "skipped figure alignment_vs_slope: no gradient alignment values" in captured.out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_sweep_of_only_diverged_jobs_degrades_gracefully(diverge_store, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--experiment", EXPERIMENT, "--tracking-uri", diverge_store, "--out", str(out), "--no-summary-run"]
    assert main([*argv, "--formats", "md", "png"]) == 0
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    capsys.readouterr()
    argv = ["--experiment", "all-diverged", "--tracking-uri", diverge_store, "--out", str(out), "--no-summary-run"]
    assert main([*argv, "--formats", "md", "csv", "png"]) == 0
    captured = capsys.readouterr()
    assert "verdicts of 4 run(s): 0 pass, 0 fail, 4 diverged" in captured.out
    skipped = [line for line in captured.out.splitlines() if line.startswith("skipped ")]
    for stem in ("accuracy_vs_slope", "alignment_vs_slope", "training_curves", "grad_norm_per_layer"):
        assert any(line.startswith(f"skipped figure {stem}: ") for line in skipped), stem
    assert any("every run diverged or failed" in line for line in skipped)
    names = {p.name for p in out.iterdir()}
    assert {"verdicts.md", "snn_vs_ann.csv", "surrogate_gallery.png", "notes.txt"} <= names
    # figures of the earlier analysis that this one skipped are gone; files that are not the analysis's stay
    assert not {"accuracy_vs_slope.png", "training_curves.png", "grad_norm_per_layer.png"} & names


def test_a_failing_analysis_leaves_no_half_written_folder(store, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "surrogate_gallery_figure", broken)  # after the tables and the slope figures
    out = tmp_path / "out"
    kwargs = {"sweep_id": SWEEP, "tracking_uri": store, "out_dir": out, "log_summary": False, "formats": ["md", "png"]}
    with pytest.raises(RuntimeError, match="disk full"):
        run_analysis(EXPERIMENT, **kwargs)
    assert list(tmp_path.iterdir()) == []  # neither the output folder nor a staging folder
    out.mkdir()
    (out / "snn_vs_ann.md").write_text("earlier", encoding="utf-8")
    with pytest.raises(RuntimeError, match="disk full"):
        run_analysis(EXPERIMENT, **kwargs)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["snn_vs_ann.md"]  # the earlier analysis, untouched
    assert (out / "snn_vs_ann.md").read_text(encoding="utf-8") == "earlier"


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
    printed = capsys.readouterr().out
    assert "| Slope β | n | Verdict pass (runs) | SNN acc (%) [95% CI] |" in printed
    assert "verdicts of 4 run(s): " in printed
    table = pd.read_csv(out / "surrogate_slope.csv")
    assert list(table["surrogate.slope"]) == [1.0, 10.0]
    assert list(table["snn/test/acc_best_n"]) == [2, 2]
    assert table["snn/test/acc_best_pct_mean"].between(0.0, 100.0).all()
    for stem in ("accuracy_vs_slope", "training_curves", "grad_norm_per_layer", "surrogate_gallery"):
        assert (out / f"{stem}.png").stat().st_size > 0
