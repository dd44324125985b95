"""Item 5: a dataset root with glob metacharacters works everywhere: ingest, re-ingest (no duplicates),
query, stats, streaming."""

from __future__ import annotations

from opendojo.data import ClipDataset, ingest, load_index, query, stats, synth


def test_dataset_root_with_glob_metacharacters(tmp_path):
    src = synth(tmp_path / "src[1]", clips=2, cameras=1, frames=16, size=(32, 32), seed=2, keyint=16,
                progress=False)
    ds = tmp_path / "runs[2]" / "d*s?"
    assert ingest([src], ds, clip_frames=16, progress=False).ok
    assert load_index(ds).num_rows == 2
    again = ingest([src], ds, clip_frames=16, progress=False)
    assert again.ok and len(again.skipped) == 2 and not again.ingested  # found, so not duplicated
    assert load_index(ds).num_rows == 2 and stats(ds)["clips"] == 2
    out = tmp_path / "sub[x].parquet"
    assert query(ds, "start_frame = 0", out=out).num_rows == 2
    assert len(list(ClipDataset(out))) == 2 and len(list(ClipDataset(ds))) == 2
