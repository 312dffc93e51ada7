"""Cosine standard error of the gradient-alignment check in a sweep's setting (default: ``experiment=surrogate_sweep``).

For each (surrogate, slope, seed) of a grid this builds the job's initial network and alignment batch exactly as the
app does (same config, data, seed and first training samples), then runs
:func:`evoexp.verification.alignment.verify_gradient_alignment` for every candidate setting (directions ``K``,
``sigma``, Gauss-Hermite nodes) and prints, per setting, the median and maximum jackknife SE of the overall cosine,
the largest quadrature error, how many cosines are conclusive, and the seconds per job. The setting the experiment's
``verifier.alignment`` configures is marked ``*``.

Usage: ``python benchmarks/alignment_se.py [--quick] [--directions 8 64 128] [--sigmas 0.01 0.05]
[--quadrature 8] [--surrogates fast_sigmoid atan] [--slopes 1 25 100] [--seeds 0] [--experiment surrogate_sweep]``
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch.nn import functional as F

from evoexp.data import make_loader
from evoexp.job.build import build_dataset, build_model
from evoexp.job.config import load_config
from evoexp.job.config.store import register_configs
from evoexp.verification.alignment import verify_gradient_alignment

CONF = Path(__file__).resolve().parents[1] / "evoexp" / "conf"


def job_inputs(experiment: str, surrogate: str, slope: float, seed: int) -> tuple[torch.nn.Module, tuple, object]:
    """The job's initial SNN, its alignment batch ``(x, y)`` and its typed config."""
    overrides = [f"experiment={experiment}", f"surrogate={surrogate}", f"surrogate.slope={slope}", f"seed={seed}"]
    config = load_config(compose(config_name="config", overrides=overrides))
    data = build_dataset(config)
    snn = build_model(config, data).model
    x, y = next(iter(make_loader(data.train, batch_size=config.trainer.batch_size, shuffle=True, seed=config.seed)))
    n = config.verifier.samples
    return snn, (x[:n], y[:n]), config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="surrogate_sweep")
    parser.add_argument("--quick", action="store_true", help="two surrogates, two slopes, two settings")
    parser.add_argument("--directions", type=int, nargs="+", default=[8, 32, 64, 128])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--quadrature", type=int, nargs="+", default=[8])
    parser.add_argument(
        "--surrogates", nargs="+", default=["fast_sigmoid", "superspike", "sigmoid", "atan", "triangular"]
    )
    parser.add_argument("--slopes", type=float, nargs="+", default=[1, 5, 25, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    if args.quick:
        args.surrogates, args.slopes, args.directions, args.sigmas = ["fast_sigmoid", "atan"], [5, 25], [8, 64], [0.01]
    torch.set_num_threads(1)
    register_configs()
    settings = list(itertools.product(args.directions, args.sigmas, args.quadrature))
    rows: dict[tuple[int, float, int], list[tuple[float, float, float, bool, float]]] = {s: [] for s in settings}
    configured = None
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for surrogate, slope, seed in itertools.product(args.surrogates, args.slopes, args.seeds):
            snn, (x, y), config = job_inputs(args.experiment, surrogate, slope, seed)
            alignment = config.verifier.alignment
            configured = (alignment.n_directions, alignment.sigmas[0], alignment.n_quadrature)
            line = [f"{surrogate:>13s} slope {slope:>5g} seed {seed}:"]
            for k, sigma, nodes in settings:
                start = time.perf_counter()
                result = verify_gradient_alignment(
                    snn,
                    x,
                    y,
                    F.cross_entropy,
                    sigmas=(sigma,),
                    n_directions=k,
                    n_quadrature=nodes,
                    per_layer=False,
                    seed=config.seed,
                )
                s = result.stats()
                rows[(k, sigma, nodes)].append(
                    (s.cosine, s.cosine_se, s.cosine_quadrature_error, s.conclusive, time.perf_counter() - start)
                )
                line.append(f"K={k} s={sigma:g}: {s.cosine:+.2f}±{s.cosine_se:.2f}{'' if s.conclusive else '?'}")
            print("  ".join(line), flush=True)
    print(f"\nsetting (K, sigma, nodes); * = {args.experiment}'s verifier.alignment {configured}")
    print("   K   sigma nodes | median SE   max SE | max quad err | conclusive | s/job")
    for setting, values in rows.items():
        se = [v[1] for v in values]
        mark = "*" if setting == configured else " "
        print(
            f"{mark}{setting[0]:>3d} {setting[1]:>7g} {setting[2]:>5d} | {statistics.median(se):9.3f} {max(se):8.3f} | "
            f"{max(v[2] for v in values):12.3f} | {sum(v[3] for v in values):>4d}/{len(values):<5d} | "
            f"{statistics.mean(v[4] for v in values):5.2f}"
        )


if __name__ == "__main__":
    main()
