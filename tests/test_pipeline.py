"""One training pipeline: the Hydra app and the Python API give identical numbers for the same config and seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch.nn.functional as F
from omegaconf import DictConfig

from evoexp.job.build import (
    build_ann,
    build_dataset,
    build_loader,
    build_model,
    build_optimizer,
    verification_options,
    warmup_epochs,
)
from evoexp.job.config import load_config
from evoexp.job.run import run_experiment
from evoexp.results import to_jsonable
from evoexp.verification.benchmark import ComparativeBenchmark
from evoexp.verification.convergence import ConvergenceAnalyzer
from evoexp.verification.suite import BackpropagationVerificationSuite

REPO = Path(__file__).resolve().parents[1]
# Early stopping, clipping and the rate regulariser on, so that every training option takes both routes.
OVERRIDES = [
    "experiment=smoke",
    "trainer.epochs=4",
    "verifier.convergence.patience=2",
    "trainer.grad_clip=1.0",
    "trainer.rate_reg=0.01",
    "tracking=off",
]


def _timeless(value: Any) -> Any:
    """``value`` without wall-clock numbers (keys naming seconds or time), which no two runs share."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if "seconds" not in k and "time" not in k}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


@pytest.fixture
def config(compose_config: Callable[..., DictConfig]) -> Any:
    return load_config(compose_config(*OVERRIDES))


def _app_results(root: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "evoexp", *OVERRIDES], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = root.glob("outputs/**/results.json")
    return json.loads(results.read_text())


def test_app_and_python_api_give_identical_metrics(tmp_path: Path, config: Any) -> None:
    app = _app_results(tmp_path)
    data = build_dataset(config)
    snn = build_model(config, data).model
    trainer, convergence = config.trainer, config.verifier.convergence

    def loaders() -> list[Any]:  # fresh loaders per route: a shuffled loader's order depends on its past epochs
        return [build_loader(config, data, split, view="spikes") for split in ("train", "val", "test")]

    # The suite on the initial network, with the app's options.
    checks = BackpropagationVerificationSuite().run_full_verification(
        snn,
        loaders()[0],
        loss_fn=F.cross_entropy,
        optimizer_factory=lambda p: build_optimizer(config, p),
        options=verification_options(config),
    )
    for name in ("gradient_verification", "surrogate_verification", "gradient_stability"):
        assert _timeless(to_jsonable(checks[name].to_dict())) == _timeless(app["results"][name]), name

    # ConvergenceAnalyzer.analyze_convergence with the app's training settings.
    analyzer = ConvergenceAnalyzer()
    train, val, test = loaders()
    result = analyzer.analyze_convergence(
        snn,
        train,
        val,
        optimizer_factory=lambda p: build_optimizer(config, p),
        max_epochs=trainer.epochs,
        patience=convergence.patience,
        min_delta=convergence.min_delta,
        min_relative_reduction=convergence.min_relative_reduction,
        grad_clip=trainer.grad_clip,
        rate_reg=trainer.rate_reg,
        target_rate=trainer.target_rate,
        test_loader=test,
    )
    assert _timeless(result.to_dict()) == _timeless(app["results"]["convergence"])
    assert result.stopped_early or result.epochs_run == trainer.epochs
    assert analyzer.run is not None and analyzer.run.test_best is not None and analyzer.run.test_last is not None
    assert analyzer.run.best_epoch == app["metrics"]["snn/best_epoch"]
    assert analyzer.run.test_best.acc == app["metrics"]["snn/test/acc_best"]
    assert analyzer.run.test_last.loss == app["metrics"]["snn/test/loss_last"]

    # ComparativeBenchmark.benchmark_training with the same models, data, optimiser and settings.
    bench = ComparativeBenchmark().benchmark_training(
        lambda seed: build_model(config, data).model,
        lambda seed: build_ann(config, data, seed),
        data,
        epochs=trainer.epochs,
        seeds=[config.seed],
        optimizer=lambda p: build_optimizer(config, p),
        batch_size=trainer.batch_size,
        warmup_epochs=warmup_epochs(config),
        grad_clip=trainer.grad_clip,
        patience=convergence.patience,
        min_delta=convergence.min_delta,
        rate_reg=trainer.rate_reg,
        target_rate=trainer.target_rate,
    )
    expected = _timeless(app["results"]["benchmark"])
    got = _timeless(bench.to_dict())
    assert got["snn"] == expected["snn"] and got["ann"] == expected["ann"]
    for key in ("param_ratio", "loss_ratio", "acc_gap", "epochs", "warmup_epochs", "seeds"):
        assert got[key] == expected[key], key
    for model in ("snn", "ann"):
        run = (bench.snn if model == "snn" else bench.ann).runs[0]
        assert run.test_acc_best == app["metrics"][f"{model}/test/acc_best"]
        assert run.test_acc_last == app["metrics"][f"{model}/test/acc_last"]

    # And run_experiment, the library function behind the app, in this process (with or without a built dataset).
    for outcome in (run_experiment(config), run_experiment(config, data=build_dataset(config))):
        assert _timeless(to_jsonable(outcome.metrics)) == _timeless(app["metrics"])


def test_figures_do_not_import_the_analysis() -> None:
    code = "import sys, evoexp.figures; assert 'evoexp.analysis' not in sys.modules, sorted(sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
