"""Training speed of a CFloat-converted model vs FP32 on CPU at 1 and 2 threads (issue 16: ≥ 0.8× FP32).

Trains the FSD ``tiny`` video network (``opendojo.models``; a representative small CNN if that package is
missing) for a few AdamW steps per recipe, interleaving the recipes so machine noise hits all of them
alike, and prints the median step time, samples/s and the ratio to the unconverted FP32 model measured in
the same rounds, for each thread count, with the CFloat overhead split into the numerics kernel
(``numerics.codec.fake_quantize_checked``, as the layers call it), the amax pass that picks each bias,
and the rest (autograd glue, bookkeeping).

    .venv/bin/python benchmarks/cfloat_overhead.py [--repeats 9] [--batch 2] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import time
from dataclasses import replace

import torch
from torch import nn
from tqdm import tqdm

from opendojo.nn import Recipe, convert, requantize_weights_
from opendojo.nn import bias_state as _bias_state


def _video_model(batch: int) -> tuple[str, nn.Module, torch.Tensor]:
    try:
        from opendojo.models import example_inputs, fsd_net
    except ImportError:
        net = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 8 * 8, 10),
        )
        return "small CNN (opendojo.models missing)", net, torch.randn(batch * 12, 3, 64, 64)
    return "FSD tiny (opendojo.models)", fsd_net("tiny"), example_inputs("tiny", batch=batch)


def _loss(out) -> torch.Tensor:
    if isinstance(out, dict):
        return sum(v.float().square().mean() for v in out.values())
    return out.square().mean()


class _Timer:
    """Wall time spent inside a function, accumulated (seconds)."""

    def __init__(self, owner, name: str):
        self.owner, self.name, self.fn, self.total = owner, name, getattr(owner, name), 0.0

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self.fn(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - t0

        setattr(owner, name, timed)

    def restore(self) -> None:
        setattr(self.owner, self.name, self.fn)


RECIPES: dict[str, Recipe | None] = {
    "fp32 (unconverted)": None,
    "Recipe.fp32() converted": Recipe.fp32(),
    "dojo": Recipe.dojo(),
    "dojo_lean": Recipe.dojo_lean(),
    "dojo, flags every step": replace(Recipe.dojo(), flags_every=1),
}
ANCHOR = "fp32 (unconverted)"


def _steps(batch: int) -> tuple[str, dict]:
    """One ready-to-time training step (forward, backward, AdamW, requantize) per recipe, warmed up."""
    steps, label = {}, ""
    for name, recipe in RECIPES.items():
        torch.manual_seed(0)
        label, model, x = _video_model(batch)
        if recipe is not None:
            convert(model, recipe)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(model=model, x=x, opt=opt) -> None:
            loss = _loss(model(x))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            requantize_weights_(model)

        step()  # warm-up (allocator, first-call costs)
        steps[name] = step
    return label, steps


def _measure(steps: dict, repeats: int, threads: int) -> tuple[dict, dict]:
    """Step seconds per recipe and (kernel, amax) seconds, in interleaved rounds at ``threads`` threads."""
    torch.set_num_threads(threads)  # the numerics kernel follows torch's setting
    times = {name: [] for name in steps}
    split = {name: [] for name in steps}
    for _ in tqdm(range(repeats), desc=f"{threads} thread(s)", unit="round"):
        for name, step in steps.items():
            kernel = _Timer(_bias_state, "fake_quantize_checked")
            amax = _Timer(_bias_state, "_finite_amax")
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
            split[name].append((kernel.total, amax.total))
            kernel.restore()
            amax.restore()
    return times, split


def _table(times: dict, split: dict, batch: int, threads: int) -> None:
    print(f"\n{threads} thread(s)\n\n| recipe | step (ms) | samples/s | × FP32 samples/s (paired rounds) "
          "| in fake_quantize (ms) | in amax (ms) | rest of overhead (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    anchors = times[ANCHOR]
    anchor = statistics.median(anchors)
    for name in times:
        med = statistics.median(times[name])
        paired = statistics.median(a / t for t, a in zip(times[name], anchors, strict=True))
        k = statistics.median(s[0] for s in split[name])
        a = statistics.median(s[1] for s in split[name])
        print(f"| {name} | {med * 1e3:.1f} | {batch / med:.1f} | {paired:.2f} | {k * 1e3:.1f} "
              f"| {a * 1e3:.1f} | {(med - anchor - k - a) * 1e3:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed steps per recipe (median reported)")
    parser.add_argument("--batch", type=int, default=2, help="clips per step")
    parser.add_argument("--threads", default="1,2", help="comma-separated torch intra-op thread counts")
    args = parser.parse_args()
    label, steps = _steps(args.batch)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"CFloat training step vs FP32 on CPU: {label}, batch {args.batch}")
    print(f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, machine {platform.machine()} "
          f"{os.cpu_count()} cores, torch {torch.__version__}; median of {args.repeats} interleaved rounds; "
          f"load: {load}")
    for threads in (int(t) for t in args.threads.split(",")):
        _table(*_measure(steps, args.repeats, threads), args.batch, threads)
    print("\ntarget (issue 16): dojo ≥ 0.8× FP32 samples/s at 2 threads")


if __name__ == "__main__":
    main()
