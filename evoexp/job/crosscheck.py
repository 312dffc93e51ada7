"""The job of ``experiment=crosscheck``: the model group's network compared across libraries instead of training.

The network is the model group's (:func:`evoexp.job.build.build_model`): the NIR graph of ``model=nir``
(:func:`evoexp.nir.nir_network`), or evoexp's SNN exported with :func:`evoexp.nir.to_nir` (its metadata keeps
evoexp's own step conventions). The comparison (:func:`evoexp.crosscheck.crosscheck`) writes ``agreement.csv``,
``agreement.md`` and the matrix figures into the job's ``crosscheck/`` folder; :func:`evoexp.job.task.execute` logs
them as MLflow artifacts.
"""

from __future__ import annotations

from pathlib import Path

from evoexp.crosscheck import crosscheck
from evoexp.crosscheck.report import write_report
from evoexp.data import DatasetSplits
from evoexp.job.build import build_model
from evoexp.job.config import Config, ConfigValidationError
from evoexp.job.run import Outcome
from evoexp.keys import CROSSCHECK_ARTIFACT_PATH
from evoexp.models import SNN
from evoexp.nir import NIRNetwork, from_nir, to_nir

__all__ = ["run_crosscheck"]


def _network(config: Config, data: DatasetSplits) -> NIRNetwork:
    """The configured network as a NIR-engine network: a NIR graph as built, evoexp's SNN through its NIR export.

    Raises:
        ConfigValidationError: The model group's network is neither (one line naming ``model``).
    """
    network = build_model(config, data).network
    if isinstance(network, NIRNetwork):
        return network
    if not isinstance(network, SNN):
        raise ConfigValidationError(
            f"model: experiment=crosscheck compares NIR graphs and evoexp's SNN, got {type(network).__name__}"
        )
    args = config.model.args
    return from_nir(to_nir(network, dt=float(args["dt"])), readout=args.get("readout", "max"))


def run_crosscheck(config: Config, *, data: DatasetSplits, output_dir: Path) -> Outcome:
    """Compare the configured network across libraries and write the agreement files into ``output_dir``.

    Returns:
        An :class:`~evoexp.job.run.Outcome` with the ``crosscheck`` result and its summary metrics (the verdict is
        ``crosscheck/passed``); nothing is trained, so the objective is NaN.
    """
    settings = config.crosscheck
    result = crosscheck(_network(config, data), libraries=list(settings.libraries), align=list(settings.align),
                        steps=settings.steps, batch=settings.batch, seed=config.seed,
                        label=Path(nir_path).stem if (nir_path := config.model.args.get("path")) else config.model.name)
    write_report([result], output_dir / CROSSCHECK_ARTIFACT_PATH, formats=("png",))
    return Outcome(results={"crosscheck": result}, metrics=result.summary())
