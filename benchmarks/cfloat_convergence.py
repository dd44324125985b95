"""Does CFloat training converge like FP32? (issue 3; targets: dojo within 2 %, dojo_lean within 5 % of
FP32's final eval loss).

Trains the same networks from the same initial weights, on the same batches, with every recipe:
FP32 (unconverted), BF16 autocast, ``Recipe.dojo()``, ``Recipe.dojo_lean()`` and dojo with
round-to-nearest instead of stochastic rounding on the gradients. Tasks, made here:

- ``mlp``: a 5-layer MLP (width 256) regressing a fixed random teacher MLP's outputs (MSE);
- ``cnn``: a 5-layer CNN classifying the orientation of noisy gratings, 8 classes (cross-entropy);
- ``video`` (``--video``, optional): the project's FSD tiny video network (``opendojo.models``) trained by
  the project's trainer (``opendojo.train``) on its synthetic driving data, per precision.

Prints a table of final eval losses with the ratio to FP32, and writes a loss-curve PNG.

    .venv/bin/python benchmarks/cfloat_convergence.py [--steps 300] [--out benchmarks/out] [--video]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from opendojo.nn import Recipe, TensorPolicy, convert, requantize_weights_  # noqa: E402

RECIPES: dict[str, Recipe | None] = {
    "fp32": None,
    "bf16 autocast": None,
    "dojo": Recipe.dojo(),
    "dojo_lean": Recipe.dojo_lean(),
    "dojo, RTN gradients": replace(
        Recipe.dojo(), name="dojo-rtn", gradient=TensorPolicy("cfloat8_1_5_2", "nearest")
    ),
}
TARGETS = {"dojo": 0.02, "dojo_lean": 0.05}


# --- tasks ------------------------------------------------------------------------------------------
class _Task:
    """A model factory, a batch generator (pure function of the step) and a loss."""

    def __init__(self, name: str, seed: int):
        self.name, self.seed = name, seed

    def batch(self, index: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def model(self) -> nn.Module:
        raise NotImplementedError

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _TeacherRegression(_Task):
    """5-layer MLP regressing a random teacher MLP (MSE)"""

    dim, width, depth = 32, 256, 5

    def __init__(self, seed: int):
        super().__init__("mlp", seed)
        torch.manual_seed(seed + 1000)
        self.teacher = self._mlp(128, 3)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        # Scale the teacher's head so that its outputs have unit variance: a target of O(1), as after
        # the usual target normalisation (otherwise the loss starts near zero and says little).
        probe = self.teacher(torch.randn(4096, self.dim))
        head = self.teacher[-1]
        head.weight /= probe.std(0)[:, None]
        head.bias.sub_(probe.mean(0)).div_(probe.std(0))

    def _mlp(self, width: int, depth: int) -> nn.Module:
        layers, d = [], self.dim
        for _ in range(depth - 1):
            layers += [nn.Linear(d, width), nn.GELU()]
            d = width
        return nn.Sequential(*layers, nn.Linear(d, 4))

    def batch(self, index: int, size: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        x = torch.randn(size, self.dim, generator=g)
        return x, self.teacher(x)

    def model(self) -> nn.Module:
        return self._mlp(self.width, self.depth)

    def loss(self, out, target):
        return F.mse_loss(out, target)


class _Gratings(_Task):
    """5-layer CNN classifying grating orientation (cross-entropy)"""

    classes, size = 8, 16

    def __init__(self, seed: int):
        super().__init__("cnn", seed)

    def batch(self, index: int, size: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        label = torch.randint(0, self.classes, (size,), generator=g)
        angle = label.float() * math.pi / self.classes + 0.1 * torch.randn(size, generator=g)
        freq = 0.5 + 0.5 * torch.rand(size, generator=g)
        phase = 2 * math.pi * torch.rand(size, generator=g)
        coords = torch.arange(self.size, dtype=torch.float32) - self.size / 2
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        proj = xx[None] * torch.cos(angle)[:, None, None] + yy[None] * torch.sin(angle)[:, None, None]
        img = torch.sin(freq[:, None, None] * proj + phase[:, None, None])
        img = img + 0.5 * torch.randn(size, self.size, self.size, generator=g)
        return img[:, None], label

    def model(self) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, self.classes),
        )

    def loss(self, out, target):
        return F.cross_entropy(out, target)


# --- training ---------------------------------------------------------------------------------------
def _train(task: _Task, recipe_name: str, steps: int, batch: int, eval_every: int, lr: float):
    """Train one recipe; returns (train losses per step, [(step, eval loss)])."""
    torch.manual_seed(task.seed)
    model = task.model()
    recipe = RECIPES[recipe_name]
    if recipe is not None:
        convert(model, recipe)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if recipe_name == "bf16 autocast" \
        else contextlib.nullcontext
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    eval_batches = [task.batch(-1 - i, 256) for i in range(4)]  # held out: negative indices

    def evaluate() -> float:
        model.eval()
        with torch.no_grad(), autocast():
            total = sum(float(task.loss(model(x).float(), y)) for x, y in eval_batches)
        model.train()
        return total / len(eval_batches)

    train_losses, evals = [], [(0, evaluate())]
    for step in tqdm(range(steps), desc=f"{task.name} {recipe_name}", leave=False):
        x, y = task.batch(step, batch)
        with autocast():
            loss = task.loss(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        requantize_weights_(model)  # what a trainer calls after every step (dojo_lean: SHP weights)
        sched.step()
        train_losses.append(float(loss.detach()))
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            evals.append((step + 1, evaluate()))
    return train_losses, evals


def _video(steps: int) -> dict[str, dict[str, float]]:
    """Final train loss and eval metrics of the FSD tiny network under the project trainer, per precision.

    The trainer reports task metrics rather than an eval loss, so this part compares those.
    """
    import tempfile

    from opendojo.train import load_config, train

    results = {}
    for precision in ("fp32", "bf16", "dojo", "dojo_lean"):
        with tempfile.TemporaryDirectory() as out:
            overrides = [f"train.precision={precision}", f"train.steps={steps}", f"train.eval_every={steps}"]
            run = train(load_config("configs/tiny.toml", overrides), out, progress=True)
            results[precision] = {"loss": run.final_loss, **run.final_metrics}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="CFloat vs FP32 convergence")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--video", action="store_true", help="also train the FSD tiny video network")
    parser.add_argument("--video-steps", type=int, default=60)
    parser.add_argument("--tasks", default="mlp,cnn", help="comma-separated small tasks to run (or 'none')")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    wanted = args.tasks.split(",")
    tasks = [t for t in (_TeacherRegression(args.seed), _Gratings(args.seed)) if t.name in wanted]
    curves: dict[str, dict[str, tuple]] = {}
    for task in tasks:
        curves[task.name] = {
            name: _train(task, name, args.steps, args.batch, max(args.steps // 10, 1), args.lr)
            for name in tqdm(RECIPES, desc=task.name)
        }

    if tasks:
        _print_table(tasks, curves, args)
    if args.video:
        video = _video(args.video_steps)
        print(f"\nFSD tiny video network, project trainer, {args.video_steps} steps (configs/tiny.toml), "
              f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n")
        print("| precision | final train loss | vs FP32 | occupancy IoU | ADE (m) | speed MAE (m/s) |")
        print("|---|---|---|---|---|---|")
        for name, m in video.items():
            print(f"| {name} | {m['loss']:.4f} | {m['loss'] / video['fp32']['loss'] - 1:+.2%} | "
                  f"{m['occupancy_iou']:.3f} | {m['ade_m']:.2f} | {m['speed_mae_mps']:.2f} |")
    if tasks:
        _plot(tasks, curves, args.out / "cfloat_convergence.png")


def _print_table(tasks, curves, args) -> None:
    print(f"\nCFloat training convergence: {args.steps} steps, batch {args.batch}, Adam lr {args.lr} "
          f"(cosine), seed {args.seed}, same initial weights and batches for every recipe")
    print(f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, machine {platform.machine()} "
          f"{os.cpu_count()} cores, torch {torch.__version__}\n")
    print("| task | recipe | final eval loss | vs FP32 | target |")
    print("|---|---|---|---|---|")
    for task in tasks:
        fp32 = curves[task.name]["fp32"][1][-1][1]
        for name, (_, evals) in curves[task.name].items():
            final = evals[-1][1]
            rel = final / fp32 - 1
            target = TARGETS.get(name)
            verdict = "" if target is None else f"≤ {target:.0%}: {'met' if rel <= target else 'MISSED'}"
            print(f"| {task.name} | {name} | {final:.5f} | {rel:+.2%} | {verdict} |")


def _plot(tasks, curves, path: Path) -> None:
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for name, (train_losses, evals) in curves[task.name].items():
            k = 10
            smooth = [sum(train_losses[max(0, i - k + 1): i + 1]) / min(i + 1, k)
                      for i in range(len(train_losses))]
            (line,) = ax.plot(range(1, len(smooth) + 1), smooth, lw=1, alpha=0.5)
            ax.plot([s for s, _ in evals], [v for _, v in evals], "o-", ms=3, color=line.get_color(),
                    label=f"{name} (eval {evals[-1][1]:.4f})")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (train: thin, smoothed; eval: dots)")
        ax.set_title(f"{task.name}: {task.__class__.__doc__}", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("CFloat training vs FP32 / BF16 (same init, same batches)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"\nloss curves: {path}")


if __name__ == "__main__":
    main()
