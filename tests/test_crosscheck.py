"""The cross-library comparison: the reference networks, one test per cause of the catalogue, bad input, outputs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import nir
import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("snntorch", reason="snntorch is not installed (pip install evoexp[peers])")
pytest.importorskip("spikingjelly.activation_based.neuron", reason="spikingjelly is not installed")
pytest.importorskip("norse.torch", reason="norse is not installed")

from evoexp.crosscheck import CATALOGUE, REFERENCE_SETTINGS, crosscheck, reference_graph
from evoexp.crosscheck.__main__ import main
from evoexp.crosscheck.catalogue import LibraryModel
from evoexp.crosscheck.compare import SMOOTH_TOL, PairAgreement, compare_pair, inputs
from evoexp.crosscheck.libraries import (
    EngineChain,
    NorseLibrary,
    Participant,
    SnnTorchLibrary,
    SpikingJellyLibrary,
)
from evoexp.crosscheck.report import CSV_COLUMNS, plot_agreement_matrix, write_report
from evoexp.crosscheck.spec import NetworkSpec, network_spec
from evoexp.identity import code_identity
from evoexp.models import population
from evoexp.nir import from_nir


@pytest.mark.parametrize("name", ["feedforward", "recurrent"])
def test_reference_networks_agree_where_the_math_agrees_and_every_difference_is_attributed(name: str) -> None:
    net = from_nir(reference_graph(name), **REFERENCE_SETTINGS)
    result = crosscheck(net, label=name, steps=40, batch=3)
    assert result.libraries == ["evoexp", "snntorch", "spikingjelly", "norse"] and not result.skipped
    assert result.passed, [p.unexplained for p in result.pairs]
    assert all(e.reproduced for e in result.emulations)  # evoexp's engine reproduces every library's model
    pairs = {(p.library_a, p.library_b): p for p in result.pairs}
    for key in [("evoexp", "spikingjelly"), ("evoexp", "norse"), ("spikingjelly", "norse")]:
        assert pairs[key].math_agrees and pairs[key].smooth.max_rel <= SMOOTH_TOL
        assert pairs[key].forward.agrees and pairs[key].spiking64.max_rel <= SMOOTH_TOL
    snntorch = pairs[("evoexp", "snntorch")]
    assert set(snntorch.causes) == {"reset_timing", "reset_leak", "initial_reset", "reset_detached",
                                    "input_scaling", "readout"}
    assert snntorch.forward.first_divergence == 0 and not snntorch.math_agrees


def _graph(*, r: float = 1.0, readout_r: float = 1.0, weight: float | None = None, tau: float = 5e-3,
           seed: int = 0) -> Any:
    """Input(4) -> Affine -> LIF(6) -> Affine -> LI(2): a network small enough for many comparisons."""
    rng = np.random.default_rng(seed)
    w1 = np.full((6, 4), weight) if weight is not None else rng.normal(1.0, 1.5, (6, 4))
    nodes = {"input": nir.Input(input_type=np.array([4])),
             "fc": nir.Affine(weight=w1, bias=np.zeros(6)),
             "lif": nir.LIF(tau=np.full(6, tau), r=np.full(6, r), v_leak=np.zeros(6), v_threshold=np.ones(6)),
             "out": nir.Affine(weight=rng.normal(0.0, 1.0, (2, 6)), bias=np.zeros(2)),
             "li": nir.LI(tau=np.full(2, 1e-2), r=np.full(2, readout_r), v_leak=np.zeros(2)),
             "output": nir.Output(output_type=np.array([2]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "out"), ("out", "li"), ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def _spec(graph: Any, **settings: Any) -> NetworkSpec:
    return network_spec(from_nir(graph, **{**REFERENCE_SETTINGS, **settings}).double())


def _engine(spec: NetworkSpec, model: LibraryModel) -> Participant:
    return Participant("engine", EngineChain(spec, model), replace(model, library="engine"))


def _pair(a: Participant, b: Participant, spec: NetworkSpec, x: torch.Tensor | None = None) -> PairAgreement:
    x_default, targets = inputs(spec, steps=30, batch=2, seed=1, rate=0.5)
    return compare_pair(a, b, x if x is not None else x_default, targets)


def _with(model: LibraryModel, **changes: Any) -> LibraryModel:
    conventions = {k: v for k, v in changes.items() if k in model.conventions.__dataclass_fields__}
    layers = {k: v for k, v in changes.items() if k not in conventions and k not in ("readout_k",)}
    new = replace(model, conventions=replace(model.conventions, **conventions),
                  layers=tuple(replace(layer, **layers) for layer in model.layers))
    return replace(new, readout_k=changes["readout_k"]) if "readout_k" in changes else new


# cause -> (library, the one setting changed in evoexp's engine, what the difference shows in)
_ENGINE_CASES = {
    "reset_timing": (SnnTorchLibrary, {"reset_timing": "same_step"}, "membrane"),
    "reset_leak": (SnnTorchLibrary, {"reset_leak": "before"}, "spikes"),
    "initial_reset": (SnnTorchLibrary, {"initial_reset": False}, "smooth"),
    "reset_detached": (SnnTorchLibrary, {"reset_detached": False}, "smooth"),
    "input_delay": (NorseLibrary, {"input_delay": 1}, "spikes"),
}


@pytest.mark.parametrize("cause", sorted(_ENGINE_CASES))
def test_each_step_cause_is_attributed_and_aligning_it_removes_the_difference(cause: str) -> None:
    library, change, shows = _ENGINE_CASES[cause]
    spec = _spec(_graph(r=5.0))  # r = tau/dt: unit input scale, as snnTorch's
    peer = library().participant(spec, frozenset())
    differing = _pair(_engine(spec, _with(peer.model, **change)), peer, spec)
    assert differing.causes == (cause,)
    if shows == "smooth":
        assert differing.forward.agrees and differing.smooth.max_rel > 1e-3
    elif shows == "membrane":
        assert differing.forward.spikes_agree and differing.forward.what.startswith("membrane")
    else:
        assert not differing.forward.spikes_agree
    aligned = _pair(_engine(spec, peer.model), peer, spec)
    assert aligned.causes == () and aligned.forward.agrees and aligned.smooth.max_rel <= SMOOTH_TOL
    assert not differing.unexplained and not aligned.unexplained


def test_spike_condition_shows_at_an_exact_tie_and_aligning_removes_it() -> None:
    spec = _spec(_graph(weight=0.5, tau=2e-3))  # beta = 0.5, k = 0.5: one input spike on all 4 channels -> exactly 1.0
    peer = SpikingJellyLibrary().participant(spec, frozenset())  # >=
    x = torch.zeros(2, 30, 4, dtype=torch.float64)
    x[:, 3] = 1.0
    differing = _pair(_engine(spec, _with(peer.model, spike_at_threshold=False)), peer, spec, x)
    assert differing.causes == ("spike_condition",) and differing.forward.first_divergence == 3
    aligned = _pair(_engine(spec, peer.model), peer, spec, x)
    assert aligned.causes == () and aligned.forward.agrees


def test_input_scaling_and_readout_are_aligned_in_the_peer() -> None:
    net = from_nir(_graph(r=2.0, readout_r=3.0), **REFERENCE_SETTINGS)
    plain = crosscheck(net, libraries=["norse"], steps=30, batch=2)
    assert plain.pairs[0].causes == ("input_scaling", "readout") and not plain.pairs[0].forward.agrees
    one = crosscheck(net, libraries=["norse"], align=["input_scaling"], steps=30, batch=2)
    assert one.pairs[0].causes == ("readout",) and one.pairs[0].forward.spikes_agree
    both = crosscheck(net, libraries=["norse"], align=["input_scaling", "readout"], steps=30, batch=2)
    assert both.pairs[0].causes == () and both.pairs[0].forward.agrees
    assert both.pairs[0].smooth.max_rel <= SMOOTH_TOL and both.passed


def test_reset_detached_is_aligned_with_spikingjellys_setting() -> None:
    net = from_nir(_graph(), **REFERENCE_SETTINGS, detach_reset=True)
    plain = crosscheck(net, libraries=["spikingjelly"], steps=30, batch=2)
    assert plain.pairs[0].causes == ("reset_detached", "spike_condition")
    assert plain.pairs[0].forward.agrees and plain.pairs[0].smooth.max_rel > 1e-3
    aligned = crosscheck(net, libraries=["spikingjelly"], align=["reset_detached"], steps=30, batch=2)
    assert aligned.pairs[0].causes == ("spike_condition",) and aligned.pairs[0].smooth.max_rel <= SMOOTH_TOL


def test_decay_mapping_differs_until_evoexp_uses_eulers_decay() -> None:
    graph = _graph()
    exact = crosscheck(from_nir(graph, **REFERENCE_SETTINGS, decay="exp"), libraries=["norse"], steps=30, batch=2)
    assert "decay_mapping" in exact.pairs[0].causes and not exact.pairs[0].forward.agrees
    euler = crosscheck(from_nir(graph, **REFERENCE_SETTINGS, decay="euler"), libraries=["norse"], steps=30,
                       batch=2)
    assert euler.pairs[0].causes == () and euler.pairs[0].forward.agrees


def test_every_cause_of_the_catalogue_has_a_test() -> None:
    tested = set(_ENGINE_CASES) | {"spike_condition", "input_scaling", "readout", "decay_mapping"}
    assert tested == set(CATALOGUE)


def test_a_peer_that_is_not_installed_is_skipped_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NorseLibrary, "package", "norse_is_not_here")
    result = crosscheck(from_nir(_graph(), **REFERENCE_SETTINGS), steps=10, batch=2)
    assert result.libraries == ["evoexp", "snntorch", "spikingjelly"]
    assert result.skipped["norse"].startswith("Norse is not installed")


def test_unmappable_networks_name_the_library_and_the_reason() -> None:
    graph = _graph()
    one = np.ones(6)
    graph.nodes["lif"] = nir.CubaLIF(tau_syn=2e-3 * one, tau_mem=5e-3 * one, r=one, v_leak=0 * one,
                                     v_threshold=one, w_in=one)
    result = crosscheck(from_nir(graph, **REFERENCE_SETTINGS), steps=10, batch=2)
    assert result.libraries == ["evoexp", "snntorch"]
    assert "SpikingJelly's LIFNode has no synaptic current" in result.skipped["spikingjelly"]
    assert "no subtract reset" in result.skipped["norse"]
    graph.nodes["lif"] = nir.LIF(tau=np.linspace(3e-3, 6e-3, 6), r=one, v_leak=0 * one, v_threshold=one)
    varied = crosscheck(from_nir(graph, **REFERENCE_SETTINGS), steps=10, batch=2)
    assert varied.libraries == ["evoexp"] and "different beta per neuron" in varied.skipped["snntorch"]


def test_command_line_writes_csv_markdown_and_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "net.nir"
    nir.write(path, _graph())
    out = tmp_path / "out"
    status = main(["--nir", str(path), "--out", str(out), "--steps", "20", "--batch", "2", "dt=1e-3",
                   "reset=subtract", "surrogate=sigmoid", "surrogate.slope=4"])
    assert status == 0
    header = (out / "agreement.csv").read_text().splitlines()[0].split(",")
    assert header == list(CSV_COLUMNS)
    assert len((out / "agreement.csv").read_text().splitlines()) == 1 + 6
    markdown = (out / "agreement.md").read_text()
    assert "### Pairs and causes" in markdown and "reset_timing" in markdown
    assert (out / "agreement_net.png").stat().st_size > 1000
    assert "snntorch" in capsys.readouterr().out


COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "results" / "crosscheck"
REGENERATE = "python -m evoexp.crosscheck --out docs/results/crosscheck --formats png"
NOISE = 1e-6
"""Relative differences below this are float64 rounding (the CSV's "agree" region): two machines may differ there."""


def agreement_mismatches(committed: pd.DataFrame, fresh: pd.DataFrame) -> list[str]:
    """Cells of the committed agreement table that this code does not reproduce.

    Text cells must be equal; numbers must agree to the CSV's three significant digits (1 % relative), except that
    two values below :data:`NOISE` (rounding) are equal.
    """
    if list(committed.columns) != list(fresh.columns) or len(committed) != len(fresh):
        return [f"shape: committed {committed.shape}, this code {fresh.shape}"]
    lines = []
    for (i, a), (_, b) in zip(committed.iterrows(), fresh.iterrows(), strict=True):
        for column in committed.columns:
            x, y = a[column], b[column]
            if isinstance(x, float) and isinstance(y, float):
                noise = abs(x) < NOISE and abs(y) < NOISE
                same = (np.isnan(x) and np.isnan(y)) or noise or np.isclose(x, y, rtol=1e-2)
            else:
                same = str(x) == str(y)
            if not same:
                lines.append(f"row {i} ({a['network']} {a['library_a']}/{a['library_b']}) {column}: "
                             f"committed {x!r}, this code {y!r}")
    return lines


def _fresh_agreement(out: Path, *, status: int = 0) -> pd.DataFrame:
    assert main(["--out", str(out), "--formats", "png"]) == status
    return pd.read_csv(out / "agreement.csv")


def test_committed_agreement_is_what_this_code_computes(tmp_path: Path) -> None:
    markdown = (COMMITTED / "agreement.md").read_text(encoding="utf-8")
    assert f"Produced by `{REGENERATE}` with code `evoexp " in markdown, "agreement.md names no command and code"
    errors = agreement_mismatches(pd.read_csv(COMMITTED / "agreement.csv"), _fresh_agreement(tmp_path))
    assert not errors, (f"docs/results/crosscheck does not match this code ({code_identity()}):\n"
                        + "\n".join(errors) + f"\nregenerate: {REGENERATE}")


def test_the_agreement_check_sees_a_change_of_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """evoexp's neurons fed 1 % less current (the peers' neurons untouched) no longer match the committed table."""
    original = population.neuron_sequence
    monkeypatch.setattr(population, "neuron_sequence", lambda drive, *a, **k: original(drive * 0.99, *a, **k))
    # exit status 1: the differences it causes are unexplained by the catalogue
    errors = agreement_mismatches(pd.read_csv(COMMITTED / "agreement.csv"), _fresh_agreement(tmp_path, status=1))
    assert any("evoexp/" in e for e in errors), errors


@pytest.mark.parametrize(("args", "message"), [
    (["--nir", "{tmp}/missing.nir"], "NIR file '.*missing.nir' does not exist"),
    (["--nir", "{tmp}/text.nir"], "is not an HDF5 file"),
    (["--nir", "{tmp}/delay.nir", "dt=1e-3", "reset=subtract", "surrogate=sigmoid"], "'delay' has type Delay"),
    (["--nir", "{tmp}/plain.nir", "reset=subtract", "surrogate=sigmoid"], "missing dt"),
    (["bogus=1"], "unknown key 'bogus'"),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  args: list[str], message: str) -> None:
    (tmp_path / "text.nir").write_text("hello")
    nir.write(tmp_path / "plain.nir", _graph())
    delay = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([1])), "delay": nir.Delay(delay=np.ones(1)),
                                "output": nir.Output(output_type=np.array([1]))},
                         edges=[("input", "delay"), ("delay", "output")])
    nir.write(tmp_path / "delay.nir", delay)
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "out"
    status = main([a.format(tmp=tmp_path) for a in args] + ["--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert __import__("re").search(message, err)
    assert sorted(tmp_path.iterdir()) == before


def test_report_and_matrix_plot(tmp_path: Path) -> None:
    result = crosscheck(from_nir(_graph(), **REFERENCE_SETTINGS), steps=10, batch=2, label="small")
    _fig, ax = plt.subplots()
    assert plot_agreement_matrix(result, ax, metric="forward") is ax
    written = write_report([result], tmp_path / "report")
    assert {p.name for p in written} == {"agreement.csv", "agreement.md", "agreement_small.png",
                                         "agreement_small.pdf"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_wrong_library_model_is_caught_by_its_emulation(monkeypatch: pytest.MonkeyPatch) -> None:
    stated = SnnTorchLibrary.model

    def attached(self: SnnTorchLibrary, spec: NetworkSpec, align: frozenset[str]) -> LibraryModel:
        model = stated(self, spec, align)
        return replace(model, conventions=replace(model.conventions, reset_detached=False))

    monkeypatch.setattr(SnnTorchLibrary, "model", attached)  # claim snnTorch's reset is in the gradient: it is not
    result = crosscheck(from_nir(_graph(r=5.0), **REFERENCE_SETTINGS), libraries=["snntorch"], steps=20, batch=2)
    (emulation,) = result.emulations
    assert emulation.forward.agrees and emulation.smooth.max_rel > 1e-3
    assert not emulation.reproduced and result.passed is False
