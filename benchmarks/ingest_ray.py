"""Ingest throughput on Ray beside the local engine, on the same files in the same run, and what the
seed's fleet rate (160 billion frames/day = 1.85 M frames/s) needs in nodes at the measured rate.

Synthesises ``--drives`` drives (``--cameras`` cameras, ``--frames`` frames at ``--size``², a keyframe
every ``--keyint``, so that most clips are re-encoded as with fleet video), then
ingests them (16-frame clips) with the local process pool (``workers = cores``, the anchor) and with
``--engine ray`` on a local Ray head the script starts with the same cores; frames/s per core is
frames / wall seconds / cores. The nodes figure divides 1.85 M frames/s by that per-core rate and by
``--cores-per-node``. Synthetic frames are small and simple: this is the engine's per-core rate on
them, a lower bound on nodes for 1280×960 fleet video (docs/data.md measures that file size).

    .venv/bin/python benchmarks/ingest_ray.py [--drives 8] [--cameras 2] [--frames 96] [--size 256]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from opendojo.data import ingest, synth

ROOT = Path(__file__).resolve().parents[1]
FLEET_FRAMES_PER_S = 160e9 / 86_400  # the seed's 160 billion frames/day


def _ray_head():
    spec = importlib.util.spec_from_file_location("ray_head", ROOT / "tests" / "service" / "ray_head.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RayHead


def _timed(sources: Path, out: Path, **engine) -> tuple[float, int]:
    t0 = time.perf_counter()
    report = ingest([sources], out, clip_frames=16, progress=False, **engine)
    wall = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(report.summary())
    return wall, len(report.ingested)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=8)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--keyint", type=int, default=30,
                    help="frames between keyframes (30, as fleet cameras: most 16-frame clips re-encode)")
    ap.add_argument("--cores-per-node", type=int, default=64, help="cores of one ingest node (default 64)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {cores} CPUs, "
          f"load before {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        drives = synth(tmp / "drives", clips=args.drives, cameras=args.cameras, frames=args.frames,
                       size=(args.size, args.size), seed=1, keyint=args.keyint, progress=False)
        frames = args.drives * args.cameras * args.frames
        rows = {"local pool (anchor)": _timed(drives, tmp / "local", workers=cores)}
        head = _ray_head()(num_cpus=cores)
        try:
            rows["Ray tasks"] = _timed(drives, tmp / "ray", ray_address=head.gcs_address)
        finally:
            head.stop()
    print(f"\n{frames} frames ({args.drives} drives × {args.cameras} cameras × {args.frames}, "
          f"{args.size}×{args.size}), {cores} cores")
    print(f"{'engine':<22} {'wall s':>8} {'frames/s':>10} {'frames/s/core':>14} {'vs anchor':>10} "
          f"{'nodes of ' + str(args.cores_per_node) + ' cores for 1.85 M frames/s':>44}")
    anchor = frames / rows["local pool (anchor)"][0]
    for name, (wall, _) in rows.items():
        rate = frames / wall
        nodes = FLEET_FRAMES_PER_S / (rate / cores) / args.cores_per_node
        print(f"{name:<22} {wall:>8.2f} {rate:>10.1f} {rate / cores:>14.1f} {rate / anchor:>10.2f} "
              f"{nodes:>44,.0f}")
    print(f"# load after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
