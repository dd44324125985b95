"""Time of an op table on one device: per-op efficiency curves, memory time, dispatch overhead.

For every op (vectorised over the table):

* matmul / conv / attention: ``flops / rate`` with ``rate = peak · eff_max · h(m) · h(n) · h(k)`` and
  ``h(d) = d / (d + d_half)`` — a saturating curve in each GEMM dimension (skinny shapes are slow,
  unlike a cube-root "equivalent size"); convolutions use their own ``eff_conv_max`` (or the measured
  conv rate on the host) and their implicit-GEMM shape.
* elementwise / normalisation / reductions: ``max(flops / vector_peak, bytes / (mem_bw · eff_mem_bw))``.
* random-number generation: on the host it is compute-bound at the measured ``rng_rate``; so are
  transcendental elementwise ops (GELU, SiLU, exp, …) at ``special_rate``, and the fused CPU attention
  kernel on its own measured curve over sequence length and head dimension, far below the GEMM rate.
* normalisation and pooling kernels on the host: their own measured element rates (``op_rates``).
* dispatch: on the host every aten op (views too) costs ``op_overhead_s`` in series (eager PyTorch is
  synchronous); on a GPU a kernel lasts at least the launch floor; on Dojo (a compiled graph) an op lasts
  at least its end-of-op barrier across the tile (``[U]``); fused pointwise ops launch nothing.
* oneDNN convolutions (host): a fixed cost per call, forward and backward, measured on convolutions
  too small to do any work (``conv_call_s``); the native CPU conv kernels do not pay it.
* first touch (host): fresh allocations of at least 32 MiB come from ``mmap`` (glibc's largest mmap
  threshold) and are page-faulted again every step, at ``first_touch_bw``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendojo.hw.system import Capabilities, Device
from opendojo.sim.ops import GEMM_ROLES, KIND, RATED_OPS

#: glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: larger blocks are always fresh mmap pages.
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: Bytes per element relative to the fp32 capture, for activations/weights at each precision.
BYTE_SCALE = {"fp32": 1.0, "bf16": 0.5, "cfloat8": 0.5}


@dataclass(frozen=True)
class PhaseTime:
    """Seconds spent by one pass over an op table, split by what bounds each op."""

    compute: float = 0.0
    memory: float = 0.0
    overhead: float = 0.0

    @property
    def total(self) -> float:
        return self.compute + self.memory + self.overhead

    def __add__(self, other: PhaseTime) -> PhaseTime:
        return PhaseTime(self.compute + other.compute, self.memory + other.memory,
                         self.overhead + other.overhead)

    def scaled(self, k: float) -> PhaseTime:
        return PhaseTime(self.compute * k, self.memory * k, self.overhead * k)


def _h(d: np.ndarray, half: float | np.ndarray) -> np.ndarray:
    d = np.maximum(d, 1.0)
    return d / (d + half)


def gemm_peak(ops: dict[str, np.ndarray], device: Device, precision: str, cfloat8_gemms: str) -> np.ndarray:
    """Peak FLOP/s per op for GEMM-like kernels. With ``cfloat8`` on a device whose ``cfloat8_gemms`` is
    ``opendojo.nn`` (a GPU running a converted model), only the Linear GEMMs named in
    ``opendojo.nn.FP8_GPU_GEMMS`` run at the FP8 peak; every other GEMM at the BF16 peak."""
    peak = np.full(len(ops["kind"]), device.peak_flops[precision])
    if precision != "cfloat8" or cfloat8_gemms == "native":
        return peak
    from opendojo.nn import FP8_GPU_GEMMS

    fp8_roles = [i for i, r in enumerate(GEMM_ROLES) if r and r in FP8_GPU_GEMMS]
    return np.where(np.isin(ops["role"], fp8_roles), peak, device.peak_flops["bf16"])


def _gemm_rates(ops: dict[str, np.ndarray], device: Device, precision: str, split: float,
                cfloat8_gemms: str) -> np.ndarray:
    """FLOP/s of every op as a GEMM-like kernel (matmul, attention, conv, recurrent) or a vector op."""
    kind = ops["kind"]
    gemm = (kind == KIND["matmul"]) | (kind == KIND["attention"])
    conv, rnn = kind == KIND["conv"], kind == KIND["recurrent"]
    half = np.full(len(kind), device.eff_matmul_half_dim)
    if device.conv_half_dim:
        half = np.where(conv, np.where(ops["phase"] == 1, device.conv_bwd_half_dim or device.conv_half_dim,
                                       device.conv_half_dim), half)
    shape_eff = _h(ops["m"], half) * _h(np.maximum(ops["n"] / split, 1.0), half) * _h(ops["k"], half)
    shape_eff = np.where(kind == KIND["attention"], 1.0, shape_eff)
    peak = gemm_peak(ops, device, precision, cfloat8_gemms)
    conv_peak = device.conv_flops if device.conv_flops else peak * device.eff_conv_max
    if device.conv_bwd_flops:
        conv_peak = np.where(ops["phase"] == 1, device.conv_bwd_flops, conv_peak)
    rnn_peak = peak * device.eff_matmul_max
    if device.rnn_flops:
        rnn_peak = np.where(ops["phase"] == 1, device.rnn_bwd_flops or device.rnn_flops, device.rnn_flops)
    rate = np.where(gemm, peak * device.eff_matmul_max,
                    np.where(conv, conv_peak, np.where(rnn, rnn_peak, device.vector_flops)))
    rate = np.where(gemm | conv | rnn, rate * shape_eff, rate)
    if device.attention_flops:
        rate = np.where(kind == KIND["attention"], _attention_rate(ops, device), rate)
    return rate


def _attention_rate(ops: dict[str, np.ndarray], device: Device) -> np.ndarray:
    """The measured fused-attention kernel's FLOP/s per op: its curve over ``s_q, s_k, d`` (``m, n, k``
    of an attention op) where calibrated, times its causal efficiency under a causal mask."""
    if not device.attention_half_dim:
        return np.full(len(ops["kind"]), device.attention_flops)
    half = device.attention_half_dim
    rate = device.attention_flops * _h(ops["m"], half) * _h(ops["n"], half) * _h(ops["k"], half)
    causal = ops["role"] == GEMM_ROLES.index("attention.causal")
    return np.where(causal, rate * (device.attention_causal_eff or 1.0), rate)


def _measured_compute(ops: dict[str, np.ndarray], device: Device, flops: np.ndarray, split: float,
                      t_compute: np.ndarray) -> np.ndarray:
    """Where the device has measured rates for an op class (the host calibration), use them: RNG samples,
    transcendental elements, and the element rate of each rated op (norms, pooling, softmax, gathers,
    scatter-adds, FFTs, sorts — ``ops.RATED_OPS``)."""
    kind = ops["kind"]
    if device.rng_rate:
        t_compute = np.where(kind == KIND["rng"], ops["rng"] / split / device.rng_rate, t_compute)
    if device.special_rate:
        t_compute = np.where(kind == KIND["special"], flops / device.special_rate, t_compute)
    if device.op_rates:
        # A class this calibration has no rate for (a cache written before the class existed) keeps its
        # op-class time instead of costing nothing.
        rates = np.asarray([np.nan] + [device.op_rates.get(n, np.nan) for n in RATED_OPS])[ops["rated"]]
        t_compute = np.where(np.isfinite(rates), ops["elements"] / split / rates, t_compute)
    return t_compute


def _conv_call_time(ops: dict[str, np.ndarray], device: Device) -> np.ndarray:
    """Fixed seconds per convolution on the host's oneDNN path (role ``conv.onednn``), forward or
    backward; zero elsewhere and on devices that have not measured it."""
    if not device.conv_call_s:
        return np.zeros(len(ops["kind"]))
    onednn = ops["role"] == GEMM_ROLES.index("conv.onednn")
    call = np.where(ops["phase"] == 1, device.conv_bwd_call_s or device.conv_call_s, device.conv_call_s)
    return np.where(onednn, call, 0.0)


def _memory_time(ops: dict[str, np.ndarray], device: Device, nbytes: np.ndarray, scale: np.ndarray,
                 split: float) -> np.ndarray:
    """Seconds of moving ``nbytes`` per op at the memory bandwidth, plus page-faulting fresh large
    allocations (host)."""
    t_mem = nbytes / (device.mem_bw * device.eff_mem_bw)
    if device.first_touch_bw:
        out = ops["out_bytes"] * scale
        fresh = np.where(out >= MMAP_THRESHOLD_BYTES, out / split, 0.0)
        t_mem = t_mem + fresh / device.first_touch_bw
    return t_mem


def table_time(ops: dict[str, np.ndarray], device: Device, precision: str, caps: Capabilities, *,
               split: float = 1.0, mask: np.ndarray | None = None, fusion: bool = False) -> PhaseTime:
    """Time of the ops selected by ``mask`` (default: all) of an evaluated op table (``Workload.at``).

    ``split`` divides every op's work ``split`` ways (tensor parallelism: FLOPs, bytes and the GEMM ``n``
    dimension shrink; the dispatch count does not). ``fusion`` models a pointwise-fusing compiler
    (torch.compile): a pointwise op fed by another skips re-reading that input and launches no kernel.
    ``caps``: the device's capabilities (how dispatch adds up, which GEMMs run at the cfloat8 peak).
    """
    kind, count = ops["kind"], ops["count"]
    sel = np.ones(len(kind), dtype=bool) if mask is None else mask
    is_opt = ops["phase"] == 2
    scale = np.where(is_opt, 1.0, BYTE_SCALE[precision])  # optimizer runs on fp32 master weights
    raw_bytes = ops["bytes"] - ops["fused_bytes"] if fusion and "fused_bytes" in ops else ops["bytes"]
    flops, nbytes = ops["flops"] / split, raw_bytes * scale / split
    t_gemm = flops / _gemm_rates(ops, device, precision, split, caps.cfloat8_gemms)
    t_compute = _measured_compute(ops, device, flops, split, t_gemm) + _conv_call_time(ops, device)
    t_mem = _memory_time(ops, device, nbytes, scale, split)
    free = (kind == KIND["view"]) | (kind == KIND["scalar"])
    t_compute = np.where(free, 0.0, t_compute)
    t_mem = np.where(free, 0.0, t_mem)
    busy = np.maximum(t_compute, t_mem)
    if caps.dispatch == "serial":  # eager CPU: every op, views too, pays its dispatch in series
        overhead = np.full(len(kind), device.op_overhead_s)
    else:  # GPU kernel launch floor; Dojo: the end-of-op barrier across the tile
        launched = ~free & ~((ops["fused"] > 0) if fusion and "fused" in ops else np.zeros(len(kind), bool))
        overhead = np.where(launched, np.maximum(device.op_overhead_s - busy, 0.0), 0.0)
    w = count * sel
    return PhaseTime(float(np.sum(w * t_compute)), float(np.sum(w * (busy - t_compute))),
                     float(np.sum(w * overhead)))
