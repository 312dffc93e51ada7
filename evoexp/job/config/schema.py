"""Dataclass schemas of every config group, validated when the composed config is turned into objects.

Hydra merges the YAML files of ``conf/`` onto these schemas (registered in the ConfigStore by
:func:`evoexp.job.config.store.register_configs`), so a wrong type (``trainer.lr=abc``), an unknown key or an unknown
option fails during composition. Value constraints (``surrogate.slope > 0``, ``dataset.time_steps >= 1``, ...) live
in each schema's ``__post_init__`` and run when :func:`evoexp.job.config.load_config` instantiates the schema; every
message names the dotted config key, e.g. ``surrogate.slope must be a finite number > 0, got -1.0``.

The ``model``, ``dataset`` and ``ann`` groups have no schema here: each is a constructor call (``_target_`` and the
callable's arguments) checked against the callable's signature (:mod:`evoexp.job.config.targets`), whose own body
checks the values when it is called (before any run). The schemas only describe and validate. Building objects from
them (surrogates, datasets, models, optimisers) is done by :mod:`evoexp.job.build`.
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from evoexp.crosscheck.catalogue import CATALOGUE
from evoexp.crosscheck.libraries import LIBRARIES
from evoexp.data.dataset import check_fits_in_memory
from evoexp.job.tracking import check_experiment_name
from evoexp.peers.names import get_peer
from evoexp.surrogate import available_surrogates, get_surrogate
from evoexp.verification.suite import CHECKS

__all__ = [
    "AlignmentCheckConfig",
    "CirculationCheckConfig",
    "Config",
    "ConvergenceCheckConfig",
    "CrosscheckConfig",
    "DebugConfig",
    "EscapeNoiseCheckConfig",
    "GradientCheckConfig",
    "SignCheckConfig",
    "StabilityCheckConfig",
    "SurrogateCheckConfig",
    "SurrogateConfig",
    "TrackingConfig",
    "TrainerConfig",
    "VerifierConfig",
    "unwritable_location",
]


def _positive(key: str, value: float | None, *, allow_none: bool = False) -> None:
    """Raise a ValueError naming ``key`` unless ``value`` is a finite number > 0 (or None when allowed)."""
    if value is None and allow_none:
        return
    if value is None or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{key} must be a finite number > 0, got {value!r}")


def _non_negative(key: str, value: float) -> None:
    """Raise a ValueError naming ``key`` unless ``value`` is a finite number >= 0."""
    if isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")


def _at_least(key: str, value: int, minimum: int) -> None:
    """Raise a ValueError naming ``key`` unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key} must be an int >= {minimum}, got {value!r}")


def _one_of(key: str, value: str, options: tuple[str, ...]) -> None:
    """Raise a ValueError naming ``key`` and listing ``options`` unless ``value`` is one of them."""
    if value not in options:
        raise ValueError(f"{key} must be one of {', '.join(options)}; got {value!r}")


_MAX_SEED = 2**64 - 1
"""Largest seed: torch's generators take an unsigned 64-bit seed."""

_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT64_EPS = 2.220446049250313e-16


def _seed(key: str, value: int) -> None:
    """Raise a ValueError naming ``key`` unless ``value`` is an int in ``[0, 2**64 - 1]``."""
    _at_least(key, value, 0)
    if value > _MAX_SEED:
        raise ValueError(f"{key} must be an int in [0, 2**64 - 1] (torch's generators take 64 bits), got {value!r}")


_MAX_SLOPE = 1e6
"""Largest accepted ``surrogate.slope`` and ``surrogate.scale``: beyond it the pseudo-derivative is narrower than
float32's resolution of the membrane near threshold (about 1e-7), and from about 1.8e19 its square overflows."""

_TRACKING_SCHEMES = ("file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "uc")
"""URI schemes of MLflow tracking stores (a dialect suffix such as ``postgresql+psycopg2`` is allowed)."""

def unwritable_location(path: Path) -> str | None:
    """Why nothing can be created at ``path`` (a file, or a directory to create files in), or None when it can.

    For a path that does not exist yet, its nearest existing ancestor is probed. The probe creates and removes a
    temporary file there, so read-only file systems, immutable directories and ACLs are seen too (``os.access``
    says yes to root).
    """
    target = Path(path).expanduser().absolute()
    while not target.exists() and target != target.parent:
        target = target.parent
    if target.is_file():
        if not os.access(target, os.W_OK):
            return f"{target} is not writable"
        target = target.parent
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".evoexp-write-probe-", dir=target)
    except OSError as exc:
        return f"{target}: {exc.strerror or exc}"
    os.close(descriptor)
    os.unlink(probe)
    return None


