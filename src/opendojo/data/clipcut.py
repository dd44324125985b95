"""Cut one video file into fixed-length, keyframe-aligned clips, one single-stream MP4 per camera.

A clip of ``T`` frames starting at frame ``k * T`` is *copied* (its packets remuxed, no quality loss,
no encode cost) when the stream is H.264 without frame reordering and frame ``k * T`` is a keyframe;
otherwise it is *re-encoded* to H.264 with a keyframe every ``T`` frames, so that the clip starts on
a keyframe and a reader never decodes frames it throws away. Every packet is decoded once while
cutting, which is how corrupt or truncated files are detected.

The file is read once, as a stream: each clip is made and handed on as soon as its packets and
frames have arrived, so peak memory is a few clips' worth whatever the file's length.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from opendojo.data.codec import add_h264_stream, open_output
from opendojo.data.labels import read_sidecar, sidecar_path

COPYABLE_CODECS = ("h264",)


class SourceError(Exception):
    """A source file that cannot be ingested; the message is the reason shown to the user."""


@dataclass
class CutClip:
    """One clip of a source: ``members[camera_index]`` are MP4 bytes; ``labels`` the clip's label rows."""

    clip_id: str
    start_frame: int
    frames: int
    members: list[bytes] = field(default_factory=list)
    reencoded: list[bool] = field(default_factory=list)
    labels: dict[str, np.ndarray] | None = None


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def clip_id_of(source_sha256: str, start_frame: int) -> str:
    return hashlib.sha256(f"{source_sha256}:{start_frame}".encode()).hexdigest()[:16]


def _remux(template: av.video.stream.VideoStream, packets: list[av.Packet]) -> bytes:
    buf = io.BytesIO()
    out = open_output(buf)
    st = out.add_stream_from_template(template)
    pts0 = packets[0].pts
    dts0 = packets[0].dts if packets[0].dts is not None else pts0
    for pk in packets:
        pk.pts = pk.pts - pts0
        pk.dts = pk.dts - dts0 if pk.dts is not None else pk.pts
        pk.stream = st
        out.mux(pk)
    out.close()
    return buf.getvalue()


def _reencode(frames: list[av.VideoFrame], fps: int, keyint: int) -> bytes:
    buf = io.BytesIO()
    out = open_output(buf)
    h, w = frames[0].height, frames[0].width
    st = add_h264_stream(out, fps=fps, height=h - h % 2, width=w - w % 2, keyint=keyint)
    for i, fr in enumerate(frames):
        if fr.format.name != "yuv420p" or fr.height % 2 or fr.width % 2:
            fr = fr.reformat(width=w - w % 2, height=h - h % 2, format="yuv420p", threads=1)
        fr.pts, fr.time_base = i, Fraction(1, fps)  # the decoder's time base would rescale pts to 0
        fr.pict_type = av.video.frame.PictureType.NONE
        out.mux(st.encode(fr))
    out.mux(st.encode(None))
    out.close()
    return buf.getvalue()


