"""The one vocabulary: every MLflow tag, metric and param name evoexp writes, and the tidy run frame's columns.

A leaf module imported by the writers (:mod:`evoexp.job`) and the readers (:mod:`evoexp.job.analysis`,
:mod:`evoexp.analysis`, which import it as ``schema``, and :mod:`evoexp.figures`). A name that a run logs is declared
here, as a constant or, for families (per layer, per check, per config key), as one of :data:`METRIC_PATTERNS` /
:data:`PARAM_PATTERN`; ``tests/test_keys.py`` and ``tests/test_app.py`` read back every key of a tracked job and fail on
an undeclared one.

The loader turns every MLflow run into one row. Params, metrics and tags keep their MLflow key behind a
namespace prefix (the convention of :func:`mlflow.search_runs`), so that a param ``surrogate.slope``
becomes column ``params.surrogate.slope`` and a metric ``snn/test/acc`` becomes ``metrics.snn/test/acc``.
Per-run quantities that the analysis computes itself live under ``derived.``.
"""

from __future__ import annotations

import re

PARAM_PREFIX = "params."
METRIC_PREFIX = "metrics."
TAG_PREFIX = "tags."
DERIVED_PREFIX = "derived."

# Run-level columns.
RUN_ID = "run_id"
RUN_NAME = "run_name"
EXPERIMENT_ID = "experiment_id"
STATUS = "status"
START_TIME = "start_time"
END_TIME = "end_time"
DURATION = "duration_s"
RUN_COLUMNS = (RUN_ID, RUN_NAME, EXPERIMENT_ID, STATUS, START_TIME, END_TIME, DURATION)


class Tags:
    """MLflow tag keys: evoexp's own (``evoexp.*``) and the MLflow system tags it writes or reads."""

    SWEEP_ID = "evoexp.sweep_id"
    JOB = "evoexp.job"
    CONFIG_HASH = "evoexp.config_hash"
    CODE_IDENTITY = "evoexp.code_identity"
    OVERRIDES = "evoexp.overrides"
    AXES = "evoexp.axes"
    JOBS = "evoexp.jobs"
    ANN_HASH = "evoexp.ann_hash"
    ANN_RUN = "evoexp.ann_run_id"
    GIT_COMMIT = "evoexp.git_commit"
    VERSION = "evoexp.version"
    TORCH_VERSION = "torch.version"
    KIND = "evoexp.kind"
    OUTCOME = "evoexp.outcome"
    ERROR = "evoexp.error"
    OUTPUT_DIR = "evoexp.output_dir"
    MODEL_TARGET = "evoexp.model.target"
    MODEL_LIBRARY = "evoexp.model.library"
    MODEL_LIBRARY_VERSION = "evoexp.model.library_version"
    MODEL_PARAMS = "evoexp.model.params"
    SURROGATE_INSTALLED = "evoexp.surrogate.installed"
    VERDICT = "evoexp.verdict"
    CHECKS = "evoexp.checks"
    """Verdict of each check of a job, failures first: ``FAIL: gradient_stability · PASS: convergence, …``."""
    HOST = "evoexp.host"
    PID = "evoexp.pid"
    PID_START = "evoexp.pid_start"
    HEARTBEAT = "evoexp.heartbeat"
    HEARTBEAT_EVERY = "evoexp.heartbeat_every"
    INVOCATION = "evoexp.invocation"
    RUN_NAME = "mlflow.runName"
    PARENT_RUN = "mlflow.parentRunId"
    NOTE = "mlflow.note.content"
    """The Markdown description of a run (its page) or of an experiment (the home page and the experiment's page)."""
    USER = "mlflow.user"
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_TYPE = "mlflow.source.type"
    SOURCE_GIT_COMMIT = "mlflow.source.git.commit"
    DATASET_CONTEXT = "mlflow.data.context"


SAVED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
"""Experiment tags ``<prefix><key>``: the saved runs-table views of the MLflow UI (its *Views* menu)."""

# Tags, as the readers name them.
SWEEP_ID_TAG = Tags.SWEEP_ID
KIND_TAG = Tags.KIND
OUTCOME_TAG = Tags.OUTCOME
SUMMARY_KIND = "summary"
SWEEP_KIND = "sweep"
JOB_KIND = "job"
BASELINE_KIND = "ann_baseline"
"""``evoexp.kind`` of an ANN twin's baseline run (in the jobs' experiment, nested under the sweep that trained it)."""
DIVERGED_OUTCOME = "diverged"
PASS_VERDICT = "pass"

