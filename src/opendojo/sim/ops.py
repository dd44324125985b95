"""What one aten op costs: its kind, FLOPs, bytes moved and matmul shape.

Every op belongs to an **op class** (``KINDS``) and each class has its own cost model on every device
(:mod:`opendojo.sim.device_time`). The FLOP formulas follow ``torch.utils.flop_counter`` where it has them
(mm, addmm, bmm, convolution and its backward) and add the ones it lacks in torch 2.13 — the CPU
flash-attention kernels and the fused CPU LSTM (oneDNN's ``mkldnn_rnn_layer``), which FlopCounterMode
counts as zero. Bytes are the sizes of the tensors an op reads and writes (views move nothing);
normalisation ops read their input twice (one pass for the statistics, one to normalise).

An op that falls in no class is kind ``unknown``: it is timed like a memory-bound elementwise op and the
simulator names it, with its count and estimated share of the step, in the result's ``notes``.
"""

from __future__ import annotations

import math

import torch
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

#: Op kinds; the step-time model has one cost curve per kind.
KINDS = ("matmul", "conv", "attention", "elementwise", "norm", "rng", "view", "scalar", "special", "softmax",
         "recurrent", "gather", "scatter", "fft", "sort", "pool", "copy", "reduction", "unknown")
KIND = {k: i for i, k in enumerate(KINDS)}
#: What a GEMM-like op is: a 2-D matmul's place in a Linear layer, in ``opendojo.nn.FP8_GPU_GEMMS``'s
#: ``layer.pass`` names, a fused attention kernel with or without a causal mask, or a convolution that
#: PyTorch's CPU backend hands to oneDNN (index 0: none of these — batched matmuls, convolutions on the
#: native path). Recorded per op as ``role``; attention's ``m, n, k`` are ``s_q, s_k, d``.
GEMM_ROLES = ("", "linear.forward", "linear.dgrad", "linear.wgrad", "attention", "attention.causal",
              "conv.onednn")
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
         _aten._native_batch_norm_legit, _aten._native_batch_norm_legit_functional}
_SOFTMAX = {_aten._softmax, _aten._softmax_backward_data, _aten._log_softmax,
            _aten._log_softmax_backward_data, _aten._safe_softmax}
#: Row gathers (embedding lookup) and their backward, a scatter-add into the table (sorted by index on CPU).
#: Bilinear sampling (``grid_sample``, the FSD net's ground lift) reads four input points per output point
#: and its backward scatters into the input: the same two classes, priced per output element.
_GATHER = {_aten.embedding, _aten.index_select, _aten.gather, _aten.index, _aten.take_along_dim,
           _aten.grid_sampler_2d}
_SCATTER = {_aten.embedding_dense_backward, _aten.index_add, _aten.index_add_, _aten.scatter_add,
            _aten.scatter_add_, _aten.index_put, _aten.index_put_, _aten._index_put_impl_,
            _aten.grid_sampler_2d_backward}
_FFT = {_aten._fft_r2c, _aten._fft_c2r, _aten._fft_c2c}
#: Sorting and scans: ``n log n`` (sort, top-k) or a sequential pass (cumulative sums).
_SORT = {_aten.sort, _aten.topk, _aten.argsort, _aten.cumsum, _aten.cumprod, _aten.cummax, _aten.cummin,
         _aten.msort}
_POOL = {_aten.max_pool2d_with_indices, _aten.max_pool2d_with_indices_backward, _aten.avg_pool2d,
         _aten.avg_pool2d_backward, _aten._adaptive_avg_pool2d, _aten._adaptive_avg_pool2d_backward,
         _aten.upsample_nearest2d, _aten.upsample_nearest2d_backward, _aten.upsample_bilinear2d,
         _aten.upsample_bilinear2d_backward, _aten.max_pool3d_with_indices, _aten.avg_pool3d}
