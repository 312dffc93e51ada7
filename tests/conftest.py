"""Shared test configuration: one intra-op thread, deterministic seeds and the Hydra compose fixture.

Many tests run thousands of tiny tensor ops; on a shared 2-core machine two threads were measured up to 100x slower
than one, so every test runs single-threaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from evoexp.job.config import register_configs

CONF = Path(__file__).resolve().parents[1] / "evoexp" / "conf"

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="package")
def compose_config() -> Callable[..., DictConfig]:
    """Compose the package's Hydra config (``evoexp/conf/config.yaml``) with overrides, as ``python -m evoexp`` would.

    The structured-config schemas are registered once per package; each call initialises Hydra on the config
    directory, composes and clears Hydra again, so no test leaves global Hydra state behind. ``hydra=True`` also
    composes the ``hydra`` node (launcher, sweeper, overrides).
    """
    register_configs()

    def compose_with(*overrides: str, hydra: bool = False) -> DictConfig:
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)
        finally:
            GlobalHydra.instance().clear()

    return compose_with


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu``-marked tests when no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
