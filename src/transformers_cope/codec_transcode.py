"""Re-encoding: encoder settings for an I/P-only, one-reference stream, area scaling, and the public `transcode`.

Why: the transcode path of `extract_primitives` and the public `transcode` share one encoder configuration, so a
file written by `transcode` and the in-memory stream of the extractor have the same structure.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path

import av

from .codec_decode import _decoded_frames, _timed, _warn_truncated
from .codec_probe import _describe, _Reader
from .codec_schedule import _grid_steps, _resolve_size, _sampled, _Sampler, _step_times
from .codec_types import DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS
from .errors import UnsupportedVideoError, VideoTooLargeError


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
