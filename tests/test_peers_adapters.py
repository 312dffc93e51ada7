"""Foreign networks (snnTorch, SpikingJelly, Norse): smooth mode through adapters, for every gradient verifier."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evoexp.peers import adapters
from evoexp.peers.adapters import NeuronAdapter
from evoexp.surrogate import get_surrogate
from evoexp.verification import _batched, spiking
from evoexp.verification.alignment import verify_gradient_alignment
from evoexp.verification.gradient import GradientVerifier
from evoexp.verification.spiking import private_copy, register_adapter
from evoexp.verification.stability import NumericalStabilityTester
from evoexp.verification.suite import BackpropagationVerificationSuite, VerificationOptions


def _snntorch() -> Any:
    return pytest.importorskip("snntorch", reason="snntorch is not installed (pip install evoexp[peers])")


def _spikingjelly() -> Any:
    pytest.importorskip("spikingjelly.activation_based.neuron",
                        reason="spikingjelly is not installed (pip install evoexp[peers])")
    from spikingjelly.activation_based import neuron, surrogate

    return neuron, surrogate


def _norse() -> Any:
    return pytest.importorskip("norse.torch", reason="norse is not installed (pip install evoexp[peers])")


class _Amplify(torch.autograd.Function):
    """Identity forward, backward x1.01: the custom-backward bug inserted between two layers."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return 1.01 * grad


class _Net(nn.Module):
    """Linear -> neuron -> (bug) -> Linear -> neuron/readout, unrolled over time; ``step`` is the library's call."""

    def __init__(self, first: nn.Module, second: nn.Module | None, *, bug: bool = False) -> None:
        super().__init__()
        self.fc1, self.n1 = nn.Linear(5, 6), first
        self.fc2, self.n2 = nn.Linear(6, 3), second
        self.bug = bug

    def forward(self, x: Tensor) -> Tensor:
        state1 = state2 = None
        out = []
        for t in range(x.shape[1]):
            spikes, state1 = self._step(self.n1, self.fc1(x[:, t]), state1)
            if self.bug:
                spikes = _Amplify.apply(spikes)
            current = self.fc2(spikes)
            if self.n2 is None:
                out.append(current)
                continue
            spikes2, state2 = self._step(self.n2, current, state2)
            out.append(current + spikes2)
        return torch.stack(out, 1).mean(1)

    @staticmethod
    def _step(neuron: nn.Module, current: Tensor, state: Any) -> tuple[Tensor, Any]:
        module = type(neuron).__module__
        if module.startswith("snntorch"):  # Leaky: (spk, mem); Synaptic: (spk, syn, mem); reset_mem() alike
            state = neuron.reset_mem() if state is None else state
            spikes, *rest = neuron(current, *state) if isinstance(state, tuple) else neuron(current, state)
            return spikes, tuple(rest) if len(rest) > 1 else rest[0]
        if module.startswith("spikingjelly"):
            return neuron(current), None
        return neuron(current, state)


def _data(batch: int = 3, steps: int = 8) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(batch, steps, 5, generator=generator) * 3, torch.randint(0, 3, (batch,), generator=generator)


def _snntorch_net(*, bug: bool = False, spike_grad: Any = None) -> nn.Module:
    snn = _snntorch()
    return _Net(snn.Leaky(beta=0.9, spike_grad=spike_grad), snn.Synaptic(alpha=0.8, beta=0.9, spike_grad=spike_grad),
                bug=bug)


def _spikingjelly_net(*, bug: bool = False, detach_reset: bool = False) -> nn.Module:
    neuron, surrogate = _spikingjelly()
    return _Net(neuron.LIFNode(tau=2.0, detach_reset=detach_reset, surrogate_function=surrogate.ATan()),
                neuron.IFNode(detach_reset=detach_reset), bug=bug)


def _verify(model: nn.Module, **kwargs: Any) -> Any:
    x, y = _data()
    return GradientVerifier().verify_finite_difference(model, x, y, F.cross_entropy, **kwargs)


@pytest.mark.parametrize("spike_grad", ["default", "fast_sigmoid"])
def test_correct_snntorch_network_passes(spike_grad: str) -> None:
    snn = _snntorch()
    grad = None if spike_grad == "default" else snn.surrogate.fast_sigmoid(slope=5)
    model = _snntorch_net(spike_grad=grad)
    result = _verify(model)
    assert result.passed, result.message
    assert result.smooth_mode is True and result.comparison == "gradient" and result.max_abs_error < 1e-7
    assert result.held_resets == ["n1", "n2"] and result.batched  # snnTorch detaches its reset in every neuron
    # The user's model is untouched: its own spike functions, no hooks, float32.
    assert model.n1.spike_grad is not None and not model._forward_hooks and not model._forward_pre_hooks
    assert model.fc1.weight.dtype == torch.float32