def _mp4_truncation(path: Path) -> str | None:
    """A reason if ``path`` is an MP4/MOV whose top-level boxes run past the end of the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] != b"ftyp":
            return None
        pos, names = 0, []
        while pos + 8 <= size:
            f.seek(pos)
            hdr = f.read(16)
            length = int.from_bytes(hdr[:4], "big")
            if length == 1 and len(hdr) == 16:
                length = int.from_bytes(hdr[8:16], "big")
            names.append(hdr[4:8])
            if length < 8:
                break
            if pos + length > size:
                box = hdr[4:8].decode("latin-1")
                return f"truncated: MP4 box {box!r} needs {pos + length} bytes, file has {size}"
            pos += length
    return None if b"moov" in names else "truncated or incomplete MP4: no 'moov' box"


def _camera_names(streams, sidecar_cameras: object) -> list[str]:
    if isinstance(sidecar_cameras, list) and len(sidecar_cameras) == len(streams):
        names = [str(c) for c in sidecar_cameras]
    else:
        names = [
            s.metadata.get("name") or s.metadata.get("title") or f"cam{i}" for i, s in enumerate(streams)
        ]
    return [n if names.count(n) == 1 else f"{n}{i}" for i, n in enumerate(names)]


@dataclass
class SourceInfo:
    """What is known of a source before its clips are cut. ``labels``: every label's rows for the whole
    file (``None`` without a sidecar); ``sizes``: ``(height, width)`` of each camera stream."""

    path: Path
    sha256: str
    fps: float
    sizes: list[tuple[int, int]]
    cameras: list[str]
    tags: list[str]
    labels: dict[str, np.ndarray] | None


class _StreamCut:
    """One camera stream being cut: the packets and decoded frames of its clips not yet made into MP4s.

    Why only those: a clip that must be re-encoded needs its decoded frames, and holding every frame of
    a file until the end costs ~1.8 MB per 1280x960 frame (1.7 GB for 30 s). Here a stream holds at most
    one clip of frames plus the decoder's delay, whatever the file's length.
    """

    def __init__(self, st: av.video.stream.VideoStream, clip_frames: int, fps: int):
        self.st, self.t, self.fps = st, clip_frames, fps
        st.codec_context.thread_count = 1
        self.packets: list[av.Packet] = []
        self.frames: list[av.VideoFrame] = []
        self.n_packets = self.n_frames = self.made = 0
        self.members: dict[int, tuple[bytes, bool]] = {}  # clip number -> (MP4 bytes, re-encoded)

    def add(self, pk: av.Packet | None) -> None:
        """Demux ``pk`` into this stream (``None``: flush the decoder at the end of the file)."""
        if pk is not None:
            self.packets.append(pk)
            self.n_packets += 1
        for fr in self.st.codec_context.decode(pk):
            self.frames.append(fr)
            self.n_frames += 1
            self._make_ready()

    def _copyable(self, pks: list[av.Packet]) -> bool:
        pts = [p.pts for p in pks]
        return (self.st.codec_context.name in COPYABLE_CODECS and pks[0].is_keyframe and None not in pts
                and bool(np.all(np.diff(pts) > 0)))

    def _make_ready(self) -> None:
        while len(self.packets) >= self.t and len(self.frames) >= self.t:
            pks, frs = self.packets[: self.t], self.frames[: self.t]
            del self.packets[: self.t], self.frames[: self.t]  # free them before the next clip arrives
            if self._copyable(pks):
                self.members[self.made] = (_remux(self.st, pks), False)
            else:
                self.members[self.made] = (_reencode(frs, self.fps, self.t), True)
            self.made += 1


def _open_container(path: Path) -> av.container.InputContainer:
    if path.stat().st_size == 0:
        raise SourceError("empty file (0 bytes)")
    try:
        return av.open(str(path), "r")
    except av.error.FFmpegError as e:
        reason = _mp4_truncation(path)
        if reason:
            raise SourceError(reason) from e
        raise SourceError(f"not a readable video file ({e.__class__.__name__}: {e})") from e


def _read_labels(path: Path, require_labels: bool) -> tuple[dict | None, object, list[str]]:
    """``(labels or None, sidecar camera names, sidecar tags)`` of ``path``'s sidecar."""
    side = sidecar_path(path)
    if not side.exists():
        if require_labels:
            raise SourceError(f"missing label sidecar {side}")
        return None, None, []
    try:
        labels = read_sidecar(side)
    except ValueError as e:
        raise SourceError(str(e)) from e
    doc = json.loads(side.read_text())  # parsed once already by read_sidecar: cannot fail here
    tags = doc.get("tags", [])
    return labels, doc.get("cameras"), [str(t) for t in tags] if isinstance(tags, list) else []


