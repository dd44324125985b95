"""``simulate(workload, system, ...)``: choose a parallel layout, predict the step, name H100-equivalents.

Without ``parallel``, every layout that divides the devices and the batch is tried (tensor parallelism
up to the NVLink domain on GPUs, pipeline stages up to the number of blocks, micro-batch sizes, with and
without activation recomputation) and the fastest one that fits memory wins. Fixed choices in
``parallel`` ("dp=..,tp=..,pp=..,mb=..,zero=..,recompute=..,sp=..") narrow the search. Transformers with
tp > 1 use sequence parallelism unless ``sp=0``; ZeRO-1 and ZeRO-2 are both tried when dp > 1.
"""

from __future__ import annotations

import math
from dataclasses import replace

from opendojo.hw.system import PRECISIONS, System, count_of, load_system, total
from opendojo.sim.catalog import load_workload
from opendojo.sim.layout import Layout, parse_parallel
from opendojo.sim.result import SimResult
from opendojo.sim.step import StepEstimate, estimate_step, memory_per_device
from opendojo.sim.workload import Workload

#: One H100 SXM's dense BF16 peak (FLOP/s) and a DGX H100's power per GPU (W), from hw/specs.
H100_PEAK_BF16 = total("h100", "peak_flops_bf16")
H100_DGX_W_PER_GPU = total("h100-dgx", "power_w") / count_of("h100-dgx", "h100")
H100_EQ_DEFINITIONS = {
    "peak": f"peak BF16 FLOP/s / {H100_PEAK_BF16 / 1e12:.1f} TFLOP/s (one H100 SXM)",
    "delivered": "samples/s on this workload / samples/s per H100 on the same workload and batch "
                 "(the best of H100 clusters of about equal peak, each with its own best layout; batch "
                 "also rounded up to a multiple of the GPU count)",
    "power": f"system power / {H100_DGX_W_PER_GPU:,.0f} W (DGX H100 power per GPU)",
}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _candidates(w: Workload, s: System, batch: int, fixed: dict[str, int]) -> list[Layout]:
    n = s.devices
    transformer = w.tp_bytes_per_sample > 0
    # Tensor parallelism stays inside the scale-up (NVLink) domain where the system has one.
    tps = [t for t in s.caps.tensor_parallel if n % t == 0 and (s.scale_up_size <= 1 or t <= s.scale_up_size)
           and all(size % t == 0 for size in w.tp_dims.values())]
    if not transformer:
        tps = [1]
    if "tp" in fixed:
        tps = [fixed["tp"]]
    out = []
    for tp in tps:
        if n % tp:
            continue
        pps = [p for p in _divisors(n // tp) if p <= w.layers] if s.caps.pipeline else [1]
        if "pp" in fixed:
            pps = [fixed["pp"]]
        for pp in pps:
            if (n // tp) % pp:
                continue
            dp = n // (tp * pp)
            if "dp" in fixed and fixed["dp"] != dp:
                continue
            if batch % dp:
                continue
            r = batch // dp
            us = sorted({u for u in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, r) if u <= r and r % u == 0})
            if "microbatch" in fixed:
                us = [fixed["microbatch"]]
            # ZeRO-1 whenever there is data parallelism (it only saves memory); ZeRO-2 as an option (it
            # also shards gradients, for more communication per micro-batch).
            zeros = [fixed["zero"]] if "zero" in fixed else ([1, 2] if dp > 1 else [0])
            rcs = [bool(fixed["recompute"])] if "recompute" in fixed else ([False, True] if transformer
                                                                            else [False])
            # Sequence parallelism with TP (Korthikanti et al. 2022): same communication volume, less
            # memory, norms split: never worse, so on unless fixed off.
            sp = bool(fixed.get("sp", 1)) and tp > 1
            for u in us:
                m = r // u
                vps = [v for v in (1, 2, 4, 8) if v == 1 or (pp > 1 and m % pp == 0 and pp * v <= w.layers)]
                if "vp" in fixed:
                    vps = [fixed["vp"]]
                out += [Layout(dp, tp, pp, u, z, rc, vp, sp) for z in zeros for rc in rcs for vp in vps]
    return out


def _explain_no_layout(w: Workload, s: System, batch: int, fixed: dict[str, int]) -> str:
    n = s.devices
    if fixed and all(k in fixed for k in ("dp", "tp", "pp")):
        prod = fixed["dp"] * fixed["tp"] * fixed["pp"]
        if prod != n:
            return (f"parallel layout dp*tp*pp = {fixed['dp']}*{fixed['tp']}*{fixed['pp']} = {prod} does not "
                    f"divide the work over the {n} devices of {s.name!r}; the product must equal {n}")
    if fixed.get("tp", 1) > 1 and w.tp_bytes_per_sample == 0:
        return (f"tensor parallelism (tp={fixed['tp']}) is modelled for transformer workloads only, "
                f"not {w.name!r}")
    for k in ("tp", "pp", "dp"):
        if k in fixed and n % fixed[k]:
            return f"parallel {k}={fixed[k]} does not divide the {n} devices of {s.name!r}"
    if fixed.get("pp", 1) > w.layers:
        return f"pp={fixed['pp']} exceeds the {w.layers} blocks of {w.name!r}"
    return (f"no layout of {n} devices divides batch={batch}: the data-parallel degree must divide "
            f"the batch; "
            f"choose a batch that is a multiple of the data-parallel degree (e.g. {n}) or fix dp/tp/pp")


def best_step(w: Workload, s: System, batch: int, precision: str, parallel=None, *,
              check_memory: bool = True) -> StepEstimate:
    """The fastest fitting layout's :class:`StepEstimate`; a clear error if none exists or fits.

    ``check_memory=False`` (validation diagnostics only) times layouts whether they fit or not; the
    result's ``fits`` still says whether the model thinks it does."""
    fixed = parse_parallel(parallel)
    if isinstance(fixed, Layout):
        return estimate_step(w, s, fixed, batch, precision)
    fixed = fixed or {}
    if fixed.get("tp", 1) > 1 and w.tp_bytes_per_sample == 0:
        raise ValueError(_explain_no_layout(w, s, batch, fixed))
    cands = _candidates(w, s, batch, fixed)
    if not cands:
        raise ValueError(_explain_no_layout(w, s, batch, fixed))
    best, smallest, memo = None, None, {}
    capacity = s.capacity_bytes
    # Two stages: every layout without interleaving, then interleaving (vp > 1) only for the few fastest
    # (interleaving shrinks the bubble, adds sends and memory; it never rescues a layout that does not fit).
    first = cands if "vp" in fixed else [c for c in cands if c.vp == 1]
    timed: list[StepEstimate] = []
    for stage in (first, None):
        if stage is None:
            top = {replace(e.layout, vp=1) for e in sorted(timed, key=lambda e: e.step_time_s)[:6]}
            stage = [c for c in cands if c.vp > 1 and replace(c, vp=1) in top] if "vp" not in fixed else []
        for layout in stage:
            # Memory first (cheap): a layout that cannot fit is never timed.
            mem = memory_per_device(w, layout, precision, batch // layout.dp // layout.microbatch,
                                    fused=s.pointwise_fusion)
            need = sum(mem.values())
            if layout.zero == 2 and not s.device.spill_bytes and "zero" not in fixed and check_memory:
                # ZeRO-2 only saves memory; its step is never faster than ZeRO-1's (the same work, more
                # DP traffic), so time it only where ZeRO-1 does not fit. (Where memory spills, as on
                # Dojo, less memory means less spill traffic, so both are timed.)
                z1 = memory_per_device(w, replace(layout, zero=1), precision,
                                       batch // layout.dp // layout.microbatch, fused=s.pointwise_fusion)
                if sum(z1.values()) <= capacity:
                    continue
            if smallest is None or need < smallest[1]:
                smallest = (layout, need, mem)
            if need > capacity and check_memory:
                continue
            est = estimate_step(w, s, layout, batch, precision, memo)
            if est.fits or not check_memory:
                timed.append(est)
                if best is None or est.step_time_s < best.step_time_s:
                    best = est
    if best is None:
        layout, _, mem = smallest
        where = s.caps.memory_name
        raise ValueError(
            f"{w.name!r} fits nowhere on {s.name!r} ({s.devices} x {s.device.name}) at batch {batch}, "
            f"{precision}: the leanest layout ({layout.describe()}) needs "
            f"{sum(mem.values()) / 1e9:.3g} GB per device (" +
            ", ".join(f"{k} {v / 1e9:.3g} GB" for k, v in mem.items() if v) +
            f") but a device has {capacity / 1e9:.3g} GB of {where}; use more devices "
            f"(--nodes) or a smaller batch")
    return best


def _default_batch(w: Workload, s: System) -> int:
    """The workload's fixed global batch (LLMs), else its per-device batch per H100's worth of peak
    (a 9 PF Dojo tile gets about nine GPUs' share), rounded up to a multiple of the device count."""
    if w.default_global_batch:
        return w.default_global_batch
    units = max(s.devices, round(s.devices * s.device.peak_flops["bf16"] / H100_PEAK_BF16))
    batch = w.default_batch_per_device * units
    return s.devices * -(-batch // s.devices)


def _resolve(workload, system, nodes) -> tuple[Workload, System]:
    w = workload if isinstance(workload, Workload) else load_workload(workload)
    s = system if isinstance(system, System) else load_system(system)
    if nodes is not None:
        s = s.with_devices(nodes)
    return w, s


#: (id of the workload, batch, precision, peak) → (the workload, samples/s per H100). The workload is held
#: so its id cannot be reused; a sweep over a Dojo quantity asks the same H100 question at every point.
_PER_H100: dict[tuple, tuple[Workload, float]] = {}


def _delivered_per_h100(w: Workload, batch: int, precision: str, peak_flops: float) -> float:
    """Samples/s per H100 on ``w`` at ``batch``: an H100 cluster of about the same peak, best layout."""
    key = (id(w), batch, precision, peak_flops)
    if key in _PER_H100 and _PER_H100[key][0] is w:
        return _PER_H100[key][1]
    value = _delivered_per_h100_uncached(w, batch, precision, peak_flops)
    if len(_PER_H100) > 256:  # a long-lived process sweeping many workloads: start over
        _PER_H100.clear()
    _PER_H100[key] = (w, value)
    return value


def _delivered_per_h100_uncached(w: Workload, batch: int, precision: str, peak_flops: float) -> float:
    # A power of two near the equal-peak GPU count divides typical batches; grow it if the model won't fit.
    n = 2 ** max(3, round(math.log2(max(peak_flops / H100_PEAK_BF16, 1.0))))
    h100 = load_system("h100-cluster-16k")
    last_error = None
    tries = [(n, batch), (n // 2, batch), (n * 2, batch), (n, n * -(-batch // n)), (n * 4, batch),
             (n * 4, 4 * n * -(-batch // (4 * n)))]
    best = 0.0
    for n_try, b_try in tries:
        if n_try < 8:
            continue
        try:
            est = best_step(w, h100.with_devices(n_try), b_try, precision)
            best = max(best, b_try / est.step_time_s / n_try)  # the H100 at its best of these setups
        except ValueError as e:  # does not fit or does not divide: try a neighbouring size or batch
            last_error = e
    if best > 0:
        return best
    raise ValueError(f"no H100 reference for {w.name!r} at batch {batch}: {last_error}")


def simulate(workload: str | Workload, system: str | System, *, nodes: int | None = None,
             batch: int | None = None, precision: str = "bf16", parallel: str | dict | Layout | None = None,
             h100_eq: str = "delivered", fusion: bool | None = None) -> SimResult:
    """Simulate one training step of ``workload`` on ``system``.

    ``workload``: a built-in name (``opendojo.sim.list_workloads()``), ``path.py:function`` or a
    :class:`Workload`; ``system``: a name (``opendojo.hw.list_systems()``) or a :class:`System`;
    ``nodes``: number of devices (tiles on Dojo, GPUs) overriding the system's; ``batch``: global batch
    in samples (default: the workload's); ``precision``: ``bf16``, ``cfloat8`` or ``fp32``;
    ``parallel``: e.g. ``"dp=8,tp=4,pp=2"`` (missing choices are searched); ``h100_eq``: which
    H100-equivalent definition goes in ``value`` (``peak``, ``delivered``, ``power``; all are reported);
    ``fusion``: whether pointwise ops that feed each other run as one kernel (default: yes on GPUs, as
    with torch.compile; ``False`` models eager PyTorch). Dojo runs a compiled graph out of SRAM anyway.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: allowed {', '.join(PRECISIONS)}")
    if h100_eq not in H100_EQ_DEFINITIONS:
        raise ValueError(f"h100_eq={h100_eq!r}: allowed {', '.join(H100_EQ_DEFINITIONS)}")
    w, s = _resolve(workload, system, nodes)
    if fusion is not None:
        s = replace(s, pointwise_fusion=bool(fusion))
    if precision not in s.caps.precisions:
        raise ValueError(f"precision={precision!r} on {s.name!r}: allowed {', '.join(s.caps.precisions)} "
                         f"(the precisions its device model covers)")
    if batch is None:
        batch = _default_batch(w, s)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch={batch!r}: must be a positive integer number of samples")
    est = best_step(w, s, batch, precision, parallel)
    peak = s.devices * s.device.peak_flops[precision]
    peak_bf16 = s.devices * s.device.peak_flops["bf16"]
    power = s.devices * s.device.power_w
    samples_s = batch / est.step_time_s
    eq = {"peak": {"value": peak_bf16 / H100_PEAK_BF16, "definition": H100_EQ_DEFINITIONS["peak"]},
          "power": {"value": power / H100_DGX_W_PER_GPU, "definition": H100_EQ_DEFINITIONS["power"]}}
    try:
        per = _delivered_per_h100(w, batch, precision if precision != "fp32" else "bf16", peak_bf16)
        eq["delivered"] = {"value": samples_s / per, "definition": H100_EQ_DEFINITIONS["delivered"]}
    except ValueError as e:
        eq["delivered"] = {"value": float("nan"), "definition": f"unavailable: {e}"}
    chosen = eq[h100_eq]
    return SimResult(
        workload=w.name, system=s.name, devices=s.devices, device=s.device.name, precision=precision,
        batch=batch, layout=est.layout.describe(), step_time_s=est.step_time_s, breakdown=est.breakdown,
        communication=est.communication, achieved_flops=est.model_flops / est.step_time_s,
        mfu=est.model_flops / est.step_time_s / peak, hfu=est.hardware_flops / est.step_time_s / peak,
        memory_per_device_bytes=sum(est.memory.values()),
        memory_detail=est.memory, capacity_per_device_bytes=est.capacity_bytes, fits=est.fits, power_w=power,
        energy_per_step_j=power * est.step_time_s, samples_per_s=samples_s, sample=w.sample,
        h100_equivalents={"value": chosen["value"], "definition": f"{h100_eq}: {chosen['definition']}",
                          "all": eq},
        hypothetical=s.hypothetical, notes=list(w.notes) + est.notes)

