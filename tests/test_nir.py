"""NIR import and export: conformance with NIR's reference Euler step, exact round trips, metadata, bad input."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from evoexp.functional.discrete import NIR_REFERENCE, NeuronConstants, neuron_sequence
from evoexp.models import SNN, NeuronPopulation
from evoexp.nir import NIRError, NIRNetwork, from_nir, to_nir
from evoexp.surrogate import get_surrogate
from evoexp.verification.gradient import GradientVerifier

DT = 1e-3
SURROGATE = get_surrogate("fast_sigmoid", slope=10.0)


def _lif_graph(tau: float = 5e-3, r: float = 5.0, threshold: float = 1.0) -> nir.NIRGraph:
    one = np.ones(1)
    return nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1])),
        nir.LIF(tau=tau * one, r=r * one, v_leak=0 * one, v_threshold=threshold * one),
        nir.Output(output_type=np.array([1])),
    )


def _euler_lif(current: np.ndarray, *, tau: float, r: float, threshold: float, dt: float) -> tuple[list, list]:
    """NIR's reference forward Euler of a LIF node, straight from its equation tau dv/dt = (v_leak - v) + R I."""
    v, spikes, voltages = 0.0, [], []
    for i in current:
        v = v + dt / tau * (0.0 - v + r * i)
        z = v > threshold
        if z:
            v = v - threshold  # subtract reset, v_reset = 0
        spikes.append(int(z))
        voltages.append(v)
    return spikes, voltages


def test_single_lif_reproduces_nir_reference_euler_at_the_same_step() -> None:
    generator = torch.Generator().manual_seed(3)
    current = torch.rand(200, generator=generator, dtype=torch.float64) * 1.2
    current[[20, 77, 150]] = 6.0  # a pulse that alone crosses threshold: the spike must come at that very step
    net = from_nir(_lif_graph(), dt=DT, reset="subtract", surrogate=SURROGATE).double()
    records = net.record(current.reshape(1, -1, 1))
    spikes = records["lif"].output.reshape(-1).tolist()
    reference, voltages = _euler_lif(current.numpy(), tau=5e-3, r=5.0, threshold=1.0, dt=DT)
    assert [t for t, s in enumerate(spikes) if s] == [t for t, s in enumerate(reference) if s]
    np.testing.assert_allclose(records["lif"].membrane.reshape(-1).numpy(), voltages, rtol=0, atol=1e-12)
    assert all(spikes[t] == 1.0 for t in (20, 77, 150))
    assert sum(spikes) > 10


def _recurrent_cuba_graph(seed: int) -> tuple[nir.NIRGraph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n_in, n, n_out = 4, 6, 3
    p = {"w1": rng.normal(0.5, 1.5, (n, n_in)), "b1": rng.normal(0, 0.1, n), "v": rng.normal(0, 0.6, (n, n)),
         "w2": rng.normal(0, 1.0, (n_out, n)), "b2": np.zeros(n_out), "tau_syn": rng.uniform(2e-3, 6e-3, n),
         "tau_mem": rng.uniform(4e-3, 2e-2, n), "r": rng.uniform(1.0, 4.0, n), "w_in": rng.uniform(2.0, 5.0, n),
         "theta": rng.uniform(0.5, 1.5, n)}
    nodes = {
        "input": nir.Input(input_type=np.array([n_in])),
        "fc": nir.Affine(weight=p["w1"], bias=p["b1"]),
        "lif": nir.CubaLIF(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], r=p["r"], v_leak=np.zeros(n),
                           v_threshold=p["theta"], w_in=p["w_in"]),
        "rec": nir.Linear(weight=p["v"]),
        "out": nir.Affine(weight=p["w2"], bias=p["b2"]),
        "li": nir.LI(tau=np.full(n_out, 1e-2), r=np.full(n_out, 2.0), v_leak=np.zeros(n_out)),
        "output": nir.Output(output_type=np.array([n_out])),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out"), ("out", "li"),
             ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges), p


