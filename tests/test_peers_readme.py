"""The README's worked snnTorch example runs as written and prints what the README says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Verifying snnTorch, SpikingJelly and Norse networks"


def _blocks() -> tuple[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    output = re.search(r"```text\n(.*?)```", section, re.S)
    assert code and output and code.start() < output.start()
    return code.group(1), output.group(1)


def test_worked_snntorch_example_runs_and_prints_what_the_readme_shows() -> None:
    pytest.importorskip("snntorch", reason="snntorch is not installed (pip install evoexp[peers])")
    code, expected = _blocks()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    got, want = printed.getvalue().splitlines(), expected.strip().splitlines()
    assert len(got) == len(want)
    assert got[0].split()[:2] == want[0].split()[:2] == ["True", "True"]
    assert float(got[0].split()[2]) < 1e-7  # the finite-difference error of the smooth copy (README: measured)
    assert got[1:] == want[1:]