def test_snntorch_network_with_a_custom_backward_bug_fails() -> None:
    result = _verify(_snntorch_net(bug=True))
    assert result.passed is False and result.max_rel_error == pytest.approx(0.0099, rel=0.05), result.message
    assert result.worst.tensor.startswith("fc1")


def test_snntorch_reset_is_held_fixed_as_training_detaches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """snnTorch detaches its reset; without replaying the detached values the finite differences disagree."""
    _snntorch()
    monkeypatch.setattr(adapters._Replay, "detached", lambda self, value: value)
    result = _verify(_snntorch_net())
    assert result.passed is False and result.max_rel_error > 1e-2


def test_held_values_are_replayed_on_the_batched_and_the_sequential_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """vmap and the sequential fallback both replay the held values: both agree with autograd to rounding."""
    model = _snntorch_net()
    batched = _verify(model)

    def no_vmap(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("vmap disabled by the test")

    monkeypatch.setattr(_batched, "vmap", no_vmap)
    sequential = _verify(model)
    assert batched.batched and not sequential.batched and sequential.passed, sequential.message
    assert sequential.held_resets == batched.held_resets == ["n1", "n2"]
    assert max(batched.max_abs_error, sequential.max_abs_error) < 1e-8


def test_correct_spikingjelly_networks_pass_and_a_bug_fails() -> None:
    for detach_reset in (False, True):
        result = _verify(_spikingjelly_net(detach_reset=detach_reset))
        assert result.passed, result.message
        assert any("reference BPTT" in w for w in result.warnings)
    buggy = _verify(_spikingjelly_net(bug=True))
    assert buggy.passed is False and buggy.max_rel_error == pytest.approx(0.0099, rel=0.05), buggy.message


@pytest.mark.parametrize("cell", ["LIFCell", "LIFBoxCell", "LIFRecurrentCell"])
def test_norse_network_passes(cell: str) -> None:
    norse = _norse()
    from norse.torch.functional import threshold as threshold_module

    original = threshold_module.threshold
    first = norse.LIFRecurrentCell(6, 6) if cell == "LIFRecurrentCell" else getattr(norse, cell)()
    model = _Net(first, None)
    model.fc1.weight.data *= 40.0  # Norse integrates with dt = 1e-3: large currents make the neurons spike
    result = _verify(model)
    assert result.passed, result.message
    assert threshold_module.threshold is original  # the smooth threshold lived only during the copy's forwards


def test_norse_network_is_checked_in_smooth_mode_so_a_bug_fails() -> None:
    assert _verify(_norse_net(bug=True)).passed is False


def test_foreign_network_without_smooth_mode_reports_surrogate_bias() -> None:
    result = _verify(_snntorch_net(), smooth=False)  # float32 spikes in a float64 copy: no dtype crash
    assert result.passed is None and result.comparison == "surrogate_bias" and result.smooth_mode is False


def test_spike_function_without_primitive_is_substituted_and_said() -> None:
    snn = _snntorch()
    result = _verify(_snntorch_net(spike_grad=snn.surrogate.triangular()))
    assert result.passed, result.message
    assert any("substituted sigmoid(slope=5.0, scale=1.0)" in w and "triangular(threshold=1)" in w
               for w in result.warnings)


def test_the_adapter_reports_each_swap() -> None:
    snn = _snntorch()
    work = private_copy(_snntorch_net(spike_grad=snn.surrogate.fast_sigmoid(slope=5)), dtype=torch.float64)
    adapter = work.adapter
    assert isinstance(adapter, adapters.SnnTorchAdapter)
    work.set_smooth(True)
    assert [(n.name, n.neuron, n.replacement) for n in adapter.swaps(work.model)] == [
        ("n1", "Leaky", "fast_sigmoid(slope=5.0, scale=1.0) smooth"),
        ("n2", "Synaptic", "fast_sigmoid(slope=5.0, scale=1.0) smooth"),
    ]
    assert adapter.swaps(work.model)[0].original == "snntorch.surrogate.fast_sigmoid(slope=5)"
    work.set_smooth(False)  # back to the library's own spike function, its float32 spikes cast
    assert {n.replacement for n in adapter.swaps(work.model)} == {"kept (spiking mode)"}
    assert work.model(_data()[0].double()).dtype == torch.float64
    assert private_copy(nn.Linear(2, 2)).adapter is None


def test_stability_checks_start_every_batch_from_a_fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    snn = _snntorch()

    class Hidden(nn.Module):  # snnTorch's init_hidden=True keeps the membrane inside the neuron between calls
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(5, 3)
            self.lif = snn.Leaky(beta=0.9, init_hidden=True, output=True)

        def forward(self, x: Tensor) -> Tensor:
            return torch.stack([self.lif(self.fc(x[:, t]))[1] for t in range(x.shape[1])], 1).mean(1)

    batches = [_data(), _data()]
    tester = NumericalStabilityTester()
    assert tester.check_gradient_stability(Hidden(), batches, n_batches=2).nan_count == 0
    weights = tester.check_weight_stability(Hidden(), batches, None, lambda p: torch.optim.SGD(p, lr=0.1), n_steps=2)
    assert len(weights.losses) == 2
    monkeypatch.setattr(adapters.SnnTorchAdapter, "reset", lambda self, module: None)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        tester.check_gradient_stability(Hidden(), batches, n_batches=2)


def _norse_net(*, bug: bool = False) -> nn.Module:
    norse = _norse()
    model = _Net(norse.LIFCell(), None, bug=bug)
    model.fc1.weight.data *= 40.0  # Norse integrates with dt = 1e-3: large currents make the neurons spike
    return model


def _foreign_nets() -> list[nn.Module]:
    return [_snntorch_net(), _spikingjelly_net(detach_reset=True), _norse_net()]


def test_alignment_on_foreign_networks() -> None:
    x, y = _data()
    for model in _foreign_nets():
        smooth = verify_gradient_alignment(model, x, y, F.cross_entropy, sigmas=(1e-4,), n_directions=3,
                                           n_quadrature=4, per_layer=False, smooth=True)
        assert smooth.overall[0].cosine == pytest.approx(1.0, abs=1e-6)  # the detached values held, as in training
        assert smooth.held_resets
        spiking = verify_gradient_alignment(model, x, y, F.cross_entropy, sigmas=(0.1,), n_directions=3,
                                            n_quadrature=4, per_layer=False)
        assert spiking.smooth_mode is False and spiking.n_evaluations > 0 and not spiking.held_resets


def test_stability_checks_on_foreign_networks() -> None:
    batches = [_data(), _data(steps=6)]
    tester = NumericalStabilityTester()
    for model in _foreign_nets():
        gradients = tester.check_gradient_stability(model, batches, n_batches=3)
        assert gradients.n_batches == 3 and gradients.nan_count == gradients.inf_count == 0
        assert gradients.total_norm.min > 0
        weights = tester.check_weight_stability(model, batches, None, lambda p: torch.optim.SGD(p, lr=0.1),
                                                n_steps=3)
        assert len(weights.losses) == 3 and model.fc1.weight.grad is None  # the user's model is untouched


class _ToyNeuron(nn.Module):
    """A neuron of a 'library' the registry does not know: step forward with a fast-sigmoid surrogate."""

    def __init__(self) -> None:
        super().__init__()
        self.spike: Any = get_surrogate("fast_sigmoid", slope=4.0).spike

    def forward(self, current: Tensor, state: Any = None) -> tuple[Tensor, None]:
        return self.spike(current - 0.5), None


class _ToyAdapter(NeuronAdapter):
    """Another library's adapter written on :class:`NeuronAdapter`: where its neurons keep their spike function."""

    name = "toy"

    def owns(self, module: nn.Module) -> bool:
        return isinstance(module, _ToyNeuron)

    def spike_fn(self, module: nn.Module) -> Any:
        return module.spike

    def install(self, module: nn.Module, spike_fn: Any) -> None:
        module.spike = spike_fn


def test_register_adapter_adds_a_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spiking, "_ADAPTERS", [*spiking.adapters()])
    model = _Net(_ToyNeuron(), None)
    assert private_copy(model).adapter is None
    assert _verify(model).comparison == "gradient" and _verify(model).smooth_mode is None
    register_adapter(_ToyAdapter())
    assert "toy" in [a.name for a in spiking.adapters()]
    result = _verify(model)
    assert result.passed and result.smooth_mode is True, result.message
    (probe,) = private_copy(model).adapter.spike_probes(private_copy(model).model)  # type: ignore[union-attr]
    assert probe.layers == ("n1",) and "fast_sigmoid(slope=4.0" in probe.name


