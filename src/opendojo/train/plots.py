"""Loss and metric curves of a run, drawn from its ``metrics.jsonl`` (matplotlib, Agg backend)."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["plot_run", "read_metrics"]


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl``; for a step logged twice (a resumed run), the last one wins."""
    records: dict[tuple[str, int], dict] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            records[(r.get("kind", ""), r.get("step", 0))] = r
    return sorted(records.values(), key=lambda r: r.get("step", 0))


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def plot_run(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``loss.png`` (total and per-task training loss, log scale) and ``metrics.png`` (eval metrics
    with their baselines dashed) into ``out_dir``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    written = []
    if train:
        fig, ax = plt.subplots(figsize=(7, 4))
        steps = [r["step"] for r in train]
        ax.plot(steps, [r["loss"] for r in train], label="total", color="black", lw=2)
        for key in ("loss_occupancy", "loss_trajectory", "loss_speed", "loss_steering"):
            if key in train[0]:
                ax.plot(steps, [r[key] for r in train], label=key[5:], lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        written.append(_save(fig, out_dir / "loss.png"))
        plt.close(fig)
    if evals:
        panels = [
            (
                "occupancy IoU",
                "occupancy_iou",
                ["baseline_occupancy_iou_prior", "baseline_occupancy_iou_all"],
            ),
            ("trajectory ADE (m)", "ade_m", ["baseline_ade_m_constant_velocity", "baseline_ade_m_zero"]),
            ("trajectory FDE (m)", "fde_m", ["baseline_fde_m_constant_velocity", "baseline_fde_m_zero"]),
            ("speed MAE (m/s)", "speed_mae_mps", ["baseline_speed_std_mps"]),
        ]
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5))
        steps = [r["step"] for r in evals]
        for ax, (title, key, baselines) in zip(axes, panels, strict=True):
            ax.plot(steps, [r[key] for r in evals], marker="o", color="black", label="model")
            for b in baselines:
                ax.plot(
                    steps,
                    [r[b] for r in evals],
                    ls="--",
                    label=b.replace("baseline_", "").replace(key, "").strip("_") or "baseline",
                )
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, out_dir / "metrics.png"))
        plt.close(fig)
    return written