def _tracking_uri(key: str, uri: str) -> None:
    """Raise a ValueError naming ``key`` for a URI MLflow cannot store to.

    That is: an unknown scheme; a SQLite file in a missing directory, that is a directory, or that cannot be written;
    a database URL whose driver is not installed.
    """
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme and scheme not in _TRACKING_SCHEMES and not scheme.startswith("databricks"):
        raise ValueError(
            f"{key}={uri!r} has an unknown scheme {scheme!r}; use one of {', '.join(_TRACKING_SCHEMES)} "
            "(e.g. sqlite:///path/to/mlruns.db or http://127.0.0.1:5000), a local path, or null"
        )
    if uri.startswith("sqlite:///"):
        file = Path(uri.removeprefix("sqlite:///"))
        directory = file.parent
        if not directory.is_dir():
            raise ValueError(f"{key}={uri!r}: the directory {directory} of the SQLite file does not exist")
        if file.is_dir():  # SQLite cannot open it and MLflow retries for minutes
            raise ValueError(f"{key}={uri!r}: {file} is a directory, not a SQLite file (e.g. {file}/mlruns.db)")
        unwritable = unwritable_location(file if file.exists() else directory)
        if unwritable is not None:
            raise ValueError(f"{key}={uri!r}: the store cannot be written ({unwritable})")
    elif scheme in ("postgresql", "mysql", "mssql"):
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(uri).get_dialect().import_dbapi()
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ValueError(f"{key}={uri!r} is not a database URL SQLAlchemy knows ({exc})") from None
        except ImportError as exc:
            driver = exc.name or str(exc)
            raise ValueError(
                f"{key}={uri!r} needs the database driver {driver!r}, which is not installed: install it, or name an "
                f"installed driver in the URL ({scheme}+<driver>://...)"
            ) from None


@dataclass
class SurrogateConfig:
    """Surrogate gradient shape (``conf/surrogate/<name>.yaml``, one option per registered shape).

    Attributes:
        name: Registry name of the shape (:func:`evoexp.surrogate.available_surrogates`).
        slope: Sharpness beta > 0.
        scale: Multiplier of the pseudo-derivative, > 0.
        params: Shape-specific parameters, e.g. ``{tail: 1.5}`` for ``q_pseudo``.
        peer: A peer library's surrogate (``spikingjelly:PiecewiseQuadratic``, :mod:`evoexp.peers.names`); when set,
            ``name``, ``slope``, ``scale`` and ``params`` become those of the equal evoexp shape.
        peer_params: The peer function's own parameters, e.g. ``{alpha: 1.0}``.
        install: Install the shape into every spiking neuron of the model (snnTorch, SpikingJelly, Norse and evoexp
            neurons, through the verifiers' adapters) before anything runs; ``false`` keeps the network's own spike
            functions (docs/guides/your-network.md).
    """

    name: str = "fast_sigmoid"
    slope: float = 25.0
    scale: float = 1.0
    params: dict[str, float] = field(default_factory=dict)
    peer: str | None = None
    peer_params: dict[str, float] = field(default_factory=dict)
    install: bool = True

    def __post_init__(self) -> None:
        if self.peer is not None:
            self._from_peer(self.peer)
        _one_of("surrogate.name", self.name, tuple(available_surrogates()))
        _positive("surrogate.slope", self.slope)
        _positive("surrogate.scale", self.scale)
        for key, value in (("surrogate.slope", self.slope), ("surrogate.scale", self.scale)):
            if value > _MAX_SLOPE:
                raise ValueError(
                    f"{key} must be at most {_MAX_SLOPE:g}, got {value!r}: a sharper surrogate is narrower than "
                    "float32 resolves membrane potentials (and overflows float32 from about 1.8e19)"
                )
        try:
            get_surrogate(self.name, **self.kwargs())
        except ValueError as exc:
            raise ValueError(f"surrogate.params: {exc}") from None

    def kwargs(self) -> dict[str, float]:
        """Keyword arguments of :func:`evoexp.surrogate.get_surrogate` (besides the name)."""
        return {"slope": self.slope, "scale": self.scale, **self.params}

    def _from_peer(self, peer: str) -> None:
        """Replace name, slope, scale and params by the evoexp shape equal to the peer function ``peer``."""
        try:
            entry = get_peer(peer)
        except ValueError as exc:
            raise ValueError(f"surrogate.peer: {exc}") from None
        try:
            shape = entry.evoexp(**self.peer_params)
        except ValueError as exc:
            raise ValueError(f"surrogate.peer_params: {exc}") from None
        params = shape.params()
        self.name, self.slope, self.scale = shape.name, params.pop("slope"), params.pop("scale")
        self.params = params


