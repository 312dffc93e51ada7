"""Objects from a validated :class:`~evoexp.job.config.Config`: data, surrogate, models, optimiser, loaders, options.

Everything a run is made of is built here, from the typed config alone, so the Hydra app, the tests and a notebook
that loads a config build exactly the same objects::

    config = load_config(cfg)
    data = build_dataset(config)
    model = build_model(config, data).model

One route builds every network: ``model`` is a constructor call (``_target_`` and arguments, checked by
:mod:`evoexp.job.config.targets`), made with :func:`hydra.utils.instantiate` plus what only the data knows
(:func:`model_arguments`); evoexp's own SNN presets name :func:`evoexp.models.lif_snn` the same way. The configured
surrogate is then installed into the network's spiking neurons through the verifiers' adapter registry
(:func:`evoexp.verification.spiking.install_surrogate`), the network is fed and read as ``model.input_layout``,
``model.output_index`` and ``model.time_reduction`` say (:func:`evoexp.models.feed`), and its neurons start every
forward from their initial state (:func:`evoexp.verification.spiking.keep_state_fresh`). A callable that raises, or
returns the wrong kind of object, fails with one line naming the key (a ``ConfigValidationError``).

Plain Python: nothing here imports MLflow; Hydra only for ``instantiate``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from evoexp.data import DatasetSplits, make_loader
from evoexp.data.dataset import check_splits
from evoexp.job.config import Config, ConfigValidationError
from evoexp.job.config.identity import SNN_ONLY_KEYS
from evoexp.job.config.settings import settings_arguments
from evoexp.job.config.targets import call
from evoexp.models import feed
from evoexp.surrogate import SurrogateGradient, get_surrogate
from evoexp.training import make_optimizer, train_model
from evoexp.verification.alignment import verify_gradient_alignment
from evoexp.verification.circulation import check_circulation
from evoexp.verification.escape_noise import verify_escape_noise
from evoexp.verification.gradient import GradientVerifier
from evoexp.verification.sign import SignDisagreementProbe, measure_sign_disagreement
from evoexp.verification.spiking import InstalledSurrogate, claiming_adapters, install_surrogate, keep_state_fresh
from evoexp.verification.stability import NumericalStabilityTester
from evoexp.verification.suite import VerificationOptions
from evoexp.verification.surrogate_check import verify_surrogate_gradient

__all__ = [
    "MODEL_CHECKS",
    "BuiltModel",
    "ann_arguments",
    "build_ann",
    "build_dataset",
    "build_loader",
    "build_model",
    "build_optimizer",
    "build_sign_probe",
    "build_surrogate",
    "model_arguments",
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
    """The configured dataset (the call ``dataset._target_(...)``), validated with :func:`~evoexp.data.check_splits`.

    Raises:
        ConfigValidationError: The callable raised, returned something else than ``DatasetSplits``, or a split is
            empty, has another shape, labels outside ``[0, n_classes)`` or non-finite values (one line naming it).
    """
    target = config.dataset
    data = call(target)
    if not isinstance(data, DatasetSplits):
        raise ConfigValidationError(
            f"dataset._target_={target.path} returned {type(data).__name__}, not evoexp.data.DatasetSplits (build it "
            "with DatasetSplits.from_tensors or DatasetSplits.from_datasets)"
        )
    try:
        check_splits(data)
    except ValueError as exc:
        raise ConfigValidationError(f"dataset ({target.path}): {exc}") from None
    return data


def build_surrogate(config: Config) -> SurrogateGradient:
    """The configured surrogate gradient shape."""
    return get_surrogate(config.surrogate.name, **config.surrogate.kwargs())


def model_arguments(data: DatasetSplits, surrogate: SurrogateGradient) -> dict[str, Any]:
    """What evoexp passes to a network's callable when its signature accepts it (:data:`~evoexp.job.config.INJECTED`).

    ``n_inputs`` (input values per step), ``n_classes``, ``time_steps``, ``input_shape`` (one step's sample,
    ``(C,)`` or ``(C, H, W)``) and ``surrogate``.
    """
    return {
        "n_inputs": data.n_inputs,
        "n_classes": data.n_classes,
        "time_steps": data.time_steps,
        "input_shape": data.input_shape,
        "surrogate": surrogate,
    }


def ann_arguments(data: DatasetSplits) -> dict[str, Any]:
    """What evoexp passes to an ANN's callable when its signature accepts it.

    ``n_inputs`` and ``input_shape`` of the static features, ``n_classes`` and ``time_steps``.
    """
    return {
        "n_inputs": data.n_features,
        "n_classes": data.n_classes,
        "time_steps": data.time_steps,
        "input_shape": data.feature_shape,
    }


@dataclass
class BuiltModel:
    """A configured network as evoexp trains and checks it.

    Attributes:
        model: What the pipeline trains and the verifiers check: the network itself, or a
            :class:`~evoexp.models.FedNetwork` around it that feeds batch-first samples and reads class scores.
        network: The network the callable returned.
        installed: The neurons the configured surrogate was installed into (empty: not installed).
        libraries: The spiking libraries whose neurons the network holds (adapters that claim it).
    """

    model: nn.Module
    network: nn.Module
    installed: list[InstalledSurrogate] = field(default_factory=list)
    libraries: tuple[str, ...] = ()

    @property
    def n_params(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def _module(group: str, path: str | None, built: Any) -> nn.Module:
    if not isinstance(built, nn.Module):
        raise ConfigValidationError(f"{group}._target_={path} returned {type(built).__name__}, not a torch nn.Module")
    if not any(p.requires_grad for p in built.parameters()):
        raise ConfigValidationError(f"{group}._target_={path} returned a module without trainable parameters")
    return built


def build_model(config: Config, data: DatasetSplits) -> BuiltModel:
    """The configured network for ``data`` (the global torch RNG seeded with ``seed`` first), ready to train.

    Raises:
        ConfigValidationError: One line naming the key: the callable raised or returned no ``nn.Module``, a neuron
            cannot take the configured surrogate (``surrogate.install``), or a feeding setting is unknown.
    """
    target = config.model
    torch.manual_seed(config.seed)
    shape = build_surrogate(config)
    network = _module("model", target.path, call(target, **model_arguments(data, shape)))
    installed: list[InstalledSurrogate] = []
    if config.surrogate.install:
        try:
            installed = install_surrogate(network, shape)
        except ValueError as exc:
            raise ConfigValidationError(f"surrogate.install: {exc}") from None
        if not installed and "surrogate" not in target.accepts:
            raise ConfigValidationError(
                f"surrogate.install=true, but {target.path} holds no neuron that evoexp installs surrogates into "
                "(evoexp, snnTorch, SpikingJelly, Norse) and takes no surrogate argument; set surrogate.install=false "
                "to train it with its own spike functions"
            )
    try:
        model = feed(
            network,
            input_layout=target.input_layout,
            output_index=target.output_index,
            time_reduction=target.time_reduction,
        )
    except ValueError as exc:
        raise ConfigValidationError(f"model.{exc}") from None
    keep_state_fresh(network)
    return BuiltModel(model, network, installed, tuple(a.name for a in claiming_adapters(network)))


def build_ann(config: Config, data: DatasetSplits, seed: int | None = None) -> nn.Module | None:
    """The configured ANN for ``data`` (the call ``ann._target_(...)``, fed the static features), or None.

    The global torch RNG is seeded with ``seed`` (``config.seed`` if None) first.

    Raises:
        ConfigValidationError: The dataset has no static features, or the callable raised or returned no module.
    """
    target = config.ann
    if not target.configured:
        return None
    if data.n_features == 0:
        raise ConfigValidationError(
            f"ann._target_={target.path}: the dataset has no static features to feed an ANN (DatasetSplits "
            "features [N, 0]); set ann=none"
        )
    torch.manual_seed(config.seed if seed is None else seed)
    return _module("ann", target.path, call(target, **ann_arguments(data)))


def build_optimizer(config: Config, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The trainer's optimiser over ``parameters`` (:func:`evoexp.training.make_optimizer`)."""
    return make_optimizer(parameters, **settings_arguments("trainer", config.trainer, make_optimizer))


