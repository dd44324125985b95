"""Item 3: each bad input is reported with its path and reason, every good file of the same run is
ingested and indexed, and nothing of a bad file is left on disk (no orphan shard, no dangling row)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from opendojo.data import ingest, load_index, synth, write_sidecar


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    """One labelled 2-camera drive of 32 frames at 64x64."""
    out = synth(tmp_path_factory.mktemp("drive"), clips=1, cameras=2, frames=32, size=(64, 64), seed=3,
                keyint=16, progress=False)
    return out / "drive_00000.mp4"


def _assert_consistent(ds: Path) -> None:
    """Every index row points at an existing shard, and every shard has its index fragment."""
    rows = load_index(ds).to_pylist()
    assert all((ds / r["shard"]).is_file() for r in rows)
    shards = {p.stem for p in (ds / "shards").iterdir()}
    assert shards == {p.stem for p in (ds / "index").iterdir()}
    assert not [p for p in (ds / "shards").iterdir() if p.name.startswith(".")]


def _with_labels(drive: Path, folder: Path, name: str, edit) -> Path:
    """A copy of ``drive`` whose sidecar labels went through ``edit`` (so its content hash differs)."""
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / f"{name}.mp4"
    shutil.copy(drive, video)
    with open(video, "ab") as f:
        f.write(name.encode())  # trailing bytes after the MP4 boxes: same video, another hash
    doc = json.loads(drive.with_suffix(".json").read_text())
    from opendojo.data.labels import read_sidecar

    labels = read_sidecar(drive.with_suffix(".json"))
    edit(labels)
    write_sidecar(video.with_suffix(".json"), labels, fps=doc["fps"], cameras=doc["cameras"])
    return video


def _nan(labels):
    labels["speed"] = labels["speed"].copy()
    labels["speed"][3] = np.nan


@pytest.mark.parametrize(("name", "edit", "reason"), [
    ("zero_size", lambda lab: lab.update(extra=np.zeros((32, 0), np.float32)), "has no values"),
    ("misshaped", lambda lab: lab.update(trajectory=np.zeros((32, 3), np.float32)), "rows of shape [3]"),
    ("reserved", lambda lab: lab.update(__metadata__=np.zeros(32, np.float32)), "reserved"),
    ("nan", _nan, "NaN or infinite"),
])
def test_bad_sidecar_fails_its_file_only(drive, tmp_path, name, edit, reason):
    bad = _with_labels(drive, tmp_path / "src", name, edit)
    good = tmp_path / "src" / "good.mp4"
    shutil.copy(drive, good)
    shutil.copy(drive.with_suffix(".json"), good.with_suffix(".json"))
    report = ingest([tmp_path / "src"], tmp_path / "ds", progress=False)
    assert report.ingested == [str(good)]
    assert [f.path for f in report.failures] == [str(bad)] and reason in report.failures[0].reason
    assert len(load_index(tmp_path / "ds").to_pylist()) == 4  # the good file: 2 clips x 2 cameras
    _assert_consistent(tmp_path / "ds")


def test_non_utf8_name_is_ingested_and_its_row_readable(drive, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    odd = os.fsdecode(bytes(src) + b"/caf\xe9-\x1b[31m.mp4")  # Latin-1 byte and an ANSI escape
    shutil.copy(drive, odd)
    report = ingest([src], tmp_path / "ds", progress=False)
    assert report.ok and len(report.ingested) == 1
    sources = set(load_index(tmp_path / "ds").column("source").to_pylist())
    assert sources == {str(src) + "/caf\\xe9-\x1b[31m.mp4"}  # valid UTF-8 in the index
    _assert_consistent(tmp_path / "ds")
    assert "\x1b" not in report.summary()  # escaped when printed


def test_fifo_device_loops_and_unreadable_files_are_reported(drive, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(drive, src / "good.mp4")
    os.mkfifo(src / "pipe.mp4")  # opening it for reading would block for ever
    os.symlink(src / "loop_b.mp4", src / "loop_a.mp4")
    os.symlink(src / "loop_a.mp4", src / "loop_b.mp4")
    os.symlink(src, src / "cycle")  # a folder cycle: walked once
    report = ingest([src, "/dev/null", "/proc/self/mem"], tmp_path / "ds", progress=False)
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert report.ingested == [str(src / "good.mp4")]
    assert reasons["pipe.mp4"].startswith("a FIFO, not a regular file")
    assert reasons["null"].startswith("a character device")
    assert "Too many levels of symbolic links" in reasons["loop_a.mp4"]
    assert reasons["mem"].startswith(("cannot read", "empty file"))
    _assert_consistent(tmp_path / "ds")


def test_failed_fragment_write_removes_its_shard(drive, tmp_path):
    """The fragment cannot be renamed into place after the shard was published: the shard goes too."""
    from opendojo.data.clipcut import file_sha256
    from opendojo.data.sourcejob import unit_name

    ds = tmp_path / "ds"
    (ds / "index" / (unit_name(file_sha256(drive)) + ".parquet")).mkdir(parents=True)  # rename fails
    report = ingest([drive], ds, progress=False)
    assert not report.ok and "cannot write its index fragment: Is a directory" in report.failures[0].reason
    assert list((ds / "shards").iterdir()) == []
    assert [p.name for p in (ds / "index").iterdir() if p.is_file()] == []  # no temporary left
