"""The rounding kernel's share of a CFloat8 training step, this build against a baseline build, at 1 and
2 threads.

Records the rounding calls of one ``Recipe.dojo()`` training step of FSD ``tiny`` (batch 2: sizes,
formats, rounding modes), then replays exactly those calls straight into the compiled kernel, once per
round for each build and thread count, interleaved so machine noise hits both alike. The baseline is a
``_ckernel`` shared object built from an earlier commit (``--baseline PATH``; without it only this build
is timed). Prints the median kernel milliseconds per training step and the paired ratio to the baseline.

    python benchmarks/cfloat_kernel_threads.py --baseline /path/to/old/_ckernel.so [--repeats 15]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.machinery
import importlib.util
import statistics
import subprocess
import time

import torch
from tqdm import tqdm

from opendojo.models import example_inputs, fsd_net
from opendojo.nn import Recipe, convert
from opendojo.nn import bias_state as _bias_state
from opendojo.numerics import _native, codec
from opendojo.numerics.stochastic import seed_keys


def _load_kernel(path: str):
    """A second copy of the extension from ``path``, under its own module name."""
    loader = importlib.machinery.ExtensionFileLoader("opendojo_baseline._ckernel", path)
    spec = importlib.util.spec_from_file_location("opendojo_baseline._ckernel", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _record_calls(batch: int) -> list[tuple]:
    """(input tensor, format, bias, rounding, seed) of every rounding call in one dojo training step."""
    torch.manual_seed(0)
    model = convert(fsd_net("tiny"), Recipe.dojo())
    x = example_inputs("tiny", batch=batch)
    calls, real = [], _bias_state.fake_quantize_checked

    def spy(t, fmt, bias, rounding, seed, flags=None, out=None):
        calls.append((t.detach().float().contiguous().clone(), fmt, bias, rounding, seed))
        return real(t, fmt, bias, rounding, seed, flags, out)

    _bias_state.fake_quantize_checked = spy
    try:
        sum(v.float().square().mean() for v in model(x).values()).backward()
    finally:
        _bias_state.fake_quantize_checked = real
    return calls


def _replay(kernel, calls: list[tuple], outs: list[torch.Tensor], threads: int) -> float:
    """Seconds to run every recorded call through ``kernel`` at ``threads`` threads (outputs reused)."""
    t0 = time.perf_counter()
    for (t, fmt, bias, rounding, seed), out in zip(calls, outs, strict=True):
        keys = seed_keys(seed) if seed is not None else (0, 0)
        op = _native.FQ_F32_U8 + (fmt.bits == 16)
        kernel.run(op, t.data_ptr(), out.data_ptr(), codec.decode_table(fmt, bias).ctypes.data, t.numel(), 0,
                   fmt.mantissa_bits, bias, int(fmt.signed), fmt.bits - 1, _native.MODES[rounding],
                   fmt.max_magnitude_code, keys[0], keys[1], threads, 0, 0)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a _ckernel shared object built from an earlier commit")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds (medians reported)")
    parser.add_argument("--batch", type=int, default=2, help="clips per step")
    args = parser.parse_args()
    kernels = {"this build": _native._ckernel}
    if args.baseline:
        kernels["baseline"] = _load_kernel(args.baseline)
    calls = _record_calls(args.batch)
    outs = [torch.empty_like(c[0]) for c in calls]
    sizes = sorted(c[0].numel() for c in calls)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{len(calls)} rounding calls per FSD tiny dojo step, {sizes[0]}..{sizes[-1]} elements "
          f"(median {sizes[len(sizes) // 2]}); {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
          f"load: {load}")
    times = {(k, th): [] for k in kernels for th in (1, 2)}
    for _ in tqdm(range(args.repeats), desc="rounds", unit="round"):
        for (name, threads), runs in times.items():
            runs.append(_replay(kernels[name], calls, outs, threads))
    print("\n| kernel | threads | kernel ms per step (median) | × baseline time (paired rounds) |")
    print("|---|---:|---:|---:|")
    for (name, threads), runs in times.items():
        base = times.get(("baseline", threads))
        ratio = statistics.median(a / b for a, b in zip(runs, base, strict=True)) if base else float("nan")
        print(f"| {name} | {threads} | {statistics.median(runs) * 1e3:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
