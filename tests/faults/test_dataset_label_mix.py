"""Item 4: a dataset mixing labelled and unlabelled sources is refused when opened, with a message that
says how to pick one kind; a subset of one kind streams normally."""

from __future__ import annotations

import shutil

import pytest

from opendojo.data import ClipDataset, ingest, query, synth
from opendojo.errors import UsageError


def test_mixed_labels_are_refused_at_open_and_a_subset_streams(tmp_path):
    src = synth(tmp_path / "src", clips=2, cameras=1, frames=16, size=(32, 32), seed=9, keyint=16,
                progress=False)
    (src / "drive_00001.json").unlink()  # the second drive has no labels
    ds = tmp_path / "ds"
    assert ingest([src], ds, clip_frames=16, progress=False).ok
    with pytest.raises(UsageError, match="1 clips have labels and 1 have none; a batch cannot mix them"):
        ClipDataset(ds)
    query(ds, "labels_member IS NOT NULL", out=tmp_path / "labelled.parquet")
    samples = list(ClipDataset(tmp_path / "labelled.parquet"))
    assert len(samples) == 1 and set(samples[0]["labels"]) >= {"speed", "trajectory"}
    query(ds, "labels_member IS NULL", out=tmp_path / "unlabelled.parquet")
    assert [s["labels"] for s in ClipDataset(tmp_path / "unlabelled.parquet")] == [{}]
    shutil.rmtree(ds)


def test_a_batch_of_clips_with_different_label_names_is_refused(tmp_path):
    from opendojo.data import ClipLoader
    from opendojo.data.labels import read_sidecar, write_sidecar

    src = synth(tmp_path / "src", clips=2, cameras=1, frames=16, size=(32, 32), seed=10, keyint=16,
                progress=False)
    side = src / "drive_00001.json"
    labels = read_sidecar(side)
    del labels["steering"]
    write_sidecar(side, labels, fps=30, cameras=["front"])
    ds = tmp_path / "ds"
    assert ingest([src], ds, clip_frames=16, progress=False).ok
    with pytest.raises(ValueError, match="have other label names than clip"):
        list(ClipLoader(ClipDataset(ds, shuffle=False), batch_size=2))
