"""The Hydra job: composed config -> :func:`evoexp.job.run.run_experiment` -> outputs and one MLflow run.

:func:`run_job` is the task function of ``python -m evoexp``; :func:`execute` is one job's run lifecycle: skip it
when ``tracking.resume`` finds a FINISHED run of the same config and code (:func:`evoexp.job.sweep.resumable_run`), open
one MLflow run (params = flattened config; tags = sweep id, job, config hash, code identity, git commit), run the
experiment (the science is in :mod:`evoexp.job.run`; the ANN twin comes from :func:`evoexp.job.sweep.ann_baseline`),
write the outputs (:mod:`evoexp.job.outputs`), log the summary metrics and artifacts, and return the objective.

A diverging SNN is a result (FINISHED, ``evoexp.outcome=diverged``); any other exception ends the run FAILED, and in
a multirun the job then returns NaN so that the other jobs go on. With ``tracking.resume`` a job claims its config
first: when another live invocation trains the same config (and code) right now, it waits for that run and is then
skipped for it (docs/guides/reliability.md). Ctrl-C or SIGTERM ends the run KILLED and records the job as killed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import evoexp
from evoexp.identity import code_identity
from evoexp.job.abort import JobTerminated, signal_name
from evoexp.job.config import (
    Config,
    ConfigValidationError,
    ann_hash,
    config_hash,
    flatten,
    importable,
    load_config,
    to_plain,
)
from evoexp.job.config.targets import source_digests
from evoexp.job.crosscheck import run_crosscheck
from evoexp.job.outcome import JobOutcome, write_outcome
from evoexp.job.outputs import REPORT_FILE, write_outputs
from evoexp.job.prepare import model_facts, prepare
from evoexp.job.progress import SweepPlan, axis_keys, job_label, run_name
from evoexp.job.run import run_experiment
from evoexp.job.summary import summarize_run, summarize_skipped
from evoexp.job.sweep import ann_baseline, make_tracker, resumable_run
from evoexp.job.tracking import ConfigTaken, Tracker, git_commit
from evoexp.keys import CROSSCHECK_ARTIFACT_PATH, NIR_ARTIFACT_PATH, Tags

__all__ = ["JobContext", "execute", "run_job"]

log = logging.getLogger(__name__)


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
        invocation: The sweep invocation (:attr:`evoexp.job.progress.SweepPlan.invocation`; None for a single run),
            recorded on the job's runs and outcome.
    """

    output_dir: Path
    root: Path
    job: int = 0
    overrides: tuple[str, ...] = ()
    sweep_id: str | None = None
    multirun: bool = False
    parent_run_id: str | None = None
    axes: tuple[str, ...] = ()
    invocation: str | None = None


def run_job(cfg: DictConfig) -> float:
    """Hydra task function: run one job from the composed ``cfg`` and return its objective.

    Raises:
        Exception: Whatever failed, in a single run. In a multirun, failures (invalid values included) are
            recorded in the job's outcome file and NaN is returned, so the other jobs go on.
    """
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    output_dir, job = Path(hydra_cfg.runtime.output_dir), int(hydra_cfg.job.num) if multirun else 0
    overrides = tuple(str(o) for o in hydra_cfg.overrides.task)
    importable(hydra_cfg.runtime.cwd)  # the user's modules in the launch directory, also in launcher workers
    plan = SweepPlan.load(Path(str(hydra_cfg.sweep.dir))) if multirun else None
    try:
        config = load_config(cfg)
    except ConfigValidationError as exc:  # the sweep's and single run's checks already refuse these; Optuna's not
        invocation = plan.invocation if plan is not None else None
        record = JobOutcome("failed", job=job, overrides=list(overrides), error=str(exc), invocation=invocation)
        _record(output_dir, record)
        log.error("job %d has an invalid config (recorded; the sweep goes on): %s", job, exc)
        return float("nan")
    cfg.surrogate = config.surrogate  # the shape validation resolved (surrogate.peer): params, hashes, outputs show it
    context = JobContext(
        output_dir,
        Path(hydra_cfg.runtime.cwd),
        job,
        overrides,
        plan.sweep_id if plan is not None else config.tracking.sweep_id,
        multirun,
        parent_run_id=plan.parent_run_id if plan is not None else None,
        axes=tuple(plan.axes) if plan is not None else (),
        invocation=plan.invocation if plan is not None else None,
    )
    return execute(cfg, config, context)


def _run_tags(context: JobContext, digest: str, key: str, code: str, model: dict[str, object]) -> dict[str, str]:
    """Tags of a job's run (``model``: :func:`~evoexp.job.prepare.model_facts`)."""
    tags = {
        Tags.MODEL_TARGET: str(model["target"]),
        Tags.MODEL_LIBRARY: str(model["library"]),
        Tags.MODEL_LIBRARY_VERSION: str(model["library_version"]),
        Tags.MODEL_PARAMS: str(model["params"]),
        Tags.SURROGATE_INSTALLED: str(model["surrogate"]),
        Tags.JOB: str(context.job),
        Tags.CONFIG_HASH: digest,
        Tags.ANN_HASH: key,
        Tags.CODE_IDENTITY: code,
        Tags.GIT_COMMIT: git_commit(context.root),
        Tags.VERSION: evoexp.__version__,
        Tags.TORCH_VERSION: torch.__version__,
        Tags.KIND: "job",
        Tags.OUTPUT_DIR: str(context.output_dir),
        Tags.OVERRIDES: " ".join(context.overrides),
    }
    if context.sweep_id:
        tags[Tags.SWEEP_ID] = context.sweep_id
    return tags