@dataclass
class TrainerConfig:
    """Optimiser and training loop (``conf/trainer/``), shared by the SNN and its ANN twin.

    Attributes:
        optimizer: ``adam`` or ``sgd``.
        lr: Learning rate (> 0).
        batch_size: Minibatch size (>= 1).
        epochs: Training epochs (>= 1).
        weight_decay: L2 penalty (>= 0).
        momentum: SGD momentum (>= 0; ignored by Adam).
        grad_clip: Max gradient norm, or None for no clipping.
        rate_reg: Weight of the firing-rate regulariser (>= 0; SNN only).
        target_rate: Target firing rate of the regulariser, in [0, 1].
    """

    optimizer: str = "adam"
    lr: float = 5e-3
    batch_size: int = 250
    epochs: int = 20
    weight_decay: float = 0.0
    momentum: float = 0.0
    grad_clip: float | None = None
    rate_reg: float = 0.0
    target_rate: float = 0.01

    def __post_init__(self) -> None:
        _one_of("trainer.optimizer", self.optimizer, ("adam", "sgd"))
        _positive("trainer.lr", self.lr)
        _at_least("trainer.batch_size", self.batch_size, 1)
        _at_least("trainer.epochs", self.epochs, 1)
        _non_negative("trainer.weight_decay", self.weight_decay)
        _non_negative("trainer.momentum", self.momentum)
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(
                f"trainer.momentum={self.momentum!r} is an SGD setting that {self.optimizer} ignores; "
                "use trainer=sgd or leave trainer.momentum at 0"
            )
        if self.momentum >= 1:
            raise ValueError(f"trainer.momentum must be < 1 (SGD diverges otherwise), got {self.momentum!r}")
        _positive("trainer.grad_clip", self.grad_clip, allow_none=True)
        _non_negative("trainer.rate_reg", self.rate_reg)
        if not 0 <= self.target_rate <= 1:
            raise ValueError(f"trainer.target_rate must be in [0, 1], got {self.target_rate!r}")


@dataclass
class GradientCheckConfig:
    """Finite differences vs autograd in smooth mode (``verifier.gradient``; gradcheck's default tolerances).

    Attributes:
        mode: ``exact`` (every coordinate) or ``fast`` (random directions per parameter tensor).
        eps: Central-difference step (> 0).
        atol: Absolute tolerance (> 0).
        rtol: Relative tolerance (> 0).
        n_directions: Fast mode: random unit directions per parameter tensor (>= 1).
        parameters: Names of the parameter tensors to check (``model.named_parameters()`` of the trained model, e.g.
            ``network.fc1.weight``), or None for every trainable tensor; the report lists the tensors checked.
    """

    mode: str = "fast"
    eps: float = 1e-6
    atol: float = 1e-5
    rtol: float = 1e-3
    n_directions: int = 4
    parameters: list[str] | None = None

    def __post_init__(self) -> None:
        _one_of("verifier.gradient.mode", self.mode, ("exact", "fast"))
        _positive("verifier.gradient.eps", self.eps)
        _positive("verifier.gradient.atol", self.atol)
        _positive("verifier.gradient.rtol", self.rtol)
        # (L(w+eps) - L(w-eps)) / 2 eps rounds by about float64's eps / eps for a loss of order 1: beyond atol, even
        # an exact gradient would fail.
        smallest = _FLOAT64_EPS / self.atol
        if self.eps < smallest:
            raise ValueError(
                f"verifier.gradient.eps={self.eps:g} is below what float64 resolves: the central difference rounds by "
                f"about {_FLOAT64_EPS:.2g}/eps = {_FLOAT64_EPS / self.eps:.2g}, more than "
                f"verifier.gradient.atol={self.atol:g}; use eps >= {smallest:.2g}"
            )
        _at_least("verifier.gradient.n_directions", self.n_directions, 1)


