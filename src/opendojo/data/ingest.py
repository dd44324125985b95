"""``ingest``: video files in, keyframe-aligned clips in shards and a Parquet clip index out.

* **One source, one unit.** Each source becomes its own shard and index fragment, named after its
  content (``sourcejob.py``): a source is wholly in the index or not at all, and a re-run after a crash
  converges to the same files.
* **Atomic and durable.** Files are written under hidden temporary names, fsynced and renamed
  (``durable.py``); the temporaries of killed writers are swept at the start and end of every ingest.
* **Idempotent.** Sources are identified by the SHA-256 of their bytes; content already in the index
  (under any name) is skipped.
* **Parallel, and never hangs.** ``workers=N`` runs the per-source function in ``N`` processes
  (``engine.py``); a killed worker fails the files in flight (the others run in a fresh pool), Ctrl-C
  stops the run, and the report lists every file that was not ingested.
* **Bad input** (missing, empty, corrupt, truncated or non-video files, FIFOs and devices, symlink
  loops, unreadable files and folders, missing or malformed sidecars) is reported per path with a
  reason; everything else is ingested.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from opendojo.data import engine
from opendojo.data.clipcut import file_sha256
from opendojo.data.durable import remove_unfinished, sweep_temporaries
from opendojo.data.index import load_index
from opendojo.data.shard import join, url_to_fs
from opendojo.data.sourcejob import SourceJob, SourceResult, ingest_source
from opendojo.errors import UsageError, check_positive, printable

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".ts", ".mts")
INTERRUPTED = "not done: the ingest was interrupted (Ctrl-C); run again"


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
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """A few lines for a terminal; paths and reasons are escaped (they come from file names)."""
        lines = [
            f"{printable(self.dataset)}: {len(self.ingested)} sources ingested ({self.clips} clips, "
            f"{self.copied_streams} camera clips copied, {self.reencoded_streams} re-encoded), "
            f"{len(self.skipped)} already present, {len(self.failures)} failed"
            + (" (interrupted)" if self.interrupted else "")
        ]
        lines += [f"  FAILED {printable(f.path)}: {printable(f.reason)}" for f in self.failures]
        return "\n".join(lines)

    def add(self, result: SourceResult) -> None:
        if result.error:
            self.failures.append(IngestFailure(result.path, result.error))
            return
        self.ingested.append(result.path)
        self.clips += result.clips
        self.copied_streams += result.copied
        self.reencoded_streams += result.reencoded
        self.shards.append(result.shard)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


class _Walk:
    """Collects the video files under the sources; every path it cannot use becomes a failure."""

    def __init__(self, failures: list[IngestFailure]):
        self.files: list[Path] = []
        self.failures = failures
        self._seen: set[tuple[int, int]] = set()  # (device, inode) of folders walked: symlink cycles

    def source(self, p: Path, *, named: bool) -> None:
        try:
            st = p.stat()  # follows links: a dangling link or a loop fails here, with its reason
        except FileNotFoundError:
            self.failures.append(IngestFailure(str(p), "does not exist"))
            return
        except OSError as e:
            self.failures.append(IngestFailure(str(p), f"cannot read ({e.strerror or e})"))
            return
        if stat.S_ISDIR(st.st_mode):
            self.folder(p, (st.st_dev, st.st_ino))
        elif not (named or p.suffix.lower() in VIDEO_EXTENSIONS):
            return
        elif stat.S_ISREG(st.st_mode):
            self.files.append(p)  # named explicitly: tried whatever its extension
        else:  # opening a FIFO would block for ever; a device is not a video file
            self.failures.append(IngestFailure(str(p), f"{_kind(st.st_mode)}, not a regular file; skipped"))

    def folder(self, folder: Path, key: tuple[int, int]) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            self.failures.append(IngestFailure(str(folder), f"cannot read folder ({e.strerror or e})"))
            return
        for e in entries:
            self.source(Path(e.path), named=False)


def _expand(sources: list[str | os.PathLike], failures: list[IngestFailure]) -> list[Path]:
    walk = _Walk(failures)
    for src in sources:
        walk.source(Path(src), named=True)
    return walk.files


def _hash(path: Path) -> SourceResult | str:
    """The file's SHA-256, or a ``SourceResult`` with the reason it cannot be read."""
    try:
        return file_sha256(path)
    except OSError as e:
        return SourceResult(str(path), f"cannot read ({e.strerror or e})")


