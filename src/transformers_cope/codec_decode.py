"""Decoding packet by packet with typed damage handling, decoder threading, frame types, raw motion vectors.

Why: damaged files must cost only their damaged part (`_decoded_frames` decodes per packet and warns once), the
decoder's threading decides whether exported vectors are deterministic, and `read_motion_vectors` is the raw,
untouched view of what FFmpeg exports.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator

import av
import numpy as np

from .codec_probe import _check_pixels, _describe, _ffmpeg_max_pixels, _Reader
from .codec_types import (
    _CLASSIC_MPEG_DECODERS,
    _PICT_TYPES,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    MV_COLUMNS,
    DecodeLimits,
    MotionVectorFrame,
    VideoInfo,
)
from .errors import CorruptVideoError, TruncatedVideoWarning, UnsupportedVideoError, VideoTooLargeError

_SINGLE_THREAD_MAX_PIXELS = 1280 * 720  # up to this size the classic MPEG decoders decode on one thread (codec_types)


def _warn_truncated(src, info: VideoInfo) -> bool:
    """Warn once, before decoding, when the packet scan found the file cut or damaged; True if it warned."""
    if info.truncated is None:
        return False
    warnings.warn(f"{_describe(src)}: truncated or damaged video: {info.truncated}; using the frames that decode",
                  TruncatedVideoWarning, stacklevel=3)
    return True


def _decoded_frames(src, packets: Iterator, stream, *, max_frames: int | None, max_pixels: int | None,
                    progress=None, warned: bool = False, skipping: bool = False,
                    keep: Callable[[av.Packet], bool] | None = None,
                    whole_file: bool = True) -> Iterator[av.VideoFrame]:
    """Decode packet by packet so that damage costs only the damaged part. `keep`: packets it rejects are read
    but not decoded (implies `skipping`: fewer frames than packets is expected then). whole_file=False: the
    packets start at a seek point, so the counts are not compared with the file's.

    A TruncatedVideoWarning is issued when demuxing fails midway, when a packet fails to decode (it is skipped),
    or, at the end, when fewer frames decoded than packets were read or the container's index promised more
    packets than the file holds (frame-threaded decoders report broken packets only that way). Zero decoded
    frames is a CorruptVideoError.
    """
    n = 0
    read = 0
    failed = 0
    first_error = None
    stopped = None
    size = None
    cc = stream.codec_context
    if max_pixels is not None and not cc.is_open:
        # FFmpeg's own cap: a decoder refuses a frame size above it before allocating (any codec, any size change)
        cc.options = {**cc.options, "max_pixels": _ffmpeg_max_pixels(max_pixels)}
    while True:
        try:
            pkt = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError as e:
            stopped = first_error = first_error or e
            break
        if pkt.size:
            read += 1
            if keep is not None and not keep(pkt):
                if progress is not None:
                    progress.update(1)
                continue
        try:
            frames = pkt.decode()
        except NotImplementedError as e:
            raise UnsupportedVideoError(src, f"no usable decoder for codec {stream.codec_context.name!r} ({e})") \
                from None
        except av.error.FFmpegError as e:
            if max_pixels is not None and int(cc.width or 0) * int(cc.height or 0) > max_pixels:
                raise VideoTooLargeError(src, f"frame {n}: the stream switches to {cc.width}x{cc.height} = "
                                              f"{cc.width * cc.height} pixels, above max_pixels={max_pixels} "
                                              f"(the decoder refused it)") from None
            failed += 1
            first_error = first_error or e
            continue
        for f in frames:
            n += 1
            if (f.width, f.height) != size:  # every size change, not only the first frame's
                size = (f.width, f.height)
                _check_pixels(src, f.width, f.height, max_pixels, f"frame {n - 1}: decoded")
            if max_frames is not None and n > max_frames:
                raise VideoTooLargeError(src, f"more than max_frames={max_frames} decoded frames")
            if progress is not None:
                progress.update(1)
            yield f
    if n == 0:
        why = f" ({first_error})" if first_error is not None else ""
        raise CorruptVideoError(src, f"no frame could be decoded from {read} packets{why}")
    promised = int(stream.frames or 0)
    problems = []
    if stopped is not None:
        problems.append(f"reading stopped with an error ({stopped})")
    if failed:
        problems.append(f"{failed} packet(s) failed to decode ({first_error})")
    if n < read and not skipping and keep is None and whole_file:
        problems.append(f"only {n} of {read} packets decoded to frames")
    if promised > read and stopped is None and whole_file:
        problems.append(f"the index lists {promised} frames but only {read} packets could be read")
    if problems and not warned:
        warnings.warn(f"{_describe(src)}: truncated or damaged video: {'; '.join(problems)}; using the {n} frames "
                      f"that decoded", TruncatedVideoWarning, stacklevel=3)


def _set_decoder_threads(stream, info: VideoInfo, thread_type: str) -> None:
    """`thread_type` for the source decoder, or one thread where threads do not pay (see _CLASSIC_MPEG_DECODERS).
    Decoded pixels and I/P motion vectors do not depend on the threading."""
    if info.codec in _CLASSIC_MPEG_DECODERS and info.width * info.height <= _SINGLE_THREAD_MAX_PIXELS:
        stream.codec_context.thread_count = 1
    else:
        stream.thread_type = thread_type


def _frame_type(frame) -> str:
    t = _PICT_TYPES.get(int(frame.pict_type))
    if t is None:
        t = "I" if frame.key_frame else "P"
    return t


def _mv_table(frame) -> np.ndarray | None:
    """The frame's motion vectors as FFmpeg's structured array (no per-vector Python objects), or None."""
    sd = frame.side_data.get("MOTION_VECTORS")
    if sd is None:
        return None
    return sd.to_ndarray()


def _timed(frames: Iterator[av.VideoFrame], fallback_fps: float,
           frame_pts: np.ndarray | None = None) -> Iterator[tuple[int, float, av.VideoFrame]]:
    """(index, time, frame) with times made monotonic (frames without timestamps get index / fps). With
    `frame_pts` (the packet scan's sorted timestamps) the index is the frame's display position even when the
    decoder skips frames; otherwise it counts decoded frames."""
    last = -math.inf
    last_index = -1
    for i, f in enumerate(frames):
        t = f.time
        t = i / fallback_fps if t is None else float(t)
        if t < last:
            t = last
        last = t
        if frame_pts is not None and len(frame_pts) and f.pts is not None:
            i = max(int(np.searchsorted(frame_pts, f.pts)), last_index + 1)
        last_index = i
        yield i, t, f


def read_motion_vectors(path, *, thread_type: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                        max_frames: int | None = DEFAULT_MAX_FRAMES, limits: DecodeLimits | None = None
                        ) -> Iterator[MotionVectorFrame]:
    """Yield every decoded frame's motion vectors in display order, exactly as FFmpeg exports them.

    Vectors come from `flags2=+export_mvs` via `side_data["MOTION_VECTORS"].to_ndarray()`, as int32 (N, 10) in
    the column order `MV_COLUMNS` (source, w, h, src_x, src_y, dst_x, dst_y, motion_x, motion_y, motion_scale; the
    always-zero `flags` field is dropped). Frames without vectors give (0, 10); codecs that export none (hevc, vp9,
    av1, ...) give (0, 10) for every frame.

    thread_type: None picks "AUTO" (frame threads, fastest) when a packet scan shows no reordering (no B-frames)
    and "SLICE" otherwise, because frame threading makes exported vectors differ from run to run on H.264
    streams with B-frames; I/P streams are bit-identical under every threading mode.
    limits: the whole decode budget and the network opt-in (`DecodeLimits`; default: its defaults with these caps).
    """
    if limits is not None:
        max_pixels, max_frames = limits.max_pixels, limits.max_frames
    with _Reader(path, max_pixels, max_frames, limits) as reader:
        info = reader.info
        warned = _warn_truncated(path, info)
        container, stream, packets = reader.open()
    if thread_type is None:
        thread_type = "AUTO" if info.reordered is False else "SLICE"
    try:
        stream.thread_type = thread_type
        stream.codec_context.options = {"flags2": "+export_mvs"}
        frames = _decoded_frames(path, packets, stream, max_frames=max_frames, max_pixels=max_pixels,
                                 warned=warned)
        for i, t, f in _timed(frames, info.fps):
            table = _mv_table(f)
            if table is None or len(table) == 0:
                mv = np.zeros((0, len(MV_COLUMNS)), np.int32)
            else:
                mv = np.empty((len(table), len(MV_COLUMNS)), np.int32)
                for j, name in enumerate(MV_COLUMNS):
                    mv[:, j] = table[name]
            yield MotionVectorFrame(frame_type=_frame_type(f), motion_vectors=mv, time=t, index=i)
    finally:
        container.close()
