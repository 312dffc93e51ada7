"""The discrete engine with explicit step conventions: evoexp's LIF reproduced, held resets, probes, validation."""

from __future__ import annotations

import pytest
import torch

from evoexp.functional.discrete import EVOEXP_LIF, NIR_REFERENCE, NeuronConstants, StepConventions, neuron_sequence
from evoexp.functional.lif import LIFParameters, lif_sequence
from evoexp.models import NeuronPopulation
from evoexp.surrogate import get_surrogate
from evoexp.verification.spiking import private_copy

SURROGATE = get_surrogate("fast_sigmoid", slope=5.0)


def _constants(n: int, *, alpha: float, beta: float, reset: str = "subtract") -> NeuronConstants:
    one = torch.ones(n, dtype=torch.float64)
    return NeuronConstants(alpha=alpha * one, beta=beta * one, k_in=one, k_mem=one, leak=0 * one, threshold=one,
                           v_reset=0 * one, reset=reset)  # type: ignore[arg-type]


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("smooth", [False, True])
def test_evoexp_conventions_reproduce_evoexps_lif_layer(reset: str, recurrent: bool, smooth: bool) -> None:
    x = torch.randn(3, 25, 5, dtype=torch.float64) * 1.5
    v = torch.randn(5, 5, dtype=torch.float64) * 0.5 if recurrent else None
    expected = lif_sequence(x, LIFParameters(alpha=0.7, beta=0.85, reset=reset), SURROGATE,  # type: ignore[arg-type]
                            recurrent_weight=v, smooth=smooth)
    spikes, _ = neuron_sequence(x, _constants(5, alpha=0.7, beta=0.85, reset=reset), EVOEXP_LIF, SURROGATE,
                                recurrent_weight=v, smooth=smooth)
    torch.testing.assert_close(spikes, expected, rtol=0, atol=1e-14)
    assert expected.sum() > 10


def test_held_reset_gives_the_detached_gradient() -> None:
    x = torch.randn(2, 20, 4, dtype=torch.float64, requires_grad=True)
    conventions = StepConventions(reset_detached=True)
    constants = _constants(4, alpha=0.0, beta=0.8)
    spikes, _ = neuron_sequence(x, constants, conventions, SURROGATE, smooth=True)
    held, _ = neuron_sequence(x, constants, conventions, SURROGATE, smooth=True, replay_reset=spikes.detach())
    torch.testing.assert_close(held, spikes, rtol=0, atol=0)
    (g1,) = torch.autograd.grad(spikes.sum(), x)
    (g2,) = torch.autograd.grad(held.sum(), x)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    with pytest.raises(ValueError, match="replay_reset needs a detached reset"):
        neuron_sequence(x, constants, NIR_REFERENCE, SURROGATE, replay_reset=spikes.detach())


def test_spike_at_threshold_fires_on_a_tie_and_keeps_the_surrogate_gradient() -> None:
    x = torch.tensor([[[1.0], [0.0]]], dtype=torch.float64, requires_grad=True)
    constants = _constants(1, alpha=0.0, beta=0.5)
    for at_threshold, expected in ((False, 0.0), (True, 1.0)):
        spikes, _ = neuron_sequence(x, constants, StepConventions(spike_at_threshold=at_threshold), SURROGATE)
        assert float(spikes[0, 0, 0].detach()) == expected
        (grad,) = torch.autograd.grad(spikes[0, 0, 0], x)
        assert float(grad[0, 0, 0]) == pytest.approx(float(SURROGATE.derivative(torch.zeros(1))))


@pytest.mark.parametrize("conventions", [NIR_REFERENCE, EVOEXP_LIF, StepConventions(reset_timing="next_step",
                                                                                     reset_leak="after",
                                                                                     spike_at_threshold=True,
                                                                                     initial_reset=True)])
def test_population_probe_computes_the_surrogate_through_its_own_node(conventions: StepConventions) -> None:
    population = NeuronPopulation(_constants(3, alpha=0.5, beta=0.9), conventions, SURROGATE)
    probe = population.spike_probe()
    v = torch.linspace(-2, 2, 41, dtype=torch.float64).requires_grad_()
    out = probe(v)
    torch.testing.assert_close(out.detach(), (v > 0).double() + (v == 0).double() * population.heaviside_at_zero)
    (grad,) = torch.autograd.grad(out.sum(), v)
    torch.testing.assert_close(grad, SURROGATE.derivative(v.detach()))


def test_private_copies_switch_populations_to_smooth_mode() -> None:
    population = NeuronPopulation(_constants(3, alpha=0.0, beta=0.9), NIR_REFERENCE, SURROGATE)
    copy = private_copy(population, dtype=torch.float64)
    assert copy.spiking and copy.adapter is not None and copy.adapter.name == "evoexp"
    copy.set_smooth(True)
    out = copy.model(torch.full((1, 4, 3), 0.5, dtype=torch.float64))
    assert 0 < float(out.min()) < 1 and not population.smooth


def test_bad_conventions_and_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="reset_leak must be"):
        StepConventions(reset_leak="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input_delay must be 0 or 1"):
        StepConventions(input_delay=2)
    with pytest.raises(ValueError, match=r"drive must have shape \[batch, time>0, 3\]"):
        neuron_sequence(torch.zeros(1, 2, 4), _constants(3, alpha=0.0, beta=0.5), NIR_REFERENCE, SURROGATE)
