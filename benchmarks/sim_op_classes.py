"""Where the host model's error sits, per op class: predicted vs profiled seconds on held-out models.

For N models drawn as in ``benchmarks/sim_heldout.py`` (same families, same seed → same models) this
calibrates the host, then for each model profiles three training steps with ``torch.profiler`` (self CPU
time per aten kernel) and predicts the same step. Kernels are assigned to the simulator's op classes
(``opendojo.sim.ops.KINDS``) by name — the names the capture records, plus the CPU kernels they call
(``mkldnn_convolution``, ``_slow_conv2d_*``, ``mkldnn_rnn_layer*``, ...). Printed per class, summed over
all models: its **share** of all profiled kernel time and of all predicted kernel time (compute + memory,
without dispatch), and the ratio of the two shares (> 1: the class is over-priced relative to the rest).
Shares, not seconds: the profiler measures wall time, which a loaded machine inflates for every kernel
alike, while the steps are measured in CPU time. Dispatch cannot be separated by the profiler; its
predicted share is printed alone.

    .venv/bin/python benchmarks/sim_op_classes.py [--n 24] [--seed 2026]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from collections import defaultdict

import numpy as np
import torch

#: CPU kernels the profiler shows below the aten ops the capture records, by op class.
_KERNELS = {"mkldnn_convolution": "conv", "_slow_conv2d_forward": "conv", "_slow_conv2d_backward": "conv",
            "_nnpack_spatial_convolution": "conv", "mkldnn_rnn_layer": "recurrent",
            "mkldnn_rnn_layer_backward": "recurrent", "_convolution_depthwise": "conv",
            "thnn_conv_depthwise2d_forward": "conv", "gru": "recurrent", "lstm": "recurrent"}


def profiled(model, inputs) -> dict[str, float]:
    """Self CPU seconds per aten kernel name of one training step (mean of three)."""
    from torch.profiler import ProfilerActivity, profile

    from opendojo.sim.workload import scalar_loss

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        scalar_loss(model(*inputs)).backward()
        opt.step()

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    out: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        if e.key.startswith("aten::"):
            out[e.key.removeprefix("aten::")] += e.self_cpu_time_total / 3 / 1e6
    return out


def predicted_by_class(result) -> tuple[dict[str, float], float, dict[str, str]]:
    """({class: predicted compute + memory s}, predicted per-op overhead s, {op name: class})."""
    from opendojo.sim.device_time import table_time
    from opendojo.sim.ops import KINDS

    ops = result.workload.at(result.batch)
    names = np.asarray(result.workload.op_names)
    by_class, overhead, classes = {}, 0.0, {}
    for i, kind in enumerate(KINDS):
        mask = ops["kind"] == i
        if not mask.any():
            continue
        t = table_time(ops, result.system.device, "fp32", result.system.caps, mask=mask)
        by_class[kind] = t.compute + t.memory
        overhead += t.overhead
        classes.update(dict.fromkeys(names[mask].tolist(), kind))
    return by_class, overhead, classes


def main() -> int:
    from opendojo.sim.families import draw
    from opendojo.sim.validate import measure_and_predict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# sim_op_classes  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (start)  "
          f"torch {torch.__version__}, 1 thread; n={args.n} seed={args.seed}\n")
    drawn = draw(args.n, args.seed)
    results = measure_and_predict([(h.name, h.factory, h.batch) for h in drawn], progress=False)
    real: dict[str, float] = defaultdict(float)
    pred: dict[str, float] = defaultdict(float)
    dispatch = 0.0
    for h, r in zip(drawn, results, strict=True):
        torch.manual_seed(0)
        kernels = profiled(*h.factory(h.batch))
        by_class, overhead, classes = predicted_by_class(r)
        for name, seconds in kernels.items():
            real[classes.get(name, _KERNELS.get(name, "other"))] += seconds
        for kind, seconds in by_class.items():
            pred[kind] += seconds
        dispatch += overhead
    total_real, total_pred = sum(real.values()), sum(pred.values())
    print(f"{'op class':<12} {'profiled share':>15} {'predicted share':>16} {'ratio':>7}")
    for kind in sorted(set(real) | set(pred), key=lambda k: -real.get(k, 0.0)):
        p, q = real.get(kind, 0.0) / total_real, pred.get(kind, 0.0) / total_pred
        ratio = f"{q / p:7.2f}" if p > 0 else f"{'-':>7}"
        print(f"{kind:<12} {100 * p:14.1f}% {100 * q:15.1f}% {ratio}")
    print(f"predicted dispatch: {dispatch:.4f} s, {100 * dispatch / (dispatch + total_pred):.1f} % of the "
          f"predicted steps (not separable in the profile)")
    total_meas = sum(r.measured_s for r in results)
    total_pred = sum(r.estimate.step_time_s for r in results)
    print(f"\nsum of measured steps {total_meas:.4f} s, predicted {total_pred:.4f} s "
          f"({total_pred / total_meas:.2f}x); load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