@dataclass
class SurrogateCheckConfig:
    """Surrogate derivative vs its own backward, its primitive and the step (``verifier.surrogate``).

    Attributes:
        x_range: Grid interval ``[low, high]`` of membrane offsets.
        n_points: Grid points (>= 3).
        h: Step of the central difference of the spike function (> 0).
    """

    x_range: list[float] = field(default_factory=lambda: [-4.0, 4.0])
    n_points: int = 8000
    h: float = 0.05

    def __post_init__(self) -> None:
        if (
            len(self.x_range) != 2
            or not all(math.isfinite(v) for v in self.x_range)
            or not self.x_range[0] < self.x_range[1]
        ):
            raise ValueError(
                f"verifier.surrogate.x_range must be [low, high], finite, with low < high, got {self.x_range!r}"
            )
        _at_least("verifier.surrogate.n_points", self.n_points, 3)
        _positive("verifier.surrogate.h", self.h)
        # about 16 float64 arrays of the grid's size (grid, derivative, backward, forward, differences, ...)
        grids = f"verifier.surrogate.n_points={self.n_points} (16 float64 grids)"
        check_fits_in_memory(grids, 16 * 8.0 * self.n_points)


@dataclass
class AlignmentCheckConfig:
    """Surrogate gradient vs the gradient of the Gaussian-smoothed loss (``verifier.alignment``).

    Attributes:
        sigmas: Noise scales of the smoothed loss (each > 0).
        n_directions: Random unit directions (>= 2).
        n_quadrature: Gauss-Hermite nodes (>= 4; the quadrature error compares with half as many).
        per_layer: Also report each parameter tensor.
    """

    sigmas: list[float] = field(default_factory=lambda: [0.01, 0.1])
    n_directions: int = 32
    n_quadrature: int = 16
    per_layer: bool = True

    def __post_init__(self) -> None:
        if not self.sigmas:
            raise ValueError("verifier.alignment.sigmas must list at least one noise scale, got []")
        for sigma in self.sigmas:
            _positive("verifier.alignment.sigmas", sigma)
        _at_least("verifier.alignment.n_directions", self.n_directions, 2)
        _at_least("verifier.alignment.n_quadrature", self.n_quadrature, 4)


@dataclass
class StabilityCheckConfig:
    """Gradient and weight stability with their verdict thresholds (``verifier.stability``).

    Attributes:
        n_batches: Training batches whose gradients are measured (>= 1).
        max_grad_norm: Largest acceptable total gradient norm (> 0).
        min_grad_norm: Smallest acceptable total gradient norm (> 0; below: vanishing).
        max_depth_conditioning: Largest acceptable ``max_l |g_l| / min_l |g_l|`` (> 0).
        n_steps: Optimiser steps taken on a copy for the weight check (>= 1).
        max_relative_update: Largest acceptable ``|dW| / |W|`` per step (> 0).
        max_norm_growth: Largest acceptable growth factor of a weight norm (> 0).
        max_condition_number: Largest acceptable condition number of a weight matrix (> 0).
    """

    n_batches: int = 10
    max_grad_norm: float = 1e5
    min_grad_norm: float = 1e-8
    max_depth_conditioning: float = 1e4
    n_steps: int = 20
    max_relative_update: float = 0.5
    max_norm_growth: float = 10.0
    max_condition_number: float = 1e6

    def __post_init__(self) -> None:
        _at_least("verifier.stability.n_batches", self.n_batches, 1)
        _at_least("verifier.stability.n_steps", self.n_steps, 1)
        for key in (
            "max_grad_norm",
            "min_grad_norm",
            "max_depth_conditioning",
            "max_relative_update",
            "max_norm_growth",
            "max_condition_number",
        ):
            _positive(f"verifier.stability.{key}", getattr(self, key))
        if self.min_grad_norm >= self.max_grad_norm:
            raise ValueError(
                f"verifier.stability.min_grad_norm={self.min_grad_norm:g} must be below "
                f"verifier.stability.max_grad_norm={self.max_grad_norm:g}: no gradient norm could pass"
            )


