"""CUDA paths: surrogates, the custom BPTT and the verifier on a GPU match the CPU. Skipped without a GPU."""

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
