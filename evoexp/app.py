"""The Hydra job: compose -> build data, models and verifiers -> run -> results.json / report.md -> MLflow.

:func:`run_job` is the task function of ``python -m evoexp``. One job:

1. validates the composed config (:func:`evoexp.config.load_config`; a bad value fails before any run exists),
2. skips itself when ``tracking.resume`` finds a FINISHED run with the same config hash,
3. opens one MLflow run (params = flattened config, tags = sweep id, job, config hash, git commit, versions),
4. runs the enabled model checks on the initial network (gradient, surrogate, alignment, stability),
5. trains the SNN (per-epoch metrics logged in one batch per epoch, early stopping if configured) and gets its ANN
   twin, trained once per :func:`evoexp.config.ann_hash` and reused from the store,
6. writes ``results.json`` and ``report.md`` (and figures) into its Hydra output directory, logs the summary
   metrics and artifacts, and returns the best validation accuracy for sweepers.

A diverging SNN (NaN/Inf loss, :class:`evoexp.training.DivergenceError`) is a result, not a crash: the run ends
FINISHED with ``evoexp.outcome=diverged``. Any other exception ends the run FAILED; in a multirun the job then
returns NaN instead of raising, so one failure never stops the other jobs (the sweep summary reports it and the
command exits non-zero). Everything here is plain Python apart from reading Hydra's runtime in :func:`run_job`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

import evoexp
from evoexp.config import (
    Config,
    ConfigValidationError,
    ann_hash,
    config_hash,
    flatten,
    load_config,
    to_plain,
)
from evoexp.data import DatasetSplits, get_dataset, make_loader
from evoexp.models import SNN, ann_twin
from evoexp.progress import SweepPlan, axis_keys, run_name
from evoexp.summary import summarize_run, summarize_skipped
from evoexp.surrogate import SurrogateGradient, get_surrogate
from evoexp.sweep import JobOutcome, make_tracker, reuse_baseline, write_outcome
from evoexp.tracking import RunLogger, Tags, Tracker, git_commit
from evoexp.training import DivergenceError, EpochRecord, evaluate, fit
from evoexp.verification.benchmark import BenchmarkResult, ModelBenchmark, SeedRun
from evoexp.verification.results import Result, to_jsonable

if TYPE_CHECKING:
    from evoexp.verification.convergence import ConvergenceResult
    from evoexp.verification.suite import VerificationOptions

__all__ = [
    "MODEL_CHECKS",
    "JobContext",
    "Outcome",
    "build_optimizer",
    "build_snn",
    "execute",
    "run_experiment",
    "run_job",
    "verification_options",
]

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
OBJECTIVE = "snn/val/best_acc"
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class JobContext:
    """Where a job runs and how it is labelled.

    Attributes:
        output_dir: The job's output directory (results, report, figures, Hydra's ``.hydra``).
        root: Project root (launch directory): default MLflow store and lock files.
        job: Hydra job number (0 for a single run).
        overrides: The job's command-line overrides.
        sweep_id: Tag grouping a sweep's runs (None for a single run).
        multirun: Whether the job is part of a multirun (then failures are recorded, not raised).
        parent_run_id: The sweep's parent MLflow run (None for a single run).
        axes: The sweep's swept keys (they name the run and are mirrored as ``config/<key>`` metrics).
    """

    output_dir: Path
    root: Path
    job: int = 0
    overrides: tuple[str, ...] = ()
    sweep_id: str | None = None
    multirun: bool = False
    parent_run_id: str | None = None
    axes: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What :func:`run_experiment` produced.

    Attributes:
        results: Typed results by check name.
        metrics: Summary metrics (flat ``"a/b"`` keys).
        objective: Best SNN validation accuracy (NaN when training diverged).
        diverged: ``DivergenceError`` message when the SNN diverged, else None.
    """

    results: dict[str, Result] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    objective: float = float("nan")
    diverged: str | None = None


