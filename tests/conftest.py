"""A small synthetic dataset shared by the trainer tests and the trainer fault tests (built once per
session, lock-safe)."""

from __future__ import annotations

import os

import pytest

# 6 drives of 16 frames, 2 cameras at 32x32: one drive is held out for eval, the rest give 20 training
# clips of 4 frames. Small enough that a step takes a fraction of a second on one core.
TINY = [
    "data.synthetic_clips=6",
    "data.synthetic_frames=16",
    "data.cameras=2",
    "data.image_size=32",
    "data.frames_per_clip=4",
    "train.batch_size=4",
    "train.warmup_steps=2",
    "train.log_every=1",
    "train.eval_batches=1",
    "train.threads=1",
]


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    # Under pytest-xdist the parent of each worker's base temp is the session's: one dataset for all
    # workers, made afresh each session (a dataset cached by an older version of the code never leaks in).
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "opendojo-train-data"


@pytest.fixture
def tiny_overrides(data_cache):
    return [*TINY, f"data.cache_dir={str(data_cache)!r}".replace("'", '"')]
