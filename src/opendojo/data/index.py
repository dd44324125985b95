"""The clip index: Parquet fragments under ``DATASET/index/``, merged on read and queried with DuckDB.

One row per (clip, camera). A dataset is::

    DATASET/shards/src-<sha256[:24]>.tar     clip members of one source (see ``shard.py``, ``sourcejob.py``)
    DATASET/index/src-<sha256[:24]>.parquet  their index rows

Each source is written under a name derived from its content and nothing else touches those files,
so any number of processes on any number of machines can add to one dataset without coordination: a
reader simply unions every fragment it lists in ``index/`` (never a glob: a dataset root may contain
``[`` or ``*``). A fragment is renamed into place after its shard, so every visible row points at a
complete shard.

A *subset* (``query(..., out=PATH)``) is a single Parquet file of selected rows whose schema
metadata names the dataset root: a manifest, no copy of the video.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from opendojo.data.durable import is_local, write_atomic
from opendojo.data.safesql import check_where, run_sql
from opendojo.data.shard import join, url_to_fs
from opendojo.errors import UsageError

ROOT_KEY = b"opendojo.dataset"
INDEX_VERSION = "v2"  # bump when the schema changes; part of cached synthetic dataset names

SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),  # 16 hex digits: sha256(source sha256, start frame)
        ("camera", pa.string()),
        ("camera_index", pa.int32()),
        ("source", pa.string()),  # the ingested file, as given
        ("source_sha256", pa.string()),
        ("start_frame", pa.int64()),  # index of the clip's first frame in the source
        ("frames", pa.int32()),
        ("fps", pa.float64()),
        ("start_s", pa.float64()),  # seconds from the start of the source
        ("duration_s", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("codec", pa.string()),
        ("reencoded", pa.bool_()),  # False: packets copied from the source (keyframe-aligned)
        ("shard", pa.string()),  # relative to the dataset root
        ("member", pa.string()),
        ("data_offset", pa.int64()),  # bytes: where the member's data starts in the shard
        ("data_bytes", pa.int64()),
        ("labels_member", pa.string()),  # null when the source had no labels
        ("labels_offset", pa.int64()),
        ("labels_bytes", pa.int64()),
        ("speed_mean", pa.float32()),  # m/s over the clip's frames (null without labels)
        ("speed_max", pa.float32()),
        ("steering_abs_max", pa.float32()),  # rad
        ("occupied_ahead", pa.float32()),  # fraction of frames with a vehicle in the ego lane < 20 m ahead
        ("vehicles_max", pa.int32()),  # most vehicle boxes in any frame
        ("tags", pa.list_(pa.string())),
        ("writer", pa.string()),
    ]
)


_DELTA_COLUMNS = ("start_frame", "data_offset", "data_bytes", "labels_offset", "labels_bytes")


def write_index_table(table: pa.Table, file) -> None:
    """Write index rows as Parquet. The unique, increasing byte offsets are delta-encoded instead of
    dictionary-encoded: half the index size and faster ``SELECT *`` queries (docs/data.md)."""
    plain = [c for c in _DELTA_COLUMNS if c in table.column_names]
    pq.write_table(table, file, use_dictionary=[c for c in table.column_names if c not in plain],
                   column_encoding=dict.fromkeys(plain, "DELTA_BINARY_PACKED"))


def write_fragment(dataset: str, name: str, rows: list[dict]) -> str:
    """Write ``rows`` as ``index/<name>.parquet`` (temporary, fsync, rename); returns its URL."""
    fs, root = url_to_fs(dataset)
    directory = join(root, "index")
    fs.makedirs(directory, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return write_atomic(fs, join(directory, name + ".parquet"), lambda f: write_index_table(table, f))


def resolve(dataset: str | os.PathLike) -> tuple[str, str]:
    """``(kind, url)``: ``("dataset", root)`` or ``("manifest", file)``; clear errors for bad paths."""
    url = str(dataset)
    fs, p = url_to_fs(url)
    if not fs.exists(p):
        raise FileNotFoundError(f"dataset {url!r} does not exist")
    if fs.isfile(p):
        return "manifest", url
    if not fs.exists(join(p, "index")):
        raise FileNotFoundError(
            f"dataset {url!r} has no index/ folder: not an OpenDojo dataset (run `dojo data ingest`)"
        )
    return "dataset", url


def fragments(dataset: str) -> list[str]:
    """The published fragment paths of a dataset, listed (never globbed: a root may contain ``[``, ``*``)."""
    fs, root = url_to_fs(dataset)
    entries = fs.ls(join(root, "index"), detail=True)
    names = [e["name"].rsplit("/", 1)[-1] for e in entries if e["type"] == "file"]
    return sorted(join(root, "index", n) for n in names if n.endswith(".parquet") and not n.startswith("."))


def _files(dataset: str | os.PathLike) -> tuple[str, str, list[str]]:
    """``(url, dataset root, index files)`` of a dataset or a subset manifest."""
    kind, url = resolve(dataset)
    if kind == "dataset":
        return url, url, fragments(url)
    fs, p = url_to_fs(url)
    try:
        with fs.open(p, "rb") as f:
            meta = pq.read_schema(f).metadata or {}
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"index {url!r} does not parse as Parquet ({e})") from e
    if ROOT_KEY not in meta:
        raise ValueError(f"manifest {url!r} has no {ROOT_KEY.decode()!r} metadata: not an OpenDojo subset")
    return url, meta[ROOT_KEY].decode(), [p]


def _read_rows(dataset: str | os.PathLike, columns: list[str]) -> tuple[pa.Table | list[str], str, str]:
    """``(rows, dataset root, index name)``: for a local index the absolute paths of its files (DuckDB
    reads them, faster than pyarrow); otherwise a table of ``columns`` read by pyarrow through fsspec,
    with columns a fragment lacks (an older writer) null."""
    import pyarrow.dataset as pds

    url, root, files = _files(dataset)
    fs, _ = url_to_fs(url)
    name = f"index of {url!r}"
    if files and is_local(fs):
        return [os.path.abspath(f) for f in files], root, name
    if not files:
        return pa.schema([SCHEMA.field(c) for c in columns]).empty_table(), root, name
    try:
        ds = pds.dataset(files, schema=SCHEMA, format="parquet", filesystem=fs)
        return ds.to_table(columns=columns), root, name
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as e:
        raise ValueError(f"{name} does not parse: {e}") from e


def _select_list(columns: list[str] | tuple[str, ...] | None) -> list[str]:
    """The columns asked for (None: every column); unknown names are refused."""
    if columns is None:
        return list(SCHEMA.names)
    ok = isinstance(columns, list | tuple) and columns and all(isinstance(c, str) and c for c in columns)
    if not ok:
        raise UsageError(f"columns={columns!r}: must be None or a non-empty list of column names")
    unknown = [c for c in columns if c not in SCHEMA.names]
    if unknown:
        raise UsageError(f"columns={list(columns)!r} names an unknown column {unknown}; "
                         f"known: {SCHEMA.names}")
    return list(columns)


def load_index(dataset: str | os.PathLike, where_sql: str | None = None, *,
               columns: list[str] | tuple[str, ...] | None = None) -> pa.Table:
    """All index rows of a dataset or manifest (optionally filtered by ``where_sql``, one boolean
    expression run on the locked connection of ``safesql``), ordered by ``(clip_id, camera_index)``,
    with the dataset root URL in the schema metadata. ``columns``: only these, in this order."""
    select = _select_list(columns)
    named = set(check_where(where_sql)) if where_sql is not None else set()
    needed = [c for c in SCHEMA.names if c in named | set(select) | {"clip_id", "camera_index"}]
    rows, root, name = _read_rows(dataset, needed)
    quoted = ", ".join('"' + c + '"' for c in select)

    def build(rel):
        if where_sql is not None:
            rel = rel.filter(where_sql)
        return rel.order("clip_id, camera_index").select(quoted)

    out = run_sql(rows, build, f"where_sql={where_sql!r}", name)
    return out.replace_schema_metadata({ROOT_KEY: root.encode()})


def query(dataset: str | os.PathLike, where_sql: str, out: str | os.PathLike | None = None, *,
          columns: list[str] | tuple[str, ...] | None = None) -> pa.Table:
    """Rows of ``dataset`` matching the SQL boolean expression ``where_sql``, e.g.
    ``"speed_mean > 20 AND occupied_ahead > 0"``, ordered by ``(clip_id, camera_index)``. With ``out``,
    also write them as a subset manifest (Parquet; temporary, fsync, rename, so concurrent queries
    writing one ``out`` never mix) that ``ClipDataset`` and ``stats`` accept like a dataset. Rows are
    per camera, so ``camera = 'front'`` keeps only front-camera rows, and ``ClipDataset`` then streams
    the cameras present in every selected clip.

    ``columns``: return only these columns (default: all); faster when few rows of a large index
    match (``benchmarks/index_query.py``). A manifest needs every column, so not with ``out``.
    ``where_sql`` is refused unless it is one boolean expression (``safesql.check_where``)."""
    if out is not None and columns is not None:
        raise UsageError(f"columns={columns!r} with out={str(out)!r}: a subset manifest holds every column; "
                         "pass one or the other")
    table = load_index(dataset, where_sql, columns=columns)
    if out is not None:
        fs, p = url_to_fs(str(out))
        parent = p.rsplit("/", 1)[0] if "/" in p else "."
        fs.makedirs(parent, exist_ok=True)
        write_atomic(fs, p, lambda f: write_index_table(table, f))
    return table


_STATS_KEYS = ("clips", "camera_streams", "sources", "shards", "frames", "video_hours", "drive_hours",
               "video_bytes", "label_bytes", "cameras", "reencoded_fraction")
_STATS_SQL = """
    WITH c AS (SELECT max(duration_s) AS d, max(labels_bytes) AS lb FROM t GROUP BY clip_id)
    SELECT count(DISTINCT clip_id), count(*), count(DISTINCT source_sha256), count(DISTINCT shard),
           coalesce(sum(frames), 0)::BIGINT, coalesce(sum(duration_s), 0) / 3600,
           coalesce((SELECT sum(d) FROM c), 0) / 3600, coalesce(sum(data_bytes), 0)::BIGINT,
           coalesce((SELECT sum(lb) FROM c), 0)::BIGINT, count(DISTINCT camera),
           coalesce(avg(reencoded::INT), 0)::DOUBLE
    FROM t"""


def stats(dataset: str | os.PathLike) -> dict[str, float | int]:
    """Counts and sizes: clips, camera streams, sources, shards, frames, hours (camera-video and drive),
    bytes. Hours of drive count each clip once; hours of video count every camera."""
    cols = ["clip_id", "camera", "source_sha256", "frames", "duration_s", "reencoded", "shard", "data_bytes",
            "labels_bytes"]
    rows, _, name = _read_rows(dataset, [c for c in SCHEMA.names if c in cols])
    if isinstance(rows, pa.Table) and rows.num_rows == 0:
        return dict.fromkeys(_STATS_KEYS, 0)
    table = run_sql(rows, lambda rel: rel.query("t", _STATS_SQL), f"stats of {str(dataset)!r}", name)
    row = table.to_pylist()[0]
    return dict(zip(_STATS_KEYS, row.values(), strict=True))


def dataset_root_of(table: pa.Table) -> str:
    meta = table.schema.metadata or {}
    if ROOT_KEY not in meta:
        raise ValueError("table has no dataset root metadata; get it from load_index() or query()")
    return meta[ROOT_KEY].decode()
