"""Registration of the schemas in Hydra's ConfigStore.

``conf/config.yaml`` starts its defaults list with ``evoexp_config`` (the :class:`~evoexp.job.config.schema.Config`
schema), so every group and key is typed. The ``model``, ``dataset`` and ``ann`` options of evoexp's own callables
(:data:`PRESET_TARGETS`) extend a schema generated from the callable's signature
(:func:`~evoexp.job.config.targets.structured_schema`), stored under the internal group ``schema/<group>``:
``conf/dataset/digits.yaml`` starts with ``- /schema/dataset/digits@_here_``. A wrong type or an unknown key of such a
preset then fails while Hydra composes the config; options naming any other callable (``model=custom``, the example
networks) are checked against its signature when the config is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hydra.core.config_store import ConfigStore

from evoexp.data import make_digits, make_randman, make_shd, make_ssc, make_synthetic
from evoexp.job.config.schema import Config
from evoexp.job.config.targets import DATASET_KEYS, INJECTED, MODEL_KEYS, structured_schema
from evoexp.models import lif_snn, mlp

__all__ = ["PRESET_TARGETS", "SCHEMA_GROUP", "register_configs"]

SCHEMA_GROUP = "schema"

PRESET_TARGETS: dict[str, dict[str, tuple[str, Callable[..., Any]]]] = {
    "model": {"lif_snn": ("evoexp.models.lif_snn", lif_snn)},
    "ann": {"mlp": ("evoexp.models.mlp", mlp)},
    "dataset": {
        "randman": ("evoexp.data.make_randman", make_randman),
        "digits": ("evoexp.data.make_digits", make_digits),
        "synthetic": ("evoexp.data.make_synthetic", make_synthetic),
        "shd": ("evoexp.data.make_shd", make_shd),
        "ssc": ("evoexp.data.make_ssc", make_ssc),
    },
}
"""Per group: schema name -> (``_target_`` path, callable) of evoexp's own callables."""


def register_configs() -> None:
    """Store the top-level schema as ``evoexp_config`` and each of :data:`PRESET_TARGETS` as ``schema/<group>/<name>``.

    Idempotent: storing again replaces the same nodes.
    """
    store = ConfigStore.instance()
    store.store(name="evoexp_config", node=Config)
    for group, targets in PRESET_TARGETS.items():
        own = {"model": MODEL_KEYS, "dataset": DATASET_KEYS}.get(group)
        injected = () if group == "dataset" else INJECTED
        for name, (path, fn) in targets.items():
            schema = structured_schema(fn, path, injected=injected, own_keys=own)
            store.store(group=f"{SCHEMA_GROUP}/{group}", name=name, node=schema)
