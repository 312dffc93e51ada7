"""Finite-difference gradient verification: correct models pass, real backward bugs fail naming the tensor."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from evoexp.surrogate import get_surrogate
from evoexp.verification.gradient import GradientVerificationResult, GradientVerifier


class _ScaledLinearFn(torch.autograd.Function):
    """Linear map whose weight gradient is multiplied by ``factor`` and optionally has one sign-flipped element."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: Tensor, factor: float, flip: tuple[int, int] | None) -> Tensor:
        return x @ weight.T

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, weight, factor, flip = inputs
        ctx.save_for_backward(x, weight)
        ctx.factor, ctx.flip = factor, flip

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, Tensor, None, None]:
        x, weight = ctx.saved_tensors
        grad_w = ctx.factor * (grad_out.T @ x)
        if ctx.flip is not None:
            grad_w = grad_w.clone()
            grad_w[ctx.flip] = -grad_w[ctx.flip]
        return grad_out @ weight, grad_w, None, None


class _OldStyleScaledFn(torch.autograd.Function):
    """Same bug (factor 1.01) written in the old ctx-in-forward style: vmap cannot batch it."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return x @ weight.T

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, Tensor]:
        x, weight = ctx.saved_tensors
        return grad_out @ weight, 1.01 * (grad_out.T @ x)


class _BuggyMLP(nn.Module):
    def __init__(self, *, factor: float = 1.0, flip: tuple[int, int] | None = None, old_style: bool = False) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.hidden = nn.Parameter(torch.randn(12, 6, generator=gen, dtype=torch.float64) / 6**0.5)
        self.out = nn.Linear(12, 3, dtype=torch.float64)
        self.factor, self.flip, self.old_style = factor, flip, old_style

    def forward(self, x: Tensor) -> Tensor:
        if self.old_style:
            h = _OldStyleScaledFn.apply(x, self.hidden)
        else:
            h = _ScaledLinearFn.apply(x, self.hidden, self.factor, self.flip)
        return self.out(torch.tanh(h))


class _ResetNoGrad(torch.autograd.Function):
    """Identity forward whose backward drops the gradient (a hand-written backward that forgets the reset)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tensor:
        return torch.zeros_like(grad_out)


class _TinySNN(nn.Module):
    """Hand-written LIF network (current-based, reset by subtraction), in smooth or spiking mode."""

    def __init__(self, *, recurrent: bool = False, smooth: bool = True, buggy_reset: bool = False) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(2)
        self.w_in = nn.Parameter(torch.randn(8, 5, generator=gen, dtype=torch.float64))
        self.w_rec = nn.Parameter(0.3 * torch.randn(8, 8, generator=gen, dtype=torch.float64)) if recurrent else None
        self.w_out = nn.Parameter(torch.randn(3, 8, generator=gen, dtype=torch.float64) / 8**0.5)
        self.surrogate = get_surrogate("fast_sigmoid", slope=5.0)
        self.smooth, self.buggy_reset = smooth, buggy_reset

    def forward(self, x: Tensor) -> Tensor:
        batch, steps, _ = x.shape
        syn = mem = s = x.new_zeros(batch, 8)
        out = x.new_zeros(batch, 3)
        outs = []
        for t in range(steps):
            current = x[:, t] @ self.w_in.T
            if self.w_rec is not None:
                current = current + s @ self.w_rec.T
            syn = 0.8 * syn + current
            reset = _ResetNoGrad.apply(s) if self.buggy_reset else s
            mem = 0.9 * mem + syn - reset
            s = self.surrogate.smooth(mem - 1.0) if self.smooth else self.surrogate.spike(mem - 1.0)
            out = 0.9 * out + s @ self.w_out.T
            outs.append(out)
        return torch.stack(outs, 1).mean(1)


@pytest.fixture
def mlp_data() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(10, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (10,), generator=gen)


@pytest.fixture
def spike_data() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(4)
    return (torch.rand(4, 12, 5, generator=gen) < 0.4).double(), torch.randint(0, 3, (4,), generator=gen)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_correct_mlp_passes(mode: str, mlp_data: tuple[Tensor, Tensor]) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = GradientVerifier().verify_finite_difference(model, *mlp_data, F.cross_entropy, mode=mode)
    assert result.passed is True, result.message
    assert result.max_abs_error < 1e-8
    assert set(result.per_tensor) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert result.deterministic and result.batched
    # float32 user model: verified on a float64 copy, the user's model keeps dtype and values.
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.dtype == "torch.float64" and not result.warnings


