"""Ingest throughput and peak memory for a short and a long camera file (target: <= 600 MB peak RSS
for 30 s of 1280x960 30 fps H.264 with a 30-frame GOP, cut into 16-frame clips).

A 30-frame GOP does not divide 16-frame clips, so nearly every clip must be re-encoded: the costly
case, and the one that used to hold every decoded frame of the file. Each measurement runs in a fresh
process, so its peak RSS (``wait4`` rusage) is that job's alone. Anchor in the same run: a plain PyAV
loop that decodes the same file and encodes every frame again with the same encoder settings,
streaming (it holds no frames), i.e. the least work and memory a re-encoding ingest can need.

    .venv/bin/python benchmarks/ingest.py [--seconds 3 30] [--size 960x1280] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import av

from opendojo.data.codec import write_pattern_video

FPS, GOP, CLIP_FRAMES = 30, 30, 16

# Each child prints the seconds of its work alone (imports excluded: ~3 s of torch on a loaded host).
_INGEST = """
import sys, time
from opendojo.data import ingest
t0 = time.perf_counter()
r = ingest([sys.argv[1]], sys.argv[2], clip_frames=int(sys.argv[3]), progress=False)
assert r.ok, r.summary()
print(time.perf_counter() - t0)
"""

_ANCHOR = """
import sys, io, time, av
from fractions import Fraction
from opendojo.data.codec import add_h264_stream, open_output
t0 = time.perf_counter()
with av.open(sys.argv[1]) as src:
    st = src.streams.video[0]
    st.codec_context.thread_count = 1
    out = open_output(io.BytesIO())
    enc = add_h264_stream(out, fps=30, height=st.codec_context.height, width=st.codec_context.width,
                          keyint=int(sys.argv[3]))
    for i, fr in enumerate(src.decode(st)):
        fr.pts, fr.time_base = i, Fraction(1, 30)
        fr.pict_type = av.video.frame.PictureType.NONE
        out.mux(enc.encode(fr))
    out.mux(enc.encode(None))
    out.close()
print(time.perf_counter() - t0)
"""


def _run_child(code: str, *args: str) -> tuple[float, float]:
    """``(work seconds, peak RSS MiB)`` of ``python -c code args`` in a fresh process."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed: {code[:60]!r} {args}")
    return float(out.split()[-1]), usage.ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[3.0, 30.0])
    ap.add_argument("--size", default="960x1280", help="HxW of the camera file")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, PyAV {av.__version__}")
    print(f"# camera file {h}x{w}, {FPS} fps, GOP {GOP}; clips of {CLIP_FRAMES} frames; "
          f"median of {args.repeats}")
    print("| file | frames | ingest frames/s | ingest peak RSS MiB | anchor frames/s | anchor peak RSS MiB "
          "| ingest/anchor speed | ingest/anchor RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            src = Path(tmp) / f"cam_{seconds:g}s.mp4"
            n = int(round(seconds * FPS))
            write_pattern_video(str(src), frames=n, height=h, width=w, fps=FPS, keyint=GOP)
            ing, anc = [], []
            for r in range(args.repeats):  # interleaved: both see the same machine load
                anc.append(_run_child(_ANCHOR, str(src), "-", str(CLIP_FRAMES)))
                out = str(Path(tmp) / f"ds_{seconds:g}_{r}")
                ing.append(_run_child(_INGEST, str(src), out, str(CLIP_FRAMES)))
            iw, ir = statistics.median(t for t, _ in ing), max(m for _, m in ing)
            aw, ar = statistics.median(t for t, _ in anc), max(m for _, m in anc)
            print(f"| {seconds:g} s | {n} | {n / iw:,.1f} | {ir:,.0f} | {n / aw:,.1f} | {ar:,.0f} "
                  f"| {aw / iw:.2f} | {ir / ar:.2f} |")
    print(f"# load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
