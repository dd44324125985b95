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
* ``attention_flops``, ``attention_half_dim``, ``attention_causal_eff``: the fused CPU flash-attention
  kernel's curve over sequence length and head dimension, and its efficiency under a causal mask;
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
from functools import partial
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


def _matmul_rates() -> dict[str, float]:
    """Peak and half-dimension of the fp32 matmul curve, from square and skinny shapes."""
    import torch

    shapes, rates = [], []
    for m, n, k in [(s, s, s) for s in _SQUARE] + list(_SKINNY):
        a, b = torch.randn(m, k), torch.randn(k, n)
        t = _median_time(lambda a=a, b=b: a @ b)
        shapes.append((m, n, k))
        rates.append(2.0 * m * n * k / t)
    peak, half = fit_matmul_curve(shapes, rates)
    return {"peak_flops_fp32": peak, "peak_flops_bf16": peak, "peak_flops_cfloat8": peak,
            "eff_matmul_half_dim": half}


#: Convolutions timed for the conv curve: (batch, in channels, out channels, kernel, groups, pixels).
#: Depthwise and strided 1×1 convolutions are classes of their own (:func:`_conv_class_rates`).
_CONVS = ((8, 64, 64, 3, 1, 32), (8, 16, 16, 3, 1, 32), (8, 32, 64, 1, 1, 32), (8, 128, 128, 3, 1, 16),
          (8, 3, 16, 7, 1, 64), (8, 64, 64, 3, 8, 32), (4, 64, 64, 3, 4, 24), (2, 32, 32, 3, 1, 32),
          (8, 64, 32, 1, 1, 12))
#: The non-GEMM conv classes of ``sim.ops.CONV_CLASSES``: name → convolutions (as in :data:`_CONVS`,
#: plus the stride) whose FLOP rates, forward and backward, are pooled into the class's rate.
_CONV_CLASSES = {"conv_depthwise": ((8, 64, 64, 3, 64, 32, 1), (8, 24, 24, 3, 24, 24, 1)),
                 "conv_depthwise_strided": ((8, 24, 24, 3, 24, 48, 2), (8, 64, 64, 3, 64, 32, 2)),
                 "conv_1x1_strided": ((8, 32, 64, 1, 1, 12, 2), (8, 64, 128, 1, 1, 16, 2))}


#: Convolutions too small to do measurable work that PyTorch still runs through oneDNN on one thread
#: (as :data:`_CONVS`, plus the stride): their time is oneDNN's fixed cost per call.
_CONV_CALLS = ((2, 8, 8, 3, 1, 4, 1), (2, 8, 8, 3, 8, 4, 1), (2, 8, 8, 1, 1, 4, 2))


