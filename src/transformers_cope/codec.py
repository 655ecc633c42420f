"""Codec primitives for CoPE-VideoLM: RGB keyframes, fused motion vectors and residuals, read with PyAV.

Why this module exists: CoPE-VideoLM feeds the language model dense tokens for a few keyframes and a handful of
Δ-tokens for every other time step; the Δ-tokens are computed from what the video codec already knows about the
step (its motion vectors) plus what motion does not explain (a residual). FFmpeg exports motion vectors
(`flags2=+export_mvs`) but not residuals, and real files have B-frames, several reference frames and irregular GOPs.
This module turns any video into the paper's layout:

* `read_motion_vectors(path)`: the raw vectors per decoded frame, exactly as FFmpeg exports them.
* `transcode(path, ...)`: re-encode to an I/P-only stream with a fixed GOP (the paper: 30 fps, GOP 240).
* `extract_primitives(path, ...)`: steps sampled at `fps`, grouped into GOPs of `gop_size` steps with
  `keyframes_per_gop` RGB keyframes ("I") and Δ steps ("P"). For every Δ step: the motion of all codec frames
  between the previous step and this one, fused on a block grid, as content displacement in pixels; an intra mask;
  and the residual `frame_t - warp(frame_ref, fused field)` at reduced resolution.

One machinery serves both modes: a stream of decoded I/P frames with motion vectors plus a step schedule.
"transcode" makes that stream by re-encoding the sampled source in memory (mpeg4 or libx264, one reference frame,
no B-frames, a codec I-frame exactly at every "I" step); "native" uses the file's own P-frames when it already is
such a stream. Frames are streamed: memory holds the current frame, the reference step and the outputs only.

Conventions: x = column (right +), y = row (down +). FFmpeg's `motion_x / motion_scale` points from a block of the
current frame to its source in the reference (content moving +v gives -v); the fused field keeps that direction
internally and the returned `motion_vectors` are its negation, the content displacement from the reference step.
Rotation metadata (`frame.rotation`) is ignored: pixels and vectors stay in coded orientation; sample aspect ratio
is ignored too (frames are scaled in coded pixels).
"""

from __future__ import annotations

import errno
import io
import itertools
import math
import os
import queue
import threading
import warnings
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from .errors import (
    CorruptVideoError,
    NotAVideoError,
    NoVideoStreamError,
    TruncatedVideoWarning,
    UnsupportedVideoError,
    VideoDecodeError,
    VideoTooLargeError,
)

__all__ = [
    "MV_COLUMNS",
    "MV_EXPORTING_CODECS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_FRAMES",
    "MotionVectorFrame",
    "CodecPrimitives",
    "VideoInfo",
    "probe_video",
    "read_motion_vectors",
    "transcode",
    "extract_primitives",
    "step_frame_types",
]

MV_COLUMNS = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale")
# Decoders whose frames carry MOTION_VECTORS side data (measured with PyAV 18; hevc, vp8, vp9, av1 export none).
MV_EXPORTING_CODECS = frozenset({"h264", "mpeg4", "mpeg2video", "h263"})
# The MPEG-1/2, MPEG-4 Part 2 and H.263-family decoders: one reference frame and a cheap decode. Two things follow.
# Threads gain little up to 720p on two cores: one thread decoded 405p MPEG-2 in 171-211 ms (slice threads: 153-254
# ms across runs) and 720p MPEG-4 Part 2 in 396 ms (frame threads: 383 ms on 1.5 cores), so they decode on one thread
# and leave the other core to the codec worker (_set_decoder_threads); at 1080p threads pay (MPEG-4 Part 2: 903 vs
# 1203 ms), and H.264 gains from them at every size. And on their I/P streams a keyframe refreshes the whole picture
# and a P-frame predicts only from the frame before it, so frames after a GOP's last sampled one feed nothing
# (_gop_tail_filter); H.264 may predict from older references.
_CLASSIC_MPEG_DECODERS = frozenset({"mpeg1video", "mpeg2video", "mpeg4", "h263", "h263p", "msmpeg4v1", "msmpeg4v2",
                                    "msmpeg4v3", "wmv1", "wmv2", "flv1"})
_SINGLE_THREAD_MAX_PIXELS = 1280 * 720
DEFAULT_MAX_PIXELS = 4096 * 4096  # per frame; 4K/DCI 4K pass, 8K must be allowed explicitly
DEFAULT_MAX_FRAMES = 500_000  # decoded frames: ~4.6 h at 30 fps
_CELL = 8  # FFmpeg exports 16x16, 16x8, 8x16 and 8x8 blocks: an 8-px grid is the finest that carries information
_PICT_TYPES = {1: "I", 2: "P", 3: "B", 4: "P", 5: "I", 6: "P", 7: "B"}  # AVPictureType: S->P, SI->I, SP->P, BI->B
_ISO_BMFF_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"styp")


# ---------------------------------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class MotionVectorFrame:
    """One decoded frame's motion vectors, untouched.

    frame_type: "I", "P" or "B". motion_vectors: int32 (N, 10), columns `MV_COLUMNS`, rows in FFmpeg's order,
    (0, 10) when the frame carries none (I-frames, all-intra frames). time: presentation time in seconds.
    index: position of the frame in display order (0-based).
    """

    frame_type: str
    motion_vectors: np.ndarray
    time: float
    index: int