def _decode_error(container: av.container.InputContainer, cuts: list[_StreamCut], e: Exception
                  ) -> SourceError:
    """Tell a truncated file (fewer packets than its header declares) from damaged data: count the
    packets left after the error without decoding them."""
    try:
        for pk in container.demux([c.st for c in cuts]):
            if pk.size:
                next(c for c in cuts if c.st.index == pk.stream.index).n_packets += 1
    except av.error.FFmpegError:
        pass  # the demuxer cannot go on either: what was counted is what the file holds
    short = [c for c in cuts if c.st.frames and c.n_packets < c.st.frames]
    if short:
        c = short[0]
        return SourceError(f"truncated: stream {c.st.index} declares {c.st.frames} frames, "
                           f"the file holds {c.n_packets}")
    return SourceError(f"corrupt video data ({e.__class__.__name__}: {e})")


def _check_complete(cuts: list[_StreamCut], clip_frames: int) -> None:
    for c in cuts:
        if c.st.frames and c.n_frames < c.st.frames:
            raise SourceError(f"truncated: stream {c.st.index} declares {c.st.frames} frames, "
                              f"only {c.n_frames} decode")
        if c.n_frames < c.n_packets:
            raise SourceError(f"corrupt: stream {c.st.index} has {c.n_packets} packets, {c.n_frames} decode")
    n = min(c.n_frames for c in cuts)
    if n < clip_frames:
        raise SourceError(f"{n} frames, fewer than clip_frames={clip_frames}")


def _clip_labels(info: SourceInfo, a: int, b: int) -> dict[str, np.ndarray] | None:
    if info.labels is None:
        return None
    for name, v in info.labels.items():
        if len(v) < b:
            raise SourceError(f"label sidecar {sidecar_path(info.path)}: label {name!r} has {len(v)} rows "
                              f"but the video has at least {b} frames")
    return {name: np.ascontiguousarray(v[a:b]) for name, v in info.labels.items()}


def _iter_clips(container: av.container.InputContainer, cuts: list[_StreamCut], info: SourceInfo,
                clip_frames: int) -> Iterator[CutClip]:
    """Demux and decode the file once, yielding each clip as soon as every camera's part of it is made."""
    made = 0

    def ready() -> Iterator[CutClip]:
        nonlocal made
        while all(made in c.members for c in cuts):
            a = made * clip_frames
            labels = _clip_labels(info, a, a + clip_frames)
            clip = CutClip(clip_id_of(info.sha256, a), a, clip_frames, labels=labels)
            for c in cuts:
                data, re = c.members.pop(made)
                clip.members.append(data)
                clip.reencoded.append(re)
            made += 1
            yield clip

    by_index = {c.st.index: c for c in cuts}
    try:
        for pk in container.demux([c.st for c in cuts]):
            if pk.size:
                by_index[pk.stream.index].add(pk)
                yield from ready()
        for c in cuts:
            c.add(None)
    except av.error.FFmpegError as e:
        raise _decode_error(container, cuts, e) from e
    _check_complete(cuts, clip_frames)
    yield from ready()


@contextlib.contextmanager
def open_source(path: Path, sha256: str, clip_frames: int, *, require_labels: bool = False,
                tags: list[str] | None = None) -> Iterator[tuple[SourceInfo, Iterator[CutClip]]]:
    """``with open_source(...) as (info, clips)``: ``clips`` yields the ``floor(N / clip_frames)`` clips
    of ``path`` (a shorter tail is dropped) while the file is read, so memory does not grow with its
    length. ``SourceError`` (from the ``with`` or from ``clips``) if the file is empty, not a video,
    corrupt, truncated, too short, or lacks a required or valid sidecar; a caller that has written some
    clips already must then discard them."""
    container = _open_container(path)
    with container:
        streams = list(container.streams.video)
        if not streams:
            raise SourceError("no video stream")
        labels, sidecar_cams, extra_tags = _read_labels(path, require_labels)
        fps = float(streams[0].average_rate or streams[0].guessed_rate or 30)
        sizes = [(st.codec_context.height, st.codec_context.width) for st in streams]
        info = SourceInfo(path, sha256, fps, sizes, _camera_names(streams, sidecar_cams),
                          sorted(set((tags or []) + extra_tags)), labels)
        cuts = [_StreamCut(st, clip_frames, round(fps)) for st in streams]
        yield info, _iter_clips(container, cuts, info, clip_frames)