#: Data movement without arithmetic: copies, concatenation, padding, fresh constant tensors.
_COPY = {_aten.clone, _aten.copy_, _aten._to_copy, _aten.cat, _aten.stack, _aten.constant_pad_nd,
         _aten.zeros, _aten.zeros_like, _aten.ones, _aten.ones_like, _aten.full, _aten.full_like, _aten.fill_,
         _aten.zero_, _aten.new_zeros, _aten.new_ones, _aten.new_full, _aten.scalar_tensor, _aten.arange,
         _aten.repeat, _aten.roll, _aten.flip, _aten.tril, _aten.triu, _aten.select_backward,
         _aten.slice_backward, _aten.unsafe_split, _aten.unsafe_chunk, _aten.contiguous,
         _aten.lift_fresh_copy, _aten._unsafe_index, _aten.masked_fill, _aten.masked_fill_, _aten.index_fill_,
         _aten.split_with_sizes_copy,
         _aten.unfold, _aten.im2col, _aten.col2im, _aten.pixel_shuffle, _aten.tile, _aten.linspace,
         _aten.eye, _aten.resize_, _aten.set_}
_VIEW = {_aten.view, _aten._unsafe_view, _aten.t, _aten.transpose, _aten.permute, _aten.expand,
         _aten.detach, _aten.alias, _aten.as_strided, _aten.slice, _aten.select, _aten.split,
         _aten.split_with_sizes, _aten.unsqueeze, _aten.squeeze, _aten.unbind, _aten.chunk,
         _aten.lift_fresh, _aten.empty, _aten.empty_like, _aten.empty_strided, _aten.new_empty_strided,
         _aten.new_empty, _aten._reshape_alias, _aten.unflatten, _aten.flatten, _aten.diagonal,
         _aten.narrow, _aten.view_as_real, _aten.view_as_complex, _aten.expand_as, _aten.reshape,
         _aten._conj, _aten.transpose_, _aten.t_, _aten.squeeze_, _aten.unsqueeze_, _aten.as_strided_}
#: Elementwise ops with a transcendental function per element: compute-bound on a CPU.
_SPECIAL = {_aten.gelu, _aten.gelu_backward, _aten.silu, _aten.silu_backward, _aten.exp, _aten.log,
            _aten.tanh, _aten.tanh_backward, _aten.sigmoid, _aten.sigmoid_backward, _aten.erf, _aten.sin,
            _aten.cos, _aten.log_sigmoid_forward}
_SCALAR = {_aten._local_scalar_dense, _aten.is_nonzero, _aten.sym_size, _aten.sym_numel, _aten.item,
           _aten.equal, _aten.is_same_size}
#: Profiler markers (``torch.ops.profiler``) that modules such as ``nn.MultiheadAttention`` emit: no work.
_MARKERS = ("_record_function_enter", "_record_function_enter_new", "_record_function_exit")
#: Pointwise ops whose aten schema lacks the ``pointwise`` tag (activation backwards).
_ELEMENTWISE = {_aten.hardtanh_backward, _aten.leaky_relu_backward, _aten.elu_backward,
                _aten.hardswish_backward, _aten.hardsigmoid_backward, _aten.softplus_backward,
                _aten.mish_backward, _aten.threshold_backward}
#: Ops of the fused CPU LSTM (recorded by :func:`opendojo.sim.workload.capture_module`'s LSTM hook).
RECURRENT_OPS = ("mkldnn_rnn_layer", "mkldnn_rnn_layer_backward")


#: Convolutions that CPU kernels do not run as an implicit GEMM, each rated on its own (work = FLOP):
#: depthwise (one input channel per group: a direct per-channel stencil) and strided 1×1 convolutions
#: (oneDNN gathers the strided pixels first; its backward is several times slower than the GEMM curve).
CONV_CLASSES = ("conv_depthwise", "conv_depthwise_backward", "conv_depthwise_strided",
                "conv_depthwise_strided_backward", "conv_1x1_strided", "conv_1x1_strided_backward")
