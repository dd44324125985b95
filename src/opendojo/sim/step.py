"""The step-time model: one training step of a workload under a parallel layout on a system.

Per micro-batch, the slowest pipeline stage runs ``ceil(L/pp)`` blocks plus the output head and loss
(other workloads: ``1/pp`` of the ops) of the forward and backward passes, each op split ``tp``
ways (:func:`opendojo.sim.device_time.table_time`), plus its tensor-parallel all-reduces (Megatron:
two per block forward, two backward, on the critical path) and its stage-boundary sends. A 1F1B
pipeline of ``m`` micro-batches takes ``(m + pp − 1)`` micro-batch times; the ``pp − 1`` extra are the
bubble. Then the gradient all-reduce over the data-parallel group, overlapped with the last backward
pass (only the excess is exposed), and the optimizer step on this device's share of the parameters.

On Dojo, a tile's working set (weights, gradients, optimizer state, activations in flight) lives in
its SRAM; what does not fit spills to the tile's share of DIP HBM and is streamed once or twice per
step (optimizer state and activations first, weights last, as they are touched most). The streaming
overlaps with compute; only its excess is exposed. Inside a tile, layers are split over its 25 D1
dies, which costs tensor-parallel-like all-reduces on the D1 edge links (transformers only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from opendojo.hw.system import System
from opendojo.sim.collectives import (
    allreduce_time,
    group_link,
    half_allreduce_time,
    intra_tile_link,
    p2p_time,
)
from opendojo.sim.device_time import BYTE_SCALE, PhaseTime, table_time
from opendojo.sim.layout import Layout
from opendojo.sim.ops import KIND
from opendojo.sim.workload import Workload

#: Spill order on Dojo with the accesses per step each byte costs (read = 1, write = 1).
_SPILL_ORDER = (("optimizer", 2.0), ("master", 2.0), ("activations", 2.0), ("grads", 2.0), ("weights", 3.0))


@dataclass(frozen=True)
class StepEstimate:
    """Everything the model says about one step; times in s, memory in B per device."""

    layout: Layout
    batch: int
    step_time_s: float
    breakdown: dict[str, float]
    communication: dict[str, float]
    memory: dict[str, float]
    capacity_bytes: float
    fits: bool
    model_flops: float
    hardware_flops: float
    spilled_bytes: float = 0.0
    notes: list[str] = field(default_factory=list)


def _boundary_bytes_per_sample(w: Workload) -> float:
    """fp32 bytes crossing a pipeline-stage boundary per sample (a block's output)."""
    if w.tp_bytes_per_sample > 0:
        return w.tp_bytes_per_sample / 4.0
    return max(w.act_bytes1, 0.0) / max(w.layers, 1)


def _replicated_bytes_per_sample(w: Workload, layout: Layout) -> float:
    """fp32 activation bytes per sample and block that tensor parallelism leaves replicated on every TP
    rank: without sequence parallelism, the inputs of the two norms and of the two column-parallel GEMMs
    (the norms' outputs), four ``[s, h]`` tensors (Korthikanti et al. 2022: the ``10 sbh`` term,
    less the dropout masks the reference models do not have). With ``sp`` they are split as well."""
    if layout.tp == 1 or layout.sp or w.tp_bytes_per_sample <= 0:
        return 0.0
    return w.tp_bytes_per_sample  # four [s, h] fp32 tensors per sample: the same size as the TP payload


def memory_per_device(w: Workload, layout: Layout, precision: str, microbatches: int = 1,
                      fused: bool = False) -> dict[str, float]:
    """Bytes per device: weights, fp32 master copy, gradients, optimizer state, activations in flight
    (1F1B keeps ``min(pp, microbatches)`` micro-batches of activations on the first stage). ``fused``: a
    compiled graph (GPU with pointwise fusion, Dojo) recomputes memory-bound ops in the backward pass
    instead of saving their outputs (:meth:`Workload.activation_bytes`)."""
    n_local = w.params / (layout.tp * layout.pp)
    shard = layout.dp if layout.zero else 1
    grad_shard = layout.dp if layout.zero >= 2 else 1
    mixed = precision != "fp32"
    m = layout.microbatch
    scale = BYTE_SCALE[precision]
    rep = _replicated_bytes_per_sample(w, layout)
    if layout.recompute and w.tp_bytes_per_sample > 0:
        # Full recomputation keeps each block's input ([s, h]; split over TP only with sp) and, during the
        # backward pass of one block, that block's activations (for one micro-batch only).
        slope = w.activation_bytes(1, fused) - w.activation_bytes(0, fused)
        per_layer_full = max(slope, 0.0) / max(w.layers, 1)
        per_layer_full = (max(per_layer_full - rep, 0.0) / layout.tp + min(rep, per_layer_full)) * m * scale
        boundary = _boundary_bytes_per_sample(w) / (layout.tp if layout.sp else 1)
        act_mb = boundary * w.layers / layout.pp * m * scale
    else:
        per_layer_full = 0.0
        act_mb = (max(w.activation_bytes(m, fused), 0.0) / layout.tp
                  + rep * (1.0 - 1.0 / layout.tp) * w.layers * m) * scale / layout.pp
    return {
        "weights": n_local * (2.0 if mixed else 4.0),
        "master": n_local * 4.0 / shard if mixed else 0.0,
        "grads": n_local * (2.0 if mixed else 4.0) / grad_shard,
        "optimizer": n_local * (w.optimizer_bytes / max(w.params, 1)) / shard,
        # 1F1B: the first stage holds min(pp, m) micro-batches; interleaving adds (pp-1)/(pp*vp) more.
        "activations": act_mb * min(layout.pp, max(microbatches, 1))
        * (1.0 + (layout.pp - 1) / (layout.pp * layout.vp) if layout.vp > 1 else 1.0) + per_layer_full,
    }


def _split_time(ops: dict, s: System, precision: str, layout: Layout, mask) -> PhaseTime:
    """Table time of the ops in ``mask`` split ``tp`` ways; without sequence parallelism the norms run
    whole on every TP rank (they sit outside the tensor-parallel GEMMs)."""
    if layout.tp == 1 or layout.sp:
        return table_time(ops, s.device, precision, s.caps, split=layout.tp, mask=mask,
                          fusion=s.pointwise_fusion)
    norm = ops["kind"] == KIND["norm"]
    return (table_time(ops, s.device, precision, s.caps, split=layout.tp, mask=mask & ~norm,
                       fusion=s.pointwise_fusion)
            + table_time(ops, s.device, precision, s.caps, split=1, mask=mask & norm,
                         fusion=s.pointwise_fusion))


def _stage_time(w: Workload, ops: dict, s: System, precision: str, layout: Layout, mask,
                memo: dict | None = None, key: object = None) -> PhaseTime:
    """Time of the slowest pipeline stage for the ops in ``mask``, per micro-batch.

    For a stack of blocks the stages hold ``ceil(L / pp)`` blocks and one of them also the non-block
    ops (the output head and loss dominate them; the embedding is a lookup): the pipeline runs at that
    stage's pace. Other workloads are assumed to split evenly. ``memo`` caches table times across the
    layouts of one search (they depend only on micro-batch, tp and the ops selected)."""
    mkey = (key, layout.microbatch, layout.tp, layout.sp or layout.tp == 1)
    if memo is not None and mkey in memo:
        total, base = memo[mkey]
    else:
        total = _split_time(ops, s, precision, layout, mask)
        base = None
        group = ops["group"]
        if np.any(group > 0) and w.layers >= 2:
            base_ops = dict(ops, count=np.where(group == 1, 2.0, np.where(group == 2, -1.0, ops["count"])))
            base = _split_time(base_ops, s, precision, layout, mask)
        if memo is not None:
            memo[mkey] = (total, base)
    if layout.pp == 1 or base is None:
        return total.scaled(1 / layout.pp)
    per_block = (total + base.scaled(-1.0)).scaled(1.0 / w.layers)
    return per_block.scaled(math.ceil(w.layers / layout.pp)) + base


def unknown_op_notes(w: Workload, ops: dict, s: System, precision: str, step_time_s: float) -> list[str]:
    """One note per op that no op class claims (kind ``unknown``): its name, count per step and estimated
    share of the step. Such an op is timed as a memory-bound elementwise op; the note says so."""
    unknown = ops["kind"] == KIND["unknown"]
    if not np.any(unknown):
        return []
    names = np.asarray(w.op_names)
    notes = []
    for name in sorted(set(names[unknown])):
        mask = unknown & (names == name)
        t = table_time(ops, s.device, precision, s.caps, mask=mask, fusion=s.pointwise_fusion).total
        count = float(np.sum(ops["count"][mask]))
        notes.append(f"unknown op aten.{name}: {count:.0f} per step, estimated {100 * t / step_time_s:.1f} % "
                     f"of the step (no cost model for its class; timed as a memory-bound elementwise op)")
    return notes


def _micro_batches(w: Workload, s: System, layout: Layout, batch: int) -> int:
    """Micro-batches per data-parallel replica; a one-line error naming the constraint a layout breaks."""
    if layout.devices != s.devices:
        raise ValueError(f"parallel layout dp*tp*pp = {layout.dp}*{layout.tp}*{layout.pp} = {layout.devices} "
                         f"does not match the {s.devices} devices of {s.name!r}")
    if batch % layout.dp:
        raise ValueError(f"batch={batch} is not divisible by dp={layout.dp}")
    for what, size in w.tp_dims.items():
        if size % layout.tp:
            raise ValueError(f"tp={layout.tp} does not divide the {size} {what} of {w.name!r}; "
                             f"choose a tp that divides {size}")
    if layout.pp > w.layers:
        raise ValueError(f"pp={layout.pp} exceeds the {w.layers} blocks of {w.name!r}; a pipeline stage "
                         f"holds at least one block")
    per_replica = batch // layout.dp
    if per_replica % layout.microbatch:
        raise ValueError(f"batch per data-parallel replica ({per_replica}) is not divisible by "
                         f"microbatch={layout.microbatch}")
    m = per_replica // layout.microbatch
    if layout.vp > 1 and (m % layout.pp or layout.pp * layout.vp > w.layers):
        raise ValueError(f"vp={layout.vp} needs the micro-batch count ({m}) to be a multiple of "
                         f"pp={layout.pp} and pp*vp <= {w.layers} blocks")
    return m


def _memoised(memo: dict | None, key: object, compute):
    """``compute()``, cached in ``memo`` under ``key`` when a layout search shares one."""
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _optimizer_time(w: Workload, s: System, ops: dict, precision: str, layout: Layout,
                    memo: dict | None) -> PhaseTime:
    """The optimizer step on this device's parameter shard. Its compute and memory time scale as 1/shard;
    its dispatch cost follows the device's ``optimizer_dispatch`` capability."""
    opt_mask = ops["phase"] == 2
    full = _memoised(memo, ("opt", layout.microbatch), lambda: table_time(
        ops, s.device, precision, s.caps, mask=opt_mask, fusion=s.pointwise_fusion))
    shard = layout.tp * layout.pp * (layout.dp if layout.zero else 1)
    dispatch = full.overhead
    if s.caps.optimizer_dispatch == "per-tensor" and s.device.optimizer_tensor_s:
        dispatch = w.param_tensors * s.device.optimizer_tensor_s  # a Python loop over parameter tensors
    elif s.caps.optimizer_dispatch == "foreach":
        dispatch = int(np.sum(opt_mask)) * s.device.op_overhead_s  # one launch per template op
    return PhaseTime(full.compute / shard, full.memory / shard, dispatch)


def _model_parallel_comm(w: Workload, s: System, layout: Layout, precision: str, notes: list[str]
                         ) -> tuple[float, float, float]:
    """Per micro-batch seconds of tensor-parallel all-reduces, intra-device all-reduces (Dojo: between the
    D1 dies of a tile) and pipeline-stage sends, all on the critical path."""
    u = layout.microbatch
    layers_here = w.layers / layout.pp
    # Tensor-parallel all-reduces: 4 per block (2 forward, 2 backward), each of [tokens, d_model].
    ar_bytes = w.tp_bytes_per_sample / 4.0 * u * BYTE_SCALE[precision]
    n_ar = 4.0 + (2.0 if layout.recompute else 0.0)
    t_tp = layers_here * n_ar * allreduce_time(ar_bytes, layout.tp, group_link(s, layout.tp, 1))
    t_intra = 0.0
    if s.device.intra_ways > 1:
        if w.tp_bytes_per_sample > 0:
            t_intra = layers_here * n_ar * allreduce_time(ar_bytes / layout.tp, s.device.intra_ways,
                                                          intra_tile_link(s))
        else:
            notes.append("intra-tile traffic between D1 dies is not modelled for non-transformer workloads")
    t_p2p = 0.0
    if layout.pp > 1:
        edge = _boundary_bytes_per_sample(w) * u * BYTE_SCALE[precision] / layout.tp
        t_p2p = 2.0 * layout.vp * p2p_time(edge, group_link(s, layout.pp, layout.tp * layout.dp))
    return t_tp, t_intra, t_p2p


def _data_parallel_comm(w: Workload, s: System, layout: Layout, m: int, precision: str,
                        backward_s: float) -> tuple[float, float]:
    """(seconds of gradient communication per step, the part hidden behind backward passes)."""
    grad_bytes = w.params / (layout.tp * layout.pp) * (2.0 if precision != "fp32" else 4.0)
    dp_link = group_link(s, layout.dp, layout.tp)
    overlap = s.caps.overlap_communication
    if layout.zero >= 2:
        # ZeRO-2 / FSDP SHARD_GRAD_OP: each micro-batch's gradient is reduce-scattered into its shard
        # (overlapping that micro-batch's backward), the updated weights are all-gathered after the
        # optimizer step (exposed: the next forward needs them).
        t_rs = half_allreduce_time(grad_bytes, layout.dp, dp_link)
        return m * t_rs + half_allreduce_time(grad_bytes, layout.dp, dp_link), (
            m * min(t_rs, backward_s) if overlap else 0.0)
    t_dp = allreduce_time(grad_bytes, layout.dp, dp_link)
    return t_dp, min(t_dp, backward_s) if overlap else 0.0


def _spill_time(s: System, memory: dict[str, float]) -> tuple[float, float]:
    """(bytes beyond device memory, seconds to stream them per step) where the device spills to slower
    memory (Dojo: SRAM to DIP HBM) in :data:`_SPILL_ORDER`; (0, 0) where it fits or cannot spill."""
    used = sum(memory.values())
    if s.device.spill_bytes <= 0 or used <= s.device.mem_bytes:
        return 0.0, 0.0
    spilled = used - s.device.mem_bytes
    left, traffic = spilled, 0.0
    for name, accesses in _SPILL_ORDER:
        take = min(left, memory[name])
        traffic += take * accesses
        left -= take
    t_spill = traffic / (s.device.spill_bw * s.device.eff_mem_bw) if s.device.spill_bw else float("inf")
    return spilled, t_spill


def estimate_step(w: Workload, s: System, layout: Layout, batch: int, precision: str,
                  memo: dict | None = None) -> StepEstimate:
    """Predict one step of ``w`` on ``s`` with ``layout`` at global ``batch`` (samples) and ``precision``.

    ``memo``: a dict shared by the calls of one layout search (same workload, system and precision)."""
    m = _micro_batches(w, s, layout, batch)
    u = layout.microbatch
    ops = _memoised(memo, ("ops", u), lambda: w.at(u))
    fwd = _stage_time(w, ops, s, precision, layout, ops["phase"] == 0, memo, "fwd")
    bwd = _stage_time(w, ops, s, precision, layout, ops["phase"] == 1, memo, "bwd")
    if layout.recompute:
        bwd = bwd + fwd
    opt = _optimizer_time(w, s, ops, precision, layout, memo)
    notes: list[str] = []
    t_tp, t_intra, t_p2p = _model_parallel_comm(w, s, layout, precision, notes)
    per_microbatch = fwd.total + bwd.total + t_tp + t_intra + t_p2p
    t_dp, hidden_dp = _data_parallel_comm(w, s, layout, m, precision, bwd.total)
    memory = memory_per_device(w, layout, precision, m, fused=s.pointwise_fusion)
    spilled, t_spill = _spill_time(s, memory)
    compute = m * (fwd.compute + bwd.compute) + opt.compute
    breakdown = {
        "compute": compute,
        "memory": m * (fwd.memory + bwd.memory) + opt.memory + max(0.0, t_spill - compute),
        "overhead": m * (fwd.overhead + bwd.overhead) + opt.overhead,
        "exposed_communication": m * (t_tp + t_intra + t_p2p) + (t_dp - hidden_dp),
        "bubble": (layout.pp - 1) / layout.vp * per_microbatch,
    }
    step = float(sum(breakdown.values()))
    communication = {"total": m * (t_tp + t_intra + t_p2p) + t_dp, "hidden": hidden_dp, "data_parallel": t_dp,
                     "tensor_parallel": m * t_tp, "intra_tile": m * t_intra, "pipeline_p2p": m * t_p2p,
                     "spill_streaming": t_spill}
    fb = (ops["phase"] == 0) | (ops["phase"] == 1)
    model_flops = float(np.sum(ops["count"][fb] * ops["flops"][fb])) * layout.dp * m
    hw_flops = model_flops * (4.0 / 3.0 if layout.recompute else 1.0)
    notes += unknown_op_notes(w, ops, s, precision, step)
    return StepEstimate(layout, batch, step, breakdown, communication, memory, s.capacity_bytes,
                        sum(memory.values()) <= s.capacity_bytes, model_flops, hw_flops, spilled, notes)