# Params.
SEED_PARAM = "seed"
SURROGATE_NAME_PARAM = "surrogate.name"
SURROGATE_SLOPE_PARAM = "surrogate.slope"
SURROGATE_SCALE_PARAM = "surrogate.scale"
N_CLASSES_PARAM = "dataset.n_classes"
IGNORED_PARAM_PREFIXES = ("hydra.", "tracking.")
PRESENTATION_KEYS = ("figures", "threads", "tracking")
"""Config keys that change how a job runs or is shown (figures, torch threads, where it is logged), never what it
computes: left out of the config hash and never a table row (the key and every key below it)."""


def is_presentation_key(key: str) -> bool:
    """Whether config key ``key`` (dotted, without ``params.``) is or lies below one of :data:`PRESENTATION_KEYS`."""
    return any(key == name or key.startswith(name + ".") for name in PRESENTATION_KEYS)


# Summary metrics (test metrics: weights of the best-validation epoch restored; "_last" keys: final epoch).
SNN_TEST_ACC = "snn/test/acc_best"
ANN_TEST_ACC = "ann/test/acc_best"
SNN_TEST_LOSS = "snn/test/loss_best"
ANN_TEST_LOSS = "ann/test/loss_best"
SNN_TEST_ACC_LAST = "snn/test/acc_last"
ANN_TEST_ACC_LAST = "ann/test/acc_last"
OBJECTIVE = "snn/val/best_acc"
"""Best SNN validation accuracy: the value a job returns to the sweeper."""
SNN_BEST_EPOCH = "snn/best_epoch"
SNN_TIME_PER_EPOCH = "snn/time_per_epoch"
ANN_TIME_PER_EPOCH = "ann/time_per_epoch"
SNN_EPOCHS_TO_CONVERGE = "snn/epochs_to_converge"
ANN_EPOCHS_TO_CONVERGE = "ann/epochs_to_converge"
SNN_PARAMS = "snn/params"
ANN_PARAMS = "ann/params"
ALIGNMENT_COSINE = "alignment/cosine"
ALIGNMENT_SIGN = "alignment/sign_agreement"
SURROGATE_L1_ERROR = "surrogate/l1_error"
GRADIENT_MAX_ABS_ERROR = "gradient/max_abs_error"
GRADIENT_NONDIFFERENTIABLE = "gradient/nondifferentiable"  # values at kinks of the loss (not errors)
GRADIENT_REFINED = "gradient/refined"  # values that agreed only at a smaller finite-difference step
STABILITY_GRADIENT_OK = "stability/gradient_ok"
STABILITY_WEIGHT_OK = "stability/weight_ok"
# Verdicts of the checks (1.0 passed, 0.0 failed; absent when the check did not run).
GRADIENT_PASSED = "gradient/passed"
SURROGATE_PASSED = "surrogate/passed"
CONVERGENCE_OK = "convergence/ok"

# Headline metrics of a job run: no prefix, so MLflow's charts show them in their first section ("Model metrics").
HEADLINE_TEST_ACC = "test_acc"
"""SNN test accuracy with the best-validation weights, ``snn/test/acc_best`` (a fraction, as in all of MLflow)."""
HEADLINE_CHECKS_FAILED = "checks_failed"
"""Number of checks of the job that failed (0: verdict pass, unless the SNN diverged)."""

# Metrics of a sweep's parent run: the whole sweep's state (a resumed sweep counts the runs it reused).
SWEEP_JOBS_PREFIX = "sweep/jobs_"
"""``sweep/jobs_<finished|diverged|failed|reused>``: jobs per outcome; ``reused``: skipped for an earlier run."""
SWEEP_VERDICT_PREFIX = "sweep/verdict_"
"""``sweep/verdict_<verdict>``: jobs per verdict."""
SWEEP_CHECK_PREFIX = "sweep/check/"
"""``sweep/check/<check>/<pass|fail>``: jobs whose check passed or failed."""

