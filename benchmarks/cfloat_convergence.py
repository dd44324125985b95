"""Does CFloat training reach FP32's quality on tasks the project was never tuned on? (issue 16, item 1)

Generates six small tasks, trains each with every method from the same initial weights on the same
batches, for several seeds, and scores the loss on held-out batches (drawn from generator streams the
training never touches). Methods, all in the same run:

- ``fp32``: the unconverted model (the anchor every gap is measured against);
- ``bf16 autocast``: ``torch.autocast("cpu", torch.bfloat16)``;
- ``dojo`` / ``dojo_lean``: ``Recipe.dojo()`` / ``Recipe.dojo_lean()``, first and last layer FP32;
- ``torchao float8``: torchao's ``convert_to_float8_training`` (dynamic per-tensor e4m3/e5m2, emulated on
  CPU), the same layers as dojo but Linear only (torchao has no float8 convolution);
- with ``--levers``: dojo variants (per-block biases, delayed biases, stochastically rounded activations,
  FP32 gradients, every layer converted) and torchao with every layer.

Tasks (``--tasks``): ``regression`` (MLP on a random teacher MLP, MSE), ``noisy-labels`` (MLP, 10 classes,
10 % of labels flipped, cross-entropy), ``cnn`` (grating orientation, 8 classes), ``char-lm`` (a 2-block
transformer on text from a random second-order Markov source), ``lstm`` (an LSTM built from nn.Linear
gates forecasting noisy sines), ``fsd-tiny`` (the project's FSD network, reduced input, distilling a
random FSD teacher). ``--video`` also trains the real FSD tiny network with the project trainer on its
synthetic driving data and prints its task metrics per precision.

Gap = held-out loss / FP32's held-out loss − 1, paired by seed; reported as mean ± standard deviation
over seeds. Prints markdown tables and writes a PNG of the gaps.

    .venv/bin/python benchmarks/cfloat_convergence.py [--seeds 0,1,2] [--levers] [--video] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from cfloat_tasks import TASKS, Task  # noqa: E402
from opendojo.nn import Recipe, TensorPolicy, convert, keep_ends_fp32, requantize_weights_  # noqa: E402

_DOJO = Recipe.dojo()
#: name -> (recipe or None, converts every layer?)
MAIN: dict[str, tuple[Recipe | str | None, bool]] = {
    "fp32": (None, False),
    "bf16 autocast": ("bf16", False),
    "dojo": (_DOJO, False),
    "dojo_lean": (Recipe.dojo_lean(), False),
    "torchao float8": ("torchao", False),
}
LEVERS: dict[str, tuple[Recipe | str | None, bool]] = {
    "dojo, block 32": (Recipe.dojo(block=32), False),
    "dojo, block 128": (Recipe.dojo(block=128), False),
    "dojo, delayed biases": (replace(_DOJO, name="dojo-delayed", **{
        k: replace(getattr(_DOJO, k), bias="delayed") for k in ("activation", "weight", "gradient")}), False),
    "dojo, SR activations": (replace(_DOJO, name="dojo-sr-act",
                                     activation=replace(_DOJO.activation, rounding="stochastic")), False),
    "dojo, FP32 gradients": (replace(_DOJO, name="dojo-fp32-grad", gradient=TensorPolicy("fp32")), False),
    "dojo, every layer": (_DOJO, True),
    "torchao, every layer": ("torchao", True),
}
TARGET = 0.02  # dojo within 2 % of FP32's held-out loss


def _prepare(task: Task, method: tuple, seed: int):
    """(model, autocast context factory) for one method, from the task's seed-``seed`` initial weights."""
    recipe, every_layer = method
    torch.manual_seed(seed)
    model = task.model()
    if recipe == "torchao":
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training

        keep = (lambda fqn, m: True) if every_layer else keep_ends_fp32(model)
        convert_to_float8_training(model, config=Float8LinearConfig(emulate=True),
                                   module_filter_fn=lambda m, fqn: keep(fqn, m))
    elif isinstance(recipe, Recipe):
        convert(model, recipe, module_filter=(lambda fqn, m: True) if every_layer else None)
    if recipe == "bf16":
        return model, lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return model, contextlib.nullcontext


def train_and_score(task: Task, method: tuple, seed: int) -> float:
    """Train ``task.steps`` Adam steps (cosine schedule); return the mean held-out loss."""
    model, autocast = _prepare(task, method, seed)
    opt = torch.optim.Adam(model.parameters(), lr=task.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, task.steps)
    for step in range(task.steps):
        x, y = task.batch(seed, step, task.batch_size)
        with autocast():
            loss = task.loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        requantize_weights_(model)  # dojo_lean: the stored weights are SHP after every step
        sched.step()
    model.eval()
    with torch.no_grad(), autocast():
        # held out: negative batch indices are never drawn in training
        held = [float(task.loss(model(x), y)) for x, y in (task.batch(seed, -1 - i, 256) for i in range(4))]
    return sum(held) / len(held)


