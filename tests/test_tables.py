import math

import numpy as np
import pandas as pd
import pytest

from evoexp.analysis.tables import (
    Column,
    best_slope_table,
    build_table,
    format_interval,
    format_value,
    latex_escape,
    snn_vs_ann_table,
    surrogate_slope_table,
    verdict_summary,
    verdicts_table,
    with_derived,
)

NAME, SLOPE, SEED = "params.surrogate.name", "params.surrogate.slope", "params.seed"
SNN, ANN = "metrics.snn/test/acc_best", "metrics.ann/test/acc_best"
COS, GRAD_OK = "metrics.alignment/cosine", "metrics.stability/gradient_ok"
OUTCOME = "tags.evoexp.outcome"


def _runs() -> pd.DataFrame:
    """Three configurations: (fast_sigmoid, 1) x 3 seeds, (fast_sigmoid, 10) x 1, (atan, 10) x 2."""
    rows = [
        ("fast_sigmoid", 1.0, 0, 0.5, 0.8, 0.9, 1.0, "finished"),
        ("fast_sigmoid", 1.0, 1, 0.6, 0.8, 0.7, 1.0, "finished"),
        ("fast_sigmoid", 1.0, 2, 0.7, 0.8, 0.8, 0.0, "finished"),
        ("fast_sigmoid", 10.0, 0, 0.9, 0.8, 0.5, 1.0, "finished"),
        ("atan", 10.0, 0, 0.4, 0.8, 0.6, 1.0, "finished"),
        ("atan", 10.0, 1, np.nan, 0.8, np.nan, np.nan, "diverged"),
    ]
    columns = [NAME, SLOPE, SEED, SNN, ANN, COS, GRAD_OK, OUTCOME]
    frame = pd.DataFrame(rows, columns=columns)
    frame.insert(0, "run_id", [f"r{i}" for i in range(len(frame))])
    frame["params.surrogate._target_"] = "evoexp.surrogate." + frame[NAME]  # implied by the name
    return frame


@pytest.mark.parametrize(
    ("mean", "low", "high", "decimals", "expected"),
    [
        (0.6, 0.4, 0.8484, None, "0.6 [0.4, 0.8]"),
        (91.234, 91.11, 91.3574, None, "91.23 [91.11, 91.36]"),
        (91.234, 90.3, 91.5, None, "91.2 [90.3, 91.5]"),  # the larger distance (0.93) sets the digits
        (1234.4, 1147.4, 1300.0, None, "1234 [1147, 1300]"),
        (5.0, math.nan, math.nan, None, "5.00"),
        (0.01234, math.nan, math.nan, None, "0.0123"),
        (80.0, 80.0, 80.0, 1, "80.0"),  # a constant sample has no interval to show
        (0.8, 0.8, 0.8 + 1e-17, 1, "0.8"),  # rounding noise is no interval
        (math.nan, 0.1, 0.2, None, "n/a"),
        (3.85e-10, math.nan, math.nan, None, "3.85e-10"),  # tiny values (finite-difference errors) in scientific
        (-1.234e-7, -1.4e-7, -1.1e-7, None, "-1.2e-07 [-1.4e-07, -1.1e-07]"),
        (0.0, math.nan, math.nan, None, "0.00"),
    ],
)
def test_format_interval(mean, low, high, decimals, expected):
    assert format_interval(mean, low, high, decimals=decimals) == expected


def test_format_value_and_escape():
    assert format_value(25.0) == "25"
    assert format_value(0.5) == "0.5"
    assert format_value(math.nan) == "n/a"
    assert format_value("fast_sigmoid") == "fast_sigmoid"
    assert latex_escape("a_b 50% & $x$ #1 − ±") == r"a\_b 50\% \& \$x\$ \#1 $-$ $\pm$"


def test_with_derived_per_run_values():
    runs = _runs().assign(
        **{"metrics.snn/time_per_epoch": [2.0, 3.0, 4.0, 1.0, 1.0, 1.0], "metrics.ann/time_per_epoch": 0.5}
    )
    out = with_derived(runs)
    assert out["derived.acc_gap"].iloc[0] == pytest.approx(-0.3, abs=1e-15)
    assert math.isnan(out["derived.acc_gap"].iloc[5])
    assert list(out["derived.time_ratio"]) == [4.0, 6.0, 8.0, 2.0, 2.0, 2.0]
    assert list(out["derived.diverged"]) == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert "derived.acc_gap" not in runs.columns


