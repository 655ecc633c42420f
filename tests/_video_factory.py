"""Small video files for the codec tests, written with PyAV (no ffmpeg binary needed).

Textured content and motion come from transformers_cope.data.render; this module adds what render_video does not
cover: other codecs (HEVC, VP9, MJPEG, MPEG-2), all-intra streams, odd sizes, audio-only files, damaged files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from transformers_cope.data.render import Scene, Sprite, iter_frames, render_video, textured_scene

__all__ = ["Scene", "Sprite", "textured_scene", "render_video", "write_video", "write_audio_only",
           "write_y4m_header", "cut_file"]


def write_video(path, scene: Scene, *, codec: str = "libx264", fps: int = 30, pix_fmt: str = "yuv420p",
                gop_size: int | None = None, bframes: int = 0, options: dict | None = None,
                container_options: dict | None = None, x264_params: str = "", format: str | None = None):
    """Encode `scene` with any PyAV encoder; single-threaded so the bytes are reproducible. `path` is a file path
    (returned as a Path) or a writable binary file object (returned as is; give `format`, e.g. "mpegts");
    `x264_params` are appended to libx264's (e.g. "open-gop=1")."""
    target = path if hasattr(path, "write") else str(Path(path))
    with av.open(target, mode="w", format=format, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, pix_fmt
        cc = stream.codec_context
        cc.thread_count = 1
        opts = dict(options or {})
        if codec == "libx264":
            params = [f"bframes={bframes}", "scenecut=0", "b-adapt=0"]
            if gop_size:
                params += [f"keyint={gop_size}", f"min-keyint={gop_size}"]
            opts.setdefault("preset", "veryfast")
            opts["x264-params"] = ":".join(params + ([x264_params] if x264_params else []))
        else:
            if gop_size:
                cc.gop_size = gop_size
            if codec in ("mpeg4", "mpeg2video", "mpeg1video"):
                cc.max_b_frames = bframes
            if codec in ("mpeg4", "mpeg2video", "mpeg1video", "mjpeg"):
                cc.qscale = True  # fixed quantiser 2 (ffmpeg -q:v 2): the defaults are very blocky at test sizes
                cc.global_quality = 2 * 118
        stream.options = opts
        for i, rgb in enumerate(iter_frames(scene)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path if hasattr(path, "write") else Path(path)


def write_audio_only(path, seconds: float = 0.5, codec: str = "aac") -> Path:
    """An audio-only file (a sine tone): a real media file with no video stream."""
    path = Path(path)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=44100)
        n = 1024
        t = 0
        while t < seconds * 44100:
            samples = (0.2 * np.sin(2 * np.pi * 440 * (np.arange(n) + t) / 44100)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 44100
            frame.pts = t
            out.mux(stream.encode(frame))
            t += n
        out.mux(stream.encode(None))
    return path


def write_y4m_header(path, width: int, height: int) -> Path:
    """A raw YUV4MPEG2 file that declares a frame size but holds a tiny bit of data: probes as a huge video."""
    path = Path(path)
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + b"\x80" * 4096)
    return path


def cut_file(src, dst, fraction: float) -> Path:
    """Copy the first `fraction` of a file (a download that stopped midway)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