def test_one_registry_and_lazy_registration() -> None:
    """The peer adapters are registered on first use, through the one registry; nothing is imported before."""
    code = (
        "import sys, torch\n"
        "from evoexp.verification import spiking\n"
        "spiking.private_copy(torch.nn.Linear(2, 2))\n"
        "print(sorted(m for m in ('evoexp.peers', 'snntorch', 'spikingjelly', 'norse') if m in sys.modules))\n"
        "import snntorch\n"
        "work = spiking.private_copy(torch.nn.Sequential(torch.nn.Linear(2, 2), snntorch.Leaky(beta=0.9)))\n"
        "print(work.adapter.name, [a.name for a in spiking.adapters()])\n"
        "import evoexp.peers as peers\n"
        "print(hasattr(peers, 'register_adapter'))\n"
    )
    _snntorch()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "snntorch ['evoexp', 'snntorch', 'spikingjelly', 'norse']", "False"]


def test_a_registered_adapter_of_the_same_name_replaces_the_built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    _snntorch()
    monkeypatch.setattr(spiking, "_ADAPTERS", [*spiking.adapters()])
    private_copy(_snntorch_net())  # registers the built-in peer adapters

    class Mine(adapters.SnnTorchAdapter):
        pass

    register_adapter(Mine())
    assert [a.name for a in spiking.adapters()].count("snntorch") == 1
    assert isinstance(private_copy(_snntorch_net()).adapter, Mine)


