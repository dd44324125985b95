"""``dojo hw calibrate``: measure this host with microbenchmarks and store the numbers.

Measured (median of repeats, on ``torch.get_num_threads()`` threads):

* ``peak_flops_fp32`` and ``eff_matmul_half_dim``: fp32 matmuls of square and skinny shapes, fitted to
  ``rate = peak · h(m) h(n) h(k)``, ``h(d) = d / (d + d_half)`` (the same curve the simulator uses);
* ``conv_flops``, ``conv_bwd_flops``: a ResNet-style 3×3 convolution forward and backward (input and
  weight gradients run other, slower kernels), divided by its shape factor so that the simulator
  reproduces the measured rates;
* ``hbm_bw``: copy of a 256 MiB tensor (read + write bytes per second);
* ``op_overhead_s``: per-op cost in a training step, from a chain of 1-element ops run forward and
  backward (autograd bookkeeping included), divided by the aten ops it dispatches;
* ``rng_rate``: Bernoulli samples per second (dropout's random numbers are compute-bound on CPU);
* ``special_rate``: GELU outputs per second (transcendental elementwise ops are compute-bound too);
* ``attention_flops``: the fused CPU flash-attention kernel's rate (causal, head dim 32);
* ``first_touch_bw``: bytes per second of page-faulting a fresh 64 MiB allocation.

The result goes to ``cache_dir()/host-cpu.toml`` (``$OPENDOJO_CACHE`` or ``~/.cache/opendojo``), never
into the package; the loader prefers it over the shipped defaults.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from opendojo.hw.system import cache_dir, clear_caches

_SQUARE = (64, 128, 256, 512, 1024)
_SKINNY = ((4096, 64, 64), (64, 4096, 256), (2048, 512, 32), (256, 256, 2048))


def step_clock() -> Callable[[], float]:
    """The clock to time work on this machine: with one torch thread, the process's CPU time (user +
    system, so page faults count), which other processes on a shared machine cannot inflate; with more
    threads, CPU time would add the threads up, so wall time."""
    import torch

    return time.process_time if torch.get_num_threads() == 1 else time.perf_counter


def _median_time(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.02) -> float:
    """Best (minimum) seconds per call of ``fn`` over ``repeats`` samples, each looping until ``min_time``.

    The minimum, not the median: on a shared machine other processes only ever slow a sample down, and
    the step times it is compared with are taken the same way (see ``sim.validate``)."""
    fn()
    clock = step_clock()
    samples = []
    for _ in range(repeats):
        n, t0 = 0, clock()
        while True:
            fn()
            n += 1
            dt = clock() - t0
            if dt >= min_time:
                break
        samples.append(dt / n)
    return min(samples)


def _h(d: float, half: float) -> float:
    return d / (d + half)


def fit_matmul_curve(shapes: list[tuple[int, int, int]], rates: list[float]) -> tuple[float, float]:
    """Least-squares fit (in log space) of ``rate = peak · h(m) h(n) h(k)``: returns (peak, d_half)."""
    best = (float("inf"), 0.0, 0.0)
    logr = np.log(np.asarray(rates))
    for half in np.geomspace(1.0, 1024.0, 200):
        logh = np.array([np.log(_h(m, half) * _h(n, half) * _h(k, half)) for m, n, k in shapes])
        logp = float(np.mean(logr - logh))
        err = float(np.sum((logr - logh - logp) ** 2))
        if err < best[0]:
            best = (err, float(np.exp(logp)), float(half))
    return best[1], best[2]


def measure_host(progress: bool = True) -> dict[str, float]:
    """Run the microbenchmarks (≈15 s) and return the measured quantities (SI units)."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    steps = ["matmul", "conv", "bandwidth", "overhead", "rng", "first touch"]
    bar = tqdm(total=len(steps), desc="calibrating host", disable=not progress)
    torch.manual_seed(0)
    shapes, rates = [], []
    for m, n, k in [(s, s, s) for s in _SQUARE] + list(_SKINNY):
        a, b = torch.randn(m, k), torch.randn(k, n)
        t = _median_time(lambda a=a, b=b: a @ b)
        shapes.append((m, n, k))
        rates.append(2.0 * m * n * k / t)
    peak, half = fit_matmul_curve(shapes, rates)
    bar.update()
    x, w = torch.randn(8, 64, 56, 56), torch.randn(64, 64, 3, 3)
    t = _median_time(lambda: F.conv2d(x, w, padding=1), repeats=3)
    m_, n_, k_ = 8 * 56 * 56, 64, 64 * 9
    shape = _h(m_, half) * _h(n_, half) * _h(k_, half)
    conv_flops = 2.0 * m_ * n_ * k_ / t / shape
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = F.conv2d(xg, wg, padding=1)
    gy = torch.randn_like(y)
    t_bwd = _median_time(lambda: torch.autograd.grad(y, (xg, wg), gy, retain_graph=True), repeats=3)
    conv_bwd_flops = 2 * 2.0 * m_ * n_ * k_ / t_bwd / shape  # input grad + weight grad
    bar.update()
    src, dst = torch.randn(64 * 2**20), torch.empty(64 * 2**20)
    bw = 2 * src.numel() * 4 / _median_time(lambda: dst.copy_(src), repeats=3, min_time=0.1)
    bar.update()
    overhead = _training_op_overhead()
    bar.update()
    p = torch.empty(16 * 2**20)
    rng = p.numel() / _median_time(lambda: p.bernoulli_(0.9), repeats=3, min_time=0.1)
    g = torch.randn(4 * 2**20)
    special = g.numel() / _median_time(lambda: F.gelu(g), repeats=3, min_time=0.1)
    q = torch.randn(4, 4, 256, 32)
    t_attn = _median_time(lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True), repeats=3)
    attention = 2 * 2.0 * q.numel() * 256 * 0.5 / t_attn  # QK^T and PV, causal half
    rated = _rated_op_rates()
    params = [torch.nn.Parameter(torch.randn(16)) for _ in range(64)]
    for p_ in params:
        p_.grad = torch.randn(16)
    opt = torch.optim.AdamW(params, lr=1e-4)
    opt_tensor = _median_time(opt.step, repeats=3) / len(params)
    bar.update()
    size = 64 * 2**20
    warm = torch.empty(size // 4)
    t_warm = _median_time(lambda: warm.fill_(1.0), repeats=3, min_time=0.1)
    t_fresh = _median_time(lambda: torch.empty(size // 4).fill_(1.0), repeats=3, min_time=0.1)
    first_touch = size / max(t_fresh - t_warm, 1e-9)
    bar.update()
    bar.close()
    return {"peak_flops_fp32": peak, "peak_flops_bf16": peak,
            "peak_flops_cfloat8": peak,
            "eff_matmul_half_dim": half, "conv_flops": conv_flops, "conv_bwd_flops": conv_bwd_flops,
            "hbm_bw": bw, "op_overhead_s": overhead,
            "rng_rate": rng, "first_touch_bw": first_touch, "special_rate": special,
            "attention_flops": attention, "optimizer_tensor_s": opt_tensor,
            **{f"rate_{k}": v for k, v in rated.items()}}


def _training_op_overhead() -> float:
    """Seconds per aten op of a training step on tiny tensors: a chain of 1-element ops run forward and
    backward, so autograd's per-node bookkeeping is included, divided by the ops it dispatches."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            _Count.n += 1
            return func(*args, **(kwargs or {}))

    w = torch.ones(1, requires_grad=True)

    def chain():
        x = w
        for _ in range(32):
            x = torch.relu(x * 1.0001 + 0.5).view(1)
        x.sum().backward()

    with _Count():
        chain()
    return _median_time(chain, repeats=5) / _Count.n


def _rated_op_rates() -> dict[str, float]:
    """Elements per second of each normalisation/pooling kernel (forward and backward) on typical sizes."""
    import torch
    import torch.nn.functional as F

    out = {}
    x = torch.randn(8, 64, 32, 32, requires_grad=True)
    w, b = torch.ones(64, requires_grad=True), torch.zeros(64, requires_grad=True)
    t = torch.randn(64, 128, 256, requires_grad=True)
    lw, lb = torch.ones(256, requires_grad=True), torch.zeros(256, requires_grad=True)
    cases = {
        "native_batch_norm": (lambda: F.batch_norm(x, None, None, w, b, training=True), x),
        "native_layer_norm": (lambda: F.layer_norm(t, (256,), lw, lb), t),
        "native_group_norm": (lambda: F.group_norm(x, 8, w, b), x),
        "max_pool2d_with_indices": (lambda: F.max_pool2d(x, 3, 2, 1), x),
    }
    for name, (fn, inp) in cases.items():
        out[name] = inp.numel() / _median_time(lambda fn=fn: fn().detach(), repeats=3)
        y = fn()
        g = torch.randn_like(y)
        t_bwd = _median_time(lambda y=y, g=g, inp=inp: torch.autograd.grad(y, inp, g, retain_graph=True),
                             repeats=3)
        out[f"{name}_backward"] = inp.numel() / t_bwd
    return out


def _units(key: str) -> str:
    if key.startswith("rate_"):
        return "elements/s"
    return {"hbm_bw": "B/s", "first_touch_bw": "B/s", "op_overhead_s": "s",
            "rng_rate": "elements/s",
            "special_rate": "elements/s", "optimizer_tensor_s": "s",
            "eff_matmul_half_dim": "elements"}.get(key, "FLOP/s")


def store(measured: dict[str, float], directory: Path | None = None) -> Path:
    """Write ``measured`` to ``<cache>/host-cpu.toml`` atomically (temp file + rename); return the path."""
    import torch

    directory = Path(directory) if directory is not None else cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    source = (f"measured by dojo hw calibrate, {when}, {platform.node()} {platform.machine()}, "
              f"{torch.get_num_threads()} threads")
    lines = ["# Written by `dojo hw calibrate`; delete to fall back to the shipped defaults.", "[quantities]"]
    for key, value in measured.items():
        if not (isinstance(value, float | int) and value > 0 and np.isfinite(value)):
            raise ValueError(f"calibration produced an invalid {key} = {value!r}; nothing was written")
        lines.append(f'{key} = {{ value = {float(value)!r}, unit = "{_units(key)}", '
                     f'source = "{source}", confidence = "D" }}')
    path = directory / "host-cpu.toml"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".host-cpu.", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    clear_caches()
    return path
