"""The FP8 tensor-core path for CFloat8_1_4_3 matmuls (H100/H200-class GPUs).

CFloat8_1_4_3 at bias B is OCP ``float8_e4m3fn`` scaled by 2^(7−B) (docs/cfloat-spec.md, scaling identity),
except for the top code ±480·2^(7−B), which e4m3fn spends on NaN. In this mode the operands are rounded
as usual and then saturated one code lower (±448·2^(7−B)), so ``q · 2^(B−7)`` casts to e4m3fn exactly and
``torch._scaled_mm`` multiplies with the bias folded into its per-tensor scales, accumulating in FP32.

Untested on GPU hardware in this project so far (developed on a CPU machine, where PyTorch's CPU
``_scaled_mm`` lets the tests hold it to the emulated path); see docs/nn.md.
"""

from __future__ import annotations

import torch

#: The GEMMs a converted model runs on FP8 tensor cores on a capable GPU, as ``layer.pass``: today the
#: Linear forward only; dgrad, wgrad and convolutions run in the layer's higher precision. The simulator
#: prices CFloat8 on GPUs from this tuple, so the two sides cannot drift apart.
FP8_GPU_GEMMS: tuple[str, ...] = ("linear.forward",)

#: Exponent bias of float8_e4m3fn; CFloat8_1_4_3 at this bias has the same grid (docs/cfloat-spec.md).
_E4M3FN_BIAS = 7
#: _scaled_mm needs K and N divisible by 16 on CUDA.
_ALIGN = 16
#: Compute capability of the first NVIDIA GPUs with FP8 tensor cores (Ada, Hopper).
_MIN_CAPABILITY = (8, 9)


def fp8_hardware_available(device: torch.device) -> bool:
    """True when ``device`` is a CUDA GPU with FP8 tensor cores and this PyTorch has ``_scaled_mm``."""
    if device.type != "cuda" or not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return False
    return torch.cuda.get_device_capability(device) >= _MIN_CAPABILITY


def fp8_shapes_supported(in_features: int, out_features: int) -> bool:
    """True when a Linear of these sizes meets ``_scaled_mm``'s alignment (multiples of 16)."""
    return in_features % _ALIGN == 0 and out_features % _ALIGN == 0


def _to_e4m3fn(q: torch.Tensor, bias: int) -> tuple[torch.Tensor, torch.Tensor]:
    # q holds CFloat8_1_4_3 values at `bias`, off the top code: the shift is exact and so is the cast.
    shift = 2.0 ** (bias - _E4M3FN_BIAS)
    scale = torch.tensor(1.0 / shift, dtype=torch.float32, device=q.device)
    return (q * shift).to(torch.float8_e4m3fn), scale


class _ScaledLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xq, wq, bias, x_bias: int, w_bias: int):
        x2 = xq.reshape(-1, xq.shape[-1])
        a, scale_a = _to_e4m3fn(x2.contiguous(), x_bias)
        b, scale_b = _to_e4m3fn(wq.contiguous(), w_bias)
        # b is [N, K] row-major, so b.t() is the column-major [K, N] operand _scaled_mm wants.
        y = torch._scaled_mm(a, b.t(), scale_a, scale_b, out_dtype=torch.float32)
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(xq, wq)
        ctx.has_bias = bias is not None
        return y.reshape(*xq.shape[:-1], wq.shape[0])

    @staticmethod
    def backward(ctx, grad):
        # Same products as the emulated path's autograd: FP32 on the rounded operands.
        xq, wq = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_x = (g2 @ wq).reshape(xq.shape)
        grad_w = g2.t() @ xq.reshape(-1, xq.shape[-1])
        grad_b = g2.sum(0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None, None


def scaled_linear(xq: torch.Tensor, wq: torch.Tensor, bias: torch.Tensor | None, x_bias: int, w_bias: int):
    """``F.linear(xq, wq, bias)`` on FP8 tensor cores.

    Args:
        xq: ``[..., K]`` float32, CFloat8_1_4_3 values at ``x_bias`` with |x| ≤ 448·2^(7−x_bias).
        wq: ``[N, K]`` float32, CFloat8_1_4_3 values at ``w_bias``, same bound.
        bias: ``[N]`` float32 or None, added in FP32.
    Returns:
        ``[..., N]`` float32.
    """
    return _ScaledLinear.apply(xq, wq, bias, x_bias, w_bias)
