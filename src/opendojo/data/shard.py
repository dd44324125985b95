"""Shards: plain POSIX (ustar) tar files of clip members, read by byte offset.

Why tar: any tool can list, copy or stream it (``tar tf``, object stores, WebDataset readers), and a
ustar member is a 512-byte header followed by the raw bytes, so the clip index can store each
member's data offset and size and a reader fetches exactly one byte range per member (one ranged GET
on an object store) without scanning the archive. The reader also reads the member's header and
checks that it names the member the index expects: a tampered or unsafe name (``../x``, an absolute
path, a link) is refused rather than trusted.

Members of a clip ``<clip_id>``: ``<clip_id>.<camera_index>.mp4`` (one single-stream H.264 MP4 per
camera, starting on a keyframe) and ``<clip_id>.labels.safetensors`` (the clip's label rows).
"""

from __future__ import annotations

import io
import posixpath
import tarfile

import fsspec

from opendojo.data.durable import publish, remove_quietly, temp_name

HEADER_BYTES = tarfile.BLOCKSIZE


class ShardError(ValueError):
    """A shard or one of its members cannot be trusted (unsafe name, mismatch, truncation)."""


def check_member_name(name: str, *, where: str = "shard") -> str:
    """Return ``name`` if it is a plain relative path inside the archive; ``ShardError`` otherwise."""
    bad = (
        not name
        or "\x00" in name
        or "\\" in name
        or name.startswith("/")
        or (len(name) > 1 and name[1] == ":")
        or any(part in ("..", "") for part in name.split("/"))
        or posixpath.normpath(name) != name
    )
    if bad:
        raise ShardError(
            f"{where}: member name {name!r} is unsafe (absolute, parent-relative or empty); refused"
        )
    return name


def url_to_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(filesystem, path)`` for a local path or any fsspec URL (``s3://``, ``memory://``, ...)."""
    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, path


def join(root: str, *parts: str) -> str:
    return "/".join([str(root).rstrip("/"), *parts])


class ShardWriter:
    """Write members to ``<dir>/<name>.tar`` atomically: a hidden temp file, fsynced and renamed
    on ``commit()``.

    ``add()`` returns the member's data offset and size in bytes, the two numbers the index stores.
    Until ``commit()`` nothing under the final name exists, so a crash never leaves a half shard visible.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, directory: str, name: str):
        check_member_name(name + ".tar", where="shard name")
        self.fs, self.name = fs, name
        self.final = join(directory, name + ".tar")
        self.tmp = temp_name(directory, name + ".tar")
        fs.makedirs(directory, exist_ok=True)
        self._file = fs.open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        self.bytes = 0

    def add(self, member: str, data: bytes) -> tuple[int, int]:
        check_member_name(member, where=f"shard {self.final}")
        info = tarfile.TarInfo(member)
        info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: same input, same bytes
        header = info.tobuf(tarfile.USTAR_FORMAT, self._tar.encoding, self._tar.errors)
        offset = self._tar.offset + len(header)
        self._tar.addfile(info, io.BytesIO(data))
        self.bytes = self._tar.offset
        return offset, len(data)

    def commit(self) -> str:
        try:
            self._tar.close()
            self._file.close()
            return publish(self.fs, self.tmp, self.final)
        except BaseException:  # a full disk shows up here, at the last flush: leave nothing behind
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the shard: nothing appears under the final name, the temporary is removed."""
        try:
            self._tar.close()
            self._file.close()
        except OSError:
            pass  # e.g. ENOSPC again while flushing: the temporary goes anyway
        finally:
            remove_quietly(self.fs, self.tmp)


class ShardReader:
    """Random access to members of shards, with one open file handle per shard (per process)."""

    def __init__(self) -> None:
        self._open: dict[str, object] = {}

    def _handle(self, url: str):
        f = self._open.get(url)
        if f is None:
            fs, path = url_to_fs(url)
            try:
                f = fs.open(path, "rb")
            except FileNotFoundError as e:
                raise FileNotFoundError(f"shard {url} does not exist") from e
            if len(self._open) > 64:  # bound open files when a worker walks many shards
                self.close()
            self._open[url] = f
        return f

    def read(self, url: str, offset: int, size: int, member: str) -> bytes:
        """The bytes of ``member`` at data ``offset`` in shard ``url``, after checking its tar header."""
        if offset < HEADER_BYTES or size < 0:
            raise ShardError(f"shard {url}: member {member!r} has an invalid offset {offset} / size {size}")
        f = self._handle(url)
        f.seek(offset - HEADER_BYTES)
        blob = f.read(HEADER_BYTES + size)
        if len(blob) != HEADER_BYTES + size:
            raise ShardError(
                f"shard {url}: member {member!r} is truncated ({len(blob) - HEADER_BYTES} of {size} bytes)"
            )
        try:
            info = tarfile.TarInfo.frombuf(blob[:HEADER_BYTES], "utf-8", "strict")
        except tarfile.HeaderError as e:
            raise ShardError(f"shard {url}: no valid tar header before offset {offset} ({e})") from e
        check_member_name(info.name, where=f"shard {url}")
        if not info.isreg():
            raise ShardError(f"shard {url}: member {info.name!r} is not a regular file; refused")
        if info.name != member or info.size != size:
            raise ShardError(
                f"shard {url}: header names {info.name!r} ({info.size} bytes), index expects "
                f"{member!r} ({size} bytes)"
            )
        return blob[HEADER_BYTES:]

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()


def list_members(url: str) -> list[tuple[str, int, int]]:
    """``(name, data offset, size)`` of every member of a shard; ``ShardError`` on any unsafe member."""
    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        out = []
        for info in tar:
            check_member_name(info.name, where=f"shard {url}")
            if not info.isreg():
                raise ShardError(f"shard {url}: member {info.name!r} is not a regular file; refused")
            out.append((info.name, info.offset_data, info.size))
    return out
