"""Dojo vs H100, predicted by the simulator: the README's comparison table and scaling plot.

Pairs of about equal peak BF16: one ExaPOD (120 tiles, 1.09 EFLOP/s, 1.86 MW) vs 1,024 H100 (1.01 EFLOP/s,
1.31 MW incl. DGX overhead), and one system tray (6 tiles, 54 PFLOP/s) vs 56 H100 (55 PFLOP/s). Workloads:
the FSD video network (base, large) and GPT-class models. Every Dojo number rests on the uncertain
([U]) inputs listed by `dojo hw show training-tile` (efficiency, link bandwidth): these are model
predictions, not measurements. Writes docs/sim_scaling.png (+ .csv): GPT-175B, strong scaling at a fixed
batch of 1536 sequences, against system peak.

    .venv/bin/python benchmarks/sim_compare.py
"""

from __future__ import annotations

import datetime
import platform
import sys
from pathlib import Path

PAIRS = [("dojo-tray", None), ("h100-cluster-1k", 56), ("dojo-exapod", None), ("h100-cluster-1k", None)]
# Global batches that divide both device counts of a pair (FSD: clips; GPT: sequences of 2048 tokens).
WORKLOADS = [("fsd-base", (336, 15360)), ("fsd-large", (336, 15360)), ("gpt-1.3b", (512, 512)),
             ("gpt-13b", (1536, 1536)), ("gpt-175b", (1536, 1536))]


def main() -> int:
    from opendojo.sim import simulate
    from opendojo.sim.sweep import plot_sweep, run_sweep, write_csv

    print(f"# sim_compare  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
          "(predictions; no Dojo or H100 was run)\n")
    print("| workload | system | batch | step | samples/s | MFU | mem/device | power | J/sample | "
          "H100-eq (delivered) | layout |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for wname, batches in WORKLOADS:
        for i, (sname, nodes) in enumerate(PAIRS):
            batch = batches[i // 2]
            try:
                r = simulate(wname, sname, nodes=nodes, batch=batch)
            except ValueError as e:
                print(f"| {wname} | {sname} | {batch or ''} | does not run: {str(e)[:80]} |||||||")
                continue
            label = f"{sname}" + (f" ({nodes} GPUs)" if nodes else f" ({r.devices} x {r.device})")
            eq = r.h100_equivalents["all"]["delivered"]["value"]
            print(f"| {wname} | {label} | {r.batch} | {r.step_time_s * 1e3:.4g} ms | {r.samples_per_s:.4g} | "
                  f"{100 * r.mfu:.0f} % | {r.memory_per_device_bytes / 1e9:.3g} GB | "
                  f"{r.power_w / 1e3:.4g} kW | {r.energy_per_step_j / r.batch:.4g} | {eq:.4g} | {r.layout} |")
    out = Path(__file__).resolve().parent.parent / "docs" / "sim_scaling"
    rows = run_sweep("gpt-175b", ["dojo-exapod"], "nodes=8:256", batch=1536, progress=False)
    rows += run_sweep("gpt-175b", ["h100-cluster-16k"], "nodes=64:4096", batch=1536, progress=False)
    write_csv(rows, out.with_suffix(".csv"))
    plot_sweep(rows, out.with_suffix(".png"), "GPT-175B, batch 1536 x 2048 tokens, bf16: Dojo tiles vs H100 "
               "(predicted; dotted: linear scaling)")
    print(f"\nwrote {out.with_suffix('.png')}")
    for r in rows:
        if not r.get("error"):
            print(f"  {r['system']:<17} {r['devices']:>5} devices  {r['peak_pflops']:>8.0f} PF  "
                  f"{r['samples_per_s']:>7.2f} samples/s  MFU {100 * r['mfu']:.0f} %")
        else:
            print(f"  {r['system']:<17} {r['devices']:>5} devices  skipped: {r['error'][:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