def run_job(cfg: DictConfig) -> float:
    """Hydra task function: run one job from the composed ``cfg`` and return its objective.

    Raises:
        ConfigValidationError: A config value is out of range (before any MLflow run is created).
        Exception: Whatever failed, in a single run. In a multirun, failures (invalid values included) are
            recorded in the job's outcome file and NaN is returned, so the other jobs go on.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    output_dir = Path(hydra_cfg.runtime.output_dir)
    job = int(hydra_cfg.job.num) if multirun else 0
    overrides = tuple(str(o) for o in hydra_cfg.overrides.task)
    try:
        config = load_config(cfg)
    except ConfigValidationError as exc:
        if not multirun:
            raise
        write_outcome(output_dir, JobOutcome("failed", job=job, overrides=list(overrides), error=str(exc)))
        log.error("job %d has an invalid config (recorded; the sweep goes on): %s", job, exc)
        return float("nan")
    plan = SweepPlan.load(Path(str(hydra_cfg.sweep.dir))) if multirun else None
    context = JobContext(
        output_dir=output_dir,
        root=Path(hydra_cfg.runtime.cwd),
        job=job,
        overrides=overrides,
        sweep_id=plan.sweep_id if plan is not None else config.tracking.sweep_id,
        multirun=multirun,
        parent_run_id=plan.parent_run_id if plan is not None else None,
        axes=tuple(plan.axes) if plan is not None else (),
    )
    return execute(cfg, config, context)


def _run_tags(config: Config, context: JobContext, digest: str, key: str) -> dict[str, str]:
    """Tags of a job's run."""
    tags = {
        Tags.JOB: str(context.job),
        Tags.CONFIG_HASH: digest,
        Tags.ANN_HASH: key,
        Tags.GIT_COMMIT: git_commit(context.root),
        Tags.VERSION: evoexp.__version__,
        Tags.TORCH_VERSION: torch.__version__,
        Tags.KIND: "job",
        Tags.OUTPUT_DIR: str(context.output_dir),
        "evoexp.overrides": " ".join(context.overrides),
    }
    if context.sweep_id:
        tags[Tags.SWEEP_ID] = context.sweep_id
    return tags


def execute(cfg: DictConfig, config: Config, context: JobContext) -> float:
    """Run one job with tracking, resume and failure isolation; return its objective.

    Args:
        cfg: The composed config (for params, hashes and the resolved-config artifact).
        config: Its validated, typed form.
        context: Where the job runs.

    Returns:
        The best SNN validation accuracy; NaN when it diverged or (in a multirun) failed.
    """
    torch.set_num_threads(config.threads)
    tracker = make_tracker(config.tracking, root=context.root)
    digest, key = config_hash(cfg), ann_hash(cfg)
    record = JobOutcome(
        "finished",
        job=context.job,
        overrides=list(context.overrides),
        config_hash=digest,
        output_dir=str(context.output_dir),
    )
    if config.tracking.resume:
        previous = tracker.find_finished(digest)
        if previous is not None:
            record.outcome = "skipped"
            summarize_skipped(record, previous)
            write_outcome(context.output_dir, record)
            log.info("skipped: config %s already has FINISHED run %s", digest, previous.run_id)
            return record.objective
    record.run_name = run_name(cfg, context.overrides, context.axes)
    try:
        with tracker.start_run(
            run_name=record.run_name,
            tags=_run_tags(config, context, digest, key),
            params=flatten(to_plain(cfg)),
            parent_run_id=context.parent_run_id,
            mirror=axis_keys(context.overrides, context.axes),
        ) as run:
            record.run_id = run.run_id
            outcome = run_experiment(config, run=run, tracker=tracker, ann_key=key, root=context.root)
            _write_outputs(cfg, config, context, outcome, digest)
            run.log_metrics(outcome.metrics)
            if outcome.diverged is not None:
                run.set_tags({Tags.OUTCOME: "diverged", Tags.ERROR: outcome.diverged})
            summarize_run(
                run,
                tracker,
                record,
                outcome.results,
                outcome.metrics,
                diverged=outcome.diverged,
                report=context.output_dir / REPORT_FILE,
            )
            if config.tracking.log_artifacts:
                _log_artifacts(run, context.output_dir)
    except Exception as exc:
        record.outcome, record.error = "failed", f"{type(exc).__name__}: {exc}"
        write_outcome(context.output_dir, record)
        if not context.multirun:
            raise
        log.exception("job %d failed (recorded; the sweep goes on)", context.job)
        return float("nan")
    record.objective = outcome.objective
    if outcome.diverged is not None:
        record.outcome, record.error = "diverged", outcome.diverged
    write_outcome(context.output_dir, record)
    return outcome.objective


