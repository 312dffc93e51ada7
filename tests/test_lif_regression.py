"""LIF dynamics against values computed by hand, for both BPTT implementations.

Equations (evoexp.functional.lif): s[t] = f(mem[t] - theta); syn[t+1] = alpha*syn[t] + I[t] (+ V s[t]);
mem[t+1] = beta*mem[t] + syn[t] - theta*s[t] (subtract) or (beta*mem[t] + syn[t])*(1 - s[t]) (zero); all states
start at 0. Inputs are dyadic rationals so every intermediate value is exact in binary floating point.
"""

from __future__ import annotations

import pytest
import torch

from evoexp.functional import LIFParameters, leaky_integrate, lif_sequence, readout_logits
from evoexp.surrogate import get_surrogate

BPTT = ["custom", "autograd"]
DTYPES = [torch.float64, torch.float32]


def run(current: list[list[float]], params: LIFParameters, *, bptt: str, dtype: torch.dtype, **kwargs) -> torch.Tensor:
    """Run a single-sample layer on current[t][neuron]; returns spikes [T, H]."""
    x = torch.tensor(current, dtype=dtype).unsqueeze(0).requires_grad_()
    surrogate = kwargs.pop("surrogate", get_surrogate("fast_sigmoid"))
    return lif_sequence(x, params, surrogate, bptt=bptt, **kwargs)[0].detach()


