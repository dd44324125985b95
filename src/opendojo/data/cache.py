"""``ensure_synthetic_dataset``: synthesise and ingest once, reuse afterwards (safe for racing ranks)."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import uuid
from pathlib import Path

from opendojo.data.index import INDEX_VERSION, load_index
from opendojo.data.ingest import ingest
from opendojo.data.synth import DEFAULT_FPS, check_size, synth
from opendojo.errors import check_int

log = logging.getLogger(__name__)


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
    (e.g. the other DDP ranks) waits on the lock and then finds the folder: a cheap no-op. A damaged
    folder (index unreadable, or a shard it names missing) is rebuilt.
    ``clip_frames`` (default ``frames``) is the stored clip length and the keyframe interval.
    """
    h, w = check_size(size)
    clip_frames = frames if clip_frames is None else clip_frames
    clip_frames = check_int("clip_frames", clip_frames, low=1, high=frames)
    base = Path(root)
    name = f"synth-{INDEX_VERSION}-n{clips}-c{cameras}-f{frames}-{h}x{w}-s{seed}-t{clip_frames}-r{fps}"
    final = base / name
    if _intact(final):
        return final
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _intact(final):
                return final
            if final.exists():  # damaged (a shard or the index gone or unreadable): rebuilt from scratch
                log.warning("synthetic dataset %s is damaged; rebuilding it", final)
                aside = base / f".{name}.damaged.{uuid.uuid4().hex[:8]}"
                os.replace(final, aside)
                shutil.rmtree(aside, ignore_errors=True)
            sources = synth(base / f"{name}.sources", clips=clips, cameras=cameras, frames=frames,
                            size=(h, w), seed=seed, fps=fps, keyint=clip_frames, progress=False)
            tmp = base / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
            report = ingest([sources], tmp, clip_frames=clip_frames, require_labels=True, progress=False)
            if not report.ok:
                shutil.rmtree(tmp, ignore_errors=True)
                raise RuntimeError(f"ensure_synthetic_dataset: ingest failed\n{report.summary()}")
            os.replace(tmp, final)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return final


def _intact(dataset: Path) -> bool:
    """True if ``dataset`` has index rows and every shard they name exists."""
    if not (dataset / "index").is_dir():
        return False
    try:
        shards = set(load_index(dataset, columns=["shard"]).column("shard").to_pylist())
    except (ValueError, OSError):
        return False
    return bool(shards) and all((dataset / s).is_file() for s in shards)
