"""``ingest``: video files in, keyframe-aligned clips in shards and a Parquet clip index out.

* **Atomic.** A shard is written under a hidden temp name and renamed when complete; its index
  fragment is renamed into place after it. A crash leaves at most an invisible temp file.
* **Idempotent.** Sources are identified by the SHA-256 of their bytes; content already in the index
  (under any name) is skipped. A source's clips always go into one shard and one fragment, so a
  source is either wholly in the index or not at all.
* **Parallel.** ``workers=N`` hashes and cuts sources in ``N`` processes, each writing its own shards
  under its own writer name; several machines can ingest into one dataset the same way.
* **Bad input** (missing, empty, corrupt, truncated or non-video files, unreadable folders, missing or
  malformed sidecars) is reported per path with a reason; everything else is ingested.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from opendojo.data.clipcut import CutSource, SourceError, cut_source, file_sha256
from opendojo.data.index import load_index, safe_writer_name, write_fragment
from opendojo.data.shard import ShardWriter, join, url_to_fs

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".ts", ".mts")
DEFAULT_SHARD_BYTES = 256 << 20
AHEAD_M = 20.0


@dataclass(frozen=True)
class IngestFailure:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingest did. ``ok`` is False when any source failed (the CLI then exits 1)."""

    dataset: str
    ingested: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # content already in the dataset
    failures: list[IngestFailure] = field(default_factory=list)
    clips: int = 0
    reencoded_streams: int = 0
    copied_streams: int = 0
    shards: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        lines = [
            f"{self.dataset}: {len(self.ingested)} sources ingested ({self.clips} clips, "
            f"{self.copied_streams} camera clips copied, {self.reencoded_streams} re-encoded), "
            f"{len(self.skipped)} already present, {len(self.failures)} failed"
        ]
        lines += [f"  FAILED {f.path}: {f.reason}" for f in self.failures]
        return "\n".join(lines)


def _expand(sources: list[str | os.PathLike], failures: list[IngestFailure]) -> list[Path]:
    files: list[Path] = []

    def walk(folder: Path) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            failures.append(IngestFailure(str(folder), f"cannot read folder ({e.strerror or e})"))
            return
        for e in entries:
            p = Path(e.path)
            if e.is_dir():
                walk(p)
            elif p.suffix.lower() in VIDEO_EXTENSIONS:
                files.append(p)

    for src in sources:
        p = Path(src)
        if p.is_dir():
            walk(p)
        elif p.exists():
            files.append(p)  # named explicitly: try it whatever its extension
        else:
            failures.append(IngestFailure(str(p), "does not exist"))
    return files


