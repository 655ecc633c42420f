"""Opening a video and scanning its packets without decoding: typed errors, size caps, H.264 SPS parsing.

Why: everything the extractor decides before decoding (native or transcode, B-frames, reference count, keyframe
positions, caps) comes from one cheap packet scan; `_Reader` then hands the scanned, rewound container to the
decoder so the file is probed by FFmpeg once.
"""

from __future__ import annotations

import errno
import functools
import io
import itertools
import os
import re
import stat
import time
from fractions import Fraction

import av
import numpy as np

from .codec_types import _ISO_BMFF_BOXES, DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS, DecodeLimits, VideoInfo
from .errors import (
    CorruptVideoError,
    NotAVideoError,
    NoVideoStreamError,
    UnsupportedVideoError,
    VideoDecodeError,
    VideoTooLargeError,
)


def _frame_timeline(info: VideoInfo):
    """(times, keys, mid, eps) of the packet scan, or None when the key packets' times are not frame times.

    times: each frame's presentation time (display order); keys: the keyframes' frame indices; frame i takes the
    sampling targets in (mid[i - 1], mid[i]] (_Sampler / _sampled; the last frame reaches one frame beyond); eps: the
    margin that keeps the earlier frame on a tie. The callers check that the scan is usable (timestamps, one packet
    per frame, at least one keyframe) first; the split planner and the GOP-tail filter read frames this one way."""
    times = info.frame_pts.astype(np.float64) * info.time_base
    keys = np.searchsorted(times, info.keyframe_times)
    if keys[-1] >= len(times) or not np.array_equal(times[keys], info.keyframe_times):
        return None
    mid = np.append(0.5 * (times[:-1] + times[1:]), times[-1] + 1.0 / info.fps)
    return times, np.unique(keys), mid, 1e-6 * max(1.0, float(np.abs(times).max()))


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


# Demuxers that open other files or the network by themselves (lists, playlists, manifests, image-sequence
# patterns, RTP/RTSP session files, filter graphs): refused, so a file can only ever read itself (issue 16, D3).
_REFUSED_DEMUXERS = frozenset({"concat", "hls", "dash", "sdp", "rtp", "rtp_mpegts", "rtsp", "image2", "lavfi", "imf",
                               "avisynth", "vapoursynth", "bluray"})
_NETWORK_SCHEMES = frozenset({"http", "https", "rtsp", "rtsps"})
_NETWORK_PROTOCOLS = "http,https,tcp,tls,rtsp,rtsps,rtp,udp,srtp"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters or more: "C:" stays a drive letter
_INT_MAX = 2**31 - 1


@functools.lru_cache(maxsize=1)
def _format_whitelist() -> str:
    """Every input demuxer of this FFmpeg build except `_REFUSED_DEMUXERS` (FFmpeg takes an allow-list only)."""
    names = set()
    for name in av.formats_available:
        try:
            if av.format.ContainerFormat(name).is_input:
                names.add(name)
        except (ValueError, av.error.FFmpegError):
            continue
    return ",".join(sorted(names - _REFUSED_DEMUXERS))