SNN_VS_ANN_MD = """\
| Surrogate | Slope β | n | SNN acc (%) [95% CI] | ANN acc (%) [95% CI] | SNN−ANN (pp) [95% CI] |
| :-- | :-- | --: | --: | --: | --: |
| atan | 10 | 2 | 40.0 | 80.0 | -40.0 |
| fast_sigmoid | 1 | 3 | 60 [50, 70] | 80.0 | -20 [-30, -10] |
| fast_sigmoid | 10 | 1 | **90.0** | 80.0 | **10.0** |
"""

SNN_VS_ANN_TEX = r"""\begin{table}[t]
  \centering
  \caption{SNN vs ANN on the same split, optimiser and epochs; test accuracy with the weights of the best validation epoch restored (last: after the final epoch). Accuracy in \% (SNN$-$ANN gap in percentage points). Cells: mean [95\% percentile-bootstrap confidence interval of the mean over seeds]; (runs) cells: k/n, the k of n runs that passed the check (or diverged); n: runs per row; best value per column in bold.}
  \label{tab:snn_vs_ann}
  \begin{tabular}{llrrrr}
    \toprule
    Surrogate & Slope $\beta$ & n & SNN acc (\%) [95\% CI] & ANN acc (\%) [95\% CI] & SNN$-$ANN (pp) [95\% CI] \\
    \midrule
    atan & 10 & 2 & 40.0 & 80.0 & -40.0 \\
    fast\_sigmoid & 1 & 3 & 60 [50, 70] & 80.0 & -20 [-30, -10] \\
    fast\_sigmoid & 10 & 1 & \textbf{90.0} & 80.0 & \textbf{10.0} \\
    \bottomrule
  \end{tabular}
\end{table}
"""  # noqa: E501


def test_snn_vs_ann_markdown_and_latex():
    table = snn_vs_ann_table(_runs())
    # ANN ties everywhere (no bold); the implied _target_ param is no row label
    assert table.to_markdown() == SNN_VS_ANN_MD
    assert table.to_latex() == SNN_VS_ANN_TEX


def test_snn_vs_ann_csv_holds_every_statistic_in_the_tables_units():
    frame = pd.read_csv(pd.io.common.StringIO(snn_vs_ann_table(_runs()).to_csv()))
    assert list(frame.columns[:2]) == ["surrogate.name", "surrogate.slope"]
    assert frame.loc[1, "snn/test/acc_best_pct_mean"] == pytest.approx(60.0, abs=1e-9)  # percent, as the name says
    assert frame.loc[1, "snn/test/acc_best_pct_std"] == pytest.approx(10.0, abs=1e-9)
    assert frame.loc[1, "snn/test/acc_best_n"] == 3
    assert frame.loc[0, "snn/test/acc_best_n"] == 1
    assert math.isnan(frame.loc[0, "snn/test/acc_best_pct_ci_low"])
    bounds = (frame.loc[1, "snn/test/acc_best_pct_ci_low"], frame.loc[1, "snn/test/acc_best_pct_ci_high"])
    assert bounds == pytest.approx((50.0, 70.0), abs=1e-9)
    assert frame.loc[1, "acc_gap_pp_mean"] == pytest.approx(-20.0, abs=1e-9)  # percentage points
    assert not [c for c in frame.columns if c.startswith("snn/test/acc_best_mean")]


def test_a_scaled_column_must_name_its_unit():
    with pytest.raises(ValueError, match="unit"):
        Column(SNN, "SNN acc (%)", "higher", 100.0)


def test_single_configuration_has_no_row_labels_and_no_bold():
    runs = _runs().iloc[:3]
    table = snn_vs_ann_table(runs)
    header, body = table.cells(markup="markdown")
    assert header[0] == "n"
    assert body == [["3", "60 [50, 70]", "80.0", "-20 [-30, -10]"]]


SURROGATE_MD = """\
| Surrogate | Slope β | n | SNN acc (%) [95% CI] | Diverged (runs) | Gradient stable (runs) | Alignment cos [95% CI] |
| :-- | :-- | --: | --: | --: | --: | --: |
| atan | 10 | 2 | 40.0 | 1/2 | **1/1** | 0.600 |
| fast_sigmoid | 1 | 3 | 60 [50, 70] | **0/3** | 2/3 | **0.80 [0.70, 0.90]** |
| fast_sigmoid | 10 | 1 | **90.0** | **0/1** | **1/1** | 0.500 |
"""


def test_surrogate_slope_table_markdown():
    assert surrogate_slope_table(_runs()).to_markdown() == SURROGATE_MD


def test_best_slope_table():
    table = best_slope_table(_runs())
    header, body = table.cells(markup="plain")
    assert header == ["Surrogate", "Best slope", "n", "SNN acc (%) [95% CI]", "Alignment cos [95% CI]"]
    assert body == [["atan", "10", "1", "40.0", "0.600"], ["fast_sigmoid", "10", "1", "90.0", "0.500"]]
    assert "**90.0**" in table.to_markdown()


