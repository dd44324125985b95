"""The demo's outputs: ``summary.json`` (every figure the report shows, as numbers) and ``report.html``."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opendojo.demo.stages import DemoSettings, json_value
from opendojo.report import Section, figure_names, plots, render, write_atomic

#: The sections ``summary.json`` always has (the demo test checks them).
SUMMARY_SECTIONS = (
    "settings",
    "machine",
    "numerics",
    "data",
    "training",
    "cfloat_biases",
    "simulation",
    "run",
    "report",
)
_METRIC_PANELS = [
    ("loss", "training loss"),
    ("occupancy_iou", "occupancy IoU (eval)"),
    ("ade_m", "trajectory ADE, m (eval)"),
    ("speed_mae_mps", "speed MAE, m/s (eval)"),
]
_SHOWN_METRICS = ("occupancy_iou", "ade_m", "fde_m", "speed_mae_mps", "steering_mae_rad")


def _series(metrics_path: str) -> tuple[dict[str, list], list[dict]]:
    from opendojo.train import read_metrics

    series: dict[str, list] = {}
    numerics = []
    for r in read_metrics(metrics_path):
        if r.get("kind") == "numerics":
            numerics.append(r)
            continue
        for key, value in r.items():
            if key not in ("kind", "step") and isinstance(value, int | float):
                series.setdefault(key, []).append((r["step"], value))
    return series, numerics


def _bias_history(numerics: list[dict], tensor_class: str) -> dict[str, list[tuple[int, int]]]:
    history: dict[str, list[tuple[int, int]]] = {}
    for record in numerics:
        for layer, entry in record["layers"].items():
            if tensor_class in entry and entry[tensor_class]["bias"] >= 0:
                history.setdefault(layer, []).append((record["step"], entry[tensor_class]["bias"]))
    return history


_FLAG_CLASSES = ("weight", "input", "grad_output", "grad_input")


def _flag_table(numerics: list[dict]) -> list[dict[str, Any]]:
    """One row per converted layer at the last evaluation: the bias of each tensor class and the
    cumulative overflow/underflow element counts summed over its tensors."""
    if not numerics:
        return []
    rows = []
    for layer, entry in numerics[-1]["layers"].items():
        states = {c: entry[c] for c in _FLAG_CLASSES if isinstance(entry.get(c), dict)}
        rows.append(
            {
                "layer": layer,
                **{f"{c} bias": states[c]["bias"] if c in states else "" for c in _FLAG_CLASSES},
                "overflow": sum(s["overflow"] for s in states.values()),
                "underflow": sum(s["underflow"] for s in states.values()),
            }
        )
    return rows


def _sample_figure(dataset: str, settings: DemoSettings, runs: dict[str, dict]) -> tuple[bytes, dict]:
    """One held-out clip: each camera's last frame, the occupancy truth and each model's prediction."""
    from opendojo.data import ClipDataset
    from opendojo.train import load_model, predict

    ds = ClipDataset(
        dataset,
        frames_per_clip=settings.frames_per_clip,
        shuffle=False,
        split="eval",
        size=(settings.image_size, settings.image_size),
        seed=settings.seed,
    )
    cameras = list(ds.cameras)  # the demo synthesised exactly the cameras it trains on
    sample = next(iter(ds))
    frames = sample["frames"]  # [cams, T, H, W, 3]
    truth = sample["labels"]["occupancy"][-1].numpy().astype(np.float32)
    preds, ious = {}, {}
    for name, run in runs.items():
        model = load_model(run["run_dir"])
        occupancy = predict(model, frames.unsqueeze(0))["occupancy"][0, -1].numpy()
        preds[name] = occupancy
        hit = occupancy > 0.5
        union = np.logical_or(hit, truth > 0.5).sum()
        ious[name] = float(np.logical_and(hit, truth > 0.5).sum() / union) if union else 1.0
    png = plots.camera_strip(frames[:, -1].numpy(), cameras, truth, preds)
    return png, {
        "clip_id": sample["clip_id"],
        "source": sample["source"],
        "start_frame": sample["start_frame"],
        "cameras": cameras,
        "occupancy_iou_on_this_clip": ious,
    }


def _sim_rows(systems: dict[str, dict]) -> list[list[object]]:
    rows = []
    for name, r in systems.items():
        eq = r["h100_equivalents"].get("all", {})
        rows.append(
            [
                name,
                r["devices"],
                r["layout"],
                r["step_time_s"] * 1e3,
                r["samples_per_s"],
                r["mfu"],
                f"{r['memory_per_device_bytes'] / 1e9:.2f} GB ({'fits' if r['fits'] else 'does not fit'})",
                r["power_w"] / 1e3,
                eq.get("peak", {}).get("value", float("nan")),
                eq.get("delivered", {}).get("value", float("nan")),
                eq.get("power", {}).get("value", float("nan")),
            ]
        )
    return rows


#: What each headline metric is judged against: (metric, label, baseline key, target as text).
_JUDGED = (
    ("speed_mae_mps", "speed MAE, m/s", "baseline_speed_mae_mps_mean", "≤ 0.5 × baseline"),
    ("ade_m", "trajectory ADE, m", "baseline_ade_m_mean_speed", "≤ 0.6 × baseline"),
    ("fde_m", "trajectory FDE, m", "baseline_fde_m_zero", "below baseline"),
    ("occupancy_iou", "occupancy IoU", "baseline_occupancy_iou_all", "≥ 0.22"),
    ("steering_mae_rad", "steering MAE, rad", "", ""),
)


def _top_section(runs: dict[str, dict], plan: dict, wall_s: float) -> Section:
    measured = {f"{n} samples/s": f"{r['samples_per_s']:.1f}" for n, r in runs.items()}
    headline = {}
    for n, r in runs.items():
        m = r["final_metrics"]
        base = m["baseline_speed_mae_mps_mean"]
        headline[f"{n} speed MAE"] = f"{m['speed_mae_mps']:.2f} m/s (mean: {base:.2f})"
        headline[f"{n} occupancy IoU"] = f"{m['occupancy_iou']:.3f}"
    top = Section("This run").cards(
        {"wall time": f"{wall_s / 60:.1f} min", "training steps": str(plan["steps"]),
         "training runs": "side by side" if plan.get("parallel") else "one after the other",
         **measured, **headline}
    )
    return top.text(
        "OpenDojo synthesised multi-camera driving video, ingested it into a clip index, trained the tiny "
        "FSD-style network twice on it (FP32, and Dojo's CFloat8 recipe), and projected the base network's "
        "training step onto Dojo hardware and an 8×H100 box. Every number below was measured or computed "
        "in this run; every metric is scored on held-out drives that no training step saw."
    )


def _data_section(data: dict, fig_sample: bytes, sample_info: dict) -> Section:
    st = data["stats"]
    sec = Section("The data: procedural fleet-like video")
    sec.table(
        ["clips", "cameras", "camera streams", "frames", "drive minutes", "video bytes", "label bytes"],
        [[st.get("clips"), st.get("cameras"), st.get("camera_streams"), st.get("frames"),
          st.get("drive_hours", 0.0) * 60, st.get("video_bytes"), st.get("label_bytes")]],
        caption="From `dojo data stats` on the dataset this run ingested (H.264, keyframe-aligned clips).",
    )
    return sec.figure(
        fig_sample,
        f"A held-out clip ({sample_info['clip_id']}): the last frame from each camera, then "
        "the bird's-eye occupancy around the ego vehicle (forward is up, the cyan triangle is the ego "
        "car): ground truth, then each model's predicted probability.",
        "sample",
    )


def _learned_section(views: dict) -> Section:
    sec = Section("What the network learned (held-out drives)")
    sec.figure(
        views["speed_png"],
        f"Ego speed along a held-out drive of {views['drive_s']:.1f} s that no training step saw: the truth "
        "(black), each network's prediction at every frame, and the training mean speed that the untrained "
        "network predicts (dashed). Each prediction sees only the current and earlier frames of its "
        f"{views['frames_per_clip']}-frame clip, so the first frame of every clip has no motion to go on.",
        "speed-trace",
    )
    sec.figure(
        views["paths_png"],
        "The future ego path (next "
        f"{views['horizon_s']:.0f} s) seen from above for a few held-out clips, at their last frame: "
        "truth (black), each network's prediction, and driving straight on at the training mean speed "
        "(dashed, the baseline the ADE is judged against).",
        "trajectories",
    )
    return sec.figure(
        views["occupancy_png"],
        "Bird's-eye occupancy of the held-out clip above (64 m × 64 m, forward is up, the ego car in cyan): "
        "the truth, then each network's prediction thresholded at probability 0.5: hits white, false alarms "
        "orange, missed cells blue.",
        "occupancy",
    )


def _judged_rows(runs: dict[str, dict]) -> list[list[object]]:
    rows = []
    fp32, dojo = runs["fp32"]["final_metrics"], runs["dojo"]["final_metrics"]
    for metric, label, key, target in _JUDGED:
        a, b = fp32.get(metric, float("nan")), dojo.get(metric, float("nan"))
        base = fp32.get(key, float("nan")) if key else float("nan")
        rel = (b - a) / abs(a) * 100 if a else float("nan")
        rows.append([label, a, b, rel, key.removeprefix("baseline_") or "—", base,
                     a / base if key else float("nan"), b / base if key else float("nan"), target or "—"])
    return rows


def _training_section(series: dict, runs: dict[str, dict]) -> Section:
    sec = Section("Training: FP32 vs CFloat8 (Recipe.dojo)")
    sec.figure(
        plots.curves(series, _METRIC_PANELS),
        "Training loss and held-out metrics per step for the same network, data, seed and steps: FP32 "
        "(blue) and CFloat8 weights/activations with CFloat8_1_5_2 stochastically rounded gradients "
        "(red). Step 0 is the untrained network, whose heads start at the training base rates.",
        "curves",
    )
    return sec.table(
        ["metric", "FP32", "CFloat8", "CFloat8 vs FP32, %", "baseline", "baseline value", "FP32 ÷ baseline",
         "CFloat8 ÷ baseline", "target"],
        _judged_rows(runs),
        caption="Final held-out metrics, each beside the baseline it is judged against (computed on the "
        "same clips; the mean-speed baselines use the training set's mean speed).",
    )


def _bias_section(cfloat_log: list[dict]) -> tuple[Section, list[dict]]:
    from opendojo.nn import Recipe

    sec = Section("CFloat8 biases the recipe chose")
    for tensor_class in ("weight", "input", "grad_output"):
        history = _bias_history(cfloat_log, tensor_class)
        if history:
            sec.figure(
                plots.bias_timeline(history, f"{tensor_class} bias per layer"),
                f"The exponent bias of each converted layer's {tensor_class} tensor, logged at every "
                "evaluation: Recipe.dojo's dynamic policy picks, each step, the largest bias whose range "
                "still covers the tensor's largest magnitude, so the bias tracks the tensor's scale.",
                f"bias-{tensor_class}",
            )
    flags = _flag_table(cfloat_log)
    if flags:
        sec.table(
            list(flags[0]),
            [list(r.values()) for r in flags],
            caption="Per converted layer at the end of training: the bias of each tensor (weights and "
            "activations in CFloat8_1_4_3, gradients in CFloat8_1_5_2) and the cumulative number of "
            "elements that overflowed (saturated) or underflowed, from the numerics flags. Recipe.dojo "
            f"counts flags on every {Recipe.dojo().flags_every}th training step of a layer (flags_every), "
            "so these are sampled counts.",
        )
    return sec, flags


def _format_section(numerics: dict) -> Section:
    from opendojo.numerics import CFLOAT8_1_4_3, decode_table

    grid_biases = (3, 7, 11)
    sec = Section("The CFloat8 format")
    sec.figure(
        plots.value_grid({b: decode_table(CFLOAT8_1_4_3, b) for b in grid_biases}, "CFloat8_1_4_3"),
        "Every positive CFloat8_1_4_3 code (row = high nibble, column = low nibble) at three biases: the "
        "bias slides the same 8-bit grid up and down the number line. Bias 7 is OCP E4M3 except the top "
        "code, which is 480 instead of NaN.",
        "value-grid",
    )
    sec.table(
        ["format", "bias", "max", "smallest normal", "smallest subnormal"],
        [list(r.values()) for r in numerics["value_table"]],
    )
    return sec.note(
        f"Encode speed measured in this run: {numerics['encode_melem_s']:.0f} Melem/s for CFloat8_1_4_3 vs "
        f"{numerics['torch_fp8_cast_melem_s']:.0f} Melem/s for torch's native float8_e4m3fn cast "
        f"({numerics['elements']:,} float32 elements, median of 5)."
    )


def _sim_section(sim: dict) -> Section:
    from opendojo.sim import H100_EQ_DEFINITIONS

    sec = Section(f"Dojo vs GPU: the {sim['workload']} network's training step ({sim['precision']})")
    sec.figure(
        plots.stacked_breakdown(
            {k: v["breakdown"] for k, v in sim["systems"].items() if isinstance(v.get("breakdown"), dict)},
            f"simulated step time, {sim['workload']}",
        ),
        "Where one training step's time goes on each system, as the simulator attributes it (compute, "
        "memory, exposed communication, pipeline bubble, overhead).",
        "sim-breakdown",
    )
    sec.table(
        ["system", "devices", "layout", "step, ms", "samples/s", "MFU", "memory/device", "power, kW",
         "H100-eq (peak)", "H100-eq (delivered)", "H100-eq (power)"],
        _sim_rows(sim["systems"]),
    )
    for name, definition in H100_EQ_DEFINITIONS.items():
        sec.note(f"H100-equivalents, {name}: {definition}.")
    return sec


def _measured_section(records: dict[str, dict], runs: dict[str, dict]) -> Section:
    stage_rows = [
        [name, rec.get("wall_s", 0.0), "resumed" if rec.get("resumed") else "ran"]
        for name, rec in records.items()
    ]
    sec = Section("Measured in this run").table(["stage", "wall time, s", ""], stage_rows)
    return sec.table(
        ["run", "samples/s", "training wall, s", "waiting on data"],
        [[n, r["samples_per_s"], r["train_wall_s"], f"{r['data_wait_fraction']:.1%}"]
         for n, r in runs.items()],
    )


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor(),
        "threads": torch.get_num_threads(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_report(root: Path, settings: DemoSettings, records: dict[str, dict], wall_s: float) -> dict:
    """Build ``summary.json`` and ``report.html`` in ``root`` from the stage records; return the summary."""
    from opendojo.demo.views import held_out_views

    numerics, data, plan, sim = (records[k] for k in ("numerics", "data", "plan", "simulate"))
    runs = {k.removeprefix("train-"): v for k, v in records.items() if k.startswith("train-")}
    series, numeric_logs = {}, {}
    for name, run in runs.items():
        series[name], numeric_logs[name] = _series(run["metrics_path"])
    cfloat_log = next((v for v in numeric_logs.values() if v), [])
    fig_sample, sample_info = _sample_figure(data["dataset"], settings, runs)
    views = held_out_views(data, settings, runs)
    bias_section, flags = _bias_section(cfloat_log)
    sections = [
        _top_section(runs, plan, wall_s),
        _data_section(data, fig_sample, sample_info),
        _learned_section(views),
        _training_section(series, runs),
        bias_section,
        _format_section(numerics),
        _sim_section(sim),
        _measured_section(records, runs),
    ]
    machine = _machine()
    html = render("OpenDojo demo report", f"{machine['date']} · torch {machine['torch']} · "
                  f"{machine['threads']} threads", sections)
    write_atomic(root / "report.html", html)
    fp32 = runs["fp32"]["final_metrics"]
    summary = {
        "settings": asdict(settings),
        "machine": machine,
        "numerics": numerics,
        "data": {**data, "sample": sample_info},
        "training": {"steps": plan["steps"], "plan": plan, "runs": runs,
                     "baselines": {k: v for k, v in fp32.items() if k.startswith("baseline_")},
                     "held_out_drive": views["speed_series"]},
        "cfloat_biases": {"final": flags, "evaluations": len(cfloat_log)},
        "simulation": sim,
        "run": {"wall_s": wall_s, "stages": {n: r.get("wall_s") for n, r in records.items()}},
        "report": {"path": str(root / "report.html"), "figures": figure_names(sections)},
    }
    write_atomic(root / "summary.json", json.dumps(summary, indent=1, default=json_value))
    return summary
