import math

import numpy as np
import pandas as pd
import pytest

from evoexp.analysis.aggregate import (
    STAT_COLUMNS,
    aggregate,
    aggregate_history,
    group_columns,
    metric_columns,
    pivot_stats,
    seed_columns,
    summarize,
    t_critical,
    varying_columns,
)

ACC = "metrics.snn/test/acc_best"
LOSS = "metrics.snn/test/loss_best"
SLOPE = "params.surrogate.slope"
NAME = "params.surrogate.name"


def _t2(p: float) -> float:
    """Closed-form Student-t quantile for 2 degrees of freedom."""
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


def test_t_critical_matches_closed_forms():
    assert t_critical(2) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-12)  # 1 dof: Cauchy
    assert t_critical(3) == pytest.approx(_t2(0.975), rel=1e-12)
    assert t_critical(3, confidence=0.9) == pytest.approx(_t2(0.95), rel=1e-12)
    assert math.isnan(t_critical(1))
    assert math.isnan(t_critical(0))


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1])
def test_bad_confidence_is_rejected(confidence):
    with pytest.raises(ValueError, match="confidence"):
        t_critical(5, confidence=confidence)
    with pytest.raises(ValueError, match="confidence"):
        summarize([1.0, 2.0], confidence=confidence)


def test_t_critical_rejects_negative_n():
    with pytest.raises(ValueError, match="n must be"):
        t_critical(-1)


def test_summarize_three_values_exact():
    s = summarize([1.0, 2.0, 3.0])
    half = _t2(0.975) / math.sqrt(3.0)
    assert s["mean"] == 2.0
    assert s["std"] == 1.0
    assert s["n"] == 3
    assert s["ci"] == pytest.approx(half, rel=1e-12)
    assert s["ci_low"] == pytest.approx(2.0 - half, rel=1e-12)
    assert s["ci_high"] == pytest.approx(2.0 + half, rel=1e-12)
    assert tuple(s) == STAT_COLUMNS


def test_summarize_drops_nan_and_handles_n1_and_n0():
    one = summarize([np.nan, 4.0])
    assert one["n"] == 1
    assert one["mean"] == 4.0
    assert math.isnan(one["std"])
    assert math.isnan(one["ci"])
    assert math.isnan(one["ci_low"])
    none = summarize([np.nan])
    assert none["n"] == 0
    assert all(math.isnan(none[k]) for k in ("mean", "std", "ci", "ci_low", "ci_high"))


def _records() -> pd.DataFrame:
    rows = [
        # slope 1: three seeds, loss missing for seed 2 (diverged before the test)
        {"run_id": "a", NAME: "fs", SLOPE: 1.0, "params.seed": 0, ACC: 0.5, LOSS: 1.0},
        {"run_id": "b", NAME: "fs", SLOPE: 1.0, "params.seed": 1, ACC: 0.6, LOSS: 3.0},
        {"run_id": "c", NAME: "fs", SLOPE: 1.0, "params.seed": 2, ACC: 0.7, LOSS: np.nan},
        # slope 10: a single seed
        {"run_id": "d", NAME: "fs", SLOPE: 10.0, "params.seed": 0, ACC: 0.9, LOSS: 0.5},
    ]
    return pd.DataFrame(rows)


def test_aggregate_over_seeds_exact_values():
    stats = aggregate(_records(), metrics=[ACC, LOSS])
    assert list(stats.columns) == [NAME, SLOPE, "metric", *STAT_COLUMNS]
    assert len(stats) == 4
    row = stats[(stats[SLOPE] == 1.0) & (stats["metric"] == ACC)].iloc[0]
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(0.6, abs=1e-15)
    assert row["std"] == pytest.approx(0.1, abs=1e-15)
    assert row["ci"] == pytest.approx(_t2(0.975) * 0.1 / math.sqrt(3), rel=1e-12)
    loss = stats[(stats[SLOPE] == 1.0) & (stats["metric"] == LOSS)].iloc[0]
    assert loss["n"] == 2  # the missing loss is left out
    assert loss["mean"] == 2.0
    assert loss["std"] == pytest.approx(math.sqrt(2.0), rel=1e-15)
    assert loss["ci"] == pytest.approx(math.tan(math.pi * 0.475) * math.sqrt(2.0) / math.sqrt(2.0), rel=1e-12)
    single = stats[(stats[SLOPE] == 10.0) & (stats["metric"] == ACC)].iloc[0]
    assert single["n"] == 1
    assert single["mean"] == 0.9
    assert math.isnan(single["std"])
    assert math.isnan(single["ci"])


