"""Objects from a validated :class:`~evoexp.job.config.Config`: data, surrogate, models, optimiser, loaders, options.

Everything a run is made of is built here, from the typed config alone, so the Hydra app, the tests and a notebook
that loads a config build exactly the same objects::

    config = load_config(cfg)
    data = build_dataset(config)
    snn = build_snn(config, data)

Plain Python: nothing here imports Hydra or MLflow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import nir
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from evoexp.data import DatasetSplits, get_dataset, make_loader
from evoexp.job.config import Config, ConfigValidationError
from evoexp.models import ANN, SNN
from evoexp.nir import NIRNetwork, from_nir
from evoexp.nir.graph import flatten, plan, read_graph
from evoexp.surrogate import SurrogateGradient, get_surrogate
from evoexp.verification.sign import SignDisagreementProbe
from evoexp.verification.suite import VerificationOptions

__all__ = [
    "MODEL_CHECKS",
    "build_ann",
    "build_dataset",
    "build_loader",
    "build_nir",
    "build_optimizer",
    "build_sign_probe",
    "build_snn",
    "build_surrogate",
    "training_options",
    "verification_options",
    "warmup_epochs",
]

View = Literal["spikes", "features"]
Split = Literal["train", "val", "test"]

MODEL_CHECKS = (
    "gradient_verification",
    "surrogate_verification",
    "gradient_alignment",
    "gradient_stability",
    "weight_stability",
    "circulation",
    "sign_disagreement",
    "escape_noise",
)
"""Checks that examine the initial network through the suite; convergence and benchmark come from training (and the
sign disagreement also from training, every ``verifier.sign.every`` epochs: :func:`build_sign_probe`)."""


def build_dataset(config: Config) -> DatasetSplits:
    """The configured dataset's seeded splits (``dataset.seed``, else the top-level ``seed``)."""
    return get_dataset(config.dataset.name, **config.dataset.kwargs(seed=config.seed))


def build_surrogate(config: Config) -> SurrogateGradient:
    """The configured surrogate gradient shape."""
    return get_surrogate(config.surrogate.name, **config.surrogate.kwargs())


def build_nir(config: Config, data: DatasetSplits | None = None) -> NIRNetwork:
    """The NIR graph ``model.path`` with ``model.dt``, ``model.reset``, the surrogate group and ``model.readout``.

    Raises:
        ConfigValidationError: no ``model.path``, or the graph's input/output sizes do not fit ``data`` (one line
            naming the key).
    """
    model = config.model
    if model.path is None:
        raise ConfigValidationError("model.path is not set (use model=nir model.path=...)")
    # Why the type ignore below: OmegaConf types these loosely (str); each is validated when the config loads
    net = from_nir(model.path, dt=model.dt, reset=model.reset, surrogate=build_surrogate(config),  # type: ignore[arg-type]
                   detach_reset=model.detach_reset, readout=model.readout)  # type: ignore[arg-type]  # as above
    if data is not None:
        outputs = net.plan.graph.nodes[net.plan.output].output_type["output"]
        sizes = {"inputs": (net.input_shape, (data.n_inputs,)), "outputs": (tuple(int(d) for d in outputs),
                                                                            (data.n_classes,))}
        for what, (graph, dataset) in sizes.items():
            if graph != dataset:
                raise ConfigValidationError(f"model.path: the graph has {what} {list(graph)}, dataset "
                                            f"{config.dataset.name} has {list(dataset)}")
    return net


def build_snn(config: Config, data: DatasetSplits) -> SNN | NIRNetwork:
    """The configured spiking network for ``data``.

    The NIR graph of ``model.path`` (:func:`build_nir`), else evoexp's SNN (initialised from ``config.seed``).
    """
    model = config.model
    if model.path is not None:
        return build_nir(config, data)
    return SNN(
        data.n_inputs,
        list(model.hidden_sizes),
        data.n_classes,
        surrogate=build_surrogate(config),
        tau_mem=model.tau_mem,
        tau_syn=model.tau_syn,
        alpha=0.0 if model.tau_syn is None else None,
        dt=model.dt,  # type: ignore[arg-type]  # None only with model=nir, which is not built here
        threshold=model.threshold,
        reset=model.reset,  # type: ignore[arg-type]  # a str in OmegaConf; one of the modes, checked at load
        detach_reset=model.detach_reset,
        recurrent=model.recurrent,
        readout=model.readout,  # type: ignore[arg-type]  # a str in OmegaConf; one of the modes, checked at load
        readout_beta=model.readout_beta,
        bias=model.bias,
        weight_scale=model.weight_scale,
        seed=config.seed,
        escape_noise=model.escape_noise,
        escape_train=model.escape_train,  # type: ignore[arg-type]
        escape_eval=model.escape_eval,  # type: ignore[arg-type]
    )


