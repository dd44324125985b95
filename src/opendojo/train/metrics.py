"""A run's metrics log, ``metrics.jsonl``: one JSON object per line, written by :class:`MetricsLog` and read
back by :func:`read_metrics` (a mirrored writer/reader pair; the record kinds are in docs/training.md).

Every record is appended and flushed as one line. A power cut or a full disk can still leave the last
line torn; readers drop such a line with a warning naming the file, and a resumed run rewrites the log
without it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from opendojo.train.durable import fsync_path, naming_path, write_durable

__all__ = ["MetricsLog", "read_metrics"]

log = logging.getLogger(__name__)


def _lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) for each line of ``path``; a torn last line is dropped with a warning, a bad line
    anywhere else raises ValueError naming the file and the line."""
    # Records are ASCII (json.dumps escapes the rest); "replace" keeps a torn multi-byte tail parseable.
    lines = path.read_bytes().decode("utf-8", "replace").split("\n")
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # after the last newline: a write cut short
                log.warning("%s: dropped its torn last line (%d bytes, %s)", path, len(line), e.msg)
                break
            raise ValueError(f"metrics file {str(path)!r}, line {number}: not JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"metrics file {str(path)!r}, line {number}: not a JSON object")
        out.append((line, record))
    return out


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``, by step; for a step logged twice (a resumed run), the last one
    wins."""
    records: dict[tuple[str, int], dict] = {}
    for _, r in _lines(Path(path)):
        records[(r.get("kind", ""), r.get("step", 0))] = r
    return sorted(records.values(), key=lambda r: r.get("step", 0))


class MetricsLog:
    """Append-only JSONL, written by rank 0 only (``enabled``).

    A fresh run (``resume_step=None``) starts an empty log; a resumed one first rewrites the log without
    the records after ``resume_step`` (they belong to steps that will be run again) and without a torn
    last line.
    """

    def __init__(self, path: str | Path, enabled: bool, resume_step: int | None) -> None:
        self.path, self.enabled = Path(path), enabled
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            keep = [line for line, r in _lines(self.path) if r.get("step", 0) <= resume_step]
            write_durable(self.path, "".join(line + "\n" for line in keep))
        elif resume_step is None and self.path.exists():
            self.path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line and flush it to the operating system."""
        if self.enabled:
            with naming_path(self.path), open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()

    def sync(self) -> None:
        """Make every record written so far durable (called with each checkpoint)."""
        if self.enabled and self.path.exists():
            with naming_path(self.path):
                fsync_path(self.path)
                fsync_path(self.path.parent)
