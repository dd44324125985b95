"""opendojo.data: the video data engine.

``synth`` (procedural multi-camera driving video, H.264 + label sidecars) -> ``ingest`` (keyframe-aligned
clips in tar shards + a Parquet clip index) -> ``query`` / ``stats`` (DuckDB over the index, subset
manifests) -> ``ClipDataset`` / ``ClipLoader`` (deterministic, resumable streaming of decoded clips).
Formats and decisions: docs/data.md.
"""

from opendojo.data.cache import ensure_synthetic_dataset
from opendojo.data.index import load_index, query, stats
from opendojo.data.ingest import IngestFailure, IngestReport, ingest
from opendojo.data.labels import LABEL_SCHEMA, read_sidecar, write_sidecar
from opendojo.data.shard import ShardError
from opendojo.data.synth import synth

# The streaming side needs torch (~0.3 GB and seconds to import); ingest workers and the query path
# do not, so it is imported on first use.
_LAZY = {"ClipDataset": "opendojo.data.dataset", "ClipLoader": "opendojo.data.loader",
         "collate_clips": "opendojo.data.loader"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'opendojo.data' has no attribute {name!r}")

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
