"""Cut one video file into fixed-length, keyframe-aligned clips, one single-stream MP4 per camera.

A clip of ``T`` frames starting at frame ``k * T`` is *copied* (its packets remuxed, no quality loss,
no encode cost) when the stream is H.264 without frame reordering and frame ``k * T`` is a keyframe;
otherwise it is *re-encoded* to H.264 with a keyframe every ``T`` frames, so that the clip starts on
a keyframe and a reader never decodes frames it throws away. Every packet is decoded once while
cutting, which is how corrupt or truncated files are detected.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
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


@dataclass
class CutSource:
    path: Path
    sha256: str
    fps: float
    sizes: list[tuple[int, int]]  # (height, width) of each camera stream in the source
    cameras: list[str]
    clips: list[CutClip]
    tags: list[str]


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
        fr.pts = i
        fr.pict_type = av.video.frame.PictureType.NONE
        out.mux(st.encode(fr))
    out.mux(st.encode(None))
    out.close()
    return buf.getvalue()


def _reencode_mask(st: av.video.stream.VideoStream, pks: list[av.Packet], clip_frames: int) -> list[bool]:
    """Per clip: True unless its packets can be copied (H.264, starts on a keyframe, no reordering)."""
    out = []
    for a in range(0, max(len(pks) - clip_frames + 1, 1), clip_frames):
        pts = [p.pts for p in pks[a : a + clip_frames]]
        ok = (
            st.codec_context.name in COPYABLE_CODECS
            and len(pts) == clip_frames
            and pks[a].is_keyframe
            and None not in pts
            and bool(np.all(np.diff(pts) > 0))
        )
        out.append(not ok)
    return out + [True]  # frames past the last full clip are dropped; keep the mask index in range


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


def cut_source(
    path: Path, sha256: str, clip_frames: int, *, require_labels: bool = False, tags: list[str] | None = None
) -> CutSource:
    """Cut ``path`` into ``floor(N / clip_frames)`` clips (a shorter tail is dropped); ``SourceError`` if
    the file is empty, not a video, corrupt, truncated, too short, or lacks a required sidecar."""
    if path.stat().st_size == 0:
        raise SourceError("empty file (0 bytes)")
    side = sidecar_path(path)
    if require_labels and not side.exists():
        raise SourceError(f"missing label sidecar {side}")
    try:
        container = av.open(str(path), "r")
    except av.error.FFmpegError as e:
        reason = _mp4_truncation(path)
        if reason:
            raise SourceError(reason) from e
        raise SourceError(f"not a readable video file ({e.__class__.__name__}: {e})") from e
    with container:
        streams = list(container.streams.video)
        if not streams:
            raise SourceError("no video stream")
        for st in streams:
            st.codec_context.thread_count = 1
        packets: dict[int, list[av.Packet]] = {st.index: [] for st in streams}
        decoded: dict[int, list[av.VideoFrame | None]] = {st.index: [] for st in streams}
        masks: dict[int, list[bool]] = {}
        try:
            for pk in container.demux(streams):
                if pk.size == 0:
                    continue
                packets[pk.stream.index].append(pk)
            for st in streams:  # keep decoded frames only where a clip must be re-encoded (memory)
                keep = masks[st.index] = _reencode_mask(st, packets[st.index], clip_frames)
                out = decoded[st.index]
                for pk in [*packets[st.index], None]:
                    for fr in st.codec_context.decode(pk):
                        out.append(fr if keep[min(len(out) // clip_frames, len(keep) - 1)] else None)
        except av.error.FFmpegError as e:
            short = [st for st in streams if st.frames and len(packets[st.index]) < st.frames]
            if short:
                raise SourceError(
                    f"truncated: stream {short[0].index} declares {short[0].frames} frames, "
                    f"the file holds {len(packets[short[0].index])}"
                ) from e
            raise SourceError(f"corrupt video data ({e.__class__.__name__}: {e})") from e
        for st in streams:
            declared, got = st.frames, len(decoded[st.index])
            if declared and got < declared:
                raise SourceError(
                    f"truncated: stream {st.index} declares {declared} frames, only {got} decode"
                )
            if got < len(packets[st.index]):
                raise SourceError(
                    f"corrupt: stream {st.index} has {len(packets[st.index])} packets, {got} decode"
                )
        n = min(len(decoded[st.index]) for st in streams)
        if n < clip_frames:
            raise SourceError(f"{n} frames, fewer than clip_frames={clip_frames}")
        fps = float(streams[0].average_rate or streams[0].guessed_rate or 30)
        labels, sidecar_cams, extra_tags = None, None, []
        if side.exists():
            try:
                import json

                doc = json.loads(side.read_text())
                sidecar_cams = doc.get("cameras") if isinstance(doc, dict) else None
                extra_tags = [str(t) for t in doc.get("tags", [])] if isinstance(doc, dict) else []
            except (OSError, ValueError):
                pass  # read_sidecar below reports the parse error with its path
            try:
                labels = read_sidecar(side, frames=n - n % clip_frames)
            except ValueError as e:
                raise SourceError(str(e)) from e
        names = _camera_names(streams, sidecar_cams)
        clips = []
        for k in range(n // clip_frames):
            a, b = k * clip_frames, (k + 1) * clip_frames
            clip = CutClip(clip_id_of(sha256, a), a, clip_frames)
            for st in streams:
                copy = not masks[st.index][k]
                if copy:
                    clip.members.append(_remux(st, packets[st.index][a:b]))
                else:
                    clip.members.append(_reencode(decoded[st.index][a:b], round(fps), clip_frames))
                clip.reencoded.append(not copy)
            if labels is not None:
                clip.labels = {name: np.ascontiguousarray(v[a:b]) for name, v in labels.items()}
            clips.append(clip)
        return CutSource(
            path,
            sha256,
            fps,
            [(st.codec_context.height, st.codec_context.width) for st in streams],
            names,
            clips,
            sorted(set((tags or []) + extra_tags)),
        )
