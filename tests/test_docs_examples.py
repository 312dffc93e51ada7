"""Every code block of README.md and docs/ that claims to run is run, and prints what the page shows.

The convention (docs/guides/development.md, "Examples that run"): an HTML comment on the last non-blank line before a
fence marks the block.

* A ```` ```python ```` block runs unless marked ``<!-- no-run -->`` (``<!-- no-run: reason -->``).
* A ```` ```bash ```` (``sh``, ``shell``) block runs only when marked ``<!-- run -->``; with ``set -euo pipefail``,
  so any failing command fails the example.
* A ```` ```console ```` block runs only when marked ``<!-- run -->``: every ``$ command`` line (continued by a
  trailing ``\\``) runs, and the lines up to the next ``$`` are its expected output (stdout and stderr); a command
  shown without output must succeed.
* A ```` ```text ```` block marked ``<!-- output -->`` is the expected stdout of the block that runs just before it.
* ``<!-- run: slow -->`` (or ``<!-- slow -->``) runs the example in the slow tier.

Any other language (``yaml``, ``text``, ...) never runs; marking one ``<!-- run -->`` is an error.

Each example runs in a subprocess with a fresh temporary directory as its working directory (where ``.venv`` links to
the running environment, so that ``.venv/bin/python`` works as on a checkout), one torch thread, and a time limit.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(.*?)\s*-->\s*$")
_RUN_BY_DEFAULT = {"python": True, "bash": False, "sh": False, "shell": False, "console": False}
_RUN_MARKERS = ("run", "run: slow", "slow")
TIMEOUT_S = 300


@dataclass
class Example:
    """One code block that runs, with the output the page shows for it (``None``: only its exit status counts)."""

    path: Path
    line: int
    language: str
    code: str
    slow: bool = False
    expected: str | None = None
    commands: list[tuple[str, str]] = field(default_factory=list)  # console: (command, expected output)

    @property
    def id(self) -> str:
        path = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path.name
        return f"{path}:{self.line}"


def _blocks(text: str) -> list[tuple[int, str, str, str]]:
    """``(line, language, marker, code)`` of every fenced block; ``marker`` is the comment just before it, or ``""``."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, language = match.groups()
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(previous)
        start = i
        body = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        blocks.append((start + 1, language, marker.group(1) if marker else "", "\n".join(body) + "\n"))
    return blocks


def _console(code: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a console transcript."""
    pairs: list[tuple[str, str]] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            raise ValueError(f"console block: output line {lines[i]!r} has no command before it")
        command = lines[i][2:]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        pairs.append((command, "\n".join(output)))
    return pairs


def examples(path: Path) -> list[Example]:
    """The examples of one Markdown file, by the convention of the module docstring."""
    found: list[Example] = []
    last: Example | None = None
    for line, language, marker, code in _blocks(path.read_text(encoding="utf-8")):
        if marker == "output":
            if last is None or language != "text":
                raise ValueError(f"{path}:{line}: <!-- output --> must mark a text block after a block that runs")
            last.expected = code
            last = None
            continue
        if language not in _RUN_BY_DEFAULT:
            if marker in _RUN_MARKERS:
                raise ValueError(f"{path}:{line}: a {language or 'plain'} block cannot run")
            last = None
            continue
        runs = _RUN_BY_DEFAULT[language]
        if marker.startswith("no-run"):
            runs = False
        elif marker in _RUN_MARKERS:
            runs = True
        if not runs:
            last = None
            continue
        example = Example(path, line, language, code, slow=marker.endswith("slow"))
        if language == "console":
            example.commands = _console(code)
        found.append(example)
        last = example
    return found


def documents() -> list[Path]:
    """README.md and every Markdown page of the docs site."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _environment(cwd: Path) -> dict[str, str]:
    (cwd / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "HYDRA_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONHASHSEED="0")
    return env


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def run_example(example: Example, cwd: Path) -> None:
    """Run ``example`` in ``cwd``; fail with its output when it fails or prints something other than the page."""
    env = _environment(cwd)
    where = f"{example.id} ({example.language})"
    if example.language == "console":
        for command, expected in example.commands:
            done = subprocess.run(
                ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
            )
            if expected.strip():
                assert _lines(done.stdout + done.stderr) == _lines(expected), f"{where}: `{command}` printed otherwise"
            else:
                assert done.returncode == 0, f"{where}: `{command}` failed:\n{done.stdout}\n{done.stderr}"
        return
    if example.language == "python":
        script = cwd / "example.py"
        script.write_text(example.code, encoding="utf-8")
        argv = [sys.executable, str(script)]
    else:
        argv = ["bash", "-c", "set -euo pipefail\n" + example.code]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{where} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    if example.expected is not None:
        assert _lines(done.stdout) == _lines(example.expected), f"{where} printed:\n{done.stdout}"


ALL = [example for path in documents() for example in examples(path)]


@pytest.mark.parametrize(
    "example",
    [pytest.param(e, id=e.id, marks=[pytest.mark.slow] if e.slow else []) for e in ALL],
)
def test_example_runs_as_the_page_shows(example: Example, tmp_path: Path) -> None:
    run_example(example, tmp_path)


def test_the_pages_hold_examples_that_run() -> None:
    languages = {e.language for e in ALL}
    assert {"python", "console"} <= languages, languages
    assert any(e.expected is not None for e in ALL)
    assert any(e.path.name == "README.md" for e in ALL)


_PAGE = """
```python
print("default: runs")
```
<!-- output -->
```text
default: runs
```

<!-- no-run: needs a GPU -->
```python
raise SystemExit(1)
```

```bash
exit 1
```

<!-- run: slow -->
```bash
echo slow
```

<!-- run -->
```console
$ echo one \\
    two
one two
$ echo three
three
```
"""


def test_the_convention_picks_the_blocks_that_claim_to_run(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(_PAGE, encoding="utf-8")
    found = examples(page)
    assert [(e.language, e.slow, e.expected) for e in found] == [
        ("python", False, "default: runs\n"),
        ("bash", True, None),
        ("console", False, None),
    ]
    assert found[2].commands == [("echo one  two", "one two"), ("echo three", "three")]


@pytest.mark.parametrize(
    ("code", "expected", "message"),
    [
        ("raise SystemExit(3)", None, "failed"),
        ("print('what the code prints')", "what the page shows\n", "printed"),
    ],
)
def test_an_example_that_fails_or_prints_otherwise_fails(
    tmp_path: Path, code: str, expected: str | None, message: str
) -> None:
    example = Example(tmp_path / "page.md", 1, "python", code, expected=expected)
    with pytest.raises(AssertionError, match=message):
        run_example(example, tmp_path)


@pytest.mark.parametrize(
    ("command", "shown", "message"), [("echo real", "shown", "printed otherwise"), ("exit 2", "", "failed")]
)
def test_a_console_transcript_that_differs_fails(tmp_path: Path, command: str, shown: str, message: str) -> None:
    example = Example(tmp_path / "page.md", 1, "console", "", commands=[(command, shown)])
    with pytest.raises(AssertionError, match=message):
        run_example(example, tmp_path)


def test_a_block_that_cannot_run_but_claims_to_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- run -->\n```yaml\na: 1\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="yaml block cannot run"):
        examples(page)