def build_loader(config: Config, data: DatasetSplits, split: Split, *, view: View) -> DataLoader:
    """The loader of one split: the training split shuffled (seeded by ``config.seed``), the others in order."""
    return make_loader(
        getattr(data, split),
        **settings_arguments("trainer", config.trainer, make_loader),
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
    measure = settings_arguments("verifier.sign", sign, measure_sign_disagreement)
    probe = settings_arguments("verifier.sign", sign, SignDisagreementProbe.__init__)
    samples = config.verifier.samples
    return SignDisagreementProbe(x[:samples], y[:samples], **probe, **measure, seed=config.seed)


def warmup_epochs(config: Config) -> int:
    """Leading epochs left out of the time per epoch: 1, or 0 for a one-epoch run."""
    return 1 if config.trainer.epochs > 1 else 0


def training_options(config: Config, *, snn: bool) -> dict[str, Any]:
    """Keyword arguments of :func:`evoexp.training.train_model` from ``trainer`` and ``verifier.convergence``.

    The firing-rate regulariser (:data:`~evoexp.job.config.identity.SNN_ONLY_KEYS`) is the SNN's alone; the
    optimiser is left to :func:`build_optimizer`.
    """
    options = {
        **settings_arguments("trainer", config.trainer, train_model),
        **settings_arguments("verifier.convergence", config.verifier.convergence, train_model),
    }
    if not snn:
        for key in SNN_ONLY_KEYS:
            options.pop(key.removeprefix("trainer."))
    return options


def verification_options(config: Config) -> VerificationOptions:
    """The suite options of the enabled model checks (:data:`MODEL_CHECKS`), from ``config.verifier``.

    Each check's settings are the keyword arguments of the function that runs it (:func:`arguments`), plus the seed.
    """
    verifier, seed = config.verifier, config.seed
    gradient = settings_arguments("verifier.gradient", verifier.gradient, GradientVerifier.verify_finite_difference)
    surrogate = settings_arguments("verifier.surrogate", verifier.surrogate, verify_surrogate_gradient)
    alignment = settings_arguments("verifier.alignment", verifier.alignment, verify_gradient_alignment)
    tester = NumericalStabilityTester
    gradient_stability, weight_stability = (
        settings_arguments("verifier.stability", verifier.stability, check)
        for check in (tester.check_gradient_stability, tester.check_weight_stability)
    )
    circulation = settings_arguments("verifier.circulation", verifier.circulation, check_circulation)
    sign = settings_arguments("verifier.sign", verifier.sign, measure_sign_disagreement)  # every: the probe's
    escape_noise = settings_arguments("verifier.escape_noise", verifier.escape_noise, verify_escape_noise)
    return VerificationOptions.only(
        *[check for check in MODEL_CHECKS if check in verifier.checks],
        gradient_samples=verifier.samples,
        gradient_kwargs={**gradient, "seed": seed},
        surrogate_kwargs=surrogate,
        alignment_kwargs={**alignment, "seed": seed},
        gradient_stability_kwargs=gradient_stability,
        weight_stability_kwargs=weight_stability,
        circulation_kwargs={**circulation, "seed": seed},
        sign_kwargs={**sign, "seed": seed},
        escape_noise_kwargs={**escape_noise, "seed": seed},
    )
