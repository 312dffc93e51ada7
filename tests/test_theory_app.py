"""The Gygax & Zenke checks from the app: escape-noise model config, verifier=theory, MLflow metrics and the report."""

from __future__ import annotations

import json
from pathlib import Path

from test_app import client, evoexp, job_dirs, runs, undeclared_keys  # the app helpers (tests/ is on sys.path)

from evoexp import keys


def test_theory_checks_run_from_the_app_and_log_to_mlflow(tmp_path: Path) -> None:
    done = evoexp(
        tmp_path,
        "experiment=smoke",
        "verifier=theory",
        "model.escape_noise=5",
        "verifier.sign.every=1",
        "verifier.sign.n_directions=8",
        "verifier.circulation.n_points=16",
        "verifier.circulation.max_points=64",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (job,) = job_dirs(tmp_path)
    results = json.loads((job / "results.json").read_text())["results"]
    assert results["escape_noise"]["passed"] is True
    assert results["circulation"]["control"]["mode"] == "smooth"
    assert results["sign_disagreement"]["n_directions"] == 8
    assert results["sign_disagreement_training"]["epochs"] == [0, 1, 2]
    report = (job / "report.md").read_text()
    for title in ("Circulation of the surrogate gradient", "Sign disagreement during training", "Escape noise"):
        assert title in report

    (run,) = runs(tmp_path)
    assert undeclared_keys(run) == []
    metrics = run.data.metrics
    assert metrics[keys.ESCAPE_PASSED] == 1.0 and keys.CIRCULATION in metrics and keys.SIGN_DISAGREEMENT in metrics
    assert run.data.params["model.escape_noise"] == "5"
    history = client(tmp_path).get_metric_history(run.info.run_id, keys.SNN_SIGN_DISAGREEMENT)
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == results["sign_disagreement_training"][
        "disagreement"
    ]
