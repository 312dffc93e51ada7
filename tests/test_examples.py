"""The documented complete example (docs/guides/your-network.md) and the presets of the field's libraries, run as a
user runs them: ``python -m evoexp`` in a launch directory of their own, with a temporary MLflow store."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from evoexp import keys
from evoexp.keys import Tags

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "guides" / "your-network.md"
README = REPO / "README.md"


def guide_files() -> dict[str, str]:
    """The guide's code blocks whose first line names a file (``# my_nets.py``), by that file name."""
    blocks = re.findall(r"```(?:python|yaml)\n# (\S+)\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    return {name: body for name, body in blocks}


def guide_commands() -> list[list[str]]:
    """The ``python -m`` commands of the guide's first bash block, as argument lists."""
    block = re.search(r"```bash\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert block is not None
    return [line.split()[2:] for line in block.group(1).splitlines() if line.startswith("python -m ")]


def run_module(cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` in ``cwd`` with the default embedded store, evoexp from this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def launch_dir(tmp_path: Path) -> Path:
    """A launch directory holding the guide's files, written as the guide shows them."""
    for name, body in guide_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    return tmp_path


def job_runs(root: Path, experiment: str) -> list[Run]:
    client = MlflowClient(f"sqlite:///{root / 'mlruns.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return [r for r in client.search_runs([found.experiment_id]) if r.data.tags.get(Tags.KIND) == "job"]


def n_params(path: Path, name: str, **kwargs: int) -> int:
    spec = importlib.util.spec_from_file_location("guide_nets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sum(p.numel() for p in getattr(module, name)(**kwargs).parameters())


def test_the_guides_example_runs_as_a_single_job_and_a_mistake_as_one_line(tmp_path: Path) -> None:
    pytest.importorskip("snntorch")
    root = launch_dir(tmp_path)
    assert {"my_nets.py", "conf/model/my_net.yaml"} <= set(guide_files())
    single = guide_commands()[0]
    done = run_module(root, *single)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = job_runs(root, "my_net")
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert (run.info.status, params["model._target_"], tags[Tags.MODEL_TARGET]) == ("FINISHED", "my_nets.Net",
                                                                                    "my_nets.Net")
    assert (tags[Tags.MODEL_LIBRARY], tags[Tags.MODEL_LIBRARY_VERSION]) == ("snntorch", "1.0.0")
    assert int(tags[Tags.MODEL_PARAMS]) == n_params(root / "my_nets.py", "Net", n_inputs=64, n_classes=10, hidden=64)
    assert tags[Tags.SURROGATE_INSTALLED] == (
        "fast_sigmoid(slope=25.0, scale=1.0) installed into 2 snntorch neurons (lif1, lif2)")
    assert metrics["gradient/passed"] == 1.0 and metrics["surrogate/passed"] == 1.0
    assert metrics["ann/params"] == n_params(root / "my_nets.py", "Ann", n_inputs=64, n_classes=10, hidden=64)
    assert "benchmark/acc_gap" in metrics
    assert not [k for k in (*tags, *metrics) if not (keys.is_declared_tag(k) or keys.is_declared_metric(k))]
    results = json.loads(next(root.glob("outputs/**/results.json")).read_text())
    assert results["model"]["surrogate"] == tags[Tags.SURROGATE_INSTALLED]

    outputs = sorted(p for p in (root / "outputs").rglob("*") if p.is_dir())
    wrong = run_module(root, *single, "model.output_index=null")
    lines = [line for line in wrong.stderr.splitlines() if line.strip()]
    assert wrong.returncode == 1 and len(lines) == 1, wrong.stderr[-2000:]
    assert lines[0].startswith("evoexp: error: model.output_index is null, but the network returned a tuple of 2")
    assert sorted(p for p in (root / "outputs").rglob("*") if p.is_dir()) == outputs  # nothing written
    assert len(job_runs(root, "my_net")) == 1  # no run


@pytest.mark.slow
def test_the_guides_complete_example_sweeps_and_analyses(tmp_path: Path) -> None:
    pytest.importorskip("snntorch")
    root = launch_dir(tmp_path)
    for command in guide_commands():
        done = run_module(root, *command)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    runs = [r for r in job_runs(root, "my_net") if r.data.tags.get(Tags.SWEEP_ID)]
    assert len(runs) == 8 and all(r.info.status == "FINISHED" for r in runs)
    assert all(Tags.PARENT_RUN in r.data.tags for r in runs)  # child runs of the sweep's run
    installed = {(r.data.params["surrogate.name"], r.data.params["surrogate.slope"]): r.data.tags[
        Tags.SURROGATE_INSTALLED] for r in runs}
    assert installed[("atan", "10")] == "atan(slope=10.0, scale=1.0) installed into 2 snntorch neurons (lif1, lif2)"
    assert len(set(installed.values())) == 4
    analysis = root / "analysis" / "my_net"
    assert (analysis / "snn_vs_ann.md").exists() and (analysis / "accuracy_vs_slope.png").exists()
    table = (analysis / "surrogate_slope.md").read_text()
    assert "atan" in table and "fast_sigmoid" in table


def readme_section() -> tuple[dict[str, str], list[list[str]]]:
    """README's "Your network in the whole pipeline": its file (by the name on its first line) and its commands."""
    text = README.read_text().split("## Your network in the whole pipeline", 1)[1].split("\n## ", 1)[0]
    files = dict(re.findall(r"```python\n# (\S+)\n(.*?)```", text, re.DOTALL))
    block = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert files and block is not None
    return files, [line.split()[2:] for line in block.group(1).splitlines() if line.startswith("python -m ")]


@pytest.mark.slow
def test_the_readmes_network_sweeps_with_its_installed_surrogates_and_is_analysed(tmp_path: Path) -> None:
    pytest.importorskip("snntorch")
    files, commands = readme_section()
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    for command in commands:
        done = run_module(tmp_path, *command)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    runs = job_runs(tmp_path, "my_net")
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    installed = {r.data.tags[Tags.SURROGATE_INSTALLED] for r in runs}
    assert "atan(slope=2.0, scale=1.0) installed into 2 snntorch neurons (lif1, lif2)" in installed
    assert len(installed) == 4  # 2 shapes x 2 slopes, each the one its job ran
    assert all(r.data.metrics["gradient/passed"] == 1.0 for r in runs)
    assert all(r.data.tags[Tags.MODEL_TARGET] == "my_net.Net" for r in runs)
    assert not any(k.startswith("benchmark/") for r in runs for k in r.data.metrics)  # no ANN: "not configured"
    analysis = tmp_path / "analysis" / "my_net"
    assert (analysis / "surrogate_slope.md").exists() and (analysis / "accuracy_vs_slope.png").exists()


PRESET_DATA = {
    "snntorch_conv": ["dataset.image=true"],
    "spikingjelly_mlp": [],
    "norse_lif": [],
}


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESET_DATA))
def test_a_preset_of_the_fields_libraries_runs_a_surrogate_slope_sweep(tmp_path: Path, preset: str) -> None:
    library = preset.split("_")[0]
    pytest.importorskip(library)
    done = run_module(
        tmp_path, "evoexp", "-m", f"model={preset}", "dataset=digits", "dataset.encoding=rate", "dataset.time_steps=6",
        *PRESET_DATA[preset], "trainer.epochs=2", "trainer.batch_size=128", "surrogate=atan,fast_sigmoid",
        "surrogate.slope=2,10", f"tracking.experiment={preset}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = job_runs(tmp_path, preset)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        assert tags[Tags.MODEL_LIBRARY] == library and tags[Tags.MODEL_LIBRARY_VERSION]
        shape = f"{run.data.params['surrogate.name']}(slope={float(run.data.params['surrogate.slope'])}, scale=1.0)"
        assert tags[Tags.SURROGATE_INSTALLED].startswith(f"{shape} installed into ")
        assert metrics["gradient/passed"] == 1.0 and metrics["surrogate/passed"] == 1.0
        assert metrics["snn/test/acc_best"] > 0.3  # above chance (0.1) after two epochs
        assert not any(key.startswith("ann/") for key in metrics)  # no ANN configured: no made-up twin
