import hashlib
import subprocess
import sys

import av
import numpy as np
import pytest

from opendojo.data import ClipDataset, ensure_synthetic_dataset, ingest, load_index, read_sidecar, synth
from opendojo.data.labels import OCCUPANCY_CELL_M, OCCUPANCY_GRID, TRAJECTORY_DT_S


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_same_bytes_and_another_seed_differs(tmp_path):
    kw = {"clips": 1, "cameras": 2, "frames": 8, "size": (32, 32), "progress": False}
    a = _digests(synth(tmp_path / "a", seed=11, **kw))
    assert a == _digests(synth(tmp_path / "b", seed=11, **kw))
    assert a.keys() == {"drive_00000.mp4", "drive_00000.json"}
    assert a["drive_00000.mp4"] != _digests(synth(tmp_path / "c", seed=12, **kw))["drive_00000.mp4"]


def test_drive_has_one_h264_stream_per_named_camera_with_fixed_keyframes(drives):
    with av.open(str(drives / "drive_00000.mp4")) as c:
        streams = c.streams.video
        assert [s.metadata.get("name") for s in streams] == ["front", "left"]
        assert all(s.codec_context.name == "h264" and (s.height, s.width) == (64, 64) for s in streams)
        keys = [i for i, p in enumerate(p for p in c.demux(streams[0]) if p.size) if p.is_keyframe]
    assert keys == [0, 16]


def test_labels_are_physically_consistent(drives):
    lab = read_sidecar(drives / "drive_00001.json", frames=32)
    speed, traj = lab["speed"], lab["trajectory"]
    assert np.all((speed >= 5) & (speed <= 35))
    # the first trajectory point lies ahead, about speed * dt metres away, nearly straight ahead
    ahead = traj[:, 0, 0]
    assert np.allclose(ahead, speed * TRAJECTORY_DT_S, rtol=0.25)
    assert np.all(np.abs(traj[:, 0, 1]) < 0.3 * ahead)
    assert np.all(np.diff(traj[..., 0], axis=1) > 0)  # later points further ahead
    # every box centre inside the grid lies on an occupied cell of the occupancy grid
    half = OCCUPANCY_GRID * OCCUPANCY_CELL_M / 2
    hits = 0
    for f in range(32):
        for (x, y, *_), real in zip(lab["boxes"][f], lab["box_mask"][f], strict=True):
            if real and abs(x) < half - 1 and abs(y) < half - 1:
                row = int((half - x) // OCCUPANCY_CELL_M)
                col = int((half - y) // OCCUPANCY_CELL_M)
                assert lab["occupancy"][f, row, col] == 1
                hits += 1
    assert hits > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clips": 0}, "clips=0"),
        ({"cameras": 9}, "cameras=9"),
        ({"frames": -1}, "frames=-1"),
        ({"size": (30, 31)}, r"size=\(30, 31\)"),
        ({"size": 64}, "size=64"),
        ({"seed": -3}, "seed=-3"),
    ],
)
def test_bad_synth_arguments_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synth(tmp_path, **kwargs)


_ENSURE = (
    "import sys; from opendojo.data import ensure_synthetic_dataset as e; "
    "print(e(sys.argv[1], clips=2, cameras=1, frames=16, size=(32, 32), seed=5))"
)


def test_ensure_synthetic_dataset_builds_once_even_when_two_processes_race(tmp_path):
    cmd = [sys.executable, "-c", _ENSURE, str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    paths = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and paths[0] == paths[1]
    assert len(list((tmp_path / paths[0].rsplit("/", 1)[1] / "shards").iterdir())) == 2  # one per drive
    assert load_index(paths[0]).num_rows == 2
    again = ensure_synthetic_dataset(tmp_path, clips=2, cameras=1, frames=16, size=(32, 32), seed=5)
    assert str(again) == paths[0]  # a no-op afterwards
    assert len(list(ClipDataset(again, frames_per_clip=16))) == 2


def test_dataset_on_an_fsspec_url(drives):
    report = ingest([drives / "drive_00003.mp4"], "memory://opendojo-test/ds", clip_frames=16, progress=False)
    assert report.ok
    samples = list(ClipDataset("memory://opendojo-test/ds", frames_per_clip=16, shuffle=False))
    assert [s["start_frame"] for s in samples] == [0, 16]


def test_ensure_synthetic_dataset_refuses_bad_clip_frames(tmp_path):
    with pytest.raises(ValueError, match=r"clip_frames: got 32; allowed: an integer in 1\.\.16"):
        ensure_synthetic_dataset(tmp_path, clips=1, cameras=1, frames=16, size=(32, 32), seed=0,
                                 clip_frames=32)
