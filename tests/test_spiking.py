"""The one place that decides "spiking network with a smooth mode": private copies and spiking-network adapters."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from evoexp.models import ANN, SNN
from evoexp.surrogate import get_surrogate
from evoexp.verification import spiking
from evoexp.verification.alignment import verify_gradient_alignment
from evoexp.verification.gradient import GradientVerifier
from evoexp.verification.spiking import EvoexpAdapter, SpikeProbe, private_copy, register_adapter


def test_private_copy_of_an_evoexp_snn() -> None:
    snn = SNN(4, [5], 2, seed=0)
    work = private_copy(snn, dtype=torch.float64)
    assert isinstance(work.adapter, EvoexpAdapter) and work.spiking
    assert work.model is not snn and work.model.readout.weight.dtype == torch.float64
    assert work.model.record_spikes is False and snn.record_spikes is True
    work.set_smooth(True)
    assert work.model.smooth and not snn.smooth


def test_a_model_no_adapter_claims_has_no_smooth_mode() -> None:
    work = private_copy(ANN(4, [5], 2))
    assert work.adapter is None and not work.spiking
    work.set_smooth(False)
    assert work.hold_resets(lambda: None) == []
    with pytest.raises(
        ValueError, match=r"ANN has no smooth mode: no spiking-network adapter claims it \(registered: evoexp"
    ):
        work.set_smooth(True)


def test_register_adapter_rejects_an_incomplete_adapter() -> None:
    class Partial:
        name = "partial"

        def claims(self, model: nn.Module) -> bool:
            return False

    with pytest.raises(TypeError, match="SpikingAdapter"):
        register_adapter(Partial())  # type: ignore[arg-type]


def test_hold_resets_needs_one_call_per_layer() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.snn = SNN(4, [4], 2, seed=0, detach_reset=True)

        def forward(self, x: Tensor) -> Tensor:
            layer = self.snn.hidden[0]
            return self.snn.readout(layer(layer(x)))

    work = private_copy(Twice())
    x = torch.zeros(2, 6, 4)
    with pytest.raises(ValueError, match=r"LIF layer 'snn.hidden.0' ran 2 times in one forward"):
        work.hold_resets(lambda: work.model(x))
    assert not work.model.snn.hidden[0]._forward_hooks  # the recording hooks are removed again


class _ToyLIF(nn.Module):
    """Another library's neuron: leaky integration, subtract reset, an evoexp surrogate as spike function."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(n_in, n_out, dtype=torch.float64)
        with torch.no_grad():
            self.fc.weight.copy_(2.0 * torch.randn(n_out, n_in, generator=gen, dtype=torch.float64))
        self.shape = get_surrogate("sigmoid", slope=4.0)
        self.fire: Callable[[Tensor], Tensor] = self.shape.spike

    def forward(self, x: Tensor) -> Tensor:
        mem = x.new_zeros(x.shape[0], self.fc.out_features)
        out = []
        for t in range(x.shape[1]):
            mem = 0.9 * mem + self.fc(x[:, t])
            spike = self.fire(mem - 1.0)
            mem = mem - spike
            out.append(spike)
        return torch.stack(out, 1).mean(1)


class _ToyAdapter:
    """What a peer library's adapter provides: claim, prepare, smooth mode, held resets, spike probes."""

    name = "toy"

    def claims(self, model: nn.Module) -> bool:
        return any(isinstance(m, _ToyLIF) for m in model.modules())

    def prepare(self, model: nn.Module) -> None:
        pass

    def set_smooth(self, model: nn.Module, enabled: bool) -> None:
        for m in model.modules():
            if isinstance(m, _ToyLIF):
                m.fire = m.shape.smooth if enabled else m.shape.spike

    def hold_resets(self, model: nn.Module, forward: Callable[[], object]) -> list[str]:
        return []  # the toy's reset is attached

    def spike_probes(self, model: nn.Module) -> list[SpikeProbe]:
        return []

    def notes(self, model: nn.Module) -> list[str]:
        smooth = any(m.fire == m.shape.smooth for m in model.modules() if isinstance(m, _ToyLIF))
        return ["toy caveat"] if smooth else []


def test_a_registered_adapter_gives_another_librarys_network_smooth_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spiking, "_ADAPTERS", [*spiking.adapters()])
    model = _ToyLIF(3, 2)
    gen = torch.Generator().manual_seed(1)
    x, y = (torch.rand(4, 8, 3, generator=gen) < 0.5).double(), torch.tensor([0, 1, 1, 0])
    verifier = GradientVerifier()
    plain = verifier.verify_finite_difference(model, x, y, F.cross_entropy)
    assert plain.smooth_mode is None and plain.comparison == "gradient"  # a step function: not a gradient
    register_adapter(_ToyAdapter())
    assert private_copy(model).adapter.name == "toy"  # type: ignore[union-attr]
    smooth = verifier.verify_finite_difference(model, x, y, F.cross_entropy)
    assert smooth.smooth_mode is True and smooth.passed is True, smooth.message
    assert "toy caveat" in smooth.warnings  # the adapter's notes reach the result
    spiking_mode = verifier.verify_finite_difference(model, x, y, F.cross_entropy, smooth=False)
    assert spiking_mode.comparison == "surrogate_bias" and spiking_mode.passed is None
    assert "toy caveat" not in spiking_mode.warnings
    alignment = verify_gradient_alignment(model, x, y, F.cross_entropy, smooth=True, sigmas=(1e-3,), n_directions=4)
    assert alignment.smooth_mode is True and alignment.stats().cosine > 0.99 and "toy caveat" in alignment.warnings
    assert model.fire == model.shape.spike  # the user's model is untouched


def test_an_adapter_of_a_registered_name_replaces_it_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spiking, "_ADAPTERS", [*spiking.adapters()])

    class Mine(EvoexpAdapter):
        pass

    before = len(spiking.adapters())
    register_adapter(Mine())
    assert type(spiking.adapters()[0]) is Mine and len(spiking.adapters()) == before
    assert isinstance(private_copy(SNN(4, [5], 2, seed=0)).adapter, Mine)


def test_a_model_two_adapters_claim_notes_the_neurons_that_run_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spiking, "_ADAPTERS", [*spiking.adapters()])
    register_adapter(_ToyAdapter())
    both = nn.ModuleDict({"snn": SNN(3, [4], 2, seed=0), "toy": _ToyLIF(3, 2)})
    work = private_copy(both)
    assert work.adapter.name == "evoexp" and work.unhandled == ("toy",)  # type: ignore[union-attr]
    (note,) = work.notes
    assert "neurons of toy" in note and "(evoexp here)" in note


def test_evoexp_spike_probes_declare_the_shapes_kinks() -> None:
    snn = SNN(4, [5], 2, seed=0, surrogate=get_surrogate("triangular", slope=2.0))
    work = private_copy(snn)
    (probe,) = work.adapter.spike_probes(work.model)  # type: ignore[union-attr]
    assert probe.kinks == (-0.5, 0.5) and probe.heaviside_at_zero == 0.0
