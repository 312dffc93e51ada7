"""Shared test configuration: one intra-op thread, deterministic seeds, the Hydra compose fixture, a real MLflow server.

Many tests run thousands of tiny tensor ops; on a shared 2-core machine two threads were measured up to 100x slower
than one, so every test runs single-threaded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _mlflow_server(folder: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``mlflow server`` on ``port`` with its SQLite store in ``folder``; stopped (its process group) on exit."""
    folder.mkdir(exist_ok=True)
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}"]
    server = subprocess.Popen(
        command,
        cwd=folder,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a TCP port on 127.0.0.1 that is free now."""
    return _free_port


@pytest.fixture
def mlflow_server() -> Callable[[Path, int], contextlib.AbstractContextManager[subprocess.Popen[bytes]]]:
    """``mlflow_server(folder, port)``: a context manager running a real MLflow server (waits until it accepts)."""
    return _mlflow_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu``-marked tests when no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