def _referencing_kind(head: bytes) -> str | None:
    """What a text file that makes FFmpeg open other resources is, from its first bytes; None otherwise."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"ffconcat version"):
        return "an ffconcat list (it names other files to read)"
    if text.startswith(b"#EXTM3U"):
        return "an M3U/HLS playlist (it names other files or URLs to read)"
    if text.startswith(b"v=0") and b"\nm=" in text:
        return "an SDP session description (it opens network streams)"
    if b"<MPD" in text[:512]:
        return "a DASH manifest (it names other files or URLs to read)"
    return None


def _animated_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:16] == b"VP8X" and len(head) > 20 \
        and bool(head[20] & 0x02)


def _looks_like_path(data: bytes) -> bool:
    """Bytes that read as a file path rather than media: short printable UTF-8, one line, a separator or suffix."""
    if not 0 < len(data) < 4096 or b"\0" in data:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable() and ("/" in text or "\\" in text or bool(re.search(r"\.[A-Za-z0-9]{2,5}$", text)))


def _local_target(src, target: str, allow_network: bool) -> tuple[str, bytes, str]:
    """(what FFmpeg opens, the first bytes, the protocol allow-list) for a path or an opted-in URL."""
    scheme = _SCHEME.match(target)
    if scheme is not None and scheme.group(1).lower() in _NETWORK_SCHEMES and target[scheme.end():].startswith("//"):
        if allow_network:
            return target, b"", _NETWORK_PROTOCOLS
        raise UnsupportedVideoError(src, f"{scheme.group(1)}: URLs are not opened unless allow_network=True "
                                         f"(a string is a local path otherwise)")
    path = os.path.abspath(target)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if scheme is not None:
            raise UnsupportedVideoError(src, f"no such local file, and {scheme.group(1)}: protocol paths are not "
                                             f"handed to FFmpeg (local files only; http(s)/rtsp need "
                                             f"allow_network=True)") from None
        raise FileNotFoundError(errno.ENOENT, "No such file", target) from None
    if stat.S_ISDIR(info.st_mode):
        raise NotAVideoError(src, "is a directory, not a video file")
    if not stat.S_ISREG(info.st_mode):
        raise NotAVideoError(src, "not a regular file (a FIFO, device or socket); only regular files are read")
    if info.st_size == 0:
        raise NotAVideoError(src, "file is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(512)
    # An absolute `file:` URL: FFmpeg reads exactly this local file, whatever its name looks like ("http:/...").
    return "file:" + path, head, "file"


def _open(src, max_pixels: int | None = None, *, allow_network: bool = False):
    """Open `src` (path, or bytes) and return (container, stream), mapping FFmpeg's failures to typed errors.
    The declared frame size is checked against `max_pixels` before anything is decoded.

    Safety: a path is opened as the local file it names (absolute `file:` URL), never as a URL or protocol unless
    `allow_network` and it is an http(s)/rtsp URL; demuxers that read other resources are refused
    (`_REFUSED_DEMUXERS`, enforced by FFmpeg's `format_whitelist`); FFmpeg's probe decodes with `max_pixels` set."""
    head = b""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise NotAVideoError(src, "input is empty (0 bytes)")
        if _looks_like_path(data):
            raise NotAVideoError(src, f"bytes are read as video content, and these look like a file path "
                                      f"({data[:80].decode()!r}); pass a path as str or os.PathLike")
        head = data[:512]
        target, protocols = io.BytesIO(data), "file"
    elif isinstance(src, (str, os.PathLike)):
        target = os.fspath(src)
        if isinstance(target, bytes):
            target = os.fsdecode(target)
        target, head, protocols = _local_target(src, target, allow_network)
    else:
        raise TypeError(f"expected a path or bytes, got {type(src).__name__}")
    kind = _referencing_kind(head)
    if kind is not None:
        raise UnsupportedVideoError(src, f"{kind}; such files are refused")
    if _animated_webp(head):
        raise UnsupportedVideoError(src, "animated WebP: this FFmpeg build's WebP decoder cannot decode animations")
    options = {"format_whitelist": _format_whitelist(), "protocol_whitelist": protocols}
    # `options` reach the probe's decoders (streams known from the header; MPEG-PS finds its streams later)
    stream_options = {"max_pixels": _ffmpeg_max_pixels(max_pixels)} if max_pixels else None
    try:
        container = av.open(target, mode="r", metadata_errors="replace", container_options=options,
                            options=stream_options)
        if stream_options and not _declared_area(container):
            # The probe's decoder refused the size and left it unknown (MPEG-2 does so): probe again without the
            # option to read the declared size from the header, so it is refused below, by name, before decoding.
            container.close()
            if isinstance(target, io.BytesIO):
                target.seek(0)
            container = av.open(target, mode="r", metadata_errors="replace", container_options=options)
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
        if isinstance(e, av.error.ArgumentError):  # EINVAL: also what format_whitelist answers
            raise UnsupportedVideoError(src, f"FFmpeg refused to open it: a demuxer that reads other files or the "
                                             f"network (refused), or an invalid header ({e})") from None
        raise CorruptVideoError(src, f"FFmpeg cannot open it ({e})") from None
    except UnicodeDecodeError as e:
        raise CorruptVideoError(src, f"unreadable container metadata ({e})") from None
    try:
        if container.format.name in _REFUSED_DEMUXERS:
            raise UnsupportedVideoError(src, f"the {container.format.name!r} demuxer reads other resources; refused")
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


def _ffmpeg_max_pixels(max_pixels: int) -> str:
    """FFmpeg's `max_pixels` option for a cap: FFmpeg counts the stride-aligned width, so it gets twice the cap (a
    memory backstop); the exact cap is checked on every decoded size change."""
    return str(min(2 * int(max_pixels) + 2**16, _INT_MAX))


def _declared_area(container) -> int:
    video = container.streams.video
    if not video or video[0].codec_context is None:
        return 1  # nothing to learn from a second probe
    cc = video[0].codec_context
    return int(cc.width or 0) * int(cc.height or 0)


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


def _h264_sps_fields(sps: bytes) -> tuple[int, int, int] | None:
    """(max_num_ref_frames, coded width, coded height) of an H.264 SPS NAL unit (header byte included), or None if
    it cannot be parsed. The size is the macroblock-aligned coded size (cropping ignored: an upper bound)."""
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
        refs = b.ue()
        b.u(1)  # gaps_in_frame_num_allowed
        width_mbs, height_units = b.ue() + 1, b.ue() + 1
        frame_mbs_only = b.u(1)
        return refs, 16 * width_mbs, 16 * height_units * (2 - frame_mbs_only)
    except ValueError:
        return None


def _h264_sps_ref_frames(sps: bytes) -> int | None:
    """max_num_ref_frames of an H.264 SPS NAL unit (header byte included); None if it cannot be parsed.

    Why: the exported vectors do not say which reference they use, so a stream's own P-frames can only be fused
    as "previous frame" motion when the encoder was limited to one reference frame."""
    fields = _h264_sps_fields(sps)
    return None if fields is None else fields[0]


def _h264_packet_sps_sizes(data: bytes, length_size: int | None) -> list[tuple[int, int]]:
    """(W, H) of every SPS carried in-band by one H.264 packet (AVCC with `length_size`-byte prefixes, or Annex-B
    when `length_size` is None). Why: a stream may switch its size mid-way by a new SPS; the decoder allocates at
    that size on the next slice, so the cap is checked here, before the packet is decoded (issue 16, D1)."""
    sizes = []
    if length_size:
        pos = 0
        while pos + length_size < len(data):
            size = int.from_bytes(data[pos:pos + length_size], "big")
            if data[pos + length_size] & 0x1F == 7:
                fields = _h264_sps_fields(data[pos + length_size:pos + length_size + size])
                if fields is not None:
                    sizes.append(fields[1:])
            pos += length_size + max(size, 1)
        return sizes
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        nal = start + 3
        end = data.find(b"\x00\x00\x01", nal)
        if nal < len(data) and data[nal] & 0x1F == 7:
            fields = _h264_sps_fields(data[nal:end if end >= 0 else len(data)].rstrip(b"\x00"))
            if fields is not None:
                sizes.append(fields[1:])
        start = end
    return sizes


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
                max_frames: int | None = DEFAULT_MAX_FRAMES, allow_network: bool = False) -> VideoInfo:
    """Open `path`, check the caps from the stream header, scan its packets (no decoding) and describe it."""
    container, stream = _open(path, max_pixels, allow_network=allow_network)
    try:
        return _scan(path, container, stream, max_frames)
    finally:
        container.close()


def _packet_signature(pkt) -> tuple:
    return pkt.pts, pkt.dts, pkt.size, bytes(pkt)[:64]


def _check_budget(src, info: VideoInfo, limits: DecodeLimits) -> None:
    """The decode budget from the packet scan, before anything is decoded (issue 16, D6)."""
    pixels = info.num_packets * info.width * info.height
    if limits.max_decoded_pixels is not None and pixels > limits.max_decoded_pixels:
        raise VideoTooLargeError(src, f"{info.num_packets} frames of {info.width}x{info.height} = {pixels:.3g} "
                                      f"decoded pixels exceed max_decoded_pixels={limits.max_decoded_pixels:.3g}")
    if limits.max_pixel_rate is not None and info.num_packets > 1:
        rate = pixels / max(info.duration, 1e-9)
        if rate > limits.max_pixel_rate:
            raise VideoTooLargeError(src, f"{info.width}x{info.height} at {info.num_packets / info.duration:.4g} "
                                          f"frames per second of timeline = {rate:.3g} pixels/s exceeds "
                                          f"max_pixel_rate={limits.max_pixel_rate:.3g}")


class _Reader:
    """Opens the file once for the packet scan and the decode.

    Why: av.open probes the streams (FFmpeg decodes frames to find their parameters), which took 15-35 ms on the
    H.264 and MPEG-2 media files, a tenth of the whole extraction on short clips. After the scan the container is
    rewound and handed out once, but only if its first packet is the scan's first packet; otherwise, and for
    every later decode (native mode falling back to transcode), the file is opened again. Use it as a context
    manager: a container never handed out is closed on exit.

    `limits` (default: `DecodeLimits` with these caps) is enforced from the scan and, packet by packet, on what
    `open()` hands out: in-band H.264 size changes, decoded pixels and the wall-clock budget."""

    def __init__(self, src, max_pixels: int | None, max_frames: int | None, limits: DecodeLimits | None = None):
        self.src = src
        if limits is None:
            limits = DecodeLimits(max_pixels=max_pixels, max_frames=max_frames)
        self.limits = limits
        self.started = time.monotonic()
        container, stream = _open(src, max_pixels, allow_network=limits.allow_network)
        try:
            self.info = _scan(src, container, stream, max_frames)
            _check_budget(src, self.info, limits)
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
            container, stream, packets = self._kept
            self._kept = None
        else:
            container, stream = _open(self.src, self.limits.max_pixels, allow_network=self.limits.allow_network)
            packets = container.demux(stream)
        return container, stream, self._guarded(stream, packets)

    def _guarded(self, stream, packets):
        """`packets`, checked before each one reaches the decoder (see the class docstring)."""
        limits, src = self.limits, self.src
        cc = stream.codec_context
        length_size = None
        if cc.name == "h264":
            extra = bytes(cc.extradata) if cc.extradata else b""
            length_size = (extra[4] & 3) + 1 if len(extra) > 4 and extra[0] == 1 else None
        check_sps = cc.name == "h264" and limits.max_pixels is not None
        deadline = None if limits.max_decode_seconds is None else self.started + limits.max_decode_seconds
        index = pixels = 0
        for pkt in packets:
            if pkt.size:
                if deadline is not None and time.monotonic() > deadline:
                    raise VideoTooLargeError(src, f"decoding exceeded max_decode_seconds={limits.max_decode_seconds} "
                                                  f"(stopped at frame {index})")
                if check_sps:
                    for w, h in _h264_packet_sps_sizes(bytes(pkt), length_size):
                        _check_pixels(src, w, h, limits.max_pixels, f"frame {index}: in-band H.264 SPS sets the")
                pixels += int(cc.width or 0) * int(cc.height or 0)
                if limits.max_decoded_pixels is not None and pixels > limits.max_decoded_pixels:
                    raise VideoTooLargeError(src, f"more than max_decoded_pixels={limits.max_decoded_pixels:.3g} "
                                                  f"decoded pixels (frame {index})")
                index += 1
            yield pkt

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc) -> None:
        if self._kept is not None:
            self._kept[0].close()
            self._kept = None