def build_optimizer(config: Config, parameters: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    """The trainer's optimiser over ``parameters``."""
    trainer = config.trainer
    if trainer.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=trainer.lr, momentum=trainer.momentum, weight_decay=trainer.weight_decay)
    return torch.optim.Adam(parameters, lr=trainer.lr, weight_decay=trainer.weight_decay)


def _diverging_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy times NaN: the fault injected by ``debug.diverge=true``."""
    return F.cross_entropy(logits, targets) * float("nan")


def build_snn(config: Config, data: DatasetSplits, surrogate: SurrogateGradient) -> SNN:
    """The configured SNN for ``data`` (initialised from ``config.seed``)."""
    model = config.model
    return SNN(
        data.n_inputs,
        list(model.hidden_sizes),
        data.n_classes,
        surrogate=surrogate,
        tau_mem=model.tau_mem,
        tau_syn=model.tau_syn,
        alpha=0.0 if model.tau_syn is None else None,
        dt=model.dt,
        threshold=model.threshold,
        reset=model.reset,  # type: ignore[arg-type]
        detach_reset=model.detach_reset,
        recurrent=model.recurrent,
        readout=model.readout,  # type: ignore[arg-type]
        seed=config.seed,
    )


def _epoch_metrics(prefix: str, record: EpochRecord) -> dict[str, float]:
    """Per-epoch metrics of one :class:`EpochRecord` under ``prefix`` (``snn`` or ``ann``)."""
    metrics = {
        f"{prefix}/train/loss": record.train_loss,
        f"{prefix}/train/acc": record.train_acc,
        f"{prefix}/val/loss": record.val_loss,
        f"{prefix}/val/acc": record.val_acc,
        f"{prefix}/grad_norm": record.grad_norm,
        f"{prefix}/epoch_seconds": record.seconds,
    }
    metrics.update({f"{prefix}/grad_norm/{layer}": value for layer, value in record.grad_norms.items()})
    return metrics  # type: ignore[return-value]


def _seed_run(seed: int, history: Sequence[Mapping[str, Any]], *, diverged: bool, warmup: int) -> SeedRun:
    """A benchmark :class:`SeedRun` from per-epoch record dicts."""
    return SeedRun(
        seed=seed,
        train_loss=[float(r["train_loss"]) for r in history],
        train_acc=[float(r["train_acc"]) for r in history],
        eval_loss=[float(r["val_loss"]) for r in history],
        eval_acc=[float(r["val_acc"]) for r in history],
        epoch_seconds=[float(r["seconds"]) for r in history],
        warmup_epochs=warmup,
        diverged=diverged,
    )


def _count(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


MODEL_CHECKS = (
    "gradient_verification",
    "surrogate_verification",
    "gradient_alignment",
    "gradient_stability",
    "weight_stability",
)
"""Checks that examine the initial network through the suite; convergence and benchmark come from training."""


def verification_options(config: Config) -> VerificationOptions:
    """The suite options of the enabled model checks (:data:`MODEL_CHECKS`), from ``config.verifier``."""
    from evoexp.verification.suite import VerificationOptions

    verifier, stability = config.verifier, config.verifier.stability
    return VerificationOptions.only(
        *[check for check in MODEL_CHECKS if check in verifier.checks],
        gradient_samples=verifier.samples,
        gradient_kwargs={
            "mode": verifier.gradient.mode,
            "eps": verifier.gradient.eps,
            "atol": verifier.gradient.atol,
            "rtol": verifier.gradient.rtol,
            "n_directions": verifier.gradient.n_directions,
            "seed": config.seed,
        },
        surrogate_kwargs={
            "x_range": tuple(verifier.surrogate.x_range),
            "n_points": verifier.surrogate.n_points,
            "h": verifier.surrogate.h,
        },
        alignment_kwargs={
            "sigmas": list(verifier.alignment.sigmas),
            "n_directions": verifier.alignment.n_directions,
            "n_quadrature": verifier.alignment.n_quadrature,
            "per_layer": verifier.alignment.per_layer,
            "seed": config.seed,
        },
        gradient_stability_kwargs={
            "n_batches": stability.n_batches,
            "max_grad_norm": stability.max_grad_norm,
            "min_grad_norm": stability.min_grad_norm,
            "max_depth_conditioning": stability.max_depth_conditioning,
        },
        weight_stability_kwargs={
            "n_steps": stability.n_steps,
            "max_relative_update": stability.max_relative_update,
            "max_norm_growth": stability.max_norm_growth,
            "max_condition_number": stability.max_condition_number,
        },
    )


def _model_checks(config: Config, snn: SNN, data: DatasetSplits) -> dict[str, Result]:
    """Run the suite on the initial network with the enabled model checks; every other check is skipped there.

    Returns:
        The suite's ``{check: Result}`` for all its checks (disabled ones as ``SkippedResult``).
    """
    from evoexp.verification.gradient import GradientVerifier
    from evoexp.verification.suite import BackpropagationVerificationSuite

    suite = BackpropagationVerificationSuite(verifier=GradientVerifier(dtype=getattr(torch, config.verifier.dtype)))
    loader = make_loader(data.train, batch_size=config.trainer.batch_size, shuffle=True, seed=config.seed)
    return suite.run_full_verification(
        snn,
        loader,
        loss_fn=F.cross_entropy,
        optimizer_factory=lambda params: build_optimizer(config, list(params)),
        options=verification_options(config),
    )


def _train(
    model: nn.Module,
    config: Config,
    data: DatasetSplits,
    *,
    label: str,
    view: str,
    run: RunLogger,
    loss_fn: LossFn | None = None,
    rate_reg: float = 0.0,
) -> tuple[list[EpochRecord], DivergenceError | None]:
    """Train ``model`` with :func:`evoexp.training.fit`, logging each epoch's metrics as one batch.

    Returns:
        The epoch records and the divergence (None if training completed).
    """
    trainer, convergence = config.trainer, config.verifier.convergence
    loaders = {
        split: make_loader(
            getattr(data, split),
            batch_size=trainer.batch_size,
            shuffle=split == "train",
            seed=config.seed,
            view=view,  # type: ignore[arg-type]
        )
        for split in ("train", "val")
    }
    stopper = None
    if convergence.patience is not None:
        from evoexp.verification.convergence import EarlyStopping

        stopper = EarlyStopping(patience=convergence.patience, min_delta=convergence.min_delta)

    def on_epoch(record: EpochRecord) -> bool:
        run.log_metrics(_epoch_metrics(label, record), step=record.epoch)
        if stopper is None or record.val_loss is None:
            return False
        return stopper.step(record.epoch, record.val_loss)

    try:
        history = fit(
            model,
            loaders["train"],
            loaders["val"],
            epochs=trainer.epochs,
            optimizer=build_optimizer(config, [p for p in model.parameters() if p.requires_grad]),
            loss_fn=loss_fn,
            rate_reg=rate_reg,
            target_rate=trainer.target_rate,
            grad_clip=trainer.grad_clip,
            on_epoch=on_epoch,
            label=label,
        )
    except DivergenceError as err:
        return list(err.history), err
    return history, None


def _test_metrics(model: nn.Module, data: DatasetSplits, config: Config, *, prefix: str, view: str) -> dict[str, float]:
    """Loss and accuracy of ``model`` on the test split."""
    loader = make_loader(data.test, batch_size=config.trainer.batch_size, view=view)  # type: ignore[arg-type]
    stats = evaluate(model, loader)
    return {f"{prefix}/test/loss": stats.loss, f"{prefix}/test/acc": stats.acc}


def _train_ann(config: Config, data: DatasetSplits, snn: SNN) -> tuple[dict[str, Any], dict[str, float]]:
    """Train the ANN twin; return its JSON payload and summary metrics (independent of the surrogate)."""
    torch.manual_seed(config.seed)
    ann = ann_twin(snn, data.n_features, activation=config.model.ann_activation)
    history, diverged = _train(ann, config, data, label="ann", view="features", run=RunLogger())
    test = _test_metrics(ann, data, config, prefix="ann", view="features") if diverged is None else {}
    payload = {
        "n_params": _count(ann),
        "history": [record.to_dict() for record in history],
        "diverged": diverged is not None,
        "error": None if diverged is None else str(diverged),
        "test": test,
    }
    metrics = {**test, "ann/params": float(_count(ann)), "ann/epochs": float(len(history))}
    return payload, metrics


def _convergence(
    config: Config,
    records: Sequence[Mapping[str, Any]],
    diverged: DivergenceError | None,
    *,
    initial_loss: tuple[float, float],
) -> ConvergenceResult:
    """Convergence analysis of the SNN's training history (the diverging epoch enters as a non-finite loss)."""
    from evoexp.verification.convergence import analyze_loss_history

    keys = ("train_loss", "val_loss", "train_acc", "val_acc", "grad_norm", "seconds")
    curves = {key: [float(r[key]) for r in records] for key in keys}
    if diverged is not None:
        for key in keys:
            curves[key].append(diverged.loss if key == "train_loss" and not math.isfinite(diverged.loss) else math.nan)
    convergence = config.verifier.convergence
    return analyze_loss_history(
        curves["train_loss"],
        curves["val_loss"],
        initial_train_loss=initial_loss[0],
        initial_val_loss=initial_loss[1],
        train_acc=curves["train_acc"],
        val_acc=curves["val_acc"],
        grad_norm=curves["grad_norm"],
        epoch_seconds=curves["seconds"],
        max_epochs=config.trainer.epochs,
        patience=convergence.patience or config.trainer.epochs,
        min_delta=convergence.min_delta,
        min_relative_reduction=convergence.min_relative_reduction,
    )


