"""SNN/ANN modules and the hand-written BPTT: gradients against the autograd reference, gradcheck, vmap."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from torch.func import functional_call, vmap
from torch.nn import functional as F

import evoexp.functional.lif as lif_module
from evoexp.functional import LIFParameters, decay_from_time_constant, lif_sequence, linear_lif_sequence
from evoexp.models import ANN, SNN, ann_twin, is_snn, smooth_mode
from evoexp.surrogate import get_surrogate

RESETS = ["subtract", "zero"]


def spikes_input(batch: int = 3, steps: int = 12, channels: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, steps, channels, generator=g) < 0.3).double()


def small_snn(**kwargs) -> SNN:
    options = dict(surrogate=get_surrogate("fast_sigmoid", slope=5.0), weight_scale=3.0, seed=1)
    options.update(kwargs)
    return SNN(4, [6, 5], 3, **options).double()


# --- custom BPTT node vs plain autograd loop -------------------------------------------------------------------


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("block_elements", [None, 15, 45])  # default: one block; 1 and 3 steps per block
def test_custom_backward_matches_reference(
    reset: str,
    detach_reset: bool,
    alpha: float,
    recurrent: bool,
    smooth: bool,
    block_elements: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if block_elements is not None:
        monkeypatch.setattr(lif_module, "_BLOCK_ELEMENTS", block_elements)
    params = LIFParameters(alpha=alpha, beta=0.85, threshold=0.5, reset=reset, detach_reset=detach_reset)
    surrogate = get_surrogate("fast_sigmoid", slope=4.0)
    current = (torch.randn(3, 10, 5, dtype=torch.float64) * 0.7).requires_grad_()
    weight = (torch.randn(5, 5, dtype=torch.float64) * 0.4).requires_grad_() if recurrent else None
    probe = torch.randn(3, 10, 5, dtype=torch.float64)
    inputs = [current] if weight is None else [current, weight]
    results = {}
    for bptt in ("custom", "autograd"):
        spikes = lif_sequence(current, params, surrogate, recurrent_weight=weight, smooth=smooth, bptt=bptt)
        results[bptt] = (spikes, torch.autograd.grad((spikes * probe).sum(), inputs))
    (s_fast, g_fast), (s_ref, g_ref) = results["custom"], results["autograd"]
    assert s_ref.sum() > 0  # the configuration really spikes
    torch.testing.assert_close(s_fast, s_ref, rtol=0, atol=1e-14)
    for a, b in zip(g_fast, g_ref):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


LAYOUTS = ["batch_major", "batch_major_per_step_gemm", "time_major"]


def layer_input(layout: str, steps: int, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    """A ``[3, steps, 4]`` float64 input stored as a model would see it (data batch-major, deeper layers time-major)."""
    g = torch.Generator().manual_seed(2)
    if layout == "batch_major_per_step_gemm":  # the time-major current of a large layer, at a tiny size
        monkeypatch.setattr(lif_module, "_STEP_GEMM_MACS", 0)
    if layout == "time_major":
        return torch.randn(steps, 3, 4, generator=g, dtype=torch.float64).transpose(0, 1)
    return torch.randn(3, steps, 4, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("smooth", [False, True])
def test_linear_lif_node_matches_reference(
    layout: str,
    reset: str,
    detach_reset: bool,
    alpha: float,
    recurrent: bool,
    smooth: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fused linear + LIF node (membrane and dL/dI in the current's memory) against the autograd composition."""
    params = LIFParameters(alpha=alpha, beta=0.85, threshold=0.5, reset=reset, detach_reset=detach_reset)
    surrogate = get_surrogate("fast_sigmoid", slope=4.0, scale=0.8)
    x = layer_input(layout, 10, monkeypatch).requires_grad_()
    g = torch.Generator().manual_seed(3)
    weight = (torch.randn(5, 4, generator=g, dtype=torch.float64) * 0.8).requires_grad_()
    bias = (torch.randn(5, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    rec = (torch.randn(5, 5, generator=g, dtype=torch.float64) * 0.4).requires_grad_() if recurrent else None
    probe = torch.randn(3, 10, 5, generator=g, dtype=torch.float64)
    inputs = [x, weight, bias] + ([rec] if rec is not None else [])
    x_before = x.detach().clone()
    results = {}
    for bptt in ("custom", "autograd"):
        spikes = linear_lif_sequence(x, weight, bias, params, surrogate, recurrent_weight=rec, smooth=smooth, bptt=bptt)
        spikes_before = spikes.detach().clone()
        grads = torch.autograd.grad((spikes * probe).sum(), inputs)
        torch.testing.assert_close(spikes, spikes_before, rtol=0, atol=0)  # the backward left the output alone
        results[bptt] = (spikes, grads)
    torch.testing.assert_close(x.detach(), x_before, rtol=0, atol=0)  # the caller's input is never written
    (s_fast, g_fast), (s_ref, g_ref) = results["custom"], results["autograd"]
    assert s_ref.sum() > 0
    torch.testing.assert_close(s_fast, s_ref, rtol=0, atol=1e-14)
    for name, a, b in zip(["x", "weight", "bias", "recurrent_weight"], g_fast, g_ref):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13, msg=name)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("steps", [1, 2, 3, 7])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_lif_node_short_sequences_and_no_bias(
    layout: str, steps: int, bias: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mem[0] and mem[1] live outside the current's memory: sequences of one to three steps, with and without bias."""
    params = LIFParameters(alpha=0.5, beta=0.9, threshold=0.2)
    surrogate = get_surrogate("sigmoid", slope=3.0)
    x = layer_input(layout, steps, monkeypatch).requires_grad_()
    weight = torch.full((2, 4), 0.7, dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.4, -0.1], dtype=torch.float64, requires_grad=True) if bias else None
    inputs = [x, weight] + ([b] if b is not None else [])
    out = {}
    for bptt in ("custom", "autograd"):
        spikes = linear_lif_sequence(x, weight, b, params, surrogate, smooth=True, bptt=bptt)
        if spikes.requires_grad:
            grads = torch.autograd.grad(spikes.pow(2).sum(), inputs, allow_unused=True, materialize_grads=True)
        else:  # fewer than three steps: I[t] reaches the spikes two steps later, so nothing depends on the inputs
            grads = tuple(torch.zeros_like(t) for t in inputs)
        out[bptt] = (spikes, grads)
    torch.testing.assert_close(out["custom"][0], out["autograd"][0], rtol=0, atol=1e-15)
    for a, c in zip(out["custom"][1], out["autograd"][1]):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-14)
    assert bool(out["custom"][1][1].abs().max() > 0) is (steps > 2)
    with torch.no_grad():
        no_grad = linear_lif_sequence(x, weight, b, params, surrogate, smooth=True)
    torch.testing.assert_close(no_grad, out["autograd"][0], rtol=0, atol=1e-15)


