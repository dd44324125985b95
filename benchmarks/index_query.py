"""Time a trigger query over a generated 1,000,000-row clip index (target: < 200 ms).

``query`` reads the fragments with pyarrow and filters them on a locked-down DuckDB connection
(docs/data.md §4); the anchor "unlocked DuckDB SELECT *" is the same query on an ordinary connection
reading the files itself, i.e. the price of the lockdown.

The index has the real schema (``opendojo.data.index.SCHEMA``), split in 8 Parquet fragments as 8
ingest writers would leave it. Rows are random but plausible (speeds 0-35 m/s, 8 cameras, 20,000
sources). Anchors in the same run: the same filter as a bare DuckDB ``count(*)`` and as a pyarrow
dataset scan. Wall ms and CPU ms (all threads of this process; DuckDB runs one per core): on a shared
machine wall time depends on the other jobs, CPU time much less.

    .venv/bin/python benchmarks/index_query.py [--rows 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from opendojo.data import query, stats
from opendojo.data.dataset import _COLUMNS as DATASET_COLUMNS
from opendojo.data.index import SCHEMA, write_index_table

WHERE = "speed_mean > 20 AND occupied_ahead > 0 AND camera = 'front'"
CAMERAS = ["front", "left", "right", "rear", "front_left", "front_right", "rear_left", "rear_right"]


def _rows(n: int, rng: np.random.Generator, writer: str) -> pa.Table:
    clip = rng.integers(0, 2**63, size=n // 8, dtype=np.int64)
    clip_id = np.repeat(np.char.mod("%016x", clip.astype(np.uint64)), 8)[:n]
    cam = np.tile(np.arange(8), n // 8 + 1)[:n]
    src = rng.integers(0, 20_000, size=n // 8)
    start = rng.integers(0, 600, size=n // 8) * 16
    speed = rng.uniform(0, 35, size=n // 8).astype(np.float32)
    occ = np.where(rng.random(n // 8) < 0.3, rng.random(n // 8), 0).astype(np.float32)

    def per_clip(a):
        return np.repeat(a, 8)[:n]

    cols = {
        "clip_id": clip_id,
        "camera": np.array(CAMERAS)[cam],
        "camera_index": cam.astype(np.int32),
        "source": np.char.add("fleet/drive_", per_clip(src).astype(str)),
        "source_sha256": np.char.mod("%064x", per_clip(src)),
        "start_frame": per_clip(start),
        "frames": np.full(n, 16, np.int32),
        "fps": np.full(n, 36.0),
        "start_s": per_clip(start) / 36.0,
        "duration_s": np.full(n, 16 / 36.0),
        "width": np.full(n, 1280, np.int32),
        "height": np.full(n, 960, np.int32),
        "codec": np.full(n, "h264"),
        "reencoded": np.zeros(n, bool),
        "shard": np.char.add(f"shards/{writer}-", (np.arange(n) // 4096).astype(str)),
        "member": np.char.add(clip_id, ".mp4"),
        "data_offset": np.arange(n, dtype=np.int64) * 65536 + 512,
        "data_bytes": np.full(n, 65024, np.int64),
        "labels_member": np.char.add(clip_id, ".labels.safetensors"),
        "labels_offset": np.arange(n, dtype=np.int64) * 65536,
        "labels_bytes": np.full(n, 23344, np.int64),
        "speed_mean": per_clip(speed),
        "speed_max": per_clip(speed + 2),
        "steering_abs_max": per_clip(rng.uniform(0, 0.3, n // 8).astype(np.float32)),
        "occupied_ahead": per_clip(occ),
        "vehicles_max": per_clip(rng.integers(0, 16, n // 8).astype(np.int32)),
        "tags": pa.array([[]] * n, pa.list_(pa.string())),
        "writer": np.full(n, writer),
    }
    arrays = {k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in cols.items()}
    return pa.table(arrays).cast(SCHEMA)


def _median_ms(fn, repeats: int) -> tuple[tuple[float, float, float], object]:
    """((median wall ms, best wall ms, median CPU ms of this process), last result)."""
    times, cpus, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append((time.perf_counter() - t) * 1e3)
        cpus.append((time.process_time() - c) * 1e3)
    return (statistics.median(times), min(times), statistics.median(cpus)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        ds = Path(tmp) / "dataset"
        (ds / "index").mkdir(parents=True)
        (ds / "shards").mkdir()
        t = time.perf_counter()
        for w in range(8):
            fragment = ds / "index" / f"writer{w}-00000.parquet"
            write_index_table(_rows(args.rows // 8, rng, f"writer{w}"), fragment)  # as ingest does
        gen_s = time.perf_counter() - t
        index_bytes = sum(p.stat().st_size for p in (ds / "index").iterdir())
        glob = str(ds / "index" / "*.parquet")

        q_ms, table = _median_ms(lambda: query(ds, WHERE), args.repeats)
        qc_ms, narrow = _median_ms(lambda: query(ds, WHERE, columns=list(DATASET_COLUMNS)), args.repeats)
        qi_ms, ids = _median_ms(lambda: query(ds, WHERE, columns=["clip_id", "camera"]), args.repeats)
        sub = Path(tmp) / "subset.parquet"
        m_ms, _ = _median_ms(lambda: query(ds, WHERE, out=sub), args.repeats)
        s_ms, st = _median_ms(lambda: stats(ds), args.repeats)

        def duck_count():
            with duckdb.connect() as con:
                return con.execute(f"SELECT count(*) FROM read_parquet('{glob}') WHERE {WHERE}").fetchone()[0]

        d_ms, count = _median_ms(duck_count, args.repeats)

        def duck_select():  # the previous query path: an unlocked connection reading the files itself
            with duckdb.connect() as con:
                sql = f"SELECT * FROM read_parquet('{glob}') WHERE ({WHERE}) ORDER BY clip_id, camera_index"
                return con.sql(sql).to_arrow_table()

        u_ms, unlocked = _median_ms(duck_select, args.repeats)
        expr = (pc.field("speed_mean") > 20) & (pc.field("occupied_ahead") > 0)
        expr = expr & (pc.field("camera") == "front")
        arrow_scan = lambda: pads.dataset(str(ds / "index")).to_table(filter=expr)  # noqa: E731
        a_ms, arrow_table = _median_ms(arrow_scan, args.repeats)
    assert count == table.num_rows == arrow_table.num_rows == narrow.num_rows == ids.num_rows
    assert unlocked.num_rows == count
    assert st["camera_streams"] == args.rows

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"# clip index query, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu}, {os.cpu_count()} logical CPUs,"
          f" DuckDB {duckdb.__version__}, pyarrow {pa.__version__}")
    mib = index_bytes / 2**20
    print(f"# {args.rows:,} rows in 8 Parquet fragments ({mib:.1f} MiB, generated in {gen_s:.1f} s);"
          f" median of {args.repeats}; machine shared with other jobs")
    print(f"# WHERE {WHERE}  ->  {table.num_rows:,} rows")
    print()
    print("| operation | wall ms (median) | wall ms (best) | CPU ms (median) |")
    print("|---|---:|---:|---:|")
    rows = [
        ("`query(dataset, WHERE)` -> Arrow table, all 28 columns, sorted (target < 200 ms)", q_ms),
        (f"`query(..., columns=<the {len(DATASET_COLUMNS)} ClipDataset reads>)`", qc_ms),
        ("`query(..., columns=['clip_id', 'camera'])`", qi_ms),
        ("`query(dataset, WHERE, out=subset)` (+ manifest written)", m_ms),
        ("`stats(dataset)` over all rows", s_ms),
        ("anchor: DuckDB `count(*)` with the same WHERE", d_ms),
        ("anchor: unlocked DuckDB `SELECT *` over the files, sorted (the path before the lockdown)", u_ms),
        ("anchor: pyarrow dataset scan with the same filter", a_ms),
    ]
    for name, (wall, best, cpu_ms) in rows:
        print(f"| {name} | {wall:.0f} | {best:.0f} | {cpu_ms:.0f} |")


if __name__ == "__main__":
    main()