def _label_stats(labels: dict[str, np.ndarray] | None) -> dict:
    out = {
        "speed_mean": None,
        "speed_max": None,
        "steering_abs_max": None,
        "occupied_ahead": None,
        "vehicles_max": None,
    }
    if not labels:
        return out
    if "speed" in labels:
        out["speed_mean"] = float(np.mean(labels["speed"]))
        out["speed_max"] = float(np.max(labels["speed"]))
    if "steering" in labels:
        out["steering_abs_max"] = float(np.max(np.abs(labels["steering"])))
    occ = labels.get("occupancy")
    if occ is not None and occ.ndim == 3:
        from opendojo.data.labels import OCCUPANCY_CELL_M

        g = occ.shape[1]
        rows = max(1, int(round(AHEAD_M / OCCUPANCY_CELL_M)))
        lane = slice(g // 2 - 1, g // 2 + 1)  # the two columns either side of the ego centre line
        out["occupied_ahead"] = float(
            np.mean(occ[:, g // 2 - rows : g // 2, lane].reshape(len(occ), -1).any(1))
        )
    if "box_mask" in labels:
        out["vehicles_max"] = int(labels["box_mask"].reshape(len(labels["box_mask"]), -1).sum(1).max())
    return out


def _write_source(writer: ShardWriter, shard_rel: str, cut: CutSource, writer_name: str) -> list[dict]:
    from safetensors.numpy import save

    rows = []
    for clip in cut.clips:
        lab_member = lab_off = lab_size = None
        if clip.labels:
            lab_member = f"{clip.clip_id}.labels.safetensors"
            lab_off, lab_size = writer.add(lab_member, save(clip.labels))
        stats = _label_stats(clip.labels)
        for ci, (data, re) in enumerate(zip(clip.members, clip.reencoded, strict=True)):
            h, w = cut.sizes[ci]
            member = f"{clip.clip_id}.{ci}.mp4"
            off, size = writer.add(member, data)
            rows.append(
                {
                    "clip_id": clip.clip_id,
                    "camera": cut.cameras[ci],
                    "camera_index": ci,
                    "source": str(cut.path),
                    "source_sha256": cut.sha256,
                    "start_frame": clip.start_frame,
                    "frames": clip.frames,
                    "fps": cut.fps,
                    "start_s": clip.start_frame / cut.fps,
                    "duration_s": clip.frames / cut.fps,
                    "width": w - w % 2 if re else w,  # re-encoding rounds odd sizes down to even
                    "height": h - h % 2 if re else h,
                    "codec": "h264",
                    "reencoded": re,
                    "shard": shard_rel,
                    "member": member,
                    "data_offset": off,
                    "data_bytes": size,
                    "labels_member": lab_member,
                    "labels_offset": lab_off,
                    "labels_bytes": lab_size,
                    "tags": cut.tags,
                    "writer": writer_name,
                    **stats,
                }
            )
    return rows


def _ingest_files(job: tuple) -> tuple[list, list, list, int, int, int]:
    """Worker: cut ``files`` into shards of about ``shard_bytes``; returns what happened."""
    dataset, files, clip_frames, require_labels, tags, shard_bytes = job
    writer_name = safe_writer_name(f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    fs, root = url_to_fs(dataset)
    ingested, failures, shards = [], [], []
    clips = copied = reencoded = 0
    writer, rows, seq, committed = None, [], 0, []

    def commit() -> None:
        # One fragment per writer, rewritten (temp + rename) after each shard: a reader sees all of this
        # writer's complete shards and nothing else, and a dataset keeps few fragments to open per query.
        nonlocal writer, rows, seq
        if writer is not None:
            writer.commit()
            committed.extend(rows)
            write_fragment(dataset, writer_name, committed)  # after the shard: visible rows never dangle
            shards.append(writer.final)
        writer, rows, seq = None, [], seq + 1

    try:
        for path, sha in files:
            try:
                cut = cut_source(Path(path), sha, clip_frames, require_labels=require_labels, tags=tags)
            except SourceError as e:
                failures.append(IngestFailure(str(path), str(e)))
                continue
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
                failures.append(IngestFailure(str(path), f"{e.__class__.__name__}: {e}"))
                continue
            if writer is None:
                writer = ShardWriter(fs, join(root, "shards"), f"{writer_name}-{seq:05d}")
            rows += _write_source(writer, f"shards/{writer.name}.tar", cut, writer_name)
            ingested.append(str(path))
            clips += len(cut.clips)
            flags = [r for c in cut.clips for r in c.reencoded]
            reencoded += sum(flags)
            copied += len(flags) - sum(flags)
            if writer.bytes >= shard_bytes:
                commit()
        commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return ingested, failures, shards, clips, copied, reencoded


def _hash(path: Path) -> tuple[str, str | None, str | None]:
    try:
        return str(path), file_sha256(path), None
    except OSError as e:
        return str(path), None, f"cannot read ({e.strerror or e})"


def ingest(
    sources: list[str | os.PathLike] | str | os.PathLike,
    dataset_dir: str | os.PathLike,
    workers: int = 1,
    clip_frames: int = 16,
    *,
    require_labels: bool = False,
    tags: list[str] | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: bool = True,
) -> IngestReport:
    """Ingest video files and folders (searched recursively for video extensions) into ``dataset_dir``.

    ``clip_frames``: frames per stored clip (make it the training clip length, or a multiple of it).
    ``require_labels``: a video without its JSON sidecar is a failure instead of an unlabelled source.
    Returns an ``IngestReport``; bad sources are listed there, never raised.
    """
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    if not sources:
        raise ValueError("sources: need at least one file or folder")
    for name, value, lo in (
        ("workers", workers, 1),
        ("clip_frames", clip_frames, 1),
        ("shard_bytes", shard_bytes, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name}={value!r}: must be an integer >= {lo}")
    dataset = str(dataset_dir)
    fs, root = url_to_fs(dataset)
    fs.makedirs(join(root, "index"), exist_ok=True)
    fs.makedirs(join(root, "shards"), exist_ok=True)
    report = IngestReport(dataset)
    files = _expand(list(sources), report.failures)
    known = set(load_index(dataset).column("source_sha256").to_pylist())

    pool = None
    if workers > 1 and len(files) > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(min(workers, len(files)))
    try:
        mapper = pool.imap if pool else map
        todo, seen = [], set(known)
        for path, sha, err in mapper(_hash, files):
            if err:
                report.failures.append(IngestFailure(path, err))
            elif sha in seen:
                report.skipped.append(path)
            else:
                seen.add(sha)
                todo.append((path, sha))
        n_jobs = 1 if pool is None else min(len(todo), workers * 4)
        jobs = [
            (dataset, todo[i::n_jobs], clip_frames, require_labels, tags or [], shard_bytes)
            for i in range(n_jobs)
            if todo[i::n_jobs]
        ]
        bar = tqdm(total=len(todo), desc="ingest", unit="file", disable=not progress)
        for ingested, failures, shards, clips, copied, reencoded in (pool.imap_unordered if pool else map)(
            _ingest_files, jobs
        ):
            report.ingested += ingested
            report.failures += failures
            report.shards += shards
            report.clips += clips
            report.copied_streams += copied
            report.reencoded_streams += reencoded
            bar.update(len(ingested) + len(failures))
        bar.close()
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    report.ingested.sort()
    report.failures.sort(key=lambda f: f.path)
    return report
