"""Decoded frames/s through ClipDataset + ClipLoader (0, 1, 2 workers) vs a plain PyAV decode loop.

Same clips, same run. Two anchors: the plain loop that throws each frame away (the issue's reference)
and the same loop landing every frame in a reused numpy array (the same output the loader produces:
frames in memory). "per-sample path" rows are the previous design (samples collated by the DataLoader),
kept as a second anchor for the change. Also: synth rate (render + H.264 encode) at 128x128 on one
core. Prints a table with the date and machine; ratios are against the anchors measured in the same run.

    .venv/bin/python benchmarks/loader.py [--size 256] [--drives 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader

from opendojo.data import ClipDataset, ClipLoader, collate_clips, ingest, load_index, synth
from opendojo.data.shard import ShardReader


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    py = platform.python_version()
    libs = f"Python {py}, PyAV {av.__version__}, torch {torch.__version__}"
    return f"{model}, {os.cpu_count()} logical CPUs, {libs}"


def _plain_decode(blobs: list[bytes], threaded: bool, into: np.ndarray | None = None) -> int:
    """The anchor: decode every member to RGB in a loop, nothing else; with ``into`` (``[T, H, W, 3]``
    uint8, reused for every clip) each frame is also copied into that array."""
    n = 0
    for data in blobs:
        with av.open(io.BytesIO(data)) as c:
            st = c.streams.video[0]
            if threaded:
                st.thread_type = "AUTO"  # PyAV's defaults: frame threads + multi-threaded conversion
                for fr in c.decode(st):
                    fr.to_ndarray(format="rgb24")
                    n += 1
            else:
                st.codec_context.thread_count = 1
                for i, fr in enumerate(c.decode(st)):
                    arr = fr.to_ndarray(format="rgb24", threads=1)
                    if into is not None:
                        into[i] = arr
                    n += 1
    return n


# (how batches are made, workers); workers are persistent, so start-up is not timed
CONFIGS = [("ClipLoader (batches built in place)", w) for w in (0, 1, 2)] + [
    ("DataLoader + collate_clips (per-sample path)", w) for w in (0, 2)]


def _epoch_frames(loader: DataLoader, epoch: int) -> int:
    loader.dataset.set_epoch(epoch)
    return sum(b["frames"].shape[0] * b["frames"].shape[1] * b["frames"].shape[2] for b in loader)


def _timed(fn) -> float:
    t = time.perf_counter()
    frames = fn()
    return frames / (time.perf_counter() - t)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by this process and the given child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers that have exited and been joined
    total = time.process_time() + children.ru_utime + children.ru_stime
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def _timed_both(fn, pids: list[int]) -> tuple[float, float]:
    """(frames per wall second, frames per CPU second of this process + ``pids``)."""
    t, c = time.perf_counter(), _cpu_seconds(pids)
    frames = fn()
    return frames / (time.perf_counter() - t), frames / max(_cpu_seconds(pids) - c, 1e-9)


def _worker_pids(loader: DataLoader) -> list[int]:
    it = getattr(loader, "_iterator", None)  # persistent workers live on the loader's iterator
    return [w.pid for w in getattr(it, "_workers", [])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="square frame size for the loader benchmark")
    ap.add_argument("--drives", type=int, default=8)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # synth rate: 128x128, one camera, one core (the target: >= 300 frames/s); median of 3
        def synth_128() -> int:
            synth(tmp / "s128", clips=2, cameras=1, frames=150, size=(128, 128), seed=1, progress=False)
            return 300

        synth_rates = [_timed_both(synth_128, []) for _ in range(3)]  # single-threaded: CPU-s = core-s
        size = (args.size, args.size)
        src = synth(tmp / "src", clips=args.drives, cameras=2, frames=args.frames, size=size, seed=0,
                    keyint=16, progress=False)
        report = ingest([src], tmp / "ds", clip_frames=16, progress=False)
        assert report.ok, report.summary()
        rows = load_index(tmp / "ds").to_pylist()
        reader = ShardReader()
        blobs = [reader.read(str(tmp / "ds" / r["shard"]), r["data_offset"], r["data_bytes"], r["member"])
                 for r in rows]
        frames_total = sum(r["frames"] for r in rows)

        loaders = {}
        for key in CONFIGS:
            kind, w = key
            ds = ClipDataset(tmp / "ds", seed=0, batch_size=4)
            if kind.startswith("ClipLoader"):
                loaders[key] = ClipLoader(ds, batch_size=4, num_workers=w, persistent_workers=w > 0)
            else:
                loaders[key] = DataLoader(ds, batch_size=4, num_workers=w, persistent_workers=w > 0,
                                          collate_fn=collate_clips)
            _epoch_frames(loaders[key], 0)  # warm up: start the workers, fill the page cache
        # every round runs every reader once, so a burst of load from other jobs hits them all alike
        keys = ("plain", "into", "threaded", *CONFIGS)
        rates: dict[object, list[tuple[float, float]]] = {k: [] for k in keys}
        into = np.empty((16, *size, 3), np.uint8)
        for r in range(args.repeats):
            rates["plain"].append(_timed_both(lambda: _plain_decode(blobs, threaded=False), []))
            rates["into"].append(_timed_both(lambda: _plain_decode(blobs, threaded=False, into=into), []))
            rates["threaded"].append(_timed_both(lambda: _plain_decode(blobs, threaded=True), []))
            for key, loader in loaders.items():
                fn = lambda loader=loader, r=r: _epoch_frames(loader, r + 1)  # noqa: E731
                rates[key].append(_timed_both(fn, _worker_pids(loader)))
        med = {k: tuple(statistics.median(x) for x in zip(*v, strict=True)) for k, v in rates.items()}
        loaders.clear()

    (plain, plain_cpu), (threaded, threaded_cpu) = med["plain"], med["threaded"]
    into, into_cpu = med["into"]
    print(f"# ClipDataset throughput, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {_machine()}")
    print(f"# {len(rows)} camera clips x 16 frames = {frames_total} frames per pass at {args.size}x"
          f"{args.size}; batch 4; median of {args.repeats} interleaved rounds; compare rows within this run.")
    print("# frames/CPU-s counts the CPU time of the main process and its DataLoader workers: on a shared")
    print("# machine it is the fair per-worker efficiency; wall-clock frames/s depends on the other jobs.")
    print()
    print("| reader | workers | frames/s (wall) | frames per CPU-s | vs decode-and-discard "
          "| vs decode-into-array |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| plain PyAV loop, thread_count=1, frames discarded (anchor 1) | - | {plain:,.0f} "
          f"| {plain_cpu:,.0f} "
          f"| 1.00 | {plain_cpu / into_cpu:.2f} |")
    print(f"| plain PyAV loop, thread_count=1, frames copied into a reused array (anchor 2) | - "
          f"| {into:,.0f} "
          f"| {into_cpu:,.0f} | {into_cpu / plain_cpu:.2f} | 1.00 |")
    print(f"| plain PyAV loop, default threading, discarded | - | {threaded:,.0f} | {threaded_cpu:,.0f} "
          f"| {threaded_cpu / plain_cpu:.2f} | {threaded_cpu / into_cpu:.2f} |")
    for kind, w in CONFIGS:
        rate, cpu = med[(kind, w)]
        print(f"| ClipDataset + {kind} | {w} | {rate:,.0f} | {cpu:,.0f} | {cpu / plain_cpu:.2f} "
              f"| {cpu / into_cpu:.2f} |")
    print()
    wall, cpu = (statistics.median(x) for x in zip(*synth_rates, strict=True))
    print(f"synth (render + H.264 encode), 128x128, 1 camera, one thread: {cpu:,.0f} frames per CPU-s "
          f"({wall:,.0f} frames/s wall); target >= 300 on one core")


if __name__ == "__main__":
    main()
