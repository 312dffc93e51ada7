"""What produced an analysis's tables: ``provenance.json`` (code, commits, commands) and ``runs.csv`` (one row per run).

Both are written next to the tables by :func:`evoexp.job.analysis.pipeline.run_analysis`, so a committed results
folder names the code that computed its runs (tag ``Tags.CODE_IDENTITY`` of :mod:`evoexp.keys`: evoexp version,
package-source digest, torch version) and the git commit it ran from; runs of several code identities pooled into one
table are flagged (``pooled``). ``runs.csv`` keeps each run's configuration keys, seed, identity and headline
metrics, so one run can be re-computed and compared (see docs/guides/results.md, "Provenance").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from evoexp import keys as schema
from evoexp.keys import Tags

PROVENANCE_FILE = "provenance.json"
RUNS_FILE = "runs.csv"
RECORD_METRICS = (
    schema.SNN_TEST_ACC,
    schema.SNN_TEST_ACC_LAST,
    schema.SNN_TEST_LOSS,
    schema.OBJECTIVE,
    schema.SNN_BEST_EPOCH,
    schema.ANN_TEST_ACC,
)
"""Metrics of each run kept in ``runs.csv`` (the columns ``metrics.<key>`` the runs have)."""
RECORD_TAGS = (Tags.CONFIG_HASH, Tags.CODE_IDENTITY, Tags.GIT_COMMIT, Tags.OUTCOME, Tags.OVERRIDES)
CODE_COL = schema.tag(Tags.CODE_IDENTITY)
COMMIT_COL = schema.tag(Tags.GIT_COMMIT)
UNKNOWN = "unknown"


ALWAYS_KEYS = (schema.SURROGATE_NAME_PARAM, schema.SURROGATE_SLOPE_PARAM, schema.SURROGATE_SCALE_PARAM)
"""Params kept in ``runs.csv`` even when every run has the same value (they name a configuration)."""


def config_columns(runs: pd.DataFrame, ignore: Sequence[str] = ()) -> list[str]:
    """Param columns that tell the runs apart: the surrogate's, every other param that varies, then the seed.

    Params under ``hydra.``/``tracking.`` and those in ``ignore`` are left out.
    """
    seed = schema.param(schema.SEED_PARAM)
    always = [schema.param(k) for k in ALWAYS_KEYS]
    ignored = tuple(schema.param(p) for p in schema.IGNORED_PARAM_PREFIXES)
    varying = [
        c
        for c in runs.columns
        if c.startswith(schema.PARAM_PREFIX)
        and not c.startswith(ignored)
        and c not in (*ignore, *always, seed)
        and runs[c].astype(str).nunique(dropna=False) > 1
    ]
    return [c for c in (*always, *varying, seed) if c in runs.columns]


def run_record(runs: pd.DataFrame, ignore: Sequence[str] = ()) -> pd.DataFrame:
    """One row per run: run id and name, configuration keys, seed, identity tags and :data:`RECORD_METRICS`.

    Rows are sorted by the configuration keys, so the file is stable from one regeneration to the next.
    """
    keys = config_columns(runs, ignore)
    columns = [
        schema.RUN_ID,
        schema.RUN_NAME,
        *keys,
        *(schema.tag(t) for t in RECORD_TAGS),
        *(schema.metric(m) for m in RECORD_METRICS),
    ]
    record = runs[[c for c in columns if c in runs.columns]]
    return record.sort_values([*keys, schema.RUN_ID], kind="stable").reset_index(drop=True)


def _counts(runs: pd.DataFrame, column: str) -> dict[str, int]:
    values = runs[column].fillna(UNKNOWN) if column in runs.columns else pd.Series([UNKNOWN] * len(runs))
    return {str(k): int(v) for k, v in sorted(values.astype(str).value_counts().items())}


def provenance(
    runs: pd.DataFrame,
    *,
    experiment: str,
    sweeps: Mapping[str, str],
    analysis_command: str | None,
) -> dict[str, Any]:
    """The provenance record of an analysis of ``runs``.

    Args:
        runs: The analysed job runs (the run frame).
        experiment: MLflow experiment name.
        sweeps: Sweep id -> the command that launched it (from the sweep's parent run), for the sweeps of ``runs``.
        analysis_command: The analysis command line, if known.

    Returns:
        A JSON-serialisable mapping: ``experiment``, ``n_runs``, ``code_identities`` and ``git_commits`` (value ->
        number of runs), ``pooled`` (more than one code identity), ``sweeps`` and ``analysis_command``.
    """
    identities = _counts(runs, CODE_COL)
    return {
        "experiment": experiment,
        "n_runs": len(runs),
        "code_identities": identities,
        "pooled": len(identities) > 1,
        "git_commits": _counts(runs, COMMIT_COL),
        "sweeps": dict(sorted(sweeps.items())),
        "analysis_command": analysis_command,
        "runs_file": RUNS_FILE,
    }


def provenance_line(record: Mapping[str, Any]) -> str:
    """One Markdown line naming the runs' code, commit and commands (appended to each Markdown table)."""
    identities, commits = record["code_identities"], record["git_commits"]
    code = "; ".join(f"`{k}`" + (f" ({n} runs)" if record["pooled"] else "") for k, n in identities.items())
    pooled = " — POOLED: runs of several code identities" if record["pooled"] else ""
    sweeps = "; ".join(f"`{cmd}`" for cmd in record["sweeps"].values()) or "not recorded"
    analysis = f"`{record['analysis_command']}`" if record["analysis_command"] else "not recorded"
    return (
        f"Provenance: {record['n_runs']} run(s) computed by {code}{pooled}; git commit "
        f"{', '.join(f'`{c}`' for c in commits)}; runs launched by {sweeps}; tables by {analysis}. "
        f"Per run: [{RUNS_FILE}]({RUNS_FILE}); all of it: [{PROVENANCE_FILE}]({PROVENANCE_FILE})."
    )


def write_provenance(
    runs: pd.DataFrame,
    out: Path,
    *,
    experiment: str,
    sweeps: Mapping[str, str],
    analysis_command: str | None,
    ignore: Sequence[str] = (),
    tables: Sequence[Path] = (),
) -> list[Path]:
    """Write ``provenance.json`` and ``runs.csv`` into ``out`` and append :func:`provenance_line` to ``tables``' .md.

    Returns:
        The two written paths.
    """
    record = provenance(runs, experiment=experiment, sweeps=sweeps, analysis_command=analysis_command)
    prov, per_run = out / PROVENANCE_FILE, out / RUNS_FILE
    prov.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    run_record(runs, ignore).to_csv(per_run, index=False)
    line = provenance_line(record)
    for table in tables:
        if table.suffix == ".md":
            with table.open("a", encoding="utf-8") as handle:
                handle.write(f"\n\n{line}\n")
    return [prov, per_run]
