"""``python -m evoexp.audit``: end to end, the records it writes, and what it finds in the pinned peer libraries."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from evoexp import audit
from evoexp.peers.documented import DOCUMENTED
from evoexp.peers.names import available_peer_surrogates


def _need(*modules: str) -> None:
    for module in modules:
        pytest.importorskip(module, reason=f"{module} is not installed (pip install evoexp[peers])")


def test_audit_runs_end_to_end(tmp_path: Path) -> None:
    _need("snntorch.surrogate", "spikingjelly.activation_based.surrogate", "norse.torch.functional.threshold")
    done = subprocess.run([sys.executable, "-m", "evoexp.audit", "--out", str(tmp_path)], capture_output=True,
                          text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    records = json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))
    assert isinstance(records, list) and len(records) > 100
    assert all({"library", "function", "params", "passed", "findings", "dtype", "source"} <= set(r) for r in records)
    assert {r["library"] for r in records} == {"snntorch", "spikingjelly", "norse"}
    assert {r["dtype"] for r in records} == {"torch.float64", "torch.float32"}
    table = (tmp_path / "audit.md").read_text(encoding="utf-8")
    assert "| function | documented (source) | float64 | float32 |" in table
    assert "functions" in done.stdout and "wrote" in done.stdout
    # a second run on the same code rewrites both files byte for byte
    again = tmp_path / "again"
    assert audit.main(["--out", str(again)]) == 0
    for name in ("audit.json", "audit.md"):
        assert (again / name).read_bytes() == (tmp_path / name).read_bytes(), name


def _noisy(value: float) -> float:
    return value * (1.0 + 3e-12) if isinstance(value, float) and math.isfinite(value) else value


def test_written_files_do_not_carry_float_noise(report: audit.AuditReport, tmp_path: Path) -> None:
    """The audit with every number perturbed in its 12th digit (another CPU, thread count) writes the same bytes."""
    noisy = dataclasses.replace(
        report,
        records=[
            dataclasses.replace(
                r,
                implementation_max_abs_error=_noisy(r.implementation_max_abs_error),
                fitted_factor=_noisy(r.fitted_factor),
                findings=[
                    dataclasses.replace(
                        f,
                        where=[_noisy(w) for w in f.where],
                        max_error=_noisy(f.max_error),
                        factor=None if f.factor is None else _noisy(f.factor),
                    )
                    for f in r.findings
                ],
            )
            for r in report.records
        ],
    )
    assert noisy.records != report.records
    first = audit.write_audit(report, tmp_path / "a")
    second = audit.write_audit(noisy, tmp_path / "b")
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    records = json.loads(first[0].read_text(encoding="utf-8"))
    assert list(records[0]) == sorted(records[0])  # keys sorted
    factors = [r["fitted_factor"] for r in records if isinstance(r["fitted_factor"], float)]
    assert factors and all(float(f"{v:.6g}") == v for v in factors)  # six significant digits


@pytest.fixture(scope="module")
def report() -> audit.AuditReport:
    _need("snntorch.surrogate", "spikingjelly.activation_based.surrogate", "norse.torch.functional.threshold")
    return audit.run_audit(n_points=800)


def _records(report: audit.AuditReport, label: str) -> list[audit.AuditRecord]:
    found = report.functions()[label]
    assert found, label
    return found


def test_every_documented_function_is_audited_at_three_parameters_in_two_dtypes(report: audit.AuditReport) -> None:
    for entry in DOCUMENTED:
        records = _records(report, entry.label)
        if entry.skip:
            assert all(r.passed is None for r in records)
            continue
        assert {r.dtype for r in records} == {"torch.float64", "torch.float32"}
        assert [r.params for r in records[::2]] == [dict(p) for p in entry.grid]
        assert len(entry.grid) >= 3 or not entry.grid[0], entry.label


def test_documented_functions_cover_the_peer_names() -> None:
    documented = {f"{e.library}:{e.function}" for e in DOCUMENTED}
    assert set(available_peer_surrogates()) <= documented


def test_norse_superspike_ignores_alpha(report: audit.AuditReport) -> None:
    kinds = {f.kind for r in _records(report, "norse:super") for f in r.findings}
    assert kinds == {"formula", "ignored_slope"}


def test_snntorch_atan_is_pi_alpha_over_2_times_its_documented_derivative(report: audit.AuditReport) -> None:
    for record in _records(report, "snntorch:atan"):
        formula = next(f for f in record.findings if f.kind == "formula")
        assert formula.factor == pytest.approx(math.pi * record.params["alpha"] / 2, rel=1e-6)


def test_norse_factors_follow_the_documented_primitives(report: audit.AuditReport) -> None:
    expected = {"norse:tanh": lambda a: 2 / a, "norse:circ": lambda a: 2 * a, "norse:heavi_erfc": lambda a: -2 / a}
    for label, factor in expected.items():
        for record in _records(report, label):
            formulas = [f for f in record.findings if f.kind == "formula"]
            if factor(record.params["alpha"]) == 1.0:  # circ at alpha = 0.5: 2 alpha = 1, code and docs agree
                assert not formulas
                continue
            assert formulas[0].factor == pytest.approx(factor(record.params["alpha"]), rel=1e-5), label


def test_findings_the_audit_reports(report: audit.AuditReport) -> None:
    def kinds(label: str) -> set[str]:
        return {f.kind for r in _records(report, label) for f in r.findings}

    assert kinds("snntorch:forward at x = 0") == {"edge"}  # docs: S = 1 at U = U_thr; code: (x > 0)
    assert kinds("snntorch:LSO") == {"raised"}
    assert kinds("snntorch:FastSigmoid.apply (docs' Method 2)") == {"raised"}
    assert "numerical" in kinds("snntorch:sigmoid")
    assert kinds("spikingjelly:SuperSpike") == {"raised"}  # its primitive raises NotImplementedError
    assert kinds("spikingjelly:PiecewiseLeakyReLU") == {"edge"}  # code |x| < w, docs -w <= x <= w
    assert kinds("spikingjelly:SoftSign (soft_sign_backward docstring)") == {"formula"}
    assert kinds("spikingjelly:S2NN") == {"consistency"}  # the primitive's log(x + 1 + 1e-5)
    for label in ("spikingjelly:PiecewiseQuadratic", "spikingjelly:SoftSign", "spikingjelly:Erf",
                  "snntorch:fast_sigmoid", "norse:triangle"):
        assert all(r.passed for r in _records(report, label)), label


def test_markdown_has_one_row_per_function(report: audit.AuditReport) -> None:
    rows = [line for line in report.markdown().splitlines() if line.startswith("| `")]
    assert len(rows) == len(report.functions())


def test_library_option_and_missing_libraries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _need("norse.torch.functional.threshold")
    assert audit.main(["--out", str(tmp_path), "--library", "norse"]) == 0
    assert {r["library"] for r in json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))} == {"norse"}
    monkeypatch.setitem(audit._IMPORTS, "norse", "evoexp_no_such_module")
    assert audit.main(["--out", str(tmp_path / "none"), "--library", "norse"]) == 2
    assert "pip install 'evoexp[peers]' && pip install --no-deps spikingjelly" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()
