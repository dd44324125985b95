"""What one aten op costs: its kind, FLOPs, bytes moved and matmul shape.

The formulas follow ``torch.utils.flop_counter`` where it has them (mm, addmm, bmm, convolution and its
backward) and add the ones it lacks in torch 2.13 — the CPU flash-attention kernels
(``_scaled_dot_product_flash_attention_for_cpu`` and its backward), which FlopCounterMode counts as zero.
Bytes are the sizes of the tensors an op reads and writes (views move nothing); normalisation ops read
their input twice (one pass for the statistics, one to normalise).
"""

from __future__ import annotations

import math

import torch
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

#: Op kinds; the step-time model has one cost curve per kind.
KINDS = ("matmul", "conv", "attention", "elementwise", "norm", "rng", "view", "scalar", "special")
KIND = {k: i for i, k in enumerate(KINDS)}
#: Kinds a pointwise-fusing compiler merges into one kernel when one feeds the next.
POINTWISE_KINDS = (KIND["elementwise"], KIND["special"], KIND["rng"])

_aten = torch.ops.aten
_MATMUL = {_aten.mm, _aten.addmm, _aten.bmm, _aten.baddbmm}
_CONV = {_aten.convolution, _aten.convolution_backward, _aten._convolution}
_ATTN = {_aten._scaled_dot_product_flash_attention_for_cpu,
         _aten._scaled_dot_product_flash_attention_for_cpu_backward}
_RNG = {_aten.bernoulli_, _aten.bernoulli, _aten.normal_, _aten.uniform_, _aten.native_dropout,
        _aten.rand_like, _aten.randn_like, _aten.randint, _aten.rand, _aten.randn, _aten.random_}
_NORM = {_aten.native_batch_norm, _aten.native_batch_norm_backward, _aten.native_layer_norm,
         _aten.native_layer_norm_backward, _aten.native_group_norm, _aten.native_group_norm_backward,
         _aten._native_batch_norm_legit, _aten._native_batch_norm_legit_functional,
         _aten._softmax, _aten._softmax_backward_data, _aten._log_softmax, _aten._log_softmax_backward_data,
         _aten._safe_softmax}
_VIEW = {_aten.view, _aten._unsafe_view, _aten.t, _aten.transpose, _aten.permute, _aten.expand,
         _aten.detach, _aten.alias, _aten.as_strided, _aten.slice, _aten.select, _aten.split,
         _aten.split_with_sizes, _aten.unsqueeze, _aten.squeeze, _aten.unbind, _aten.chunk,
         _aten.lift_fresh, _aten.empty, _aten.empty_like, _aten.empty_strided, _aten.new_empty_strided,
         _aten.new_empty, _aten._reshape_alias, _aten.unflatten, _aten.flatten, _aten.diagonal,
         _aten.narrow, _aten.view_as_real, _aten.view_as_complex, _aten.expand_as, _aten.reshape}
#: Elementwise ops with a transcendental function per element: compute-bound on a CPU.
_SPECIAL = {_aten.gelu, _aten.gelu_backward, _aten.silu, _aten.silu_backward, _aten.exp, _aten.log,
            _aten.tanh, _aten.tanh_backward, _aten.sigmoid, _aten.sigmoid_backward, _aten.erf, _aten.sin,
            _aten.cos, _aten.log_sigmoid_forward}
_SCALAR = {_aten._local_scalar_dense, _aten.is_nonzero, _aten.sym_size, _aten.sym_numel}


#: Ops whose throughput the host calibration measures individually (elements of the first input per
#: second): normalisation and pooling kernels on a CPU run far from both the FLOP and the bandwidth roof.
RATED_OPS = ("native_batch_norm", "native_batch_norm_backward", "native_layer_norm",
             "native_layer_norm_backward",
             "native_group_norm", "native_group_norm_backward", "max_pool2d_with_indices",
             "max_pool2d_with_indices_backward")
_RATED = {name: i + 1 for i, name in enumerate(RATED_OPS)}


