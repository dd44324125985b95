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

#: Fraction of device memory usable by the model (CUDA context, NCCL buffers, allocator slack; the OS).
USABLE_MEMORY = {"gpu": 0.95, "cpu": 0.9, "dojo": 1.0}
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
        return table_time(ops, s.device, precision, s.family, split=layout.tp, mask=mask,
                          fusion=s.pointwise_fusion)
    norm = ops["kind"] == KIND["norm"]
    return (table_time(ops, s.device, precision, s.family, split=layout.tp, mask=mask & ~norm,
                       fusion=s.pointwise_fusion)
            + table_time(ops, s.device, precision, s.family, split=1, mask=mask & norm,
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
        t = table_time(ops, s.device, precision, s.family, mask=mask, fusion=s.pointwise_fusion).total
        count = float(np.sum(ops["count"][mask]))
        notes.append(f"unknown op aten.{name}: {count:.0f} per step, estimated {100 * t / step_time_s:.1f} % "
                     f"of the step (no cost model for its class; timed as a memory-bound elementwise op)")
    return notes


def estimate_step(w: Workload, s: System, layout: Layout, batch: int, precision: str,
                  memo: dict | None = None) -> StepEstimate:
    """Predict one step of ``w`` on ``s`` with ``layout`` at global ``batch`` (samples) and ``precision``.

    ``memo``: a dict shared by the calls of one layout search (same workload, system and precision)."""
    if layout.devices != s.devices:
        raise ValueError(f"parallel layout dp*tp*pp = {layout.dp}*{layout.tp}*{layout.pp} = {layout.devices} "
                         f"does not match the {s.devices} devices of {s.name!r}")
    if batch % layout.dp:
        raise ValueError(f"batch={batch} is not divisible by dp={layout.dp}")
    per_replica = batch // layout.dp
    u = layout.microbatch
    if per_replica % u:
        raise ValueError(f"batch per data-parallel replica ({per_replica}) is not divisible by "
                         f"microbatch={u}")
    m = per_replica // u
    if layout.vp > 1 and (m % layout.pp or layout.pp * layout.vp > w.layers):
        raise ValueError(f"vp={layout.vp} needs the micro-batch count ({m}) to be a multiple of "
                         f"pp={layout.pp} and pp*vp <= {w.layers} blocks")
    if memo is not None and ("ops", u) in memo:
        ops = memo[("ops", u)]
    else:
        ops = w.at(u)
        if memo is not None:
            memo[("ops", u)] = ops
    phase = ops["phase"]
    fam = s.family
    fwd = _stage_time(w, ops, s, precision, layout, phase == 0, memo, "fwd")
    bwd = _stage_time(w, ops, s, precision, layout, phase == 1, memo, "bwd")
    if layout.recompute:
        bwd = bwd + fwd
    shard = layout.tp * layout.pp * (layout.dp if layout.zero else 1)
    # The optimizer's work is elementwise over this device's parameter shard: its compute and memory
    # time scale as 1/shard (dispatch cost is set per family below or is zero), so time it once.
    okey = ("opt", u)
    if memo is not None and okey in memo:
        opt_full = memo[okey]
    else:
        opt_full = table_time(ops, s.device, precision, fam, mask=phase == 2, fusion=s.pointwise_fusion)
        if memo is not None:
            memo[okey] = opt_full
    opt = PhaseTime(opt_full.compute / shard, opt_full.memory / shard, opt_full.overhead)
    if fam == "cpu" and s.device.optimizer_tensor_s:
        # Eager AdamW is a Python loop over parameter tensors: its dispatch cost is measured per tensor.
        opt = PhaseTime(opt.compute, opt.memory, w.param_tensors * s.device.optimizer_tensor_s)
    elif fam == "gpu":
        # On CUDA, PyTorch's default AdamW is the multi-tensor (foreach) one: one launch per template op
        # for all tensors, not one per tensor.
        n_template = int(np.sum(phase == 2))
        opt = PhaseTime(opt.compute, opt.memory, n_template * s.device.op_overhead_s)
    scale = BYTE_SCALE[precision]
    layers_here = w.layers / layout.pp
    # Tensor-parallel all-reduces: 4 per block (2 forward, 2 backward), each of [tokens, d_model].
    ar_bytes = w.tp_bytes_per_sample / 4.0 * u * scale
    n_ar = 4.0 + (2.0 if layout.recompute else 0.0)
    t_tp = layers_here * n_ar * allreduce_time(ar_bytes, layout.tp, group_link(s, layout.tp, 1))
    t_intra = 0.0
    notes: list[str] = []
    if fam == "dojo" and s.device.intra_ways > 1:
        if w.tp_bytes_per_sample > 0:
            t_intra = layers_here * n_ar * allreduce_time(ar_bytes / layout.tp, s.device.intra_ways,
                                                          intra_tile_link(s))
        else:
            notes.append("intra-tile traffic between D1 dies is not modelled for non-transformer workloads")
    t_p2p = 0.0
    if layout.pp > 1:
        edge = _boundary_bytes_per_sample(w) * u * scale / layout.tp
        t_p2p = 2.0 * layout.vp * p2p_time(edge, group_link(s, layout.pp, layout.tp * layout.dp))
    per_mb = fwd.total + bwd.total + t_tp + t_intra + t_p2p
    bubble = (layout.pp - 1) / layout.vp * per_mb
    grad_bytes = w.params / (layout.tp * layout.pp) * (2.0 if precision != "fp32" else 4.0)
    dp_link = group_link(s, layout.dp, layout.tp)
    if layout.zero >= 2:
        # ZeRO-2 / FSDP SHARD_GRAD_OP: each micro-batch's gradient is reduce-scattered into its shard
        # (overlapping that micro-batch's backward), the updated weights are all-gathered after the
        # optimizer step (exposed: the next forward needs them).
        t_rs = half_allreduce_time(grad_bytes, layout.dp, dp_link)
        t_dp = m * t_rs + half_allreduce_time(grad_bytes, layout.dp, dp_link)
        hidden_dp = m * min(t_rs, bwd.total) if fam != "cpu" else 0.0
    else:
        t_dp = allreduce_time(grad_bytes, layout.dp, dp_link)
        hidden_dp = min(t_dp, bwd.total) if fam != "cpu" else 0.0
    memory = memory_per_device(w, layout, precision, m, fused=s.pointwise_fusion)
    used = sum(memory.values())
    capacity = s.device.mem_bytes * USABLE_MEMORY[fam] + s.device.spill_bytes
    spilled, t_spill = 0.0, 0.0
    if fam == "dojo" and used > s.device.mem_bytes:
        spilled = used - s.device.mem_bytes
        left, traffic = spilled, 0.0
        for name, accesses in _SPILL_ORDER:
            take = min(left, memory[name])
            traffic += take * accesses
            left -= take
        t_spill = traffic / (s.device.spill_bw * s.device.eff_mem_bw) if s.device.spill_bw else float("inf")
    compute = m * (fwd.compute + bwd.compute) + opt.compute
    exposed_spill = max(0.0, t_spill - compute)
    breakdown = {
        "compute": compute,
        "memory": m * (fwd.memory + bwd.memory) + opt.memory + exposed_spill,
        "overhead": m * (fwd.overhead + bwd.overhead) + opt.overhead,
        "exposed_communication": m * (t_tp + t_intra + t_p2p) + (t_dp - hidden_dp),
        "bubble": bubble,
    }
    step = float(sum(breakdown.values()))
    comm_total = m * (t_tp + t_intra + t_p2p) + t_dp
    communication = {"total": comm_total, "hidden": hidden_dp, "data_parallel": t_dp,
                     "tensor_parallel": m * t_tp, "intra_tile": m * t_intra, "pipeline_p2p": m * t_p2p,
                     "spill_streaming": t_spill}
    fb = (phase == 0) | (phase == 1)
    model_flops = float(np.sum(ops["count"][fb] * ops["flops"][fb])) * layout.dp * m
    hw_flops = model_flops * (4.0 / 3.0 if layout.recompute else 1.0)
    notes += unknown_op_notes(w, ops, s, precision, step)
    return StepEstimate(layout, batch, step, breakdown, communication, memory, capacity, used <= capacity,
                        model_flops, hw_flops, spilled, notes)
