"""The report's figures, each a function from plain data (lists, dicts, numpy arrays) to PNG bytes.

Plots know nothing of training, data or hardware objects: the caller hands them numbers, so any run
folder or simulator result can be drawn without importing those pillars here.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_COLORS = {
    "fp32": "#2563eb", "dojo": "#dc2626", "cfloat8": "#dc2626", "bf16": "#059669", "dojo_lean": "#d97706",
}


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def curves(
    series: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
    panels: Sequence[tuple[str, str]],
) -> bytes:
    """One panel per metric, one line per run.

    series: run label -> metric name -> [(step, value), ...]; panels: [(metric name, y-axis label)].
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    for ax, (metric, ylabel) in zip(axes[0], panels, strict=True):
        for label, metrics in series.items():
            points = metrics.get(metric) or []
            if points:
                xs, ys = zip(*points, strict=True)
                marker = "." if len(xs) < 30 else None
                ax.plot(xs, ys, label=label, color=_COLORS.get(label), lw=1.6, marker=marker)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    return _png(fig)


def value_grid(values_by_bias: Mapping[int, np.ndarray], fmt_name: str) -> bytes:
    """Every positive code of an 8-bit format as an 8×16 grid (row = high nibble), one panel per bias.

    Colour is log2 of the decoded value, so each row of a 1_4_3 grid is one binade; the number printed in
    a cell is the value itself. values_by_bias: bias -> float array of the 256 decoded codes.
    """
    biases = list(values_by_bias)
    fig, axes = plt.subplots(1, len(biases), figsize=(5.6 * len(biases), 3.9), squeeze=False)
    for ax, bias in zip(axes[0], biases, strict=True):
        vals = np.asarray(values_by_bias[bias], dtype=np.float64)[:128].reshape(8, 16)
        logv = np.where(vals > 0, np.log2(np.where(vals > 0, vals, 1.0)), np.nan)
        im = ax.imshow(logv, cmap="viridis", aspect="auto")
        for r in range(8):
            for c in range(16):
                v = vals[r, c]
                ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=5.2,
                        color="white" if np.isnan(logv[r, c]) or logv[r, c] < np.nanmean(logv) else "black")
        ax.set_xticks(range(16), [f"{c:X}" for c in range(16)], fontsize=7)
        ax.set_yticks(range(8), [f"{r:X}_" for r in range(8)], fontsize=7)
        ax.set_title(f"{fmt_name}, bias {bias}: max {vals.max():.4g}")
        fig.colorbar(im, ax=ax, fraction=0.03, label="log2(value)")
    fig.tight_layout()
    return _png(fig)