def test_aggregate_metric_absent_from_frame_gives_n0():
    stats = aggregate(_records(), by=[SLOPE], metrics=["metrics.alignment/cosine"])
    assert list(stats["n"]) == [0, 0]
    assert stats["mean"].isna().all()


def test_aggregate_by_nothing_pools_all_rows():
    stats = aggregate(_records(), by=[], metrics=[ACC])
    assert len(stats) == 1
    assert stats["n"].iloc[0] == 4
    assert stats["mean"].iloc[0] == pytest.approx(0.675, abs=1e-15)


def test_aggregate_keeps_nan_group_keys():
    frame = _records()
    frame.loc[3, SLOPE] = np.nan
    stats = aggregate(frame, by=[SLOPE], metrics=[ACC])
    assert len(stats) == 2
    assert stats[SLOPE].isna().sum() == 1


def test_aggregate_rejects_bad_by():
    with pytest.raises(ValueError, match="not a column"):
        aggregate(_records(), by=["params.nope"], metrics=[ACC])
    clash = _records().rename(columns={SLOPE: "mean"})
    with pytest.raises(ValueError, match="clashes"):
        aggregate(clash, by=["mean"], metrics=[ACC])


def test_default_columns():
    frame = _records().assign(
        **{"params.dataset.seed": 3, "params.hydra.job.num": [0, 1, 2, 3], "derived.acc_gap": 0.1, "tags.x": "y"}
    )
    assert seed_columns(frame.columns) == ["params.seed", "params.dataset.seed"]
    assert group_columns(frame) == [NAME, SLOPE]
    assert group_columns(frame, ignore=[NAME]) == [SLOPE]
    assert metric_columns(frame) == [ACC, LOSS, "derived.acc_gap"]
    # default grouping ignores seeds and hydra bookkeeping: 2 configurations
    assert len(aggregate(frame, metrics=[ACC])) == 2


def test_varying_columns_drops_constant_and_implied():
    frame = _records().assign(**{"params.surrogate._target_": ["x"] * 4, "params.tag": ["p", "p", "p", "q"]})
    # name is constant; tag is implied by slope (same split of the runs)
    assert varying_columns(frame, [NAME, SLOPE, "params.tag", "params.surrogate._target_"]) == [SLOPE]
    assert varying_columns(frame, ["params.tag", SLOPE]) == ["params.tag"]
    assert varying_columns(frame, ["params.tag"], given=[SLOPE]) == []
    with pytest.raises(ValueError, match="not a column"):
        varying_columns(frame, ["params.nope"])


def test_aggregate_history_per_step():
    history = pd.DataFrame(
        {
            "run_id": ["a", "a", "b", "b"],
            "key": ["snn/val/acc"] * 4,
            "step": [0, 1, 0, 1],
            "value": [0.1, 0.3, 0.3, 0.5],
        }
    )
    curves = aggregate_history(history)
    assert list(curves.columns) == ["key", "step", *STAT_COLUMNS]
    assert list(curves["step"]) == [0, 1]
    assert curves["mean"].to_numpy() == pytest.approx([0.2, 0.4], abs=1e-15)
    assert curves["std"].to_numpy() == pytest.approx([math.sqrt(0.02)] * 2, rel=1e-12)
    assert list(curves["n"]) == [2, 2]


def test_pivot_stats_wide_layout():
    stats = aggregate(_records(), by=[SLOPE], metrics=[ACC, LOSS])
    wide = pivot_stats(stats, by=[SLOPE])
    assert wide.loc[10.0, (ACC, "mean")] == 0.9
    assert wide.loc[1.0, (LOSS, "n")] == 2
    assert len(pivot_stats(aggregate(_records(), by=[], metrics=[ACC]), by=[])) == 1
