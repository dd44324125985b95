"""Speed of the simulator: one 175B training step on a full ExaPOD and on a 16k-H100 cluster (< 2 s each),
a 100-point sweep (< 1 min), the first meta-device capture of GPT-175B, and a fresh `dojo simulate` process.

Each figure is the median of 3 repeats; the anchor (a 512³ fp32 matmul, median of 5) is measured in the same
run so that a slow, shared machine shows up beside the numbers.

    .venv/bin/python benchmarks/sim_speed.py
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _median(fn, repeats: int = 3) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of this process (what other jobs cannot inflate)."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    from opendojo.sim import simulate
    from opendojo.sim.catalog import load_workload
    from opendojo.sim.sweep import run_sweep

    a = torch.randn(512, 512)
    anchor = _median(lambda: a @ a, repeats=5)[0]
    print(f"# sim_speed  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
          f"{platform.processor() or platform.machine()}  {os.cpu_count()} cores  torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"# anchor: 512^3 fp32 matmul {anchor * 1e3:.2f} ms ({2 * 512**3 / anchor / 1e9:.1f} GFLOP/s); "
          f"load average {os.getloadavg()[0]:.1f}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:  # a first capture, not a disk-cache hit
        old = os.environ.get("OPENDOJO_CACHE")
        os.environ["OPENDOJO_CACHE"] = tmp
        load_workload.cache_clear()
        t0, c0 = time.perf_counter(), time.process_time()
        load_workload("gpt-175b")
        rows.append(("first capture of gpt-175b on meta (4 small captures)",
                     (time.perf_counter() - t0, time.process_time() - c0), None))
        if old is None:
            os.environ.pop("OPENDOJO_CACHE")
        else:
            os.environ["OPENDOJO_CACHE"] = old
    from opendojo.sim.simulate import _PER_H100

    simulate("gpt-175b", "dojo-exapod")  # warm the in-process workload cache

    def cold(system: str):
        _PER_H100.clear()  # each call searches its H100 reference again, as a first call does
        return simulate("gpt-175b", system)

    for system in ("dojo-exapod", "h100-cluster-16k"):
        t = _median(lambda system=system: cold(system))
        rows.append((f"simulate gpt-175b on {system} (layout search + H100-eq)", t, 2.0))
    _PER_H100.clear()
    t = _median(lambda: run_sweep("gpt-175b", ["dojo-exapod"], "training-tile.edge_bw=4.5e12:9e12:100",
                                  progress=False), repeats=1)
    rows.append(("100-point sweep (ExaPOD tile edge bandwidth), gpt-175b", t, 60.0))
    dojo = Path(sys.executable).with_name("dojo")
    cmd = [str(dojo), "simulate", "--model", "gpt-175b", "--system", "dojo-exapod", "--json"]
    subprocess.run(cmd, check=True, capture_output=True)  # fills the disk cache of the capture
    t = (_median(lambda: subprocess.run(cmd, check=True, capture_output=True))[0], float("nan"))
    rows.append(("fresh process: dojo simulate --model gpt-175b --system dojo-exapod", t, None))
    print(f"| {'what':<66} | {'wall s':>8} | {'CPU s':>8} | {'target':>7} | met |")
    print(f"|{'-' * 68}|{'-' * 10}|{'-' * 10}|{'-' * 9}|-----|")
    for what, (wall, cpu), target in rows:
        met = "" if target is None else ("yes" if wall < target else "NO")
        tgt = "" if target is None else f"< {target:g}"
        cpu_s = "" if cpu != cpu else f"{cpu:.3f}"
        print(f"| {what:<66} | {wall:>8.3f} | {cpu_s:>8} | {tgt:>7} | {met:<3} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
