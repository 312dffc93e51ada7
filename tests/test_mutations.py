"""Mutation tests of the real hand-written BPTT: every term of the adjoint, perturbed in evoexp.functional, must make
the finite-difference check fail on a network that exercises it (and the unperturbed network must pass).

Each mutation wraps a method of the real ``evoexp.functional.lif._Adjoint`` (monkeypatched for the test only) and
changes one term by 10 %: the forward pass is untouched, so the mutated gradient is wrong for the function training
evaluates. Every mutation is first shown to change the node's gradient away from the autograd reference
(``bptt="autograd"``, :func:`~evoexp.functional.lif_sequence_reference`), so no test can pass vacuously.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.nn import functional as F

import evoexp.functional.lif as lif
from evoexp.models import SNN
from evoexp.surrogate import get_surrogate
from evoexp.verification.gradient import GradientVerifier
from evoexp.verification.suite import BackpropagationVerificationSuite, VerificationOptions

Mutation = Callable[[pytest.MonkeyPatch], None]


def _blocks(transform: Callable[[Any, int, Tensor, Tensor | None], tuple[Tensor, Tensor | None]]) -> Mutation:
    """Mutate the per-block terms ``(g, c)`` that ``_Adjoint.blocks`` yields."""

    def apply(monkeypatch: pytest.MonkeyPatch) -> None:
        real = lif._Adjoint.blocks

        def blocks(self: Any, stop: int) -> Iterator[tuple[int, Tensor, Tensor | None]]:
            for t0, slope, coeff in real(self, stop):
                yield (t0, *transform(self, t0, slope, coeff))

        monkeypatch.setattr(lif._Adjoint, "blocks", blocks)

    return apply


def _rows(self: Any, t0: int, like: Tensor, source: Tensor) -> Tensor:
    return source[t0 : t0 + like.shape[0]]


def _subtract_reset_coefficient(self: Any, t0: int, slope: Tensor, coeff: Tensor | None) -> tuple[Tensor, Tensor]:
    # c = beta - theta g  ->  beta - 0.9 theta g
    assert coeff is not None
    return slope, torch.add(coeff, slope, alpha=0.1 * self.params.threshold)


def _zero_reset_membrane_path(self: Any, t0: int, slope: Tensor, coeff: Tensor | None) -> tuple[Tensor, Tensor]:
    # c = beta (1 - r) - g pre  ->  beta (1 - 0.9 r) - g pre
    assert coeff is not None
    return slope, torch.add(coeff, _rows(self, t0, slope, self.reset), alpha=0.1 * self.params.beta)


def _zero_reset_slope_term(self: Any, t0: int, slope: Tensor, coeff: Tensor | None) -> tuple[Tensor, Tensor]:
    # c = beta (1 - r) - g pre  ->  beta (1 - r) - 0.9 g pre
    assert coeff is not None
    return slope, torch.addcmul(coeff, slope, _rows(self, t0, slope, self.pre_reset), value=0.1)


def _detached_leak(self: Any, t0: int, slope: Tensor, coeff: Tensor | None) -> tuple[Tensor, Tensor | None]:
    # detached reset only: c = beta (subtract; yielded as None) or beta (1 - r) (zero)  ->  0.9 c
    if not self.params.detach_reset:
        return slope, coeff
    if coeff is None:
        return slope, torch.full_like(slope, 0.9 * self.params.beta)
    return slope, 0.9 * coeff


def _surrogate_slope(self: Any, t0: int, slope: Tensor, coeff: Tensor | None) -> tuple[Tensor, Tensor | None]:
    # a[t] = g[t] * dL/ds[t]  ->  0.9 g[t] * dL/ds[t]: the node's derivative drifts from the declared one
    return 0.9 * slope, coeff


def _zero_reset_synaptic_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # lambda_s[t] = alpha lambda_s[t+1] + (1 - r[t]) lambda_m[t+1]  ->  ... + (1 - 0.9 r[t]) lambda_m[t+1]
    real = lif._Adjoint.lambda_syn

    def lambda_syn(self: Any, t: int, lam: Tensor, out: Tensor, syn_next: Tensor) -> None:
        real(self, t, lam, out, syn_next)
        out.addcmul_(self.reset[t], lam, value=0.1)

    monkeypatch.setattr(lif._Adjoint, "lambda_syn", lambda_syn)


def _synaptic_decay(monkeypatch: pytest.MonkeyPatch) -> None:
    # the backward's alpha -> 0.9 alpha (the forward keeps alpha)
    real = lif._Adjoint.__init__

    def init(self: Any, params: lif.LIFParameters, *args: Any, **kwargs: Any) -> None:
        real(self, dataclasses.replace(params, alpha=0.9 * params.alpha), *args, **kwargs)

    monkeypatch.setattr(lif._Adjoint, "__init__", init)


def _recurrent_term(monkeypatch: pytest.MonkeyPatch) -> None:
    # delta[t] = dL/ds[t] + V^T lambda_s[t+1] + ...  ->  0.9 V^T lambda_s[t+1]
    real = lif._Adjoint.recurrent
    monkeypatch.setattr(lif._Adjoint, "recurrent", lambda self, weight: real(self, 0.9 * weight))


# name -> (network options, mutation, tensor that must be named)
MUTATIONS: dict[str, tuple[dict[str, Any], Mutation, str]] = {
    "subtract-reset coefficient": ({"reset": "subtract"}, _blocks(_subtract_reset_coefficient), "hidden.0.weight"),
    "zero-reset membrane path": ({"reset": "zero"}, _blocks(_zero_reset_membrane_path), "hidden.0.weight"),
    "zero-reset slope term": ({"reset": "zero"}, _blocks(_zero_reset_slope_term), "hidden.0.weight"),
    "zero-reset synaptic path": ({"reset": "zero"}, _zero_reset_synaptic_path, "hidden.0.weight"),
    "synaptic decay": ({"alpha": 0.8}, _synaptic_decay, "hidden.0.weight"),
    "recurrent V term": ({"recurrent": True}, _recurrent_term, "hidden.0.recurrent_weight"),
    "detached branch (subtract)": (
        {"detach_reset": True, "reset": "subtract"},
        _blocks(_detached_leak),
        "hidden.0.weight",
    ),
    "detached branch (zero)": ({"detach_reset": True, "reset": "zero"}, _blocks(_detached_leak), "hidden.0.weight"),
    "surrogate derivative": ({}, _blocks(_surrogate_slope), "hidden.0.weight"),
}

_BASE = {"alpha": 0.0, "reset": "subtract", "detach_reset": False, "recurrent": False}


def _snn(options: dict[str, Any], bptt: str = "custom") -> SNN:
    snn = SNN(
        5,
        [6, 4],
        3,
        surrogate=get_surrogate("fast_sigmoid", slope=5.0),
        weight_scale=3.0,
        seed=0,
        bptt=bptt,  # type: ignore[arg-type]
        **{**_BASE, **options},
    )
    with torch.no_grad():  # non-zero biases: a bias bug must not hide behind zeros
        for layer in snn.hidden:
            layer.bias.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(1))
    return snn


@pytest.fixture(scope="module")
def data() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(4)
    return (torch.rand(4, 12, 5, generator=gen) < 0.4).double(), torch.randint(0, 3, (4,), generator=gen)


def _smooth_gradients(snn: SNN, data: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    model = snn.double()
    model.smooth = True
    loss = F.cross_entropy(model(data[0]), data[1])
    return dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutated_adjoint_term_fails_the_check(
    name: str, data: tuple[Tensor, Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    options, mutate, tensor = MUTATIONS[name]
    verifier = GradientVerifier()
    sound = verifier.verify_finite_difference(_snn(options), *data, F.cross_entropy)
    assert sound.passed is True, sound.message
    reference = _smooth_gradients(_snn(options, "autograd"), data)
    custom = _smooth_gradients(_snn(options), data)
    for key, grad in reference.items():
        torch.testing.assert_close(custom[key], grad, rtol=1e-10, atol=1e-13, msg=key)

    mutate(monkeypatch)
    mutated = _smooth_gradients(_snn(options), data)
    assert not torch.allclose(mutated[tensor], reference[tensor], rtol=1e-3, atol=1e-5), "the mutation is a no-op"
    result = verifier.verify_finite_difference(_snn(options), *data, F.cross_entropy)
    assert result.passed is False, result.message
    assert tensor in result.failing_tensors
    assert f"tensor '{tensor}'" in result.message and "numerical" in result.message


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_detached_branch_mutation_fails_in_fast_mode(
    reset: str, data: tuple[Tensor, Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detached gradient is what the check verifies in fast mode too (its exact pass names the coordinate)."""
    options = {"detach_reset": True, "reset": reset}
    verifier = GradientVerifier()
    kwargs: dict[str, Any] = {"mode": "fast", "n_directions": 2}
    assert verifier.verify_finite_difference(_snn(options), *data, F.cross_entropy, **kwargs).passed is True
    _blocks(_detached_leak)(monkeypatch)
    result = verifier.verify_finite_difference(_snn(options), *data, F.cross_entropy, **kwargs)
    assert result.passed is False and "hidden.0.weight" in result.failing_tensors, result.message
    assert result.held_resets == ["hidden.0", "hidden.1"]
    assert result.worst is not None and result.worst.index is not None


def test_runtime_surrogate_check_sees_a_broken_node_derivative(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite probes the LIF node's own backward; comparing the shape's spike with its derivative could not fail."""
    snn = _snn({})
    loader = [(torch.zeros(2, 12, 5), torch.tensor([0, 1]))]
    options = VerificationOptions.only("surrogate_verification", surrogate_kwargs={"n_points": 1000})
    suite = BackpropagationVerificationSuite()
    sound = suite.run_full_verification(snn, loader, options=options)["surrogate_verification"]
    assert sound.passed is True and "LIF node of hidden.0, hidden.1" in sound.name
    _blocks(_surrogate_slope)(monkeypatch)
    broken = suite.run_full_verification(snn, loader, options=options)["surrogate_verification"]
    assert broken.passed is False and not broken.implementation_ok
    assert broken.implementation_max_abs_error == pytest.approx(0.1 * broken.peak, rel=1e-9)  # 10 % of max g
    shape = snn.surrogate  # the shape alone still agrees with itself: that comparison is not a check of the node
    assert GradientVerifier().verify_surrogate_gradient(shape.spike, shape.derivative, n_points=1000).passed
