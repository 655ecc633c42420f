"""Live sources: codec primitives GOP by GOP from a file that is still being written, a byte stream, demuxed packets
or decoded frames, while the source grows.

Why: a session can answer questions about a video while it is still arriving (a recording, a stream). The codec
side only has to keep producing GOPs as data comes in and to stop cleanly: `iter_live_primitives` reads through a
blocking, non-seekable reader that waits for more data (`poll` seconds between looks) until `finished` says the
writer is done or no data came for `idle_timeout` seconds, and runs the transcode path on an open-ended schedule
(steps every 1/fps seconds from the first frame, for as long as frames come). Readable while growing: MPEG-TS and
fragmented MP4 (`movflags=frag_keyframe+empty_moov`); a plain MP4 writes its index last and cannot be read before
it is finished.

Differences from a finished file: there is no packet scan (so no `max_steps` subsampling, no native mode; the
schedule is `fps` from the first frame), and a GOP is handed out once its last step's frame and the frame after it
have arrived. The last GOP may be partial.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction

import av
import numpy as np

from .codec_extract import _check_options, _iter_transcode, _Plan
from .codec_types import GOPPrimitives, VideoInfo
from .errors import CorruptVideoError, NotAVideoError

__all__ = ["iter_live_primitives"]


class _GrowingReader(io.RawIOBase):
    """A read-only, non-seekable view of a growing byte source: a file being written, or an iterator of byte chunks.
    `read` blocks until data arrives; it reports the end once `finished()` is true and everything is read, or after
    `idle_timeout` seconds without new data (`timed_out` tells which)."""

    def __init__(self, source, *, poll: float, idle_timeout: float, finished: Callable[[], bool]):
        super().__init__()
        self.poll, self.idle_timeout, self.finished = poll, idle_timeout, finished
        self.timed_out = False
        self.bytes_read = 0
        self._file = None
        self._chunks = None
        self._pending = b""
        if isinstance(source, (str, os.PathLike)):
            self.name = os.fspath(source)
        else:
            self._chunks = iter(source)
            self.name = "<byte stream>"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def _from_file(self, size: int) -> bytes:
        if self._file is None:
            if not os.path.exists(self.name):
                return b""
            self._file = open(self.name, "rb")
        return self._file.read(size)

    def _from_chunks(self, size: int) -> bytes | None:
        if not self._pending:
            try:
                self._pending = bytes(next(self._chunks))
            except StopIteration:
                return None
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def readinto(self, buffer) -> int:
        size = len(buffer)
        idle_since = time.monotonic()
        while True:
            if self._chunks is not None:
                data = self._from_chunks(size)
                if data is None:
                    return 0
            else:
                done = self.finished()  # read before looking, so bytes written just before the end are not lost
                data = self._from_file(size)
                if not data and done:
                    return 0
            if data:
                buffer[:len(data)] = data
                self.bytes_read += len(data)
                return len(data)
            if time.monotonic() - idle_since > self.idle_timeout:
                self.timed_out = True
                return 0
            time.sleep(self.poll)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        super().close()


class _Letters:
    """The "I"/"P" letter of step k of an open-ended video (step_frame_types' rule); its length is unbounded."""

    def __init__(self, gop_size: int, keyframes_per_gop: int):
        self.gop_size = gop_size
        self.key = {(i * gop_size) // keyframes_per_gop for i in range(keyframes_per_gop)}

    def __getitem__(self, k: int) -> str:
        return "I" if k % self.gop_size in self.key else "P"

    def __len__(self) -> int:
        return sys.maxsize


class _LiveSchedule:
    """The transcode path's targets on an open-ended grid: step k at first + k / fps (first: the first frame's time),
    and codec frames inside each Δ window at ~codec_fps, made as the stream reaches them. It is the sampler too
    (`take`, `done`), with `kind` the growing list of what each target is for (see _transcode_targets)."""

    def __init__(self, fps: float, codec_fps: float, letters: _Letters):
        self.fps, self.letters = fps, letters
        self.m = max(1, int(round(codec_fps / fps)))
        self.tt: list[float] = []
        self.kind: list[int] = []
        self.step_start: list[int] = []  # index of each step's first target
        self.first = self.latest = None
        self.ended = False
        self.pos = 0
        self.done = False

    def started(self, timed):
        """Pass (index, time, frame) through, taking the grid's origin from the first frame and noting the latest
        frame's time and the end of the stream."""
        for item in timed:
            if self.first is None:
                self.first = item[1]
            self.latest = item[1]
            yield item
        self.ended = True

    def _time(self, k: int) -> float:
        return self.first + k / self.fps

    def _extend(self) -> None:
        k = len(self.step_start)
        self.step_start.append(len(self.tt))
        if k and self.letters[k] == "P":
            for j in range(1, self.m):
                self.tt.append(self._time(k - 1) + (self._time(k) - self._time(k - 1)) * j / self.m)
                self.kind.append(-1 - k)
        self.tt.append(self._time(k))
        self.kind.append(k)

    def take(self, upto: float) -> range:
        while not self.tt or self.tt[-1] <= upto:
            self._extend()
        end = self.pos
        while end < len(self.tt) and self.tt[end] <= upto:
            end += 1
        if self.ended:  # like a finished file's schedule: no step after the last frame
            last_step = int(np.floor((self.latest - self.first) * self.fps + 1e-6))
            end = min(end, self.step_start[last_step + 1] if last_step + 1 < len(self.step_start) else end)
        r = range(self.pos, max(end, self.pos))
        self.pos = max(end, self.pos)
        return r


def _frames_from(items: Iterable, frame_rate: float) -> Iterator[av.VideoFrame]:
    """Decoded frames from numpy RGB arrays (H, W, 3) uint8, av.VideoFrame, or (time in seconds, either) pairs;
    untimed items get index / frame_rate."""
    tb = Fraction(1, 90000)
    for i, item in enumerate(items):
        t = None
        if isinstance(item, tuple):
            t, item = item
        if isinstance(item, np.ndarray):
            if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
                raise TypeError(f"frame {i}: expected an RGB uint8 array (H, W, 3), got {item.dtype} {item.shape}")
            frame = av.VideoFrame.from_ndarray(item, format="rgb24")
        elif isinstance(item, av.VideoFrame):
            frame = item
            if t is None and frame.time is not None:
                t = float(frame.time)
        else:
            raise TypeError(f"frame {i}: expected a numpy RGB array or an av.VideoFrame, got {type(item).__name__}")
        frame.pts = int(round((i / frame_rate if t is None else float(t)) / tb))
        frame.time_base = tb
        yield frame


def _stream_info(stream, frame_rate: float) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    cc = stream.codec_context
    return _live_info(cc.name, cc.width, cc.height, float(rate) if rate else frame_rate)


def _live_info(codec: str, width: int, height: int, fps: float) -> VideoInfo:
    return VideoInfo(codec=codec, width=width, height=height, fps=fps, num_packets=0, first_time=None,
                     last_time=None, duration=0.0, keyframe_times=np.zeros(0), reordered=None, ref_frames=None,
                     pix_fmt=None)


def iter_live_primitives(source, *, fps: float = 1.0, gop_size: int = 8, keyframes_per_gop: int = 1,
                         size=(224, 224), mv_block: int = 16, residual_scale: float = 0.25,
                         return_frames: bool = False, codec: str = "mpeg4", codec_fps: float = 5.0,
                         preset: str = "medium", crf: float = 23, qscale: int = 2, encoder_threads: int = 1,
                         residual_interpolation: str = "bilinear", keyframe_size=None, poll: float = 0.05,
                         idle_timeout: float = 10.0, finished: Callable[[], bool] | threading.Event | None = None,
                         frame_rate: float = 30.0, container_format: str | None = None,
                         max_frames: int | None = None, max_pixels: int | None = None) -> Iterator[GOPPrimitives]:
    """GOPs of codec primitives from a source that is still growing (arguments as in `extract_primitives`).

    source:
      * a path to a file being written (MPEG-TS, fragmented MP4, or any format FFmpeg reads as a stream): read
        as it grows, waiting `poll` s between looks; it ends once `finished` (a callable or threading.Event) is
        true and the file is read to its end, or when nothing new arrived for `idle_timeout` s. The file need not
        exist yet when called.
      * an iterable of bytes chunks of such a container (a socket, a pipe): ends with the iterable.
      * an iterable of av.Packet demuxed elsewhere (each bound to its stream, e.g. from `av.open(url).demux()`).
      * an iterable of decoded frames: RGB uint8 numpy arrays (H, W, 3), av.VideoFrame, or (seconds, frame)
        pairs; untimed frames are `frame_rate` per second. They are encoded in memory by the transcode path.
    container_format: FFmpeg's demuxer name for byte sources ("mpegts", "mp4", ...) when probing cannot tell.
    Yields `GOPPrimitives` (mode "transcode"; `duration` is the time covered so far) as each GOP completes; a
    generator, so stop early with `.close()`. Errors: NotAVideoError / CorruptVideoError when nothing decodes.
    """
    _check_options(fps, codec_fps, "transcode", residual_scale, mv_block, None, residual_interpolation, codec,
                   preset, gop_size, keyframes_per_gop)
    if isinstance(finished, threading.Event):
        finished = finished.is_set
    finished = finished or (lambda: False)
    letters = _Letters(gop_size, keyframes_per_gop)
    schedule = _LiveSchedule(fps, codec_fps, letters)
    reader = container = None
    label = source if isinstance(source, (str, os.PathLike)) else "<live source>"
    try:
        chunks = first = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            chunks = [bytes(source)]
        elif hasattr(source, "read"):  # a pipe or socket file: blocking reads
            chunks = iter(lambda: source.read(1 << 16), b"")
        elif not isinstance(source, (str, os.PathLike)):
            items = iter(source)
            try:
                first = next(items)
            except StopIteration:
                raise NotAVideoError(label, "the source gave nothing") from None
            if isinstance(first, (bytes, bytearray, memoryview)):
                chunks = _chain(first, items)
        if isinstance(source, (str, os.PathLike)) or chunks is not None:
            reader = _GrowingReader(source if chunks is None else chunks, poll=poll, idle_timeout=idle_timeout,
                                    finished=finished)
            try:
                # a small probe: do not wait for seconds of stream before the first frame
                container = av.open(reader, mode="r", format=container_format,
                                    options={"probesize": "32768", "analyzeduration": "0"})
            except av.error.FFmpegError as e:
                if reader.bytes_read == 0:
                    raise NotAVideoError(label, f"no data arrived within idle_timeout={idle_timeout} s") from None
                raise NotAVideoError(label, f"not a stream FFmpeg can read while it grows ({e})") from None
            if not container.streams.video:
                raise NotAVideoError(label, "no video stream")
            stream = container.streams.video[0]
            opened = (container, stream, container.demux(stream))
            info = _stream_info(stream, frame_rate)
        elif isinstance(first, av.Packet):
            stream = first.stream
            if stream is None or stream.type != "video":
                raise NotAVideoError(label, "packets must come from a demuxed video stream")
            opened = (None, stream, _chain(first, items))
            info = _stream_info(stream, frame_rate)
        else:
            frames = _frames_from(_chain(first, items), frame_rate)
            head = next(frames)
            info = _live_info("rawvideo", head.width, head.height, frame_rate)
            opened = (None, None, _chain(head, frames))
        plan = _Plan(src=label, info=info, times=None, types=letters, gop_size=gop_size, native=False, size=size,
                     keyframe_size=keyframe_size, mv_block=mv_block, residual_scale=residual_scale,
                     residual_interpolation=residual_interpolation, return_frames=return_frames, codec=codec,
                     codec_fps=codec_fps, enc_kwargs=dict(preset=preset, crf=crf, qscale=qscale,
                                                          threads=encoder_threads),
                     max_frames=max_frames, max_pixels=max_pixels, live=schedule)
        for gop in _iter_transcode(plan, opened):
            gop.duration = float(gop.timestamps[-1] - schedule.first + 1.0 / fps)
            yield gop
    except CorruptVideoError:
        if reader is not None and reader.bytes_read == 0:
            raise NotAVideoError(label, f"no data arrived within idle_timeout={idle_timeout} s") from None
        raise
    finally:
        if container is not None:
            container.close()
        if reader is not None:
            reader.close()


def _chain(first, rest):
    yield first
    yield from rest