def _hash_all(files: list[Path], workers: int, known: set[str], report: IngestReport
              ) -> list[tuple[str, str]]:
    """``(path, sha256)`` of each file to cut: unreadable ones are failures, known content is skipped."""
    todo, seen, done = [], set(known), set()
    try:
        for path, result, error in engine.run(_hash, files, workers):
            done.add(path)
            if error or isinstance(result, SourceResult):
                report.add(result if error is None else SourceResult(str(path), error))
            elif result in seen:
                report.skipped.append(str(path))
            else:
                seen.add(result)
                todo.append((str(path), result))
    except KeyboardInterrupt:
        report.interrupted = True
        report.failures += [IngestFailure(str(p), INTERRUPTED) for p in files if p not in done]
        report.failures += [IngestFailure(p, INTERRUPTED) for p, _ in todo]
        return []
    return todo


def _cut_all(jobs: list[SourceJob], workers: int, report: IngestReport, progress: bool,
             ray_address: str | None = None) -> None:
    """Run every job (as Ray tasks with ``ray_address``); on an interrupt, the jobs not finished are
    reported as failed and it re-raises."""
    done: set[str] = set()
    bar = tqdm(total=len(jobs), desc="ingest", unit="file", disable=not progress)
    if ray_address:
        from opendojo.data.ray_engine import run_ray  # Ray is the `cluster` extra

        runs = run_ray(ingest_source, jobs, ray_address)
    else:
        runs = engine.run(ingest_source, jobs, workers)
    try:
        for job, result, error in runs:
            report.add(result if error is None else SourceResult(job.path, error))
            done.add(job.path)
            bar.update(1)
    except KeyboardInterrupt:
        runs.close()  # stops the workers; each removes its temporaries
        report.interrupted = True
        report.failures += [IngestFailure(j.path, INTERRUPTED) for j in jobs if j.path not in done]
    finally:
        bar.close()


def _sweep(dataset: str) -> None:
    fs, root = url_to_fs(dataset)
    for sub in ("shards", "index"):
        sweep_temporaries(fs, join(root, sub))


def ingest(
    sources: list[str | os.PathLike] | str | os.PathLike,
    dataset_dir: str | os.PathLike,
    workers: int = 1,
    clip_frames: int = 16,
    *,
    require_labels: bool = False,
    tags: list[str] | None = None,
    progress: bool = True,
    ray_address: str | None = None,
) -> IngestReport:
    """Ingest video files and folders (searched recursively for video extensions) into ``dataset_dir``.

    ``clip_frames``: frames per stored clip (make it the training clip length, or a multiple of it).
    ``require_labels``: a video without its JSON sidecar is a failure instead of an unlabelled source.
    ``ray_address``: cut the files as Ray tasks on that cluster (``HOST:6379``) instead of ``workers``
    local processes; the dataset must be on storage every node sees. The dataset is the same either way.
    Returns an ``IngestReport``; bad sources are listed there, never raised. Ctrl-C stops the run and
    returns the report with ``interrupted`` set (the files not finished listed as failures). Raises
    ``UsageError`` for bad arguments and ``OSError`` when the dataset folder cannot be created.
    """
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    if not sources:
        raise UsageError("sources: got none; allowed: one or more files or folders")
    workers, clip_frames = check_positive("workers", workers), check_positive("clip_frames", clip_frames)
    dataset = str(dataset_dir)
    fs, root = url_to_fs(dataset)
    fs.makedirs(join(root, "index"), exist_ok=True)
    fs.makedirs(join(root, "shards"), exist_ok=True)
    _sweep(dataset)
    report = IngestReport(dataset)
    files = _expand(list(sources), report.failures)
    known = set(load_index(dataset, columns=["source_sha256"]).column("source_sha256").to_pylist())
    todo = _hash_all(files, workers, known, report)
    tags = tuple(tags or ())
    jobs = [SourceJob(dataset, path, sha, clip_frames, require_labels, tags) for path, sha in todo]
    _cut_all(jobs, workers, report, progress, ray_address)
    if report.interrupted:  # an inline worker runs in this process: nothing is left to sweep it later
        remove_unfinished(fs, root)
    _sweep(dataset)
    report.ingested.sort()
    report.failures.sort(key=lambda f: f.path)
    return report
