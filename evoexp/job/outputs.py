"""What a job writes into its output directory: resolved config, ``results.json``, ``report.md`` and figures.

``results.json`` holds the config, its identities (config hash, code identity), the outcome and objective, the
summary metrics, a ``test`` section that says which test numbers are which (best-validation vs last epoch), every
typed verification result and the training runs. ``report.md`` is the suite's Markdown report headed by the run's
facts. Figures (``figures: true``): the surrogate's pseudo-derivative and the SNN/ANN validation-accuracy curves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import evoexp
from evoexp.job.build import build_surrogate
from evoexp.job.config import Config, to_plain
from evoexp.job.files import write_atomic
from evoexp.job.run import Outcome
from evoexp.keys import SURROGATE_NAME_PARAM, SURROGATE_SLOPE_PARAM
from evoexp.labels import config_label
from evoexp.verification.report import generate_report

__all__ = ["CONFIG_FILE", "REPORT_FILE", "RESULTS_FILE", "report_facts", "write_outputs"]

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
CONFIG_FILE = "config_resolved.yaml"


def report_facts(config: Config, outcome: Outcome, *, config_hash: str, code_identity: str) -> list[str]:
    """The Markdown bullet lines that head a job's report (setup, outcome, objective, test accuracies, identity)."""
    model = outcome.model
    lines = [
        f"- dataset: {config.dataset.name} ({config.dataset.path}); model: {config.model.name} ({config.model.path}, "
        f"{model.get('library', '?')} {model.get('library_version', '')}, {model.get('params', '?')} parameters); "
        f"trainer: {config.trainer.optimizer}, lr {config.trainer.lr:g}, {config.trainer.epochs} epochs; "
        f"verifier: {config.verifier.name}",
        f"- surrogate: {model.get('surrogate', '?')}",
        f"- ANN: {config.ann.path or 'not configured (ann._target_ is null): no SNN-vs-ANN benchmark'}",
        "- outcome: " + ("finished" if outcome.diverged is None else f"diverged ({outcome.diverged})"),
        f"- best SNN validation accuracy: {outcome.objective:.4f}",
    ]
    for name, entry in outcome.test_section().items():
        if name == "selection":
            continue
        best = "n/a" if entry["best"] is None else f"{entry['best']['acc']:.4f}"
        lines.append(
            f"- {name.upper()} test accuracy: {best} at the best-validation epoch {entry['best_epoch']} (weights "
            f"restored; `{name}/test/acc_best`), {entry['last']['acc']:.4f} after the last epoch "
            f"(`{name}/test/acc_last`)"
        )
    lines += [f"- config hash: {config_hash}; code: {code_identity}"]
    return lines


def write_outputs(
    directory: Path,
    cfg: DictConfig,
    config: Config,
    outcome: Outcome,
    *,
    config_hash: str,
    code_identity: str,
) -> list[Path]:
    """Write the resolved config, ``results.json``, ``report.md`` and (with ``figures: true``) figures.

    Each file is written atomically (:func:`evoexp.job.files.write_atomic`): a full disk leaves no partial file.

    Args:
        directory: The job's output directory (created if missing).
        cfg: The composed config (resolved into ``config_resolved.yaml`` and ``results.json``).
        config: Its typed form.
        outcome: What the experiment produced.
        config_hash: The run's config identity.
        code_identity: The code that produced it (:func:`evoexp.identity.code_identity`).

    Returns:
        The files written (the job's artifacts, with its log and ``.hydra/``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = [write_atomic(directory / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))]
    payload: dict[str, Any] = {
        "evoexp_version": evoexp.__version__,
        "config_hash": config_hash,
        "code_identity": code_identity,
        "config": to_plain(cfg),
        **outcome.to_dict(),
    }
    files.append(write_atomic(directory / RESULTS_FILE, json.dumps(payload, indent=2, allow_nan=False) + "\n"))
    title = f"evoexp run: {config.surrogate.name} (slope {config.surrogate.slope:g}), seed {config.seed}"
    heading, body = generate_report(outcome.results, title=title).split("\n", 1)
    facts = report_facts(config, outcome, config_hash=config_hash, code_identity=code_identity)
    files.append(write_atomic(directory / REPORT_FILE, "\n".join([heading, "", *facts, body])))
    if config.figures:
        files += _save_figures(directory / "figures", config, outcome)
    return files


def _val_acc(epochs: Mapping[int, Mapping[str, float]]) -> dict[int, float]:
    return {epoch: metrics["val/acc"] for epoch, metrics in epochs.items() if "val/acc" in metrics}


def _save_figures(directory: Path, config: Config, outcome: Outcome) -> list[Path]:
    """Save the surrogate shape and the SNN/ANN validation-accuracy curves (%) as PNG files, titled with the run.

    Returns:
        The written paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    from evoexp import figures

    curves = {name.upper(): _val_acc(run.epoch_metrics()) for name, run in outcome.training.items()}
    shape = {SURROGATE_NAME_PARAM: config.surrogate.name, SURROGATE_SLOPE_PARAM: config.surrogate.slope}
    title = f"{config_label(shape)}, seed {config.seed}"
    return figures.save_run_figures(directory, build_surrogate(config), curves, title=title)
