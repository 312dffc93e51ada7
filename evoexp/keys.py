"""Column names of the tidy run frame and the MLflow keys that ``evoexp.app`` writes.

One leaf module shared by the writer and its readers (:mod:`evoexp.analysis`, which imports it as ``schema``, and
:mod:`evoexp.figures`), so that neither reader imports the other.

The loader turns every MLflow run into one row. Params, metrics and tags keep their MLflow key behind a
namespace prefix (the convention of :func:`mlflow.search_runs`), so that a param ``surrogate.slope``
becomes column ``params.surrogate.slope`` and a metric ``snn/test/acc`` becomes ``metrics.snn/test/acc``.
Per-run quantities that the analysis computes itself live under ``derived.``.
"""

from __future__ import annotations

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

# Tags.
SWEEP_ID_TAG = "evoexp.sweep_id"
KIND_TAG = "evoexp.kind"
OUTCOME_TAG = "evoexp.outcome"
SUMMARY_KIND = "summary"
SWEEP_KIND = "sweep"
DIVERGED_OUTCOME = "diverged"

# Params.
SEED_PARAM = "seed"
SURROGATE_NAME_PARAM = "surrogate.name"
SURROGATE_SLOPE_PARAM = "surrogate.slope"
SURROGATE_SCALE_PARAM = "surrogate.scale"
IGNORED_PARAM_PREFIXES = ("hydra.", "tracking.")

# Summary metrics (test metrics: weights of the best-validation epoch restored; "_last" keys: final epoch).
SNN_TEST_ACC = "snn/test/acc_best"
ANN_TEST_ACC = "ann/test/acc_best"
SNN_TEST_LOSS = "snn/test/loss_best"
ANN_TEST_LOSS = "ann/test/loss_best"
SNN_TEST_ACC_LAST = "snn/test/acc_last"
ANN_TEST_ACC_LAST = "ann/test/acc_last"
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
STABILITY_GRADIENT_OK = "stability/gradient_ok"
STABILITY_WEIGHT_OK = "stability/weight_ok"
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

# Per-run quantities computed by the analysis.
ACC_GAP = DERIVED_PREFIX + "acc_gap"
TIME_RATIO = DERIVED_PREFIX + "time_ratio"
DIVERGED = DERIVED_PREFIX + "diverged"

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
