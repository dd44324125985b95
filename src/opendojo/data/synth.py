"""``synth``: procedural multi-camera driving video, encoded as H.264 with PyAV, with label sidecars.

Each generated drive is one MP4 holding one H.264 video stream per camera (stream titles ``front``,
``left``, ...), and a JSON sidecar with the per-frame labels described in ``labels.py``. The same
``seed`` gives the same bytes (single-threaded bit-exact encoding, no timestamps in the container).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from opendojo.data.codec import add_h264_stream, open_output
from opendojo.data.labels import sidecar_path, write_sidecar
from opendojo.data.render import Camera, camera_names, render_frame
from opendojo.data.scene import make_scene, scene_labels
from opendojo.errors import UsageError, check_positive, check_seed

DEFAULT_FPS = 30


def check_size(size: object) -> tuple[int, int]:
    """Validate ``size=(H, W)``: two even integers of at least 16 pixels."""
    ok = isinstance(size, tuple | list) and len(size) == 2
    ok = ok and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in size)
    if not ok or any(v < 16 or v % 2 for v in size):
        raise UsageError(f"size={size!r}: must be (height, width), two even integers >= 16")
    return int(size[0]), int(size[1])


def synth_drive(
    path: Path,
    *,
    seed: int,
    drive: int,
    cameras: int,
    frames: int,
    size: tuple[int, int],
    fps: int = DEFAULT_FPS,
    keyint: int = 16,
) -> None:
    """Render and encode one drive to ``path`` (MP4) plus its sidecar; both written atomically."""
    rng = np.random.default_rng([int(seed), int(drive)])
    scene = make_scene(rng, frames, fps)
    names = camera_names(cameras)
    cams = [Camera(n, *size) for n in names]
    pose, vehicles = scene.ego_pose(), scene.vehicles_in_ego_frame()
    tmp = path.with_name(path.name + ".tmp")
    out = open_output(str(tmp))
    try:
        streams = []
        for name in names:
            st = add_h264_stream(out, fps=fps, height=size[0], width=size[1], keyint=keyint)
            st.metadata["title"] = name
            streams.append(st)
        import av

        for i in range(frames):
            for st, img in zip(streams, render_frame(scene, i, cams, pose, vehicles), strict=True):
                frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
                frame.pts = i
                out.mux(st.encode(frame))
        for st in streams:
            out.mux(st.encode(None))
    finally:
        out.close()
    write_sidecar(sidecar_path(path), scene_labels(scene), fps=fps, cameras=names)
    tmp.replace(path)


def synth(
    out_dir: str | Path,
    clips: int = 4,
    cameras: int = 4,
    frames: int = 64,
    size: tuple[int, int] = (128, 128),
    seed: int = 0,
    *,
    fps: int = DEFAULT_FPS,
    keyint: int = 16,
    progress: bool = True,
) -> Path:
    """Generate ``clips`` drives of ``frames`` frames from ``cameras`` cameras into ``out_dir``.

    Files: ``drive_00000.mp4`` (one H.264 stream per camera, ``size=(H, W)`` pixels, ``fps`` frames/s,
    a keyframe every ``keyint`` frames) and ``drive_00000.json`` (labels). Returns ``out_dir``.
    Drives that already exist are rendered again and replaced (same seed, same bytes).
    """
    clips = check_positive("clips", clips)
    frames = check_positive("frames", frames)
    keyint = check_positive("keyint", keyint)
    fps = check_positive("fps", fps)
    camera_names(cameras)
    size = check_size(size)
    seed = check_seed("seed", seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k in tqdm(range(clips), desc="synth", unit="drive", disable=not progress):
        synth_drive(
            out / f"drive_{k:05d}.mp4",
            seed=seed,
            drive=k,
            cameras=cameras,
            frames=frames,
            size=size,
            fps=fps,
            keyint=keyint,
        )
    return out