def run_experiment(config: Config, *, run: RunLogger, tracker: Tracker, ann_key: str, root: Path) -> Outcome:
    """Build data and models, run the enabled checks and training, and collect results and metrics.

    Args:
        config: The validated config.
        run: Where per-epoch metrics go (a no-op logger when untracked).
        tracker: Store of ANN baselines.
        ann_key: Identity of the ANN twin (:func:`evoexp.config.ann_hash`).
        root: Project root (lock files).

    Returns:
        The :class:`Outcome`; a diverging SNN is reported in ``Outcome.diverged``, not raised.
    """
    debug, checks = config.debug, set(config.verifier.checks)
    torch.manual_seed(config.seed)
    data = get_dataset(config.dataset.name, **config.dataset.kwargs(seed=config.seed))
    run.log_dataset(data, source=config.dataset.kwargs(seed=config.seed))
    surrogate = get_surrogate(config.surrogate.name, **config.surrogate.kwargs())
    snn = build_snn(config, data, surrogate)
    if debug.sleep:
        time.sleep(debug.sleep)
    if debug.fail:
        raise RuntimeError("debug.fail=true: injected failure")
    outcome = Outcome(results=_model_checks(config, snn, data))
    metrics = outcome.metrics
    metrics["snn/params"] = float(_count(snn))

    initial_train = evaluate(snn, make_loader(data.train, batch_size=config.trainer.batch_size))
    initial_val = evaluate(snn, make_loader(data.val, batch_size=config.trainer.batch_size))
    history, diverged = _train(
        snn,
        config,
        data,
        label="snn",
        view="spikes",
        run=run,
        loss_fn=_diverging_loss if debug.diverge else None,
        rate_reg=config.trainer.rate_reg,
    )
    records = [record.to_dict() for record in history]
    val_acc = [r["val_acc"] for r in records if r["val_acc"] is not None]
    outcome.objective = max(val_acc) if val_acc and diverged is None else float("nan")
    metrics[OBJECTIVE] = outcome.objective
    if diverged is not None:
        outcome.diverged = str(diverged)
    else:
        metrics.update(_test_metrics(snn, data, config, prefix="snn", view="spikes"))
    warmup = 1 if config.trainer.epochs > 1 else 0
    snn_run = _seed_run(config.seed, records, diverged=diverged is not None, warmup=warmup)
    metrics["snn/time_per_epoch"] = snn_run.time_per_epoch

    if "convergence" in checks:
        result = _convergence(config, records, diverged, initial_loss=(initial_train.loss, initial_val.loss))
        outcome.results["convergence"] = result
        metrics["snn/epochs_to_converge"] = float("nan") if result.epochs_to_90 is None else result.epochs_to_90

    if "benchmark" in checks:
        payload, ann_run_id, reused = reuse_baseline(
            tracker,
            ann_key,
            lambda: _train_ann(config, data, snn),
            root=root,
            enabled=config.tracking.reuse_ann,
        )
        log.info("ANN twin %s (key %s)", "reused" if reused else "trained", ann_key)
        if ann_run_id is not None:
            run.set_tags({Tags.ANN_RUN: ann_run_id})
        ann_records = payload["history"]
        run.log_metric_steps({r["epoch"]: _epoch_metrics("ann", EpochRecord(**r)) for r in ann_records})
        ann_run = _seed_run(config.seed, ann_records, diverged=bool(payload["diverged"]), warmup=warmup)
        metrics.update(payload["test"])
        metrics.update({"ann/params": float(payload["n_params"]), "ann/time_per_epoch": ann_run.time_per_epoch})
        benchmark = BenchmarkResult(
            snn=ModelBenchmark("snn", _count(snn), [snn_run]),
            ann=ModelBenchmark("ann", int(payload["n_params"]), [ann_run]),
            seeds=[config.seed],
            epochs=config.trainer.epochs,
            warmup_epochs=warmup,
            optimizer=config.trainer.optimizer,
            lr=config.trainer.lr,
            eval_split="val",
            torch_threads=torch.get_num_threads(),
        )
        outcome.results["benchmark"] = benchmark
    for result in outcome.results.values():
        metrics.update(result.summary())
    return outcome


