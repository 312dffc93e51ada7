"""Registration of the schemas in Hydra's ConfigStore.

``conf/config.yaml`` starts its defaults list with ``evoexp_config`` (the :class:`~evoexp.job.config.schema.Config`
schema), so every group and key is typed. Dataset options differ in their fields, so each has its own schema under
the internal group ``schema/dataset``; ``conf/dataset/<name>.yaml`` extends it with
``- /schema/dataset/<name>@_here_``.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from evoexp.job.config.schema import DATASET_SCHEMAS, Config

__all__ = ["SCHEMA_GROUP", "register_configs"]

SCHEMA_GROUP = "schema"


def register_configs() -> None:
    """Store the top-level schema as ``evoexp_config`` and each dataset schema as ``schema/dataset/<name>``.

    Idempotent: storing again replaces the same nodes.
    """
    store = ConfigStore.instance()
    store.store(name="evoexp_config", node=Config)
    for name, schema in DATASET_SCHEMAS.items():
        store.store(group=f"{SCHEMA_GROUP}/dataset", name=name, node=schema)
