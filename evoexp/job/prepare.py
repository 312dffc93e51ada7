"""What a job builds and checks before anything runs: data, network, installed surrogate, ANN.

:func:`prepare` builds the dataset and the network (:mod:`evoexp.job.build`) and checks, on the built objects, what the
config alone cannot say:

* the network takes a batch of two training samples as ``model.input_layout`` feeds it and returns class scores for
  the dataset's classes as ``model.output_index`` and ``model.time_reduction`` read them;
* every surrogate installed into a library's neurons passes the runtime surrogate check (its spike function's
  backward is the shape's derivative, :func:`~evoexp.verification.suite.check_spike_functions`); evoexp's own LIF
  layers got the shape from their constructor, and the suite's ``surrogate_verification`` probes their node;
* the configured ANN (``ann._target_``) maps the static features to class scores;
* ``trainer.rate_reg`` has hidden spikes to regularise, and ``verifier.gradient.parameters`` names tensors of the
  model.

Every failure is one line naming the key and the shape or module it concerns (a
:class:`~evoexp.job.config.ConfigValidationError`). A single run calls :func:`prepare` in the Hydra callback, before
Hydra creates its output directory, and then again in the job; the dataset of the last call is kept in this process
(:func:`dataset_for`), so it is built once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from torch import Tensor

import evoexp
from evoexp.data import DatasetSplits
from evoexp.job.build import BuiltModel, build_ann, build_dataset, build_model
from evoexp.job.config import Config, ConfigValidationError
from evoexp.job.config.settings import settings_arguments
from evoexp.job.config.targets import ModelTarget
from evoexp.models import FedNetwork
from evoexp.results import Result
from evoexp.training import batch_to
from evoexp.verification.gradient import GradientVerifier
from evoexp.verification.spiking import InstalledSurrogate
from evoexp.verification.suite import check_spike_functions
from evoexp.verification.surrogate_check import verify_surrogate_gradient

__all__ = ["PROBE_SAMPLES", "Prepared", "dataset_for", "describe_installed", "model_facts", "prepare"]

PROBE_SAMPLES = 2
"""Training samples of the forward that checks how the network is fed and read."""

_DATASETS: dict[str, DatasetSplits] = {}
"""The last dataset built in this process, by its call (one entry)."""


@dataclass
class Prepared:
    """A job's checked objects.

    Attributes:
        data: The dataset.
        built: The network as evoexp trains it.
        surrogate_checks: The runtime surrogate checks of the installed spike functions (empty: none installed).
    """

    data: DatasetSplits
    built: BuiltModel
    surrogate_checks: list[Result] = field(default_factory=list)


def dataset_for(config: Config) -> DatasetSplits:
    """The configured dataset, built once per process for the same call (``dataset._target_`` and arguments)."""
    key = json.dumps(config.dataset.source(), sort_keys=True, default=str)
    if key not in _DATASETS:
        _DATASETS.clear()
        _DATASETS[key] = build_dataset(config)
    return _DATASETS[key]


def prepare(config: Config, *, data: DatasetSplits | None = None) -> Prepared:
    """Build and check data, network, installed surrogate and ANN (see the module docstring).

    Args:
        config: The loaded config.
        data: The dataset, when the caller built it already (default: :func:`dataset_for`).

    Raises:
        ConfigValidationError: One line naming the key and what is wrong.
    """
    data = dataset_for(config) if data is None else data
    built = build_model(config, data)
    _probe_model(config.model, built, data)
    if config.trainer.rate_reg > 0 and not hasattr(built.model, "last_spikes"):
        raise ConfigValidationError(
            f"trainer.rate_reg={config.trainer.rate_reg:g} needs the hidden spikes that evoexp's SNN records "
            f"(model.last_spikes), which {config.model.path} does not; set trainer.rate_reg=0"
        )
    checked = config.verifier.gradient.parameters
    names = [name for name, p in built.model.named_parameters() if p.requires_grad]
    unknown = sorted(set(checked or ()) - set(names))
    if unknown:
        raise ConfigValidationError(
            f"verifier.gradient.parameters names {', '.join(unknown)}, which the model does not have (its tensors: "
            f"{', '.join(names)})"
        )
    replaced = [record for record in built.installed if record.library != "evoexp"]
    checks = _check_installed(config, built) if replaced else []
    _probe_ann(config, data)
    return Prepared(data, built, checks)


def _shape(value: Any) -> str:
    return f"[{', '.join(map(str, value.shape))}]" if isinstance(value, Tensor) else type(value).__name__


def _probe_model(target: ModelTarget, built: BuiltModel, data: DatasetSplits) -> None:
    """Run the network on two training samples as configured; check the scores it returns.

    The scores must be ``[2, n_classes]``, and the second sample's must not change when it runs alone (a network fed
    the wrong layout treats time as batch, and its samples then interact); a network whose forward is random (two
    calls differ) is not checked for this.
    """
    reader = FedNetwork(
        built.network,
        input_layout=target.input_layout,  # type: ignore[arg-type]
        output_index=target.output_index,
        time_reduction=target.time_reduction,  # type: ignore[arg-type]
    )
    reference = next(p for p in built.model.parameters() if p.requires_grad)
    x, _ = batch_to((data.train.spikes[:PROBE_SAMPLES], data.train.labels[:PROBE_SAMPLES]), reference)
    layout = "[T, B, ...]" if target.input_layout == "time_first" else "[B, T, ...]"

    def forward(batch: Tensor) -> Any:
        inputs = batch.transpose(0, 1) if target.input_layout == "time_first" else batch
        try:
            return built.network(inputs)
        except Exception as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigValidationError(
                f"model.input_layout={target.input_layout}: {target.path} failed on input {_shape(inputs)} ({layout}, "
                f"{len(batch)} samples of step shape {list(data.input_shape)}): {type(exc).__name__}: {message}"
            ) from exc

    def read(output: Any, batch: int) -> Tensor:
        try:
            return reader.read(output, batch=batch)
        except ValueError as exc:
            raise ConfigValidationError(f"model.{exc}") from None

    training = built.model.training
    built.model.eval()
    try:
        with torch.no_grad():
            scores = read(forward(x), PROBE_SAMPLES)
            again = read(forward(x), PROBE_SAMPLES)
            alone = read(forward(x[-1:]), 1)
    finally:
        built.model.train(training)
    if scores.shape[1] != data.n_classes:
        raise ConfigValidationError(
            f"model: {target.path} gives {scores.shape[1]} class scores per sample (read {_shape(scores)}), but the "
            f"dataset has {data.n_classes} classes"
        )
    if not scores.is_floating_point():
        raise ConfigValidationError(f"model: {target.path}'s class scores are {scores.dtype}, not floating point")
    tolerance = 1e-4 * (1.0 + float(scores.abs().max()))
    deterministic = bool((scores - again).abs().max() <= tolerance)
    difference = float((scores[-1:] - alone).abs().max())
    if deterministic and difference > tolerance:
        other = "time_first" if target.input_layout == "batch_first" else "batch_first"
        raise ConfigValidationError(
            f"model.input_layout={target.input_layout}: the scores of a sample change with the other samples of its "
            f"batch (by up to {difference:.3g}), so {target.path} mixes samples: does it take "
            f"{'[T, B, ...]' if other == 'time_first' else '[B, T, ...]'}? then set model.input_layout={other}"
        )


def _check_installed(config: Config, built: BuiltModel) -> list[Result]:
    """The runtime surrogate check of every installed spike function; the first failure fails the job."""
    settings = settings_arguments("verifier.surrogate", config.verifier.surrogate, verify_surrogate_gradient)
    results = check_spike_functions(built.model, GradientVerifier(), **settings)
    for result in results:
        if not result.passed:
            first = next((line for line in result.message.splitlines() if line.strip()), "")
            raise ConfigValidationError(
                f"surrogate.install: {getattr(result, 'name', '')} fails the runtime surrogate check after "
                f"installing: {first.strip()}"
            )
    return list(results)


def _probe_ann(config: Config, data: DatasetSplits) -> None:
    """Build the configured ANN and check that it maps two samples' static features to ``[2, n_classes]`` scores."""
    ann = build_ann(config, data)
    if ann is None:
        return
    path = config.ann.path
    reference = next(p for p in ann.parameters() if p.requires_grad)
    x, _ = batch_to((data.train.features[:PROBE_SAMPLES], data.train.labels[:PROBE_SAMPLES]), reference)
    ann.eval()
    try:
        with torch.no_grad():
            scores = ann(x)
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigValidationError(
            f"ann: {path} failed on static features {_shape(x)} ({PROBE_SAMPLES} samples): {type(exc).__name__}: "
            f"{message}"
        ) from exc
    if not isinstance(scores, Tensor) or tuple(scores.shape) != (PROBE_SAMPLES, data.n_classes):
        raise ConfigValidationError(
            f"ann: {path} must return class scores [{PROBE_SAMPLES}, {data.n_classes}] for {PROBE_SAMPLES} samples, "
            f"got {_shape(scores)}"
        )


