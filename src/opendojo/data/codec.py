"""H.264 encode/decode with PyAV, set up the way the data engine needs it.

* Encoding is single-threaded and bit-exact, with a fixed keyframe interval and no B-frames, so the
  same input gives the same bytes and every keyframe starts a self-contained group of pictures
  (a clip can be cut there by copying packets, without re-encoding).
* Decoding uses one codec thread and single-threaded RGB conversion: since PyAV 17 the conversion is
  multi-threaded by default, which halves throughput at small sizes when DataLoader workers already
  use every core (PyAV issue #2200; measured figures in docs/video-facts.md).
"""

from __future__ import annotations

import io

import av
import numpy as np

DEFAULT_CRF = 23


def add_h264_stream(
    container: av.container.OutputContainer,
    *,
    fps: int,
    height: int,
    width: int,
    keyint: int,
    crf: int = DEFAULT_CRF,
) -> av.video.stream.VideoStream:
    """An H.264 stream with a keyframe every ``keyint`` frames exactly, no B-frames, one thread."""
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.thread_count = 1
    stream.codec_context.flags |= av.codec.context.Flags.bitexact
    stream.options = {
        "preset": "veryfast",
        "crf": str(crf),
        "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0:threads=1:sliced-threads=0",
    }
    return stream


def open_output(file: io.BytesIO | str, fmt: str = "mp4") -> av.container.OutputContainer:
    """An output container that writes no timestamps or version strings (same input, same bytes)."""
    out = av.open(file, "w", format=fmt)
    out.flags |= av.container.Flags.bitexact.value
    return out


def decode_rgb(data: bytes, *, max_frames: int | None = None, size: tuple[int, int] | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
    """Decode a single-stream clip to ``[T, H, W, 3]`` uint8 RGB with one thread.

    ``size=(H, W)`` resizes during colour conversion (bilinear); ``max_frames`` stops decoding early.
    ``out`` (``[>= T, H, W, 3]`` uint8) receives the frames without an extra copy; the filled part is
    returned.
    """
    with av.open(io.BytesIO(data), "r") as c:
        stream = c.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        kw: dict = {"format": "rgb24", "threads": 1}
        if size is not None:
            kw.update(height=int(size[0]), width=int(size[1]), interpolation="BILINEAR")
        frames, n = [], 0
        limit = max_frames if out is None else min(len(out), max_frames or len(out))
        for frame in c.decode(stream):
            arr = frame.to_ndarray(**kw)
            if out is None:
                frames.append(arr)
            elif arr.shape != out.shape[1:]:
                raise ValueError(f"clip frames are {arr.shape}, expected {out.shape[1:]}")
            else:
                out[n] = arr
            n += 1
            if limit is not None and n >= limit:
                break
    if n == 0:
        raise ValueError("clip decodes to no frames")
    return out[:n] if out is not None else np.stack(frames)


def write_pattern_video(path: str, *, frames: int, height: int, width: int, fps: int = 30, keyint: int = 30,
                        streams: int = 1) -> None:
    """Write an MP4 of ``streams`` H.264 streams showing a diagonal pattern that pans 4 px per frame
    (real motion for the encoder, like a camera file), with a keyframe every ``keyint`` frames. Used by
    the ingest benchmark and the fault tests to make long camera files without rendering a scene."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = ((xx * 3 + yy * 2) % 256).astype(np.uint8)
    chroma = np.full((height // 2, width), 128, np.uint8)
    with open_output(path) as out:
        sts = [add_h264_stream(out, fps=fps, height=height, width=width, keyint=keyint)
               for _ in range(streams)]
        for i in range(frames):
            fr = av.VideoFrame.from_ndarray(np.concatenate([np.roll(base, 4 * i, axis=1), chroma]),
                                            format="yuv420p")
            for st in sts:
                fr.pts = i
                out.mux(st.encode(fr))
        for st in sts:
            out.mux(st.encode(None))