def run_suite(tasks: list[Task], methods: dict, seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """Held-out losses: ``{task: {method: [loss per seed]}}``."""
    losses = {t.name: {m: [] for m in methods} for t in tasks}
    total = len(tasks) * len(seeds) * len(methods)
    with tqdm(total=total, desc="trainings", unit="run") as bar:
        for task in tasks:
            for seed in seeds:
                for name, method in methods.items():
                    bar.set_postfix_str(f"{task.name} seed {seed} {name}")
                    loss = train_and_score(task, method, seed)
                    losses[task.name][name].append(loss)
                    bar.update()
                    # one line per run as it ends, so a crash or a timeout keeps what was measured
                    print(f"run: {task.name} seed {seed} {name}: {loss:.6g}", flush=True)
    return losses


def gaps(losses: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per method, the paired relative gap to FP32 for every seed."""
    return {m: [v / f - 1 for v, f in zip(vals, losses["fp32"], strict=True)] for m, vals in losses.items()}


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def print_tables(tasks: list[Task], losses: dict, methods: dict, seeds: list[int]) -> None:
    names = [m for m in methods if m != "fp32"]
    print("\n| task | FP32 held-out loss | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for task in tasks:
        f_mean, f_sd = _mean_sd(losses[task.name]["fp32"])
        g = gaps(losses[task.name])
        cells = [f"{m:+.2%} ± {s:.2%}" for m, s in (_mean_sd(g[n]) for n in names)]
        print(f"| {task.name} | {f_mean:.4g} ± {f_sd:.2g} | " + " | ".join(cells) + " |")
    means = {n: statistics.fmean(statistics.fmean(gaps(losses[t.name])[n]) for t in tasks) for n in names}
    print("| **mean gap over tasks** | | " + " | ".join(f"**{means[n]:+.2%}**" for n in names) + " |")
    if "dojo" in names:
        worst = max(statistics.fmean(gaps(losses[t.name])["dojo"]) for t in tasks)
        print(f"\ndojo: worst task mean gap {worst:+.2%} (target ≤ {TARGET:.0%}: "
              f"{'met' if worst <= TARGET else 'MISSED'})", end="")
        if "torchao float8" in names:
            better = means["dojo"] < means["torchao float8"]
            print(f"; mean gap {means['dojo']:+.2%} vs torchao float8 {means['torchao float8']:+.2%} "
                  f"({'smaller: met' if better else 'not smaller: MISSED'})")
    print(f"\ngap = held-out loss / FP32's − 1, paired by seed; mean ± sd over seeds {seeds}")


def plot(tasks: list[Task], losses: dict, methods: dict, path: Path) -> None:
    names = [m for m in methods if m != "fp32"]
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(tasks) * len(names) / 4), 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        stats = [_mean_sd(gaps(losses[t.name])[name]) for t in tasks]
        xs = [k + i * width for k in range(len(tasks))]
        ax.bar(xs, [100 * m for m, _ in stats], width, yerr=[100 * s for _, s in stats], label=name,
               capsize=2)
    ax.axhline(100 * TARGET, color="k", ls="--", lw=0.8, label=f"target +{TARGET:.0%}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(tasks))], [t.name for t in tasks])
    ax.set_ylabel("held-out loss vs FP32 (%), mean ± sd over seeds")
    ax.set_title("CFloat8 and peers on generated tasks (same init, same batches per seed)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"gap chart: {path}")


def video(steps: int) -> None:
    """The FSD tiny network through the project trainer on its synthetic driving data, per precision."""
    import tempfile

    from opendojo.train import load_config, train

    print(f"\nFSD tiny, project trainer (configs/tiny.toml), {steps} steps\n")
    print("| precision | final train loss | vs FP32 | occupancy IoU | ADE (m) | speed MAE (m/s) |")
    print("|---|---:|---:|---:|---:|---:|")
    first = None
    for precision in ("fp32", "bf16", "dojo", "dojo_lean"):
        with tempfile.TemporaryDirectory() as out:
            overrides = [f"train.precision={precision}", f"train.steps={steps}", f"train.eval_every={steps}"]
            run = train(load_config("configs/tiny.toml", overrides), out, progress=True)
        m = run.final_metrics
        first = first or run.final_loss
        print(f"| {precision} | {run.final_loss:.4f} | {run.final_loss / first - 1:+.2%} | "
              f"{m['occupancy_iou']:.3f} | {m['ade_m']:.2f} | {m['speed_mae_mps']:.2f} |", flush=True)


def _header(args) -> None:
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine {platform.machine()} "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"load: {load}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (≥ 3 for a spread)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"subset of {','.join(TASKS)} or 'none'")
    parser.add_argument("--levers", action="store_true", help="also run the dojo variants")
    parser.add_argument("--with", dest="extra", default="",
                        help="';'-separated lever names to add to the main methods (e.g. 'dojo, block 32')")
    parser.add_argument("--video", action="store_true", help="also train FSD tiny with the project trainer")
    parser.add_argument("--video-steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave as is)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = [TASKS[name]() for name in args.tasks.split(",") if name != "none"]
    extra = {name: LEVERS[name] for name in filter(None, args.extra.split(";"))}
    methods = {**MAIN, **(LEVERS if args.levers else extra)}
    _header(args)
    if tasks:
        t0 = time.perf_counter()
        losses = run_suite(tasks, methods, seeds)
        print_tables(tasks, losses, methods, seeds)
        print(f"suite wall time {time.perf_counter() - t0:.0f} s")
        args.out.mkdir(parents=True, exist_ok=True)
        name = "cfloat_levers.png" if args.levers else "cfloat_convergence.png"
        plot(tasks, losses, methods, args.out / name)
    if args.video:
        video(args.video_steps)


if __name__ == "__main__":
    main()