@dataclass
class ConvergenceCheckConfig:
    """Convergence analysis of the SNN's training curves (``verifier.convergence``).

    Attributes:
        patience: Early stopping on the validation loss after this many epochs without improvement (>= 1), or
            None to train every epoch (the analysis then reports the patience as the epoch budget).
        min_delta: Minimum improvement of the validation loss (>= 0).
        min_relative_reduction: Verdict threshold on the relative reduction of the training loss, in [0, 1).
    """

    patience: int | None = None
    min_delta: float = 0.0
    min_relative_reduction: float = 0.1

    def __post_init__(self) -> None:
        if self.patience is not None:
            _at_least("verifier.convergence.patience", self.patience, 1)
        _non_negative("verifier.convergence.min_delta", self.min_delta)
        if not 0 <= self.min_relative_reduction < 1:
            raise ValueError(
                f"verifier.convergence.min_relative_reduction must be in [0, 1), got {self.min_relative_reduction!r}"
            )


@dataclass
class CirculationCheckConfig:
    """Circulation of the surrogate gradient around circles in weight space (``verifier.circulation``).

    Attributes:
        radius: Radius of the circles in parameter units (> 0).
        n_points: Angles of the trapezoid rule (even, >= 8).
        max_points: Most angles of a loop refined until its quadrature error is below ``max_quadrature_error``.
        n_planes: Seeded planes per scope (>= 1).
        per_layer: Also planes within each parameter tensor.
        control: Also integrate the same loops in smooth mode (the check's verdict).
        max_quadrature_error: Largest quadrature error of a resolved loop (> 0).
        atol: A loop is conservative when abs(c) <= 3 quadrature errors + atol (> 0).
    """

    radius: float = 0.1
    n_points: int = 64
    max_points: int = 512
    n_planes: int = 1
    per_layer: bool = True
    control: bool = True
    max_quadrature_error: float = 1e-3
    atol: float = 1e-2

    def __post_init__(self) -> None:
        _positive("verifier.circulation.radius", self.radius)
        _at_least("verifier.circulation.n_points", self.n_points, 8)
        if self.n_points % 2:
            raise ValueError(f"verifier.circulation.n_points must be even, got {self.n_points!r}")
        _at_least("verifier.circulation.max_points", self.max_points, self.n_points)
        _at_least("verifier.circulation.n_planes", self.n_planes, 1)
        _positive("verifier.circulation.max_quadrature_error", self.max_quadrature_error)
        _positive("verifier.circulation.atol", self.atol)


@dataclass
class SignCheckConfig:
    """Sign disagreement with the smoothed-loss gradient (``verifier.sign``), also during training.

    Attributes:
        sigma: Smoothing scale (> 0).
        n_directions: Random unit directions (>= 2).
        n_quadrature: Gauss-Hermite nodes (>= 4).
        every: Measure during training every this many epochs (epoch 0 included); 0: the initial network only.
    """

    sigma: float = 0.05
    n_directions: int = 32
    n_quadrature: int = 8
    every: int = 5

    def __post_init__(self) -> None:
        _positive("verifier.sign.sigma", self.sigma)
        _at_least("verifier.sign.n_directions", self.n_directions, 2)
        _at_least("verifier.sign.n_quadrature", self.n_quadrature, 4)
        _at_least("verifier.sign.every", self.every, 0)


@dataclass
class EscapeNoiseCheckConfig:
    """The escape-noise identity on the model's stochastic layers (``verifier.escape_noise``).

    Attributes:
        n_neurons: Neurons of the single-layer case (1 to 12: their joint spike patterns are enumerated).
        time_steps: Steps of the sampled spike train (>= 1).
        atol: Absolute tolerance (> 0).
        rtol: Relative tolerance (> 0).
    """

    n_neurons: int = 4
    time_steps: int = 8
    atol: float = 1e-12
    rtol: float = 1e-9

    def __post_init__(self) -> None:
        _at_least("verifier.escape_noise.n_neurons", self.n_neurons, 1)
        if self.n_neurons > 12:
            raise ValueError(f"verifier.escape_noise.n_neurons must be at most 12, got {self.n_neurons!r}")
        _at_least("verifier.escape_noise.time_steps", self.time_steps, 1)
        _positive("verifier.escape_noise.atol", self.atol)
        _positive("verifier.escape_noise.rtol", self.rtol)