def test_exact_mode_counts_every_coordinate(mlp_data: tuple[Tensor, Tensor]) -> None:
    model = _BuggyMLP()
    result = GradientVerifier().verify_finite_difference(model, *mlp_data, F.cross_entropy)
    assert result.passed is True, result.message
    n = sum(p.numel() for p in model.parameters())
    assert result.n_parameters == n
    assert sum(s.n_checked for s in result.per_tensor.values()) == n
    assert result.n_evaluations == 2 * n + 2  # + two forward/backward passes (training-style, fresh buffers)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_factor_1_01_bug_fails_naming_tensor(mode: str, mlp_data: tuple[Tensor, Tensor]) -> None:
    result = GradientVerifier().verify_finite_difference(_BuggyMLP(factor=1.01), *mlp_data, F.cross_entropy, mode=mode)
    assert result.passed is False
    assert result.failing_tensors == ["hidden"]
    assert "'hidden'" in result.message and "numerical" in result.message and "analytical" in result.message
    worst = result.worst
    assert worst is not None and worst.tensor == "hidden" and worst.index is not None
    assert worst.analytical == pytest.approx(1.01 * worst.numerical, rel=1e-6)
    if mode == "fast":
        assert result.exact_pass_tensors == ["hidden"]


def test_sign_flipped_element_is_located(mlp_data: tuple[Tensor, Tensor]) -> None:
    result = GradientVerifier().verify_finite_difference(_BuggyMLP(flip=(4, 2)), *mlp_data, F.cross_entropy)
    assert result.passed is False
    stats = result.per_tensor["hidden"]
    assert stats.n_failed == 1 and stats.worst.index == (4, 2)
    assert stats.worst.analytical == pytest.approx(-stats.worst.numerical, rel=1e-6)
    assert "'hidden' index (4, 2)" in result.message


def test_fast_mode_exact_pass_finds_flipped_element(mlp_data: tuple[Tensor, Tensor]) -> None:
    result = GradientVerifier().verify_finite_difference(
        _BuggyMLP(flip=(4, 2)), *mlp_data, F.cross_entropy, mode="fast", n_directions=3
    )
    assert result.passed is False and result.worst is not None
    assert (result.worst.tensor, result.worst.index) == ("hidden", (4, 2))


def test_vmap_failure_falls_back_to_loop(mlp_data: tuple[Tensor, Tensor]) -> None:
    result = GradientVerifier().verify_finite_difference(_BuggyMLP(old_style=True), *mlp_data, F.cross_entropy)
    assert not result.batched
    assert any("sequential loop" in w for w in result.warnings)
    assert result.passed is False and result.failing_tensors == ["hidden"]


@pytest.mark.parametrize("recurrent", [False, True])
def test_smooth_snn_passes(recurrent: bool, spike_data: tuple[Tensor, Tensor]) -> None:
    model = _TinySNN(recurrent=recurrent)
    result = GradientVerifier().verify_finite_difference(model, *spike_data, F.cross_entropy)
    assert result.passed is True, result.message
    assert result.max_abs_error < 1e-7


def test_dropped_reset_gradient_fails(spike_data: tuple[Tensor, Tensor]) -> None:
    result = GradientVerifier().verify_finite_difference(_TinySNN(buggy_reset=True), *spike_data, F.cross_entropy)
    assert result.passed is False
    assert "w_in" in result.failing_tensors
    assert "'w_in'" in result.message


def test_nondeterministic_backward_fails(mlp_data: tuple[Tensor, Tensor]) -> None:
    class Noisy(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Tensor) -> Tensor:
            return x.clone()

        @staticmethod
        def backward(ctx: Any, grad: Tensor) -> Tensor:
            return grad * (1 + 1e-12 * torch.rand_like(grad))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(6, 3, dtype=torch.float64)

        def forward(self, x: Tensor) -> Tensor:
            return Noisy.apply(self.lin(x))

    result = GradientVerifier().verify_finite_difference(Model(), *mlp_data, F.cross_entropy)
    assert not result.deterministic and result.passed is False
    assert result.determinism_max_diff > 0
    assert any("non-deterministic" in w for w in result.warnings)


def test_float32_warns(mlp_data: tuple[Tensor, Tensor]) -> None:
    model = nn.Linear(6, 3)
    x, y = mlp_data
    result = GradientVerifier(dtype=torch.float32).verify_finite_difference(
        model, x, y, F.cross_entropy, eps=1e-2, atol=1e-3, rtol=1e-2
    )
    assert any("float64" in w for w in result.warnings)
    assert result.dtype == "torch.float32"


