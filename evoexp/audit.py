"""``python -m evoexp.audit --out DIR``: audit every surrogate spike function of the installed peer libraries.

Each function of snnTorch, SpikingJelly and Norse is checked with
:func:`~evoexp.verification.surrogate_check.verify_surrogate_gradient` against the derivative its library
documents (:mod:`evoexp.peers.documented`), at the library's default parameter and two others, in float64 and
float32; each library's forward is checked against its documented value at the threshold. Writes ``audit.json`` (a
list of records: ``library``, ``version``, ``function``, ``params``, ``dtype``, ``passed``, ``findings``, ...) and
``audit.md`` (one row per function) to ``DIR`` and prints a summary. Takes seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from evoexp.peers.documented import DOCUMENTED, FORWARD_CONVENTIONS, DocumentedSurrogate
from evoexp.peers.names import LIBRARIES, get_peer
from evoexp.results import Result, to_jsonable
from evoexp.verification.surrogate_check import SurrogateFinding, verify_surrogate_gradient

__all__ = ["AuditRecord", "AuditReport", "main", "run_audit"]

_IMPORTS = {"snntorch": "snntorch.surrogate", "spikingjelly": "spikingjelly.activation_based.surrogate",
            "norse": "norse.torch.functional.threshold"}
_DTYPES = (torch.float64, torch.float32)


@dataclass
class AuditRecord(Result):
    """One audited (function, parameters, dtype).

    Attributes:
        library: ``snntorch``, ``spikingjelly`` or ``norse``.
        version: The installed version of the library.
        function: The audited function (``"forward at x = 0"`` for the threshold convention).
        variant: Which document, when a function has two that disagree.
        params: The library's parameters.
        dtype: Dtype of the check.
        documented: The documented formula.
        source: Where it is documented.
        primitive_source: ``documented``, ``code`` (the library's own smooth function) or ``""`` (none).
        findings: The classified failures (empty when it passed).
        skipped: Why the function was not audited (``""`` when it was).
        implementation_max_abs_error: Max |backward - documented| on the grid (``nan`` when not computed).
        fitted_factor: Least-squares factor backward / documented derivative (``nan`` when undefined).
    """

    check: ClassVar[str] = "audit"

    library: str
    version: str
    function: str
    variant: str
    params: dict[str, Any]
    dtype: str
    documented: str
    source: str
    primitive_source: str = ""
    findings: list[SurrogateFinding] = field(default_factory=list)
    skipped: str = ""
    implementation_max_abs_error: float = float("nan")
    fitted_factor: float = float("nan")

    @property
    def passed(self) -> bool | None:
        """No finding (``None`` for a function that cannot be audited)."""
        return None if self.skipped else not self.findings

    @property
    def label(self) -> str:
        """``library:function`` and the variant."""
        return f"{self.library}:{self.function}" + (f" ({self.variant})" if self.variant else "")


@dataclass
class AuditReport(Result):
    """All records of one audit run.

    Attributes:
        libraries: Audited library -> installed version.
        missing: Libraries that are not installed.
        records: One per (function, parameters, dtype), and one per library for the forward at the threshold.
        n_points: Grid size of each check.
        seconds: Wall time.
    """

    check: ClassVar[str] = "audit"

    libraries: dict[str, str]
    missing: list[str]
    records: list[AuditRecord]
    n_points: int
    seconds: float

    @property
    def passed(self) -> bool | None:
        """Informational: findings are about the libraries, not about evoexp."""
        return None

    def functions(self) -> dict[str, list[AuditRecord]]:
        """Records grouped by function label, in audit order."""
        groups: dict[str, list[AuditRecord]] = {}
        for record in self.records:
            groups.setdefault(record.label, []).append(record)
        return groups

    def summary(self) -> dict[str, float]:
        groups = self.functions().values()
        return {
            "audit/functions": float(len(groups)),
            "audit/records": float(len(self.records)),
            "audit/functions_with_findings": float(sum(any(r.passed is False for r in g) for g in groups)),
            "audit/seconds": self.seconds,
        }

    def markdown(self) -> str:
        """One row per function: the documented derivative, the verdict per dtype and the first finding."""
        head = ", ".join(f"{LIBRARIES[k].split()[0]} {v}" for k, v in self.libraries.items())
        lines = [
            f"Audited: {head}; grid of {self.n_points} points on [-4, 4] plus 0, -0.0 and the documented kinks; "
            "parameters: the default first.",
            "",
            "| function | documented (source) | float64 | float32 | finding (parameters, dtype) |",
            "|---|---|---|---|---|",
        ]
        for label, records in self.functions().items():
            first = records[0]
            doc = f"{first.documented} ({first.source})".replace("|", "\\|")
            if first.skipped:
                lines.append(f"| `{label}` | {doc} | — | — | not audited: {first.skipped} |")
                continue
            cells = [_verdict([r for r in records if r.dtype == str(d)]) for d in _DTYPES]
            finding = "; ".join(_first_of_each_kind(records)).replace("|", "\\|")
            lines.append(f"| `{label}` | {doc} | {cells[0]} | {cells[1]} | {finding} |")
        return "\n".join(lines) + "\n"


def _first_of_each_kind(records: list[AuditRecord]) -> list[str]:
    """For each finding kind, its first message with the parameters and dtype where it occurred."""
    seen: dict[str, str] = {}
    for record in records:
        for finding in record.findings:
            seen.setdefault(finding.kind, f"{finding.kind}: {finding.message} ({_params(record.params)}, "
                                          f"{record.dtype.removeprefix('torch.')})")
    return list(seen.values())


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in params.items()) or "no parameters"


def _verdict(records: list[AuditRecord]) -> str:
    if not records:
        return "—"
    kinds = list(dict.fromkeys(f.kind for r in records for f in r.findings))
    failed = sum(bool(r.findings) for r in records)
    return "pass" if not kinds else f"{', '.join(kinds)} ({failed}/{len(records)})"


def _installed(libraries: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    found, missing = {}, []
    for library in libraries:
        try:
            importlib.import_module(_IMPORTS[library])
        except ImportError:
            missing.append(library)
            continue
        found[library] = importlib.metadata.version(library)
    return found, missing


def _slopes(value: float) -> list[float]:
    return [value / 2, value, 2 * value] if value > 0 else [0.25, 0.5, 1.0]


def _audit(entry: DocumentedSurrogate, params: dict[str, Any], dtype: torch.dtype, version: str, h0: float,
           n_points: int) -> AuditRecord:
    record = AuditRecord(entry.library, version, entry.function, entry.variant, dict(params), str(dtype),
                         entry.formula, entry.source, entry.primitive_source if entry.primitive else "")
    if entry.skip:
        record.skipped = entry.skip
        return record
    factory = None
    slopes = None
    if entry.slope is not None:
        name = entry.slope
        slopes = _slopes(float(params[name]))

        def factory(value: float) -> Any:
            return entry.spike_fn({**params, name: value})

    primitive = entry.primitive
    try:
        spike_fn = entry.spike_fn(params)
    except Exception as error:  # a library that fails to build its own function is a finding, whatever the error
        record.findings.append(SurrogateFinding("raised", f"building it raised {type(error).__name__}: {error}"))
        return record
    result = verify_surrogate_gradient(
        spike_fn,
        lambda x: entry.derivative(x, params),
        primitive=None if primitive is None else (lambda x: primitive(x, params)),
        n_points=n_points,
        dtype=dtype,
        kinks=entry.kinks(params) if entry.kinks else (),
        heaviside_at_zero=h0,
        slope_factory=factory,
        slopes=slopes,
        name=record.label,
    )
    record.findings = [dataclasses.replace(f, message=f.message.replace("declared", "documented"))
                       for f in result.findings]
    record.implementation_max_abs_error = result.implementation_max_abs_error
    record.fitted_factor = result.fitted_factor
    return record


def _forward_at_zero(library: str) -> float:
    """What the library's default spike function returns at x = 0 (its convention, as implemented)."""
    spike_fn = get_peer(f"{library}:{FORWARD_CONVENTIONS[library][2]}").build()
    with torch.no_grad():
        return float(spike_fn(torch.zeros(1, dtype=torch.float64))[0])


def _convention(library: str, version: str, actual: float) -> AuditRecord:
    documented, text, function = FORWARD_CONVENTIONS[library]
    record = AuditRecord(library, version, "forward at x = 0", "", {}, "torch.float64", f"H(0) = {documented:g}: "
                         f"{text}", f"{library} docs", "")
    if actual != documented:
        record.findings.append(SurrogateFinding(
            "edge", f"the forward at the threshold (x = 0) is {actual:g} (checked on {function}), the docs say "
                    f"{documented:g}", [0.0], abs(actual - documented)))
    return record


def run_audit(libraries: Sequence[str] | None = None, *, n_points: int = 2000) -> AuditReport:
    """Audit the installed peer libraries' surrogate spike functions against their documented derivatives.

    Args:
        libraries: Library keys (default: snntorch, spikingjelly, norse); missing ones are listed, not audited.
        n_points: Grid size of each check.

    Returns:
        The :class:`AuditReport`.
    """
    start = time.perf_counter()
    found, missing = _installed(list(libraries) if libraries is not None else list(LIBRARIES))
    records: list[AuditRecord] = []
    for library, version in found.items():
        h0 = _forward_at_zero(library)
        records.append(_convention(library, version, h0))
        for entry in (e for e in DOCUMENTED if e.library == library):
            for params in entry.grid:
                for dtype in _DTYPES if not entry.skip else _DTYPES[:1]:
                    records.append(_audit(entry, dict(params), dtype, version, h0, n_points))
    return AuditReport(found, missing, records, n_points, time.perf_counter() - start)


def _print_summary(report: AuditReport, out: Path) -> None:
    groups = report.functions()
    failing = {label: rs for label, rs in groups.items() if any(r.passed is False for r in rs)}
    skipped = [label for label, rs in groups.items() if rs[0].skipped]
    libraries = ", ".join(f"{k} {v}" for k, v in report.libraries.items())
    print(f"evoexp audit of {libraries}: {len(groups)} functions, {len(report.records)} checks in "
          f"{report.seconds:.1f} s")
    print(f"  pass: {len(groups) - len(failing) - len(skipped)}, with findings: {len(failing)}, "
          f"not audited: {len(skipped)}")
    for label, records in failing.items():
        record = next(r for r in records if r.findings)
        finding = record.findings[0]
        print(f"  {label}: {finding.kind}: {finding.message} ({_params(record.params)}, "
              f"{record.dtype.removeprefix('torch.')})")
    if report.missing:
        print(f"  not installed (pip install evoexp[peers]): {', '.join(report.missing)}")
    print(f"wrote {out / 'audit.json'} and {out / 'audit.md'}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 when no peer library is installed)."""
    parser = argparse.ArgumentParser(prog="python -m evoexp.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for audit.json and audit.md")
    parser.add_argument("--library", action="append", choices=list(LIBRARIES), dest="libraries",
                        help="audit only this library (repeatable; default: every installed one)")
    parser.add_argument("--n-points", type=int, default=2000, help="grid size of each check (default 2000)")
    args = parser.parse_args(argv)
    if args.n_points < 4:
        parser.error(f"--n-points must be >= 4, got {args.n_points}")
    report = run_audit(args.libraries, n_points=args.n_points)
    if not report.libraries:
        print(f"no peer library is installed ({', '.join(report.missing)}): pip install evoexp[peers]")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    records = [r.to_dict() for r in report.records]
    (args.out / "audit.json").write_text(json.dumps(to_jsonable(records), indent=2, allow_nan=False) + "\n",
                                         encoding="utf-8")
    (args.out / "audit.md").write_text(report.markdown(), encoding="utf-8")
    _print_summary(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
