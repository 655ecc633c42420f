"""Opening a video and scanning its packets without decoding: typed errors, size caps, H.264 SPS parsing.

Why: everything the extractor decides before decoding (native or transcode, B-frames, reference count, keyframe
positions, caps) comes from one cheap packet scan; `_Reader` then hands the scanned, rewound container to the
decoder so the file is probed by FFmpeg once.
"""

from __future__ import annotations

import errno
import io
import itertools
import os
from fractions import Fraction

import av
import numpy as np

from .codec_types import _ISO_BMFF_BOXES, DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS, VideoInfo
from .errors import (
    CorruptVideoError,
    NotAVideoError,
    NoVideoStreamError,
    UnsupportedVideoError,
    VideoDecodeError,
    VideoTooLargeError,
)


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