def bias_timeline(biases: Mapping[str, Sequence[tuple[float, float]]], title: str) -> bytes:
    """The exponent bias each layer's tensor used, per step (a step plot: biases are integers)."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for name, points in biases.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.step(xs, ys, where="post", label=name, lw=1.3)
    ax.set_xlabel("step")
    ax.set_ylabel("exponent bias")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if biases:
        ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _png(fig)


def camera_strip(
    frames: np.ndarray,
    camera_names: Sequence[str],
    occupancy_truth: np.ndarray,
    occupancy_pred: Mapping[str, np.ndarray],
) -> bytes:
    """Each camera's frame, then the bird's-eye occupancy: ground truth and each model's prediction.

    frames: uint8 [cams, H, W, 3]; occupancy_*: [G, G] in 0..1 (row 0 = ahead of the ego vehicle).
    """
    n = len(frames) + 1 + len(occupancy_pred)
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.6))
    for ax, img, name in zip(axes, frames, camera_names, strict=False):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
    bev = [("occupancy truth", occupancy_truth), *((f"{k} prediction", v) for k, v in occupancy_pred.items())]
    for ax, (name, grid) in zip(axes[len(frames):], bev, strict=True):
        ax.imshow(np.asarray(grid, dtype=np.float32), cmap="magma", vmin=0, vmax=1)
        g = np.asarray(grid).shape[0]
        ax.plot([g / 2 - 0.5], [g / 2 - 0.5], marker="^", color="#22d3ee", ms=6)
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _png(fig)


def stacked_breakdown(breakdowns: Mapping[str, Mapping[str, float]], title: str) -> bytes:
    """Horizontal stacked bars of step time per component (seconds), one bar per system."""
    systems = list(breakdowns)
    components = sorted({c for b in breakdowns.values() for c in b})
    fig, ax = plt.subplots(figsize=(8.5, 0.55 * len(systems) + 1.6))
    left = np.zeros(len(systems))
    for comp in components:
        widths = np.array([breakdowns[s].get(comp, 0.0) * 1e3 for s in systems])
        ax.barh(systems, widths, left=left, label=comp)
        left += widths
    ax.set_xlabel("milliseconds per training step (components as the simulator attributes them)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def bars(values: Mapping[str, float], xlabel: str, title: str, log: bool = False) -> bytes:
    """A plain horizontal bar chart (e.g. samples/s per system)."""
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(values) + 1.4))
    ax.barh(list(values), list(values.values()), color="#2563eb")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def speed_trace(
    times_s: np.ndarray, true_mps: np.ndarray, predicted: Mapping[str, np.ndarray], baseline_mps: float
) -> bytes:
    """Ego speed along one drive: the truth, each model's prediction and a constant baseline (m/s vs s).

    times_s, true_mps and each predicted array: [F]; baseline_mps: the constant the baseline predicts.
    """
    fig, ax = plt.subplots(figsize=(8.5, 3.4))
    ax.plot(times_s, true_mps, color="black", lw=2.2, label="true speed")
    for name, values in predicted.items():
        ax.plot(times_s, values, color=_COLORS.get(name), lw=1.4, marker=".", ms=4, label=f"{name} predicted")
    ax.axhline(baseline_mps, color="#6b7280", ls="--", lw=1.2, label="training mean speed (baseline)")
    ax.set_xlabel("time along the drive, s")
    ax.set_ylabel("ego speed, m/s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _png(fig)


def bev_trajectories(clips: Sequence[Mapping[str, object]], speed_mps: float, dt_s: float) -> bytes:
    """Future ego paths seen from above (forward is up, left is left), one panel per clip.

    clips: [{"title": str, "truth": [K, 2], "predicted": {run: [K, 2]}}] in metres (x forward, y left);
    the dashed line drives straight on at ``speed_mps`` (the baseline), waypoints every ``dt_s`` seconds.
    """
    fig, axes = plt.subplots(1, len(clips), figsize=(2.6 * len(clips), 4.2), squeeze=False)
    for ax, clip in zip(axes[0], clips, strict=True):
        truth = np.asarray(clip["truth"])
        k = np.arange(len(truth) + 1) * dt_s * speed_mps
        ax.plot([0, 0], [0, k[-1]], color="#6b7280", ls="--", lw=1.2, label="straight on at mean speed")
        ax.plot(-np.r_[0, truth[:, 1]], np.r_[0, truth[:, 0]], color="black", lw=2.2, marker="o", ms=3,
                label="true path")
        for name, path in clip["predicted"].items():
            p = np.asarray(path)
            ax.plot(-np.r_[0, p[:, 1]], np.r_[0, p[:, 0]], color=_COLORS.get(name), lw=1.4, marker=".",
                    label=f"{name} predicted")
        ax.plot([0], [0], marker="s", color="#0891b2", ms=7)
        ax.set_title(str(clip["title"]), fontsize=8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("right, m")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("ahead, m")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _png(fig)


def occupancy_compare(
    truth: np.ndarray, probabilities: Mapping[str, np.ndarray], cell_m: float, ego_m: tuple[float, float]
) -> bytes:
    """Bird's-eye occupancy: the truth, then each model's prediction thresholded at 0.5, ego car marked.

    truth: [G, G] 0/1; probabilities: run -> [G, G] in 0..1 (row 0 = farthest ahead, column 0 = farthest
    left); cell_m: metres per cell; ego_m: the ego car's (length, width) in metres. In each prediction
    panel, hits are white, false alarms orange and missed cells blue.
    """
    truth = np.asarray(truth) > 0.5
    panels = [("truth", np.where(truth[..., None], [1.0, 1.0, 1.0], [0.1, 0.1, 0.12]))]
    for name, prob in probabilities.items():
        hit = np.asarray(prob) > 0.5
        rgb = np.full((*truth.shape, 3), [0.1, 0.1, 0.12])
        rgb[hit & truth], rgb[hit & ~truth] = [1.0, 1.0, 1.0], [0.98, 0.55, 0.1]
        rgb[~hit & truth] = [0.2, 0.45, 0.95]
        iou = (hit & truth).sum() / max((hit | truth).sum(), 1)
        panels.append((f"{name} > 0.5 (IoU {iou:.2f})", rgb))
    g = truth.shape[0]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5), squeeze=False)
    for ax, (title, rgb) in zip(axes[0], panels, strict=True):
        ax.imshow(rgb, extent=(-g / 2, g / 2, -g / 2, g / 2))  # one unit = one cell, ego at the origin
        length, width = ego_m[0] / cell_m, ego_m[1] / cell_m
        ax.add_patch(plt.Rectangle((-width / 2, -length / 2), width, length, color="#22d3ee"))
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _png(fig)