def test_parameters_subset_and_json(mlp_data: tuple[Tensor, Tensor], tmp_path: Any) -> None:
    model = _BuggyMLP(factor=1.01)
    result = GradientVerifier(chunk_size=7).verify_finite_difference(
        model, *mlp_data, F.cross_entropy, parameters=["out.weight"]
    )
    assert result.passed is True and list(result.per_tensor) == ["out.weight"]
    data = json.loads(result.save_json(tmp_path / "g.json").read_text())
    assert data["check"] == "gradient" and data["passed"] is True
    assert data["per_tensor"]["out.weight"]["shape"] == [3, 12]
    assert result.summary()["gradient/passed"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "slow"}, "mode"),
        ({"eps": 0.0}, "eps"),
        ({"atol": -1.0}, "atol"),
        ({"rtol": float("nan")}, "rtol"),
        ({"n_directions": 0}, "n_directions"),
        ({"parameters": ["nope"]}, "parameters"),
        ({"smooth": True}, "smooth"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str, mlp_data: tuple[Tensor, Tensor]) -> None:
    with pytest.raises(ValueError, match=match):
        GradientVerifier().verify_finite_difference(nn.Linear(6, 3), *mlp_data, F.cross_entropy, **kwargs)


def test_result_type(mlp_data: tuple[Tensor, Tensor]) -> None:
    result = GradientVerifier().verify_finite_difference(nn.Linear(6, 3), *mlp_data, F.cross_entropy, mode="fast")
    assert isinstance(result, GradientVerificationResult)
    assert result.n_evaluations == 2 + 2 * 2


def test_verifier_delegates_surrogate_and_alignment(mlp_data: tuple[Tensor, Tensor]) -> None:
    shape = get_surrogate("sigmoid", slope=3.0)
    verifier = GradientVerifier()
    surrogate = verifier.verify_surrogate_gradient(shape.spike, shape.derivative, primitive=shape.primitive)
    assert surrogate.passed
    alignment = verifier.verify_gradient_alignment(
        nn.Linear(6, 3), *mlp_data, F.cross_entropy, sigmas=(1e-3,), n_directions=3, n_quadrature=4
    )
    assert alignment.dtype == "torch.float64" and alignment.stats().cosine > 0.99


def test_real_snn_smooth_and_spiking_modes(spike_data: tuple[Tensor, Tensor]) -> None:
    models = pytest.importorskip("evoexp.models")
    x, y = spike_data
    snn = models.SNN(5, [6], 3, seed=0, recurrent=True)
    verifier = GradientVerifier()
    smooth = verifier.verify_finite_difference(snn, x, y, F.cross_entropy)
    assert smooth.smooth_mode is True and smooth.passed is True, smooth.message
    assert not snn.smooth
    spiking = verifier.verify_finite_difference(snn, x, y, F.cross_entropy, smooth=False, mode="fast")
    assert spiking.comparison == "surrogate_bias" and spiking.passed is None
    assert "surrogate bias" in spiking.message and "gradient/passed" not in spiking.summary()


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_detached_reset_is_checked_as_trained(
    mode: str, recurrent: bool, reset: str, spike_data: tuple[Tensor, Tensor]
) -> None:
    """The detached gradient itself is verified: the finite differences hold the reset at its unperturbed value."""
    models = pytest.importorskip("evoexp.models")
    x, y = spike_data
    snn = models.SNN(5, [6, 4], 3, seed=0, recurrent=recurrent, reset=reset, detach_reset=True, weight_scale=3.0)
    with torch.no_grad():
        for layer in snn.hidden:
            layer.bias.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(7))
    result = GradientVerifier().verify_finite_difference(snn, x, y, F.cross_entropy, mode=mode, n_directions=3)
    assert result.passed is True, result.message
    assert result.held_resets == ["hidden.0", "hidden.1"] and not result.warnings
    assert "detached reset held in hidden.0, hidden.1" in result.message
    assert all(layer.replay_reset is None and not layer.smooth for layer in snn.hidden)  # the user's model


_SNN_CASES = [
    {"hidden_sizes": [6, 4]},
    {"hidden_sizes": [6, 4], "recurrent": True, "reset": "zero"},
    {"hidden_sizes": [5], "readout": "mean", "detach_reset": True, "alpha": 0.0},
    {"hidden_sizes": [6, 4], "recurrent": True, "detach_reset": True, "reset": "zero", "readout": "mean"},
    {"hidden_sizes": [5], "readout": "last", "bias": False},
]


