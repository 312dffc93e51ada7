"""``model=nir`` and ``experiment=crosscheck`` as jobs: composition errors, a tracked run, the comparison's files."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import nir
import numpy as np
import pytest
from omegaconf import DictConfig

from evoexp.job.config import ConfigValidationError, load_config
from evoexp.job.config.schema import Config
from evoexp.job.prepare import prepare
from tests.test_app import client, evoexp, runs, undeclared_keys


def _graph(path: Path, n_in: int = 8, n_out: int = 2) -> Path:
    """A recurrent LIF graph sized for ``experiment=smoke`` (8 channels, 2 classes)."""
    rng = np.random.default_rng(0)
    h = 12
    nodes = {"input": nir.Input(input_type=np.array([n_in])),
             "fc": nir.Affine(weight=rng.normal(0.5, 1.0, (h, n_in)), bias=np.zeros(h)),
             "lif": nir.LIF(tau=np.full(h, 5e-3), r=np.full(h, 5.0), v_leak=np.zeros(h), v_threshold=np.ones(h)),
             "rec": nir.Linear(weight=rng.normal(0.0, 0.3, (h, h))),
             "out": nir.Affine(weight=rng.normal(0.0, 1.0, (n_out, h)), bias=np.zeros(n_out)),
             "li": nir.LI(tau=np.full(n_out, 1e-2), r=np.full(n_out, 10.0), v_leak=np.zeros(n_out)),
             "output": nir.Output(output_type=np.array([n_out]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out"), ("out", "li"),
             ("li", "output")]
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges))
    return path


@pytest.mark.parametrize(("drop", "message"), [
    ("path", "model.path is required with model=nir (the NIR file)"),
    ("dt", "model.dt is required with model=nir (NIR carries no time step)"),
    ("reset", "model.reset is required with model=nir (NIR leaves the reset mechanism open"),
])
def test_model_nir_names_each_missing_key(
    compose_config: Callable[..., DictConfig], tmp_path: Path, drop: str, message: str,
) -> None:
    given = {"path": str(_graph(tmp_path / "g.nir")), "dt": "1e-3", "reset": "subtract"}
    del given[drop]
    with pytest.raises(ConfigValidationError, match="^" + re.escape(message)):
        prepare(load_config(compose_config("model=nir", *(f"model.{k}={v}" for k, v in given.items()))))


def test_model_nir_checks_the_graph_when_the_config_loads(
    compose_config: Callable[..., DictConfig], tmp_path: Path,
) -> None:
    path = _graph(tmp_path / "g.nir")
    config = load_config(compose_config("model=nir", f"model.path={path}", "model.dt=1e-3", "model.reset=zero"))
    assert isinstance(config, Config) and config.model.args["path"] == str(path)
    with pytest.raises(ConfigValidationError, match=r"^model.path: NIR node 'lif': tau=0.005 < model.dt=0.01"):
        prepare(load_config(compose_config("model=nir", f"model.path={path}", "model.dt=1e-2", "model.reset=zero")))


@pytest.mark.slow  # a tracked job in a subprocess: 10 s on an idle machine, 30 s on a busy one
def test_a_nir_graph_runs_as_a_tracked_job_with_the_graph_as_artifact(tmp_path: Path) -> None:
    path = _graph(tmp_path / "g.nir")
    done = evoexp(tmp_path, "experiment=smoke", "model=nir", "~model.hidden_sizes", f"model.path={path}",
                  "model.dt=1e-3", "model.reset=subtract", "surrogate=atan")
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs(tmp_path, kind="job")
    assert run.info.status == "FINISHED" and not undeclared_keys(run)
    assert [a.path for a in client(tmp_path).list_artifacts(run.info.run_id, "nir")] == ["nir/g.nir"]
    assert run.data.metrics["gradient/max_abs_error"] < 1e-6  # smooth-mode finite differences of the imported graph
    assert run.data.params["model.path"] == str(path)


def test_a_preset_that_sizes_evoexps_network_names_the_key_a_graph_does_not_take(tmp_path: Path) -> None:
    done = evoexp(tmp_path, "experiment=smoke", "model=nir", f"model.path={_graph(tmp_path / 'g.nir')}",
                  "model.dt=1e-3", "model.reset=subtract", "tracking=off")
    assert done.returncode == 1 and not (tmp_path / "outputs").exists()
    assert done.stderr.strip().splitlines()[-1].startswith(
        "evoexp: error: model.hidden_sizes is not an argument of evoexp.nir.nir_network")


def test_a_graph_that_does_not_fit_the_data_fails_before_a_run(tmp_path: Path) -> None:
    path = _graph(tmp_path / "g.nir", n_in=5)
    done = evoexp(tmp_path, "experiment=smoke", "model=nir", "~model.hidden_sizes", f"model.path={path}",
                  "model.dt=1e-3", "model.reset=subtract", "tracking=off")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == ("evoexp: error: model.path: the graph has inputs [5], the data "
                                                     "has [8]")


@pytest.mark.slow  # a tracked job in a subprocess: 10 s on an idle machine, 30 s on a busy one
def test_experiment_crosscheck_logs_the_agreement_files(tmp_path: Path) -> None:
    path = _graph(tmp_path / "g.nir")
    done = evoexp(tmp_path, "experiment=crosscheck", "dataset=synthetic", "dataset.n_channels=8",
                  "dataset.samples_per_class=8", "model=nir", f"model.path={path}", "model.dt=1e-3",
                  "model.reset=subtract")
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs(tmp_path, experiment="crosscheck")
    assert run.info.status == "FINISHED" and not undeclared_keys(run)
    artifacts = {a.path for a in client(tmp_path).list_artifacts(run.info.run_id, "crosscheck")}
    assert artifacts == {"crosscheck/agreement.csv", "crosscheck/agreement.md", "crosscheck/agreement_g.png"}
    assert run.data.metrics["crosscheck/passed"] == 1.0
    assert run.data.metrics["crosscheck/spikingjelly_norse/smooth_grad_max_rel"] < 1e-6  # the math agrees
    assert run.data.metrics["crosscheck/evoexp_norse/first_divergence"] == 0  # r = 5: input scaling differs
