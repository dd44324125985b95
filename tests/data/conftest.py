"""Shared small fixtures: a few 64x64 synthetic drives, synthesised and ingested once per session."""

from __future__ import annotations

import pytest

from opendojo.data import ingest, synth


@pytest.fixture(scope="session")
def drives(tmp_path_factory):
    """Four 2-camera drives of 32 frames at 64x64, keyframe every 16 frames."""
    return synth(
        tmp_path_factory.mktemp("drives"),
        clips=4,
        cameras=2,
        frames=32,
        size=(64, 64),
        seed=7,
        keyint=16,
        progress=False,
    )


@pytest.fixture(scope="session")
def dataset(drives, tmp_path_factory):
    """The drives ingested as 16-frame clips: 8 clips x 2 cameras, every camera clip copied."""
    out = tmp_path_factory.mktemp("ds") / "dataset"
    report = ingest([drives], out, clip_frames=16, progress=False)
    assert report.ok, report.summary()
    return out
