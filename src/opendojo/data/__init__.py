"""opendojo.data: the video data engine.

``synth`` (procedural multi-camera driving video, H.264 + label sidecars) -> ``ingest`` (keyframe-aligned
clips in tar shards + a Parquet clip index) -> ``query`` / ``stats`` (DuckDB over the index, subset
manifests) -> ``ClipDataset`` / ``ClipLoader`` (deterministic, resumable streaming of decoded clips).
Formats and decisions: docs/data.md.
"""

from opendojo.data.cache import ensure_synthetic_dataset
from opendojo.data.dataset import ClipDataset
from opendojo.data.index import load_index, query, stats
from opendojo.data.ingest import IngestFailure, IngestReport, ingest
from opendojo.data.labels import LABEL_SCHEMA, read_sidecar, write_sidecar
from opendojo.data.loader import ClipLoader, collate_clips
from opendojo.data.shard import ShardError
from opendojo.data.synth import synth

__all__ = [
    "LABEL_SCHEMA",
    "ClipDataset",
    "ClipLoader",
    "IngestFailure",
    "IngestReport",
    "ShardError",
    "collate_clips",
    "ensure_synthetic_dataset",
    "ingest",
    "load_index",
    "query",
    "read_sidecar",
    "stats",
    "synth",
    "write_sidecar",
]
