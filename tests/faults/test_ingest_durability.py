"""Item 6, data side: shards, fragments and query outputs are fsynced before they are renamed into
place; stale temporaries of killed ingests are swept; concurrent queries writing one --out never mix."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq

from opendojo.data import ingest, load_index, query, synth
from opendojo.data.durable import temp_name


def test_published_files_are_fsynced_before_rename(tmp_path, monkeypatch):
    src = synth(tmp_path / "src", clips=1, cameras=1, frames=16, size=(32, 32), seed=4, keyint=16,
                progress=False)
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):  # a spy: the real fsync still runs
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("rename", str(a), str(b)))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ingest([src], tmp_path / "ds", clip_frames=16, progress=False)
    query(tmp_path / "ds", "true", out=tmp_path / "subset.parquet")
    renames = [e for e in events if e[0] == "rename"]
    assert [os.path.basename(e[2]).rsplit(".", 1)[1] for e in renames] == ["tar", "parquet", "parquet"]
    for _, tmp, final in renames:  # the file, then (after the rename) its folder
        i = events.index(("rename", tmp, final))
        assert events[i - 1] == ("fsync", tmp) and events[i + 1] == ("fsync", os.path.dirname(final))


def test_stale_temporaries_of_dead_writers_are_swept(tmp_path):
    src = synth(tmp_path / "src", clips=1, cameras=1, frames=16, size=(32, 32), seed=5, keyint=16,
                progress=False)
    ds = tmp_path / "ds"
    (ds / "shards").mkdir(parents=True)
    (ds / "index").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = temp_name(str(ds / "shards"), "src-abc.tar").replace(f"~{os.getpid()}~", f"~{dead}~")
    live = temp_name(str(ds / "index"), "src-abc.parquet")  # this process: alive, kept
    for p in (stale, live):
        open(p, "wb").close()
    assert ingest([src], ds, clip_frames=16, progress=False).ok
    assert not os.path.exists(stale) and os.path.exists(live)
    assert load_index(ds).num_rows == 1


_QUERY = "import sys; from opendojo.data import query; [query(sys.argv[1], sys.argv[2], out=sys.argv[3]) " \
         "for _ in range(15)]"


def test_concurrent_queries_writing_one_out_do_not_collide(tmp_path):
    src = synth(tmp_path / "src", clips=2, cameras=2, frames=16, size=(32, 32), seed=6, keyint=16,
                progress=False)
    ds, out = tmp_path / "ds", tmp_path / "same.parquet"
    ingest([src], ds, clip_frames=16, progress=False)
    procs = [subprocess.Popen([sys.executable, "-c", _QUERY, str(ds), where, str(out)])
             for where in ("camera = 'front'", "camera = 'left'")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    table = pq.read_table(out)  # whole and valid: one writer's complete result
    assert table.num_rows == 2 and len(set(table.column("camera").to_pylist())) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_temporary_of_an_exited_unreaped_writer_is_swept(tmp_path):
    import time

    import fsspec

    from opendojo.data.durable import sweep_temporaries

    child = subprocess.Popen([sys.executable, "-c", "pass"])  # exits; not reaped until wait(): a zombie
    def state() -> str:
        with open(f"/proc/{child.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and state() != "Z":
        time.sleep(0.05)
    stale = temp_name(str(tmp_path), "src-abc.tar").replace(f"~{os.getpid()}~", f"~{child.pid}~")
    open(stale, "wb").close()
    assert sweep_temporaries(fsspec.filesystem("file"), str(tmp_path)) == [stale]
    child.wait()
