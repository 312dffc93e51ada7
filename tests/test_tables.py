import math

import numpy as np
import pandas as pd
import pytest

from evoexp.analysis.tables import (
    Column,
    best_slope_table,
    build_table,
    format_mean_ci,
    format_value,
    latex_escape,
    snn_vs_ann_table,
    surrogate_slope_table,
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
    ("mean", "ci", "decimals", "expected"),
    [
        (0.6, 0.2484, None, "0.6 ± 0.2"),
        (91.234, 0.1234, None, "91.23 ± 0.12"),
        (91.234, 0.96, None, "91.2 ± 1.0"),
        (1234.4, 87.0, None, "1234 ± 87"),
        (5.0, math.nan, None, "5.00"),
        (0.01234, math.nan, None, "0.0123"),
        (80.0, math.nan, 1, "80.0"),
        (0.8, 1e-17, 1, "0.8"),  # rounding noise is no interval
        (math.nan, 0.1, None, "n/a"),
        (3.85e-10, math.nan, None, "3.85e-10"),  # tiny values (finite-difference errors) in scientific notation
        (-1.234e-7, 2.1e-8, None, "-1.2e-07 ± 2e-08"),
        (0.0, math.nan, None, "0.00"),
    ],
)
def test_format_mean_ci(mean, ci, decimals, expected):
    assert format_mean_ci(mean, ci, decimals=decimals) == expected


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
| Surrogate | Slope | n | SNN acc (%) | ANN acc (%) | SNN−ANN (pp) |
| :-- | :-- | --: | --: | --: | --: |
| atan | 10 | 2 | 40.0 | 80.0 | -40.0 |
| fast_sigmoid | 1 | 3 | 60 ± 25 | 80.0 | -20 ± 25 |
| fast_sigmoid | 10 | 1 | **90.0** | 80.0 | **10.0** |
"""

SNN_VS_ANN_TEX = r"""\begin{table}[t]
  \centering
  \caption{SNN vs ANN on the same split, optimiser and epochs. Mean $\pm$ 95\% confidence interval (t distribution) over seeds; n: runs per row; best value per column in bold.}
  \label{tab:snn_vs_ann}
  \begin{tabular}{llrrrr}
    \toprule
    Surrogate & Slope & n & SNN acc (\%) & ANN acc (\%) & SNN$-$ANN (pp) \\
    \midrule
    atan & 10 & 2 & 40.0 & 80.0 & -40.0 \\
    fast\_sigmoid & 1 & 3 & 60 $\pm$ 25 & 80.0 & -20 $\pm$ 25 \\
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


def test_snn_vs_ann_csv_holds_raw_numbers():
    frame = pd.read_csv(pd.io.common.StringIO(snn_vs_ann_table(_runs()).to_csv()))
    assert list(frame.columns[:2]) == ["surrogate.name", "surrogate.slope"]
    assert frame.loc[1, "snn/test/acc_best_mean"] == pytest.approx(0.6, abs=1e-12)
    assert frame.loc[1, "snn/test/acc_best_n"] == 3
    assert frame.loc[0, "snn/test/acc_best_n"] == 1
    assert math.isnan(frame.loc[0, "snn/test/acc_best_ci"])
    assert frame.loc[1, "acc_gap_mean"] == pytest.approx(-0.2, abs=1e-12)


def test_single_configuration_has_no_row_labels_and_no_bold():
    runs = _runs().iloc[:3]
    table = snn_vs_ann_table(runs)
    header, body = table.cells(markup="markdown")
    assert header[0] == "n"
    assert body == [["3", "60 ± 25", "80.0", "-20 ± 25"]]


SURROGATE_MD = """\
| Surrogate | Slope | n | SNN acc (%) | Alignment cos | Gradient stable | Diverged |
| :-- | :-- | --: | --: | --: | --: | --: |
| atan | 10 | 2 | 40.0 | 0.600 | **1/1** | 1/2 |
| fast_sigmoid | 1 | 3 | 60 ± 25 | **0.8 ± 0.2** | 2/3 | **0/3** |
| fast_sigmoid | 10 | 1 | **90.0** | 0.500 | **1/1** | **0/1** |
"""


def test_surrogate_slope_table_markdown():
    assert surrogate_slope_table(_runs()).to_markdown() == SURROGATE_MD


def test_best_slope_table():
    table = best_slope_table(_runs())
    header, body = table.cells(markup="plain")
    assert header == ["Surrogate", "Best slope", "n", "SNN acc (%)", "Alignment cos"]
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
    assert paths[1].read_text(encoding="utf-8") == SNN_VS_ANN_MD
    with pytest.raises(ValueError, match="formats"):
        table.write(tmp_path, formats=["docx"])