@dataclass
class VerifierConfig:
    """Which checks run, with their settings (``conf/verifier/``).

    Attributes:
        name: Label of the preset.
        checks: Names of the enabled checks (subset of ``gradient_verification``, ``surrogate_verification``,
            ``gradient_alignment``, ``gradient_stability``, ``weight_stability``, ``convergence``, ``benchmark``,
            ``circulation``, ``sign_disagreement``, ``escape_noise``).
        dtype: Dtype of the verification copies (``float64`` or ``float32``).
        samples: Training samples (of the first batch) the finite-difference and alignment losses use (>= 1).
        gradient: Finite-difference check.
        surrogate: Surrogate-shape check.
        alignment: Gradient-alignment check.
        stability: Stability checks.
        convergence: Convergence analysis.
        circulation: Circulation of the surrogate gradient.
        sign: Sign disagreement (initial network, and during training every ``sign.every`` epochs).
        escape_noise: The escape-noise identity.
    """

    name: str = "full"
    checks: list[str] = field(default_factory=lambda: list(CHECKS))
    dtype: str = "float64"
    samples: int = 8
    gradient: GradientCheckConfig = field(default_factory=GradientCheckConfig)
    surrogate: SurrogateCheckConfig = field(default_factory=SurrogateCheckConfig)
    alignment: AlignmentCheckConfig = field(default_factory=AlignmentCheckConfig)
    stability: StabilityCheckConfig = field(default_factory=StabilityCheckConfig)
    convergence: ConvergenceCheckConfig = field(default_factory=ConvergenceCheckConfig)
    circulation: CirculationCheckConfig = field(default_factory=CirculationCheckConfig)
    sign: SignCheckConfig = field(default_factory=SignCheckConfig)
    escape_noise: EscapeNoiseCheckConfig = field(default_factory=EscapeNoiseCheckConfig)

    def __post_init__(self) -> None:
        for check in self.checks:
            _one_of("verifier.checks", check, CHECKS)
        _one_of("verifier.dtype", self.dtype, ("float64", "float32"))
        _at_least("verifier.samples", self.samples, 1)


@dataclass
class TrackingConfig:
    """MLflow tracking (``conf/tracking/``: ``mlflow`` embedded store, ``server``, ``off``).

    Attributes:
        enabled: Log to MLflow at all.
        uri: Tracking URI; None uses ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<project root>/mlruns.db``.
        experiment: MLflow experiment name: a name, not a path (no ``/``, backslash, ``.`` or ``..``).
        sweep_id: Names a sweep: its parent run and the ``evoexp.sweep_id`` tag of its jobs. None derives it from
            the sweep's definition (experiment, overrides and swept values), so running the same sweep again
            resumes it under the same parent run.
        resume: Skip a job whose config already has a FINISHED run (same config hash and code identity).
        reuse_ann: Train the ANN twin once per (dataset, sizes, trainer, early stopping, seed) and reuse it from
            the store (when it was trained by the same code).
        reuse_across_code: Let ``resume`` and ``reuse_ann`` serve runs that other code (another evoexp version or
            source digest, see :func:`evoexp.job.config.code_identity`) produced; off by default, so a fix re-runs.
        log_artifacts: Upload the files the job wrote (config, results, report, figures, its log and ``.hydra/``)
            as artifacts; nothing else in its output directory (with ``hydra.run.dir=.``, the launch directory).
        flush_every: Seconds a run buffers metrics before one batched upload (0: upload every epoch).
        heartbeat_every: Seconds between heartbeats (tag ``evoexp.heartbeat``) of an open run; 0 sends none.
        stale_after: Seconds without heartbeat after which a RUNNING run from another host counts as killed when
            a sweep or run starts (0: never). Runs from this host are checked by their process id instead.
        system_metrics: Log MLflow's system metrics (``system/cpu_utilization_percentage``, memory, disk, network)
            every 10 s while a run is open; needs psutil.
        timeout: Seconds a tracking server has to answer one request, and the check made before the first job.
        retries: Times a failed request to a tracking server is retried (after 1, 2, 4, ... s; at most 10).
        give_up_after: Seconds a run retries, in the background, metrics and tags the store does not accept
            before the job fails (training goes on meanwhile); 0 fails at the first refusal.
    """

    enabled: bool = True
    uri: str | None = None
    experiment: str = "evoexp"
    sweep_id: str | None = None
    resume: bool = True
    reuse_ann: bool = True
    reuse_across_code: bool = False
    log_artifacts: bool = True
    flush_every: float = 5.0
    heartbeat_every: float = 60.0
    stale_after: float = 900.0
    system_metrics: bool = False
    timeout: float = 10.0
    retries: int = 2
    give_up_after: float = 120.0

    def __post_init__(self) -> None:
        check_experiment_name(self.experiment)
        if self.uri is not None:
            _tracking_uri("tracking.uri", self.uri)
        _non_negative("tracking.flush_every", self.flush_every)
        _non_negative("tracking.heartbeat_every", self.heartbeat_every)
        _non_negative("tracking.stale_after", self.stale_after)
        _non_negative("tracking.give_up_after", self.give_up_after)
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"tracking.timeout must be a finite number of seconds > 0, got {self.timeout!r}")
        if not 0 <= self.retries <= 10:
            raise ValueError(f"tracking.retries must be between 0 and 10 (MLflow's limit), got {self.retries!r}")
        if self.stale_after and self.heartbeat_every and self.stale_after < 3 * self.heartbeat_every:
            raise ValueError(
                f"tracking.stale_after must be 0 or at least 3 heartbeats (>= {3 * self.heartbeat_every:g} s), "
                f"got {self.stale_after:g}"
            )
        if self.system_metrics and importlib.util.find_spec("psutil") is None:
            raise ValueError("tracking.system_metrics=true needs psutil (pip install psutil)")