def test_linear_lif_node_bad_inputs() -> None:
    params, surrogate = LIFParameters(), get_surrogate("fast_sigmoid")
    x, weight = torch.zeros(2, 5, 3), torch.zeros(4, 3)
    cases = [
        (dict(x=torch.zeros(2, 0, 3)), "x must have shape"),
        (dict(x=torch.zeros(2, 5, 3, dtype=torch.int64)), "x must be a floating-point"),
        (dict(bias=torch.zeros(3)), r"bias must have shape \(4,\)"),
        (dict(recurrent_weight=torch.zeros(3, 3)), r"recurrent_weight must have shape \(4, 4\)"),
        (dict(bptt="jit"), "bptt must be one of"),
    ]
    for override, match in cases:
        args = dict(x=x, weight=weight, bias=None, recurrent_weight=None, bptt="custom") | override
        with pytest.raises(ValueError, match=match):
            linear_lif_sequence(
                args["x"],
                args["weight"],
                args["bias"],
                params,
                surrogate,
                recurrent_weight=args["recurrent_weight"],
                bptt=args["bptt"],
            )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("recurrent", [False, True])
def test_backward_once_reuses_saved_memory_bit_identically(
    layout: str, alpha: float, recurrent: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default the backward writes a fresh buffer and can be repeated (retain_graph); inside backward_once it
    writes dL/dI over the saved membrane, gives bit-identical gradients, and a second backward raises."""
    params = LIFParameters(alpha=alpha, beta=0.9, threshold=0.5)
    surrogate = get_surrogate("fast_sigmoid", slope=5.0)
    g = torch.Generator().manual_seed(4)
    x = layer_input(layout, 30, monkeypatch)
    x = torch.cat([x, x.flip(1) * 0.5], 0)  # batch 6, same layout
    if layout == "time_major":
        x = x.transpose(0, 1).contiguous().transpose(0, 1)
    weight = torch.randn(9, 4, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(9, generator=g, dtype=torch.float64).requires_grad_()
    rec = (0.3 * torch.randn(9, 9, generator=g, dtype=torch.float64)).requires_grad_() if recurrent else None
    inputs = [weight, bias] + ([rec] if rec is not None else [])

    def build() -> torch.Tensor:
        return linear_lif_sequence(x, weight, bias, params, surrogate, recurrent_weight=rec).pow(2).sum()

    loss = build()
    assert loss.grad_fn.next_functions[0][0].next_functions[0][0].overwrite is False
    fresh = [torch.autograd.grad(loss, inputs, retain_graph=True) for _ in range(3)]
    with lif_module.backward_once():
        once = build()
    assert once.grad_fn.next_functions[0][0].next_functions[0][0].overwrite is True
    fresh.append(torch.autograd.grad(once, inputs, retain_graph=True))
    assert fresh[0][0].abs().max() > 0
    for later in fresh[1:]:
        for a, b in zip(later, fresh[0]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(once, inputs)


@pytest.mark.parametrize("recurrent", [False, True])
def test_model_gradients_match_reference(recurrent: bool) -> None:
    """Two hidden layers (the second consumes time-major spikes), readout, loss: all parameter gradients."""
    x, y = spikes_input(), torch.tensor([0, 1, 2])
    grads = {}
    for bptt in ("custom", "autograd"):
        model = small_snn(recurrent=recurrent, bptt=bptt)
        loss = F.cross_entropy(model(x), y)
        names, params = zip(*model.named_parameters())
        grads[bptt] = dict(zip(names, torch.autograd.grad(loss, params)))
    assert grads["custom"].keys() == grads["autograd"].keys()
    for name, g in grads["custom"].items():
        torch.testing.assert_close(g, grads["autograd"][name], rtol=1e-10, atol=1e-13, msg=name)
    assert any(g.abs().max() > 0 for name, g in grads["custom"].items() if name.startswith("hidden.0"))


def test_float32_custom_matches_reference() -> None:
    params = LIFParameters(alpha=0.5, beta=0.9, threshold=1.0)
    surrogate = get_surrogate("fast_sigmoid")
    current = (torch.randn(2, 20, 8) * 2).requires_grad_()
    out = {}
    for bptt in ("custom", "autograd"):
        s = lif_sequence(current, params, surrogate, bptt=bptt)
        out[bptt] = (s, torch.autograd.grad(s.sum(), current)[0])
    assert out["custom"][0].dtype == torch.float32
    torch.testing.assert_close(out["custom"][0], out["autograd"][0])
    torch.testing.assert_close(out["custom"][1], out["autograd"][1], rtol=1e-5, atol=1e-6)


def test_no_grad_forward_matches() -> None:
    model, x = small_snn(recurrent=True), spikes_input()
    with torch.no_grad():
        fast = model(x)
    torch.testing.assert_close(fast, model(x).detach(), rtol=0, atol=0)


# --- smooth mode: true gradients, gradcheck -------------------------------------------------------------------


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_gradcheck_smooth_snn_loss(reset: str, recurrent: bool, detach_reset: bool) -> None:
    """In smooth mode the surrogate gradient is the true gradient of the loss, with a detached reset held at its
    forward value (replayed); the hand-written gradient also equals the autograd reference's."""
    model = SNN(
        3,
        [4],
        2,
        surrogate=get_surrogate("sigmoid", slope=2.0),
        alpha=0.6,
        beta=0.8,
        threshold=0.5,
        reset=reset,
        detach_reset=detach_reset,
        recurrent=recurrent,
        readout="mean",
        weight_scale=2.0,
        seed=3,
    ).double()
    model.smooth = True
    x, y = spikes_input(batch=2, steps=6, channels=3), torch.tensor([0, 1])
    custom = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    reference = copy.deepcopy(model)
    for layer in reference.hidden:
        layer.bptt = "autograd"
    expected = torch.autograd.grad(F.cross_entropy(reference(x), y), list(reference.parameters()))
    for a, b in zip(custom, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    if detach_reset:  # the function whose gradient the detached gradient is: the reset held constant
        for layer, spikes in zip(model.hidden, model.last_spikes):
            layer.replay_reset = spikes.detach()
    names, values = zip(*[(n, p.detach().clone()) for n, p in model.named_parameters()])

    def loss(*params: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, dict(zip(names, params)), (x,)), y)

    inputs = tuple(v.requires_grad_() for v in values)
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)
    if detach_reset:  # ... and with the reset held, the node's gradient at the same point is the detached one
        held = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        for a, b in zip(held, custom):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_gradcheck_lif_sequence_smooth() -> None:
    params = LIFParameters(alpha=0.5, beta=0.7, threshold=0.3, reset="zero")
    surrogate = get_surrogate("fast_sigmoid", slope=3.0)
    current = torch.randn(2, 7, 3, dtype=torch.float64, requires_grad=True)
    weight = (0.5 * torch.randn(3, 3, dtype=torch.float64)).requires_grad_()

    def fn(c: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return lif_sequence(c, params, surrogate, recurrent_weight=w, smooth=True)

    assert torch.autograd.gradcheck(fn, (current, weight), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_smooth_mode_context_manager() -> None:
    model, x = small_snn(), spikes_input()
    spiking = model(x)
    with smooth_mode(model) as same:
        assert same is model and model.smooth
        smooth_out = model(x)
        smooth_spikes = model.last_spikes[0]
    assert not model.smooth
    torch.testing.assert_close(model(x), spiking, rtol=0, atol=0)
    assert not torch.allclose(smooth_out, spiking)
    assert ((smooth_spikes > 0) & (smooth_spikes < 1)).any()  # primitive values, not 0/1
    with pytest.raises(ValueError, match="no LIF layers"), smooth_mode(ANN(3, [4], 2)):
        pass


# --- torch.func compatibility (the verifier perturbs parameters under vmap) -----------------------------------


@pytest.mark.parametrize("recurrent", [False, True])
def test_vmap_over_parameter_sets_equals_loop(recurrent: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, y = small_snn(recurrent=recurrent), spikes_input(), torch.tensor([0, 1, 2])
    base = {n: p.detach() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(5)
    batched = {n: p + 0.1 * torch.randn((4, *p.shape), generator=g, dtype=p.dtype) for n, p in base.items()}

    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    model.record_spikes = False  # batched tensors must not outlive the transform
    with monkeypatch.context() as patch:  # vmap runs the training forward (the node's vmap rule), not the reference
        patch.setattr(lif_module, "lif_sequence_reference", _must_not_run)
        vmapped = vmap(loss)(batched)
    assert model.last_spikes == []
    model.record_spikes = True
    looped = torch.stack([loss({n: v[i] for n, v in batched.items()}) for i in range(4)])
    torch.testing.assert_close(vmapped, looped, rtol=1e-12, atol=1e-12)
    assert len(model.last_spikes) == 2


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("the autograd reference ran instead of the hand-written node")


@pytest.mark.parametrize("reset", RESETS)
def test_vmap_over_held_resets_and_nested_vmap(reset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vmap rule folds batched weights, biases, recurrent weights and a held reset; nested vmap works too."""
    model = small_snn(recurrent=True, detach_reset=True, reset=reset)
    x, y = spikes_input(), torch.tensor([0, 1, 2])
    with torch.no_grad():
        model(x)
    for layer, spikes in zip(model.hidden, model.last_spikes):
        layer.replay_reset = spikes.detach()
    model.record_spikes = False
    base = {n: p.detach() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(6)
    nested = {n: p + 0.1 * torch.randn((2, 3, *p.shape), generator=g, dtype=p.dtype) for n, p in base.items()}

    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    monkeypatch.setattr(lif_module, "lif_sequence_reference", _must_not_run)
    with torch.no_grad():
        batched = vmap(vmap(loss))(nested)
        looped = torch.stack(
            [torch.stack([loss({n: v[i, j] for n, v in nested.items()}) for j in range(3)]) for i in range(2)]
        )
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=1e-12)


def test_nested_vmap_batching_different_parameters_per_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights batched only by the outer vmap, biases only by the inner one: the per-row bias folds twice."""
    model = small_snn(recurrent=True)
    model.record_spikes = False
    x, y = spikes_input(), torch.tensor([0, 1, 2])
    g = torch.Generator().manual_seed(7)
    params = {
        n: p.detach() + 0.1 * torch.randn(((2,) if p.dim() == 2 else (3,)) + p.shape, generator=g, dtype=p.dtype)
        for n, p in model.named_parameters()
    }
    outer = {n: 0 if p.dim() == 3 else None for n, p in params.items()}
    inner = {n: None if p.dim() == 3 else 0 for n, p in params.items()}

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    monkeypatch.setattr(lif_module, "lif_sequence_reference", _must_not_run)
    with torch.no_grad():
        batched = vmap(vmap(loss, in_dims=(inner,)), in_dims=(outer,))(params)
        looped = torch.stack(
            [
                torch.stack([loss({n: v[i] if v.dim() == 3 else v[j] for n, v in params.items()}) for j in range(3)])
                for i in range(2)
            ]
        )
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=1e-12)


def test_torch_func_grad_runs_custom_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.func.grad differentiates the hand-written node; its result equals the autograd reference's."""
    model, x, y = small_snn(recurrent=True), spikes_input(), torch.tensor([0, 1, 2])
    reference = small_snn(recurrent=True, bptt="autograd")
    params = {n: p.detach() for n, p in model.named_parameters()}
    with monkeypatch.context() as patch:
        patch.setattr(lif_module, "lif_sequence_reference", _must_not_run)
        func_grads = torch.func.grad(lambda p: F.cross_entropy(functional_call(model, p, (x,)), y))(params)
    loss = F.cross_entropy(reference(x), y)
    for name, g in zip(params, torch.autograd.grad(loss, list(reference.parameters()))):
        torch.testing.assert_close(func_grads[name], g, rtol=1e-10, atol=1e-13, msg=name)


# --- module behaviour -----------------------------------------------------------------------------------------


def test_parameter_names_and_shapes() -> None:
    model = SNN(4, [6, 5], 3, recurrent=True)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes == {
        "hidden.0.weight": (6, 4),
        "hidden.0.bias": (6,),
        "hidden.0.recurrent_weight": (6, 6),
        "hidden.1.weight": (5, 6),
        "hidden.1.bias": (5,),
        "hidden.1.recurrent_weight": (5, 5),
        "readout.weight": (3, 5),
        "readout.bias": (3,),
    }
    assert model.hidden_layers is model.hidden
    assert is_snn(model) and not is_snn(ANN(4, [6], 3))


def test_decays_from_time_constants_and_defaults() -> None:
    model = SNN(2, [3], 2, tau_syn=4.0, tau_mem=8.0, dt=0.5)
    assert model.params.alpha == pytest.approx(math.exp(-0.5 / 4.0), rel=1e-15)
    assert model.params.beta == pytest.approx(math.exp(-0.5 / 8.0), rel=1e-15)
    assert model.readout.beta == model.params.beta
    default = SNN(2, [3], 2)
    assert default.params.alpha == pytest.approx(decay_from_time_constant(5.0), rel=1e-15)
    assert default.params.beta == pytest.approx(decay_from_time_constant(10.0), rel=1e-15)
    assert SNN(2, [3], 2, alpha=0.0).params.alpha == 0.0


@pytest.mark.parametrize(("tau_syn", "tau_mem", "dt"), [(4.0, 8.0, 0.5), (5.0, 10.0, 1.0), (3e-3, 7e-3, 1e-3)])
def test_decays_are_those_of_lif_parameters_from_time_constants(tau_syn: float, tau_mem: float, dt: float) -> None:
    expected = LIFParameters.from_time_constants(tau_syn=tau_syn, tau_mem=tau_mem, dt=dt)
    model = SNN(2, [3], 2, tau_syn=tau_syn, tau_mem=tau_mem, dt=dt)
    assert (model.params.alpha, model.params.beta) == (expected.alpha, expected.beta)  # bit-identical
    assert (expected.alpha, expected.beta) == (math.exp(-dt / tau_syn), math.exp(-dt / tau_mem))
    mixed = SNN(2, [3], 2, alpha=0.25, tau_mem=tau_mem, dt=dt)
    assert (mixed.params.alpha, mixed.params.beta) == (0.25, expected.beta)
    with pytest.raises(ValueError, match=r"^give either beta or tau_mem, not both"):
        SNN(2, [3], 2, beta=0.5, tau_mem=tau_mem)


def test_seeded_init_is_reproducible() -> None:
    a, b = SNN(4, [6], 3, seed=7), SNN(4, [6], 3, seed=7)
    c = SNN(4, [6], 3, seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.hidden[0].weight, c.hidden[0].weight)


def test_dtype_follows_parameters() -> None:
    model = SNN(4, [6], 3).double()
    out = model(spikes_input().float())
    assert out.dtype == torch.float64 and out.shape == (3, 3)
    assert SNN(4, [6], 3)(spikes_input().float()).dtype == torch.float32


@pytest.mark.parametrize("mode", ["max", "mean", "last"])
def test_readout_modes_against_loop(mode: str) -> None:
    model = small_snn(readout=mode, readout_beta=0.6)
    x = spikes_input()
    logits = model(x)
    z = F.linear(model.last_spikes[-1], model.readout.weight, model.readout.bias)
    o, traces = torch.zeros_like(z[:, 0]), []
    for t in range(z.shape[1]):
        o = 0.6 * o + z[:, t]
        traces.append(o)
    traces = torch.stack(traces, 1)
    expected = {"max": traces.max(1).values, "mean": traces.mean(1), "last": traces[:, -1]}[mode]
    torch.testing.assert_close(logits, expected, rtol=1e-12, atol=1e-12)


def test_spike_counts_and_firing_rates() -> None:
    model, x = small_snn(), spikes_input()
    with pytest.raises(RuntimeError, match="no recorded forward"):
        model.firing_rates()
    model(x)
    counts, rates = model.spike_counts(), model.firing_rates()
    assert list(counts) == ["hidden.0", "hidden.1"] == list(rates)
    for name, spikes in zip(counts, model.last_spikes):
        assert counts[name].shape == (spikes.shape[2],)
        assert counts[name].sum().item() == spikes.sum().item()
        assert rates[name] == pytest.approx(spikes.sum().item() / spikes.numel(), rel=1e-12)
        assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert 0 < rates["hidden.0"] < 1


def test_deepcopy_and_pickle_after_forward() -> None:
    model = small_snn()
    model(spikes_input())  # records graph-attached spikes
    clone = copy.deepcopy(model)
    restored = pickle.loads(pickle.dumps(model))
    assert clone.last_spikes == [] and restored.last_spikes == [] and model.last_spikes
    x = spikes_input(seed=1)
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


def test_surrogate_setter_applies_to_all_layers() -> None:
    model = small_snn()
    model.surrogate = "atan"
    assert all(layer.surrogate == get_surrogate("atan") for layer in model.hidden)
    assert model.surrogate == get_surrogate("atan")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(alpha=0.5, tau_syn=3.0), "either alpha or tau_syn"),
        (dict(beta=1.5), "beta"),
        (dict(alpha=-0.1), "alpha"),
        (dict(threshold=0.0), "threshold"),
        (dict(tau_mem=-1.0), "tau"),
        (dict(dt=0.0), "dt"),
        (dict(reset="hard"), "reset"),
        (dict(readout="sum"), "readout"),
        (dict(readout_beta=2.0), "readout_beta"),
        (dict(bptt="jit"), "bptt"),
        (dict(weight_scale=0.0), "weight_scale"),
        (dict(surrogate=3), "surrogate"),
        (dict(surrogate="no_such_shape"), "unknown surrogate"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SNN(4, [6], 3, **kwargs)


def test_bad_sizes_and_inputs() -> None:
    with pytest.raises(ValueError, match="hidden_sizes"):
        SNN(4, [], 3)
    with pytest.raises(ValueError, match="input_size"):
        SNN(0, [3], 3)
    with pytest.raises(ValueError, match=r"x must have shape \[batch, time, 4\]"):
        SNN(4, [6], 3)(torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="recurrent_weight"):
        lif_sequence(torch.zeros(1, 3, 2), LIFParameters(), get_surrogate("atan"), recurrent_weight=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="time step"):
        lif_sequence(torch.zeros(1, 0, 2), LIFParameters(), get_surrogate("atan"))


def test_ann_and_twin() -> None:
    snn = SNN(20, [16, 8], 5)
    ann = ann_twin(snn, 12, activation="tanh")
    assert ann.hidden_sizes == snn.hidden_sizes and ann.output_size == 5
    assert [tuple(p.shape) for p in ann.parameters()] == [(16, 12), (16,), (8, 16), (8,), (5, 8), (5,)]
    out = ann(torch.randn(7, 12))
    assert out.shape == (7, 5)
    with pytest.raises(ValueError, match="unknown activation"):
        ANN(3, [4], 2, activation="swishy")
    with pytest.raises(ValueError, match=r"x must have shape \[batch, 12\]"):
        ann(torch.randn(7, 3, 12))
