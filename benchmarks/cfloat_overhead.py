"""Step time of a CFloat-converted model over FP32 on CPU (issue 3; target ≤ 1.5× on the default video model).

Trains the FSD ``tiny`` video network (``opendojo.models``; a representative small CNN if that package is
missing) for a few AdamW steps per recipe, interleaving the recipes so machine noise hits all of them
alike, and prints the median step time and its ratio to the unconverted FP32 model measured in the same
run. A second table splits the CFloat overhead into the numerics kernel (``numerics.fake_quantize``),
the amax pass that picks each bias, and the rest (autograd glue, bookkeeping).

    .venv/bin/python benchmarks/cfloat_overhead.py [--repeats 9] [--batch 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from dataclasses import replace

import torch
from torch import nn
from tqdm import tqdm

from opendojo import numerics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed steps per recipe (median reported)")
    parser.add_argument("--batch", type=int, default=2, help="clips per step")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: leave as is); 1 is least sensitive to other jobs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # the numerics kernel follows torch's setting

    recipes: dict[str, Recipe | None] = {
        "fp32 (unconverted)": None,
        "Recipe.fp32() converted": Recipe.fp32(),
        "dojo": Recipe.dojo(),
        "dojo_lean": Recipe.dojo_lean(),
        "dojo, flags every step": replace(Recipe.dojo(), flags_every=1),
    }
    steps, label = {}, ""
    for name, recipe in recipes.items():
        torch.manual_seed(0)
        label, model, x = _video_model(args.batch)
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

    times: dict[str, list[float]] = {name: [] for name in recipes}
    split: dict[str, list[tuple[float, float]]] = {name: [] for name in recipes}
    for _ in tqdm(range(args.repeats), desc="overhead", unit="round"):
        for name, step in steps.items():
            kernel = _Timer(numerics, "fake_quantize")
            amax = _Timer(_bias_state, "_finite_amax")
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
            split[name].append((kernel.total, amax.total))
            kernel.restore()
            amax.restore()

    anchor = statistics.median(times["fp32 (unconverted)"])
    print(f"\nCFloat training step overhead on CPU: {label}, batch {args.batch}")
    print(f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, machine {platform.machine()} "
          f"{platform.processor() or ''} {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), median of {args.repeats} interleaved steps\n")
    print("| recipe | step (ms) | × FP32 (medians) | × FP32 (median of paired rounds) "
          "| in fake_quantize (ms) | in amax (ms) | rest of overhead (ms) |")
    print("|---|---|---|---|---|---|---|")
    anchors = times["fp32 (unconverted)"]
    for name in recipes:
        med = statistics.median(times[name])
        paired = statistics.median(t / a for t, a in zip(times[name], anchors, strict=True))
        k = statistics.median(s[0] for s in split[name])
        a = statistics.median(s[1] for s in split[name])
        rest = med - anchor - k - a
        print(f"| {name} | {med * 1e3:.1f} | {med / anchor:.2f} | {paired:.2f} | {k * 1e3:.1f} "
              f"| {a * 1e3:.1f} | {rest * 1e3:.1f} |")
    print("\ntarget: dojo ≤ 1.50× FP32 on the default video model")


if __name__ == "__main__":
    main()