# Gygax & Zenke (2025) checks: circulation of the surrogate gradient (normalised, mean |c| over planes), its smooth-mode
# control, sign disagreement with the smoothed-loss gradient, the escape-noise identity.
CIRCULATION = "circulation/overall"
CIRCULATION_SE = "circulation/overall_se"
CIRCULATION_QUADRATURE_ERROR = "circulation/quadrature_error"
CIRCULATION_CONSERVATIVE = "circulation/conservative"
CIRCULATION_LAYER_PREFIX = "circulation/layer/"
CIRCULATION_CONTROL = "circulation/control"
CIRCULATION_CONTROL_PASSED = "circulation/control_passed"
SIGN_DISAGREEMENT = "sign/disagreement"
SIGN_DISAGREEMENT_SE = "sign/disagreement_se"
SIGN_INFORMATIVE = "sign/informative"
SIGN_UNRESOLVED = "sign/unresolved"
SIGN_TRACE_FIRST = "sign/training_first"
SIGN_TRACE_LAST = "sign/training_last"
SIGN_TRACE_MEAN = "sign/training_mean"
ESCAPE_MAX_ABS_ERROR = "escape_noise/max_abs_error"
ESCAPE_MAX_REL_ERROR = "escape_noise/max_rel_error"
ESCAPE_PASSED = "escape_noise/passed"

# Per-epoch metrics (step = epoch).
SNN_TRAIN_LOSS = "snn/train/loss"
SNN_TRAIN_ACC = "snn/train/acc"
SNN_VAL_LOSS = "snn/val/loss"
SNN_VAL_ACC = "snn/val/acc"
ANN_TRAIN_LOSS = "ann/train/loss"
ANN_TRAIN_ACC = "ann/train/acc"
ANN_VAL_LOSS = "ann/val/loss"
ANN_VAL_ACC = "ann/val/acc"
SNN_GRAD_NORM = "snn/grad_norm"
# Sign disagreement measured during training every k epochs (TrainingRun probes; the model's label is the prefix).
SIGN_DISAGREEMENT_CURVE = "sign_disagreement"
SIGN_DISAGREEMENT_CURVE_SE = "sign_disagreement_se"
SNN_SIGN_DISAGREEMENT = "snn/" + SIGN_DISAGREEMENT_CURVE
SNN_SIGN_DISAGREEMENT_SE = "snn/" + SIGN_DISAGREEMENT_CURVE_SE
GRAD_NORM_LAYER_PREFIX = "snn/grad_norm/"

# Metrics of the sweep's parent (or summary) run, written by the analysis.
ANALYSIS_N_RUNS = "analysis/n_runs"

CONFIG_METRIC_PREFIX = "config/"
"""Numeric config values are mirrored as metrics ``config/<key>`` (MLflow's charts plot metrics, not params)."""

NIR_ARTIFACT_PATH = "nir"
"""Artifact folder of a job's NIR graph file (``model=nir``)."""
CROSSCHECK_ARTIFACT_PATH = "crosscheck"
"""Artifact folder (and job output folder) of ``agreement.csv``, ``agreement.md`` and the matrix figures."""

CROSSCHECK_SECONDS = "crosscheck/seconds"
CROSSCHECK_PASSED = "crosscheck/passed"
"""1 when every difference between libraries is attributed and every library's stated model is reproduced."""
CROSSCHECK_PAIR_METRICS = ("first_divergence", "smooth_grad_max_rel", "spiking_grad_max_rel")
"""Per library pair ``<a>_<b>`` of ``experiment=crosscheck``: :func:`crosscheck_pair_metric` names them."""


def crosscheck_pair_metric(library_a: str, library_b: str, name: str) -> str:
    """``crosscheck/<a>_<b>/<name>`` for one of :data:`CROSSCHECK_PAIR_METRICS`.

    Raises:
        ValueError: ``name`` is not one of them.
    """
    if name not in CROSSCHECK_PAIR_METRICS:
        raise ValueError(f"unknown crosscheck pair metric {name!r}; known: {', '.join(CROSSCHECK_PAIR_METRICS)}")
    return f"crosscheck/{library_a}_{library_b}/{name}"


CHECKS = (
    "gradient",
    "surrogate",
    "stability",
    "convergence",
    "benchmark",
    "alignment",
    "crosscheck",
    "circulation",
    "sign",
    "escape_noise",
)
"""Prefixes of the checks' summary metrics (``<check>/<metric>``, each result's ``summary()``)."""

