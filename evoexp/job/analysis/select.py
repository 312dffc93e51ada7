"""Which finished runs the analysis counts: one per config, all of one code identity.

Re-running a sweep after a code change (the README's workflow), resuming with ``tracking.resume=false`` or running a
sweep twice leaves several FINISHED runs of one config in the store. Pooled, they would be counted as seeds: a 2-seed
sweep reported with n = 4, runs of old and new code averaged together. :func:`select_runs` keeps, by default, only
the runs of the newest code identity (tag ``evoexp.code_identity`` of the most recently started run) and, of those,
the newest run of each config hash (tag ``evoexp.config_hash``); it says what it dropped. Runs without the tags
(logged by other tools) are kept as they are.
"""

from __future__ import annotations

import pandas as pd

from evoexp import keys as schema

__all__ = ["NEWEST", "select_runs"]

NEWEST = "newest"
"""``code`` value of :func:`select_runs`: the code identity of the most recently started run."""
_UNKNOWN = "unknown"
_CONFIG_HASH = schema.tag(schema.Tags.CONFIG_HASH)
_CODE = schema.tag(schema.Tags.CODE_IDENTITY)


def select_runs(runs: pd.DataFrame, *, code: str = NEWEST) -> tuple[pd.DataFrame, list[str]]:
    """Keep one run per config hash, all of one code identity; return the kept runs and what was dropped.

    Args:
        runs: FINISHED job runs (a run frame sorted by start time, :func:`evoexp.job.analysis.load.load_runs`).
        code: The code identity to keep: :data:`NEWEST` (that of the newest run) or one recorded in the tag.

    Returns:
        The kept runs (re-indexed) and one line per kind of dropped runs (none when nothing was dropped).

    Raises:
        ValueError: ``code`` names a code identity that no run has (the message lists those present).
    """
    notes: list[str] = []
    if _CODE in runs.columns and len(runs):
        identities = runs[_CODE].fillna(_UNKNOWN).astype(str)
        chosen = identities.iloc[int(runs[schema.START_TIME].to_numpy().argmax())] if code == NEWEST else code
        counts = identities.value_counts()
        if chosen not in counts.index:
            present = ", ".join(f"{identity!r} ({n} runs)" for identity, n in counts.items())
            raise ValueError(f"code identity: no finished run of {code!r}; the runs have {present}")
        other = counts.drop(chosen)
        if len(other):
            listed = "; ".join(f"{identity} ({n})" for identity, n in other.items())
            notes.append(
                f"dropped {int(other.sum())} run(s) of other code than {chosen!r}, never pooled with it as seeds: "
                f"{listed} (--code-identity selects another)"
            )
        runs = runs.loc[identities == chosen]
    if _CONFIG_HASH in runs.columns:
        hashed = runs[_CONFIG_HASH].notna()
        newest = runs[schema.START_TIME].rank(method="first")
        keep = ~hashed | (newest == newest.groupby(runs[_CONFIG_HASH]).transform("max"))
        dropped = runs.loc[~keep]
        if len(dropped):
            notes.append(
                f"dropped {len(dropped)} older duplicate run(s) of {dropped[_CONFIG_HASH].nunique()} config(s) "
                f"(kept the newest FINISHED run of each config): {', '.join(dropped[schema.RUN_ID].astype(str))}"
            )
        runs = runs.loc[keep]
    return runs.reset_index(drop=True), notes
