import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from opendojo.data import ClipDataset, ShardError, ingest, load_index, stats
from opendojo.data.codec import decode_rgb
from opendojo.data.shard import ShardReader, list_members


def _faststart_copy(src: Path, dst: Path) -> bytes:
    """Remux the first stream of ``src`` with the index (moov) first, so a truncated copy still opens."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for pk in i.demux(i.streams.video[0]):
            if pk.size:
                pk.stream = s
                o.mux(pk)
    return dst.read_bytes()


def test_ingest_records_every_clip_with_copied_keyframe_aligned_members(dataset):
    t = load_index(dataset)
    assert t.num_rows == 16  # 4 drives x 2 clips x 2 cameras
    rows = t.to_pylist()
    assert {r["camera"] for r in rows} == {"front", "left"}
    assert not any(r["reencoded"] for r in rows)
    assert sorted({r["start_frame"] for r in rows}) == [0, 16]
    r = rows[0]
    blob = ShardReader().read(str(dataset / r["shard"]), r["data_offset"], r["data_bytes"], r["member"])
    assert decode_rgb(blob).shape == (16, 64, 64, 3)
    s = stats(dataset)
    assert (s["clips"], s["camera_streams"], s["sources"], s["frames"]) == (8, 16, 4, 256)
    assert {type(v) for v in s.values()} == {int, float}  # plain numbers: JSON and reports take them


def test_reingest_is_idempotent_by_content_even_under_another_name(drives, dataset, tmp_path):
    renamed = tmp_path / "renamed.mp4"
    shutil.copy(drives / "drive_00000.mp4", renamed)
    before = load_index(dataset).num_rows
    report = ingest([drives, renamed], dataset, clip_frames=16, progress=False)
    assert report.ok and not report.ingested and len(report.skipped) == 5
    assert load_index(dataset).num_rows == before


def test_unaligned_clip_length_reencodes_with_keyframe_per_clip(drives, tmp_path):
    report = ingest([drives / "drive_00001.mp4"], tmp_path / "ds", clip_frames=8, progress=False)
    assert report.ok and report.clips == 4 and report.copied_streams == 4 and report.reencoded_streams == 4
    ds = ClipDataset(tmp_path / "ds", frames_per_clip=8, shuffle=False)
    assert [s["start_frame"] for s in ds] == [0, 8, 16, 24]


def test_parallel_ingest_writes_the_same_files_as_one_worker(drives, dataset, tmp_path):
    report = ingest([drives], tmp_path / "par", workers=2, clip_frames=16, progress=False)
    assert report.ok and len(report.ingested) == 4 and len(report.shards) == 4  # one shard per source
    assert load_index(tmp_path / "par") == load_index(dataset)
    for sub in ("shards", "index"):  # content-named, deterministic: byte-identical files
        names = sorted(p.name for p in (dataset / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "par" / sub).iterdir())
        same = [(dataset / sub / n).read_bytes() == (tmp_path / "par" / sub / n).read_bytes() for n in names]
        assert all(same)


def test_bad_sources_are_reported_and_the_rest_ingested(drives, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "text.mp4").write_text("hello, I am not a video\n" * 20)
    good = drives / "drive_00002.mp4"
    whole = _faststart_copy(good, tmp_path / "fs.mp4")
    (bad / "cut.mp4").write_bytes(whole[: len(whole) * 2 // 3])
    (bad / "cut_nomoov.mp4").write_bytes(good.read_bytes()[:5000])
    corrupt = bytearray(whole)
    rng = np.random.default_rng(0)
    for k in range(len(corrupt) // 3, len(corrupt) * 2 // 3, 50):
        corrupt[k] = int(rng.integers(0, 256))
    (bad / "noise.mp4").write_bytes(bytes(corrupt))
    with av.open(str(bad / "audio.mkv"), "w") as c:  # a real media file without video
        st = c.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in st.encode(frame):
            c.mux(p)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path):  # root ignores chmod, so simulate the OS refusing this one folder
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    shutil.copy(good, bad / "good.mp4")
    shutil.copy(good.with_suffix(".json"), bad / "good.json")
    report = ingest([bad, locked, tmp_path / "missing.mp4"], tmp_path / "ds", clip_frames=16, progress=False)
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert report.ingested == [str(bad / "good.mp4")] and not report.ok
    assert reasons["empty.mp4"] == "empty file (0 bytes)"
    assert reasons["text.mp4"].startswith("not a readable video file")
    assert reasons["cut.mp4"].startswith("truncated: stream 0 declares 32 frames")
    assert reasons["cut_nomoov.mp4"].startswith("truncated: MP4 box 'mdat'")
    assert reasons["noise.mp4"].startswith("corrupt video data")
    assert reasons["audio.mkv"] == "no video stream"
    assert reasons["locked"].startswith("cannot read folder") and "Permission denied" in reasons["locked"]
    assert reasons["missing.mp4"] == "does not exist"
    assert "FAILED" in report.summary() and str(bad / "noise.mp4") in report.summary()
    assert stats(tmp_path / "ds")["sources"] == 1  # consistent: the good file only, fully indexed
    assert not [p for p in (tmp_path / "ds").rglob("*") if p.name.endswith(".tmp")]


def test_missing_or_malformed_sidecar_fails_when_labels_required(drives, tmp_path):
    shutil.copy(drives / "drive_00000.mp4", tmp_path / "a.mp4")
    shutil.copy(drives / "drive_00001.mp4", tmp_path / "b.mp4")
    (tmp_path / "b.json").write_text("{not json")
    report = ingest(
        [tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "ds", require_labels=True, progress=False
    )
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert reasons["a.mp4"] == f"missing label sidecar {tmp_path / 'a.json'}"
    assert reasons["b.mp4"].startswith(f"label sidecar {tmp_path / 'b.json'}: cannot parse as JSON")
    relaxed = ingest([tmp_path / "a.mp4"], tmp_path / "ds2", progress=False)
    assert relaxed.ok and load_index(tmp_path / "ds2").column("labels_member").null_count == 4


def test_too_short_source_is_reported(drives, tmp_path):
    report = ingest([drives / "drive_00000.mp4"], tmp_path / "ds", clip_frames=64, progress=False)
    assert report.failures[0].reason == "32 frames, fewer than clip_frames=64"


@pytest.mark.parametrize("name", ["../escape.mp4", "/etc/passwd"])
def test_shard_with_tampered_member_name_is_refused(dataset, tmp_path, name):
    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    shard = next((copy / "shards").glob("*.tar"))
    raw = bytearray(shard.read_bytes())
    first = list_members(str(shard))[0][0]
    header = raw[:512]
    header[:100] = name.encode().ljust(100, b"\0")  # rewrite the first member's name, fix the checksum
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    raw[:512] = header
    shard.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match="unsafe"):
        list_members(str(shard))
    row = next(r for r in load_index(copy).to_pylist() if r["member"] == first or r["labels_member"] == first)
    if row["member"] == first:
        off, size = row["data_offset"], row["data_bytes"]
    else:
        off, size = row["labels_offset"], row["labels_bytes"]
    with pytest.raises(ShardError, match="unsafe"):
        ShardReader().read(str(shard), off, size, first)


def test_index_pointing_at_another_member_is_refused(dataset):
    rows = load_index(dataset).to_pylist()
    a, b = rows[0], rows[1]
    with pytest.raises(ShardError, match="index expects"):
        ShardReader().read(str(dataset / a["shard"]), a["data_offset"], a["data_bytes"], b["member"])


def test_missing_dataset_and_unparsable_index_are_named(tmp_path, dataset):
    with pytest.raises(FileNotFoundError, match="does-not-exist' does not exist"):
        load_index(tmp_path / "does-not-exist")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match="no index/ folder"):
        ClipDataset(tmp_path / "plain")
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / "index" / "zz-garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match="index of .*broken.* does not parse"):
        load_index(broken)
    (tmp_path / "sub.parquet").write_text("nope")
    with pytest.raises(ValueError, match="sub.parquet' does not parse as Parquet"):
        ClipDataset(tmp_path / "sub.parquet")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers: got 0; allowed: an integer ≥ 1"),
        ({"clip_frames": 0}, "clip_frames: got 0"),
        ({"clip_frames": "8"}, "clip_frames: got '8'"),
    ],
)
def test_bad_ingest_arguments_are_refused(drives, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ingest([drives], tmp_path / "ds", **kwargs)
    with pytest.raises(ValueError, match="sources"):
        ingest([], tmp_path / "ds")


def test_query_rejects_bad_sql_with_the_clause_named(dataset):
    from opendojo.data import query

    with pytest.raises(ValueError, match="where_sql='speed_mean >': not a valid boolean expression"):
        query(dataset, "speed_mean >")
    with pytest.raises(ValueError, match="no_such_column"):
        query(dataset, "no_such_column = 1")
    with pytest.raises(ValueError, match="';' is refused"):
        query(dataset, "true; DROP TABLE x")


def test_each_source_has_its_own_content_named_shard_and_fragment(drives, tmp_path):
    report = ingest([drives], tmp_path / "ds", clip_frames=16, progress=False)
    assert report.ok and len(report.shards) == 4
    stems = sorted(Path(s).stem for s in report.shards)
    assert sorted(p.stem for p in (tmp_path / "ds" / "index").iterdir()) == stems
    t = load_index(tmp_path / "ds")
    assert {f"src-{sha[:24]}" for sha in t.column("source_sha256").to_pylist()} == set(stems)
    assert t.num_rows == 16
    per_source = {}
    for r in t.to_pylist():
        per_source.setdefault(r["source_sha256"], set()).add(r["shard"])
    assert all(len(s) == 1 for s in per_source.values())


def test_query_columns_returns_the_same_rows_narrower(dataset):
    from opendojo.data import query

    full = query(dataset, "speed_mean > 0 AND camera = 'front'")
    narrow = query(dataset, "speed_mean > 0 AND camera = 'front'", columns=["camera", "clip_id"])
    assert narrow.column_names == ["camera", "clip_id"] and narrow.num_rows == full.num_rows > 0
    assert narrow.column("clip_id").to_pylist() == full.column("clip_id").to_pylist()  # same order
    assert narrow.schema.metadata == full.schema.metadata  # still names the dataset root


def test_query_columns_refuses_bad_names_and_a_manifest(dataset, tmp_path):
    from opendojo.data import query

    with pytest.raises(ValueError, match=r"columns=\['nope'\] names an unknown column"):
        query(dataset, "true", columns=["nope"])
    with pytest.raises(ValueError, match="columns='clip_id': must be None or a non-empty list"):
        query(dataset, "true", columns="clip_id")
    with pytest.raises(ValueError, match="a subset manifest holds every column"):
        query(dataset, "true", columns=["clip_id"], out=tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()