METRIC_PATTERNS: tuple[str, ...] = (
    r"(snn|ann)/(train|val)/(loss|acc|eval_loss|eval_acc)",  # per epoch
    r"(snn|ann)/val/best_acc",
    r"(snn|ann)/test/(acc|loss)_(best|last)",  # weights of the best-validation epoch, of the last epoch
    r"(snn|ann)/(best_epoch|epochs|epoch_seconds|grad_norm|params|time_per_epoch|torch_threads|epochs_to_converge)",
    r"(snn|ann)/grad_norm/[\w.]+",  # per layer
    rf"(snn|ann)/({SIGN_DISAGREEMENT_CURVE}|{SIGN_DISAGREEMENT_CURVE_SE})",  # per measured epoch (training probe)
    re.escape(CIRCULATION_LAYER_PREFIX) + r"[\w.]+",  # per parameter tensor
    r"stability/grad_(norm|rms)/[\w.]+",  # per layer
    rf"({'|'.join(CHECKS)})/[a-z0-9_]+",  # a check's summary
    rf"crosscheck/[a-z]+_[a-z]+/({'|'.join(CROSSCHECK_PAIR_METRICS)})",  # per library pair
    re.escape(CONFIG_METRIC_PREFIX) + r"[\w.]+",
    r"system/[\w.]+",  # MLflow's system metrics (tracking.system_metrics)
    re.escape(ANALYSIS_N_RUNS),
    rf"{HEADLINE_TEST_ACC}|{HEADLINE_CHECKS_FAILED}",
    re.escape(SWEEP_JOBS_PREFIX) + r"(finished|diverged|failed|reused)",
    re.escape(SWEEP_VERDICT_PREFIX) + r"[a-z_]+",
    re.escape(SWEEP_CHECK_PREFIX) + r"[a-z_]+/(pass|fail)",
)
"""Every metric name a run may log (full matches); the constants above are instances."""

PARAM_PATTERN = r"[a-z_]+(\.[a-z_0-9]+)*"
"""Params are the job's config keys, flattened with dots (``surrogate.slope``): the config schema names them."""


def is_declared_metric(key: str) -> bool:
    """Whether metric ``key`` is a name of this vocabulary (one of :data:`METRIC_PATTERNS`)."""
    return any(re.fullmatch(pattern, key) for pattern in METRIC_PATTERNS)


def is_declared_tag(key: str) -> bool:
    """Whether tag ``key`` is one of :class:`Tags`."""
    return key in _TAG_NAMES


def is_declared_param(key: str) -> bool:
    """Whether param ``key`` is a flattened config key (:data:`PARAM_PATTERN`)."""
    return re.fullmatch(PARAM_PATTERN, key) is not None


# Per-run quantities computed by the analysis.
ACC_GAP = DERIVED_PREFIX + "acc_gap"
TIME_RATIO = DERIVED_PREFIX + "time_ratio"
DIVERGED = DERIVED_PREFIX + "diverged"
VERDICT_PASSED = DERIVED_PREFIX + "verdict_pass"

# Long frame of metric histories.
HISTORY_KEY = "key"
HISTORY_STEP = "step"
HISTORY_VALUE = "value"
HISTORY_TIMESTAMP = "timestamp"


def param(key: str) -> str:
    """Return the frame column that holds MLflow param ``key``."""
    return PARAM_PREFIX + key


def metric(key: str) -> str:
    """Return the frame column that holds the latest value of MLflow metric ``key``."""
    return METRIC_PREFIX + key


def tag(key: str) -> str:
    """Return the frame column that holds MLflow tag ``key``."""
    return TAG_PREFIX + key


def strip_prefix(column: str) -> str:
    """Return ``column`` without its namespace prefix (``params.``, ``metrics.``, ``tags.``, ``derived.``)."""
    for prefix in (PARAM_PREFIX, METRIC_PREFIX, TAG_PREFIX, DERIVED_PREFIX):
        if column.startswith(prefix):
            return column[len(prefix) :]
    return column


_TAG_NAMES = frozenset(value for name, value in vars(Tags).items() if not name.startswith("_"))