def test_a_model_mixing_two_libraries_says_which_neurons_ran_unchanged() -> None:
    snn, norse = _snntorch(), _norse()
    model = _Net(snn.Leaky(beta=0.9), norse.LIFCell())
    result = _verify(model, mode="fast")
    assert any("neurons of norse" in w and "ran unchanged" in w for w in result.warnings), result.warnings


def _suite_surrogate(model: nn.Module) -> Any:
    x, y = _data()
    results = BackpropagationVerificationSuite().run_full_verification(
        model, [(x, y)], options=VerificationOptions.only("surrogate_verification"))
    return results["surrogate_verification"]


def test_runtime_surrogate_check_probes_the_librarys_own_spike_function(monkeypatch: pytest.MonkeyPatch) -> None:
    snn = _snntorch()
    result = _suite_surrogate(_snntorch_net())  # the default spike_grad: snntorch.surrogate.atan(alpha=2)
    assert result.passed, result.message
    declared = "declared atan(slope=2.0, scale=1.0)"
    assert result.name == f"snntorch.surrogate.atan(alpha=2) (snntorch neurons n1, n2; {declared})"
    original = snn.surrogate.ATan.backward

    def broken(ctx: Any, grad: Tensor) -> Any:  # the library's real backward, 1% too large
        return tuple(None if g is None else 1.01 * g for g in original(ctx, grad))

    monkeypatch.setattr(snn.surrogate.ATan, "backward", staticmethod(broken))
    failed = _suite_surrogate(_snntorch_net())
    assert failed.passed is False and failed.fitted_factor == pytest.approx(1.01), failed.message


def test_runtime_surrogate_check_gets_each_librarys_kinks_and_h0() -> None:
    neuron, surrogate = _spikingjelly()
    model = _Net(neuron.LIFNode(surrogate_function=surrogate.PiecewiseQuadratic(alpha=2.0)), None)
    result = _suite_surrogate(model)
    assert result.passed, result.message
    assert result.kinks == [-0.5, 0.5] and result.heaviside_at_zero == 1.0  # triangular(slope=2); SpikingJelly's H(0)
    norse = _norse()
    assert _suite_surrogate(_Net(norse.LIFCell(), None)).passed


def test_a_spike_function_without_an_evoexp_shape_is_probed_against_its_documentation() -> None:
    snn = _snntorch()
    result = _suite_surrogate(_snntorch_net(spike_grad=snn.surrogate.triangular()))
    assert "snntorch:triangular as documented" in result.name and result.passed, result.message


@pytest.mark.parametrize("kind", ["init_hidden", "RLeaky", "RSynaptic"])
def test_recurrent_and_hidden_state_snntorch_neurons_pass(kind: str) -> None:
    snn = _snntorch()

    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.out = nn.Linear(5, 6), nn.Linear(6, 3)
            self.lif = {"init_hidden": lambda: snn.Leaky(beta=0.9, init_hidden=True, output=True),
                        "RLeaky": lambda: snn.RLeaky(beta=0.9, linear_features=6),
                        "RSynaptic": lambda: snn.RSynaptic(alpha=0.8, beta=0.9, linear_features=6)}[kind]()

        def forward(self, x: Tensor) -> Tensor:
            state = () if kind == "init_hidden" else self.lif.reset_mem()
            out = []
            for t in range(x.shape[1]):
                spikes, *state = self.lif(self.fc(x[:, t]), *state)
                out.append(self.out(spikes) + state[-1].sum(-1, keepdim=True))
                state = [] if kind == "init_hidden" else state
            return torch.stack(out, 1).mean(1)

    result = _verify(Recurrent())
    assert result.passed and result.batched, result.message