@dataclass
class CodecPrimitives:
    """Codec primitives of one video at the step layout (see `extract_primitives`).

    frame_types: one letter per step, "I" (RGB keyframe) or "P" (Δ step), e.g. "IPPPPPPPIPPPPPPP".
    keyframes: uint8 (n_I, Hk, Wk, 3) RGB at `frame_size`, or at extract_primitives' `keyframe_size` if given.
    motion_vectors: float32 (n_P, 2, Hg, Wg) content displacement in pixels of the H x W frames from the reference
        step (the previous step) to this step, fused over every codec frame in between; ch0 x (right +), ch1 y
        (down +); Hg = H // mv_block.
    intra_masks: bool (n_P, Hg, Wg), True where the cell has no motion chain back to the reference step.
    residuals: float32 (n_P, 3, Hr, Wr) RGB `frame_t - warp(frame_ref, fused field)`, 0..255 units, signed.
    timestamps: float64 (n_steps,) seconds; frame_indices: int64 (n_steps,) decoded source frame indices.
    frame_size: (H, W). frames: uint8 (n_steps, H, W, 3) or None. mode: "transcode" or "native".
    source_fps, duration: of the source, from its timestamps.
    """

    frame_types: str
    keyframes: np.ndarray
    motion_vectors: np.ndarray
    intra_masks: np.ndarray
    residuals: np.ndarray
    timestamps: np.ndarray
    frame_indices: np.ndarray
    frame_size: tuple[int, int]
    frames: np.ndarray | None
    mode: str
    source_fps: float
    duration: float

    @property
    def num_steps(self) -> int:
        return len(self.frame_types)


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its first video stream, plus a packet scan (no decoding).

    num_packets: video packets (≈ frames). first_time/last_time: smallest/largest presentation time in seconds
    (None when the packets carry no timestamps). duration: last_time - first_time + one frame. keyframe_times:
    presentation times of key packets. reordered: True when packets come out of presentation order (B-frames),
    None when unknown. ref_frames: H.264 max_num_ref_frames from the SPS (None if not H.264 or not found).
    truncated: why the file looks cut or damaged (reading failed, or the index promises more frames than the
    file holds), else None. frame_pts: the packets' presentation timestamps sorted (display order, stream
    time base), which turn a decoded frame's pts into its index even when frames are skipped.
    """

    codec: str
    width: int
    height: int
    fps: float
    num_packets: int
    first_time: float | None
    last_time: float | None
    duration: float
    keyframe_times: np.ndarray
    reordered: bool | None
    ref_frames: int | None
    pix_fmt: str | None
    truncated: str | None = None
    frame_pts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    first_packet: tuple | None = dataclasses.field(default=None, repr=False, compare=False)
    time_base: float = dataclasses.field(default=0.0, repr=False, compare=False)  # seconds per frame_pts tick


# ------------------------------------------------------------------------------------------------ opening, probing


def _describe(src) -> str:
    return VideoDecodeError(src, "").path


def _declared_y4m_size(head: bytes) -> tuple[int, int] | None:
    """(W, H) from a YUV4MPEG2 header line: FFmpeg refuses to open frames above its own size limit, so the
    pixel cap is checked from the header text directly."""
    if not head.startswith(b"YUV4MPEG2"):
        return None
    fields = head.split(b"\n", 1)[0].split()
    try:
        w = next(int(f[1:]) for f in fields if f[:1] == b"W")
        h = next(int(f[1:]) for f in fields if f[:1] == b"H")
    except (StopIteration, ValueError):
        return None
    return w, h


def _open(src, max_pixels: int | None = None):
    """Open `src` (path, or bytes) and return (container, stream), mapping FFmpeg's failures to typed errors.
    The declared frame size is checked against `max_pixels` before anything is decoded."""
    head = b""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise NotAVideoError(src, "input is empty (0 bytes)")
        head = data[:256]
        target = io.BytesIO(data)
    elif isinstance(src, (str, os.PathLike)):
        target = os.fspath(src)
        if not os.path.exists(target):
            raise FileNotFoundError(errno.ENOENT, "No such file", target)
        if os.path.isdir(target):
            raise NotAVideoError(src, "is a directory, not a video file")
        if os.path.getsize(target) == 0:
            raise NotAVideoError(src, "file is empty (0 bytes)")
        with open(target, "rb") as fh:
            head = fh.read(256)
    else:
        raise TypeError(f"expected a path or bytes, got {type(src).__name__}")
    try:
        container = av.open(target, mode="r", metadata_errors="replace")
    except (av.error.FileNotFoundError, av.error.PermissionError, av.error.IsADirectoryError):
        raise
    except av.error.FFmpegError as e:
        declared = _declared_y4m_size(head)
        if declared is not None:
            _check_pixels(src, *declared, max_pixels, "declared")
        if isinstance(e, av.error.InvalidDataError):
            if head[4:8] in _ISO_BMFF_BOXES:
                raise CorruptVideoError(src, f"MP4/MOV file that FFmpeg cannot open, probably cut short before "
                                             f"its index (moov) was written ({e})") from None
            raise NotAVideoError(src, f"not a recognised video or media file ({e})") from None
        raise CorruptVideoError(src, f"FFmpeg cannot open it ({e})") from None
    except UnicodeDecodeError as e:
        raise CorruptVideoError(src, f"unreadable container metadata ({e})") from None
    try:
        video = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            reason = "no video stream" + (" (only cover art)" if container.streams.video else "")
            raise NoVideoStreamError(src, f"{reason}; streams present: {', '.join(kinds)}")
        stream = video[0]
        if stream.codec_context is None:
            raise UnsupportedVideoError(src, "no decoder for its video codec in this PyAV/FFmpeg build")
        cc = stream.codec_context
        _check_pixels(src, int(cc.width or stream.width or 0), int(cc.height or stream.height or 0), max_pixels,
                      "declared")
    except BaseException:
        container.close()
        raise
    return container, stream


def _check_pixels(src, width: int, height: int, max_pixels: int | None, where: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise VideoTooLargeError(src, f"{where} frame size {width}x{height} = {width * height} pixels exceeds "
                                      f"max_pixels={max_pixels}")


def _rbsp(nal: bytes) -> bytes:
    """Remove H.264 emulation-prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    def __init__(self, data: bytes):
        self.v, self.n, self.p = int.from_bytes(data, "big"), len(data) * 8, 0

    def u(self, k: int) -> int:
        if self.p + k > self.n:
            raise ValueError("end of data")
        self.p += k
        return (self.v >> (self.n - self.p)) & ((1 << k) - 1)

    def ue(self) -> int:
        z = 0
        while self.u(1) == 0:
            z += 1
            if z > 31:
                raise ValueError("bad exp-golomb code")
        return (1 << z) - 1 + self.u(z)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def _h264_sps_ref_frames(sps: bytes) -> int | None:
    """max_num_ref_frames of an H.264 SPS NAL unit (header byte included); None if it cannot be parsed.

    Why: the exported vectors do not say which reference they use, so a stream's own P-frames can only be fused
    as "previous frame" motion when the encoder was limited to one reference frame."""
    try:
        b = _Bits(_rbsp(sps[1:]))
        profile = b.u(8)
        b.u(16)  # constraint flags, level
        b.ue()  # sps id
        if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            chroma = b.ue()
            if chroma == 3:
                b.u(1)
            b.ue(), b.ue(), b.u(1)
            if b.u(1):  # scaling matrices
                for i in range(8 if chroma != 3 else 12):
                    if b.u(1):
                        last = nxt = 8
                        for _ in range(16 if i < 6 else 64):
                            if nxt:
                                nxt = (last + b.se() + 256) % 256
                            last = nxt or last
        b.ue()  # log2_max_frame_num
        poc = b.ue()
        if poc == 0:
            b.ue()
        elif poc == 1:
            b.u(1), b.se(), b.se()
            for _ in range(b.ue()):
                b.se()
        return b.ue()
    except ValueError:
        return None


def _h264_ref_frames(extradata: bytes | None, first_packet: bytes | None) -> int | None:
    """Find the SPS in avcC extradata or in an Annex-B packet and return its max_num_ref_frames."""
    if extradata and extradata[0] == 1 and len(extradata) > 8:  # avcC
        n_sps = extradata[5] & 0x1F
        if n_sps:
            size = int.from_bytes(extradata[6:8], "big")
            return _h264_sps_ref_frames(extradata[8:8 + size])
    for data in (extradata, first_packet):
        if not data:
            continue
        for part in data.split(b"\x00\x00\x01")[1:]:
            if part and part[0] & 0x1F == 7:
                return _h264_sps_ref_frames(part.rstrip(b"\x00"))
        if data is first_packet and len(data) > 5:  # AVCC packet: 4-byte length prefixes
            pos = 0
            while pos + 5 <= len(data):
                size = int.from_bytes(data[pos:pos + 4], "big")
                if data[pos + 4] & 0x1F == 7:
                    return _h264_sps_ref_frames(data[pos + 4:pos + 4 + size])
                pos += 4 + max(size, 1)
    return None


def _scan(src, container, stream, max_frames: int | None) -> VideoInfo:
    """Demux every video packet once (no decoding): count, timestamps, keyframes, reordering."""
    tb = stream.time_base or Fraction(1, 1)
    pts_list, key_pts = [], []
    n = 0
    reordered = False
    unknown = False
    max_seen = None
    first_data = first_packet = None
    try:
        for pkt in container.demux(stream):
            if pkt.size == 0:
                continue
            n += 1
            if max_frames is not None and n > max_frames:
                raise VideoTooLargeError(src, f"more than max_frames={max_frames} frames")
            if n == 1:
                first_packet = _packet_signature(pkt)
            if first_data is None and stream.codec_context.name == "h264":
                first_data = bytes(pkt)
            pts = pkt.pts
            if pts is None:
                unknown = True
                continue
            pts_list.append(pts)
            if pkt.is_keyframe:
                key_pts.append(pts)
            if max_seen is not None and pts < max_seen:
                reordered = True
            max_seen = pts if max_seen is None else max(max_seen, pts)
    except av.error.FFmpegError as e:
        truncated = f"reading stopped after {n} packets ({e})"
    else:
        promised = int(stream.frames or 0)
        truncated = None
        if promised > n:
            truncated = f"the index lists {promised} frames but only {n} packets could be read"
    cc = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    frame_pts = np.sort(np.asarray(pts_list, np.int64))
    if pts_list:
        times = frame_pts.astype(np.float64) * float(tb)
        first, last = float(times[0]), float(times[-1])
        if fps <= 0 and len(times) > 1:
            fps = (len(times) - 1) / max(last - first, 1e-9)
    else:
        first = last = None
    fps = fps if fps > 0 else 25.0
    if first is not None:
        duration = last - first + 1.0 / fps
    else:
        duration = n / fps
    ref_frames = None
    if cc.name == "h264":
        ref_frames = _h264_ref_frames(bytes(cc.extradata) if cc.extradata else None, first_data)
    return VideoInfo(
        codec=cc.name, width=int(cc.width or stream.width or 0), height=int(cc.height or stream.height or 0),
        fps=fps, num_packets=n, first_time=first, last_time=last, duration=float(duration),
        keyframe_times=np.sort(np.asarray(key_pts, np.float64)) * float(tb),
        reordered=None if (unknown and not pts_list) else reordered, ref_frames=ref_frames,
        pix_fmt=cc.pix_fmt, truncated=truncated, frame_pts=frame_pts, first_packet=first_packet, time_base=float(tb))


def probe_video(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                max_frames: int | None = DEFAULT_MAX_FRAMES) -> VideoInfo:
    """Open `path`, check the caps from the stream header, scan its packets (no decoding) and describe it."""
    container, stream = _open(path, max_pixels)
    try:
        return _scan(path, container, stream, max_frames)
    finally:
        container.close()


def _packet_signature(pkt) -> tuple:
    return pkt.pts, pkt.dts, pkt.size, bytes(pkt)[:64]


class _Reader:
    """Opens the file once for the packet scan and the decode.

    Why: av.open probes the streams (FFmpeg decodes frames to find their parameters), which took 15-35 ms on the
    H.264 and MPEG-2 media files, a tenth of the whole extraction on short clips. After the scan the container is
    rewound and handed out once, but only if its first packet is the scan's first packet; otherwise, and for
    every later decode (native mode falling back to transcode), the file is opened again. Use it as a context
    manager: a container never handed out is closed on exit."""

    def __init__(self, src, max_pixels: int | None, max_frames: int | None):
        self.src = src
        container, stream = _open(src, max_pixels)
        try:
            self.info = _scan(src, container, stream, max_frames)
        except BaseException:
            container.close()
            raise
        self._kept = self._rewound(container, stream)

    def _rewound(self, container, stream):
        try:
            container.seek(0)
            demux = container.demux(stream)
            first = next(pkt for pkt in demux if pkt.size)
            if self.info.first_packet is not None and _packet_signature(first) == self.info.first_packet:
                return container, stream, itertools.chain([first], demux)
        except (av.error.FFmpegError, StopIteration, ValueError):
            pass
        container.close()
        return None

    def open(self):
        """(container, stream, packets): the rewound container the first time, a fresh one after that."""
        if self._kept is not None:
            kept, self._kept = self._kept, None
            return kept
        container, stream = _open(self.src)
        return container, stream, container.demux(stream)

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc) -> None:
        if self._kept is not None:
            self._kept[0].close()
            self._kept = None


