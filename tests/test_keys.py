"""The one vocabulary (evoexp.keys): what it declares and what it rejects.

``tests/test_app.py`` reads back every tag, metric and param of a tracked job and checks each with these functions.
"""

from __future__ import annotations

import pytest

from evoexp import keys


@pytest.mark.parametrize(
    "name",
    [keys.OBJECTIVE, keys.SNN_TEST_ACC, keys.ANN_TIME_PER_EPOCH, keys.ANALYSIS_N_RUNS, "snn/grad_norm/hidden.0",
     "stability/grad_rms/readout", "gradient/max_abs_error", "config/surrogate.slope", "snn/train/eval_loss"],
)
def test_declared_metrics_are_accepted(name: str) -> None:
    assert keys.is_declared_metric(name)


@pytest.mark.parametrize(
    "name", ["snn/val/accuracy", "snn_val_acc", "verifier/gradient/max_abs_error", "ann/test/acc", "grad_norm", ""]
)
def test_undeclared_metrics_are_rejected(name: str) -> None:
    assert not keys.is_declared_metric(name)


def test_tags_are_exactly_the_declared_ones() -> None:
    assert keys.is_declared_tag(keys.Tags.CODE_IDENTITY) and keys.is_declared_tag(keys.SWEEP_ID_TAG)
    assert keys.is_declared_tag("mlflow.runName")
    assert not keys.is_declared_tag("evoexp.sweep") and not keys.is_declared_tag("evoexp.code_id")


def test_params_are_flattened_config_keys() -> None:
    assert keys.is_declared_param("verifier.gradient.atol") and keys.is_declared_param("seed")
    assert not keys.is_declared_param("snn/val/acc") and not keys.is_declared_param("Surrogate.Slope")


def test_each_tag_name_is_declared_once() -> None:
    names = [v for k, v in vars(keys.Tags).items() if not k.startswith("_")]
    assert len(names) == len(set(names))