def build_ann(config: Config, data: DatasetSplits, seed: int | None = None) -> ANN:
    """The SNN's ANN twin for ``data`` (as :func:`evoexp.models.ann_twin`), fed the static features.

    Same hidden sizes as the SNN (a NIR graph's: its spiking nodes'), activation ``model.ann_activation``.

    Args:
        config: The validated config.
        data: The dataset (number of features and classes).
        seed: Seed of the initialisation (``config.seed`` if None); the global torch RNG is seeded with it.
    """
    torch.manual_seed(config.seed if seed is None else seed)
    path = config.model.path
    sizes = list(config.model.hidden_sizes) if path is None else _graph_hidden_sizes(path)
    return ANN(data.n_features, sizes, data.n_classes, activation=config.model.ann_activation)


def _graph_hidden_sizes(path: str) -> list[int]:
    """Sizes of the spiking nodes of the NIR graph at ``path``, in the order they run."""
    graph_plan = plan(flatten(read_graph(path)))
    nodes = graph_plan.graph.nodes
    return [int(np.size(nodes[s.name].v_threshold)) for s in graph_plan.steps
            if isinstance(nodes[s.name], (nir.LIF, nir.CubaLIF, nir.IF))]


def build_optimizer(config: Config, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The trainer's optimiser over ``parameters``."""
    trainer, parameters = config.trainer, list(parameters)
    if trainer.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=trainer.lr, momentum=trainer.momentum, weight_decay=trainer.weight_decay)
    return torch.optim.Adam(parameters, lr=trainer.lr, weight_decay=trainer.weight_decay)


def build_loader(config: Config, data: DatasetSplits, split: Split, *, view: View) -> DataLoader:
    """The loader of one split: the training split shuffled (seeded by ``config.seed``), the others in order."""
    return make_loader(
        getattr(data, split),
        batch_size=config.trainer.batch_size,
        shuffle=split == "train",
        seed=config.seed,
        view=view,
    )


def build_sign_probe(config: Config, data: DatasetSplits) -> SignDisagreementProbe | None:
    """The probe that measures the SNN's sign disagreement during training, or None.

    None unless ``sign_disagreement`` is among ``verifier.checks`` and ``verifier.sign.every >= 1``. The probe uses
    the first ``verifier.samples`` samples of the first training batch (those of the suite's check) and the seed.
    """
    sign = config.verifier.sign
    if "sign_disagreement" not in config.verifier.checks or sign.every < 1:
        return None
    x, y = next(iter(build_loader(config, data, "train", view="spikes")))
    return SignDisagreementProbe(
        x[: config.verifier.samples],
        y[: config.verifier.samples],
        every=sign.every,
        sigma=sign.sigma,
        n_directions=sign.n_directions,
        n_quadrature=sign.n_quadrature,
        seed=config.seed,
    )


def warmup_epochs(config: Config) -> int:
    """Leading epochs left out of the time per epoch: 1, or 0 for a one-epoch run."""
    return 1 if config.trainer.epochs > 1 else 0


def training_options(config: Config, *, snn: bool) -> dict[str, Any]:
    """Keyword arguments of :func:`evoexp.training.train_model` from ``trainer`` and ``verifier.convergence``.

    The firing-rate regulariser is the SNN's alone; the optimiser is left to :func:`build_optimizer`.
    """
    trainer, convergence = config.trainer, config.verifier.convergence
    options: dict[str, Any] = {
        "epochs": trainer.epochs,
        "grad_clip": trainer.grad_clip,
        "patience": convergence.patience,
        "min_delta": convergence.min_delta,
    }
    if snn:
        options.update(rate_reg=trainer.rate_reg, target_rate=trainer.target_rate)
    return options


def verification_options(config: Config) -> VerificationOptions:
    """The suite options of the enabled model checks (:data:`MODEL_CHECKS`), from ``config.verifier``."""
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
        circulation_kwargs={
            "radius": verifier.circulation.radius,
            "n_points": verifier.circulation.n_points,
            "max_points": verifier.circulation.max_points,
            "n_planes": verifier.circulation.n_planes,
            "per_layer": verifier.circulation.per_layer,
            "control": verifier.circulation.control,
            "max_quadrature_error": verifier.circulation.max_quadrature_error,
            "atol": verifier.circulation.atol,
            "seed": config.seed,
        },
        sign_kwargs={
            "sigma": verifier.sign.sigma,
            "n_directions": verifier.sign.n_directions,
            "n_quadrature": verifier.sign.n_quadrature,
            "seed": config.seed,
        },
        escape_noise_kwargs={
            "n_neurons": verifier.escape_noise.n_neurons,
            "time_steps": verifier.escape_noise.time_steps,
            "atol": verifier.escape_noise.atol,
            "rtol": verifier.escape_noise.rtol,
            "seed": config.seed,
        },
    )
