"""The comparison's outputs: ``agreement.csv``, ``agreement.md`` and the library x library agreement matrix figure.

:func:`write_report` writes all of them into one folder, through a temporary folder renamed into place, so a failed
run leaves nothing behind. :func:`plot_agreement_matrix` draws one matrix on a given ``Axes``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import matplotlib.pyplot as plt
import numpy as np

from evoexp.crosscheck.catalogue import CATALOGUE
from evoexp.crosscheck.compare import FORWARD_TOL, SMOOTH_TOL, CrosscheckResult, PairAgreement

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["CSV_COLUMNS", "Metric", "agreement_csv", "agreement_figure", "agreement_markdown", "plot_agreement_matrix",
           "write_report"]

Metric = Literal["forward", "smooth", "spiking"]
CSV_COLUMNS: tuple[str, ...] = (
    "network", "library_a", "library_b", "forward_first_divergence", "forward_first_difference", "spike_mismatches",
    "smooth_grad_max_rel", "spiking_grad_max_rel", "spiking_grad_max_rel_float32", "math_agrees",
    "smooth_grads_agree", "causes", "unexplained")
"""Columns of ``agreement.csv`` (one row per library pair)."""


def _causes(pair: PairAgreement) -> str:
    return "; ".join(pair.causes) if pair.causes else "none"


def _row(result: CrosscheckResult, pair: PairAgreement) -> list[str]:
    first = pair.forward.first_divergence
    return [result.network, pair.library_a, pair.library_b, "" if first is None else str(first), pair.forward.what,
            str(pair.forward.spike_mismatches), f"{pair.smooth.max_rel:.3g}", f"{pair.spiking64.max_rel:.3g}",
            f"{pair.spiking32.max_rel:.3g}", str(pair.math_agrees), str(pair.smooth.max_rel <= SMOOTH_TOL),
            _causes(pair), "; ".join(pair.unexplained)]


def agreement_csv(results: Sequence[CrosscheckResult]) -> str:
    """The CSV text: a header of :data:`CSV_COLUMNS` and one row per pair of each result."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for result in results:
        writer.writerows(_row(result, pair) for pair in result.pairs)
    return out.getvalue()


def _cell(pair: PairAgreement | None, metric: Metric) -> str:
    if pair is None:
        return "—"
    if metric == "forward":
        first = pair.forward.first_divergence
        return "same" if first is None else f"step {first}"
    value = pair.smooth.max_rel if metric == "smooth" else pair.spiking64.max_rel
    return f"{value:.1e}"


def _lookup(result: CrosscheckResult, a: str, b: str) -> PairAgreement | None:
    for pair in result.pairs:
        if {pair.library_a, pair.library_b} == {a, b}:
            return pair
    return None


def _matrix_table(result: CrosscheckResult, metric: Metric) -> list[str]:
    libs = result.libraries
    lines = ["| | " + " | ".join(libs) + " |", "|---|" + "---|" * len(libs)]
    for a in libs:
        cells = ["·" if a == b else _cell(_lookup(result, a, b), metric) for b in libs]
        lines.append(f"| **{a}** | " + " | ".join(cells) + " |")
    return lines


def agreement_markdown(
    results: Sequence[CrosscheckResult], *, command: str | None = None, code: str | None = None
) -> str:
    """The Markdown report: per network, the three matrices, the pairs with their causes, the emulation checks.

    ``command`` and ``code`` (the :func:`~evoexp.identity.code_identity` that computed ``results``) head the report.
    """
    lines = ["# Cross-library agreement", ""]
    if command:
        lines += [f"Produced by `{command}`" + (f" with code `{code}`." if code else "."), ""]
    lines += [f"Forward: first time step where spikes differ or a membrane or readout value differs by more than "
              f"{FORWARD_TOL:g} relative (float64, spiking mode). Gradients: largest relative difference of the loss "
              f"gradient over all parameters, smooth mode (float64; where no cause changes the math they must agree "
              f"to {SMOOTH_TOL:g}) and spiking mode as each library trains (float64; float32 in the CSV).", ""]
    for result in results:
        lines += [f"## {result.network}", "", f"Settings: {result.settings}. Input: {result.batch} samples x "
                  f"{result.steps} steps. Compared: {', '.join(result.libraries)} ({result.seconds:.1f} s).", ""]
        if result.skipped:
            lines += ["Skipped:", ""] + [f"- {lib}: {reason}" for lib, reason in result.skipped.items()] + [""]
        if result.nonfinite:
            lines += ["Non-finite gradients (the library's numerics, not a convention; its comparisons there are "
                      "NaN):", ""]
            lines += [f"- {lib}: {', '.join(modes)}" for lib, modes in result.nonfinite.items()] + [""]
        for metric, title in (("forward", "Forward: first divergent step"),
                              ("smooth", "Smooth-mode gradient, max relative difference (float64)"),
                              ("spiking", "Spiking-mode gradient as each library trains, max relative difference "
                                          "(float64)")):
            lines += [f"### {title}", "", *_matrix_table(result, metric), ""]  # type: ignore[arg-type]
        lines += ["### Pairs and causes", "", "| pair | forward | smooth grad | math agrees | causes |",
                  "|---|---|---|---|---|"]
        for pair in result.pairs:
            verdict = ("yes, agrees" if pair.smooth.max_rel <= SMOOTH_TOL else "yes, **differs**") \
                if pair.math_agrees else "no"
            unexplained = f" — **unexplained: {'; '.join(pair.unexplained)}**" if pair.unexplained else ""
            lines.append(f"| {pair.library_a} / {pair.library_b} | {_cell(pair, 'forward')} | "
                         f"{pair.smooth.max_rel:.1e} | {verdict} | {_causes(pair)}{unexplained} |")
        lines += ["", "### evoexp's engine with each library's stated model", "",
                  "| library | forward | smooth grad | reproduced |", "|---|---|---|---|"]
        for emulation in result.emulations:
            first = emulation.forward.first_divergence
            lines.append(f"| {emulation.library} | {'same' if first is None else f'step {first}'} | "
                         f"{emulation.smooth.max_rel:.1e} | {'yes' if emulation.reproduced else '**no**'} |")
        lines.append("")
    found = [name for name in CATALOGUE if any(name in p.causes for r in results for p in r.pairs)]
    if found:
        lines += ["## Causes found", "", "| cause | what differs |", "|---|---|"]
        lines += [f"| `{name}` | {CATALOGUE[name].title}: {CATALOGUE[name].description} |" for name in found]
        lines.append("")
    return "\n".join(lines)


