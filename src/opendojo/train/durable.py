"""Files the trainer writes whole (result.json, config.json, plots, a rewritten metrics log): on disk in
full or not at all, even across a power cut, and an I/O error always names its path.

A file is written under a hidden temporary name, flushed and fsynced, renamed into place, and the
folder is fsynced so that the rename itself survives.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from opendojo.data.durable import fsync_path  # one fsync helper for every layer that publishes files

__all__ = ["fsync_path", "naming_path", "write_durable"]


@contextlib.contextmanager
def naming_path(path: str | os.PathLike) -> Iterator[None]:
    """Give an OSError raised inside the block ``path`` when it names none: a full disk reports ENOSPC
    from ``write``/``close``, which know no file name."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), os.fspath(path)) from e
        raise


def write_durable(path: str | os.PathLike, content: str | bytes) -> Path:
    """Write ``content`` (text is UTF-8) to ``path`` atomically and durably; returns ``path``.

    A failure (a full disk, say) leaves the previous file, if any, untouched and no temporary behind.
    """
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with naming_path(path):
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_path(path.parent)
    return path