@dataclass
class DebugConfig:
    """Fault injection for tests of failure isolation (never set in real runs).

    Attributes:
        fail: Raise a RuntimeError inside the run, after the MLflow run started.
        diverge: Make training diverge (NaN loss) in its first epoch.
        sleep: Seconds to sleep inside the run before training (to test SIGTERM handling).
    """

    fail: bool = False
    diverge: bool = False
    sleep: float = 0.0

    def __post_init__(self) -> None:
        _non_negative("debug.sleep", self.sleep)


@dataclass
class CrosscheckConfig:
    """The cross-library comparison of the model's network (``experiment=crosscheck``; :mod:`evoexp.crosscheck`).

    Attributes:
        enabled: Run the comparison instead of checks and training.
        libraries: Peer libraries to compare with evoexp (installed ones; the others are reported as skipped).
        align: Causes to align in the peers where the library has a setting for them.
        steps: Time steps of the seeded input (>= 1).
        batch: Samples (>= 1).
    """

    enabled: bool = False
    libraries: list[str] = field(default_factory=lambda: [cls.name for cls in LIBRARIES])
    align: list[str] = field(default_factory=list)
    steps: int = 50
    batch: int = 4

    def __post_init__(self) -> None:
        for library in self.libraries:
            _one_of("crosscheck.libraries", library, tuple(cls.name for cls in LIBRARIES))
        for cause in self.align:
            _one_of("crosscheck.align", cause, tuple(CATALOGUE))
        _at_least("crosscheck.steps", self.steps, 1)
        _at_least("crosscheck.batch", self.batch, 1)


@dataclass
class Config:
    """The composed configuration of one job (``conf/config.yaml``).

    Attributes:
        seed: Seed of data, initialisation and shuffling.
        threads: Torch intra-op threads per job (>= 1).
        figures: Save per-job figures (surrogate shape, training curves) into ``figures/``.
        surrogate: Surrogate shape.
        model: The spiking network: a :class:`~evoexp.job.config.targets.ModelTarget` once loaded (``conf/model``).
        dataset: The dataset: a :class:`~evoexp.job.config.targets.Target` once loaded (``conf/dataset``).
        ann: The ANN compared with the network: a :class:`~evoexp.job.config.targets.Target` once loaded, not
            configured when its ``_target_`` is null (``conf/ann``).
        trainer: Optimiser and loop.
        verifier: Enabled checks and their settings.
        tracking: MLflow settings.
        crosscheck: The cross-library comparison (``experiment=crosscheck``).
        debug: Fault injection.
    """

    seed: int = 0
    threads: int = 1
    figures: bool = True
    surrogate: SurrogateConfig = MISSING
    model: Any = MISSING
    dataset: Any = MISSING
    ann: Any = MISSING
    trainer: TrainerConfig = MISSING
    verifier: VerifierConfig = MISSING
    tracking: TrackingConfig = MISSING
    crosscheck: CrosscheckConfig = field(default_factory=CrosscheckConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)

    def __post_init__(self) -> None:
        _seed("seed", self.seed)
        _at_least("threads", self.threads, 1)
