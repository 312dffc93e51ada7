"""Tables and figures of docs/guides/theory.md (Gygax & Zenke 2025 findings), from the runs in the MLflow store.

Run the three experiments first (docs/guides/theory.md gives the commands):

    ./multirun.sh --experiment theory_circulation
    ./multirun.sh --experiment theory_sign
    ./multirun.sh --experiment theory_escape

then ``.venv/bin/python docs/theory_results.py [--tracking-uri URI]`` writes ``docs/results/theory/``:
``results.md`` (every number the guide quotes, per run, and the code identity and git commit of the runs),
``runs.csv`` (one row per run: experiment, configuration, identity tags and the exact metrics; the record that
``tests/test_results_reproduce.py`` re-computes a slice of), ``circulation.png``, ``sign_disagreement.png`` and
``escape_noise.png``. The default store is ``sqlite:///mlruns.db`` in the current directory.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from evoexp import keys
from evoexp.figures import new_figure, series_style
from evoexp.job.analysis.load import load_history, load_runs
from evoexp.job.analysis.provenance import CODE_COL, COMMIT_COL

OUT = Path(__file__).resolve().parent / "results" / "theory"
SLOPE = keys.param("surrogate.slope")
NOISE = keys.param("model.escape_noise")
SEED = keys.param(keys.SEED_PARAM)
EXPERIMENT = "experiment"
RECORD = [keys.metric(k) for k in (
    keys.CIRCULATION, keys.CIRCULATION_SE, keys.CIRCULATION_QUADRATURE_ERROR, keys.SIGN_DISAGREEMENT,
    keys.SIGN_DISAGREEMENT_SE, keys.SIGN_INFORMATIVE, keys.SIGN_UNRESOLVED, keys.SNN_TEST_ACC, keys.SNN_TEST_ACC_LAST,
)]
"""Metrics of each run kept in ``runs.csv``."""


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(r) + " |" for r in rows), ""]


def _latest(runs: pd.DataFrame, columns: list[str], experiment: str) -> pd.DataFrame:
    """The newest run of each configuration, with the tracking experiment's name in column :data:`EXPERIMENT`.

    A preset re-run after a change adds runs to the same experiment; ``runs.csv`` keeps the newest.
    """
    latest = runs.sort_values(keys.START_TIME).groupby(columns, dropna=False).tail(1).sort_values(columns)
    return latest.assign(**{EXPERIMENT: experiment})


def _provenance(runs: pd.DataFrame) -> list[str]:
    """One line naming the code identities and git commits that made ``runs``."""
    def named(column: str) -> str:
        values = sorted(runs[column].fillna("unknown").astype(str).unique()) if column in runs else ["unknown"]
        return ", ".join(f"`{v}`" for v in values)

    return [f"Runs made by code {named(CODE_COL)} (git commit {named(COMMIT_COL)}).", ""]


def _circulation_table(runs: pd.DataFrame) -> list[str]:
    layers = sorted(c for c in runs.columns if c.startswith(keys.metric(keys.CIRCULATION_LAYER_PREFIX)))
    header = ["β_SG", "mean abs(c) ± SE (overall)", "quadrature error", *(c.rsplit("/", 1)[-1] for c in layers),
              "seconds"]
    rows = [
        [
            _fmt(r[SLOPE]),
            f"{_fmt(r[keys.metric(keys.CIRCULATION)])} ± {_fmt(r[keys.metric(keys.CIRCULATION_SE)], 2)}",
            _fmt(r[keys.metric(keys.CIRCULATION_QUADRATURE_ERROR)], 2),
            *(_fmt(r[c]) for c in layers),
            _fmt(r[keys.DURATION], 2),
        ]
        for _, r in runs.iterrows()
    ]
    return _table(header, rows)


def circulation(uri: str) -> tuple[list[str], pd.DataFrame]:
    """Figure and tables of finding (a): mean |c| (± SE) and quadrature error per surrogate slope; its lines and runs.

    The sigmoid network (``theory_circulation``) and, when it was run, the same network with Heaviside neurons
    (``theory_circulation_spiking``).
    """
    networks = {"sigmoid neurons σ(2(U−θ))": "theory_circulation", "Heaviside neurons": "theory_circulation_spiking"}
    fig, ax = new_figure()
    lines, read = ["## (a) Circulation (`experiment=theory_circulation`)", ""], []
    for i, (network, experiment) in enumerate(networks.items()):
        try:
            runs = _latest(load_runs(experiment, tracking_uri=uri), [SLOPE], experiment)
        except ValueError:  # the optional Heaviside run is not in the store
            continue
        x = runs[SLOPE].to_numpy(float)
        circ, se = (runs[keys.metric(k)].to_numpy(float) for k in (keys.CIRCULATION, keys.CIRCULATION_SE))
        ax.errorbar(x, np.maximum(circ, 1e-18), yerr=se, label=f"|c|, {network}", capsize=2, **series_style(i))
        error = runs[keys.metric(keys.CIRCULATION_QUADRATURE_ERROR)].to_numpy(float)
        ax.plot(x, error, label=f"quadrature error, {network}", **{**series_style(i), "linestyle": ":"})
        lines += [f"{network} (tracking experiment `{experiment}`):", "", *_circulation_table(runs), *_provenance(runs)]
        read.append(runs)
    ax.set(xscale="log", yscale="log", xlabel="surrogate slope β_SG", ylabel="normalised circulation |c|")
    ax.axvline(2.0, color="0.6", linewidth=0.8)
    ax.legend(fontsize="x-small", loc="lower right")
    fig.savefig(OUT / "circulation.png", dpi=200)
    return lines, pd.concat(read, ignore_index=True)


def sign(uri: str) -> tuple[list[str], pd.DataFrame]:
    """Figure and table of finding (b): sign disagreement ± SE per surrogate slope; its lines and the runs read."""
    runs = _latest(load_runs("theory_sign", tracking_uri=uri), [SLOPE], "theory_sign")
    fig, ax = new_figure()
    ax.errorbar(
        runs[SLOPE].to_numpy(float),
        runs[keys.metric(keys.SIGN_DISAGREEMENT)].to_numpy(float),
        yerr=runs[keys.metric(keys.SIGN_DISAGREEMENT_SE)].to_numpy(float),
        capsize=2,
        **series_style(0),
    )
    ax.axvline(2.0, color="0.6", linewidth=0.8)
    ax.set(xscale="log", xlabel="surrogate slope β_SG", ylabel="sign disagreement (fraction of directions)")
    fig.savefig(OUT / "sign_disagreement.png", dpi=200)
    header = ["β_SG", "disagreement ± SE", "informative directions", "unresolved", "seconds"]
    rows = [
        [
            _fmt(r[SLOPE]),
            f"{_fmt(r[keys.metric(keys.SIGN_DISAGREEMENT)])} ± {_fmt(r[keys.metric(keys.SIGN_DISAGREEMENT_SE)], 2)}",
            _fmt(r[keys.metric(keys.SIGN_INFORMATIVE)]),
            _fmt(r[keys.metric(keys.SIGN_UNRESOLVED)]),
            _fmt(r[keys.DURATION], 2),
        ]
        for _, r in runs.iterrows()
    ]
    return ["## (b) Sign disagreement (`experiment=theory_sign`)", "", *_table(header, rows), *_provenance(runs)], runs


def escape(uri: str) -> tuple[list[str], pd.DataFrame]:
    """Figure and tables of finding (c); its lines and the runs read.

    The validation curves and the test accuracy per network and seed.
    """
    runs = _latest(load_runs("theory_escape", tracking_uri=uri), [NOISE, SEED], "theory_escape").copy()
    runs["network"] = np.where(runs[NOISE].isna(), "deterministic", "escape noise β_n = " + runs[NOISE].astype(str))
    history = load_history(runs, [keys.SNN_VAL_ACC], tracking_uri=uri)
    fig, (curves, final) = new_figure(1, 2, width="double", aspect=0.35)
    summary_rows, seed_rows = [], []
    for i, (network, group) in enumerate(runs.groupby("network", sort=True)):
        style = series_style(i)
        for _, r in group.iterrows():
            h = history[history[keys.RUN_ID] == r[keys.RUN_ID]].sort_values(keys.HISTORY_STEP)
            label = network if r[SEED] == group[SEED].min() else None
            curves.plot(h[keys.HISTORY_STEP], h[keys.HISTORY_VALUE], color=style["color"], alpha=0.8, label=label)
        acc = group[keys.metric(keys.SNN_TEST_ACC)].to_numpy(float)
        final.errorbar([i], [acc.mean()], yerr=[acc.std(ddof=1)], capsize=3, **style)
        final.plot(np.full(len(acc), i), acc, linestyle="none", marker=style["marker"], color=style["color"],
                   alpha=0.5)
        summary_rows.append([network, f"{100 * acc.mean():.2f} ± {100 * acc.std(ddof=1):.2f}",
                             f"{100 * acc.min():.2f} – {100 * acc.max():.2f}", str(len(acc))])
        for _, r in group.sort_values(SEED).iterrows():
            best, last = 100 * r[keys.metric(keys.SNN_TEST_ACC)], 100 * r[keys.metric(keys.SNN_TEST_ACC_LAST)]
            seed_rows.append([network, str(int(r[SEED])), f"{best:.2f}", f"{last:.2f}", _fmt(r[keys.DURATION] / 60)])
    curves.set(xlabel="epoch", ylabel="validation accuracy")
    curves.legend(fontsize="small")
    final.set(xticks=range(len(summary_rows)), xticklabels=[r[0] for r in summary_rows], ylabel="test accuracy",
              xlim=(-0.5, len(summary_rows) - 0.5))
    fig.savefig(OUT / "escape_noise.png", dpi=200)
    lines = [
        "## (c) Stochastic vs deterministic SNNs (`experiment=theory_escape`)",
        "",
        *_table(["network", "test accuracy % (mean ± sd over seeds)", "range %", "seeds"], summary_rows),
        *_table(["network", "seed", "test acc % (best-val weights)", "test acc % (last epoch)", "minutes"],
                seed_rows),
        *_provenance(runs),
    ]
    return lines, runs


def main() -> None:
    """Write docs/results/theory/ from the store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns.db", help="MLflow store of the runs")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Gygax & Zenke (2025) findings: numbers",
        "",
        "Written by `docs/theory_results.py` from the MLflow runs of the commands in docs/guides/theory.md.",
        "",
    ]
    read = []
    for section in (circulation, sign, escape):
        text, runs = section(args.tracking_uri)
        lines += text
        read.append(runs)
    (OUT / "results.md").write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    record = pd.concat(read, ignore_index=True)
    columns = [EXPERIMENT, keys.RUN_ID, SLOPE, NOISE, SEED, CODE_COL, COMMIT_COL, *RECORD]
    record = record[[c for c in columns if c in record.columns]].sort_values([EXPERIMENT, SLOPE, NOISE, SEED])
    record.to_csv(OUT / "runs.csv", index=False)
    pd.set_option("display.width", 200)
    print((OUT / "results.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