def test_surrogate_tables_need_surrogate_params():
    with pytest.raises(ValueError, match=r"params \['params.surrogate.slope'\]"):
        surrogate_slope_table(_runs().drop(columns=[SLOPE]))


def test_build_table_errors_and_column_validation():
    with pytest.raises(ValueError, match="no runs"):
        build_table(_runs().iloc[:0], name="t", caption="c", rows=[], columns=[Column(SNN, "x")])
    with pytest.raises(ValueError, match="has data"):
        build_table(_runs(), name="t", caption="c", rows=[], columns=[Column("metrics.nope", "x")])
    with pytest.raises(ValueError, match="better"):
        Column(SNN, "x", better="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="markup"):
        snn_vs_ann_table(_runs()).cells(markup="html")  # type: ignore[arg-type]


def test_lower_is_better_and_ties_bold_together():
    runs = pd.DataFrame({"params.x": [1, 2, 3], "metrics.loss": [0.5, 0.2, 0.2]})
    table = build_table(runs, name="t", caption="c", rows=["params.x"], columns=[Column("metrics.loss", "L", "lower")])
    assert table.best_rows(table.columns[0]) == [1, 2]


def test_write_formats(tmp_path):
    table = snn_vs_ann_table(_runs())
    paths = table.write(tmp_path, formats=["csv", "md", "tex"])
    assert [p.name for p in paths] == ["snn_vs_ann.csv", "snn_vs_ann.md", "snn_vs_ann.tex"]
    assert paths[1].read_text(encoding="utf-8") == f"{table.caption}\n\n{SNN_VS_ANN_MD}"
    with pytest.raises(ValueError, match="formats"):
        table.write(tmp_path, formats=["docx"])


def test_fit_keeps_the_leading_columns_that_fit_and_says_so():
    table = snn_vs_ann_table(_runs())
    assert table.fit(200) is table
    narrow = table.fit(60)
    assert [c.label for c in narrow.columns] == ["SNN acc (%)"]
    assert max(map(len, narrow.to_markdown().splitlines())) <= 60
    assert narrow.caption.endswith("(2 more columns in snn_vs_ann.csv/.md.)")
    assert narrow.row_n() == table.row_n() == [2, 3, 1]  # runs per row do not depend on the columns shown
    middle = table.fit(90)
    assert len(middle.columns) == 2
    assert max(map(len, middle.to_markdown().splitlines())) <= 90


def test_value_columns_show_the_plain_value():
    runs = _runs().assign(**{"metrics.snn/params": 3840.0})
    table = build_table(
        runs,
        name="t",
        caption="c",
        rows=[],
        columns=[Column("metrics.snn/params", "SNN params", decimals=0, kind="value")],
    )
    header, body = table.cells()
    assert header == ["n", "SNN params"] and body == [["6", "3840"]]


def _judged_runs() -> pd.DataFrame:
    return _runs().assign(
        **{
            "tags.evoexp.verdict": ["pass", "pass", "fail", "pass", "pass", "diverged"],
            "metrics.gradient/passed": [1.0, 1.0, 1.0, 1.0, 1.0, np.nan],
        }
    )


def test_verdicts_table_counts_passes_per_check_over_seeds():
    header, body = verdicts_table(_judged_runs()).cells()
    assert header == [
        "Surrogate",
        "Slope β",
        "n",
        "Verdict pass (runs)",
        "Gradient check (FD) (runs)",
        "Gradient stable (runs)",
        "Diverged (runs)",
    ]  # checks no run ran (surrogate, weights, convergence) have no column
    assert body == [
        ["atan", "10", "2", "1/2", "1/1", "1/1", "1/2"],
        ["fast_sigmoid", "1", "3", "2/3", "3/3", "2/3", "0/3"],
        ["fast_sigmoid", "10", "1", "1/1", "1/1", "1/1", "0/1"],
    ]


def test_main_tables_carry_the_verdict_per_configuration():
    for build in (snn_vs_ann_table, surrogate_slope_table):
        header, body = build(_judged_runs()).cells()
        column = header.index("Verdict pass (runs)")
        assert [row[column] for row in body] == ["1/2", "2/3", "1/1"]


def test_verdict_summary_line():
    assert verdict_summary(_judged_runs()) == (
        "verdicts of 6 run(s): 4 pass, 1 fail, 1 diverged; failed: Gradient stable 1/5"
    )
    assert verdict_summary(_runs()) is None
