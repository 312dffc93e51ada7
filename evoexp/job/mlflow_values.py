"""How evoexp's values are written into MLflow: params, tags, metric names, dataset inputs, and UI addresses.

Params of equal value print identically (``10`` for both ``10`` and ``10.0``; MLflow compares params as strings),
and the numeric params that a sweep varies are mirrored as metrics ``config/<key>`` (:func:`mirror_metrics`) so
that the UI sorts and filters them as numbers. Params and tags are truncated to MLflow's length limits, metric names
lose the characters MLflow refuses (:func:`metric_key`), a dataset's splits become MLflow dataset inputs (the UI's
Dataset column, :func:`dataset_inputs`), and :func:`ui_url` opens an experiment or run in the UI's training view.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from evoexp.keys import CONFIG_METRIC_PREFIX, Tags

__all__ = [
    "DATASET_CONTEXTS",
    "DEFAULT_UI",
    "Splits",
    "dataset_inputs",
    "metric_key",
    "mirror_metrics",
    "param_value",
    "tag_value",
    "ui_url",
]

_INVALID_KEY_CHARS = re.compile(r"[^\w\-./: ]")
_MAX_PARAM_LENGTH = 6000
_MAX_TAG_LENGTH = 8000
DEFAULT_UI = "http://127.0.0.1:5000"


def _canonical(value: Any) -> Any:
    """``value`` with integral floats as ints (recursively), so that ``10.0`` and ``10`` print alike."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def param_value(value: Any) -> str:
    """Format a config value as an MLflow param, within MLflow's length limit.

    Numbers of equal value print identically: integral floats print as ints (``10.0`` -> ``10``, so the search
    ``params.`surrogate.slope` = '10'`` matches), others in Python's shortest form (``0.5``, ``1e-05``). Lists and
    mappings print as JSON (``[64, 32]``), None as ``null``.
    """
    value = _canonical(value)
    text = json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)
    return text[:_MAX_PARAM_LENGTH]


def tag_value(value: Any) -> str:
    """Format a value as an MLflow tag: its text, truncated to MLflow's length limit."""
    return str(value)[:_MAX_TAG_LENGTH]


def mirror_metrics(params: Mapping[str, Any], keys: Iterable[str]) -> dict[str, float]:
    """Metrics ``config/<key>`` mirroring the numeric params among ``keys`` (others are left out).

    MLflow compares params as strings; the mirrors make sweep axes such as ``surrogate.slope`` sortable and
    filterable as numbers in the UI (``metrics.`config/surrogate.slope` >= 10``).
    """
    mirrored = {}
    for key in dict.fromkeys(keys):
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            mirrored[f"{CONFIG_METRIC_PREFIX}{key}"] = float(value)
    return mirrored


def ui_url(tracking_uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """URL of an experiment's training-runs view (or of one run) in the MLflow UI.

    MLflow 3 opens an experiment on its GenAI overview (traces, token usage) unless the URL asks for the
    model-training view (``workflowType=machine_learning``). A server URI (``http(s)://...``) is its own UI; for
    other stores the URL is that of ``mlflow ui`` on its default address, :data:`DEFAULT_UI`.

    Args:
        tracking_uri: The store's tracking URI.
        experiment_id: Id of the experiment.
        run_id: Id of a run to open instead of the run list.
    """
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else DEFAULT_UI
    page = "runs" if run_id is None else f"runs/{run_id}"
    return f"{base}/#/experiments/{experiment_id}/{page}?workflowType=machine_learning"


def metric_key(key: str) -> str:
    """``key`` with every character MLflow refuses in metric names replaced by ``_``.

    MLflow accepts alphanumerics, ``_ - . / : `` and spaces; e.g. ``alignment/cosine/sigma=0.01`` becomes
    ``alignment/cosine/sigma_0.01``.
    """
    return _INVALID_KEY_CHARS.sub("_", key)


class _Split(Protocol):
    """One split of a dataset (:class:`evoexp.data.SpikeDataset`)."""

    name: str
    spikes: Any
    features: Any
    labels: Any

    def __len__(self) -> int: ...


class Splits(Protocol):
    """Train/validation/test splits (:class:`evoexp.data.DatasetSplits`)."""

    @property
    def train(self) -> _Split: ...
    @property
    def val(self) -> _Split: ...
    @property
    def test(self) -> _Split: ...


DATASET_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
"""MLflow dataset context of each split (shown next to the dataset in the UI)."""


def dataset_inputs(splits: Splits, *, source: Mapping[str, Any]) -> list[Any]:
    """MLflow dataset inputs of the non-empty splits: name, digest, schema and shapes, context, code source.

    Args:
        splits: The dataset's splits.
        source: What generated the data (generator keyword arguments), recorded as the source's tags.

    Returns:
        One :class:`mlflow.entities.DatasetInput` per non-empty split, tagged ``mlflow.data.context``.
    """
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for split, context in DATASET_CONTEXTS.items():
        data = getattr(splits, split)
        if not len(data):
            continue
        tags = {"generator": f"evoexp.data.get_dataset({data.name!r})", "subset": split}
        tags.update({key: param_value(value) for key, value in source.items()})
        dataset = from_numpy(
            {"spikes": data.spikes.numpy(), "features": data.features.numpy()},
            targets=data.labels.numpy(),
            source=CodeDatasetSource(tags),
            name=data.name,
        )
        inputs.append(DatasetInput(Dataset(**dataset.to_dict()), tags=[InputTag(Tags.DATASET_CONTEXT, context)]))
    return inputs