def _record(directory: Path, record: JobOutcome) -> None:
    """Write the job's outcome record; a job that cannot (full disk, read-only) says so on the console and goes on.

    The sweep then counts the job as failed (``no outcome recorded``).
    """
    try:
        write_outcome(directory, record)
    except OSError as exc:
        log.error("job %d could not record its outcome (%s: %s): %s", record.job, record.outcome, record.error, exc)


def _claim(tracker: Tracker, config: Config, digest: str, code: str) -> dict[str, str] | None:
    """Tags that claim the job's config (None: no claim, ``tracking.resume`` is off and every job trains)."""
    if not config.tracking.resume:
        return None
    claim = {Tags.CONFIG_HASH: digest}
    return claim if config.tracking.reuse_across_code else {**claim, Tags.CODE_IDENTITY: code}


def execute(cfg: DictConfig, config: Config, context: JobContext) -> float:
    """Run one job with tracking, resume, claims and failure isolation; return its objective (NaN: diverged or failed).

    Raises:
        KeyboardInterrupt: Ctrl-C (the run ends KILLED and the job is recorded as ``killed``).
        JobTerminated: SIGTERM (likewise).
        Exception: In a single run, whatever failed (recorded as ``failed``).
    """
    torch.set_num_threads(config.threads)
    tracker = make_tracker(config.tracking, root=context.root, invocation=context.invocation)
    sources = source_digests(config.model, config.ann, config.dataset)  # the user's files: part of the identity
    identity = {**to_plain(cfg), "sources": sources} if sources else cfg
    digest, key, code = config_hash(identity), ann_hash(identity), code_identity()
    record = JobOutcome(
        "finished",
        job=context.job,
        overrides=list(context.overrides),
        config_hash=digest,
        output_dir=str(context.output_dir),
        label=job_label(cfg, context.overrides, context.axes),
        invocation=context.invocation,
    )
    record.run_name = run_name(cfg, context.overrides, context.axes)
    claim = _claim(tracker, config, digest, code)
    try:
        tracker.check()
        while True:
            previous = resumable_run(tracker, digest, across_code=config.tracking.reuse_across_code) if claim else None
            if previous is not None:
                record.outcome = "skipped"
                summarize_skipped(record, previous)
                _record(context.output_dir, record)
                log.info("skipped: config %s already has FINISHED run %s", digest, previous.run_id)
                return record.objective
            try:
                taken = tracker.taken(claim) if claim else None
                if taken is None:
                    return _train(cfg, config, context, tracker, record, claim=claim, digest=digest, key=key, code=code)
            except ConfigTaken as exc:
                taken = exc.run_id
            log.warning("config %s is being trained by run %s of another invocation; waiting for it", digest, taken)
            tracker.wait_for(taken)
    except (KeyboardInterrupt, JobTerminated) as exc:
        record.outcome, record.error = "killed", f"interrupted by {signal_name(exc)}"
        _record(context.output_dir, record)
        raise
    except Exception as exc:
        record.outcome, record.error = "failed", tracker.explain(exc)
        _record(context.output_dir, record)
        if not context.multirun:
            raise
        log.exception("job %d failed (recorded; the sweep goes on)", context.job)
        return math.nan


def _train(
    cfg: DictConfig,
    config: Config,
    context: JobContext,
    tracker: Tracker,
    record: JobOutcome,
    *,
    claim: dict[str, str] | None,
    digest: str,
    key: str,
    code: str,
) -> float:
    """Open the job's run (claiming its config), run the experiment, write and log its files; return the objective.

    Raises:
        ConfigTaken: Another invocation claimed the config first (nothing was trained).
    """
    prepared = prepare(config)  # data, network, surrogate or ANN that fail their checks fail before a run exists
    with tracker.start_run(
        run_name=str(record.run_name),
        tags=_run_tags(context, digest, key, code, model_facts(config, prepared)),
        params=flatten(to_plain(cfg)),
        parent_run_id=context.parent_run_id,
        mirror=axis_keys(context.overrides, context.axes),
        claim=claim,
    ) as run:
        record.run_id = run.run_id
        run.log_dataset(prepared.data, source=config.dataset.source())
        nir_path = config.model.args.get("path") if config.model.path == "evoexp.nir.nir_network" else None
        if nir_path is not None:
            run.log_artifact(Path(nir_path), artifact_path=NIR_ARTIFACT_PATH)
        if config.crosscheck.enabled:
            outcome = run_crosscheck(config, data=prepared.data, output_dir=context.output_dir)
            run.log_artifacts(context.output_dir / CROSSCHECK_ARTIFACT_PATH, artifact_path=CROSSCHECK_ARTIFACT_PATH)
        else:
            baseline = ann_baseline(
                tracker, key, config.tracking, run, root=context.root, parent_run_id=context.parent_run_id
            )
            outcome = run_experiment(config, prepared=prepared, run=run, ann_baseline=baseline)
        files = write_outputs(context.output_dir, cfg, config, outcome, config_hash=digest, code_identity=code)
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
            run.log_files([*files, *_job_files(context.output_dir)], base=context.output_dir)
    record.objective = outcome.objective
    if outcome.diverged is not None:
        record.outcome, record.error = "diverged", outcome.diverged
    _record(context.output_dir, record)
    return outcome.objective


def _job_files(output_dir: Path) -> list[Path]:
    """The files besides its outputs that the job wrote into ``output_dir``: ``.hydra/*.yaml`` and its log file(s).

    Only these are uploaded with the outputs: with ``hydra.run.dir=.`` the output directory is the launch directory
    (the store, secrets, everything else), which must never become artifacts.
    """
    hydra_files = [output_dir / ".hydra" / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")]
    logs = [
        output_dir / Path(handler.baseFilename).name
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == output_dir.resolve()
    ]
    return [path for path in [*hydra_files, *logs] if path.is_file()]
