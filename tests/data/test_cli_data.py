import pyarrow.parquet as pq

from opendojo.cli import main


def test_cli_synth_ingest_query_stats_round_trip(tmp_path, capsys):
    src, ds, sub = tmp_path / "src", tmp_path / "ds", tmp_path / "sub.parquet"
    assert main(["data", "synth", "--out", str(src), "--clips", "2", "--cameras", "1", "--frames", "16",
                 "--size", "64x64", "--seed", "1", "--keyint", "8"]) == 0
    assert main(["data", "ingest", str(src), "--out", str(ds), "--clip-frames", "8", "--tag", "demo"]) == 0
    assert "2 sources ingested (4 clips" in capsys.readouterr().out
    assert main(["data", "query", str(ds), "'demo' IN tags AND start_frame = 8", "--out", str(sub)]) == 0
    assert "2 camera clips, 2 clips match" in capsys.readouterr().out
    assert pq.read_table(sub).num_rows == 2
    assert main(["data", "stats", str(sub)]) == 0
    out = capsys.readouterr().out
    assert "clips: 2" in out and "frames: 16" in out


def test_cli_ingest_exits_nonzero_and_names_bad_files(tmp_path, capsys):
    bad = tmp_path / "junk.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    assert main(["data", "ingest", str(bad), "--out", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and str(bad) in err and "not a readable video" in err


def test_cli_errors_name_the_bad_dataset_and_size(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "query", str(tmp_path / "nope"), "true"]) == 2
    try:
        main(["data", "synth", "--out", str(tmp_path), "--size", "12by12"])
    except SystemExit as e:
        assert e.code == 2
    assert "expected HxW" in capsys.readouterr().err
