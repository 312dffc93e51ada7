"""Install like a library: a wheel in a fresh venv runs the app from any directory (slow: installs every dependency)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_app_and_user_configs_from_another_directory(tmp_path: Path) -> None:
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "study"
    work.mkdir()
    _run(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, REPO, cwd=tmp_path
    )
    (wheel,) = dist.glob("evoexp-*.whl")
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)  # no --system-site-packages: only what the wheel pulls
    pip = venv / "bin" / "pip"
    _run(pip, "install", "-q", "torch==2.13.*", "-c", REPO / "constraints.txt", cwd=tmp_path)
    _run(pip, "install", "-q", "-c", REPO / "constraints.txt", wheel, cwd=tmp_path)

    where = _run(venv / "bin" / "python", "-c", "import evoexp; print(evoexp.__file__)", cwd=work).stdout
    assert Path(where.strip()).is_relative_to(venv), where  # the installed package, not the checkout
    helped = _run(venv / "bin" / "evoexp", "--help", cwd=work).stdout
    assert "surrogate:" in helped and "fast_sigmoid" in helped
    assert "--experiment" in _run(venv / "bin" / "evoexp-analysis", "--help", cwd=work).stdout

    _run(venv / "bin" / "evoexp", "experiment=smoke", cwd=work)
    (results,) = work.glob("outputs/**/results.json")
    assert json.loads(results.read_text())["outcome"] == "finished"
    assert (work / "mlruns.db").is_file()

    # A user's own group option next to the packaged ones, by --config-dir and by hydra.searchpath.
    (work / "my_conf" / "model").mkdir(parents=True)
    (work / "my_conf" / "model" / "slow.yaml").write_text("defaults:\n  - snn\n  - _self_\nname: slow\ntau_mem: 40.0\n")
    for how in (["--config-dir", "my_conf"], [f"hydra.searchpath=[file://{work / 'my_conf'}]"]):
        _run(
            venv / "bin" / "evoexp",
            *how,
            "experiment=smoke",
            "model=slow",
            "tracking=off",
            "hydra.run.dir=mine",
            cwd=work,
        )
        model = json.loads((work / "mine" / "results.json").read_text())["config"]["model"]
        assert (model["name"], model["tau_mem"], model["tau_syn"]) == ("slow", 40.0, 10.0)  # extends the packaged snn
