"""Item 1: ingest memory does not grow with the file's length. A 30-frame GOP with 16-frame clips
forces re-encoding, the case that used to keep every decoded frame of the file (slow suite; the
30 s 1280x960 target is measured by benchmarks/ingest.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from opendojo.data.codec import write_pattern_video

_INGEST = ("import sys; from opendojo.data import ingest; "
           "assert ingest([sys.argv[1]], sys.argv[2], clip_frames=16, progress=False).ok")


def _peak_rss_mib(video: str, out: str) -> float:
    proc = subprocess.Popen([sys.executable, "-c", _INGEST, video, out])
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss / 1024


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_file_length(tmp_path):
    short, long = str(tmp_path / "short.mp4"), str(tmp_path / "long.mp4")
    write_pattern_video(short, frames=60, height=480, width=640)
    write_pattern_video(long, frames=600, height=480, width=640)  # 20 s: ~0.9 GB if every frame were kept
    rss_short = _peak_rss_mib(short, str(tmp_path / "ds_short"))
    rss_long = _peak_rss_mib(long, str(tmp_path / "ds_long"))
    assert rss_long < rss_short + 40, (rss_short, rss_long)