@pytest.mark.parametrize("bptt", BPTT)
@pytest.mark.parametrize("dtype", DTYPES)
def test_simple_lif_subtract_reset(bptt: str, dtype: torch.dtype) -> None:
    # alpha=0, beta=0.5, theta=1, I=1.5 every step: syn[t] = I[t-1]
    # mem: 0, 0, 1.5 (s), 0.75+1.5-1=1.25 (s), 1.125 (s), 1.0625 (s), 1.03125 (s)
    params = LIFParameters(alpha=0.0, beta=0.5, threshold=1.0, reset="subtract")
    spikes = run([[1.5]] * 7, params, bptt=bptt, dtype=dtype)
    assert spikes[:, 0].tolist() == [0, 0, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("bptt", BPTT)
@pytest.mark.parametrize("dtype", DTYPES)
def test_simple_lif_zero_reset(bptt: str, dtype: torch.dtype) -> None:
    # mem: 0, 0, 1.5 (s), (0.75+1.5)*0=0, 1.5 (s), 0, 1.5 (s)
    params = LIFParameters(alpha=0.0, beta=0.5, threshold=1.0, reset="zero")
    spikes = run([[1.5]] * 7, params, bptt=bptt, dtype=dtype)
    assert spikes[:, 0].tolist() == [0, 0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("bptt", BPTT)
def test_current_based_vs_simple(bptt: str) -> None:
    current = [[1.25], [0.75], [0.0], [0.0], [0.0], [0.0]]
    # alpha=0.5: syn = 0, 1.25, 1.375, 0.6875, 0.34375; mem: 0, 0, 1.25 (s), 0.625+1.375-1 = 1.0 (no spike:
    # strict >), 0.5+0.6875 = 1.1875 (s), 0.59375+0.34375-1 = -0.0625
    current_based = LIFParameters(alpha=0.5, beta=0.5, threshold=1.0)
    assert run(current, current_based, bptt=bptt, dtype=torch.float64)[:, 0].tolist() == [0, 0, 1, 0, 1, 0]
    # alpha=0: syn = 0, 1.25, 0.75, 0; mem: 0, 0, 1.25 (s), 0.625+0.75-1 = 0.375, 0.1875, 0.09375
    simple = LIFParameters(alpha=0.0, beta=0.5, threshold=1.0)
    assert run(current, simple, bptt=bptt, dtype=torch.float64)[:, 0].tolist() == [0, 0, 1, 0, 0, 0]


@pytest.mark.parametrize("bptt", BPTT)
def test_recurrent_excitation(bptt: str) -> None:
    # neuron 0 fires at t=2 (mem[2] = 1.5); V[1, 0] = 1.5 sends it to syn_1[3], so mem_1[4] = 1.5 and neuron 1
    # fires at t=4; neuron 0: mem[3] = 0.75 - 1 = -0.25, then decays.
    params = LIFParameters(alpha=0.0, beta=0.5, threshold=1.0)
    weight = torch.tensor([[0.0, 0.0], [1.5, 0.0]], dtype=torch.float64, requires_grad=True)
    current = [[1.5, 0.0]] + [[0.0, 0.0]] * 5
    spikes = run(current, params, bptt=bptt, dtype=torch.float64, recurrent_weight=weight)
    assert spikes.T.tolist() == [[0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0]]


# Smooth mode with the rectangular surrogate (slope 0.25): s = P(mem - 1) = 0.25*mem + 0.25 while mem in (-1, 3),
# so the smooth "spikes" reveal the membrane and the reset feedback exactly. Input I = 1 every step.
SMOOTH_CASES = {
    # s0 = 0.25; mem1 = -0.25 -> s1 = 0.1875; mem2 = -0.125 + 1 - 0.1875 = 0.6875 -> s2 = 0.421875;
    # mem3 = 0.34375 + 1 - 0.421875 = 0.921875 -> s3 = 0.48046875
    "subtract": (dict(alpha=0.0, reset="subtract"), False, [0.25, 0.1875, 0.421875, 0.48046875]),
    # mem1 = 0 -> s1 = 0.25; mem2 = (0 + 1)(1 - 0.25) = 0.75 -> s2 = 0.4375;
    # mem3 = (0.375 + 1)(1 - 0.4375) = 0.7734375 -> s3 = 0.443359375
    "zero": (dict(alpha=0.0, reset="zero"), False, [0.25, 0.25, 0.4375, 0.443359375]),
    # syn = 0, 1, 1.5, 1.75; mem1 = -0.25, mem2 = -0.125 + 1 - 0.1875 = 0.6875 -> s2 = 0.421875;
    # mem3 = 0.34375 + 1.5 - 0.421875 = 1.421875 -> s3 = 0.60546875
    "current_based": (dict(alpha=0.5, reset="subtract"), False, [0.25, 0.1875, 0.421875, 0.60546875]),
    # V = 0.5: syn1 = 1 + 0.125 = 1.125; mem2 = -0.125 + 1.125 - 0.1875 = 0.8125 -> s2 = 0.453125;
    # syn2 = 1 + 0.09375 = 1.09375; mem3 = 0.40625 + 1.09375 - 0.453125 = 1.046875 -> s3 = 0.51171875
    "recurrent": (dict(alpha=0.0, reset="subtract"), True, [0.25, 0.1875, 0.453125, 0.51171875]),
}


@pytest.mark.parametrize("bptt", BPTT)
@pytest.mark.parametrize("case", sorted(SMOOTH_CASES))
def test_smooth_mode_values(case: str, bptt: str) -> None:
    fields, recurrent, expected = SMOOTH_CASES[case]
    params = LIFParameters(beta=0.5, threshold=1.0, **fields)
    weight = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True) if recurrent else None
    spikes = run(
        [[1.0]] * 4,
        params,
        bptt=bptt,
        dtype=torch.float64,
        surrogate=get_surrogate("rectangular", slope=0.25),
        smooth=True,
        recurrent_weight=weight,
    )
    assert spikes[:, 0].tolist() == expected


def test_detach_reset_changes_only_the_gradient() -> None:
    # same forward; the gradient differs because the reset path is cut
    surrogate = get_surrogate("rectangular", slope=0.25)
    grads, outputs = [], []
    for detach in (False, True):
        x = torch.ones(1, 4, 1, dtype=torch.float64, requires_grad=True)
        params = LIFParameters(alpha=0.0, beta=0.5, threshold=1.0, detach_reset=detach)
        s = lif_sequence(x, params, surrogate, smooth=True)
        outputs.append(s.detach())
        grads.append(torch.autograd.grad(s[0, 3, 0], x)[0][0, :, 0])
    assert torch.equal(outputs[0], outputs[1])
    # s = 0.25*mem + 0.25; mem3 = beta*mem2 + I1 - s2, mem2 = beta*mem1 + I0 - s1, mem1 = -s0 (no input)
    # detached: d mem3/d I1 = 1, d mem3/d I0 = beta = 0.5 -> ds3/dI = [0.125, 0.25, 0, 0]
    # attached: d mem2/d I0 = 1, ds2/d I0 = 0.25; d mem3/d I0 = 0.5*1 - 0.25 = 0.25 -> ds3/dI0 = 0.0625;
    #           d mem3/d I1 = 1 -> 0.25
    assert grads[1].tolist() == [0.125, 0.25, 0.0, 0.0]
    assert grads[0].tolist() == [0.0625, 0.25, 0.0, 0.0]


@pytest.mark.parametrize("bptt", BPTT)
def test_replayed_reset_is_the_detached_reset_held_constant(bptt: str) -> None:
    # Same layer as above, reset replayed at the spikes s = [0.25, 0.1875, 0.421875, 0.48046875]: the forward is
    # unchanged, the gradient is the detached one, and a different replayed r changes the membrane by -theta * dr.
    surrogate = get_surrogate("rectangular", slope=0.25)
    params = LIFParameters(alpha=0.0, beta=0.5, threshold=1.0, detach_reset=True)
    held = torch.tensor([0.25, 0.1875, 0.421875, 0.48046875], dtype=torch.float64).view(1, 4, 1)
    x = torch.ones(1, 4, 1, dtype=torch.float64, requires_grad=True)
    s = lif_sequence(x, params, surrogate, smooth=True, bptt=bptt, replay_reset=held)
    assert s.flatten().tolist() == held.flatten().tolist()
    assert torch.autograd.grad(s[0, 3, 0], x)[0].flatten().tolist() == [0.125, 0.25, 0.0, 0.0]
    # r = 0 everywhere: mem1 = 0, mem2 = 1, mem3 = 0.5 + 1 = 1.5 -> s = 0.25, 0.25, 0.5, 0.625
    zero = lif_sequence(x.detach(), params, surrogate, smooth=True, bptt=bptt, replay_reset=torch.zeros_like(held))
    assert zero.flatten().tolist() == [0.25, 0.25, 0.5, 0.625]


def test_replayed_reset_needs_a_detached_reset_of_the_spikes_shape() -> None:
    surrogate, x = get_surrogate("fast_sigmoid"), torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match=r"replay_reset needs params\.detach_reset=True"):
        lif_sequence(x, LIFParameters(), surrogate, replay_reset=torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match=r"replay_reset must have the spikes' shape \(2, 5, 3\)"):
        lif_sequence(x, LIFParameters(detach_reset=True), surrogate, replay_reset=torch.zeros(2, 4, 3))


def test_leaky_integrate_and_readout_modes() -> None:
    z = torch.tensor([2.0, 0.0, 0.5], dtype=torch.float64).view(1, 3, 1)
    traces = leaky_integrate(z, 0.5)  # o = 2, 1, 1
    assert traces.flatten().tolist() == [2.0, 1.0, 1.0]
    assert readout_logits(traces, "max").item() == 2.0
    assert readout_logits(traces, "mean").item() == pytest.approx(4.0 / 3.0, rel=1e-15)
    assert readout_logits(traces, "last").item() == 1.0
    assert leaky_integrate(z, 0.0).flatten().tolist() == [2.0, 0.0, 0.5]  # beta = 0: no memory
