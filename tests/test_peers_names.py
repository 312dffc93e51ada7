"""Peer surrogate names: every mapped row equals the peer's actual backward; constructor, config form and docs page."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig

from evoexp.job.analysis.load import load_runs
from evoexp.job.config import ConfigValidationError, load_config
from evoexp.peers.names import (
    available_peer_surrogates,
    evoexp_table_markdown,
    get_peer,
    peer_surrogate,
    unmapped_table_markdown,
)
from evoexp.surrogate import get_surrogate

ROOT = Path(__file__).resolve().parents[1]
MAPPED = available_peer_surrogates(mapped_only=True)
IMPORTS = {"snntorch": "snntorch.surrogate", "spikingjelly": "spikingjelly.activation_based.surrogate",
           "norse": "norse.torch.functional.threshold"}
# Norse's heavi_erfc divides by torch.as_tensor(np.pi).sqrt(), a float32 constant even in float64.
FLOAT64_RTOL = {"norse:heavi_erfc": 1e-7}
# snnTorch's sigmoid evaluates slope*exp(-slope*x) unguarded: inf/inf = NaN exactly where that overflows.
OVERFLOW = {"snntorch:sigmoid": lambda x, p: -p["slope"] * x > math.log(torch.finfo(x.dtype).max / p["slope"])}


def _import_peer(library: str) -> None:
    pytest.importorskip(IMPORTS[library], reason=f"{library} is not installed (pip install evoexp[peers])")


def _backward(spike_fn: Any, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    out = spike_fn(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    return grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", MAPPED)
def test_mapped_shape_equals_the_peers_backward(name: str, dtype: torch.dtype) -> None:
    entry = get_peer(name)
    _import_peer(entry.library)
    assert len(entry.grid) == 3, "the default and two other parameters"
    x = torch.cat([torch.linspace(-4.0, 4.0, 4001, dtype=torch.float64), torch.tensor([0.0, -0.0, 1e-3, -1e-3])])
    x = x.to(dtype)
    for params in entry.grid:
        shape = get_surrogate(name, **params)
        peer = _backward(entry.build(**params), x).double()
        ours = shape.derivative(x.double())
        if name in OVERFLOW:
            overflow = OVERFLOW[name](x, params)
            assert torch.equal(peer.isnan(), overflow)
            peer, ours = peer[~overflow], ours[~overflow]
        rtol = FLOAT64_RTOL.get(name, 1e-12) if dtype == torch.float64 else 2e-6
        torch.testing.assert_close(peer, ours, rtol=rtol, atol=rtol * max(1.0, shape.peak),
                                   msg=lambda m, p=params, s=shape: f"{name}{p} vs {s!r}: {m}")


@pytest.mark.parametrize("name", MAPPED)
def test_the_grid_starts_at_the_peers_default(name: str) -> None:
    entry = get_peer(name)
    first = dict(entry.grid[0])
    rejected = entry.constraint(dict(entry.defaults)) if entry.constraint else None
    if rejected is None:
        assert first == dict(entry.defaults)
    else:  # PiecewiseLeakyReLU's default c = 0.01 has no evoexp shape: its grid starts at the default w with c = 0
        assert {k: v for k, v in first.items() if k != "c"} == {k: v for k, v in entry.defaults.items() if k != "c"}
    assert len({tuple(sorted(p.items())) for p in entry.grid}) == 3


def test_a_mismatched_mapping_is_caught() -> None:
    """The equality test can fail: evoexp's piecewise_quadratic is not SpikingJelly's PiecewiseQuadratic."""
    _import_peer("spikingjelly")
    x = torch.linspace(-2.0, 2.0, 801, dtype=torch.float64)
    peer = _backward(get_peer("spikingjelly:PiecewiseQuadratic").build(alpha=1.0), x)
    assert not torch.allclose(peer, get_surrogate("piecewise_quadratic", slope=1.0).derivative(x))
    assert torch.allclose(peer, get_surrogate("spikingjelly:PiecewiseQuadratic", alpha=1.0).derivative(x))


def test_get_surrogate_builds_the_equal_shape() -> None:
    assert repr(get_surrogate("spikingjelly:PiecewiseQuadratic", alpha=1.0)) == "triangular(slope=1.0, scale=1.0)"
    assert get_surrogate("snntorch:fast_sigmoid") == get_surrogate("fast_sigmoid", slope=25.0)
    assert get_surrogate("norse:tanh", alpha=2.0) == get_surrogate("sigmoid", slope=4.0, scale=1.0)
    assert peer_surrogate("spikingjelly:SoftSign", alpha=3.0) == get_surrogate("superspike", slope=3.0, scale=0.5)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("spikingjelly:Nope", {}, r"unknown peer surrogate 'spikingjelly:Nope'; known peer names: snntorch:"),
        ("snntorch:triangular", {}, r"no equal evoexp shape .* peer names with an evoexp shape: snntorch:fast"),
        ("spikingjelly:ATan", {"slope": 2.0}, r"unknown parameter\(s\) slope; valid parameters: alpha"),
        ("spikingjelly:PiecewiseLeakyReLU", {}, r"c=0.01: with c != 0"),
        ("spikingjelly:QPseudoSpike", {"alpha": 1.0}, r"alpha must be > 1"),
    ],
)
def test_bad_peer_names_and_parameters(name: str, params: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_surrogate(name, **params)


def test_every_peer_function_exists_in_its_library() -> None:
    for name in available_peer_surrogates():
        entry = get_peer(name)
        try:
            module = importlib.import_module(IMPORTS[entry.library])
        except ImportError:
            continue
        attribute = "threshold" if entry.library == "norse" else entry.function
        assert hasattr(module, attribute), name


def test_config_peer_form_builds_the_equal_shape(compose_config: Callable[..., DictConfig]) -> None:
    cfg = compose_config("surrogate.peer=spikingjelly:PiecewiseQuadratic", "+surrogate.peer_params.alpha=2.0")
    surrogate = load_config(cfg).surrogate
    assert (surrogate.name, surrogate.slope, surrogate.scale) == ("triangular", 2.0, 1.0)
    assert get_surrogate(surrogate.name, **surrogate.kwargs()) == get_surrogate(
        "spikingjelly:PiecewiseQuadratic", alpha=2.0)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["surrogate.peer=spikingjelly:Nope"], r"^surrogate\.peer: unknown peer surrogate"),
        (["surrogate.peer=spikingjelly:ATan", "+surrogate.peer_params.slope=2.0"],
         r"^surrogate\.peer_params: spikingjelly:ATan: unknown parameter\(s\) slope"),
        (["surrogate.peer=snntorch:triangular"], r"^surrogate\.peer_params: snntorch:triangular has no equal"),
    ],
)
def test_config_peer_form_is_validated_at_composition(
    compose_config: Callable[..., DictConfig], overrides: list[str], match: str,
) -> None:
    with pytest.raises(ConfigValidationError, match=match) as info:
        load_config(compose_config(*overrides))
    assert "\n" not in str(info.value)


def test_a_run_in_the_peer_form_records_the_shape_it_used(tmp_path: Path) -> None:
    """Params, results, run name, report title and the analysis' grouping show the evoexp shape, not the defaults."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    done = subprocess.run(
        [sys.executable, "-m", "evoexp", "experiment=smoke", "surrogate.peer=spikingjelly:PiecewiseQuadratic",
         "+surrogate.peer_params.alpha=2.0"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shape = {"name": "triangular", "slope": 2.0, "scale": 1.0, "params": {}}
    (results,) = tmp_path.glob("outputs/**/results.json")
    assert json.loads(results.read_text())["config"]["surrogate"] == {
        **shape, "peer": "spikingjelly:PiecewiseQuadratic", "peer_params": {"alpha": 2.0}, "install": True}
    assert (results.parent / "report.md").read_text().startswith("# evoexp run: triangular (slope 2), seed 0")
    (run,) = load_runs("evoexp", tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}").to_dict("records")
    assert run["run_name"] == "triangular-b2-s0"
    assert (run["params.surrogate.name"], run["params.surrogate.slope"], run["params.surrogate.scale"]) == (
        "triangular", 2.0, 1.0)
    assert run["params.surrogate.peer"] == "spikingjelly:PiecewiseQuadratic"


def test_docs_tables_are_the_generated_ones() -> None:
    page = (ROOT / "docs" / "guides" / "peers.md").read_text(encoding="utf-8")
    assert evoexp_table_markdown() in page
    assert unmapped_table_markdown() in page