# -------------------------------------------------------------------------------------------------------- decoding


def _warn_truncated(src, info: VideoInfo) -> bool:
    """Warn once, before decoding, when the packet scan found the file cut or damaged; True if it warned."""
    if info.truncated is None:
        return False
    warnings.warn(f"{_describe(src)}: truncated or damaged video: {info.truncated}; using the frames that decode",
                  TruncatedVideoWarning, stacklevel=3)
    return True


def _decoded_frames(src, packets: Iterator, stream, *, max_frames: int | None, max_pixels: int | None,
                    progress=None, warned: bool = False, skipping: bool = False,
                    keep: Callable[[av.Packet], bool] | None = None) -> Iterator[av.VideoFrame]:
    """Decode packet by packet so that damage costs only the damaged part. `keep`: packets it rejects are read
    but not decoded (implies `skipping`: fewer frames than packets is expected then).

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
            failed += 1
            first_error = first_error or e
            continue
        for f in frames:
            n += 1
            if n == 1:
                _check_pixels(src, f.width, f.height, max_pixels, "decoded")
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
    if n < read and not skipping and keep is None:
        problems.append(f"only {n} of {read} packets decoded to frames")
    if promised > read and stopped is None:
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
                        max_frames: int | None = DEFAULT_MAX_FRAMES) -> Iterator[MotionVectorFrame]:
    """Yield every decoded frame's motion vectors in display order, exactly as FFmpeg exports them.

    Vectors come from `flags2=+export_mvs` via `side_data["MOTION_VECTORS"].to_ndarray()`, as int32 (N, 10) in
    the column order `MV_COLUMNS` (source, w, h, src_x, src_y, dst_x, dst_y, motion_x, motion_y, motion_scale; the
    always-zero `flags` field is dropped). Frames without vectors give (0, 10); codecs that export none (hevc, vp9,
    av1, ...) give (0, 10) for every frame.

    thread_type: None picks "AUTO" (frame threads, fastest) when a packet scan shows no reordering (no B-frames)
    and "SLICE" otherwise, because frame threading makes exported vectors differ from run to run on H.264
    streams with B-frames; I/P streams are bit-identical under every threading mode.
    """
    with _Reader(path, max_pixels, max_frames) as reader:
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


# ------------------------------------------------------------------------------------------------------ scheduling


def step_frame_types(num_steps: int, gop_size: int = 8, keyframes_per_gop: int = 1) -> str:
    """The "I"/"P" letter of each step: GOPs of `gop_size` steps, `keyframes_per_gop` evenly spaced "I" per GOP.

    k=1 -> step 0 of each GOP; k=2 -> 0, 4 of 8; k=4 -> 0, 2, 4, 6; k=gop_size -> every step (dense baseline)."""
    if gop_size < 1 or not 1 <= keyframes_per_gop <= gop_size:
        raise ValueError(f"need gop_size >= 1 and 1 <= keyframes_per_gop <= gop_size, got gop_size={gop_size}, "
                         f"keyframes_per_gop={keyframes_per_gop}")
    key = {(i * gop_size) // keyframes_per_gop for i in range(keyframes_per_gop)}
    return "".join("I" if s % gop_size in key else "P" for s in range(num_steps))


def _step_times(first: float, last: float, fps: float, max_steps: int | None) -> np.ndarray:
    """Step times on the `fps` grid from the first frame to the last; uniformly subsampled to `max_steps`
    (VideoLLaMA3's rule: linspace over the grid, rounded)."""
    n = max(_grid_steps(first, last, fps), 1)
    if max_steps is not None and n > max_steps:  # index the grid without building it (damaged timestamps can
        idx = np.round(np.linspace(0, n - 1, max_steps)).astype(np.int64)  # declare years of video)
        return first + idx.astype(np.float64) / fps
    return first + np.arange(n, dtype=np.float64) / fps


def _grid_steps(first: float, last: float, fps: float) -> int:
    return int(math.floor((last - first) * fps + 1e-6)) + 1


class _Sampler:
    """Assigns each target time, in order, to the decoded frame nearest to it (ties go to the earlier frame).

    Streaming with one frame of look-ahead: a frame's targets are known once the next frame's time is."""

    def __init__(self, times: np.ndarray):
        self.times = np.asarray(times, np.float64)
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.times)

    def take(self, upto: float) -> range:
        end = int(np.searchsorted(self.times, upto, side="right"))
        end = max(end, self.pos)
        r = range(self.pos, end)
        self.pos = end
        return r


def _sampled(timed: Iterator[tuple[int, float, av.VideoFrame]], sampler: _Sampler, fps: float):
    """Yield (index, time, frame, targets) for every frame; stops early once every target has a frame."""
    prev = None
    for item in timed:
        if prev is not None:
            yield (*prev, sampler.take(0.5 * (prev[1] + item[1])))
            if sampler.done:
                return
        prev = item
    if prev is not None:
        yield (*prev, sampler.take(prev[1] + 1.0 / fps))


# --------------------------------------------------------------------------------------------------------- sizing


def _round16(x: float) -> int:
    return max(16, int(math.floor(x / 16.0 + 0.5)) * 16)


def _resolve_size(size, height: int, width: int, even: bool) -> tuple[int, int]:
    """int: short side (aspect kept, both sides multiples of 16); (H, W): exact; None: the source size.
    even=True (encoding yuv420p with libx264) rounds odd sides down to even."""
    if size is None:
        h, w = height, width
    elif isinstance(size, (int, np.integer)):
        if size < 16:
            raise ValueError(f"size must be >= 16, got {size}")
        scale = float(size) / min(height, width)
        h, w = _round16(height * scale), _round16(width * scale)
    else:
        h, w = (int(v) for v in size)
        if h < 2 or w < 2:
            raise ValueError(f"size must be at least 2x2, got {size}")
    if even:
        h, w = max(2, h - h % 2), max(2, w - w % 2)
    return int(h), int(w)


# ---------------------------------------------------------------------------------------------- motion and fusion


