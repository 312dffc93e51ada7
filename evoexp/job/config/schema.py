"""Dataclass schemas of every config group, validated when the composed config is turned into objects.

Hydra merges the YAML files of ``conf/`` onto these schemas (registered in the ConfigStore by
:func:`evoexp.job.config.store.register_configs`), so a wrong type (``trainer.lr=abc``), an unknown key or an unknown
option fails during composition. Value constraints (``surrogate.slope > 0``, ``tracking.retries <= 10``, ...) live
in each schema's ``__post_init__`` and run when :func:`evoexp.job.config.load_config` instantiates the schema; every
message names the dotted config key, e.g. ``surrogate.slope must be a finite number > 0, got -1.0``.

The ``trainer`` node and the settings of each check (``verifier.gradient``, ...) are keyword arguments of evoexp's
functions: their schemas are generated from the base preset and the signatures (:mod:`evoexp.job.config.settings`),
and their values are checked by the functions' own argument checks when the config is loaded.

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
from evoexp.job.config.settings import settings_schema
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


def _positive(key: str, value: float) -> None:
    """Raise a ValueError naming ``key`` unless ``value`` is a finite number > 0."""
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
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

    ``name``, ``slope`` and ``scale`` have no default here: the shape's preset gives them (its values are the shape's
    defaults, :mod:`evoexp.surrogate`).

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

    name: str = MISSING
    slope: float = MISSING
    scale: float = MISSING
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


TrainerConfig = settings_schema("trainer", "TrainerConfig", __name__)
"""Optimiser and training loop (``conf/trainer/``), shared by the SNN and its ANN twin: the arguments of
:func:`evoexp.training.make_optimizer`, :func:`evoexp.data.make_loader` (``batch_size``) and
:func:`evoexp.training.train_model` (``epochs``, ``grad_clip``, and the SNN's ``rate_reg``, ``target_rate``)."""
GradientCheckConfig = settings_schema("verifier.gradient", "GradientCheckConfig", __name__)
"""Finite differences vs autograd in smooth mode: arguments of
:meth:`~evoexp.verification.gradient.GradientVerifier.verify_finite_difference`."""
SurrogateCheckConfig = settings_schema("verifier.surrogate", "SurrogateCheckConfig", __name__)
"""The surrogate shape check: arguments of :func:`~evoexp.verification.surrogate_check.verify_surrogate_gradient`."""
AlignmentCheckConfig = settings_schema("verifier.alignment", "AlignmentCheckConfig", __name__)
"""Gradient alignment: arguments of :func:`~evoexp.verification.alignment.verify_gradient_alignment`."""
StabilityCheckConfig = settings_schema("verifier.stability", "StabilityCheckConfig", __name__)
"""Gradient and weight stability: arguments of :class:`~evoexp.verification.stability.NumericalStabilityTester`'s
two checks."""
ConvergenceCheckConfig = settings_schema("verifier.convergence", "ConvergenceCheckConfig", __name__)
"""Early stopping (``patience``, ``min_delta`` of :func:`~evoexp.training.train_model`) and the verdict's threshold
(:func:`~evoexp.verification.convergence.analyze_training`)."""
CirculationCheckConfig = settings_schema("verifier.circulation", "CirculationCheckConfig", __name__)
"""Circulation: arguments of :func:`~evoexp.verification.circulation.check_circulation`."""
SignCheckConfig = settings_schema("verifier.sign", "SignCheckConfig", __name__)
"""Sign disagreement: arguments of :func:`~evoexp.verification.sign.measure_sign_disagreement` and ``every`` of
:class:`~evoexp.verification.sign.SignDisagreementProbe` (0: the initial network only)."""
EscapeNoiseCheckConfig = settings_schema("verifier.escape_noise", "EscapeNoiseCheckConfig", __name__)
"""The escape-noise identity: arguments of :func:`~evoexp.verification.escape_noise.verify_escape_noise`."""


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
    gradient: Any = field(default_factory=GradientCheckConfig)
    surrogate: Any = field(default_factory=SurrogateCheckConfig)
    alignment: Any = field(default_factory=AlignmentCheckConfig)
    stability: Any = field(default_factory=StabilityCheckConfig)
    convergence: Any = field(default_factory=ConvergenceCheckConfig)
    circulation: Any = field(default_factory=CirculationCheckConfig)
    sign: Any = field(default_factory=SignCheckConfig)
    escape_noise: Any = field(default_factory=EscapeNoiseCheckConfig)

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
            source digest, see :func:`evoexp.identity.code_identity`) produced; off by default, so a fix re-runs.
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
    trainer: Any = field(default_factory=TrainerConfig)
    verifier: VerifierConfig = MISSING
    tracking: TrackingConfig = MISSING
    crosscheck: CrosscheckConfig = field(default_factory=CrosscheckConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)

    def __post_init__(self) -> None:
        _seed("seed", self.seed)
        _at_least("threads", self.threads, 1)
