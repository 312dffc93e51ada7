"""Per-job overhead of a sweep: config composition + MLflow logging, against the job's compute.

Measured in one process (as in a joblib worker, where imports are paid once per worker):

* composition: Hydra ``compose`` of the sweep preset with a job's overrides + schema validation (``load_config``);
* MLflow: a job's complete tracking traffic against a SQLite store -- resume lookup, run creation with the
  flattened config as params, one metric batch per epoch (SNN), the ANN curves in one batch, summary metrics,
  closing tags, artifacts (results.json, report.md, resolved config, .hydra files) and the final status;
* compute: :func:`evoexp.job.run.run_experiment` of the same job with tracking off.

The overhead is reported in milliseconds, as a percentage of a 10 s job (the issue's target is <= 5 %) and of
the measured job. Usage::

    .venv/bin/python benchmarks/bench_sweep.py [--quick] [--repeats 5] [--epochs 10] [--preset surrogate_sweep]

(``--quick``: one repetition of a 2-epoch job, seconds; its percentages are not the measurement.)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from evoexp.job.config import Config, ann_hash, config_hash, flatten, load_config, register_configs, to_plain
from evoexp.job.run import Outcome, run_experiment
from evoexp.job.run_logger import RunLogger
from evoexp.job.tracking import MlflowTracker
from evoexp.keys import Tags

CONF = Path(__file__).resolve().parents[1] / "evoexp" / "conf"
TARGET_JOB_SECONDS = 10.0


def timed(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    """Median wall time of ``fn()`` over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def compose_job(preset: str, overrides: list[str]) -> tuple[DictConfig, Config]:
    """Compose and validate one job's config."""
    cfg = compose(config_name="config", overrides=[f"experiment={preset}", *overrides])
    return cfg, load_config(cfg)


def log_like_a_job(
    tracker: MlflowTracker, cfg: DictConfig, outcome: Outcome, epoch_metrics: list[dict[str, float]], out: Path
) -> None:
    """Send the tracking traffic of one job (everything but the compute)."""
    digest = config_hash(cfg)
    tracker.find_finished(digest)
    tags = {Tags.CONFIG_HASH: digest, Tags.ANN_HASH: ann_hash(cfg), Tags.JOB: "0", Tags.SWEEP_ID: "bench"}
    with tracker.start_run(run_name="bench", tags=tags, params=flatten(to_plain(cfg))) as run:
        for step, metrics in enumerate(epoch_metrics, start=1):
            run.log_metrics(metrics, step=step)
        run.log_metric_steps({step: metrics for step, metrics in enumerate(epoch_metrics, start=1)})
        run.log_metrics(outcome.metrics)
        run.log_artifacts(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions of each part (default 5)")
    parser.add_argument("--preset", default="surrogate_sweep")
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.epochs of the preset")
    parser.add_argument("--quick", action="store_true", help="smoke run (seconds): 1 repetition, 2 epochs")
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 5)
    if args.quick and args.epochs is None:
        args.epochs = 2
    torch.set_num_threads(1)
    register_configs()
    overrides = ["surrogate=atan", "surrogate.slope=5", "tracking.reuse_ann=false"]
    if args.epochs is not None:
        overrides.append(f"trainer.epochs={args.epochs}")

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        compose_job(args.preset, overrides)  # warm-up
        t_compose, (cfg, config) = timed(lambda: compose_job(args.preset, overrides), args.repeats)  # type: ignore[misc]

    run_experiment(config, run=RunLogger())  # warm-up
    t_compute, outcome = timed(lambda: run_experiment(config, run=RunLogger()), args.repeats)
    assert isinstance(outcome, Outcome)
    epochs = config.trainer.epochs
    epoch_metrics = [
        {
            k: 0.5
            for k in (
                "snn/train/loss",
                "snn/train/acc",
                "snn/val/loss",
                "snn/val/acc",
                "snn/grad_norm",
                "snn/epoch_seconds",
                "snn/grad_norm/hidden.0",
                "snn/grad_norm/readout",
            )
        }
        for _ in range(epochs)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "job"
        (out / ".hydra").mkdir(parents=True)
        for name in ("results.json", "report.md", "config_resolved.yaml"):
            (out / name).write_text("x" * 20_000)
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            (out / ".hydra" / name).write_text(OmegaConf.to_yaml(cfg))
        tracker = MlflowTracker(f"sqlite:///{root / 'mlruns.db'}", "bench", root=root)
        tracker.prepare()
        log_like_a_job(tracker, cfg, outcome, epoch_metrics, out)  # warm-up (first-use costs of the store)
        t_mlflow, _ = timed(lambda: log_like_a_job(tracker, cfg, outcome, epoch_metrics, out), args.repeats)

    overhead = t_compose + t_mlflow
    print(
        f"preset {args.preset}: {epochs} epochs, {len(outcome.metrics)} summary metrics, "
        f"{len(flatten(to_plain(cfg)))} params; torch threads {torch.get_num_threads()}; median of {args.repeats}"
    )
    print(f"composition + validation : {1e3 * t_compose:8.1f} ms")
    print(f"MLflow logging (SQLite)  : {1e3 * t_mlflow:8.1f} ms")
    print(f"job compute              : {1e3 * t_compute:8.1f} ms")
    print(
        f"overhead per job         : {1e3 * overhead:8.1f} ms = {100 * overhead / TARGET_JOB_SECONDS:.2f} % of a "
        f"{TARGET_JOB_SECONDS:g} s job (target <= 5 %), {100 * overhead / t_compute:.1f} % of this job"
    )


if __name__ == "__main__":
    main()