def _write_outputs(cfg: DictConfig, config: Config, context: JobContext, outcome: Outcome, digest: str) -> None:
    """Write ``results.json``, ``report.md``, the resolved config and (optionally) figures."""
    from evoexp.verification.report import generate_report

    out = context.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    payload = {
        "evoexp_version": evoexp.__version__,
        "outcome": "diverged" if outcome.diverged else "finished",
        "error": outcome.diverged,
        "config_hash": digest,
        "objective": outcome.objective,
        "config": to_plain(cfg),
        "metrics": outcome.metrics,
        "results": {name: result.to_dict() for name, result in outcome.results.items()},
    }
    (out / RESULTS_FILE).write_text(json.dumps(to_jsonable(payload), indent=2, allow_nan=False) + "\n")
    title = f"evoexp run: {config.surrogate.name} (slope {config.surrogate.slope:g}), seed {config.seed}"
    heading, body = generate_report(outcome.results, title=title).split("\n", 1)
    facts = [
        f"- dataset: {config.dataset.name}; model: {config.model.name} {list(config.model.hidden_sizes)}; "
        f"trainer: {config.trainer.optimizer}, lr {config.trainer.lr:g}, {config.trainer.epochs} epochs; "
        f"verifier: {config.verifier.name}",
        f"- outcome: {payload['outcome']}" + (f" ({outcome.diverged})" if outcome.diverged else ""),
        f"- best SNN validation accuracy: {outcome.objective:.4f}",
        f"- config hash: {digest}",
    ]
    (out / REPORT_FILE).write_text("\n".join([heading, "", *facts, body]), encoding="utf-8")
    if config.figures:
        _save_figures(out / "figures", config, outcome)


def _save_figures(directory: Path, config: Config, outcome: Outcome) -> None:
    """Save the surrogate shape and the SNN/ANN validation-accuracy curves as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    from evoexp import figures

    figures.apply_style()
    shape = get_surrogate(config.surrogate.name, **config.surrogate.kwargs())
    fig, ax = figures.new_figure()
    figures.plot_surrogate(ax, [shape])
    figures.save_figure(fig, directory / "surrogate", formats=("png",))
    benchmark = outcome.results.get("benchmark")
    if isinstance(benchmark, BenchmarkResult):
        fig, ax = figures.new_figure()
        for model in (benchmark.snn, benchmark.ann):
            acc = model.runs[0].eval_acc
            ax.plot(range(1, len(acc) + 1), acc, label=f"{model.name.upper()} val")
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Validation accuracy")
        ax.legend()
        figures.save_figure(fig, directory / "training_curves", formats=("png",))


def _log_artifacts(run: RunLogger, output_dir: Path) -> None:
    """Upload the job's output directory (results, report, resolved config, ``.hydra``, job log, figures)."""
    run.log_artifacts(output_dir)
