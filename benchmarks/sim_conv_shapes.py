"""Do convolutions and BatchNorm run slower at the small shapes of the validation's ResNet than at the one
shape `dojo hw calibrate` measures? (The host validation under-predicts resnet-tiny at batch 16.)

Times, on one thread in process CPU time (as the calibration), 3x3 convolution forward, backward (input +
weight gradients) and training-mode BatchNorm at the layer shapes of resnet-tiny 64px (width 16) at batch 4
and 16, beside the calibration's own shape (batch 8, 64 channels, 56x56) measured in the same run.

    .venv/bin/python benchmarks/sim_conv_shapes.py
"""

from __future__ import annotations

import datetime
import os
import platform
import sys

import torch
import torch.nn.functional as F

from opendojo.hw.calibrate import _median_time

# (batch, channels, spatial): resnet-tiny's stages at 64 px input, and the calibration shape last.
SHAPES = [(b, c, s) for b in (4, 16) for c, s in ((16, 32), (32, 16), (64, 8), (128, 4))] + [(8, 64, 56)]


def _rates(b: int, c: int, s: int) -> tuple[float, float, float]:
    """(forward GFLOP/s, backward GFLOP/s, BatchNorm forward M elements/s)."""
    x, w = torch.randn(b, c, s, s), torch.randn(c, c, 3, 3)
    flops = 2.0 * b * s * s * c * c * 9
    t_fwd = _median_time(lambda: F.conv2d(x, w, padding=1), repeats=3)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = F.conv2d(xg, wg, padding=1)
    gy = torch.randn_like(y)
    t_bwd = _median_time(lambda: torch.autograd.grad(y, (xg, wg), gy, retain_graph=True), repeats=3)
    gamma, beta = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)
    xb = x.clone().requires_grad_()
    t_bn = _median_time(lambda: F.batch_norm(xb, None, None, gamma, beta, training=True).detach(), repeats=3)
    return flops / t_fwd / 1e9, 2 * flops / t_bwd / 1e9, x.numel() / t_bn / 1e6


def main() -> int:
    torch.set_num_threads(1)
    print(f"# sim_conv_shapes  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}  torch {torch.__version__} "
          f"(1 thread, CPU time, best of 3)\n")
    rows = [(shape, _rates(*shape)) for shape in SHAPES]
    anchor = rows[-1][1]
    print("| batch | channels | spatial | GEMM m×n×k | conv fwd GFLOP/s | conv bwd GFLOP/s | "
          "BatchNorm Melem/s | fwd / bwd / BN vs calibration shape |")
    print("|---|---|---|---|---|---|---|---|")
    for (b, c, s), (f, g, n) in rows:
        print(f"| {b} | {c} | {s}² | {b * s * s}×{c}×{9 * c} | {f:.1f} | {g:.1f} | {n:.0f} | "
              f"{f / anchor[0]:.2f} / {g / anchor[1]:.2f} / {n / anchor[2]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