def test_recurrent_cubalif_graph_equals_the_network_built_in_evoexp() -> None:
    graph, p = _recurrent_cuba_graph(seed=5)
    net = from_nir(graph, dt=DT, reset="subtract", surrogate=SURROGATE).double()
    x = (torch.rand(3, 40, 4, dtype=torch.float64) < 0.4).double()
    records = net.record(x)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float64)

    alpha, beta = 1 - DT / t(p["tau_syn"]), 1 - DT / t(p["tau_mem"])
    hidden = NeuronPopulation(NeuronConstants(alpha=alpha, beta=beta, k_in=DT / t(p["tau_syn"]) * t(p["w_in"]),
                                              k_mem=DT / t(p["tau_mem"]) * t(p["r"]), leak=0 * beta,
                                              threshold=t(p["theta"]), v_reset=0 * beta), NIR_REFERENCE, SURROGATE)
    spikes = hidden(x, t(p["w1"]), t(p["b1"]), t(p["v"]))
    beta_out = torch.full((3,), 1 - DT / 1e-2, dtype=torch.float64)
    out, _ = neuron_sequence(torch.nn.functional.linear(spikes, t(p["w2"]), t(p["b2"])),
                             NeuronConstants(alpha=0 * beta_out, beta=beta_out, k_in=1 + 0 * beta_out,
                                             k_mem=(1 - beta_out) * 2.0, leak=0 * beta_out, threshold=None,
                                             v_reset=0 * beta_out), NIR_REFERENCE, SURROGATE)
    assert spikes.sum() > 10
    torch.testing.assert_close(records["lif"].output, spikes, rtol=0, atol=0)
    torch.testing.assert_close(net(x), out, rtol=1e-13, atol=1e-13)
    # and a plain NumPy Euler loop of the same equations (recurrent spikes arrive one step later)
    i = v = s = np.zeros((3, 6))
    for step in range(40):
        drive = x[:, step].numpy() @ p["w1"].T + p["b1"] + s @ p["v"].T
        i = i + DT / p["tau_syn"] * (-i + p["w_in"] * drive)
        v = v + DT / p["tau_mem"] * (-v + p["r"] * i)
        s = (v > p["theta"]).astype(float)
        v = v - s * p["theta"]
        np.testing.assert_array_equal(records["lif"].output[:, step].detach().numpy(), s)


@pytest.mark.parametrize(("recurrent", "reset", "detach"), [(False, "subtract", False), (True, "zero", True),
                                                            (True, "subtract", False)])
def test_snn_round_trip_through_a_nir_file_is_bit_exact_in_float64(tmp_path: Path, recurrent: bool, reset: str,
                                                                    detach: bool) -> None:
    snn = SNN(5, [7, 6], 3, recurrent=recurrent, reset=reset, detach_reset=detach, alpha=0.6, beta=0.85,
              surrogate=get_surrogate("atan", slope=3.0), weight_scale=3.0, readout="mean", seed=2).double()
    path = tmp_path / "snn.nir"
    to_nir(snn, dt=DT, path=path)
    net = from_nir(path, readout="mean")
    x = (torch.rand(4, 30, 5) < 0.3).double()
    assert torch.equal(net(x), snn(x))
    assert torch.equal(net.record(x)["lif0"].output, snn.last_spikes[0])
    assert snn.last_spikes[0].sum() > 10
    assert net.settings.surrogate == snn.surrogate and net.settings.reset == reset
    assert net.settings.conventions.reset_detached is detach
    assert all(p.native for p in net.populations.values())
    # the graph is plain NIR: another reader sees CubaLIF time constants that give the same decays
    graph = nir.read(path)
    np.testing.assert_allclose(1 - DT / graph.nodes["lif0"].tau_mem, 0.85, rtol=1e-12)


def test_nir_network_round_trip_keeps_weights_and_settings(tmp_path: Path) -> None:
    graph, _ = _recurrent_cuba_graph(seed=1)
    net = from_nir(graph, dt=DT, reset="zero", surrogate="sigmoid", decay="exp").double()
    with torch.no_grad():
        net.module_of("fc").weight.mul_(1.5)  # trained weights are what is written
    path = tmp_path / "net.nir"
    to_nir(net, dt=DT, path=path)
    again = from_nir(path)
    x = (torch.rand(2, 25, 4, dtype=torch.float64) < 0.5).double()
    assert torch.equal(again(x), net(x))
    assert again.settings.decay == "exp" and again.settings.reset == "zero"
    assert {again.settings.sources[k] for k in ("dt", "reset", "surrogate")} == {"metadata"}
    override = from_nir(path, surrogate="atan", reset="subtract")
    assert override.settings.sources["surrogate"] == "argument" and override.surrogate.name == "atan"


@pytest.mark.parametrize("key", ["dt", "reset", "surrogate"])
def test_a_missing_setting_is_an_error_naming_the_key(key: str) -> None:
    given = {"dt": DT, "reset": "subtract", "surrogate": SURROGATE}
    del given[key]
    with pytest.raises(NIRError, match=rf"^missing {key}: .*'evoexp_{key}' metadata"):
        from_nir(_lif_graph(), **given)  # type: ignore[arg-type]