def _paint(table: np.ndarray | None, gh: int, gw: int, cell: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """List-0 vectors of one frame painted on a grid of `cell`-px cells (8, 16, 32): field (2, gh, gw) float32 in
    pixels, current -> reference (FFmpeg's direction), and a mask (False = intra / no vector). Fully vectorised.

    cell 8: a block covers at most 2x2 cells (FFmpeg exports 16x16, 16x8, 8x16 and 8x8), so four masked
    scatters paint everything. cell 16 or 32: every block lies inside one macroblock, hence inside one cell; a
    cell gets the area-weighted mean of its blocks' vectors."""
    field = np.zeros((2, gh, gw), np.float32)
    mask = np.zeros((gh, gw), bool)
    if table is None or len(table) == 0:
        return field, mask
    src = table["source"]
    if (src >= 0).any():
        table = table[src < 0]
        if len(table) == 0:
            return field, mask
    w = table["w"].astype(np.int32)
    h = table["h"].astype(np.int32)
    scale = table["motion_scale"].astype(np.float32)
    scale[scale == 0] = 1.0
    vx = table["motion_x"] / scale
    vy = table["motion_y"] / scale
    if cell >= 16:  # every block lies inside one macroblock, hence inside one cell
        cx = table["dst_x"].astype(np.int32) // cell
        cy = table["dst_y"].astype(np.int32) // cell
        sel = (cx >= 0) & (cy >= 0) & (cx < gw) & (cy < gh)
        i = (cy * gw + cx)[sel]
        area = (w * h)[sel].astype(np.float64)
        n = gh * gw
        tot = np.bincount(i, area, n)
        hit = tot > 0
        tot[~hit] = 1.0
        field[0].reshape(-1)[:] = np.bincount(i, area * vx[sel], n) / tot
        field[1].reshape(-1)[:] = np.bincount(i, area * vy[sel], n) / tot
        mask.reshape(-1)[:] = hit
        return field, mask
    # cell 8: each block covers its top-left cell and, when wider / taller than a cell, the cells to the right /
    # below. One scatter over (offset, block) pairs writes in the same order as four passes, one per offset.
    x0 = (table["dst_x"] - (w >> 1)) // cell
    y0 = (table["dst_y"] - (h >> 1)) // cell
    cx = x0[None, :] + _OFFSETS_X
    cy = y0[None, :] + _OFFSETS_Y
    sel = (cx >= 0) & (cy >= 0) & (cx < gw) & (cy < gh)
    sel[1::2] &= w > cell
    sel[2:] &= h > cell
    i = (cy * gw + cx)[sel]
    field[0].reshape(-1)[i] = np.broadcast_to(vx, sel.shape)[sel]
    field[1].reshape(-1)[i] = np.broadcast_to(vy, sel.shape)[sel]
    mask.reshape(-1)[i] = True
    return field, mask


_OFFSETS_X = np.array([[0], [1], [0], [1]])  # the four cells a 16x16 block covers on the 8-px grid
_OFFSETS_Y = np.array([[0], [0], [1], [1]])


def _bilinear(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample a (C, h, w) array at float positions (x, y) in index units (cell centres at integers), clamping to
    the border. numpy on purpose: these grids are small, and torch's intra-op threads fight FFmpeg's decoder
    threads on few cores (a 3x3 conv measured 15 ms instead of 0.1 ms inside the decode loop)."""
    c, h, w = a.shape
    x = np.minimum(np.maximum(x, 0.0), w - 1.0)
    y = np.minimum(np.maximum(y, 0.0), h - 1.0)
    x0 = x.astype(np.int32)
    y0 = y.astype(np.int32)
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    i00 = y0 * w + x0
    i01 = i00 + (x0 < w - 1)
    dy = np.where(y0 < h - 1, w, 0)
    v00, v01, v10, v11 = np.take(a.reshape(c, h * w), np.stack([i00, i01, i00 + dy, i01 + dy]), axis=1).swapaxes(0, 1)
    top = v00 + (v01 - v00) * fx
    return top + ((v10 + (v11 - v10) * fx) - top) * fy


def _box3(a: np.ndarray) -> np.ndarray:
    """Sum over each cell's 3x3 neighbourhood (zero outside), for (C, h, w)."""
    r = a.copy()
    r[:, 1:] += a[:, :-1]
    r[:, :-1] += a[:, 1:]
    out = r.copy()
    out[:, :, 1:] += r[:, :, :-1]
    out[:, :, :-1] += r[:, :, 1:]
    return out


def _fill_intra(field: np.ndarray, mask: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Give intra cells the mean vector of their valid 3x3 neighbours (grown `iterations` rings), and the
    frame's median vector beyond that: a best guess that keeps chains through intra blocks plausible (content
    entering at a panning border continues the pan). The cells stay flagged as intra."""
    if mask.all() or not mask.any():
        return field
    w = mask.astype(np.float32)[None]
    f = field * w
    for _ in range(iterations):
        s = _box3(np.concatenate([f, w], 0))
        den = s[2:3]
        grow = (den > 0) & (w == 0)
        if not grow.any():
            break
        f = np.where(grow, s[:2] / np.maximum(den, 1e-6), f).astype(np.float32)
        w = np.where(grow, np.float32(1.0), w)
    out = f / np.maximum(w, 1e-6)
    if (w == 0).any():
        med = np.median(field[:, mask], axis=1).astype(np.float32)
        out = np.where(w > 0, out, med[:, None, None])
    return out.astype(np.float32)


class _Fuser:
    """CoViAR-style accumulation of per-frame fields on the 8-px grid, reset at every step.

    acc_t(x) = d_t(x) + acc_{t-1}(x + d_t(x)) (bilinear sampling, border clamp), so acc points from a cell of the
    current frame to its source in the reference step; validity multiplies the frame's inter mask with the
    sampled validity of the source and requires the source to lie inside the reference frame, so a cell is valid
    only if its whole chain is inter-coded and leads to content the reference step shows."""

    def __init__(self, height: int, width: int, cell: int = _CELL):
        """Grid of `cell`-px cells over a codec frame of height x width pixels."""
        self.cell = cell
        self.hw = (height, width)
        self.last_field = None
        gh, gw = -(-height // cell), -(-width // cell)
        self.gh, self.gw = gh, gw
        self.cy, self.cx = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32),
                                       indexing="ij")
        # the reference frame in the grid's index units (cell centres at integers): a source outside it is lost
        self.lo = -0.5
        self.hi_x, self.hi_y = width / cell - 0.5, height / cell - 0.5
        self.reset()

    def reset(self) -> None:
        self.acc = np.zeros((2, self.gh, self.gw), np.float32)
        self.valid = np.ones((self.gh, self.gw), np.float32)
        self.frames = 0
        self.broken = False

    def cut(self) -> None:
        """An I-frame inside the window: nothing links this step to its reference any more."""
        self.acc[:] = 0
        self.valid[:] = 0
        self.broken = True

    def add_vectors(self, table: np.ndarray | None) -> None:
        self.add(*_paint(table, self.gh, self.gw, self.cell))

    def add(self, field: np.ndarray, mask: np.ndarray) -> None:
        if mask.any():
            d = _fill_intra(field, mask)
            self.last_field = d
        else:  # an all-intra P-frame: assume the motion of the last frame that had vectors (still flagged intra)
            d = self.last_field if self.last_field is not None else field
        mf = mask.astype(np.float32)
        if self.frames == 0:
            acc, valid = d, mf
        else:
            x = self.cx + d[0] * (1.0 / self.cell)
            y = self.cy + d[1] * (1.0 / self.cell)
            if self.valid.min() >= 1.0:
                acc = d + _bilinear(self.acc, x, y)
                valid = mf
            else:
                # sample acc weighted by validity: where valid neighbours exist only they count, so a chain is not
                # pulled towards the guessed vectors of intra cells next to it
                s = _bilinear(np.concatenate([self.acc * self.valid, self.valid[None]], 0), x, y)
                w = s[2]
                ok = w > 1e-3
                prev = s[:2] / np.where(ok, w, 1.0)
                if not ok.all():  # no valid neighbour at all: the plain (guessed) chain
                    prev = np.where(ok, prev, _bilinear(self.acc, x, y))
                acc = d + prev
                valid = mf * w
        # a chain whose source lies outside the reference frame links to content the reference does not show
        sx = self.cx + acc[0] * (1.0 / self.cell)
        sy = self.cy + acc[1] * (1.0 / self.cell)
        outside = (sx < self.lo) | (sy < self.lo) | (sx > self.hi_x) | (sy > self.hi_y)
        if outside.any():
            valid = np.where(outside, 0.0, valid)
        self.acc = acc.astype(np.float32, copy=False)
        self.valid = valid.astype(np.float32, copy=False)
        self.frames += 1


def _area_pool(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Adaptive average pooling of (C, h, w) to (C, out_h, out_w) (integral image; bins like torch's)."""
    c, h, w = a.shape
    if h % out_h == 0 and w % out_w == 0:
        return a.reshape(c, out_h, h // out_h, out_w, w // out_w).mean(axis=(2, 4), dtype=np.float64) \
            .astype(np.float32)
    s = np.zeros((c, h + 1, w + 1), np.float64)
    s[:, 1:, 1:] = a.cumsum(1, dtype=np.float64).cumsum(2)
    y0 = (np.arange(out_h) * h) // out_h
    y1 = -((-(np.arange(out_h) + 1) * h) // out_h)
    x0 = (np.arange(out_w) * w) // out_w
    x1 = -((-(np.arange(out_w) + 1) * w) // out_w)
    tot = s[:, y1][:, :, x1] - s[:, y0][:, :, x1] - s[:, y1][:, :, x0] + s[:, y0][:, :, x0]
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return (tot / area).astype(np.float32)


def _block_mean_uint8(rgb: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Mean over kh x kw blocks of an (H, W, 3) uint8 frame -> (3, H/kh, W/kw) float32, by integer sums of strided
    slices: twice as fast as _area_pool on the float frame (0.41 vs 0.88 ms at 224 -> 56 px) and equal to it bit
    for bit (integer sums are exact in any order; both divide the same sum by n in float64 and round once)."""
    h, w, c = rgb.shape
    x = rgb.reshape(h, w // kw, kw * c).astype(np.uint16)  # kh * kw <= 256 blocks of bytes fit
    cols = x[:, :, :c]
    for j in range(1, kw):
        cols = cols + x[:, :, j * c:(j + 1) * c]
    rows = cols.reshape(h // kh, kh, w // kw, c)
    total = rows[:, 0]
    for i in range(1, kh):
        total = total + rows[:, i]
    return (total.transpose(2, 0, 1).astype(np.float64) / (kh * kw)).astype(np.float32, order="C")


def _grid_to_output(acc: np.ndarray, valid: np.ndarray, cell: int, codec_hw: tuple[int, int],
                    out_hw: tuple[int, int], mv_block: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool a fused cell-grid field of a codec frame (Hc, Wc) onto the mv_block grid of the output frame (H, W):
    content displacement in output pixels (2, Hg, Wg) float32 and the intra mask (Hg, Wg)."""
    (hc, wc), (h, w) = codec_hw, out_hw
    hg, wg = h // mv_block, w // mv_block
    nh = min(acc.shape[1], max(1, int(round(hg * mv_block * hc / h / cell))))
    nw = min(acc.shape[2], max(1, int(round(wg * mv_block * wc / w / cell))))
    pooled = _area_pool(np.concatenate([acc[:, :nh, :nw], valid[None, :nh, :nw]], 0), hg, wg)
    motion = pooled[:2] * np.array([-w / wc, -h / hc], np.float32)[:, None, None]  # cur->ref -> content motion
    return motion.astype(np.float32), pooled[2] < 0.5


# -------------------------------------------------------------------------------------------------------- residual


class _Residual:
    """frame_t - warp(frame_ref, fused field) at (Hr, Wr): the reference is sampled where each pixel's content
    came from (border clamp), with the vector of the fused-grid cell the pixel lies in. Frames are area-downscaled
    first: warping at full size and pooling afterwards measured the same residual energy on real footage for 4x
    the cost. Intra cells keep their best-guess (filled) motion; the mask tells the model which cells those are."""

    def __init__(self, out_hw: tuple[int, int], res_hw: tuple[int, int], mode: str):
        self.h, self.w = out_hw
        self.hr, self.wr = res_hw
        self.mode = mode
        self.py, self.px = np.meshgrid(np.arange(self.hr, dtype=np.float32) + 0.5,
                                       np.arange(self.wr, dtype=np.float32) + 0.5, indexing="ij")

    def small(self, rgb: np.ndarray) -> np.ndarray:
        """(3, Hr, Wr) float32 area-downscaled copy of an RGB (H, W, 3) uint8 frame."""
        if (self.hr, self.wr) == (self.h, self.w):
            return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
        kh, kw = self.h // self.hr, self.w // self.wr
        if self.h % self.hr == 0 and self.w % self.wr == 0 and kh <= 8 and kw <= 8:  # larger blocks: fewer loops there
            return _block_mean_uint8(rgb, kh, kw)
        return _area_pool(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32), self.hr, self.wr)

    def __call__(self, cur: np.ndarray, ref: np.ndarray, acc: np.ndarray, cell: int,
                 codec_hw: tuple[int, int]) -> np.ndarray:
        hc, wc = codec_hw
        # each residual pixel takes the vector of the grid cell it lies in (block-constant like the codec's own
        # prediction; interpolating between cells smears an object's motion over its background)
        gx = np.minimum((self.px * (wc / self.wr) / cell).astype(np.int32), acc.shape[2] - 1)
        gy = np.minimum((self.py * (hc / self.hr) / cell).astype(np.int32), acc.shape[1] - 1)
        dense = acc[:, gy, gx]
        sx = self.px - 0.5 + dense[0] * (self.wr / wc)  # source position in residual index units
        sy = self.py - 0.5 + dense[1] * (self.hr / hc)
        if self.mode == "bilinear":
            warped = _bilinear(ref, sx, sy)
        elif self.mode == "nearest":
            xi = np.clip(np.rint(sx), 0, self.wr - 1).astype(np.int64)
            yi = np.clip(np.rint(sy), 0, self.hr - 1).astype(np.int64)
            warped = ref[:, yi, xi]
        else:  # bicubic: torch's kernel (a single small call per step)
            g = torch.from_numpy(np.stack([(2 * sx + 1) / self.wr - 1, (2 * sy + 1) / self.hr - 1], -1))[None]
            warped = F.grid_sample(torch.from_numpy(ref)[None], g.float(), mode="bicubic", padding_mode="border",
                                   align_corners=False)[0].numpy()
        return (cur - warped).astype(np.float32)


# -------------------------------------------------------------------------------------------------------- encoding


def _configure_encoder(cc, codec: str, width: int, height: int, rate: Fraction, gop: int | None, *, preset: str,
                       crf: float, qscale: int, threads: int) -> None:
    """I/P only, one reference frame, no scene-cut keyframes, keyframes every `gop` frames (None: only the first).

    threads is fixed (not "auto"): x264's output depends on its thread count, so a fixed count keeps the
    bitstream, hence the vectors, identical on every machine."""
    cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
    cc.time_base = 1 / rate
    cc.framerate = rate
    cc.thread_count = max(int(threads), 1)
    if codec == "libx264":
        if preset == "ultrafast":
            raise ValueError("preset='ultrafast' makes libx264 search integer-pel vectors only; use 'superfast' or "
                             "slower")
        keyint = "infinite" if gop is None else str(gop)
        # mbtree=0: with macroblock-tree rate control, x264 (PyAV 18's build) produced different bitstreams for
        # identical input in about 1 run in 6 (measured, single-threaded); without it the output is repeatable.
        # mbtree only moves bits between macroblocks, which the vectors do not need.
        params = f"keyint={keyint}:scenecut=0:bframes=0:ref=1:mbtree=0"
        if gop is not None:
            params += f":min-keyint={gop}"
        cc.options = {"preset": preset, "crf": str(crf), "x264-params": params}
    elif codec == "mpeg4":
        cc.gop_size = 1 << 30 if gop is None else int(gop)
        cc.max_b_frames = 0
        cc.qscale = True
        cc.global_quality = int(qscale) * 118  # FF_QP2LAMBDA: the same scale as ffmpeg -q:v
        # no scene-change I-frames; "strict" lets the GOP exceed mpegvideo's 600-frame cap. qmin = qmax pins the
        # quantiser: with a fixed qscale FFmpeg reads it from each frame's quality field (ffmpeg -q:v sets it,
        # PyAV cannot), so global_quality alone silently gave qmin, 2
        q = str(int(qscale))
        cc.options = {"sc_threshold": "1000000000", "strict": "-2", "qmin": q, "qmax": q}
    else:
        raise ValueError(f"codec must be 'libx264' or 'mpeg4', got {codec!r}")


def _encodable(frame: av.VideoFrame, pts: int, rate: Fraction) -> av.VideoFrame:
    frame.pts = pts
    frame.time_base = 1 / rate
    frame.pict_type = 0  # NONE: otherwise the source's I-frames leak into the new GOP
    return frame


class _Scaler:
    """Area-averaged resize (no aliasing for the encoder's motion search), one swscale context per output format
    and size kept for the whole video: building a context per frame cost 0.25 ms of 0.7 ms per 720p -> 224 px
    frame.
    One swscale thread: its automatic threading costs more than it saves on small outputs next to the decoder's
    own threads."""

    def __init__(self):
        self.reformatters: dict[tuple, av.video.reformatter.VideoReformatter] = {}

    def __call__(self, frame: av.VideoFrame, hw: tuple[int, int], fmt: str) -> av.VideoFrame:
        r = self.reformatters.get((fmt, hw))
        if r is None:
            r = self.reformatters[(fmt, hw)] = av.video.reformatter.VideoReformatter()
        try:
            return r.reformat(frame, width=hw[1], height=hw[0], format=fmt, interpolation="AREA", threads=1)
        except (ValueError, av.error.FFmpegError) as e:
            raise UnsupportedVideoError("<frame>", f"cannot convert pixel format {frame.format.name} ({e})") \
                from None


def transcode(path, output=None, *, codec: str = "libx264", fps: float = 30.0, gop_size: int = 240, size=None,
              crf: float = 23, preset: str = "medium", qscale: int = 2, encoder_threads: int = 2,
              max_pixels: int | None = DEFAULT_MAX_PIXELS, max_frames: int | None = DEFAULT_MAX_FRAMES,
              progress: bool = False):
    """Re-encode `path` in process to an I/P-only MP4 with a fixed GOP (defaults: the paper's 30 fps, GOP 240).

    The source is decoded once (frame threads), resampled by presentation time to a constant `fps` (nearest
    frame, repeated or dropped as needed), scaled to `size` (None: the source size, rounded down to even; int:
    short side, multiples of 16; (H, W): exact), and encoded with one reference frame, no B-frames, keyframes every
    `gop_size` frames and never at scene cuts. codec: "libx264" (crf, preset; never "ultrafast", whose vectors
    are integer-pel) or "mpeg4" (MPEG-4 Part 2, quantiser `qscale`, half-pel vectors).
    output: a path (the file is written, its Path returned) or None (the MP4 bytes are returned, nothing touches
    the disk). Feed either to `read_motion_vectors` or `extract_primitives(mode="native")`.
    """
    if fps <= 0 or gop_size < 1:
        raise ValueError(f"need fps > 0 and gop_size >= 1, got fps={fps}, gop_size={gop_size}")
    with _Reader(path, max_pixels, max_frames) as reader:
        info = reader.info
        first = info.first_time if info.first_time is not None else 0.0
        last = info.last_time if info.last_time is not None else first + (info.num_packets - 1) / info.fps
        n_out = _grid_steps(first, last, fps)
        if max_frames is not None and n_out > max_frames:
            raise VideoTooLargeError(path, f"{n_out} output frames at fps={fps} over {last - first:.0f} s of "
                                           f"timestamps exceed max_frames={max_frames}")
        warned = _warn_truncated(path, info)
        container, stream, packets = reader.open()
    times = _step_times(first, last, fps, None)
    rate = Fraction(fps).limit_denominator(1001)
    target = io.BytesIO() if output is None else os.fspath(output)
    bar = _progress(progress, info.num_packets, f"transcode {_describe(path)}")
    try:
        stream.thread_type = "AUTO"
        # faststart (index first) keeps a file readable if it is cut later; it needs to reread a real file
        opts = {} if output is None else {"movflags": "+faststart"}
        with av.open(target, mode="w", format="mp4", options=opts) as out:
            ostream = out.add_stream(codec, rate=rate)
            hw = None
            scale = _Scaler()
            frames = _decoded_frames(path, packets, stream, max_frames=max_frames, max_pixels=max_pixels,
                                     progress=bar, warned=warned)
            for _, _, f, targets in _sampled(_timed(frames, info.fps), _Sampler(times), info.fps):
                if not len(targets):
                    continue
                if hw is None:
                    hw = _resolve_size(size, f.height, f.width, even=True)
                    _configure_encoder(ostream.codec_context, codec, hw[1], hw[0], rate, gop_size, preset=preset,
                                       crf=crf, qscale=qscale, threads=encoder_threads)
                    ostream.width, ostream.height = hw[1], hw[0]
                yuv = scale(f, hw, "yuv420p")
                for j in targets:
                    out.mux(ostream.encode(_encodable(yuv, j, rate)))
            out.mux(ostream.encode(None))
    finally:
        container.close()
        if bar is not None:
            bar.close()
    return target.getvalue() if output is None else Path(target)


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total or None, desc=desc, unit="frame", leave=False)


# ---------------------------------------------------------------------------------------------------- extraction


class _Worker:
    """Runs submitted calls in order on one background thread.

    Why: PyAV releases the GIL while it decodes, encodes and scales, so the source decode on the calling thread
    overlaps with scaling, encoding and fusing here; on two cores the serial version left a core idle. One worker
    and a FIFO keep the order of every operation, so results stay bit-identical. The queue is bounded (memory)."""

    def __init__(self, maxsize: int = 8):
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="cope-codec-worker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    item()
                except BaseException as e:  # re-raised on the calling thread
                    self.error = e

    def submit(self, fn) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(fn)

    def finish(self) -> None:
        """Wait for everything submitted; re-raise the worker's error, if any."""
        self.close()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)  # the worker keeps draining after an error, so this never blocks for long
            self.thread.join()


class _NeedTranscode(Exception):
    """Raised inside native extraction when the stream turns out not to be I/P (a B-frame appeared)."""


class _Steps:
    """Collects the outputs step by step; keeps only the reference step's small frame besides the outputs."""

    def __init__(self, types: str, out_hw, res_hw, mv_block: int, interpolation: str, return_frames: bool,
                 key_hw=None):
        self.types = types
        self.out_hw = out_hw
        self.key_hw = key_hw or out_hw  # keyframes: scaled from the source frame when this differs from out_hw
        self.mv_block = mv_block
        self.residual = _Residual(out_hw, res_hw, interpolation)
        self.return_frames = return_frames
        self.produced = []
        self.keyframes, self.frames, self.times, self.indices = [], [], [], []
        self.motion, self.masks, self.residuals = [], [], []
        self.small = {}
        self.finalized = 0  # number of steps whose outputs are complete

    def record(self, k: int, rgb: np.ndarray, time: float, index: int, frame=None, scale=None) -> None:
        """Step k's frame at out_hw (`rgb`); an "I" step at a different key_hw is scaled from the source `frame`."""
        assert k == len(self.produced)
        t = self.types[k]
        self.produced.append(t)
        self.times.append(time)
        self.indices.append(index)
        if t == "I":
            assert k == self.finalized, "Δ steps before a keyframe must be complete"
            same = self.key_hw == self.out_hw
            self.keyframes.append(rgb if same else scale(frame, self.key_hw, "rgb24").to_ndarray())
        if self.return_frames:
            self.frames.append(rgb)
        if k + 1 < len(self.types) and self.types[k + 1] == "P" or t == "P":
            self.small[k] = self.residual.small(rgb)
        if t == "I":
            self._advance(k)

    def finalize(self, k: int, fuser: _Fuser) -> None:
        """Complete P step k from the fused field of its window."""
        assert self.types[k] == "P" and k == self.finalized
        valid = np.zeros_like(fuser.valid) if fuser.broken else fuser.valid
        mv, mask = _grid_to_output(fuser.acc, valid, fuser.cell, fuser.hw, self.out_hw, self.mv_block)
        self.motion.append(mv)
        self.masks.append(mask)
        self.residuals.append(self.residual(self.small[k], self.small[k - 1], fuser.acc, fuser.cell, fuser.hw))
        self._advance(k)

    def _advance(self, k: int) -> None:
        self.finalized = k + 1
        self.small.pop(k - 1, None)

    def result(self, mode: str, info: VideoInfo) -> CodecPrimitives:
        h, w = self.out_hw
        hg, wg = h // self.mv_block, w // self.mv_block
        hr, wr = self.residual.hr, self.residual.wr
        n_p = len(self.motion)
        return CodecPrimitives(
            frame_types="".join(self.produced[:self.finalized]),
            keyframes=np.stack(self.keyframes) if self.keyframes else np.zeros((0, *self.key_hw, 3), np.uint8),
            motion_vectors=np.stack(self.motion) if n_p else np.zeros((0, 2, hg, wg), np.float32),
            intra_masks=np.stack(self.masks) if n_p else np.zeros((0, hg, wg), bool),
            residuals=np.stack(self.residuals) if n_p else np.zeros((0, 3, hr, wr), np.float32),
            timestamps=np.asarray(self.times[:self.finalized], np.float64),
            frame_indices=np.asarray(self.indices[:self.finalized], np.int64),
            frame_size=(h, w),
            frames=(np.stack(self.frames[:self.finalized]) if self.frames else np.zeros((0, h, w, 3), np.uint8))
            if self.return_frames else None,
            mode=mode, source_fps=float(info.fps), duration=float(info.duration))


def _native_blockers(info: VideoInfo, times: np.ndarray, types: str) -> tuple[list[str], list[str]]:
    """Why the file's own P-frames cannot serve: (hard reasons -> must transcode, soft reasons -> native would
    lose steps to intra)."""
    hard, soft = [], []
    if info.codec not in MV_EXPORTING_CODECS:
        hard.append(f"codec {info.codec!r} exports no motion vectors")
    if info.reordered:
        hard.append("the stream has B-frames (reordered packets)")
    elif info.reordered is None:
        soft.append("packets carry no timestamps, B-frames cannot be ruled out")
    if info.codec == "h264" and info.ref_frames != 1:
        soft.append(f"H.264 with max_num_ref_frames={info.ref_frames} (vectors may skip frames)")
    half = 0.5 / info.fps
    kf = info.keyframe_times
    hit = 0
    for k in range(1, len(times)):
        if types[k] == "P" and len(kf):
            lo, hi = np.searchsorted(kf, [times[k - 1] + half, times[k] + half], side="right")
            hit += int(hi > lo)
    if hit:
        soft.append(f"{hit} Δ step(s) have a codec keyframe inside their window")
    return hard, soft


def _native_cell(codec_hw, out_hw, mv_block: int) -> int:
    """Fusion cell of a source that is downscaled: the largest of 8, 16, 32 px that is at most 2/3 of one output
    cell in source pixels (720p -> 224 px: 32). Fusing far finer than the output grid only costs time: at 720p a
    16-px grid took 0.6 ms per frame to fuse, a 32-px grid 0.25 ms."""
    span = min(codec_hw[0] * mv_block / out_hw[0], codec_hw[1] * mv_block / out_hw[1])
    return max(c for c in (8, 16, 32) if c == 8 or c <= span / 1.5)


def _extract_native(src, info, times, types, out_spec, make_steps, *, reader, max_frames, max_pixels, progress,
                    warned):
    container, stream, packets = reader.open()
    bar = _progress(progress, info.num_packets, f"codec primitives {_describe(src)}")
    worker = _Worker()
    scale = _Scaler()
    state = {"steps": None, "fuser": None, "grid": None}

    def handle(f, ftype, idx, t, targets, active):  # on the worker thread, frame by frame in order
        steps = state["steps"]
        if steps is None:
            steps = state["steps"] = make_steps(_resolve_size(out_spec, f.height, f.width, even=False), f)
        codec_hw = (f.height, f.width)
        if state["grid"] != codec_hw:
            changed = state["grid"] is not None
            state["grid"] = codec_hw
            state["fuser"] = _Fuser(f.height, f.width, _native_cell(codec_hw, steps.out_hw, steps.mv_block))
            if changed and active:
                state["fuser"].cut()  # the frame size changed inside a window
        fuser = state["fuser"]
        if active:
            if ftype == "I":
                fuser.cut()
            elif not fuser.broken:
                fuser.add_vectors(_mv_table(f))
        if len(targets):
            rgb = scale(f, steps.out_hw, "rgb24").to_ndarray()
            for k in targets:
                steps.record(k, rgb, t, idx, f, scale)
                if types[k] == "P":
                    steps.finalize(k, fuser)
                fuser.reset()

    try:
        _set_decoder_threads(stream, info, "AUTO" if info.reordered is False else "SLICE")
        stream.codec_context.options = {"flags2": "+export_mvs"}
        frames = _decoded_frames(src, packets, stream, max_frames=max_frames, max_pixels=max_pixels,
                                 progress=bar, warned=warned)
        k_next = 0  # steps assigned so far: the next step decides whether this frame's vectors are fused
        for idx, t, f, targets in _sampled(_timed(frames, info.fps), _Sampler(times), info.fps):
            ftype = _frame_type(f)
            if ftype == "B":
                raise _NeedTranscode("a B-frame")
            active = 0 < k_next < len(types) and types[k_next] == "P"
            worker.submit(lambda f=f, ftype=ftype, idx=idx, t=t, tg=targets, a=active: handle(f, ftype, idx, t, tg, a))
            k_next += len(targets)
        worker.finish()
        return state["steps"].result("native", info)
    finally:
        worker.close()
        container.close()
        if bar is not None:
            bar.close()


def _gop_tail_filter(info: VideoInfo, targets: np.ndarray) -> Callable[[av.Packet], bool] | None:
    """A packet filter that drops the frames of each GOP after the last one the sampler will take, or None.

    Why: on an I/P stream of the MPEG-1/2, MPEG-4 Part 2 and H.263 decoders every keyframe refreshes the whole
    picture and every P-frame predicts from the frame before it, so the frames of a GOP after its last sampled frame
    feed nothing we use; with a keyframe every 12 frames and a codec frame every 5 that is ~15% of the decode. The
    sampled frames, hence every output, stay identical: each target goes to the nearest frame (_Sampler), which is
    computed here from the packet scan's timestamps (both frames around a target are kept when it sits on a
    midpoint), and dropping frames nobody takes moves no target. Streams with B-frames, missing timestamps or no
    keyframes decode every packet."""
    pts = info.frame_pts
    n = len(pts)
    if (info.reordered is not False or info.codec not in _CLASSIC_MPEG_DECODERS or n == 0 or n != info.num_packets
            or not len(info.keyframe_times) or not info.time_base or not len(targets)):
        return None
    times = pts.astype(np.float64) * info.time_base
    keys = np.searchsorted(times, info.keyframe_times)
    if keys[-1] >= n or not np.array_equal(times[keys], info.keyframe_times):
        return None
    keys = np.unique(keys)
    # frame i takes the targets in (mid[i - 1], mid[i]] (_Sampler / _sampled); the last frame one frame beyond
    mid = np.append(0.5 * (times[:-1] + times[1:]), times[-1] + 1.0 / info.fps)
    eps = 1e-6 * max(1.0, float(np.abs(times).max()))
    taken = np.concatenate([np.searchsorted(mid, targets - eps), np.searchsorted(mid, targets + eps)])
    taken = np.minimum(taken, n - 1)
    gop = np.searchsorted(keys, np.arange(n), side="right") - 1  # -1: before the first keyframe (never dropped)
    last_taken = np.full(len(keys), -1)
    np.maximum.at(last_taken, gop[taken][gop[taken] >= 0], taken[gop[taken] >= 0])
    drop = (gop >= 0) & (np.arange(n) > last_taken[np.maximum(gop, 0)])
    if not drop.any():
        return None
    dropped_pts = set(pts[drop].tolist())
    return lambda pkt: pkt.pts is None or pkt.pts not in dropped_pts


class _Transcoder:
    """In-memory re-encode of the sampled frames, one encoder per run of steps that starts at an "I" step.

    A fresh encoder makes that I step a codec I-frame; inside the run the encoder never places another one
    (keyint infinite, no scene cuts), one reference frame and no B-frames, so every vector points at the previous
    codec frame and fusing them reaches exactly the reference step. Windows that end at an "I" step are not
    encoded at all."""

    def __init__(self, steps: _Steps, hw, codec: str, rate: Fraction, enc_kwargs: dict):
        self.steps, self.hw, self.codec, self.rate, self.enc_kwargs = steps, hw, codec, rate, enc_kwargs
        self.enc = self.dec = None
        self.pts = self.decoded = -1
        self.last_index = None
        self.steps_at: dict[int, list[int]] = {}
        self.fuser = _Fuser(hw[0], hw[1])

    def start(self, yuv: av.VideoFrame, index: int) -> None:
        """Begin a run: a fresh encoder whose first frame (this "I" step) is a codec I-frame."""
        self.close()
        self.enc = av.CodecContext.create(self.codec, "w")
        _configure_encoder(self.enc, self.codec, self.hw[1], self.hw[0], self.rate, None, **self.enc_kwargs)
        self.dec = av.CodecContext.create("h264" if self.codec == "libx264" else "mpeg4", "r")
        # only the vectors are read from this decoder, and they come from the bitstream: skipping the inverse
        # DCT leaves them identical and saves ~10% of its time
        self.dec.options = {"flags2": "+export_mvs", "skip_idct": "all"}
        self.dec.thread_count = 1
        self.pts = self.decoded = -1
        self.last_index = None
        self.steps_at = {}
        self.push(yuv, index)

    def push(self, yuv: av.VideoFrame, index: int, step: int | None = None) -> None:
        """Encode the next codec frame (source frame `index`); `step`: the Δ step that ends at this frame."""
        if index != self.last_index:
            self.pts += 1
            self.last_index = index
            if step is not None:  # registered before encoding: low-latency encoders (mpeg4) return it at once
                self.steps_at.setdefault(self.pts, []).append(step)
            self._decode(self.enc.encode(_encodable(yuv, self.pts, self.rate)))
        elif step is not None:  # the same source frame again (step rate above the source's): an empty window
            if self.decoded >= self.pts:
                self.steps.finalize(step, self.fuser)
                self.fuser.reset()
            else:
                self.steps_at.setdefault(self.pts, []).append(step)

    def _decode(self, packets) -> None:
        for pkt in packets:
            for df in self.dec.decode(pkt):
                self._on_frame(df)

    def _on_frame(self, df: av.VideoFrame) -> None:
        p = int(df.pts)
        self.decoded = p
        if _frame_type(df) == "I":
            if p == 0:
                self.fuser.reset()
            else:
                self.fuser.cut()
        elif not self.fuser.broken:
            self.fuser.add_vectors(_mv_table(df))
        for k in self.steps_at.pop(p, ()):
            self.steps.finalize(k, self.fuser)
            self.fuser.reset()

    def close(self) -> None:
        """Drain the run's encoder and decoder: every Δ step of the run is complete afterwards."""
        if self.enc is None:
            return
        self._decode(self.enc.encode(None))
        for df in self.dec.decode(None):
            self._on_frame(df)
        self.enc = self.dec = None


def _extract_transcode(src, info, times, types, out_spec, make_steps, *, reader, codec, codec_fps, enc_kwargs,
                       max_frames, max_pixels, progress, warned):
    # targets: for each P step, the interior codec frames of its window at ~codec_fps, then the step itself
    tt, kind = [], []
    for k in range(len(times)):
        if k and types[k] == "P":
            m = max(1, int(round((times[k] - times[k - 1]) * codec_fps)))
            # at most ~2 targets per source packet: they already pick every frame of the window, and damaged
            # timestamps (a window of years) must not turn into billions of targets
            m = min(m, 2 * info.num_packets + 2)
            for j in range(1, m):
                tt.append(times[k - 1] + (times[k] - times[k - 1]) * j / m)
                kind.append(-1 - k)  # interior of step k's window
        tt.append(times[k])
        kind.append(k)
    rate = Fraction(max(codec_fps, 1.0)).limit_denominator(1001)
    container, stream, packets = reader.open()
    bar = _progress(progress, info.num_packets, f"codec primitives {_describe(src)}")
    worker = _Worker()
    scale = _Scaler()
    state = {"steps": None, "tc": None}

    def handle(f, idx, t, targets):  # on the worker thread, frame by frame in order
        if state["steps"] is None:
            out_hw = _resolve_size(out_spec, f.height, f.width, even=True)
            state["steps"] = make_steps(out_hw, f)
            state["tc"] = _Transcoder(state["steps"], out_hw, codec, rate, enc_kwargs)
        steps, tc = state["steps"], state["tc"]
        yuv = None
        for j in targets:
            k = kind[j]
            if k < 0:  # window interior
                if yuv is None:
                    yuv = scale(f, steps.out_hw, "yuv420p")
                tc.push(yuv, idx)
                continue
            if types[k] == "I":
                tc.close()  # completes the previous run's Δ steps before this keyframe
            steps.record(k, scale(f, steps.out_hw, "rgb24").to_ndarray(), t, idx, f, scale)
            if types[k] == "P" or (k + 1 < len(types) and types[k + 1] == "P"):
                if yuv is None:
                    yuv = scale(f, steps.out_hw, "yuv420p")
                if types[k] == "I":
                    tc.start(yuv, idx)
                else:
                    tc.push(yuv, idx, step=k)

    # Non-reference B-frames are never needed when codec frames are at most half the source rate: the decoder
    # skips them (measured ~40% less decode work on x264 files with B-frames), the rest are still >= codec_fps.
    skipping = bool(info.reordered) and codec_fps * 2 <= info.fps
    keep = _gop_tail_filter(info, np.asarray(tt))  # I/P: GOP tails after the last sampled frame are not decoded
    try:
        _set_decoder_threads(stream, info, "AUTO")  # pixels only: frame threading is deterministic for them
        if skipping:
            stream.codec_context.skip_frame = "NONREF"
        frames = _decoded_frames(src, packets, stream, max_frames=max_frames, max_pixels=max_pixels,
                                 progress=bar, warned=warned, skipping=skipping, keep=keep)
        timed = _timed(frames, info.fps, info.frame_pts if skipping or keep is not None else None)
        for idx, t, f, targets in _sampled(timed, _Sampler(np.asarray(tt)), info.fps):
            if len(targets):
                worker.submit(lambda f=f, idx=idx, t=t, tg=targets: handle(f, idx, t, tg))
        worker.submit(lambda: state["tc"] is not None and state["tc"].close())
        worker.finish()
        return state["steps"].result("transcode", info)
    finally:
        worker.close()
        container.close()
        if bar is not None:
            bar.close()


def extract_primitives(path, *, fps: float = 1.0, gop_size: int = 8, keyframes_per_gop: int = 1,
                       mode: str = "auto", size=(224, 224), mv_block: int = 16, residual_scale: float = 0.25,
                       max_steps: int | None = None, max_frames: int | None = DEFAULT_MAX_FRAMES,
                       max_pixels: int | None = DEFAULT_MAX_PIXELS, return_frames: bool = False,
                       progress: bool = False, codec: str = "mpeg4", codec_fps: float = 5.0,
                       preset: str = "medium", crf: float = 23, qscale: int = 2, encoder_threads: int = 1,
                       residual_interpolation: str = "bilinear", keyframe_size=None) -> CodecPrimitives:
    """Codec primitives of a video at CoPE-VideoLM's step layout (see CodecPrimitives for the arrays).

    Steps: sampled at `fps` from the first frame (nearest decoded frame by presentation time), uniformly
    subsampled to `max_steps` if there are more; GOPs of `gop_size` steps with `keyframes_per_gop` evenly spaced
    "I" steps (RGB keyframes) and "P" (Δ) steps whose reference is the previous step.

    Δ step primitives: every codec frame between the reference step and the step contributes its motion vectors;
    they are fused on an 8-px grid (CoViAR accumulation, reset at each step), pooled to `mv_block` cells and
    returned as content displacement in pixels of the `size` frames, with an intra mask for cells whose chain
    meets an intra block or codec I-frame. The residual is frame_t - warp(frame_ref, fused field) in RGB at
    `residual_scale` of the frame size, computed only for Δ steps, from the source frames scaled to `size`.

    mode:
      "transcode": re-encode the sampled source in memory (I/P, one reference frame, a codec I-frame exactly at
        every "I" step, no other I-frame) and fuse the vectors of that stream. Works for every codec and frame
        structure. Windows that end at an "I" step are not encoded at all.
      "native": use the file's own P-frames (h264/mpeg4/mpeg2video/h263 without B-frames), vectors scaled to
        `size`; a codec keyframe inside a Δ window makes that step all intra. Files whose codec exports no
        vectors or that have B-frames fall back to transcode with a warning.
      "auto" (default): native when it is exact (an exporting codec, no B-frames, one reference frame for H.264,
        no codec keyframe inside a Δ window), else transcode. Native costs a decode with vectors (the fastest
        path); transcode costs a decode plus resizing and encoding `codec_fps` small frames per second. Most
        real files (B-frames, frequent keyframes) take the transcode path.
    codec: encoder of the transcode path. "mpeg4" (default; MPEG-4 Part 2 at quantiser `qscale`, half-pel
        vectors, CoViAR's choice) is ~4x cheaper to encode than libx264 and keeps extraction faster than decoding
        every frame to RGB (benchmarks/bench_codec.py); it passes the same ground-truth tests. "libx264"
        (`preset`, `crf`; quarter-pel, better on fast motion; "ultrafast" is refused: integer-pel vectors) costs
        0.5-0.7x a plain decode on fast-decoding 720p sources at preset "medium" (benchmarks/bench_codec.py).
    codec_fps: codec frames per second inside Δ windows (transcode). The paper fuses 30. Each codec frame costs a
        resize, an encode, a vector decode and a fusion (~2 ms at 224 px), and every hop adds half-pel rounding
        and resampling drift to the fused chain: on the real clips in benchmarks/ the motion-compensated residual
        kept 0.61-0.78 of the frame difference's energy at 5, 0.64-0.80 at 10 and 0.80-0.84 at 30, so 5 is the
        default. Fewer frames means larger per-frame motion for the encoder's search: a rendered pan of 45 px per
        codec frame was recovered exactly, one of 60 px was lost to intra; raise it for such motion. Ground-truth tests
        pass at 5, 10 and 30.
    size: int (short side, aspect kept, multiples of 16) | (H, W) exact | None (source size). Transcode rounds
        odd sides down to even.
    keyframe_size: like `size`, for the "I" steps' RGB keyframes only (None: `size`). They are scaled from the
        source frame, so a vision tower at 384 px sees 384 px of detail rather than the codec frame upsampled; the
        Δ steps and residuals stay at `size`.
    Determinism: identical arrays bit for bit across runs. Transcode decodes pixels with frame threads, or one
        thread for cheap MPEG-1/2/4 Part 2 decodes up to 720p (decoded pixels do not depend on threading), encodes with a fixed thread count and x264's mbtree off (it made
        x264's output vary between identical runs); native mode uses frame threads only on streams without
        B-frames, whose exported vectors are identical under any threading.
    Caps: `max_pixels` (per frame, checked from the stream header before decoding), `max_frames` (decoded frames;
    checked from a packet scan first) raise VideoTooLargeError. Long videos stream: memory does not grow with
    duration beyond the returned arrays.
    """
    if fps <= 0 or codec_fps <= 0:
        raise ValueError(f"need fps > 0 and codec_fps > 0, got fps={fps}, codec_fps={codec_fps}")
    if mode not in ("auto", "native", "transcode"):
        raise ValueError(f"mode must be 'auto', 'native' or 'transcode', got {mode!r}")
    if not 0 < residual_scale <= 1:
        raise ValueError(f"residual_scale must be in (0, 1], got {residual_scale}")
    if mv_block < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"need mv_block >= 1 and max_steps >= 1, got {mv_block}, {max_steps}")
    if residual_interpolation not in ("bilinear", "bicubic", "nearest"):
        raise ValueError(f"residual_interpolation must be bilinear, bicubic or nearest, got {residual_interpolation!r}")
    if codec not in ("libx264", "mpeg4"):
        raise ValueError(f"codec must be 'libx264' or 'mpeg4', got {codec!r}")
    if codec == "libx264" and preset == "ultrafast":
        raise ValueError("preset='ultrafast' gives integer-pel vectors only; use 'superfast' or slower")
    step_frame_types(1, gop_size, keyframes_per_gop)  # validates

    with _Reader(path, max_pixels, max_frames) as reader:  # the scan; its open container decodes afterwards
        info = reader.info
        first = info.first_time if info.first_time is not None else 0.0
        last = info.last_time if info.last_time is not None else first + (info.num_packets - 1) / info.fps
        n_grid = _grid_steps(first, last, fps)
        if max_steps is None and max_frames is not None and n_grid > max_frames:
            raise VideoTooLargeError(path, f"{n_grid} steps at fps={fps} over {last - first:.0f} s of timestamps "
                                           f"exceed max_frames={max_frames}; set max_steps to sample them")
        times = _step_times(first, last, fps, max_steps)
        types = step_frame_types(len(times), gop_size, keyframes_per_gop)
        hw_check = _resolve_size(size, max(info.height, 16), max(info.width, 16), even=False)
        if min(hw_check) < mv_block:
            raise ValueError(f"mv_block={mv_block} is larger than the frame size {hw_check}")

        hard, soft = _native_blockers(info, times, types)
        use_native = (mode == "native" and not hard) or (mode == "auto" and not hard and not soft)
        if mode == "native" and hard:
            warnings.warn(f"{_describe(path)}: native mode impossible ({'; '.join(hard)}); transcoding instead",
                          UserWarning, stacklevel=2)
        elif mode == "native" and soft:
            warnings.warn(f"{_describe(path)}: native mode will be inexact: {'; '.join(soft)}", UserWarning,
                          stacklevel=2)

        def make_steps(hw, first_frame):
            hr = max(1, int(round(hw[0] * residual_scale)))
            wr = max(1, int(round(hw[1] * residual_scale)))
            key_hw = None
            if keyframe_size is not None:
                key_hw = _resolve_size(keyframe_size, first_frame.height, first_frame.width, even=False)
            return _Steps(types, hw, (hr, wr), mv_block, residual_interpolation, return_frames, key_hw)

        common = dict(reader=reader, max_frames=max_frames, max_pixels=max_pixels, progress=progress,
                      warned=_warn_truncated(path, info))
        if use_native:
            try:
                return _extract_native(path, info, times, types, size, make_steps, **common)
            except _NeedTranscode as e:
                warnings.warn(f"{_describe(path)}: {e} appeared, transcoding instead of native mode", UserWarning,
                              stacklevel=2)
        enc_kwargs = dict(preset=preset, crf=crf, qscale=qscale, threads=encoder_threads)
        return _extract_transcode(path, info, times, types, size, make_steps, codec=codec, codec_fps=codec_fps,
                                  enc_kwargs=enc_kwargs, **common)
