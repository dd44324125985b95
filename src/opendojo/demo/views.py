"""What the trained networks see and predict on held-out data, drawn for the demo report.

Three views, each from networks loaded back from their run folders (the checkpoints, not the live
objects): ego speed along a long held-out drive, future paths of a few held-out clips from above, and
the thresholded occupancy of one held-out clip beside its truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from opendojo.demo.stages import DemoSettings
from opendojo.report import plots

#: How many held-out clips the bird's-eye trajectory figure shows.
PATH_CLIPS = 4
#: The held-out drive of the speed plot: drive number (past any training drive) and length in frames.
DRIVE_NUMBER = 1_000_000
DRIVE_FRAMES = 96


def synth_held_out_drive(root: Path, settings: DemoSettings) -> str:
    """Render one long drive that is not in the training data and ingest it; returns the dataset folder.

    Its random stream is drive number ``DRIVE_NUMBER`` of the demo's seed, which ``synth`` never reaches.
    """
    from opendojo.data import ingest
    from opendojo.data.synth import synth_drive

    sources = root / "held_out_drive" / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    synth_drive(sources / "drive.mp4", seed=settings.seed, drive=DRIVE_NUMBER, cameras=settings.cameras,
                frames=DRIVE_FRAMES, size=(settings.image_size, settings.image_size))
    dataset = root / "held_out_drive" / "dataset"
    report = ingest(sources, dataset, clip_frames=settings.frames_per_clip, progress=False)
    if report.failures:
        raise RuntimeError(f"ingest of the held-out drive failed: {report.failures}")
    return str(dataset)


def _clips(dataset: str, settings: DemoSettings, split: str | None) -> list[dict]:
    from opendojo.data import ClipDataset

    size = (settings.image_size, settings.image_size)
    return list(ClipDataset(dataset, frames_per_clip=settings.frames_per_clip, shuffle=False, split=split,
                            size=size, seed=settings.seed))


def _predict_all(models: dict[str, torch.nn.Module], clips: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """Each model's outputs on ``clips`` (stacked in order): run -> output name -> ``[N, T, ...]``."""
    from opendojo.train import predict

    frames = torch.stack([c["frames"] for c in clips])
    return {name: {k: v.numpy() for k, v in predict(m, frames).items()} for name, m in models.items()}


def _speed_view(models: dict, drive: str, settings: DemoSettings, train_speed: float) -> tuple[bytes, dict]:
    clips = _clips(drive, settings, None)  # content order = time order along the one drive
    outputs = _predict_all(models, clips)
    true = np.concatenate([c["labels"]["speed"].numpy() for c in clips])
    times = np.arange(len(true)) / _fps(drive)
    predicted = {name: out["speed"].reshape(-1) for name, out in outputs.items()}
    series = {"time_s": times.tolist(), "true_mps": true.tolist(),
              **{f"{n}_mps": v.tolist() for n, v in predicted.items()}}
    return plots.speed_trace(times, true, predicted, train_speed), series


def _fps(dataset: str) -> float:
    from opendojo.data import load_index

    return float(load_index(dataset, columns=["fps"]).column("fps")[0].as_py())


def _one_per_clip(clips: list[dict], count: int) -> list[dict]:
    """The first window of each of the first ``count`` stored clips (so each panel is another drive)."""
    chosen: dict[str, dict] = {}
    for clip in clips:
        chosen.setdefault(clip["clip_id"], clip)
    return list(chosen.values())[:count]


def _paths_view(models: dict, clips: list[dict], train_speed: float, dt_s: float) -> bytes:
    outputs = _predict_all(models, clips)
    panels = []
    for i, clip in enumerate(clips):
        panels.append({
            "title": f"{clip['clip_id'][:10]}, {clip['labels']['speed'][-1]:.1f} m/s",
            "truth": clip["labels"]["trajectory"][-1].numpy(),
            "predicted": {name: out["trajectory"][i, -1] for name, out in outputs.items()},
        })
    return plots.bev_trajectories(panels, train_speed, dt_s)


def held_out_views(data: dict, settings: DemoSettings, runs: dict[str, dict]) -> dict[str, Any]:
    """The report's held-out figures (PNG bytes) and the numbers behind the speed plot."""
    from opendojo.data.labels import OCCUPANCY_CELL_M, TRAJECTORY_DT_S, TRAJECTORY_STEPS
    from opendojo.data.scene import EGO_SIZE_M
    from opendojo.train import load_model

    models = {name: load_model(run["run_dir"]) for name, run in runs.items()}
    train_speed = float(next(iter(models.values())).speed_prior_mps)
    held_out = _clips(data["dataset"], settings, "eval")
    speed_png, series = _speed_view(models, data["held_out_drive"], settings, train_speed)
    truth = held_out[0]["labels"]["occupancy"][-1].numpy()
    probs = {name: out["occupancy"][0, -1] for name, out in _predict_all(models, held_out[:1]).items()}
    return {
        "speed_png": speed_png,
        "speed_series": series,
        "drive_s": series["time_s"][-1],
        "frames_per_clip": settings.frames_per_clip,
        "horizon_s": TRAJECTORY_STEPS * TRAJECTORY_DT_S,
        "paths_png": _paths_view(models, _one_per_clip(held_out, PATH_CLIPS), train_speed, TRAJECTORY_DT_S),
        "occupancy_png": plots.occupancy_compare(truth, probs, OCCUPANCY_CELL_M, EGO_SIZE_M),
    }
