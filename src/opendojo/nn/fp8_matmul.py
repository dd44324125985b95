"""The FP8 tensor-core path of CFloat8 Linear layers (H100/H200-class GPUs): forward, dgrad and wgrad.

By the scaling identity (docs/cfloat-spec.md, section 9) a CFloat8_1_4_3 tensor at bias B is OCP
``float8_e4m3fn`` scaled by 2^(7−B), and a CFloat8_1_5_2 tensor at bias B is ``float8_e5m2`` scaled by
2^(15−B), as long as the values stay off the codes the OCP formats spend on NaN/Inf. So the operands,
already rounded by the layer, are clamped to the OCP format's max (scaled), cast exactly, and multiplied
by ``torch._scaled_mm`` with the biases folded into its per-tensor scales, accumulating in FP32:

- forward ``y = x · wᵀ``: e4m3 × e4m3 (activations and weights saturate at ±448·2^(7−B) instead of ±480);
- dgrad ``grad_x = g · w`` and wgrad ``grad_w = gᵀ · x``: e5m2 × e4m3. CFloat8_1_5_2's top binade is
  e5m2's Inf/NaN, so on this path the layer rounds its output gradient with one binade of headroom (its
  dynamic bias one lower): no value reaches that binade and the map is exact. A fixed or delayed bias
  cannot move, so values there are clamped to e5m2's max, ±57,344·2^(15−B).

A GEMM whose contracted or output sizes are not multiples of 16 runs in FP32 on the rounded operands,
like the emulated path. Convolutions do not come here (docs/nn.md says why). On CPU, PyTorch's own
``_scaled_mm`` lets the tests hold this path to the emulated one.
"""

from __future__ import annotations

import torch

#: The GEMMs a converted model runs on FP8 tensor cores on a capable GPU, as ``layer.pass``: the Linear
#: forward and both backward products; convolutions run in the layer's higher precision. The simulator
#: prices CFloat8 on GPUs from this tuple, so the two sides cannot drift apart.
FP8_GPU_GEMMS: tuple[str, ...] = ("linear.forward", "linear.dgrad", "linear.wgrad")

#: Exponent bias of float8_e4m3fn; CFloat8_1_4_3 at this bias has the same grid (docs/cfloat-spec.md).
_E4M3FN_BIAS = 7
#: Exponent bias of float8_e5m2; CFloat8_1_5_2 at this bias has the same grid below e5m2's Inf.
_E5M2_BIAS = 15
#: Largest finite float8_e5m2 value: CFloat8_1_5_2 values above it (times 2^(15−B)) are clamped to it.
_E5M2_MAX = 57344.0
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


def _to_fp8(q: torch.Tensor, bias: int, ocp_bias: int, dtype: torch.dtype):
    # q holds CFloat values at `bias` inside the OCP format's finite range: the shift and cast are exact.
    shift = 2.0 ** (bias - ocp_bias)
    scale = torch.tensor(1.0 / shift, dtype=torch.float32, device=q.device)
    return (q * shift).to(dtype), scale


def _to_e4m3fn(q: torch.Tensor, bias: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _to_fp8(q, bias, _E4M3FN_BIAS, torch.float8_e4m3fn)


def e5m2_limit(bias: int) -> float:
    """The largest CFloat8_1_5_2 magnitude at ``bias`` that ``float8_e5m2`` holds: 57,344·2^(15−bias)."""
    return _E5M2_MAX * 2.0 ** (_E5M2_BIAS - bias)


def _gemm(a: torch.Tensor, a_bias: int, a_e5m2: bool, b: torch.Tensor, b_bias: int) -> torch.Tensor:
    """``a @ b.t()`` on FP8 tensor cores: a ``[M, K]`` (e5m2 if ``a_e5m2`` else e4m3), b ``[N, K]`` e4m3.

    Falls back to an FP32 matmul of the same (rounded, clamped) operands when K or N is not a multiple
    of 16, the alignment ``_scaled_mm`` needs.
    """
    if a.shape[1] % _ALIGN or b.shape[0] % _ALIGN:
        return a @ b.t()
    a8, scale_a = _to_fp8(a.contiguous(), a_bias, _E5M2_BIAS if a_e5m2 else _E4M3FN_BIAS,
                          torch.float8_e5m2 if a_e5m2 else torch.float8_e4m3fn)
    b8, scale_b = _to_e4m3fn(b.contiguous(), b_bias)
    # b8 is [N, K] row-major, so b8.t() is the column-major [K, N] operand _scaled_mm wants.
    return torch._scaled_mm(a8, b8.t(), scale_a, scale_b, out_dtype=torch.float32)


class _ScaledLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xq, wq, bias, x_bias: int, w_bias: int, grad_state):
        x2 = xq.reshape(-1, xq.shape[-1])
        y = _gemm(x2, x_bias, False, wq, w_bias)
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(xq, wq)
        ctx.has_bias, ctx.biases, ctx.grad_state = bias is not None, (x_bias, w_bias), grad_state
        return y.reshape(*xq.shape[:-1], wq.shape[0])

    @staticmethod
    def backward(ctx, grad):
        # grad arrives rounded to CFloat8_1_5_2 by the layer's output hook, at grad_state.last_bias.
        xq, wq = ctx.saved_tensors
        x_bias, w_bias = ctx.biases
        g2 = grad.reshape(-1, grad.shape[-1])
        x2 = xq.reshape(-1, xq.shape[-1])
        grad_b = g2.sum(0) if ctx.has_bias else None
        if ctx.grad_state is None:  # gradients not CFloat8_1_5_2: FP32 products, as the emulated path
            return (g2 @ wq).reshape(xq.shape), g2.t() @ x2, grad_b, None, None, None
        g_bias = ctx.grad_state.last_bias
        limit = e5m2_limit(g_bias)
        g2 = g2.clamp(-limit, limit)
        grad_x = _gemm(g2, g_bias, True, wq.t(), w_bias)  # [M, N] · [N, K]
        grad_w = _gemm(g2.t(), g_bias, True, x2.t(), x_bias)  # [N, M] · [M, K]
        return grad_x.reshape(xq.shape), grad_w, grad_b, None, None, None


def scaled_linear(xq: torch.Tensor, wq: torch.Tensor, bias: torch.Tensor | None, x_bias: int, w_bias: int,
                  grad_state=None):
    """``F.linear(xq, wq, bias)`` on FP8 tensor cores, forward and (with ``grad_state``) backward.

    Args:
        xq: ``[..., K]`` float32, CFloat8_1_4_3 values at ``x_bias`` with |x| ≤ 448·2^(7−x_bias).
        wq: ``[N, K]`` float32, CFloat8_1_4_3 values at ``w_bias``, same bound.
        bias: ``[N]`` float32 or None, added in FP32.
        grad_state: the layer's ``grad_output`` TensorBias when gradients are CFloat8_1_5_2 (its
            ``last_bias`` is the output gradient's bias when backward runs); None for FP32 backward products.
    Returns:
        ``[..., N]`` float32.
    """
    return _ScaledLinear.apply(xq, wq, bias, x_bias, w_bias, grad_state)
