"""Flat views and content hashes of a resolved config: with the code identity, what identifies a run.

A job's identity has two parts. Its **config hash** is the hash of its resolved config without the keys that cannot
change its results (:data:`NON_RESULT_KEYS`: where it is logged, how many threads it uses, whether it draws figures).
Its **code identity** (:func:`evoexp.identity.code_identity`) names the code that computes it: the evoexp version,
a digest of the package's source and the torch version. Re-running a sweep skips a job only when a FINISHED run has
the same config hash AND the same code identity (tag ``Tags.CODE_IDENTITY`` of :mod:`evoexp.keys`); after a fix to
the engine every job runs again, unless ``tracking.reuse_across_code=true`` says that runs of other code may be served.

A job whose network, ANN or dataset callable is defined outside evoexp (``model._target_=my_nets.Net``) also holds a
digest of that source file under ``sources`` (:func:`evoexp.job.config.targets.source_digests`), so editing it runs
the job again.

The ANN twin's identity keeps only what the ANN's training depends on (:data:`ANN_KEYS`: data, sizes, activation,
trainer and early stopping, seed; the ``ann`` node holds its call, e.g. the twin's hidden sizes), so the SNN jobs of a
surrogate x slope sweep share one ANN per seed; a stored
ANN is reused under the same rule about the code identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from evoexp.keys import PRESENTATION_KEYS

__all__ = [
    "ANN_KEYS",
    "NON_RESULT_KEYS",
    "SNN_ONLY_KEYS",
    "ann_hash",
    "config_hash",
    "flatten",
    "to_plain",
]

NON_RESULT_KEYS = PRESENTATION_KEYS
ANN_KEYS = (
    "seed",
    "dataset",
    "trainer",
    "ann",
    "sources.ann",
    "sources.dataset",
    "model.path",  # a NIR graph's hidden sizes are the ANN twin's
    "verifier.convergence.patience",
    "verifier.convergence.min_delta",
)
"""Every config key the ANN's construction and training read (see :func:`evoexp.job.build.build_ann` and
:func:`evoexp.job.build.training_options`), minus :data:`SNN_ONLY_KEYS`."""
SNN_ONLY_KEYS = ("trainer.rate_reg", "trainer.target_rate")
def to_plain(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Return the resolved config as plain, JSON-serialisable Python containers."""
    if isinstance(cfg, DictConfig):
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    else:
        plain = json.loads(json.dumps(cfg))
    if not isinstance(plain, dict):
        raise TypeError(f"cfg must be a mapping, got {type(plain).__name__}")
    return cast("dict[str, Any]", plain)  # a config's keys are strings


def flatten(tree: Mapping[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys; lists and scalars stay values.

    Example: ``{"model": {"hidden_sizes": [128]}}`` becomes ``{"model.hidden_sizes": [128]}``.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _digest(values: Mapping[str, Any]) -> str:
    """Return the first 16 hex digits of the SHA-256 of ``values`` as canonical JSON."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _select(flat: Mapping[str, Any], prefixes: Iterable[str], *, keep: bool) -> dict[str, Any]:
    """Keep (``keep=True``) or drop the entries of ``flat`` whose key is one of ``prefixes`` or below one."""
    prefixes = tuple(prefixes)

    def matches(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in prefixes)

    return {k: v for k, v in flat.items() if matches(k) == keep}


def config_hash(cfg: DictConfig | Mapping[str, Any]) -> str:
    """Identity of a job: hash of its resolved config without :data:`NON_RESULT_KEYS`."""
    return _digest(_select(flatten(to_plain(cfg)), NON_RESULT_KEYS, keep=False))


def ann_hash(cfg: DictConfig | Mapping[str, Any]) -> str:
    """Identity of the job's ANN twin: hash of :data:`ANN_KEYS` minus :data:`SNN_ONLY_KEYS` (no surrogate)."""
    kept = _select(flatten(to_plain(cfg)), ANN_KEYS, keep=True)
    return _digest(_select(kept, SNN_ONLY_KEYS, keep=False))
