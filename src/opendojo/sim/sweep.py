"""Sweeps: simulate one workload over device counts (or over an uncertain hardware quantity's range) on
one or more systems; write a CSV and a scaling plot (PNG).

Spec strings: ``nodes=1,2,4,8`` (a list), ``nodes=1:1024`` (powers of two from 1 to 1024), or
``PART.FIELD=low:high:points`` for a ranged quantity (e.g. ``training-tile.edge_bw=4.5e12:9e12:5``;
``low:high`` alone sweeps its published range in 5 points).
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from opendojo.hw.system import load_system, uncertain_quantities
from opendojo.sim.simulate import simulate

_COLUMNS = ("system", "devices", "param", "value", "peak_pflops", "step_time_s", "samples_per_s", "mfu",
            "memory_per_device_gb", "fits", "power_kw", "energy_per_step_kj", "layout", "error")


def parse_sweep(spec: str, system: str) -> tuple[str, list[float]]:
    """``"nodes=1:64"`` → ``("nodes", [1, 2, 4, ..., 64])``; see the module docstring for the forms."""
    if not isinstance(spec, str) or "=" not in spec:
        raise ValueError(f"sweep={spec!r}: write nodes=1,2,4 or nodes=1:1024 or PART.FIELD=low:high:points")
    key, _, values = spec.partition("=")
    key = key.strip()
    try:
        if key == "nodes":
            if ":" in values:
                lo, hi = (int(v) for v in values.split(":"))
                points = [2**i for i in range(int(math.log2(lo)), int(math.log2(hi)) + 1)
                          if lo <= 2**i <= hi]
            else:
                points = [int(v) for v in values.split(",")]
            if not points or min(points) < 1:
                raise ValueError("empty or non-positive")
            return key, [float(p) for p in points]
        ranged = uncertain_quantities(system)
        if key not in ranged:
            raise ValueError(f"not a sweepable quantity; sweepable: nodes, {', '.join(sorted(ranged))}")
        q = ranged[key]
        parts = [p for p in values.split(":") if p]
        lo, hi = (float(parts[0]), float(parts[1])) if len(parts) >= 2 else (q.low, q.high)
        n = int(parts[2]) if len(parts) == 3 else 5
        return key, list(np.linspace(lo, hi, n))
    except ValueError as e:
        raise ValueError(f"sweep={spec!r}: {e}") from None


def run_sweep(workload: str, systems: list[str], spec: str, *, batch: int | None = None,
              precision: str = "bf16", parallel: str | None = None, progress: bool = True) -> list[dict]:
    """One row per (system, point); points that cannot run carry the reason in ``error``."""
    from tqdm import tqdm

    plans = [(s, *parse_sweep(spec, s)) for s in systems]
    rows = []
    bar = tqdm(total=sum(len(p[2]) for p in plans), desc="sweep", disable=not progress)
    for system, key, points in plans:
        for v in points:
            row = {"system": system, "param": key, "value": v}
            try:
                if key == "nodes":
                    r = simulate(workload, system, nodes=int(v), batch=batch, precision=precision,
                                 parallel=parallel, h100_eq="peak")
                else:
                    r = simulate(workload, load_system(system, {key: v}), batch=batch, precision=precision,
                                 parallel=parallel, h100_eq="peak")
                peak = r.devices * load_system(system).device.peak_flops[precision]
                row.update(devices=r.devices, peak_pflops=peak / 1e15, step_time_s=r.step_time_s,
                           samples_per_s=r.samples_per_s, mfu=r.mfu,
                           memory_per_device_gb=r.memory_per_device_bytes / 1e9, fits=r.fits,
                           power_kw=r.power_w / 1e3, energy_per_step_kj=r.energy_per_step_j / 1e3,
                           layout=r.layout, error="")
            except ValueError as e:
                row.update(devices=int(v) if key == "nodes" else "", error=str(e).splitlines()[0][:200])
            rows.append(row)
            bar.update()
    bar.close()
    return rows


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write the sweep rows as CSV (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in _COLUMNS})
    os.replace(tmp, path)
    return path


def plot_sweep(rows: list[dict], path: str | Path, title: str) -> Path:
    """Scaling plot: samples/s (left) and MFU (right) against system peak (nodes) or the swept value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    by_nodes = all(r["param"] == "nodes" for r in rows)
    for system in dict.fromkeys(r["system"] for r in rows):
        ok = [r for r in rows if r["system"] == system and not r.get("error")]
        if not ok:
            continue
        x = [r["peak_pflops"] if by_nodes else r["value"] for r in ok]
        ax1.plot(x, [r["samples_per_s"] for r in ok], "o-", label=system)
        ax2.plot(x, [100 * r["mfu"] for r in ok], "o-", label=system)
        if by_nodes:  # ideal linear scaling from the smallest point
            ax1.plot(x, [ok[0]["samples_per_s"] * xi / x[0] for xi in x], ":", color="grey", lw=1)
    xlabel = "system peak (PFLOP/s)" if by_nodes else rows[0]["param"]
    for ax, ylabel in ((ax1, "samples/s"), (ax2, "MFU (%)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if by_nodes:
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
    if by_nodes:
        ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path
