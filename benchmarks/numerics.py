"""CFloat kernel throughput against torch's native float8 cast, ml_dtypes, gfloat and a memory copy.

One run on the same 16M-element float32 array (``--n`` to change). Each figure is the median of
``--repeats`` timed calls after one warm-up call, in Melem/s; ratios are against anchors measured in
this same run. "alloc" rows return a fresh output (as the anchors do, which pays the kernel's page
faults for new memory); "out=" rows write into a preallocated output, as a training step that reuses
its buffers does.

    python benchmarks/numerics.py [--n 16777216] [--repeats 7]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import time

import torch


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {threads} threads, "
            f"{platform.system()} {platform.release()}")


def _rate(fn, n: int, repeats: int) -> float:
    """Median Melem/s over ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times) / 1e6


def _paired_speedup(fn, anchor, rounds: int) -> float:
    """Median over ``rounds`` of (anchor time / fn time), the two timed back to back in each round: the
    ratio a shared, noisy machine still measures fairly."""
    fn(), anchor()
    ratios = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        anchor()
        t1 = time.perf_counter()
        fn()
        ratios.append((t1 - t0) / (time.perf_counter() - t1))
    return statistics.median(ratios)


def _targets(x, fmt, bias, code_buf, f32_buf, rounds: int) -> None:
    """The issue-16 kernel targets, each as a paired ratio at torch's thread count."""
    from opendojo.numerics import encode, fake_quantize

    sr = _paired_speedup(lambda: encode(x, fmt, bias, "stochastic", seed=1, out=code_buf),
                         lambda: x.to(torch.float8_e4m3fn), rounds)
    fq = _paired_speedup(lambda: fake_quantize(x, fmt, bias, out=f32_buf), lambda: f32_buf.copy_(x), rounds)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\nTargets, median of {rounds} paired rounds ({torch.get_num_threads()} threads; load: {load}):")
    print(f"- stochastic encode (out=) / torch float8_e4m3fn cast: {sr:.2f}× (target ≥ 1.0)")
    print(f"- fake_quantize nearest (out=) / memory copy (copy_): {fq:.2f}× (target ≥ 0.9)")


def main() -> None:
    from opendojo.numerics import CFLOAT8_1_4_3, _native, decode, encode, fake_quantize
    from opendojo.numerics._torch_codec import encode_torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16 * 1024 * 1024, help="elements (float32)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    n, reps = args.n, args.repeats

    x = torch.randn(n, generator=torch.Generator().manual_seed(0)) * 100
    xn = x.numpy()
    fmt, bias = CFLOAT8_1_4_3, 7
    codes = encode(x, fmt, bias)
    code_buf = torch.empty(n, dtype=torch.uint8)
    f32_buf = torch.empty(n, dtype=torch.float32)

    rows: list[tuple[str, str, float]] = []

    def add(group: str, name: str, fn, repeats: int = reps) -> None:
        rows.append((group, name, _rate(fn, n, repeats)))
        print(f"  measured {name}: {rows[-1][2]:,.0f} Melem/s", flush=True)

    print(f"# CFloat kernels, {n:,} float32 elements, median of {reps}")
    add("anchor", "memory copy (torch copy_ into preallocated)", lambda: f32_buf.copy_(x))
    add("anchor", "memory copy (torch clone, alloc)", lambda: x.clone())
    add("anchor", "torch native x.to(float8_e4m3fn) (alloc)", lambda: x.to(torch.float8_e4m3fn))
    try:
        import ml_dtypes

        add("anchor", "ml_dtypes astype(float8_e4m3fn) (alloc)", lambda: xn.astype(ml_dtypes.float8_e4m3fn))
    except ImportError:
        print("  ml_dtypes not installed: skipped")
    try:
        import gfloat
        from gfloat.formats import format_info_ocp_e4m3

        add("anchor", "gfloat round_ndarray (E4M3, sat)",
            lambda: gfloat.round_ndarray(format_info_ocp_e4m3, xn, sat=True), repeats=3)
    except ImportError:
        print("  gfloat not installed: skipped")

    backend = "C kernel" if _native.AVAILABLE else "torch ops (no C kernel built)"
    add("ours", "encode nearest (alloc)", lambda: encode(x, fmt, bias))
    add("ours", "encode nearest (out=)", lambda: encode(x, fmt, bias, out=code_buf))
    add("ours", "encode stochastic (alloc)", lambda: encode(x, fmt, bias, "stochastic", seed=1))
    add("ours", "encode stochastic (out=)", lambda: encode(x, fmt, bias, "stochastic", seed=1, out=code_buf))
    add("ours", "decode (alloc)", lambda: decode(codes, fmt, bias))
    add("ours", "decode (out=)", lambda: decode(codes, fmt, bias, out=f32_buf))
    add("ours", "fake_quantize nearest (alloc)", lambda: fake_quantize(x, fmt, bias))
    add("ours", "fake_quantize nearest (out=)", lambda: fake_quantize(x, fmt, bias, out=f32_buf))
    add("ours", "fake_quantize stochastic (out=)",
        lambda: fake_quantize(x, fmt, bias, "stochastic", seed=1, out=f32_buf))
    add("fallback", "torch-ops path encode nearest (CUDA / no-compiler path)",
        lambda: encode_torch(x, fmt, bias, "nearest", None, None), repeats=3)

    anchor = dict((name, r) for _, name, r in rows)
    cast = anchor["torch native x.to(float8_e4m3fn) (alloc)"]
    copy = anchor["memory copy (torch copy_ into preallocated)"]
    print()
    print(f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Machine: {_machine()}.")
    print(f"Format CFloat8_1_4_3 bias 7 (= OCP E4M3 range); our backend: {backend}.")
    print()
    print("| | kernel | Melem/s | × torch cast | × memcopy |")
    print("|---|---|---:|---:|---:|")
    for group, name, r in rows:
        print(f"| {group} | {name} | {r:,.0f} | {r / cast:.2f} | {r / copy:.2f} |")
    _targets(x, fmt, bias, code_buf, f32_buf, 4 * reps)


if __name__ == "__main__":
    main()
