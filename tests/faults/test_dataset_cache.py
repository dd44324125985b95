"""Item 9, data side: a damaged cached synthetic dataset is rebuilt, not trusted."""

from __future__ import annotations

from opendojo.data import ClipDataset, ensure_synthetic_dataset, load_index


def test_damaged_synthetic_cache_is_rebuilt(tmp_path):
    kw = dict(clips=2, cameras=1, frames=16, size=(32, 32), seed=3)
    path = ensure_synthetic_dataset(tmp_path, **kw)
    shard = path / load_index(path).column("shard")[0].as_py()
    shard.unlink()  # damaged: a shard the index names is gone
    again = ensure_synthetic_dataset(tmp_path, **kw)
    assert again == path and shard.is_file()
    assert len(list(ClipDataset(again))) == 2