def _with_biases(snn: nn.Module, seed: int = 5) -> nn.Module:
    """Non-zero biases everywhere (an SNN is initialised with zero biases, which would hide bias bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in snn.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5, generator=generator)
    return snn


@pytest.mark.parametrize("smooth", [True, False])
@pytest.mark.parametrize("case", _SNN_CASES, ids=["ff2", "rec2-zero", "mean-detach", "rec2-zero-detach", "last-nobias"])
def test_structured_snn_path_matches_generic(
    case: dict[str, Any], smooth: bool, spike_data: tuple[Tensor, Tensor]
) -> None:
    """Structure-aware coordinate losses are the generic batched central differences, to rounding.

    Non-zero biases, and detached resets held at their unperturbed values (both paths replay them).
    """
    models = pytest.importorskip("evoexp.models")
    from evoexp.verification._batched import LossProblem
    from evoexp.verification.gradient import central_differences

    options = dict(case)
    hidden = options.pop("hidden_sizes")
    snn = _with_biases(models.SNN(5, hidden, 3, seed=1, weight_scale=3.0, **options))
    structured, generic = (
        LossProblem(snn, *spike_data, F.cross_entropy, dtype=torch.float64, structure_aware=aware)
        for aware in (True, False)
    )
    for problem in (structured, generic):
        problem.copy.set_smooth(smooth)
        held = problem.copy.hold_resets(problem.forward)
        assert held == (["hidden.0", "hidden.1"][: len(hidden)] if case.get("detach_reset") else [])
    for name in structured.params:
        # eps=1e-3 keeps the rounding noise of (L+ - L-)/2eps near 1e-13; both paths take the same steps
        a = central_differences(structured, name, eps=1e-3)
        b = central_differences(generic, name, eps=1e-3)
        assert torch.allclose(a, b, rtol=0.0, atol=1e-10), (name, float((a - b).abs().max()))
    expected = {n for n in structured.params if not n.endswith("recurrent_weight")}
    assert structured.structured_names == expected and not generic.structured_names
    assert structured.warnings == []


def test_structured_snn_state_key_covers_constants_and_in_place_edits(spike_data: tuple[Tensor, Tensor]) -> None:
    """A cached unperturbed state is never reused after the model changed: constants, in-place edits, held resets."""
    import dataclasses

    models = pytest.importorskip("evoexp.models")
    from evoexp.verification._batched import LossProblem
    from evoexp.verification.gradient import central_differences

    snn = _with_biases(models.SNN(5, [6], 3, seed=1, weight_scale=3.0, detach_reset=True))
    structured, generic = (
        LossProblem(snn, *spike_data, F.cross_entropy, dtype=torch.float64, structure_aware=aware)
        for aware in (True, False)
    )
    evaluator = structured.coordinates("readout.weight", eps=1e-3)
    assert evaluator is not None
    edits = [
        lambda m: setattr(m.readout, "beta", 0.5),
        lambda m: setattr(m.readout, "mode", "mean"),
        lambda m: setattr(m.hidden[0], "params", dataclasses.replace(m.hidden[0].params, threshold=0.7)),
        lambda m: torch.no_grad()(m.hidden[0].bias.mul_)(-1.0),  # in place: same storage, new version
        lambda m: setattr(m.hidden[0], "smooth", True),
        lambda m: torch.no_grad()(m)(spike_data[0].double()),  # a forward changes nothing: the key must stay
    ]
    for k, edit in enumerate(edits):
        before = evaluator.state_key()
        for problem in (structured, generic):
            edit(problem.model)
        if k == len(edits) - 1:
            assert evaluator.state_key() == before
            continue
        assert evaluator.state_key() != before, k
        for name in ("hidden.0.weight", "readout.weight"):
            a = central_differences(structured, name, eps=1e-3)
            b = central_differences(generic, name, eps=1e-3)
            assert torch.allclose(a, b, rtol=0.0, atol=1e-10), (k, name)
    before = evaluator.state_key()
    for problem in (structured, generic):
        problem.copy.hold_resets(problem.forward)
    assert evaluator.state_key() != before
    a = central_differences(structured, "hidden.0.weight", eps=1e-3)
    assert torch.allclose(a, central_differences(generic, "hidden.0.weight", eps=1e-3), rtol=0.0, atol=1e-10)
    assert structured.structured_names == {"hidden.0.weight", "readout.weight"} and not structured.warnings


def test_structured_snn_catches_custom_backward_bug(
    spike_data: tuple[Tensor, Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1.01 factor in the hand-written BPTT of an evoexp SNN fails on the structure-aware path."""
    models = pytest.importorskip("evoexp.models")
    lif = pytest.importorskip("evoexp.functional.lif")
    snn = models.SNN(5, [6], 3, seed=0)
    verifier = GradientVerifier()
    _with_biases(snn)
    correct = verifier.verify_finite_difference(snn, *spike_data, F.cross_entropy)
    assert correct.passed is True, correct.message
    assert correct.structured_tensors == ["hidden.0.weight", "hidden.0.bias", "readout.weight", "readout.bias"]
    # two gradient passes; per structured tensor a guard: unperturbed loss, 4 coordinates x 4 steps on both paths
    guard = sum(1 + 2 * 4 * min(4, p.numel()) for p in snn.parameters())
    assert correct.n_evaluations == 2 * correct.n_parameters + 2 + guard
    generic = GradientVerifier(structure_aware=False).verify_finite_difference(snn, *spike_data, F.cross_entropy)
    assert generic.passed is True and generic.structured_tensors == []
    for name, stats in correct.per_tensor.items():
        assert stats.max_abs_error == pytest.approx(generic.per_tensor[name].max_abs_error, abs=1e-8)

    feed_forward = lif._Adjoint.feed_forward
    monkeypatch.setattr(lif._Adjoint, "feed_forward", lambda self: 1.01 * feed_forward(self))
    buggy = verifier.verify_finite_difference(snn, *spike_data, F.cross_entropy)
    assert buggy.passed is False and buggy.failing_tensors == ["hidden.0.weight", "hidden.0.bias"]
    assert buggy.worst is not None and buggy.worst.analytical == pytest.approx(1.01 * buggy.worst.numerical, rel=1e-5)


