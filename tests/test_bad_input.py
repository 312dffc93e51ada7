"""Values that passed validation and failed later (issue 20 §6): each now fails before anything is created.

Every value is checked twice: at composition, in process (the message names the key, on one line), and through the
real CLI in a subprocess with a fresh working directory (exit status 1, one ``evoexp: error:`` line, and nothing left
behind: no ``outputs/``, no store, no lock files). The CLI runs go concurrently, a few at a time, to keep the test
short; those of values that fail like the others at composition run in the slow tier. ``verifier.checks=[]`` is the
one value that runs: its verdict says ``nothing checked``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from torch.nn import functional as F

from evoexp.data import make_randman
from evoexp.job.config import Config, ConfigValidationError, load_config
from evoexp.job.summary import job_verdict
from evoexp.models import SNN
from evoexp.verification.alignment import verify_gradient_alignment

REPO = Path(__file__).resolve().parents[1]
_MISSING_DRIVER = "postgresql://user@localhost/db"  # SQLAlchemy's default PostgreSQL driver is psycopg


def _psycopg_missing() -> bool:
    return importlib.util.find_spec("psycopg") is None


# override -> the start of the message (after "evoexp: error: " on the command line)
COMPOSITION_ERRORS = {
    "seed=18446744073709551616": "seed must be an int in [0, 2**64 - 1]",
    "dataset.seed=18446744073709551616": "dataset.seed must be an int in [0, 2**64 - 1]",
    "verifier.surrogate.x_range=[-inf,4]": "verifier.surrogate.x_range must be [low, high], finite",
    "verifier.surrogate.x_range=[-4,nan]": "verifier.surrogate.x_range must be [low, high], finite",
    "verifier.stability.min_grad_norm=1e4": "verifier.stability.min_grad_norm=10000 must be below "
    "verifier.stability.max_grad_norm=1000",
    "model.weight_scale=1e39": "model.weight_scale=1e+39 is beyond float32",
    "verifier.gradient.eps=1e-20": "verifier.gradient.eps=1e-20 is below what float64 resolves",
    "dataset.time_steps=100000000": "dataset.samples_per_class=32 × dataset.n_classes=2 × "
    "dataset.time_steps=100000000 × dataset.n_channels=8 float32 spikes need",
    "verifier.surrogate.n_points=10000000000": "verifier.surrogate.n_points=10000000000 (16 float64 grids) need",
    f"tracking.uri={_MISSING_DRIVER}": f"tracking.uri='{_MISSING_DRIVER}' needs the database driver 'psycopg'",
}


@pytest.fixture
def load(compose_config: Callable[..., DictConfig]) -> Callable[..., Config]:
    """Load ``experiment=smoke`` with overrides, as a job does."""
    return lambda *overrides: load_config(compose_config("experiment=smoke", *overrides))


@pytest.mark.parametrize("override", list(COMPOSITION_ERRORS))
def test_value_fails_at_composition_naming_the_key(override: str, load: Callable[..., Config]) -> None:
    if "psycopg" in COMPOSITION_ERRORS[override] and not _psycopg_missing():
        pytest.skip("psycopg is installed here")
    with pytest.raises(ConfigValidationError) as info:
        load(override)
    text = str(info.value)
    assert text.startswith(COMPOSITION_ERRORS[override]) and "\n" not in text, text


def test_the_limits_themselves_are_accepted(tmp_path: Path, load: Callable[..., Config]) -> None:
    config = load(
        "seed=18446744073709551615",
        "verifier.gradient.eps=3e-11",
        "model.weight_scale=1e38",
        "verifier.stability.min_grad_norm=999",
        f"tracking.uri=sqlite:///{tmp_path / 'store.db'}",
    )
    assert config.seed == 2**64 - 1
    torch.manual_seed(config.seed)


def test_a_sqlite_store_that_is_a_directory_or_read_only_fails(
    tmp_path: Path, read_only_dir: Path, load: Callable[..., Config]
) -> None:
    (tmp_path / "store.db").mkdir()
    with pytest.raises(ConfigValidationError, match=r"store\.db is a directory, not a SQLite file"):
        load(f"tracking.uri=sqlite:///{tmp_path / 'store.db'}")
    with pytest.raises(ConfigValidationError, match=r"^tracking\.uri=.*: the store cannot be written \("):
        load(f"tracking.uri=sqlite:///{read_only_dir / 'mlruns.db'}")


def test_a_gauss_hermite_rule_of_any_size_is_finite() -> None:
    """400 nodes (NumPy's rule gave NaN weights from 372 on): in smooth mode the alignment still finds the gradient."""
    data = make_randman(n_classes=3, n_channels=12, samples_per_class=8, time_steps=25, seed=1, split=(0.5, 0.25, 0.25))
    snn = SNN(12, [16], 3, seed=3, weight_scale=3.0)
    result = verify_gradient_alignment(
        snn,
        data.train.spikes,
        data.train.labels,
        F.cross_entropy,
        smooth=True,
        sigmas=(1e-3,),
        n_directions=4,
        n_quadrature=400,
    )
    assert result.stats().cosine > 0.99


def test_no_verdict_is_nothing_checked_not_pass() -> None:
    assert job_verdict({"gradient_verification": "skipped", "benchmark": "info"}, diverged=False) == "nothing checked"
    assert job_verdict({"gradient_verification": "PASS", "benchmark": "info"}, diverged=False) == "pass"
    assert job_verdict({"convergence": "FAIL"}, diverged=False) == "fail"


# ---------------------------------------------------------------- the real CLI


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nothing can be created in: mode 0o555, or for root (who ignores modes) the immutable flag."""
    directory = tmp_path / "read_only"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a directory read-only for root here (no chattr +i)")
    try:
        yield directory
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def _evoexp(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "evoexp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _run_all(cases: dict[str, tuple[Path, list[str]]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the CLI cases concurrently (the cost is each interpreter's start)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_evoexp, cwd, *args) for name, (cwd, args) in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def _cli_cases(tmp_path: Path, read_only_dir: Path) -> dict[str, tuple[Path, list[str], str]]:
    """name -> (working directory, arguments, the start of the expected line after ``evoexp: error: ``)."""
    sqlite_dir = tmp_path / "a_directory.db"
    sqlite_dir.mkdir()
    cases = {
        "seed": (["experiment=smoke", "seed=18446744073709551616"], COMPOSITION_ERRORS["seed=18446744073709551616"]),
        "sqlite_dir": (  # used to hang: MLflow retried for minutes
            ["experiment=smoke", f"tracking.uri=sqlite:///{sqlite_dir}"],
            f"tracking.uri='sqlite:///{sqlite_dir}': {sqlite_dir} is a directory, not a SQLite file",
        ),
        "time_steps": (["experiment=smoke", "dataset.time_steps=100000000"], "dataset.samples_per_class=32 × "),
        "n_points": (["experiment=smoke", "verifier.surrogate.n_points=10000000000"], "verifier.surrogate.n_points"),
        "two_presets": (
            ["experiment=smoke", "experiment=robustness"],
            "experiment=smoke experiment=robustness: experiment is given 2 times and only the last counts",
        ),
        "empty_sweep": (
            ["-m", "experiment=smoke", "seed=range(0,0)"],
            "seed=range(0,0): no values to sweep over, so the sweep has no jobs",
        ),
        "driver": (["experiment=smoke", f"tracking.uri={_MISSING_DRIVER}"], "tracking.uri='postgresql"),
    }
    out = {}
    for name, (args, message) in cases.items():
        (tmp_path / name).mkdir()
        out[name] = (tmp_path / name, args, message)
    # launched from a directory nothing can be written to: single run (tracking off) and sweep
    out["launch_dir"] = (read_only_dir, ["experiment=smoke", "tracking=off"], "hydra.run.dir=outputs/runs/")
    out["launch_dir_sweep"] = (
        read_only_dir,
        ["-m", "experiment=smoke", "seed=0,1"],
        "hydra.sweep.dir=outputs/multirun/",
    )
    return out


# The values whose failure used to hang, leave a parent run or silently drop an option run in the default tier; the
# others fail at composition like the values above (tested in process) and run through the CLI in the slow tier.
_DEFAULT_CLI = ("sqlite_dir", "two_presets", "empty_sweep", "launch_dir")
_SLOW_CLI = ("seed", "time_steps", "n_points", "driver", "launch_dir_sweep")


@pytest.mark.parametrize(
    "names", [_DEFAULT_CLI, pytest.param(_SLOW_CLI, marks=pytest.mark.slow)], ids=["default", "more"]
)
def test_cli_refuses_each_value_in_one_line_and_leaves_nothing(
    names: tuple[str, ...], tmp_path: Path, read_only_dir: Path
) -> None:
    cases = {name: case for name, case in _cli_cases(tmp_path, read_only_dir).items() if name in names}
    if "driver" in cases and not _psycopg_missing():
        del cases["driver"]
    done = _run_all({name: (cwd, args) for name, (cwd, args, _) in cases.items()})
    for name, (cwd, _, message) in cases.items():
        result = done[name]
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1, (name, result.stderr[-2000:])
        assert lines[0].startswith(f"evoexp: error: {message}"), (name, lines[0])
        assert sorted(p.name for p in cwd.iterdir()) == [], (name, list(cwd.iterdir()))  # no outputs, no store


def test_cli_without_checks_says_nothing_checked(tmp_path: Path) -> None:
    done = _evoexp(tmp_path, "experiment=smoke", "tracking=off", "verifier.checks=[]", "trainer.epochs=1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "evoexp: verdict nothing checked (no enabled check gives a verdict: see verifier.checks)" in done.stdout
    (report,) = (tmp_path / "outputs").rglob("report.md")
    assert "**Overall: nothing checked" in report.read_text()
