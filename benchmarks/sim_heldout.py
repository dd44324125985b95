"""Held-out accuracy of the host step-time model, beside two naive anchors measured in the same run.

Draws N models from the families the calibration never runs (``opendojo.sim.families``), calibrates this
host, trains each a few steps (best of 2 passes x 4 steps, one thread, CPU time) and prints each model's
predicted/measured ratio for

* **sim**: the simulator (op classes, each fitted to shape by the calibration);
* **roofline**: FLOPs of one real training step counted by ``torch.utils.flop_counter.FlopCounterMode``
  divided by the measured fp32 matmul peak;
* **per-op**: every captured op at ``max(flops / peak, bytes / bandwidth)`` plus the measured per-op
  dispatch overhead — one rate for all compute;
* **no-call** (ablation): the simulator with the same calibration but without oneDNN's fixed cost per
  convolution call (``conv_call_s``), to judge that mechanism on the same measurements.

Then MAPE, median ratio, worst case and hits within ±30 % per predictor, and the simulator's MAPE per
family. A few minutes on a loaded 2-core machine.

    .venv/bin/python benchmarks/sim_heldout.py [--n 24] [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys

import numpy as np
import torch


def roofline_s(factory, batch: int, peak: float) -> float:
    """FlopCounterMode FLOPs of forward + backward of a real step / the fp32 peak (s)."""
    from torch.utils.flop_counter import FlopCounterMode

    from opendojo.sim.workload import scalar_loss

    model, inputs = factory(batch)
    with FlopCounterMode(display=False) as counter:
        scalar_loss(model(*inputs)).backward()
    return counter.get_total_flops() / peak


def per_op_s(result) -> float:
    """Sum over captured ops of max(FLOP / peak, bytes / bandwidth) + one dispatch overhead each (s)."""
    d = result.system.device
    ops = result.workload.at(result.batch)
    work = np.maximum(ops["flops"] / d.peak_flops["fp32"], ops["bytes"] / d.mem_bw)
    return float(np.sum(ops["count"] * (work + d.op_overhead_s)))


def without_conv_calls(result) -> float:
    """The simulator's step time (s) with oneDNN's per-call convolution cost switched off."""
    from dataclasses import replace

    from opendojo.sim.layout import Layout
    from opendojo.sim.step import estimate_step

    s = result.system
    system = replace(s, device=replace(s.device, conv_call_s=None, conv_bwd_call_s=None))
    return estimate_step(result.workload, system, Layout(microbatch=result.batch), result.batch,
                         "fp32").step_time_s


def summary(name: str, ratios: list[float]) -> str:
    errs = [abs(r - 1) for r in ratios]
    worst = max(ratios, key=lambda r: abs(r - 1))
    hits = sum(e <= 0.30 for e in errs)
    return (f"{name:<9} MAPE {100 * statistics.mean(errs):5.1f} %  "
            f"median ratio {statistics.median(ratios):.2f}  worst {worst:.2f}x  "
            f"within ±30 %: {hits}/{len(ratios)}")


def main() -> int:
    from opendojo.sim.families import draw
    from opendojo.sim.validate import measure_and_predict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as `dojo simulate validate`: CPU-time measurements on a shared machine
    print(f"# sim_heldout  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (start)  "
          f"torch {torch.__version__}, 1 thread; n={args.n} seed={args.seed}\n")
    drawn = draw(args.n, args.seed)
    results = measure_and_predict([(h.name, h.factory, h.batch) for h in drawn], progress=False)
    ratios: dict[str, list[float]] = {"sim": [], "roofline": [], "per-op": [], "no-call": []}
    print(f"{'family':<12} {'model':<36} {'batch':>5} {'measured':>10} {'sim':>6} {'roofline':>9} "
          f"{'per-op':>7} {'no-call':>8}")
    for h, r in zip(drawn, results, strict=True):
        peak = r.system.device.peak_flops["fp32"]
        row = {"sim": r.estimate.step_time_s, "roofline": roofline_s(h.factory, h.batch, peak),
               "per-op": per_op_s(r), "no-call": without_conv_calls(r)}
        for k, v in row.items():
            ratios[k].append(v / r.measured_s)
        print(f"{h.family:<12} {h.name:<36} {h.batch:>5} {1e3 * r.measured_s:>8.2f}ms "
              f"{ratios['sim'][-1]:>6.2f} {ratios['roofline'][-1]:>9.2f} {ratios['per-op'][-1]:>7.2f} "
              f"{ratios['no-call'][-1]:>8.2f}")
    print()
    for k, v in ratios.items():
        print(summary(k, v))
    print("\nsim MAPE per family:")
    for family in dict.fromkeys(h.family for h in drawn):
        errs = [abs(x - 1) for h, x in zip(drawn, ratios["sim"], strict=True) if h.family == family]
        print(f"  {family:<12} {100 * statistics.mean(errs):5.1f} %  ({len(errs)} models)")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
