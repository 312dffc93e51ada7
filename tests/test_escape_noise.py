"""Escape-noise (stochastic) LIF neurons: the engine, the layer's modes and seeds, and the theory's identity."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.func import functional_call, vmap
from torch.nn import functional as F

import evoexp.functional.lif as lif
from evoexp.functional import LIFParameters, linear_lif_sequence
from evoexp.models import SNN
from evoexp.surrogate import get_surrogate
from evoexp.verification._batched import LossProblem
from evoexp.verification.escape_noise import escape_derivative, verify_escape_noise

_PARAMS = LIFParameters(alpha=0.8, beta=0.9, escape_noise=5.0)


def _inputs(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 10, 4, generator=gen, dtype=torch.float64)
    weight = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    bias = torch.randn(5, generator=gen, dtype=torch.float64) * 0.3
    draws = torch.rand(3, 10, 5, generator=gen, dtype=torch.float64)
    return x, weight, bias, draws


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("sampled", [True, False])
def test_escape_noise_node_matches_the_reference_loop(reset: str, sampled: bool) -> None:
    """Sampled spikes (or firing probabilities) and the surrogate gradient: the hand-written node = autograd loop."""
    x, weight, bias, draws = _inputs()
    params = dataclasses.replace(_PARAMS, reset=reset)
    recurrent = torch.randn(5, 5, dtype=torch.float64) * 0.3
    readout = torch.randn(3, 10, 5, dtype=torch.float64)
    results = []
    for bptt in ("custom", "autograd"):
        w, b, v = (t.clone().requires_grad_(True) for t in (weight, bias, recurrent))
        spikes = linear_lif_sequence(
            x, w, b, params, get_surrogate("fast_sigmoid", slope=4.0), recurrent_weight=v, bptt=bptt,
            noise=draws if sampled else None,
        )
        results.append((spikes.detach(), torch.autograd.grad((spikes * readout).sum(), [w, b, v])))
    (custom, custom_grads), (reference, reference_grads) = results
    torch.testing.assert_close(custom, reference, rtol=0, atol=0)
    if sampled:
        assert set(custom.unique().tolist()) == {0.0, 1.0}
    else:
        assert bool(((custom > 0.01) & (custom < 0.99)).any())  # probabilities, not spikes
    for got, want in zip(custom_grads, reference_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)


def test_sampled_spikes_fire_at_the_escape_rate() -> None:
    """One step, fixed membrane: the spike frequency over many draws is sigma(beta_n (U - theta)) within 4 SE."""
    n = 20000
    membrane = torch.tensor([0.6, 1.0, 1.3], dtype=torch.float64)
    x = torch.zeros(n, 3, 3, dtype=torch.float64)
    x[:, 0] = membrane  # alpha = 0: mem[2] = I[0]
    params = LIFParameters(alpha=0.0, beta=0.5, escape_noise=4.0, detach_reset=True)
    draws = torch.rand(n, 3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    draws[:, :2] = 1.0  # no spike in the first two steps: no reset reaches step 2
    spikes = linear_lif_sequence(x, torch.eye(3, dtype=torch.float64), None, params, escape_derivative(4.0),
                                 noise=draws)
    rate = spikes[:, 2].mean(0)
    expected = torch.sigmoid(4.0 * (membrane - 1.0))
    assert torch.all((rate - expected).abs() < 4 * torch.sqrt(expected * (1 - expected) / n))


def test_noise_needs_escape_neurons_and_the_spikes_shape() -> None:
    x, weight, bias, draws = _inputs()
    with pytest.raises(ValueError, match=r"noise needs params\.escape_noise"):
        linear_lif_sequence(x, weight, bias, LIFParameters(), get_surrogate("sigmoid"), noise=draws)
    with pytest.raises(ValueError, match="noise must have the spikes' shape"):
        linear_lif_sequence(x, weight, bias, _PARAMS, get_surrogate("sigmoid"), noise=draws[:, :3])
    with pytest.raises(ValueError, match="escape_noise must be a finite number > 0"):
        LIFParameters(escape_noise=0.0)
    with pytest.raises(ValueError, match="escape_eval must be one of"):
        SNN(4, [5], 2, escape_noise=2.0, escape_eval="random")  # type: ignore[arg-type]


def test_vmap_over_weights_runs_the_same_stochastic_forward() -> None:
    """The node's vmap rule folds the draws with the parameter sets: each set sees the same sample."""
    x, weight, bias, draws = _inputs()
    weights = weight + 0.1 * torch.randn(4, *weight.shape, dtype=torch.float64)
    sg = get_surrogate("sigmoid", slope=5.0)

    def run(w: Tensor) -> Tensor:
        return linear_lif_sequence(x, w, bias, _PARAMS, sg, noise=draws)

    batched = vmap(run)(weights)
    for i in range(4):
        torch.testing.assert_close(batched[i], run(weights[i]), rtol=0, atol=0)


