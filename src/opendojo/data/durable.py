"""Files that appear whole or not at all: temp name, fsync, rename, and the sweep of dead writers' temps.

Every file the data engine publishes (shards, index fragments, subset manifests) is written under a
hidden temporary name in the same folder, flushed to the disk (``fsync``) and only then renamed into
place; the folder is fsynced after the rename so the new name survives a power cut too. Without the
fsync a crash shortly after the rename can leave a zero-length file under the final name.

A temporary name records who writes it, ``.<final name>~<host>~<pid>~<random>.tmp``, so that the next
ingest can remove the temporaries of processes that are gone (a SIGKILLed or OOM-killed worker
cannot clean up after itself), and two writers of the same final name never share a temporary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO

import fsspec

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"
# A temporary this old is abandoned whoever wrote it (another host's writer cannot be asked if it lives).
STALE_AFTER_S = 24 * 3600.0


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"


#: The temporaries this process named and has neither published nor removed yet.
_UNFINISHED: set[str] = set()


def temp_name(directory: str, final_name: str) -> str:
    """A fresh hidden temporary path in ``directory`` for a file to be published as ``final_name``."""
    tmp = f"{directory.rstrip('/')}/.{final_name}~{_host()}~{os.getpid()}~{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
    _UNFINISHED.add(tmp)
    return tmp


def remove_unfinished(fs: fsspec.AbstractFileSystem, root: str) -> None:
    """Remove this process's unfinished temporaries under ``root``: after an interrupt, which can land
    between a writer's creating its temporary and its cleanup handler."""
    for tmp in sorted(t for t in _UNFINISHED if t.startswith(root.rstrip("/") + "/")):
        remove_quietly(fs, tmp)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's data and metadata to the disk (a folder: the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(fs: fsspec.AbstractFileSystem, tmp: str, final: str) -> str:
    """Rename the written temporary ``tmp`` to ``final`` (replacing it), durably on a local disk."""
    if is_local(fs):
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_path(os.path.dirname(final) or ".")
    else:
        fs.mv(tmp, final)
    _UNFINISHED.discard(tmp)
    return final


def remove_quietly(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove ``path`` if it exists; errors are logged, never raised (used while already failing)."""
    try:
        if fs.exists(path):
            fs.rm(path)
        _UNFINISHED.discard(path)
    except OSError as e:
        log.warning("could not remove temporary %s: %s", path, e)


@contextlib.contextmanager
def atomic_file(fs: fsspec.AbstractFileSystem, final: str) -> Iterator[IO[bytes]]:
    """``with atomic_file(fs, path) as f: f.write(...)``: ``path`` appears complete when the block ends,
    and never appears (the temporary is removed) when the block raises."""
    directory, name = final.rsplit("/", 1) if "/" in final else (".", final)
    tmp = temp_name(directory, name)
    try:
        with fs.open(tmp, "wb") as f:
            yield f
        publish(fs, tmp, final)
    except BaseException:
        remove_quietly(fs, tmp)
        raise


def write_atomic(fs: fsspec.AbstractFileSystem, final: str, write: Callable[[IO[bytes]], None]) -> str:
    """Call ``write(file)`` on a temporary and publish it as ``final``; returns ``final``."""
    with atomic_file(fs, final) as f:
        write(f)
    return final


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """True for a process that has exited but not been reaped (a killed worker whose parent died too,
    until init collects it): signal 0 still reaches it, yet it writes nothing any more. Linux only."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]  # the field after "(comm)"
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")


def _abandoned(name: str, mtime: float | None) -> bool:
    """True for a temporary whose writer is gone: on this host with a dead pid, or older than a day."""
    parts = name[: -len(TMP_SUFFIX)].split("~")
    if len(parts) >= 4 and parts[-3] == _host() and parts[-2].isdigit():
        return not _pid_alive(int(parts[-2]))
    return mtime is not None and time.time() - mtime > STALE_AFTER_S


def sweep_temporaries(fs: fsspec.AbstractFileSystem, directory: str) -> list[str]:
    """Remove the temporaries in ``directory`` that dead writers left behind; returns their paths."""
    try:
        entries = fs.ls(directory, detail=True)
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        name = entry["name"].rsplit("/", 1)[-1]
        if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
            continue
        mtime = entry.get("mtime") or entry.get("created")
        if _abandoned(name, mtime if isinstance(mtime, int | float) else None):
            remove_quietly(fs, entry["name"])
            removed.append(entry["name"])
    if removed:
        log.info("removed %d temporary files left by killed writers in %s", len(removed), directory)
    return removed