def _tensors(obj: object) -> list[torch.Tensor]:
    return [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _attention_flops(func, args: tuple, kwargs: dict) -> float:
    """Flash attention FLOPs: forward 2 matmuls (QKᵀ, PV), backward 5 (recompute QKᵀ, dV, dP, dQ, dK).

    ``q [b, h, s_q, d]``, ``k [b, h, s_k, d]``; a causal mask skips half the score matrix.
    """
    q, k = args[0], args[1]
    if func.overloadpacket is _aten._scaled_dot_product_flash_attention_for_cpu_backward:
        q, k = args[1], args[2]
        causal = bool(args[7]) if len(args) > 7 else bool(kwargs.get("is_causal", False))
        matmuls = 5
    else:
        causal = bool(args[4]) if len(args) > 4 else bool(kwargs.get("is_causal", False))
        matmuls = 2
    b, h, sq, d = q.shape
    sk = k.shape[-2]
    return matmuls * 2.0 * b * h * sq * sk * d * (0.5 if causal else 1.0)


def _matmul_shape(func, args: tuple) -> tuple[int, int, int, int]:
    """``(batch, m, n, k)`` of a matmul op: output ``[batch, m, n]`` summed over ``k``."""
    packet = func.overloadpacket
    a, b = (args[1], args[2]) if packet in (_aten.addmm, _aten.baddbmm) else (args[0], args[1])
    if a.dim() == 3:
        return a.shape[0], a.shape[1], b.shape[-1], a.shape[-1]
    return 1, a.shape[0], b.shape[-1], a.shape[-1]


def _conv_shape(args: tuple, out: object) -> tuple[int, int, int, int]:
    """Implicit-GEMM view of a convolution: ``m`` = batch × output pixels, ``n`` = out channels, ``k`` =
    in channels / groups × kernel volume."""
    x, w = args[0], args[1]
    if x.dim() < 3:
        return 1, 1, 1, 1
    pixels = math.prod(x.shape[2:])  # backward: same order of magnitude; shape only drives efficiency
    return 1, x.shape[0] * pixels, w.shape[0], math.prod(w.shape[1:])


def op_cost(func, args: tuple, kwargs: dict, out: object) -> dict[str, float]:
    """Cost record of one dispatched op: kind, flops, bytes, out_bytes (fresh allocations) and shape."""
    packet = func.overloadpacket
    ins, outs = _tensors((args, kwargs)), _tensors(out)
    in_bytes = sum(_nbytes(t) for t in ins)
    inplace = packet.__name__.endswith("_") and bool(ins)
    out_bytes = 0 if inplace else sum(_nbytes(t) for t in outs)
    rec = {"kind": KIND["elementwise"], "flops": 0.0, "bytes": float(in_bytes + out_bytes + (
        sum(_nbytes(t) for t in outs) if inplace else 0)), "out_bytes": float(out_bytes),
        "b": 1, "m": 0, "n": 0, "k": 0, "rng": 0.0, "rated": _RATED.get(packet.__name__, 0),
        "elements": float(ins[0].numel() if ins else 0)}
    if packet in _VIEW:
        rec.update(kind=KIND["view"], bytes=0.0, out_bytes=0.0)
    elif packet in _SCALAR:
        rec.update(kind=KIND["scalar"], bytes=0.0, out_bytes=0.0)
    elif packet in _MATMUL:
        b, m, n, k = _matmul_shape(func, args)
        rec.update(kind=KIND["matmul"], flops=float(flop_registry[packet](*args, **kwargs, out_val=out)),
                   b=b, m=m, n=n, k=k)
    elif packet in _CONV:
        b, m, n, k = _conv_shape(args, out)
        rec.update(kind=KIND["conv"], flops=float(flop_registry[packet](*args, **kwargs, out_val=out)),
                   b=b, m=m, n=n, k=k)
    elif packet in _ATTN:
        rec.update(kind=KIND["attention"], flops=_attention_flops(func, args, kwargs))
    elif packet in _RNG:
        rec.update(kind=KIND["rng"], rng=float(sum(t.numel() for t in outs) or sum(t.numel() for t in ins)))
    elif packet in _SPECIAL:
        rec.update(kind=KIND["special"], flops=float(max((t.numel() for t in outs), default=0)))
    elif packet in _NORM:
        first = ins[0] if ins else None
        rec.update(kind=KIND["norm"], bytes=rec["bytes"] + (_nbytes(first) if first is not None else 0),
                   flops=float(5 * (first.numel() if first is not None else 0)))
    else:
        rec["flops"] = float(max((t.numel() for t in outs), default=0))
    return rec
