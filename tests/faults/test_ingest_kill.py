"""Item 2: ingest never hangs. A SIGKILLed worker or Ctrl-C ends the run with a non-zero exit, the
files not finished are reported, no temporary or orphan file is left, and a re-run completes the
dataset exactly as an uninterrupted ingest would. Slow: SIGKILL at random points, >= 10 times."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opendojo.data import load_index
from opendojo.data.codec import write_pattern_video

DOJO = str(Path(sys.executable).parent / "dojo")


def _sources(folder: Path, n: int, *, frames: int, height: int, width: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):  # GOP 30 with 16-frame clips: re-encoded, so each file takes a while to cut
        write_pattern_video(str(folder / f"cam_{i}.mp4"), frames=frames + i, height=height, width=width)
    return folder


def _leftovers(ds: Path) -> list[str]:
    """Temporaries, orphan shards (no fragment) and rows pointing at missing shards."""
    out = [p.name for sub in ("shards", "index") if (ds / sub).is_dir() for p in (ds / sub).iterdir()
           if p.name.startswith(".")]
    if (ds / "index").is_dir():
        shards = {p.stem for p in (ds / "shards").iterdir() if not p.name.startswith(".")}
        out += sorted(shards - {p.stem for p in (ds / "index").iterdir()})
        out += [r["shard"] for r in load_index(ds).to_pylist() if not (ds / r["shard"]).is_file()]
    return out


def _wait_for_temp(ds: Path, proc: subprocess.Popen, timeout: float = 120.0) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        temps = list((ds / "shards").glob(".*.tmp")) if (ds / "shards").is_dir() else []
        if temps:
            return temps[0]
        time.sleep(0.01)
    raise AssertionError("no shard was being written")


def _ingest_cmd(src: Path, ds: Path, workers: int) -> list[str]:
    return [DOJO, "data", "ingest", str(src), "--out", str(ds), "--workers", str(workers),
            "--clip-frames", "16"]


@pytest.fixture(scope="module")
def slow_sources(tmp_path_factory) -> Path:
    return _sources(tmp_path_factory.mktemp("src"), 3, frames=64, height=144, width=192)


def test_sigkilled_worker_ends_the_run_and_a_rerun_completes(slow_sources, tmp_path):
    ds = tmp_path / "ds"
    proc = subprocess.Popen(_ingest_cmd(slow_sources, ds, 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    temp = _wait_for_temp(ds, proc)
    os.kill(int(temp.name.split("~")[-2]), signal.SIGKILL)  # the worker writing it: as the OOM killer would
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    failed = [line for line in err.splitlines() if line.startswith("  FAILED")]
    assert 1 <= len(failed) <= 2 and all("an ingest worker died" in line for line in failed)  # in flight
    assert f"{3 - len(failed)} sources ingested" in err  # the files not yet started ran in a fresh pool
    assert _leftovers(ds) == []
    rerun = subprocess.run(_ingest_cmd(slow_sources, ds, 2), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(set(load_index(ds).column("source").to_pylist())) == sorted(
        str(p) for p in slow_sources.iterdir())
    assert _leftovers(ds) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_the_run_and_removes_temporaries(slow_sources, tmp_path, workers):
    ds = tmp_path / "ds"
    proc = subprocess.Popen(_ingest_cmd(slow_sources, ds, workers), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_temp(ds, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "(interrupted)" in err and "the ingest was interrupted (Ctrl-C)" in err and "Traceback" not in err
    assert _leftovers(ds) == []


@pytest.mark.slow
def test_random_sigkills_then_rerun_give_the_uninterrupted_dataset(tmp_path):
    src = _sources(tmp_path / "src", 4, frames=48, height=96, width=128)
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    subprocess.run(_ingest_cmd(src, ref, 2), check=True, capture_output=True, timeout=300)
    duration = time.monotonic() - t0
    reference = load_index(ref).drop_columns(["writer"]).to_pylist()
    rng = random.Random(11)
    for k in range(10):
        ds = tmp_path / f"ds{k}"
        proc = subprocess.Popen(_ingest_cmd(src, ds, 2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.uniform(0.3, duration))
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its workers, with no chance to clean up
        proc.wait(timeout=60)
        subprocess.run(_ingest_cmd(src, ds, 1), check=True, capture_output=True, timeout=300)  # any count
        assert load_index(ds).drop_columns(["writer"]).to_pylist() == reference, f"kill {k}"
        assert _leftovers(ds) == [], f"kill {k}"