def plot_agreement_matrix(result: CrosscheckResult, ax: Axes, *, metric: Metric = "smooth") -> Axes:
    """Draw the library x library matrix of ``metric`` on ``ax`` and return it.

    ``"forward"`` shows the first divergent step (green: identical), ``"smooth"``/``"spiking"`` the largest relative
    gradient difference on a log colour scale (green below :data:`~evoexp.crosscheck.compare.SMOOTH_TOL`).
    Off-diagonal cells are annotated with the value and the number of causes.
    """
    libs = result.libraries
    n = len(libs)
    values = np.full((n, n), np.nan)
    labels = [["" for _ in libs] for _ in libs]
    for i, a in enumerate(libs):
        for j, b in enumerate(libs):
            pair = _lookup(result, a, b) if i != j else None
            if pair is None:
                continue
            if metric == "forward":
                first = pair.forward.first_divergence
                values[i, j] = 0.0 if first is None else 1.0
                text = "same" if first is None else f"step {first}"
            else:
                rel = pair.smooth.max_rel if metric == "smooth" else pair.spiking64.max_rel
                values[i, j] = 0.0 if rel <= SMOOTH_TOL else min(1.0, 0.4 + 0.1 * (math.log10(rel) + 6))
                text = f"{rel:.0e}"
            labels[i][j] = f"{text}\n{len(pair.causes)} cause{'s' if len(pair.causes) != 1 else ''}"
    ax.imshow(values, cmap="RdYlGn_r", vmin=0.0, vmax=1.0)
    ax.grid(False)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, labels[i][j] if i != j else "·", ha="center", va="center", fontsize=6,
                    color="white" if i != j else "black")
    ax.set_xticks(range(n), libs, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(n), libs, fontsize=7)
    ax.set_title({"forward": "forward", "smooth": "smooth-mode gradient",
                  "spiking": "spiking-mode gradient"}[metric], fontsize=8)
    return ax


def agreement_figure(result: CrosscheckResult) -> Figure:
    """A figure with the forward, smooth-gradient and spiking-gradient matrices of ``result`` side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.7), layout="constrained")
    for ax, metric in zip(axes, ("forward", "smooth", "spiking")):
        plot_agreement_matrix(result, ax, metric=metric)  # type: ignore[arg-type]  # one of the Metric names
    fig.suptitle(f"{Path(result.network).stem}: agreement between libraries", fontsize=9)
    return fig


def write_report(results: Sequence[CrosscheckResult], out: str | os.PathLike[str], *,
                 command: str | None = None, code: str | None = None,
                 formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``agreement.csv``, ``agreement.md`` and ``agreement_<network>.<format>`` into folder ``out``.

    ``agreement.md`` names the ``command`` and the ``code`` identity that produced the results.

    The files are written to a temporary folder next to ``out`` and moved into ``out`` only when all succeeded.

    Returns:
        The written files.
    """
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (staging / "agreement.csv").write_text(agreement_csv(results), encoding="utf-8")
        (staging / "agreement.md").write_text(agreement_markdown(results, command=command, code=code), encoding="utf-8")
        for result in results:
            if len(result.libraries) < 2:
                continue
            fig = agreement_figure(result)
            try:
                for fmt in formats:
                    fig.savefig(staging / f"agreement_{Path(result.network).stem}.{fmt}", dpi=200)
            finally:
                plt.close(fig)
        target.mkdir(exist_ok=True)
        written = []
        for file in sorted(staging.iterdir()):
            destination = target / file.name
            shutil.move(str(file), destination)
            written.append(destination)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
