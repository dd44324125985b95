"""One source file in, its own shard and index fragment out: the unit of work an ingest engine runs.

``ingest_source(job)`` is a plain function of picklable inputs, so any engine can run it (inline, a
process pool, later a Ray task). It touches nothing but two files named after the source's content:

    shards/src-<sha256[:24]>.tar       the clips of this source
    index/src-<sha256[:24]>.parquet    their index rows

Content names make a re-run after a crash converge: the same source gives the same bytes under the
same names, so a shard published just before a kill (its fragment not yet written) is simply
replaced, never left as an orphan, and two machines ingesting the same file cannot duplicate it.
The shard is published first, then the fragment, so a visible index row always points at a complete
shard; if the fragment cannot be written the shard is removed again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opendojo.data.clipcut import CutClip, SourceError, SourceInfo, open_source
from opendojo.data.durable import remove_quietly
from opendojo.data.index import write_fragment
from opendojo.data.labels import OCCUPANCY_CELL_M
from opendojo.data.shard import ShardWriter, join, url_to_fs

log = logging.getLogger(__name__)

AHEAD_M = 20.0  # metres: how far ahead ``occupied_ahead`` looks in the ego lane


@dataclass(frozen=True)
class SourceJob:
    dataset: str
    path: str
    sha256: str
    clip_frames: int
    require_labels: bool = False
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceResult:
    """What became of one source: ``error`` is None when its clips are in the index."""

    path: str
    error: str | None = None
    clips: int = 0
    copied: int = 0
    reencoded: int = 0
    shard: str | None = None


def unit_name(sha256: str) -> str:
    """The shard and fragment name of a source with this content hash."""
    return f"src-{sha256[:24]}"


def display_path(path: str | os.PathLike) -> str:
    """``path`` as valid UTF-8 text for the index: undecodable bytes of a file name become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def label_stats(labels: dict[str, np.ndarray] | None) -> dict:
    """Per-clip statistics stored in the index (None where the clip has no such label)."""
    out = dict.fromkeys(("speed_mean", "speed_max", "steering_abs_max", "occupied_ahead", "vehicles_max"))
    if not labels:
        return out
    if "speed" in labels:
        out["speed_mean"] = float(np.mean(labels["speed"]))
        out["speed_max"] = float(np.max(labels["speed"]))
    if "steering" in labels:
        out["steering_abs_max"] = float(np.max(np.abs(labels["steering"])))
    occ = labels.get("occupancy")
    if occ is not None and occ.ndim == 3:
        g = occ.shape[1]
        rows = max(1, int(round(AHEAD_M / OCCUPANCY_CELL_M)))
        lane = slice(g // 2 - 1, g // 2 + 1)  # the two columns either side of the ego centre line
        ahead = occ[:, g // 2 - rows : g // 2, lane].reshape(len(occ), -1)
        out["occupied_ahead"] = float(np.mean(ahead.any(1)))
    if "box_mask" in labels:
        out["vehicles_max"] = int(labels["box_mask"].reshape(len(labels["box_mask"]), -1).sum(1).max())
    return out


def _clip_rows(writer: ShardWriter, info: SourceInfo, clip: CutClip, source: str) -> list[dict]:
    """Add ``clip``'s members to the shard; returns its index rows (one per camera)."""
    from safetensors.numpy import save

    lab_member = lab_off = lab_size = None
    if clip.labels:
        lab_member = f"{clip.clip_id}.labels.safetensors"
        lab_off, lab_size = writer.add(lab_member, save(clip.labels))
    common = {"clip_id": clip.clip_id, "source": source, "source_sha256": info.sha256,
              "start_frame": clip.start_frame, "frames": clip.frames, "fps": info.fps,
              "start_s": clip.start_frame / info.fps, "duration_s": clip.frames / info.fps, "codec": "h264",
              "shard": f"shards/{writer.name}.tar", "labels_member": lab_member, "labels_offset": lab_off,
              "labels_bytes": lab_size, "tags": info.tags, "writer": writer.name, **label_stats(clip.labels)}
    rows = []
    for ci, (data, re) in enumerate(zip(clip.members, clip.reencoded, strict=True)):
        h, w = info.sizes[ci]
        member = f"{clip.clip_id}.{ci}.mp4"
        off, size = writer.add(member, data)
        rows.append({**common, "camera": info.cameras[ci], "camera_index": ci, "reencoded": re,
                     "width": w - w % 2 if re else w, "height": h - h % 2 if re else h,  # encoder rounds down
                     "member": member, "data_offset": off, "data_bytes": size})
    return rows


def _oserror_text(e: OSError) -> str:
    where = f" ({display_path(e.filename)})" if e.filename else ""
    return f"{e.strerror or e.__class__.__name__}{where}"


def _cut_into_shard(job: SourceJob, writer_of) -> tuple[ShardWriter, list[dict], list[bool]]:
    """Stream ``job``'s clips into a new shard (unpublished): the writer, rows, re-encode flags."""
    writer, rows, flags = None, [], []
    try:
        with open_source(Path(job.path), job.sha256, job.clip_frames, require_labels=job.require_labels,
                         tags=list(job.tags)) as (info, clips):
            writer = writer_of()
            for clip in clips:
                rows += _clip_rows(writer, info, clip, display_path(job.path))
                flags += clip.reencoded
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return writer, rows, flags


def ingest_source(job: SourceJob) -> SourceResult:
    """Cut ``job.path`` into its own shard and fragment in ``job.dataset``. A bad file, or a read or
    write error (EACCES, ENOSPC), gives a ``SourceResult`` with ``error`` set and leaves nothing of the
    source on disk; only an interrupt (or a kill) escapes, and then too its temporaries are removed."""
    fs, root = url_to_fs(job.dataset)
    name = unit_name(job.sha256)
    try:
        writer, rows, flags = _cut_into_shard(job, lambda: ShardWriter(fs, join(root, "shards"), name))
        writer.commit()
    except SourceError as e:
        return SourceResult(job.path, str(e))
    except OSError as e:
        return SourceResult(job.path, f"cannot read the source or write its shard: {_oserror_text(e)}")
    except Exception as e:  # noqa: BLE001 - a decoder or library failure on one file must not stop the others
        log.debug("ingest of %s failed", job.path, exc_info=True)
        return SourceResult(job.path, f"{e.__class__.__name__}: {e}")
    try:
        write_fragment(job.dataset, name, rows)  # after the shard: visible rows never dangle
    except BaseException as e:
        remove_quietly(fs, writer.final)  # no orphan shard without its rows
        if not isinstance(e, Exception):
            raise
        reason = _oserror_text(e) if isinstance(e, OSError) else f"{e.__class__.__name__}: {e}"
        return SourceResult(job.path, f"cannot write its index fragment: {reason}")
    clips = len({r["clip_id"] for r in rows})
    return SourceResult(job.path, None, clips, flags.count(False), flags.count(True), writer.final)