def test_unsupported_nodes_fail_with_one_line_naming_node_and_type() -> None:
    for name, node in [("delay", nir.Delay(delay=np.ones(1))),
                       ("conv", nir.Conv1d(input_shape=1, weight=np.ones((1, 1, 1)), stride=1, padding=0, dilation=1,
                                           groups=1, bias=np.zeros(1))),
                       ("pool", nir.SumPool2d(kernel_size=np.array([1, 1]), stride=np.array([1, 1]),
                                              padding=np.array([0, 0])))]:
        graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([1])), name: node,
                                    "output": nir.Output(output_type=np.array([1]))},
                             edges=[("input", name), (name, "output")], type_check=False)
        with pytest.raises(NIRError) as info:
            from_nir(graph, dt=DT, reset="subtract", surrogate=SURROGATE)
        message = str(info.value)
        assert "\n" not in message and f"'{name}' has type {type(node).__name__}" in message


def test_bad_files_fail_with_one_line_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.nir"
    with pytest.raises(NIRError, match=r"^NIR file '.*missing.nir' does not exist$"):
        from_nir(missing, dt=DT, reset="subtract", surrogate=SURROGATE)
    text = tmp_path / "graph.nir"
    text.write_text("not hdf5")
    with pytest.raises(NIRError, match=r"^NIR file '.*graph.nir' is not an HDF5 file"):
        from_nir(text, dt=DT, reset="subtract", surrogate=SURROGATE)
    h5py = pytest.importorskip("h5py")
    broken = tmp_path / "broken.nir"
    with h5py.File(broken, "w") as f:
        f.create_group("node").create_dataset("type", data="Teleporter")
    with pytest.raises(NIRError) as info:
        from_nir(broken, dt=DT, reset="subtract", surrogate=SURROGATE)
    assert str(info.value).startswith(f"nir.read rejected '{broken}': ") and "\n" not in str(info.value)


def test_failed_export_leaves_nothing_behind(tmp_path: Path) -> None:
    snn = SNN(3, [4], 2, beta=1.0, seed=0)  # no leak: no NIR time constant
    with pytest.raises(NIRError, match=r"beta = 1.0 \(no leak\) has no NIR time constant"):
        to_nir(snn, dt=DT, path=tmp_path / "x.nir")
    assert list(tmp_path.iterdir()) == []


def test_subgraphs_are_flattened_and_scale_flatten_linear_run() -> None:
    graph, _ = _recurrent_cuba_graph(seed=2)
    flat = from_nir(graph, dt=DT, reset="subtract", surrogate=SURROGATE).double()
    # snnTorch's layout: the recurrent layer as a subgraph with its own Input/Output
    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([6])), "lif": graph.nodes["lif"],
                              "w_rec": graph.nodes["rec"], "output": nir.Output(output_type=np.array([6]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    nodes = {k: v for k, v in graph.nodes.items() if k not in ("lif", "rec")}
    nodes.update({"rnn": sub, "scale": nir.Scale(scale=np.full(3, 2.0)),
                  "flat": nir.Flatten(input_type={"input": np.array([3])}, start_dim=0)})
    edges = [("input", "fc"), ("fc", "rnn"), ("rnn", "out"), ("out", "li"), ("li", "scale"), ("scale", "flat"),
             ("flat", "output")]
    nested = from_nir(nir.NIRGraph(nodes=nodes, edges=edges), dt=DT, reset="subtract", surrogate=SURROGATE).double()
    x = (torch.rand(2, 20, 4, dtype=torch.float64) < 0.5).double()
    assert torch.equal(nested(x), 2.0 * flat(x))
    assert "nodes.rnn__lif.alpha" in dict(nested.named_buffers())


def test_cycles_other_than_recurrent_connections_are_rejected() -> None:
    graph, _ = _recurrent_cuba_graph(seed=3)
    graph.edges.append(("li", "fc"))  # a long loop
    with pytest.raises(NIRError, match=r"cycle through .* is not a recurrent connection"):
        from_nir(graph, dt=DT, reset="subtract", surrogate=SURROGATE)


def test_imported_network_passes_the_gradient_check_in_smooth_mode() -> None:
    graph, _ = _recurrent_cuba_graph(seed=4)
    net = from_nir(graph, dt=DT, reset="subtract", surrogate=SURROGATE, readout="max")
    assert isinstance(net, NIRNetwork)
    x = (torch.rand(2, 12, 4) < 0.5).float()
    y = torch.tensor([0, 2])
    result = GradientVerifier().verify_finite_difference(net, (x,), y, torch.nn.functional.cross_entropy)
    assert result.smooth_mode is True and result.passed, result.message
    assert result.max_abs_error < 1e-8
