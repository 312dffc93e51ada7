"""Per-job cost of the default sweep's checks: the finite-difference gradient check against the whole job.

The default sweep (``experiment=surrogate_sweep``, ``verifier=sweep``) runs the model checks on each job's initial
network before training. This script composes jobs of that preset (one per surrogate shape at a few slopes), then,
interleaved per job, times

* the finite-difference gradient check alone (``gradient_verification``, fast mode: the preset's ``samples`` inputs,
  ``verifier.gradient.n_directions`` random directions per parameter tensor, in float64);
* the whole job with tracking off (:func:`evoexp.job.run.run_experiment`: the model checks, SNN training, ANN twin).

It prints the check's median seconds, the job's, and the check's share of the job. Usage::

    .venv/bin/python benchmarks/bench_sweep_checks.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from evoexp.job.build import build_dataset, build_loader, build_model, build_optimizer, verification_options
from evoexp.job.config import Config, load_config, register_configs
from evoexp.job.run import run_experiment
from evoexp.job.run_logger import NullRun
from evoexp.verification.gradient import GradientVerifier
from evoexp.verification.suite import BackpropagationVerificationSuite, VerificationOptions

CONF = Path(__file__).resolve().parents[1] / "evoexp" / "conf"
PRESET = "surrogate_sweep"
CHECK = "gradient_verification"


def job_config(overrides: list[str]) -> Config:
    """The validated config of one job of the preset."""
    return load_config(compose(config_name="config", overrides=[f"experiment={PRESET}", *overrides]))


def check_seconds(config: Config) -> tuple[float, bool | None]:
    """Wall time of the finite-difference check on the job's initial network, and its verdict."""
    torch.manual_seed(config.seed)
    data = build_dataset(config)
    snn = build_model(config, data).model
    options = verification_options(config)
    only = VerificationOptions.only(
        CHECK,
        gradient_samples=options.gradient_samples,
        gradient_kwargs=options.gradient_kwargs,
    )
    suite = BackpropagationVerificationSuite(verifier=GradientVerifier(dtype=getattr(torch, config.verifier.dtype)))
    start = time.perf_counter()
    results = suite.run_full_verification(
        snn,
        build_loader(config, data, "train", view="spikes"),
        loss_fn=F.cross_entropy,
        optimizer_factory=lambda params: build_optimizer(config, params),
        options=only,
    )
    return time.perf_counter() - start, results[CHECK].passed


def job_seconds(config: Config) -> float:
    """Wall time of the whole job, tracking off."""
    start = time.perf_counter()
    run_experiment(config, run=NullRun())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two jobs of 3 epochs, one repeat (seconds)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    register_configs()
    if args.quick:
        jobs = [["surrogate=fast_sigmoid", "surrogate.slope=25"], ["surrogate=triangular", "surrogate.slope=1"]]
        extra, repeats = ["trainer.epochs=3"], 1
    else:
        shapes = ("fast_sigmoid", "superspike", "sigmoid", "atan", "triangular")
        jobs = [[f"surrogate={shape}", f"surrogate.slope={slope}"] for shape in shapes for slope in (1, 25)]
        extra, repeats = [], args.repeats
    common = [f"verifier.checks=[{CHECK}]", "tracking.reuse_ann=false", *extra]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        configs = [(job, job_config([*job, *common])) for job in jobs]
        sweep_configs = [job_config([*job, *extra]) for job in jobs]  # the preset's own checks, for the job time
    check_seconds(configs[0][1])  # warm-up
    check_times, job_times, verdicts = [], [], []
    for (job, config), sweep_config in zip(configs, sweep_configs):
        checks, runs = [], []
        for _ in range(repeats):  # interleaved: the check, then the job, on the same load
            seconds, passed = check_seconds(config)
            checks.append(seconds)
            runs.append(job_seconds(sweep_config))
        check_times.append(statistics.median(checks))
        job_times.append(statistics.median(runs))
        verdicts.append(passed)
        print(
            f"{' '.join(job):40s} check {check_times[-1]:6.3f} s  job {job_times[-1]:6.2f} s  "
            f"share {100 * check_times[-1] / job_times[-1]:5.1f} %  verdict {'PASS' if passed else 'FAIL'}"
        )
    gradient = sweep_configs[0].verifier.gradient
    print(
        f"preset {PRESET}: {sweep_configs[0].trainer.epochs} epochs, {sweep_configs[0].verifier.samples} samples, "
        f"fast mode with {gradient.n_directions} directions per tensor; torch threads {torch.get_num_threads()}; "
        f"median of {repeats} per job"
    )
    print(
        f"finite-difference check per job: median {statistics.median(check_times):.3f} s "
        f"(max {max(check_times):.3f} s) = {100 * statistics.median(check_times) / statistics.median(job_times):.1f} % "
        f"of the median job ({statistics.median(job_times):.2f} s); "
        f"{sum(v is True for v in verdicts)} of {len(verdicts)} passed"
    )


if __name__ == "__main__":
    main()
