"""The FP8 tensor-core path (torch._scaled_mm) against the emulated path.

PyTorch's CPU build also implements ``_scaled_mm``, so the path is held to the emulated one here on
every machine (forced with ``fp8_matmul="always"``); the CUDA test runs only on FP8-capable GPUs.
"""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from opendojo import numerics
from opendojo.nn import Recipe, convert
from opendojo.nn.fp8_matmul import fp8_hardware_available

F143, F152 = numerics.CFLOAT8_1_4_3, numerics.CFLOAT8_1_5_2
NEAREST_GRADS = replace(Recipe.dojo(), gradient=replace(Recipe.dojo().gradient, rounding="nearest"))


def _pair(device: str, in_f: int = 32, out_f: int = 48):
    torch.manual_seed(0)
    fp8 = convert(nn.Linear(in_f, out_f), replace(NEAREST_GRADS, fp8_matmul="always"), lambda n, m: True)
    emu = convert(nn.Linear(in_f, out_f), replace(NEAREST_GRADS, fp8_matmul="never"), lambda n, m: True)
    emu.load_state_dict(fp8.state_dict())
    return fp8.to(device), emu.to(device)


def _off_top_code(x: torch.Tensor) -> torch.Tensor:
    """The emulated rounding of the FP8 mode: dynamic bias, then saturate one code below ±480·2^(7−B)."""
    bias = numerics.choose_bias(x.abs().max(), F143)
    limit = F143.max(bias) * (448 / 480)
    return numerics.fake_quantize(x, F143, bias).clamp(-limit, limit)


def _grads(layer, x, g):
    x = x.clone().requires_grad_()
    y = layer(x)
    y.backward(g)
    return y.detach(), x.grad, layer.weight.grad, layer.bias.grad


def test_cpu_fallback_is_automatic():
    layer = convert(nn.Linear(32, 32), Recipe.dojo(), lambda n, m: True)
    assert not layer._use_fp8(torch.zeros(1, 32))  # CPU: "auto" emulates
    forced = convert(nn.Linear(30, 32), replace(Recipe.dojo(), fp8_matmul="always"), lambda n, m: True)
    assert not forced._use_fp8(torch.zeros(1, 30))  # K not a multiple of 16: emulated


def test_scaled_mm_path_equals_emulated_path_on_exactly_summable_data():
    fp8, emu = _pair("cpu")
    assert fp8._use_fp8(torch.zeros(1, 32))
    # multiples of 1/8 below 8: every operand, product and partial sum is exact in FP32
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(-64, 64, (8, 32), generator=gen).float() / 8
    with torch.no_grad():
        fp8.weight.copy_(torch.randint(-64, 64, (48, 32), generator=gen).float() / 8)
        emu.weight.copy_(fp8.weight)
    g = torch.randint(-8, 8, (8, 48), generator=gen).float()
    got, want = _grads(fp8, x, g), _grads(emu, x, g)
    for name, a, b in zip(("y", "grad_x", "grad_w", "grad_b"), got, want, strict=True):
        assert torch.equal(a, b), name


def test_scaled_mm_path_equals_fake_quantized_reference_off_the_top_code():
    fp8, _ = _pair("cpu")
    x = torch.randn(8, 32) * 5
    x[0, 0] = F143.max(numerics.choose_bias(x.abs().max(), F143))  # exactly the top code, 480·2^(7−B)
    want = F.linear(_off_top_code(x), _off_top_code(fp8.weight.detach()), fp8.bias.detach())
    got = fp8(x).detach()
    torch.testing.assert_close(got, want, rtol=2e-6, atol=1e-6)
    emulated = replace(NEAREST_GRADS, fp8_matmul="never")
    top = convert(nn.Linear(32, 48), emulated, lambda n, m: True)
    top.load_state_dict(fp8.state_dict())
    assert not torch.allclose(top(x).detach()[0], got[0], rtol=1e-3)  # the stated difference is real


def _backward_reference(layer, x, g):
    """(grad_x, grad_w) of the FP8 path written out: the output gradient rounded (nearest) at the bias
    with one binade of headroom, FP32 products on the rounded operands, grad_x rounded at margin 0."""
    xq, wq = _off_top_code(x), _off_top_code(layer.weight.detach())
    gq = numerics.fake_quantize(g, F152, numerics.choose_bias(g.abs().max(), F152, margin=1))
    gx = gq @ wq
    grad_x = numerics.fake_quantize(gx, F152, numerics.choose_bias(gx.abs().max(), F152))
    return grad_x, gq.t() @ xq


def _fp8_backward_matches_reference(device: str, in_f: int, out_f: int, rows: int) -> None:
    fp8, emu = _pair(device, in_f, out_f)
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(rows, in_f, generator=gen) * 5).to(device)
    g = (torch.randn(rows, out_f, generator=gen) * 1e-3).to(device)
    _, grad_x, grad_w, _ = _grads(fp8, x, g)
    want_x, want_w = _backward_reference(fp8, x, g)
    torch.testing.assert_close(grad_w, want_w, rtol=2e-6, atol=1e-9)
    torch.testing.assert_close(grad_x, want_x, rtol=0.07, atol=1e-9)  # within one rounding of grad_x
    _grads(emu, x, g)
    got_bias, emu_bias = fp8.cfloat.grad_output.bias.item(), emu.cfloat.grad_output.bias.item()
    assert got_bias == emu_bias - 1  # the headroom that keeps e5m2's Inf codes out of reach


def test_fp8_backward_gemms_equal_the_written_out_reference_on_cpu():
    _fp8_backward_matches_reference("cpu", 32, 48, 32)  # 32 rows: wgrad runs on _scaled_mm too


def test_fp8_backward_clamps_to_e5m2_max_when_the_bias_cannot_move():
    from opendojo.nn.fp8_matmul import e5m2_limit

    fixed = replace(NEAREST_GRADS, fp8_matmul="always",
                    gradient=replace(NEAREST_GRADS.gradient, bias="fixed", fixed_bias=20))
    layer = convert(nn.Linear(32, 32), fixed, lambda n, m: True)
    x = torch.randn(16, 32, requires_grad=True)
    # 2**11 is in CFloat8_1_5_2's top binade at bias 20 (max 3584), which float8_e5m2 spends on Inf/NaN
    layer(x).backward(torch.full((16, 32), 2.0 ** 11))
    assert e5m2_limit(20) == 1792.0  # 57,344 · 2^(15 − 20)
    column_sums = _off_top_code(x.detach()).sum(0)
    torch.testing.assert_close(layer.weight.grad, 1792.0 * column_sums.expand(32, 32), rtol=2e-6, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(
    not (torch.cuda.is_available() and fp8_hardware_available(torch.device("cuda"))),
    reason="needs a CUDA GPU with FP8 tensor cores (compute capability >= 8.9)",
)
def test_cuda_fp8_tensor_cores_match_emulation():
    torch.backends.cuda.matmul.allow_tf32 = False
    fp8, emu = _pair("cuda", 256, 128)
    auto = convert(nn.Linear(256, 128), NEAREST_GRADS, lambda n, m: True).cuda()
    x = torch.randn(64, 256, device="cuda")
    assert auto._use_fp8(x) and not emu._use_fp8(x)
    want = F.linear(_off_top_code(x), _off_top_code(fp8.weight.detach()), fp8.bias.detach())
    torch.testing.assert_close(fp8(x).detach(), want, rtol=2e-6, atol=1e-6)
    _fp8_backward_matches_reference("cuda", 256, 128, 64)
