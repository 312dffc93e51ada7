import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from evoexp.analysis.aggregate import (
    STAT_COLUMNS,
    aggregate,
    aggregate_history,
    group_columns,
    metric_columns,
    pivot_stats,
    seed_columns,
    summarize,
    varying_columns,
)
from evoexp.stats import describe, mean_intervals

ACC = "metrics.snn/test/acc_best"
LOSS = "metrics.snn/test/loss_best"
SLOPE = "params.surrogate.slope"
NAME = "params.surrogate.name"


def test_describe_matches_numpy_and_handles_non_finite():
    d = describe([1.0, 2.0, 4.0, np.nan, np.inf])
    assert (d.mean, d.n, d.min, d.max) == (7.0 / 3.0, 3, 1.0, 4.0)
    assert d.std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1), rel=1e-15)
    assert describe([1.0, 3.0], ddof=0).std == 1.0
    assert math.isnan(describe([5.0]).std) and describe([5.0], ddof=0).std == 0.0
    empty = describe([np.nan])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.max)
    # kept non-finite values propagate: an exploding norm must not vanish from a stability summary
    inf = describe([1.0, np.inf], ddof=0, finite_only=False)
    assert (inf.mean, inf.max, inf.min, inf.n) == (np.inf, np.inf, 1.0, 2)
    assert math.isnan(describe([1.0, np.nan], finite_only=False).mean)


def test_bootstrap_interval_of_three_seeds_is_their_range():
    # P(a resampled mean equals the smallest value) = 1/27 > 2.5%: the 95% percentile interval is [min, max]
    low, high = mean_intervals([[0.5, 0.6, 0.7]])
    assert (low[0], high[0]) == pytest.approx((0.5, 0.7), abs=1e-15)


def test_bootstrap_interval_stays_in_the_range_a_t_interval_leaves():
    values = [1.0, 1.0, 0.9]
    t_high = np.mean(values) + scipy_stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert t_high > 1.05  # the old t interval puts an accuracy above 100%
    low, high = mean_intervals([values])
    assert 0.9 <= low[0] <= high[0] <= 1.0


def test_bootstrap_interval_of_a_large_sample_is_close_to_the_normal_one():
    sample = np.random.default_rng(3).normal(10.0, 2.0, size=200)
    low, high = mean_intervals([sample])
    half = 1.96 * sample.std(ddof=1) / math.sqrt(sample.size)
    assert (high[0] - low[0]) / 2 == pytest.approx(half, rel=0.1)
    assert (low[0] + high[0]) / 2 == pytest.approx(sample.mean(), abs=0.1 * half)
    wider, _ = mean_intervals([sample], confidence=0.99)
    assert wider[0] < low[0]


def test_bootstrap_intervals_edge_cases_and_independence():
    rng = np.random.default_rng(1)
    a, b = rng.random(10), rng.random(10)
    low, high = mean_intervals([a, [2.0, 2.0], [np.nan, 4.0], [], b])
    assert (low[1], high[1]) == (2.0, 2.0)
    assert np.isnan(low[2:4]).all() and np.isnan(high[2:4]).all()
    alone_low, alone_high = mean_intervals([a])
    assert (low[0], high[0]) == pytest.approx(
        (alone_low[0], alone_high[0]), rel=1e-12
    )  # a row's interval ignores the other rows
    assert a.min() <= low[0] < a.mean() < high[0] <= a.max()


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1])
def test_bad_confidence_is_rejected(confidence):
    with pytest.raises(ValueError, match="confidence"):
        mean_intervals([[1.0, 2.0]], confidence=confidence)
    with pytest.raises(ValueError, match="confidence"):
        summarize([1.0, 2.0], confidence=confidence)


def test_summarize_three_values_exact():
    s = summarize([1.0, 2.0, 3.0])
    assert tuple(s) == STAT_COLUMNS
    assert (s["mean"], s["std"], s["n"]) == (2.0, 1.0, 3)
    assert s["sem"] == pytest.approx(1.0 / math.sqrt(3.0), rel=1e-15)
    assert (s["ci_low"], s["ci_high"]) == (1.0, 3.0)


def test_summarize_drops_nan_and_handles_n1_and_n0():
    one = summarize([np.nan, 4.0])
    assert one["n"] == 1
    assert one["mean"] == 4.0
    assert all(math.isnan(one[k]) for k in ("std", "sem", "ci_low", "ci_high"))
    none = summarize([np.nan])
    assert none["n"] == 0
    assert all(math.isnan(none[k]) for k in ("mean", "std", "sem", "ci_low", "ci_high"))


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
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.5, 0.7), abs=1e-15)
    loss = stats[(stats[SLOPE] == 1.0) & (stats["metric"] == LOSS)].iloc[0]
    assert loss["n"] == 2  # the missing loss is left out
    assert loss["mean"] == 2.0
    assert loss["std"] == pytest.approx(math.sqrt(2.0), rel=1e-15)
    assert (loss["ci_low"], loss["ci_high"]) == (1.0, 3.0)  # two seeds: 1/4 of the resamples sit on each end
    single = stats[(stats[SLOPE] == 10.0) & (stats["metric"] == ACC)].iloc[0]
    assert single["n"] == 1
    assert single["mean"] == 0.9
    assert math.isnan(single["std"])
    assert math.isnan(single["ci_low"])


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