def describe_installed(installed: list[InstalledSurrogate], *, install: bool) -> str:
    """One line saying which surrogate runs in which neurons.

    Example: ``atan(slope=2.0, scale=1.0) installed into 2 snntorch neurons (lif1, lif2)``.
    """
    if not install:
        return "not installed (surrogate.install=false): the network's own spike functions"
    if not installed:
        return "passed to the network's constructor (its surrogate argument); no neuron evoexp installs into"
    by_library: dict[tuple[str, str], list[str]] = {}
    for record in installed:
        by_library.setdefault((record.installed, record.library), []).append(record.module or "(the network)")
    return "; ".join(
        f"{shape} installed into {len(names)} {library} neuron{'s' if len(names) > 1 else ''} ({', '.join(names)})"
        for (shape, library), names in by_library.items()
    )


def _library_version(library: str) -> str:
    if library == "evoexp":
        return evoexp.__version__
    try:
        return version(library)
    except PackageNotFoundError:
        return "unknown"


def model_facts(config: Config, prepared: Prepared) -> dict[str, Any]:
    """What ran, for ``results.json``, the report and the MLflow tags.

    Keys: ``target``, ``name``, ``library`` (the spiking libraries whose neurons the network holds, ``torch`` for
    none), ``library_version``, ``params`` (trainable parameters), ``surrogate`` (:func:`describe_installed`),
    ``input_layout``, ``output_index``, ``time_reduction``, ``ann`` (the ANN's target or None).
    """
    built, target = prepared.built, config.model
    libraries = [name for name in built.libraries if name != "evoexp"] or list(built.libraries) or ["torch"]
    return {
        "target": target.path,
        "name": target.name,
        "library": ", ".join(libraries),
        "library_version": ", ".join(_library_version(name) for name in libraries),
        "params": built.n_params,
        "surrogate": describe_installed(built.installed, install=config.surrogate.install),
        "input_layout": target.input_layout,
        "output_index": target.output_index,
        "time_reduction": target.time_reduction,
        "ann": config.ann.path,
    }
