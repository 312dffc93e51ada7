"""Command line: ``python -m evoexp.job.analysis`` (console script ``evoexp-analysis``).

Example::

    python -m evoexp.job.analysis --experiment robustness --sweep-id 2024-05-01_12-00-00 --out results/robustness

prints the SNN-vs-ANN table (the columns that fit 120 characters; accuracy in %) and the runs' verdicts, writes
tables (CSV, Markdown, LaTeX) and figures (PDF, PNG) to ``--out`` (a table or figure without data is skipped with a
one-line reason), then attaches them to the sweep's summary MLflow run.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from evoexp import keys as schema
from evoexp.analysis.tables import verdict_summary
from evoexp.job.analysis.pipeline import ALL_FORMATS, run_analysis
from evoexp.job.analysis.select import NEWEST
from evoexp.job.tracking import resolve_tracking_uri

TERMINAL_WIDTH = 120
"""The printed table keeps the columns that fit this many characters per line (the files hold all columns)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the analysis command line."""
    invoked = Path(sys.argv[0]).name
    parser = argparse.ArgumentParser(
        prog="python -m evoexp.job.analysis" if invoked in ("__main__.py", "-c", "") else invoked,
        description="Tables (CSV/Markdown/LaTeX) and figures (PDF/PNG) from the MLflow runs of an evoexp sweep.",
    )
    parser.add_argument("--experiment", required=True, help="MLflow experiment name")
    parser.add_argument("--sweep-id", default=None, help="analyse only runs tagged evoexp.sweep_id=ID")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlruns.db)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: analysis/<sweep or experiment>)"
    )
    parser.add_argument(
        "--formats", nargs="+", default=list(ALL_FORMATS), choices=ALL_FORMATS, help="output formats (default: all)"
    )
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="coverage of the bootstrap intervals of the mean (default 0.95)"
    )
    parser.add_argument(
        "--ignore-param",
        nargs="*",
        default=[],
        metavar="KEY",
        help="params (e.g. trainer.log_every) that do not distinguish configurations",
    )
    parser.add_argument(
        "--code-identity",
        default=NEWEST,
        metavar="ID",
        help="analyse the runs of this code identity (tag evoexp.code_identity; default: that of the newest run); "
        "one run per config counts, the newest",
    )
    parser.add_argument("--no-summary-run", action="store_true", help="do not log results to an MLflow summary run")
    return parser


def _folder_name(name: str) -> str:
    """``name`` as one folder name: separators become ``_`` (an experiment name never leads out of ``analysis/``)."""
    folder = name.replace("/", "_").replace("\\", "_")
    return "_" if folder.strip() in ("", ".", "..") else folder


def main(argv: Sequence[str] | None = None) -> int:
    """Run the analysis; returns the process exit code (0 ok, 2 bad input)."""
    import matplotlib

    matplotlib.use("Agg")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("evoexp").setLevel(logging.INFO)
    out = args.out if args.out is not None else Path("analysis") / _folder_name(args.sweep_id or args.experiment)
    try:
        result = run_analysis(
            args.experiment,
            out_dir=out,
            sweep_id=args.sweep_id,
            tracking_uri=resolve_tracking_uri(args.tracking_uri, root=Path.cwd()),
            formats=args.formats,
            confidence=args.confidence,
            ignore=[schema.param(k) for k in args.ignore_param],
            log_summary=not args.no_summary_run,
            command="python -m evoexp.job.analysis " + shlex.join(sys.argv[1:] if argv is None else argv),
            code=args.code_identity,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = result.main_table
    if table is not None:
        shown = table.fit(TERMINAL_WIDTH)
        print(f"{shown.caption}\n\n{shown.to_markdown()}")
    verdicts = verdict_summary(result.runs)
    if verdicts is not None:
        print(verdicts)
    for reason in result.skipped:
        print(f"skipped {reason}")
    print(f"{len(result.runs)} run(s); wrote {len(result.files)} files to {out}")
    if result.summary_run_id is not None:
        print(f"summary MLflow run: {result.summary_run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
