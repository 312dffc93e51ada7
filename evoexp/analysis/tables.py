"""Paper tables from a run frame: SNN vs ANN, surrogate × slope, and the best slope per surrogate.

Each table aggregates the runs of every configuration over seeds (:func:`evoexp.analysis.aggregate.aggregate`)
and shows ``mean [low, high]``: the mean over seeds and the 95 % percentile-bootstrap confidence interval of the
mean (:mod:`evoexp.stats`, the interval of every figure too), rounded where the interval's larger distance
from the mean has its first significant digit (its second when that digit is 1). The best value of each column is
set in bold. :class:`Table` renders to CSV (raw numbers), Markdown (caption above the table) and LaTeX (booktabs);
:meth:`Table.fit` keeps the leading columns that fit a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from evoexp import keys as schema
from evoexp.analysis.aggregate import STAT_COLUMNS, aggregate, group_columns, varying_columns
from evoexp.stats import INTERVAL_DESCRIPTION

Better = Literal["higher", "lower"]
CellKind = Literal["interval", "fraction", "value"]
Markup = Literal["plain", "markdown", "latex"]
TABLE_FORMATS = ("csv", "md", "tex")
MISSING = "n/a"
_NEGLIGIBLE = 1e-9  # relative size below which an interval or a difference is rounding noise

_PREFERRED_ROWS = (
    schema.param(schema.SURROGATE_NAME_PARAM),
    schema.param(schema.SURROGATE_SLOPE_PARAM),
    schema.param(schema.SURROGATE_SCALE_PARAM),
    schema.param("model.name"),
    schema.param("dataset.name"),
)
_ROW_LABELS = {
    schema.param(schema.SURROGATE_NAME_PARAM): "Surrogate",
    schema.param(schema.SURROGATE_SLOPE_PARAM): "Slope β",
    schema.param(schema.SURROGATE_SCALE_PARAM): "Scale",
    schema.param("model.detach_reset"): "Reset detached",
    schema.param("model.name"): "Model",
    schema.param("dataset.name"): "Dataset",
}
_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "−": "$-$",
    "±": r"$\pm$",
    "×": r"$\times$",
    "β": r"$\beta$",
}


@dataclass(frozen=True)
class Column:
    """One statistic column of a table.

    Attributes:
        key: Run-frame column that is aggregated (e.g. ``metrics.snn/test/acc_best``).
        label: Header text (plain; escaped for LaTeX); the header adds what the cells show.
        better: ``"higher"`` or ``"lower"`` marks the best row in bold; ``None`` marks nothing.
        scale: Factor applied for display (100 shows a fraction in percent); CSV keeps raw values.
        decimals: Decimals when no confidence interval is available (``n < 2``); ``None`` shows three
            significant digits.
        kind: ``"interval"`` shows ``mean [low, high]``; ``"fraction"`` shows a 0/1 verdict as ``passes/n``;
            ``"value"`` shows the mean alone, for quantities that do not vary over seeds (parameter counts).
    """

    key: str
    label: str
    better: Better | None = None
    scale: float = 1.0
    decimals: int | None = None
    kind: CellKind = "interval"

    def __post_init__(self) -> None:
        if self.better not in (None, "higher", "lower"):
            raise ValueError(f"better must be 'higher', 'lower' or None, got {self.better!r}")
        if self.kind not in ("interval", "fraction", "value"):
            raise ValueError(f"kind must be 'interval', 'fraction' or 'value', got {self.kind!r}")

    def header(self, confidence: float) -> str:
        """Header text: the label and what a cell holds (``[95% CI]``, ``(runs)`` or nothing for a plain value)."""
        if self.kind == "value":
            return self.label
        return f"{self.label} (runs)" if self.kind == "fraction" else f"{self.label} [{confidence:.0%} CI]"


def _significant_decimals(x: float, significant: int) -> int:
    if x == 0 or not math.isfinite(x):
        return significant - 1
    return max(0, significant - 1 - math.floor(math.log10(abs(x))))


_SCIENTIFIC_BELOW = 1e-3
"""Magnitude below which :func:`format_interval` switches to scientific notation."""


def format_interval(mean: float, low: float, high: float, *, decimals: int | None = None) -> str:
    """Format ``mean [low, high]`` with digits set by the interval.

    The interval's larger distance from the mean is rounded to one significant digit (two when its leading digit is
    1), and the mean and both bounds to the same decimal place. Without a usable interval (NaN bounds, or a width of
    zero up to rounding) only the mean is shown, with ``decimals`` decimals (three significant digits when
    ``None``).

    Args:
        mean: Sample mean; NaN gives :data:`MISSING`.
        low: Lower bound of the interval.
        high: Upper bound of the interval.
        decimals: Decimals of a mean shown without interval.
    """
    if not math.isfinite(mean):
        return MISSING
    reach = max(mean - low, high - mean) if math.isfinite(low) and math.isfinite(high) else math.nan
    has_ci = math.isfinite(reach) and reach > _NEGLIGIBLE * abs(mean)
    if mean != 0 and abs(mean) < _SCIENTIFIC_BELOW:
        return f"{mean:.2g} [{low:.2g}, {high:.2g}]" if has_ci else f"{mean:.3g}"
    if has_ci:
        exponent = math.floor(math.log10(reach))
        leading = reach / 10.0**exponent
        places = max(0, -exponent + (1 if leading < 2 else 0))
        return f"{mean:.{places}f} [{low:.{places}f}, {high:.{places}f}]"
    places = _significant_decimals(mean, 3) if decimals is None else decimals
    return f"{mean:.{places}f}"


def format_value(value: object) -> str:
    """Format a row-key value: integral floats without decimals, other floats with ``%g``, NaN as n/a."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else f"{float(value):g}"
    return str(value)


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


