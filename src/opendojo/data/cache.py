"""``ensure_synthetic_dataset``: synthesise and ingest once, reuse afterwards (safe for racing ranks)."""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from pathlib import Path

from opendojo.data.index import INDEX_VERSION
from opendojo.data.ingest import ingest
from opendojo.data.synth import DEFAULT_FPS, check_size, synth
from opendojo.errors import check_int


def ensure_synthetic_dataset(
    root: str | os.PathLike,
    *,
    clips: int,
    cameras: int,
    frames: int,
    size: tuple[int, int],
    seed: int,
    clip_frames: int | None = None,
    fps: int = DEFAULT_FPS,
) -> Path:
    """The path of an ingested synthetic dataset with these parameters under ``root``, built on first use.

    The name encodes every parameter, so different requests never collide. The first caller takes an
    exclusive lock (``<name>.lock``), renders the drives into ``<name>.sources/`` and ingests them into a
    hidden temp folder that is renamed to ``<name>`` when complete; every later or concurrent caller
    (e.g. the other DDP ranks) waits on the lock and then finds the folder: a cheap no-op.
    ``clip_frames`` (default ``frames``) is the stored clip length and the keyframe interval.
    """
    h, w = check_size(size)
    clip_frames = frames if clip_frames is None else clip_frames
    clip_frames = check_int("clip_frames", clip_frames, low=1, high=frames)
    base = Path(root)
    name = f"synth-{INDEX_VERSION}-n{clips}-c{cameras}-f{frames}-{h}x{w}-s{seed}-t{clip_frames}-r{fps}"
    final = base / name
    if (final / "index").is_dir():
        return final
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (final / "index").is_dir():
                return final
            sources = synth(
                base / f"{name}.sources",
                clips=clips,
                cameras=cameras,
                frames=frames,
                size=(h, w),
                seed=seed,
                fps=fps,
                keyint=clip_frames,
                progress=False,
            )
            tmp = base / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
            report = ingest([sources], tmp, clip_frames=clip_frames, require_labels=True, progress=False)
            if not report.ok:
                shutil.rmtree(tmp, ignore_errors=True)
                raise RuntimeError(f"ensure_synthetic_dataset: ingest failed\n{report.summary()}")
            os.replace(tmp, final)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return final
