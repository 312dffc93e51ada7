"""``python -m evoexp`` / ``evoexp``: the Hydra app (one job = one verification run; ``-m`` for sweeps).

The configs ship inside the package (``evoexp/conf``, found as ``pkg://evoexp.conf``), so an installed ``evoexp`` runs
from any directory; add your own with ``--config-dir DIR`` or a ``hydra.searchpath`` entry. Configuration errors
print one line (``HYDRA_FULL_ERROR=1`` shows the full trace); see ``python -m evoexp --help``. Ctrl-C and SIGTERM close
every run the command opened (:func:`evoexp.job.abort.run_guarded`; docs/guides/reliability.md).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from evoexp.job.abort import run_guarded
from evoexp.job.config import importable, register_configs, report_config_errors

CONFIG_DIR = "pkg://evoexp.conf"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    """Hydra task function: run one job and return its objective (validation accuracy) to the sweeper."""
    from evoexp.job.task import run_job

    return run_job(cfg)


def main() -> None:
    """Entry point of ``python -m evoexp`` and the ``evoexp`` console script.

    The launch directory is importable (as with ``python -m``), so ``model._target_=my_nets.Net`` finds ``my_nets.py``
    there.
    """
    importable(Path.cwd())
    register_configs()
    report_config_errors(lambda: run_guarded(_hydra_main))


if __name__ == "__main__":
    main()