#: Ops whose throughput the host calibration measures individually (elements of the first input per
#: second): normalisation and pooling kernels on a CPU run far from both the FLOP and the bandwidth roof.
#: The work counted for each is in ``elements``: elements of the first input, of the output for gathers,
#: and ``elements · log2(length)`` for FFTs and sorts (their ``n log n``).
RATED_OPS = ("native_batch_norm", "native_batch_norm_backward", "native_layer_norm",
             "native_layer_norm_backward",
             "native_group_norm", "native_group_norm_backward", "max_pool2d_with_indices",
             "max_pool2d_with_indices_backward", "_softmax", "_softmax_backward_data", "_log_softmax",
             "_log_softmax_backward_data", "embedding", "embedding_dense_backward", "_fft_r2c", "_fft_c2r",
             "_fft_c2c", "sort", "cumsum", "_adaptive_avg_pool2d", "avg_pool2d", "upsample_nearest2d",
             "upsample_nearest2d_backward", *CONV_CLASSES)
_RATED = {name: i + 1 for i, name in enumerate(RATED_OPS)}


def _tensors(obj: object) -> list[torch.Tensor]:
    return [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _attention_flops(func, args: tuple, kwargs: dict) -> tuple[float, int, int, int, bool]:
    """Flash attention ``(FLOPs, s_q, s_k, d, causal)``: forward 2 matmuls (QKᵀ, PV), backward 5
    (recompute QKᵀ, dV, dP, dQ, dK).

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
    return matmuls * 2.0 * b * h * sq * sk * d * (0.5 if causal else 1.0), sq, sk, d, causal


def _matmul_shape(func, args: tuple) -> tuple[int, int, int, int]:
    """``(batch, m, n, k)`` of a matmul op: output ``[batch, m, n]`` summed over ``k``."""
    packet = func.overloadpacket
    a, b = (args[1], args[2]) if packet in (_aten.addmm, _aten.baddbmm) else (args[0], args[1])
    if a.dim() == 3:
        return a.shape[0], a.shape[1], b.shape[-1], a.shape[-1]
    return 1, a.shape[0], b.shape[-1], a.shape[-1]


def _conv_shape(func, args: tuple) -> tuple[int, int, int, int]:
    """Implicit-GEMM view of a convolution: ``m`` = batch × output pixels, ``n`` = out channels, ``k`` = in
    channels per group × kernel volume (``b`` = groups: oneDNN runs the groups of a grouped conv as one
    kernel, so its efficiency follows the whole output width). The backward op takes ``(grad_output,
    input, weight, ...)``; its GEMMs have the forward's shape."""
    backward = func.overloadpacket is _aten.convolution_backward
    x, w = (args[1], args[2]) if backward else (args[0], args[1])
    if x.dim() < 3:
        return 1, 1, 1, 1
    # groups: argument 9 of convolution_backward (before output_mask), 8 of convolution
    position = 9 if backward else 8
    groups = args[position] if len(args) > position and isinstance(args[position], int) else 1
    pixels = math.prod(x.shape[2:])  # input pixels: the output's within the stride factor
    groups = max(int(groups), 1)
    return groups, x.shape[0] * pixels, w.shape[0], math.prod(w.shape[1:])


def _conv_backward_flops(args: tuple) -> float:
    """FLOPs of ``convolution_backward(grad_output, input, weight, ..., groups, output_mask)``: each
    requested gradient (input, weight) costs one forward's ``2 · out elements · in channels per group ·
    kernel area``. FlopCounterMode's formula in torch 2.13 counts the weight gradient of a grouped
    convolution as if it were ungrouped (``groups`` times too many FLOPs: 12× for a 24-channel depthwise
    backward), which would price every grouped and depthwise backward far too high."""
    grad_out, w = args[0], args[2]
    mask = args[10] if len(args) > 10 else (True, True)
    forward = 2.0 * grad_out.numel() * math.prod(w.shape[1:])
    return forward * sum(bool(m) for m in mask[:2])


def _conv_class(func, args: tuple) -> str:
    """``CONV_CLASSES`` name of a convolution that is not an implicit GEMM on a CPU, else ``""``."""
    backward = func.overloadpacket is _aten.convolution_backward
    x, w = (args[1], args[2]) if backward else (args[0], args[1])
    if x.dim() != 4:
        return ""
    stride = args[4] if backward else (args[3] if len(args) > 3 else [1])
    suffix = "_backward" if backward else ""
    strided = any(int(s) > 1 for s in stride)
    if w.shape[1] == 1 and x.shape[1] > 1:  # one input channel per group
        return ("conv_depthwise_strided" if strided else "conv_depthwise") + suffix
    if tuple(w.shape[2:]) == (1, 1) and strided:
        return "conv_1x1_strided" + suffix
    return ""


def _runs_onednn(func, args: tuple) -> bool:
    """Whether PyTorch's CPU backend runs this fp32 2-D convolution through oneDNN rather than its native
    kernels (``_slow_conv2d``), as its backend selection decides: unstrided, undilated 1×1 convolutions
    below batch 16 on one thread stay native; so do ungrouped batch-1 convolutions with kernels of at most
    3×3 on inputs of at most 20,480 elements. A oneDNN call pays a fixed setup cost the native kernels do
    not (``conv_call_s``)."""
    backward = func.overloadpacket is _aten.convolution_backward
    x, w = (args[1], args[2]) if backward else (args[0], args[1])
    if x.dim() != 4 or x.dtype != torch.float32:
        return False
    at = 4 if backward else 3  # stride, padding, dilation follow; groups at 9 (backward) or 8
    stride = args[at] if len(args) > at else [1]
    dilation = args[at + 2] if len(args) > at + 2 else [1]
    groups = args[at + 5] if len(args) > at + 5 and isinstance(args[at + 5], int) else 1
    kh, kw = w.shape[2:]
    wide = (any(int(s) > 1 for s in stride) or any(int(d) > 1 for d in dilation) or x.shape[0] >= 16
            or (kh, kw) != (1, 1) or torch.get_num_threads() > 1)
    big = groups > 1 or (kh > 3 and kw > 3) or x.shape[0] > 1 or x.numel() > 20480
    return wide and big


def _classify(packet, func) -> str:
    """The op class of an aten op (``KINDS``); ``unknown`` if none claims it."""
    if packet.__name__ in _MARKERS:
        return "scalar"
    for kind, members in (("view", _VIEW), ("scalar", _SCALAR), ("matmul", _MATMUL), ("conv", _CONV),
                          ("attention", _ATTN), ("rng", _RNG), ("special", _SPECIAL), ("norm", _NORM),
                          ("softmax", _SOFTMAX), ("gather", _GATHER), ("scatter", _SCATTER), ("fft", _FFT),
                          ("sort", _SORT), ("pool", _POOL), ("copy", _COPY)):
        if packet in members:
            return kind
    tags = getattr(func, "tags", ())
    if packet in _ELEMENTWISE or torch.Tag.pointwise in tags:
        return "elementwise"
    if torch.Tag.reduction in tags:
        return "reduction"
    return "unknown"


def _work(kind: str, ins: list[torch.Tensor], outs: list[torch.Tensor]) -> float:
    """Work units of a rated op: elements of its first input; of its output for gathers (the first input
    is the table); ``n log2(length)`` over the last dimension for FFTs and sorts."""
    if kind == "gather":
        return float(sum(t.numel() for t in outs))
    first = ins[0] if ins else None
    if first is None:
        return 0.0
    if kind in ("fft", "sort") and first.dim():
        return float(first.numel() * max(math.log2(max(first.shape[-1], 2)), 1.0))
    return float(first.numel())


def op_cost(func, args: tuple, kwargs: dict, out: object) -> dict[str, float]:
    """Cost record of one dispatched op: kind, flops, bytes, out_bytes (fresh allocations) and shape."""
    packet = func.overloadpacket
    ins, outs = _tensors((args, kwargs)), _tensors(out)
    in_bytes = sum(_nbytes(t) for t in ins)
    inplace = packet.__name__.endswith("_") and bool(ins)
    out_bytes = 0 if inplace else sum(_nbytes(t) for t in outs)
    kind = _classify(packet, func)
    rec = {"kind": KIND[kind], "flops": 0.0, "bytes": float(in_bytes + out_bytes + (
        sum(_nbytes(t) for t in outs) if inplace else 0)), "out_bytes": float(out_bytes),
        "b": 1, "m": 0, "n": 0, "k": 0, "rng": 0.0, "rated": _RATED.get(packet.__name__, 0),
        "elements": _work(kind, ins, outs)}
    if kind in ("view", "scalar"):
        rec.update(bytes=0.0, out_bytes=0.0)
    elif kind == "matmul":
        b, m, n, k = _matmul_shape(func, args)
        rec.update(flops=float(flop_registry[packet](*args, **kwargs, out_val=out)), b=b, m=m, n=n, k=k)
    elif kind == "conv":
        b, m, n, k = _conv_shape(func, args)
        flops = (_conv_backward_flops(args) if packet is _aten.convolution_backward
                 else float(flop_registry[packet](*args, **kwargs, out_val=out)))
        rec.update(flops=flops, b=b, m=m, n=n, k=k)
        if _runs_onednn(func, args):
            rec["role"] = GEMM_ROLES.index("conv.onednn")
        conv_class = _conv_class(func, args)
        if conv_class:
            rec.update(rated=_RATED[conv_class], elements=rec["flops"])
    elif kind == "attention":
        flops, sq, sk, d, causal = _attention_flops(func, args, kwargs)
        rec.update(flops=flops, m=sq, n=sk, k=d,
                   role=GEMM_ROLES.index("attention.causal" if causal else "attention"))
    elif kind == "rng":
        rec.update(rng=float(sum(t.numel() for t in outs) or sum(t.numel() for t in ins)))
    elif kind == "norm":
        first = ins[0] if ins else None
        rec.update(bytes=rec["bytes"] + (_nbytes(first) if first is not None else 0),
                   flops=float(5 * (first.numel() if first is not None else 0)))
    else:
        rec["flops"] = float(max((t.numel() for t in outs), default=0))
    return rec


def recurrent_cost(phase: int, *, seq: int, batch: int, inputs: int, hidden: int, layers: int,
                   directions: int, gates: int = 4) -> dict[str, float]:
    """Cost record of a fused recurrent layer stack (oneDNN LSTM on CPU), forward (``phase`` 0) or
    backward (1): per layer, direction and time step one ``[batch, inputs + hidden] × [.., gates·hidden]``
    GEMM (backward: two, for the data and the weight gradients), plus the gate arithmetic. The GEMM shape
    of the recorded op is one time step's; ``flops`` and ``bytes`` cover the whole sequence."""
    flops, nbytes = 0.0, 0.0
    for layer in range(layers):
        width = (inputs if layer == 0 else hidden * directions) + hidden
        gemm = 2.0 * seq * batch * width * gates * hidden * directions
        flops += gemm * (2.0 if phase else 1.0) + 10.0 * seq * batch * gates * hidden * directions
        nbytes += 4.0 * (seq * batch * (width + (gates + 2) * hidden) + width * gates * hidden) * directions
    return {"kind": KIND["recurrent"], "flops": flops, "bytes": nbytes,
            "out_bytes": 4.0 * seq * batch * hidden,
            "b": 1, "m": batch, "n": gates * hidden, "k": inputs + hidden, "rng": 0.0,
            "rated": 0, "elements": 0.0, "phase": phase, "fused_bytes": 0.0, "fused": 0}
