"""Loss and metric curves of a run, drawn from its ``metrics.jsonl`` (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from pathlib import Path

from opendojo.train.durable import write_durable
from opendojo.train.metrics import read_metrics

__all__ = ["plot_run"]


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return write_durable(path, buffer.getvalue())


_PANELS = [  # (title, eval key, baseline keys drawn dashed)
    ("occupancy IoU", "occupancy_iou", ["baseline_occupancy_iou_prior", "baseline_occupancy_iou_all"]),
    ("trajectory ADE (m)", "ade_m", ["baseline_ade_m_constant_velocity", "baseline_ade_m_zero"]),
    ("trajectory FDE (m)", "fde_m", ["baseline_fde_m_constant_velocity", "baseline_fde_m_zero"]),
    ("speed MAE (m/s)", "speed_mae_mps", ["baseline_speed_std_mps"]),
]


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
        written.append(_plot_loss(plt, train, out_dir / "loss.png"))
    if evals:
        written.append(_plot_metrics(plt, evals, out_dir / "metrics.png"))
    return written


def _plot_loss(plt, train: list[dict], path: Path) -> Path:
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
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def _plot_metrics(plt, evals: list[dict], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(_PANELS), figsize=(4 * len(_PANELS), 3.5))
    steps = [r["step"] for r in evals]
    for ax, (title, key, baselines) in zip(axes, _PANELS, strict=True):
        ax.plot(steps, [r[key] for r in evals], marker="o", color="black", label="model")
        for b in baselines:
            label = b.replace("baseline_", "").replace(key, "").strip("_") or "baseline"
            ax.plot(steps, [r[b] for r in evals], ls="--", label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
