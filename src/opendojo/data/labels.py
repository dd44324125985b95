"""Per-frame ground-truth labels: the schema, and the JSON sidecar that carries them next to a video.

Every label is an array whose first axis is the frame index of the source video (one row per
frame, ``N`` rows for an ``N``-frame video). Conventions, shared by the generator, the shards and
``ClipDataset`` (which slices ``[T]`` frames out of them):

==============  =====================  ========  =======================================================
name            shape (per video)      dtype     meaning
==============  =====================  ========  =======================================================
``speed``       ``[N]``                float32   ego speed, metres per second
``steering``    ``[N]``                float32   front-wheel steering angle, radians, positive = left
``trajectory``  ``[N, K, 2]``          float32   the next ``K`` ego positions (every ``TRAJECTORY_DT_S``
                                                 seconds) in metres, in the ego frame at that frame:
                                                 ``x`` forward, ``y`` left
``occupancy``   ``[N, G, G]``          uint8     bird's-eye grid centred on the ego vehicle, 1 = a
                                                 vehicle's footprint grown by half a cell covers the
                                                 cell centre; cell ``OCCUPANCY_CELL_M``
                                                 metres; row 0 is the far edge AHEAD (forward = up),
                                                 column 0 is the LEFT edge
``boxes``       ``[N, M, 5]``          float32   other vehicles in the ego frame: ``x, y`` centre (m),
                                                 ``length, width`` (m), ``yaw`` (rad, relative to ego);
                                                 padded to ``M = MAX_BOXES`` rows
``box_mask``    ``[N, M]``             bool      True where the ``boxes`` row is a real vehicle
==============  =====================  ========  =======================================================

The sidecar of ``video.mp4`` is ``video.json``::

    {"format": "opendojo.labels/1", "frames": N, "fps": 30.0, "cameras": ["front", ...],
     "labels": {"speed": ARRAY, ...}}

where ``ARRAY`` is either a nested JSON list or the compact form
``{"dtype": "float32", "shape": [N], "base64": "..."}`` (little-endian raw bytes). Unknown label
names are kept as they are (any numeric array with ``N`` rows), so real datasets can carry their own.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

SIDECAR_FORMAT = "opendojo.labels/1"
TRAJECTORY_STEPS = 8  # K
TRAJECTORY_DT_S = 0.5  # seconds between trajectory points
OCCUPANCY_GRID = 32  # G
OCCUPANCY_CELL_M = 2.0  # metres per cell, so the grid spans 64 m x 64 m around the ego vehicle
MAX_BOXES = 16  # M
BOX_FIELDS = ("x", "y", "length", "width", "yaw")

#: name -> (dtype, per-frame shape) of the labels the generator writes.
LABEL_SCHEMA: dict[str, tuple[str, tuple[int, ...]]] = {
    "speed": ("float32", ()),
    "steering": ("float32", ()),
    "trajectory": ("float32", (TRAJECTORY_STEPS, 2)),
    "occupancy": ("uint8", (OCCUPANCY_GRID, OCCUPANCY_GRID)),
    "boxes": ("float32", (MAX_BOXES, len(BOX_FIELDS))),
    "box_mask": ("bool", (MAX_BOXES,)),
}

_ALLOWED_DTYPES = {"float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"}


def sidecar_path(video: Path) -> Path:
    """The JSON sidecar that belongs to ``video`` (same stem, ``.json``)."""
    return video.with_suffix(".json")


def _encode_array(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape), "base64": base64.b64encode(a.tobytes()).decode()}


def _decode_array(name: str, value: object) -> np.ndarray:
    if isinstance(value, dict):
        dtype = value.get("dtype")
        if dtype not in _ALLOWED_DTYPES:
            raise ValueError(f"label {name!r}: dtype {dtype!r} is not one of {sorted(_ALLOWED_DTYPES)}")
        shape = tuple(int(s) for s in value.get("shape", ()))
        raw = base64.b64decode(value.get("base64", ""), validate=True)
        a = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        if a.size != int(np.prod(shape)):
            raise ValueError(f"label {name!r}: {a.size} values do not fill shape {list(shape)}")
        return a.reshape(shape).astype(dtype)
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"label {name!r}: expected a numeric array, got dtype {a.dtype}")
    return a


def write_sidecar(path: Path, labels: dict[str, np.ndarray], *, fps: float, cameras: list[str]) -> None:
    """Write labels for an ``N``-frame video as a JSON sidecar (atomically: temp file + rename)."""
    frames = {len(a) for a in labels.values()}
    if len(frames) != 1:
        raise ValueError(f"labels: every array needs the same number of frames, got {sorted(frames)}")
    doc = {
        "format": SIDECAR_FORMAT,
        "frames": frames.pop(),
        "fps": float(fps),
        "cameras": list(cameras),
        "labels": {k: _encode_array(v) for k, v in sorted(labels.items())},
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True))
    tmp.replace(path)


def check_label(name: str, a: np.ndarray, frames: int | None = None) -> str | None:
    """Why label ``name`` cannot be stored (``None`` if it can): a reserved or empty name, no rows, fewer
    rows than ``frames``, a per-frame shape other than ``LABEL_SCHEMA``'s, or a NaN/infinite value."""
    if not name or name.startswith("__") or not name.isprintable():
        return f"label name {name!r} is empty, unprintable or reserved (names starting with '__')"
    if a.ndim == 0:
        return f"label {name!r} is a scalar, expected one row per frame"
    if len(a) == 0 or a.size == 0:
        return f"label {name!r} has no values (shape {list(a.shape)})"
    if frames is not None and len(a) < frames:
        return f"label {name!r} has {len(a)} rows but the video has {frames} frames"
    if name in LABEL_SCHEMA and a.shape[1:] != LABEL_SCHEMA[name][1]:
        return f"label {name!r} has rows of shape {list(a.shape[1:])}, expected {list(LABEL_SCHEMA[name][1])}"
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        return f"label {name!r} holds NaN or infinite values"
    return None


def read_sidecar(path: Path, *, frames: int | None = None) -> dict[str, np.ndarray]:
    """Read a JSON sidecar; ``ValueError`` naming the file if it does not parse or a label fails
    ``check_label`` (fewer than ``frames`` rows, empty, mis-shaped, reserved name, NaN)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"label sidecar {path}: cannot parse as JSON ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("labels"), dict):
        raise ValueError(f"label sidecar {path}: expected an object with a 'labels' object")
    try:
        labels = {str(k): _decode_array(k, v) for k, v in doc["labels"].items()}
    except (ValueError, TypeError) as e:
        raise ValueError(f"label sidecar {path}: {e}") from e
    for name, a in labels.items():
        reason = check_label(name, a, frames)
        if reason:
            raise ValueError(f"label sidecar {path}: {reason}")
    return labels