def test_structured_snn_falls_back_when_not_plain_or_inconsistent(
    spike_data: tuple[Tensor, Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    models = pytest.importorskip("evoexp.models")
    from evoexp.verification._snn_coordinates import SNNCoordinates

    class Scaled(models.SNN):  # a subclass may change forward: the structure is not assumed
        def forward(self, x: Tensor) -> Tensor:
            return 2.0 * super().forward(x)

    verifier = GradientVerifier()
    sub = verifier.verify_finite_difference(Scaled(5, [6], 3, seed=0), *spike_data, F.cross_entropy)
    assert sub.passed is True and sub.structured_tensors == []

    hooked = models.SNN(5, [6], 3, seed=0)
    hooked.readout.register_forward_hook(lambda module, args, out: out + 1.0)
    assert verifier.verify_finite_difference(hooked, *spike_data, F.cross_entropy).structured_tensors == []

    with monkeypatch.context() as patch:
        patch.setattr(SNNCoordinates, "base_loss", lambda self: torch.tensor(123.0, dtype=torch.float64))
        result = verifier.verify_finite_difference(models.SNN(5, [6], 3, seed=0), *spike_data, F.cross_entropy)
    assert result.passed is True and result.structured_tensors == []
    assert any("structure-aware" in w and "unperturbed loss" in w for w in result.warnings)


@pytest.mark.parametrize("target", ["_propagate_column", "_readout_logits"])
def test_structured_snn_guard_catches_a_structural_bug(
    target: str, spike_data: tuple[Tensor, Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong structure-aware evaluation (same unperturbed loss, wrong perturbed ones) is caught by the sampled
    cross-check against the generic path; the verdict then comes from the generic path."""
    models = pytest.importorskip("evoexp.models")
    from evoexp.verification._snn_coordinates import SNNCoordinates

    real = getattr(SNNCoordinates, target)

    def wrong(self: Any, *args: Any) -> Tensor:
        if target == "_propagate_column":  # the hidden spikes' change reaches the next layer 1 % too weakly
            layer, change, j = args
            return real(self, layer, 0.99 * change, j)
        kind, index, delta = args  # readout perturbations 1 % too small
        return real(self, kind, index, 0.99 * delta)

    monkeypatch.setattr(SNNCoordinates, target, wrong)
    snn = _with_biases(models.SNN(5, [6, 4], 3, seed=0, weight_scale=3.0))
    result = GradientVerifier().verify_finite_difference(snn, *spike_data, F.cross_entropy)
    assert result.passed is True, result.message
    first = "hidden.0.weight" if target == "_propagate_column" else "readout.weight"
    assert any(
        f"structure-aware SNN evaluation disagreed with the model's forward ('{first}' index" in w
        for w in result.warnings
    ), result.warnings
    assert first not in result.structured_tensors
