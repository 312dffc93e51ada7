"""One evoexp experiment from a validated config: build, check the initial network, train, analyse.

:func:`run_experiment` is what one Hydra job computes, as plain Python (no Hydra, no MLflow), so a notebook gets
the app's numbers from the app's code::

    outcome = run_experiment(load_config(cfg))
    outcome.metrics["snn/test/acc_best"]

It builds and checks everything with :func:`evoexp.job.prepare.prepare` (any network a config names: evoexp's own, or
a snnTorch, SpikingJelly, Norse or plain torch network, with the configured surrogate installed), runs the enabled
model checks on the initial network through
:class:`~evoexp.verification.suite.BackpropagationVerificationSuite` (the verifiers' adapter registry runs foreign
neurons in smooth mode), trains it once with :func:`evoexp.training.train_model` (the pipeline behind
:meth:`~evoexp.verification.convergence.ConvergenceAnalyzer.analyze_convergence` and
:meth:`~evoexp.verification.benchmark.ComparativeBenchmark.benchmark_training`), analyses its convergence with
:func:`~evoexp.verification.convergence.analyze_training` and compares it with the configured ANN (``ann``: evoexp's
twin for its own presets, the user's ``ann._target_``), trained the same way (or reused through ``ann_baseline``),
with :func:`~evoexp.verification.benchmark.compare_training`. Without an ANN the benchmark is "not configured": a
skipped result with that reason, and no ``ann/*`` metrics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evoexp.data import DatasetSplits
from evoexp.data.dataset import View
from evoexp.job.build import (
    build_ann,
    build_loader,
    build_optimizer,
    build_sign_probe,
    training_options,
    verification_options,
    warmup_epochs,
)
from evoexp.job.config import Config
from evoexp.job.config.settings import settings_arguments
from evoexp.job.prepare import Prepared, model_facts, prepare
from evoexp.job.run_logger import NullRun, RunLogger
from evoexp.keys import ANN_TIME_PER_EPOCH, OBJECTIVE, SNN_EPOCHS_TO_CONVERGE, SNN_TIME_PER_EPOCH
from evoexp.results import Result, SkippedResult, to_jsonable
from evoexp.training import TrainingRun, train_model
from evoexp.verification.benchmark import SeedRun, compare_training
from evoexp.verification.convergence import analyze_training
from evoexp.verification.gradient import GradientVerifier
from evoexp.verification.suite import BackpropagationVerificationSuite

__all__ = ["ANN_NOT_CONFIGURED", "TEST_SELECTION", "AnnBaseline", "Outcome", "run_experiment", "run_model_checks"]

"""The metric a job returns to Hydra's sweepers: the SNN's best validation accuracy."""

TEST_SELECTION = (
    "best: the weights of the best-validation epoch (highest validation accuracy, ties to the lower validation "
    "loss) restored before testing; last: the weights after the final epoch"
)
"""What ``*/test/*_best`` and ``*/test/*_last`` mean (written into ``results.json`` and the report)."""

ANN_NOT_CONFIGURED = (
    "not configured: no ANN to compare with (ann._target_ is null; evoexp's own network presets choose their ANN "
    "twin, any other network names its ANN with ann._target_=...)"
)
"""The reason of the skipped benchmark when no ANN is configured (the report's line)."""

AnnBaseline = Callable[[Callable[[], TrainingRun]], tuple[TrainingRun, str | None]]
"""Provides the ANN twin's run: called with a function that trains it, returns ``(run, stored_run_id)`` (the app
reuses a stored baseline of the same key instead of training)."""


@dataclass
class Outcome:
    """What :func:`run_experiment` produced.

    Attributes:
        results: Typed verification results by check name.
        training: The training runs by model (``snn``; ``ann`` when the benchmark ran).
        metrics: Summary metrics (flat ``"a/b"`` keys).
        objective: Best SNN validation accuracy (NaN when training diverged).
        diverged: The SNN's divergence message, else None.
        ann_run_id: Stored run of the ANN twin (None: trained here and not stored, or no benchmark).
        model: What ran: the network's target, library, parameters, installed surrogate and feeding
            (:func:`~evoexp.job.prepare.model_facts`).
    """

    results: dict[str, Result] = field(default_factory=dict)
    training: dict[str, TrainingRun] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    objective: float = float("nan")
    diverged: str | None = None
    ann_run_id: str | None = None
    model: dict[str, Any] = field(default_factory=dict)

    def test_section(self) -> dict[str, Any]:
        """Per model: the best-validation epoch and the test loss/accuracy there and after the last epoch."""
        section: dict[str, Any] = {"selection": TEST_SELECTION}
        for name, run in self.training.items():
            if run.test_last is not None:
                best = run.test_best
                section[name] = {
                    "best_epoch": run.best_epoch,
                    "best": None if best is None else {"acc": best.acc, "loss": best.loss},
                    "last": {"acc": run.test_last.acc, "loss": run.test_last.loss},
                }
        return section

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: outcome, objective, metrics, test section, results and training runs."""
        return to_jsonable(
            {
                "outcome": "diverged" if self.diverged else "finished",
                "error": self.diverged,
                "objective": self.objective,
                "metrics": self.metrics,
                "test": self.test_section(),
                "results": {name: result.to_dict() for name, result in self.results.items()},
                "training": {name: run.to_dict() for name, run in self.training.items()},
                "ann_run_id": self.ann_run_id,
                "model": self.model,
            }
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        """Strict JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _diverging_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy times NaN: the fault injected by ``debug.diverge=true``."""
    return F.cross_entropy(logits, targets) * float("nan")


def _prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}/{key}": value for key, value in metrics.items()}


def run_model_checks(config: Config, snn: torch.nn.Module, data: DatasetSplits) -> dict[str, Result]:
    """The suite on the initial network with the enabled model checks (``MODEL_CHECKS``); the others are skipped."""
    suite = BackpropagationVerificationSuite(verifier=GradientVerifier(dtype=getattr(torch, config.verifier.dtype)))
    return suite.run_full_verification(
        snn,
        build_loader(config, data, "train", view="spikes"),
        loss_fn=F.cross_entropy,
        optimizer_factory=lambda params: build_optimizer(config, params),
        options=verification_options(config),
    )


def _train(
    config: Config, model: torch.nn.Module, data: DatasetSplits, *, label: str, run: RunLogger, **extra: Any
) -> TrainingRun:
    """Train ``model`` with :func:`~evoexp.training.train_model` on the config's loaders, logging every epoch."""
    view: View = "spikes" if label == "snn" else "features"
    train = build_loader(config, data, "train", view=view)
    val = build_loader(config, data, "val", view=view)
    test = build_loader(config, data, "test", view=view)
    return train_model(
        model,
        train,
        val,
        test,
        optimizer=build_optimizer(config, [p for p in model.parameters() if p.requires_grad]),
        on_epoch=lambda epoch, metrics: run.log_metrics(_prefixed(label, metrics), step=epoch),
        label=label,
        **training_options(config, snn=label == "snn"),
        **extra,
    )


def run_experiment(
    config: Config,
    *,
    data: DatasetSplits | None = None,
    prepared: Prepared | None = None,
    run: RunLogger | None = None,
    ann_baseline: AnnBaseline | None = None,
) -> Outcome:
    """Build data and models, run the enabled checks and training, and collect results and metrics.

    Args:
        config: The validated config.
        data: The config's dataset, when the caller built it already; default
            :func:`~evoexp.job.prepare.dataset_for`.
        prepared: The checked data and network (:func:`~evoexp.job.prepare.prepare`), when the caller prepared them
            already (e.g. to tag the MLflow run with the network's facts); ``data`` is then ignored.
        run: Where per-epoch metrics go (default: nowhere).
        ann_baseline: Provides the ANN's run (default: train it here).

    Returns:
        The :class:`Outcome`; a diverging SNN is reported in ``Outcome.diverged``, not raised.

    Raises:
        ConfigValidationError: The data, network, installed surrogate or ANN fail their checks (one line).
        RuntimeError: ``debug.fail=true`` (fault injection).
    """
    run = NullRun() if run is None else run
    debug, checks = config.debug, set(config.verifier.checks)
    prepared = prepare(config, data=data) if prepared is None else prepared
    data, snn = prepared.data, prepared.built.model
    torch.manual_seed(config.seed)  # the checks start from the same RNG state whoever prepared the network
    if debug.sleep:
        time.sleep(debug.sleep)
    if debug.fail:
        raise RuntimeError("debug.fail=true: injected failure")
    outcome = Outcome(results=run_model_checks(config, snn, data), model=model_facts(config, prepared))
    snn_run = _train_snn(config, snn, data, run, outcome)
    if "convergence" in checks:
        _convergence(config, snn_run, outcome)
    if "benchmark" in checks:
        _benchmark(config, data, snn_run, run, ann_baseline, outcome)
    for checked in outcome.results.values():
        outcome.metrics.update(checked.summary())
    return outcome


def _train_snn(config: Config, snn: nn.Module, data: DatasetSplits, run: RunLogger, outcome: Outcome) -> TrainingRun:
    """Train the SNN (with the sign-disagreement probe when configured); record its run, objective and metrics."""
    probe = build_sign_probe(config, data)
    snn_run = _train(
        config,
        snn,
        data,
        label="snn",
        run=run,
        loss_fn=_diverging_loss if config.debug.diverge else None,
        probes=[] if probe is None else [probe],
    )
    outcome.training["snn"] = snn_run
    if probe is not None:
        outcome.results["sign_disagreement_training"] = probe.trace()
    outcome.objective, outcome.diverged = snn_run.best_val_acc, snn_run.diverged
    snn_seed = SeedRun.from_training(snn_run, seed=config.seed, warmup_epochs=warmup_epochs(config))
    outcome.metrics.update(
        {**snn_run.summary(), OBJECTIVE: outcome.objective, SNN_TIME_PER_EPOCH: snn_seed.time_per_epoch}
    )
    return snn_run


def _convergence(config: Config, snn_run: TrainingRun, outcome: Outcome) -> None:
    """The convergence check of the SNN's training, and its epochs to 90 % of the loss reduction."""
    convergence = settings_arguments("verifier.convergence", config.verifier.convergence, analyze_training)
    result = analyze_training(snn_run, **convergence)
    outcome.results["convergence"] = result
    outcome.metrics[SNN_EPOCHS_TO_CONVERGE] = float("nan") if result.epochs_to_90 is None else result.epochs_to_90


def _benchmark(
    config: Config,
    data: DatasetSplits,
    snn_run: TrainingRun,
    run: RunLogger,
    ann_baseline: AnnBaseline | None,
    outcome: Outcome,
) -> None:
    """Train (or reuse) the configured ANN and compare it with the SNN; "not configured" without an ANN."""
    if not config.ann.configured:
        outcome.results["benchmark"] = SkippedResult("benchmark", ANN_NOT_CONFIGURED)
        return

    def train_ann() -> TrainingRun:
        ann = build_ann(config, data)
        assert ann is not None  # configured: checked above
        return _train(config, ann, data, label="ann", run=NullRun())

    warmup = warmup_epochs(config)
    ann_run, outcome.ann_run_id = (train_ann(), None) if ann_baseline is None else ann_baseline(train_ann)
    outcome.training["ann"] = ann_run
    run.log_metric_steps({epoch: _prefixed("ann", m) for epoch, m in ann_run.epoch_metrics().items()})
    ann_seed = SeedRun.from_training(ann_run, seed=config.seed, warmup_epochs=warmup)
    outcome.metrics.update({**ann_run.summary(), ANN_TIME_PER_EPOCH: ann_seed.time_per_epoch})
    outcome.results["benchmark"] = compare_training(
        [snn_run],
        [ann_run],
        seeds=[config.seed],
        epochs=config.trainer.epochs,
        warmup_epochs=warmup,
        optimizer=config.trainer.optimizer,
        lr=config.trainer.lr,
        eval_split="val",
    )
