"""CUDA paths: surrogates, the custom BPTT and the verifiers (fast and exact finite differences, the structure-aware
path, held resets, alignment) on a GPU match the CPU. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

import evoexp.functional.lif as lif_module
from evoexp.models import SNN, smooth_mode
from evoexp.surrogate import available_surrogates, get_surrogate
from evoexp.verification.gradient import GradientVerifier

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


@pytest.mark.parametrize("name", available_surrogates())
def test_surrogate_backward_on_cuda_matches_cpu(name: str) -> None:
    shape = get_surrogate(name, slope=7.0)
    x_cpu = torch.linspace(-3, 3, 1001, dtype=torch.float32, requires_grad=True)
    x_gpu = x_cpu.detach().to(CUDA).requires_grad_(True)
    shape.spike(x_cpu).sum().backward()
    shape.spike(x_gpu).sum().backward()
    torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad)


@pytest.mark.parametrize("per_step_gemm", [False, True])
@pytest.mark.parametrize("recurrent", [False, True])
def test_snn_forward_and_custom_bptt_on_cuda_match_cpu(
    recurrent: bool, per_step_gemm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if per_step_gemm:  # the batched per-time-step input GEMM that large layers use
        monkeypatch.setattr(lif_module, "_STEP_GEMM_MACS", 0)
    cpu = SNN(20, [32], 5, recurrent=recurrent, seed=0).double()
    gpu = SNN(20, [32], 5, recurrent=recurrent, seed=0).double().to(CUDA)
    x = (torch.rand(4, 30, 20, generator=torch.Generator().manual_seed(1)) < 0.2).double()
    y = torch.tensor([0, 1, 2, 3])
    for model, dev in [(cpu, "cpu"), (gpu, CUDA)]:
        torch.nn.functional.cross_entropy(model(x.to(dev)), y.to(dev)).backward()
    for (name, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(p_gpu.grad.cpu(), p_cpu.grad, rtol=1e-9, atol=1e-12, msg=name)


def test_finite_difference_check_passes_on_cuda_in_smooth_mode() -> None:
    model = SNN(10, [8], 3, seed=0).to(CUDA)
    x = (torch.rand(2, 12, 10, device=CUDA) < 0.3).float()
    y = torch.tensor([0, 2], device=CUDA)
    with smooth_mode(model):
        result = GradientVerifier().verify_finite_difference(model, x, y, torch.nn.functional.cross_entropy)
    assert result.passed, result.to_json()


def _cuda_and_cpu_snn(**kwargs: object) -> tuple[SNN, SNN]:
    cpu = SNN(10, [8, 6], 3, seed=0, weight_scale=3.0, **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():
        for layer in cpu.hidden:
            layer.bias.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(1))
    gpu = SNN(10, [8, 6], 3, seed=0, weight_scale=3.0, **kwargs).to(CUDA)  # type: ignore[arg-type]
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    x = (torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    return x, torch.tensor([0, 2, 1])


@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_finite_differences_on_cuda_match_cpu(mode: str, detach_reset: bool) -> None:
    """Fast mode (directions on the parameters' device) and exact mode (structure-aware path, index tensors on the
    device, held resets) give the CPU's numbers on a GPU."""
    cpu, gpu = _cuda_and_cpu_snn(recurrent=True, detach_reset=detach_reset, reset="zero")
    x, y = _data()
    kwargs = {"mode": mode, "n_directions": 3}
    on_cpu = GradientVerifier().verify_finite_difference(cpu, x, y, torch.nn.functional.cross_entropy, **kwargs)
    on_gpu = GradientVerifier().verify_finite_difference(
        gpu, x.to(CUDA), y.to(CUDA), torch.nn.functional.cross_entropy, **kwargs
    )
    assert on_gpu.passed is True, on_gpu.message
    assert on_gpu.held_resets == on_cpu.held_resets and on_gpu.warnings == []
    if mode == "exact":
        assert on_gpu.structured_tensors == on_cpu.structured_tensors != []
    for name, stats in on_cpu.per_tensor.items():
        assert on_gpu.per_tensor[name].worst.analytical == pytest.approx(stats.worst.analytical, rel=1e-8, abs=1e-12)


def test_structure_aware_losses_on_cuda_match_cpu() -> None:
    from evoexp.verification._batched import LossProblem
    from evoexp.verification.gradient import central_differences

    cpu, gpu = _cuda_and_cpu_snn(detach_reset=True)
    x, y = _data()
    problems = [
        LossProblem(model, x.to(dev), y.to(dev), torch.nn.functional.cross_entropy, dtype=torch.float64)
        for model, dev in ((cpu, "cpu"), (gpu, CUDA))
    ]
    for problem in problems:
        problem.copy.set_smooth(True)
        problem.copy.hold_resets(problem.forward)
    for name in problems[0].params:
        a, b = (central_differences(problem, name, eps=1e-3) for problem in problems)
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-10, msg=name)
    assert problems[1].structured_names == problems[0].structured_names != set()


def test_alignment_on_cuda_matches_cpu() -> None:
    from evoexp.verification.alignment import verify_gradient_alignment

    cpu, gpu = _cuda_and_cpu_snn()
    x, y = _data()
    kwargs = {"sigmas": (0.05,), "n_directions": 6, "n_quadrature": 8}
    on_cpu = verify_gradient_alignment(cpu, x, y, torch.nn.functional.cross_entropy, **kwargs)
    on_gpu = verify_gradient_alignment(gpu, x.to(CUDA), y.to(CUDA), torch.nn.functional.cross_entropy, **kwargs)
    assert on_gpu.batched
    for scope in ["overall", *on_cpu.per_layer]:
        assert on_gpu.stats(scope).surrogate == pytest.approx(on_cpu.stats(scope).surrogate, rel=1e-8, abs=1e-12)
        assert on_gpu.stats(scope).smoothed == pytest.approx(on_cpu.stats(scope).smoothed, rel=1e-6, abs=1e-9)