def _snn(**kwargs: Any) -> SNN:
    return SNN(4, [6, 5], 3, surrogate="sigmoid", weight_scale=3.0, seed=2, **kwargs).double()


def test_snn_modes_seeds_and_initial_weights() -> None:
    x = (torch.rand(4, 12, 4, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    noisy, twin, plain = _snn(escape_noise=3.0), _snn(escape_noise=3.0), _snn()
    assert all(torch.equal(a, b) for a, b in zip(noisy.parameters(), plain.parameters()))  # noise leaves init alone
    first, second = noisy(x), noisy(x)
    assert not torch.equal(first, second)  # training mode samples afresh
    torch.testing.assert_close(twin(x), first, rtol=0, atol=0)  # same seed, same stream
    noisy.eval()
    torch.testing.assert_close(noisy(x), plain.eval()(x), rtol=0, atol=0)  # default evaluation: noise-free
    for layer in noisy.hidden:
        layer.escape_eval = "sample"
    assert not torch.equal(noisy(x), plain(x))
    for layer in noisy.hidden:
        layer.escape_eval = "mean"
    rates = noisy.hidden[0](x).detach()
    assert bool(((rates > 0.01) & (rates < 0.99)).any())


def test_verifier_copies_freeze_the_noise() -> None:
    """A private copy sees one sample (common random numbers), also inside vmap; the user's model is untouched."""
    model = _snn(escape_noise=3.0)
    x = (torch.rand(4, 12, 4, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    y = torch.tensor([0, 1, 2, 0])
    problem = LossProblem(model, x, y, F.cross_entropy, dtype=torch.float64)
    assert all(layer.frozen_noise for layer in problem.model.hidden) and not model.hidden[0].frozen_noise
    assert problem.loss() == problem.loss()
    params = {name: p.detach().unsqueeze(0).repeat(3, *([1] * p.dim())) for name, p in problem.params.items()}
    batched = problem.losses(params)
    assert problem.batched and torch.all(batched == problem.loss())
    with torch.no_grad():
        direct = F.cross_entropy(functional_call(problem.model, dict(problem.params), (x,)), y)
    assert float(direct) == problem.loss()


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("bptt", ["custom", "autograd"])
def test_escape_identity_holds_to_float64_precision(reset: str, bptt: str) -> None:
    result = verify_escape_noise(dataclasses.replace(_PARAMS, reset=reset), bptt=bptt)  # type: ignore[arg-type]
    assert result.passed, result.message
    assert [c.name for c in result.cases] == ["single neuron", "single layer"]
    for case in result.cases:
        assert case.max_abs_error < 1e-13 and case.enumeration_error < 1e-13 and 0 < case.spike_rate < 1
    assert "detach_reset" in result.warnings[0]  # the layer's reset is attached; the statement holds the history
    assert result.to_dict()["passed"] is True


def test_a_mutated_surrogate_derivative_in_the_adjoint_fails_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """a[t] = g[t] dL/ds[t] -> 0.9 g[t] dL/ds[t] in the real adjoint: the identity breaks (coordinate, values)."""
    assert verify_escape_noise(_PARAMS).passed
    real = lif._Adjoint.blocks

    def blocks(self: Any, stop: int) -> Any:
        for t0, slope, coeff in real(self, stop):
            yield t0, 0.9 * slope, coeff

    monkeypatch.setattr(lif._Adjoint, "blocks", blocks)
    result = verify_escape_noise(_PARAMS)
    assert result.passed is False
    assert not any(case.passed for case in result.cases)
    assert "surrogate gradient" in result.message and "exact derivative" in result.message
    assert result.cases[0].max_rel_error == pytest.approx(0.1, rel=1e-6)  # one neuron, one path: exactly 10 %


def test_another_surrogate_is_not_the_derivative_of_the_expected_output() -> None:
    result = verify_escape_noise(_PARAMS, get_surrogate("fast_sigmoid", slope=5.0))
    assert result.passed  # the check uses the escape derivative; the configured shape is reported
    assert result.configured_surrogate is not None and result.configured_max_rel_error > 0.1
    assert verify_escape_noise(_PARAMS, escape_derivative(5.0)).configured_surrogate is None
