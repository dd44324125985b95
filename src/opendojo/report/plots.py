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