def _conv_timer(batch: int, cin: int, cout: int, kernel: int, groups: int, px: int, stride: int = 1):
    """``(FLOPs, forward seconds, backward seconds)`` of one convolution (backward: input + weight grad)."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(batch, cin, px, px, requires_grad=True)
    w = torch.randn(cout, cin // groups, kernel, kernel, requires_grad=True)
    conv = partial(F.conv2d, x, w, stride=stride, padding=kernel // 2, groups=groups)
    y = conv()
    flops = 2.0 * y.numel() * (cin // groups) * kernel * kernel
    t_fwd = _median_time(lambda: conv().detach(), repeats=3)
    gy = torch.randn_like(y)
    t_bwd = _median_time(lambda: torch.autograd.grad(y, (x, w), gy, retain_graph=True), repeats=3)
    return flops, t_fwd, t_bwd


def _conv_call_costs() -> dict[str, float]:
    """oneDNN's fixed seconds per convolution call, forward and backward: the median over
    :data:`_CONV_CALLS`, whose FLOPs take well under a microsecond."""
    import statistics

    times = [_conv_timer(*c)[1:] for c in _CONV_CALLS]
    return {"conv_call_s": statistics.median(t[0] for t in times),
            "conv_bwd_call_s": statistics.median(t[1] for t in times)}


def _conv_rates(calls: dict[str, float]) -> dict[str, float]:
    """Convolutions forward and backward over :data:`_CONVS`, each fitted to ``rate = peak · h(m) h(n)
    h(k)`` in the implicit-GEMM shape the simulator uses (``m`` batch·pixels, ``n`` out channels,
    ``k`` in channels per group · kernel area): its own peak and half-dimension per direction. The
    fixed oneDNN call costs (``calls``, which all of these pay) are taken off each time first."""
    shapes, fwd, bwd = [], [], []
    for batch, cin, cout, kernel, groups, px in _CONVS:
        flops, t_fwd, t_bwd = _conv_timer(batch, cin, cout, kernel, groups, px)
        fwd.append(flops / max(t_fwd - calls["conv_call_s"], 0.1 * t_fwd))
        bwd.append(2 * flops / max(t_bwd - calls["conv_bwd_call_s"], 0.1 * t_bwd))
        shapes.append((batch * px * px, cout, cin // groups * kernel * kernel))
    peak, conv_half = fit_matmul_curve(shapes, fwd)
    peak_bwd, bwd_half = fit_matmul_curve(shapes, bwd)
    return {"conv_flops": peak, "conv_half_dim": conv_half, "conv_bwd_flops": peak_bwd,
            "conv_bwd_half_dim": bwd_half}


def _conv_class_rates(calls: dict[str, float]) -> dict[str, float]:
    """FLOP/s of each non-GEMM conv class forward and backward: total FLOPs / total time over its
    convolutions (so a class spanning fast and slow shapes is not decided by one of them), after the
    fixed oneDNN call costs (``calls``) are taken off each time."""
    out = {}
    for name, convs in _CONV_CLASSES.items():
        flops, t_fwd, t_bwd = 0.0, 0.0, 0.0
        for conv in convs:
            f, t_f, t_b = _conv_timer(*conv)
            flops += f
            t_fwd += max(t_f - calls["conv_call_s"], 0.1 * t_f)
            t_bwd += max(t_b - calls["conv_bwd_call_s"], 0.1 * t_b)
        out[name], out[f"{name}_backward"] = flops / t_fwd, 2.0 * flops / t_bwd
    return out


def _recurrent_rates(half: float) -> dict[str, float]:
    """The fused CPU LSTM (oneDNN) forward and backward, FLOP/s divided by one time step's GEMM-shape
    factor (``[batch, in + hidden] × [in + hidden, 4·hidden]``), as the simulator prices it."""
    import torch

    batch, seq, hidden = 16, 32, 128
    lstm = torch.nn.LSTM(hidden, hidden, 1, batch_first=True)
    x = torch.randn(batch, seq, hidden, requires_grad=True)
    gemm = 2.0 * seq * batch * 2 * hidden * 4 * hidden
    shape = _h(batch, half) * _h(4 * hidden, half) * _h(2 * hidden, half)
    t = _median_time(lambda: lstm(x)[0].detach(), repeats=3)
    y = lstm(x)[0]
    g = torch.randn_like(y)
    t_bwd = _median_time(lambda: torch.autograd.grad(y, [x, *lstm.parameters()], g, retain_graph=True),
                         repeats=3)
    return {"rnn_flops": gemm / t / shape, "rnn_bwd_flops": 2.0 * gemm / t_bwd / shape}


def _bandwidth() -> float:
    """Bytes per second (read + write) of copying a 256 MiB tensor: DRAM, not cache."""
    import torch

    src, dst = torch.randn(32 * 2**20), torch.empty(32 * 2**20)
    return 2 * src.numel() * 4 / _median_time(lambda: dst.copy_(src), repeats=3, min_time=0.1)


def measure_host(progress: bool = True) -> dict[str, float]:
    """Run the microbenchmarks (≈20 s) and return the measured quantities (SI units)."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    bar = tqdm(total=7, desc="calibrating host", disable=not progress)
    torch.manual_seed(0)
    out = _matmul_rates()
    half = out["eff_matmul_half_dim"]
    calls = _conv_call_costs()
    out.update(calls)
    for step in (lambda: _conv_rates(calls), lambda: _recurrent_rates(half),
                 lambda: {"hbm_bw": _bandwidth()}):
        out.update(step())
        bar.update()
    out["op_overhead_s"] = _training_op_overhead()
    p = torch.empty(16 * 2**20)
    out["rng_rate"] = p.numel() / _median_time(lambda: p.bernoulli_(0.9), repeats=3, min_time=0.1)
    g = torch.randn(4 * 2**20)
    out["special_rate"] = g.numel() / _median_time(lambda: F.gelu(g), repeats=3, min_time=0.1)
    bar.update()
    out.update(_attention_rates())
    out.update({f"rate_{k}": v for k, v in {**_rated_op_rates(), **_conv_class_rates(calls)}.items()})
    bar.update()
    params = [torch.nn.Parameter(torch.randn(16)) for _ in range(64)]
    for p_ in params:
        p_.grad = torch.randn(16)
    opt = torch.optim.AdamW(params, lr=1e-4)
    out["optimizer_tensor_s"] = _median_time(opt.step, repeats=3) / len(params)
    size = 64 * 2**20
    warm = torch.empty(size // 4)
    t_warm = _median_time(lambda: warm.fill_(1.0), repeats=3, min_time=0.1)
    t_fresh = _median_time(lambda: torch.empty(size // 4).fill_(1.0), repeats=3, min_time=0.1)
    out["first_touch_bw"] = size / max(t_fresh - t_warm, 1e-9)
    bar.update(2)
    bar.close()
    return out


#: Attention shapes of the attention curve: (tokens, head dimension); batch × tokens = 4,096, 2 heads.
_ATTENTION = ((64, 32), (256, 32), (1024, 32), (256, 16), (256, 64))


def _attention_rates() -> dict[str, float]:
    """The fused CPU flash-attention kernel: its unmasked rate over :data:`_ATTENTION` fitted to
    ``peak · h(s) h(s) h(d)``, and the causal kernel's efficiency relative to that curve at 256 tokens,
    head dimension 32 (a causal mask halves the counted FLOPs; the kernel saves less than half)."""
    import torch
    import torch.nn.functional as F

    def rate(s: int, d: int, causal: bool) -> float:
        q = torch.randn(max(1, 4096 // s), 2, s, d)
        t = _median_time(lambda: F.scaled_dot_product_attention(q, q, q, is_causal=causal), repeats=3)
        return 2 * 2.0 * q.numel() * s * (0.5 if causal else 1.0) / t  # QK^T and PV

    shapes = [(s, s, d) for s, d in _ATTENTION]
    peak, half = fit_matmul_curve(shapes, [rate(s, d, False) for s, d in _ATTENTION])
    curve = peak * _h(256, half) ** 2 * _h(32, half)
    return {"attention_flops": peak, "attention_half_dim": half,
            "attention_causal_eff": rate(256, 32, True) / curve}


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


def _rated_cases() -> dict[str, tuple]:
    """Rated op → (forward callable, tensor it differentiates to, name of the backward op or None, work
    units per call). The work units are the simulator's (``sim.ops.RATED_OPS``): elements of the first
    input, of the output for an embedding lookup, ``n log2(length)`` for FFTs and sorts."""
    import math

    import torch
    import torch.nn.functional as F

    x = torch.randn(8, 64, 32, 32, requires_grad=True)
    w, b = torch.ones(64, requires_grad=True), torch.zeros(64, requires_grad=True)
    t = torch.randn(64, 128, 256, requires_grad=True)
    lw, lb = torch.ones(256, requires_grad=True), torch.zeros(256, requires_grad=True)
    table = torch.randn(20000, 32, requires_grad=True)
    ids = torch.randint(0, 20000, (4096,))
    img = torch.randn(8, 32, 64, 64)
    spec = torch.fft.rfft2(img)
    rows = torch.randn(512, 1024)
    log_n, log_half = math.log2(64), math.log2(33)  # the last dimension of the image and of its rfft
    aten = torch.ops.aten
    return {
        "native_batch_norm": (lambda: F.batch_norm(x, None, None, w, b, training=True), x,
                              "native_batch_norm_backward", x.numel()),
        "native_layer_norm": (lambda: F.layer_norm(t, (256,), lw, lb), t, "native_layer_norm_backward",
                              t.numel()),
        "native_group_norm": (lambda: F.group_norm(x, 8, w, b), x, "native_group_norm_backward", x.numel()),
        "max_pool2d_with_indices": (lambda: F.max_pool2d(x, 3, 2, 1), x, "max_pool2d_with_indices_backward",
                                    x.numel()),
        "avg_pool2d": (lambda: F.avg_pool2d(x, 2), x, None, x.numel()),
        "_adaptive_avg_pool2d": (lambda: F.adaptive_avg_pool2d(x, 1), x, None, x.numel()),
        "upsample_nearest2d": (lambda: F.interpolate(x, scale_factor=2.0), x, "upsample_nearest2d_backward",
                               x.numel()),
        "_softmax": (lambda: torch.softmax(t, -1), t, "_softmax_backward_data", t.numel()),
        "_log_softmax": (lambda: torch.log_softmax(t, -1), t, "_log_softmax_backward_data", t.numel()),
        "embedding": (lambda: F.embedding(ids, table), table, "embedding_dense_backward", ids.numel() * 32),
        "_fft_r2c": (lambda: aten._fft_r2c(img, [2, 3], 0, True), None, None, img.numel() * log_n),
        "_fft_c2c": (lambda: aten._fft_c2c(spec, [2], 0, True), None, None, spec.numel() * log_half),
        "_fft_c2r": (lambda: aten._fft_c2r(spec, [3], 0, 64), None, None, spec.numel() * log_half),
        "sort": (lambda: torch.sort(rows, -1), None, None, rows.numel() * math.log2(1024)),
        "cumsum": (lambda: torch.cumsum(rows, -1), None, None, rows.numel()),
    }


def _rated_op_rates() -> dict[str, float]:
    """Work units per second of each rated kernel (forward, and backward where it has its own op).

    A backward op's work units are its first input's elements: the forward output's gradient, which for
    norms and softmax is the forward input's size; for an embedding it is the lookup's output."""
    import torch

    out = {}
    for name, (fn, inp, backward, work) in _rated_cases().items():
        out[name] = work / _median_time(lambda fn=fn: _detached(fn()), repeats=3)
        if backward is None:
            continue
        y = fn()
        g = torch.randn_like(y)
        t_bwd = _median_time(lambda y=y, g=g, inp=inp: torch.autograd.grad(y, inp, g, retain_graph=True),
                             repeats=3)
        out[backward] = y.numel() / t_bwd
    return out


def _detached(result: object) -> object:
    """Drop the autograd graph of a benchmark's output (a tensor or a tuple of them)."""
    if isinstance(result, tuple):
        return tuple(r.detach() for r in result)
    return result.detach()


def _units(key: str) -> str:
    if key.startswith("rate_"):
        return "elements/s"
    return {"hbm_bw": "B/s", "first_touch_bw": "B/s", "op_overhead_s": "s",
            "rng_rate": "elements/s",
            "special_rate": "elements/s", "optimizer_tensor_s": "s",
            "conv_call_s": "s", "conv_bwd_call_s": "s",
            "eff_matmul_half_dim": "elements", "conv_half_dim": "elements", "attention_half_dim": "elements",
            "attention_causal_eff": "fraction",
            "conv_bwd_half_dim": "elements"}.get(key, "FLOP/s")


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
