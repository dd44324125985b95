"""Fleet-scale ingest on Ray: `dojo data ingest --engine ray` fans the files out as Ray tasks on a real
local Ray head (started and stopped by the test); the dataset equals the local engine's, file for file."""

from __future__ import annotations

import pytest

from opendojo.data import ingest, load_index, synth

from .conftest import dojo
from .ray_head import AVAILABLE as RAY_INSTALLED
from .ray_head import RayHead

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head():
    if not RAY_INSTALLED:
        pytest.skip("ray is not installed: pip install -e '.[cluster]' (make test installs it)")
    h = RayHead(num_cpus=2)
    yield h
    h.stop()


def test_ray_engine_writes_the_same_dataset_as_the_local_engine(head, tmp_path):
    drives = synth(tmp_path / "drives", clips=4, cameras=2, frames=32, size=(64, 64), seed=7, keyint=16,
                   progress=False)
    local = ingest([drives], tmp_path / "local", clip_frames=16, progress=False)
    assert local.ok and len(local.ingested) == 4
    out = dojo("data", "ingest", str(drives), "--out", str(tmp_path / "ray"), "--clip-frames", "16",
               "--engine", "ray", "--ray-address", head.gcs_address)
    assert out.returncode == 0, out.stderr
    from ray.util.state import list_tasks

    ran = list_tasks(address=head.address, filters=[("name", "=", "ingest_source")],
                     raise_on_missing_output=False)
    assert sorted(t.state for t in ran) == ["FINISHED"] * 4  # one Ray task per source file
    assert load_index(tmp_path / "ray") == load_index(tmp_path / "local")
    for sub in ("shards", "index"):  # content-named files, byte for byte
        names = sorted(p.name for p in (tmp_path / "local" / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "ray" / sub).iterdir())
        assert all((tmp_path / "local" / sub / n).read_bytes() == (tmp_path / "ray" / sub / n).read_bytes()
                   for n in names)


def test_ray_engine_needs_an_address():
    out = dojo("data", "ingest", "nowhere", "--out", "x", "--engine", "ray", check=False)
    assert out.returncode == 2 and "--ray-address" in out.stderr