@dataclass(frozen=True, eq=False)
class Table:
    """An aggregated table: one row per configuration, one :class:`Column` per statistic.

    Attributes:
        name: File stem and LaTeX label suffix (``tab:<name>``).
        caption: Caption (plain text).
        rows: Row-key values, one row per table row (columns are run-frame param columns).
        row_labels: Header text of each row-key column.
        columns: Statistic columns.
        stats: Statistics aligned with ``rows``; columns ``(column key, stat)`` for every stat in
            :data:`evoexp.analysis.aggregate.STAT_COLUMNS`; unscaled.
        confidence: Coverage of the intervals.
    """

    name: str
    caption: str
    rows: pd.DataFrame
    row_labels: tuple[str, ...]
    columns: tuple[Column, ...]
    stats: pd.DataFrame = field(repr=False)
    confidence: float = 0.95

    def __len__(self) -> int:
        return len(self.rows)

    def best_rows(self, column: Column) -> list[int]:
        """Row positions holding the best mean of ``column``, ties (up to rounding) included.

        No row is best when the column has no direction, fewer than two values, or all values tie.
        """
        if column.better is None:
            return []
        means = self.stats[(column.key, "mean")].to_numpy(dtype=np.float64)
        finite = np.isfinite(means)
        if finite.sum() < 2:
            return []
        target = np.max(means[finite]) if column.better == "higher" else np.min(means[finite])
        best = finite & np.isclose(means, target, rtol=0.0, atol=_NEGLIGIBLE * np.max(np.abs(means[finite])))
        if best.sum() == finite.sum():
            return []
        return [int(i) for i in np.flatnonzero(best)]

    def _cell(self, row: int, column: Column) -> str:
        mean = float(self.stats[(column.key, "mean")].iloc[row])
        n = int(self.stats[(column.key, "n")].iloc[row])
        if column.kind == "fraction":
            return MISSING if n == 0 else f"{round(mean * n)}/{n}"
        if column.kind == "value":
            return format_interval(mean * column.scale, math.nan, math.nan, decimals=column.decimals)
        low, high = (float(self.stats[(column.key, bound)].iloc[row]) for bound in ("ci_low", "ci_high"))
        return format_interval(mean * column.scale, low * column.scale, high * column.scale, decimals=column.decimals)

    def row_n(self) -> list[int]:
        """Number of runs behind each row (the largest ``n`` over its statistics, shown or not)."""
        counts = self.stats[[c for c in self.stats.columns if c[1] == "n"]].to_numpy()
        return [int(v) for v in counts.max(axis=1)]

    def cells(self, *, markup: Markup = "plain") -> tuple[list[str], list[list[str]]]:
        r"""Return the header and body cells as strings, with the best cells marked up in bold.

        Args:
            markup: ``"plain"`` (no bold), ``"markdown"`` (``**x**``) or ``"latex"`` (escaped, ``\textbf{x}``).
        """
        if markup not in ("plain", "markdown", "latex"):
            raise ValueError(f"markup must be 'plain', 'markdown' or 'latex', got {markup!r}")
        escape = latex_escape if markup == "latex" else str
        labels = (*self.row_labels, "n", *(c.header(self.confidence) for c in self.columns))
        header = [escape(label) for label in labels]
        body: list[list[str]] = []
        for i, n in enumerate(self.row_n()):
            keys = [escape(format_value(self.rows.iloc[i, j])) for j in range(self.rows.shape[1])]
            body.append([*keys, str(n), *(self._cell(i, c) for c in self.columns)])
        if markup != "plain":
            offset = len(self.row_labels) + 1
            for j, column in enumerate(self.columns):
                for i in self.best_rows(column):
                    text = body[i][offset + j]
                    body[i][offset + j] = f"**{text}**" if markup == "markdown" else f"\\textbf{{{text}}}"
        return header, body

    def to_frame(self) -> pd.DataFrame:
        """Raw numbers: row keys (param names without prefix), then ``<metric>_<stat>`` per column."""
        frame = self.rows.rename(columns=schema.strip_prefix).reset_index(drop=True)
        stats = {
            f"{schema.strip_prefix(c.key)}_{s}": self.stats[(c.key, s)].to_numpy()
            for c in self.columns
            for s in STAT_COLUMNS
        }
        return pd.concat([frame, pd.DataFrame(stats)], axis=1)

    def to_csv(self) -> str:
        """CSV text of :meth:`to_frame`."""
        return self.to_frame().to_csv(index=False)

    def to_markdown(self) -> str:
        """GitHub Markdown table: row keys left-aligned, numbers right-aligned, best values in bold."""
        header, body = self.cells(markup="markdown")
        n_keys = len(self.row_labels)
        align = [":--"] * n_keys + ["--:"] * (len(header) - n_keys)

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        return "\n".join([line(header), line(align), *(line(r) for r in body)]) + "\n"

    def to_latex(self) -> str:
        """LaTeX ``table`` float with a booktabs ``tabular``, caption and ``tab:<name>`` label."""
        header, body = self.cells(markup="latex")
        spec = "l" * len(self.row_labels) + "r" * (len(header) - len(self.row_labels))
        lines = [
            "\\begin{table}[t]",
            "  \\centering",
            f"  \\caption{{{latex_escape(self.caption)}}}",
            f"  \\label{{tab:{self.name}}}",
            f"  \\begin{{tabular}}{{{spec}}}",
            "    \\toprule",
            "    " + " & ".join(header) + " \\\\",
            "    \\midrule",
            *("    " + " & ".join(r) + " \\\\" for r in body),
            "    \\bottomrule",
            "  \\end{tabular}",
            "\\end{table}",
        ]
        return "\n".join(lines) + "\n"

    def fit(self, width: int) -> Table:
        """The table with the leading statistic columns whose Markdown lines fit ``width`` characters.

        Row labels and ``n`` are always kept; the caption says how many columns were left out (the files written by
        :meth:`write` hold them all).

        Args:
            width: Largest line length, e.g. 120 for a terminal.
        """
        keep = len(self.columns)
        while keep > 1 and max(map(len, replace(self, columns=self.columns[:keep]).to_markdown().splitlines())) > width:
            keep -= 1
        if keep == len(self.columns):
            return self
        left_out = len(self.columns) - keep
        caption = f"{self.caption} ({left_out} more column{'s' if left_out > 1 else ''} in {self.name}.csv/.md.)"
        return replace(self, caption=caption, columns=self.columns[:keep])

    def write(self, out_dir: str | Path, *, formats: Sequence[str] = TABLE_FORMATS) -> list[Path]:
        """Write the table as ``<out_dir>/<name>.<fmt>`` for each of ``formats`` (csv, md with its caption, tex).

        Returns:
            The written paths.

        Raises:
            ValueError: If a format is unknown.
        """
        render = {"csv": self.to_csv, "md": lambda: f"{self.caption}\n\n{self.to_markdown()}", "tex": self.to_latex}
        unknown = [f for f in formats if f not in render]
        if unknown:
            raise ValueError(f"formats: unknown table format(s) {unknown}; choose from {list(render)}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for fmt in formats:
            path = out / f"{self.name}.{fmt}"
            path.write_text(render[fmt](), encoding="utf-8")
            paths.append(path)
        return paths


def with_derived(runs: pd.DataFrame) -> pd.DataFrame:
    """Add per-run derived columns: SNN−ANN test-accuracy gap, SNN/ANN time ratio, diverged flag.

    Each column is added only when its inputs are present. ``derived.diverged`` is 1.0 for runs whose
    ``evoexp.outcome`` tag is ``diverged``, 0.0 for other outcomes and NaN where the tag is missing.

    Args:
        runs: A run frame; it is not modified.
    """
    out = runs.copy()
    snn_acc, ann_acc = schema.metric(schema.SNN_TEST_ACC), schema.metric(schema.ANN_TEST_ACC)
    snn_time, ann_time = schema.metric(schema.SNN_TIME_PER_EPOCH), schema.metric(schema.ANN_TIME_PER_EPOCH)
    outcome = schema.tag(schema.OUTCOME_TAG)
    if snn_acc in out.columns and ann_acc in out.columns:
        out[schema.ACC_GAP] = out[snn_acc] - out[ann_acc]
    if snn_time in out.columns and ann_time in out.columns:
        out[schema.TIME_RATIO] = out[snn_time] / out[ann_time].where(out[ann_time] != 0)
    if outcome in out.columns:
        flag = (out[outcome] == schema.DIVERGED_OUTCOME).astype("float64")
        out[schema.DIVERGED] = flag.where(out[outcome].notna())
    return out


def row_columns(runs: pd.DataFrame, *, first: Sequence[str] = (), ignore: Sequence[str] = ()) -> list[str]:
    """Choose the params that label table rows: ``first`` always, then every other param that varies.

    Seeds, ignored params and params implied by others are left out (:func:`varying_columns`).

    Args:
        runs: A run frame.
        first: Columns that always label rows, in this order.
        ignore: Columns never used.
    """
    candidates = group_columns(runs, ignore=[*ignore, *first])
    ordered = [c for c in _PREFERRED_ROWS if c in candidates] + [c for c in candidates if c not in _PREFERRED_ROWS]
    return [*first, *varying_columns(runs, ordered, given=first)]


def build_table(
    runs: pd.DataFrame,
    *,
    name: str,
    caption: str,
    rows: Sequence[str],
    columns: Sequence[Column],
    confidence: float = 0.95,
) -> Table:
    """Aggregate ``runs`` over seeds into a :class:`Table`; columns without any data are dropped.

    Args:
        runs: A run frame (with derived columns, see :func:`with_derived`).
        name: Table name (file stem, LaTeX label).
        caption: Caption text.
        rows: Columns whose value combinations make the rows (``[]``: one row for all runs).
        columns: Candidate statistic columns.
        confidence: Coverage of the bootstrap intervals.

    Raises:
        ValueError: If ``runs`` is empty or none of ``columns`` has data.
    """
    if runs.empty:
        raise ValueError("runs: no runs to tabulate")
    present = tuple(c for c in columns if c.key in runs.columns and runs[c.key].notna().any())
    if not present:
        raise ValueError(f"runs: none of the columns {[c.key for c in columns]} has data for table {name!r}")
    keys = [c.key for c in present]
    long = aggregate(runs, by=rows, metrics=keys, confidence=confidence)
    row_frame = long[list(rows)].iloc[:: len(keys)].reset_index(drop=True)
    stats = pd.concat({k: long[long["metric"] == k][list(STAT_COLUMNS)].reset_index(drop=True) for k in keys}, axis=1)
    labels = tuple(_ROW_LABELS.get(r, schema.strip_prefix(r)) for r in rows)
    return Table(name, caption, row_frame, labels, present, stats, confidence)


def _caption(text: str, confidence: float) -> str:
    return (
        f"{text} Cells: mean [{confidence:.0%} {INTERVAL_DESCRIPTION}]; "
        "n: runs per row; best value per column in bold."
    )


def snn_vs_ann_table(runs: pd.DataFrame, *, confidence: float = 0.95, ignore: Sequence[str] = ()) -> Table:
    """Table 1: SNN vs ANN test accuracy and loss, time per epoch, convergence, sizes, gap and time ratio.

    Rows are the configurations (the params that vary across ``runs``, seeds excluded).

    Args:
        runs: A run frame from :func:`evoexp.job.analysis.load.load_runs`.
        confidence: Coverage of the bootstrap intervals.
        ignore: Params never used as row labels.
    """
    m = schema.metric
    columns = [
        Column(m(schema.SNN_TEST_ACC), "SNN acc (%)", "higher", 100.0, 1),
        Column(m(schema.SNN_TEST_ACC_LAST), "SNN acc last (%)", "higher", 100.0, 1),
        Column(m(schema.ANN_TEST_ACC), "ANN acc (%)", "higher", 100.0, 1),
        Column(schema.ACC_GAP, "SNN−ANN (pp)", "higher", 100.0, 1),
        Column(m(schema.SNN_TIME_PER_EPOCH), "SNN s/epoch", "lower"),
        Column(m(schema.ANN_TIME_PER_EPOCH), "ANN s/epoch", "lower"),
        Column(schema.TIME_RATIO, "Time SNN/ANN", "lower", decimals=2),
        Column(m(schema.SNN_TEST_LOSS), "SNN loss", "lower", decimals=3),
        Column(m(schema.ANN_TEST_LOSS), "ANN loss", "lower", decimals=3),
        Column(m(schema.SNN_EPOCHS_TO_CONVERGE), "SNN epochs to 90%", "lower", decimals=1),
        Column(m(schema.ANN_EPOCHS_TO_CONVERGE), "ANN epochs to 90%", "lower", decimals=1),
        Column(m(schema.SNN_PARAMS), "SNN params", decimals=0, kind="value"),
        Column(m(schema.ANN_PARAMS), "ANN params", decimals=0, kind="value"),
    ]
    data = with_derived(runs)
    return build_table(
        data,
        name="snn_vs_ann",
        caption=_caption(
            "SNN vs ANN on the same split, optimiser and epochs; test accuracy with the weights of the best validation "
            "epoch restored (last: after the final epoch).",
            confidence,
        ),
        rows=row_columns(data, ignore=ignore),
        columns=columns,
        confidence=confidence,
    )


def _surrogate_columns() -> list[Column]:
    m = schema.metric
    return [
        Column(m(schema.SNN_TEST_ACC), "SNN acc (%)", "higher", 100.0, 1),
        Column(m(schema.SNN_TEST_ACC_LAST), "SNN acc last (%)", "higher", 100.0, 1),
        Column(m(schema.SNN_BEST_EPOCH), "Best epoch", decimals=0),
        Column(schema.DIVERGED, "Diverged", "lower", kind="fraction"),
        Column(m(schema.STABILITY_GRADIENT_OK), "Gradient stable", "higher", kind="fraction"),
        Column(m(schema.ALIGNMENT_COSINE), "Alignment cos", "higher", decimals=3),
        Column(m(schema.ALIGNMENT_SIGN), "Sign agreement", "higher", decimals=3),
        Column(m(schema.SURROGATE_L1_ERROR), "Surrogate L1 error", "lower"),
        Column(m(schema.GRADIENT_MAX_ABS_ERROR), "Gradient max error", "lower"),
        Column(m(schema.STABILITY_WEIGHT_OK), "Weights stable", "higher", kind="fraction"),
    ]


def _surrogate_rows(runs: pd.DataFrame, ignore: Sequence[str]) -> list[str]:
    first = [schema.param(schema.SURROGATE_NAME_PARAM), schema.param(schema.SURROGATE_SLOPE_PARAM)]
    missing = [c for c in first if c not in runs.columns]
    if missing:
        raise ValueError(f"runs: surrogate tables need the params {missing}")
    return row_columns(runs, first=first, ignore=ignore)


def surrogate_slope_table(runs: pd.DataFrame, *, confidence: float = 0.95, ignore: Sequence[str] = ()) -> Table:
    """Table 2: per surrogate shape and slope — SNN accuracy, gradient alignment, approximation error, stability.

    Args:
        runs: A run frame with params ``surrogate.name`` and ``surrogate.slope``.
        confidence: Coverage of the bootstrap intervals.
        ignore: Params never used as row labels.

    Raises:
        ValueError: If the surrogate params are missing.
    """
    data = with_derived(runs)
    return build_table(
        data,
        name="surrogate_slope",
        caption=_caption(
            "Surrogate shape × slope; SNN test accuracy with the weights of the best validation epoch restored "
            "(last: after the final epoch).",
            confidence,
        ),
        rows=_surrogate_rows(data, ignore),
        columns=_surrogate_columns(),
        confidence=confidence,
    )


def best_slope_table(
    runs: pd.DataFrame,
    *,
    metric: str = schema.metric(schema.SNN_TEST_ACC),
    confidence: float = 0.95,
    ignore: Sequence[str] = (),
) -> Table:
    """Table 3: for each surrogate shape (and any other varying param), the slope with the best mean ``metric``.

    Args:
        runs: A run frame with params ``surrogate.name`` and ``surrogate.slope``.
        metric: Column maximised over slopes.
        confidence: Coverage of the bootstrap intervals.
        ignore: Params never used as row labels.

    Raises:
        ValueError: If the surrogate params are missing or ``metric`` has no data.
    """
    full = surrogate_slope_table(runs, confidence=confidence, ignore=ignore)
    if metric not in {c.key for c in full.columns}:
        raise ValueError(f"metric: {metric!r} has no data in the runs")
    slope = schema.param(schema.SURROGATE_SLOPE_PARAM)
    others = [c for c in full.rows.columns if c != slope]
    scores = full.rows[others].assign(_score=full.stats[(metric, "mean")].to_numpy())
    scores = scores[scores["_score"].notna()]
    best = scores.groupby(others, dropna=False, sort=False)["_score"].idxmax().sort_values().to_numpy()
    rows = full.rows.iloc[best][[*others, slope]].reset_index(drop=True)
    labels = tuple("Best slope" if c == slope else full.row_labels[list(full.rows.columns).index(c)] for c in rows)
    keep = tuple(c for c in full.columns if c.kind == "interval")
    stats = full.stats.iloc[best][[(c.key, s) for c in keep for s in STAT_COLUMNS]].reset_index(drop=True)
    caption = _caption(f"Best slope per surrogate shape (highest mean {schema.strip_prefix(metric)}).", confidence)
    return replace(full, name="best_slope", caption=caption, rows=rows, row_labels=labels, columns=keep, stats=stats)
