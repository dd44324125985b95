"""Items 9 and 10 for the data commands: a caller's mistake is one line and exit 2, a failed write
(file too large / disk full, not a directory) one line or one FAILED row and exit 1, never a
traceback; text from files (camera names, paths) is escaped before it reaches the terminal."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

from opendojo.cli import main
from opendojo.data import synth

DOJO = str(Path(sys.executable).parent / "dojo")


def test_negative_seed_is_one_line_exit_2(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--seed", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "dojo data synth: error: --seed: got -1; allowed: an integer in 0..9223372036854775807"


def test_bad_numbers_for_data_commands_are_one_line_exit_2(tmp_path, capsys):
    assert main(["data", "ingest", str(tmp_path), "--out", str(tmp_path / "ds"), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "dojo data ingest: error: workers: got 0; allowed: an integer ≥ 1"
    assert main(["data", "query", str(tmp_path / "ds"), "true", "--show", "-1"]) == 2
    assert "--show: got -1" in capsys.readouterr().err


def _limit_file_size() -> None:  # in the child: writes past 64 KiB fail with EFBIG, as a full disk would
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))


def test_write_failure_during_ingest_is_a_failed_file_not_a_traceback(tmp_path):
    src = synth(tmp_path / "src", clips=1, cameras=2, frames=32, size=(128, 128), seed=1, keyint=16,
                progress=False)
    ds = tmp_path / "ds"
    run = subprocess.run([DOJO, "data", "ingest", str(src), "--out", str(ds)], capture_output=True, text=True,
                         preexec_fn=_limit_file_size, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "FAILED" in run.stderr and "File too large" in run.stderr
    assert [p.name for sub in ("shards", "index") for p in (ds / sub).iterdir()] == []


def test_output_under_a_file_is_one_line_exit_1(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["data", "ingest", str(tmp_path), "--out", str(tmp_path / "file" / "ds")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dojo data ingest: error:") and "Not a directory" in err and "\n" not in err


def test_camera_names_and_paths_from_files_are_escaped(tmp_path, capsys):
    src = synth(tmp_path / "src", clips=1, cameras=1, frames=16, size=(32, 32), seed=2, keyint=16,
                progress=False)
    side = src / "drive_00000.json"
    doc = json.loads(side.read_text())
    doc["cameras"] = ["\x1b[2Jfront\x07"]  # clear-screen escape and a bell
    side.write_text(json.dumps(doc))
    evil = src / "drive\x1b[31m.mp4"
    (src / "drive_00000.mp4").rename(evil)
    side.rename(evil.with_suffix(".json"))
    assert main(["data", "ingest", str(src), "--out", str(tmp_path / "ds")]) == 0
    assert main(["data", "query", str(tmp_path / "ds"), "true"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2Jfront\\x07" in out and "drive\\x1b[31m.mp4" in out
