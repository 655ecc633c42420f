"""Crafted inputs for the hardening tests and the fuzz benchmark (issue 16), all written here with PyAV.

- `write_resolution_switch`: an H.264 stream that changes its frame size mid-stream through an in-band SPS: two
  segments encoded separately as Annex-B elementary streams, concatenated, remuxed (stream copy) to mp4 or mkv.
- `write_ffconcat` / `write_playlist`: text files that make FFmpeg open other resources.
- `protocol_like_path`: a local relative path whose first folder looks like a URL scheme (`http:`), which FFmpeg
  would read as a URL if handed the string.
- `LoopbackCounter`: an HTTP server on 127.0.0.1 that counts the requests it receives.
"""

from __future__ import annotations

import io
import os
import threading
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np

__all__ = ["h264_segment", "write_resolution_switch", "write_ffconcat", "write_playlist", "protocol_like_path",
           "LoopbackCounter", "write_animated_webp"]


def h264_segment(width: int, height: int, frames: int, *, seed: int = 0) -> bytes:
    """An Annex-B H.264 elementary stream (SPS/PPS in-band) of a smooth moving gradient: tiny even at 4K."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"preset": "ultrafast", "x264-params": "keyint=1000:scenecut=0:bframes=0"}
        base = (np.add.outer(np.arange(height), np.arange(width)) + 37 * seed) % 256
        for i in range(frames):
            plane = np.roll(base, i, axis=1).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.stack([plane] * 3, axis=-1), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def write_resolution_switch(path, sizes=((64, 64), (320, 240)), frames=(10, 4), *, fps: int = 25) -> Path:
    """Segments of the given (W, H) sizes, concatenated as one H.264 elementary stream; the container comes from
    the suffix (.h264 raw, .mp4, .mkv, ...). The header declares the first size; the others arrive in-band."""
    path = Path(path)
    raw = b"".join(h264_segment(w, h, n, seed=i) for i, ((w, h), n) in enumerate(zip(sizes, frames)))
    if path.suffix == ".h264":
        path.write_bytes(raw)
        return path
    with av.open(io.BytesIO(raw), format="h264") as inp, av.open(str(path), "w") as out:
        src = inp.streams.video[0]
        dst = out.add_stream_from_template(src)
        dst.time_base = Fraction(1, fps)
        index = 0
        for packet in inp.demux(src):
            if packet.size == 0:
                continue
            packet.stream = dst
            packet.time_base = Fraction(1, fps)
            packet.pts = packet.dts = index
            packet.duration = 1
            index += 1
            out.mux(packet)
    return path


def write_ffconcat(path, entries: list[str]) -> Path:
    """An `ffconcat version 1.0` list naming `entries` (files or URLs)."""
    path = Path(path)
    path.write_text("ffconcat version 1.0\n" + "".join(f"file '{e}'\n" for e in entries))
    return path


def write_playlist(path, url: str) -> Path:
    """A minimal HLS playlist with one segment at `url`."""
    path = Path(path)
    path.write_text(f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{url}\n#EXT-X-ENDLIST\n")
    return path


def protocol_like_path(root, scheme: str, host: str, name: str = "x.mp4", content: bytes = b"") -> str:
    """Create `root/<scheme>:/<host>/<name>` locally and return the relative path `<scheme>:/<host>/<name>`
    (call with cwd=root). FFmpeg would take that string as a URL."""
    folder = Path(root) / f"{scheme}:" / host
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return f"{scheme}:/{host}/{name}"


def write_animated_webp(path, frames: int = 3, size: int = 32) -> Path:
    """An animated WebP (PIL)."""
    from PIL import Image

    images = [Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0, format="WEBP")
    return Path(path)


class LoopbackCounter:
    """HTTP server on 127.0.0.1 that answers every GET with `body` and counts the requests (`.count`)."""

    def __init__(self, body: bytes = b""):
        counter = self
        self.count = 0
        self.body = body

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def _answer(self, head: bool):
                counter.count += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(counter.body)))
                self.send_header("Content-Type", "video/mp4")
                self.end_headers()
                if not head:
                    self.wfile.write(counter.body)

            def do_GET(self):
                self._answer(False)

            def do_HEAD(self):
                self._answer(True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def host(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> "LoopbackCounter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def fifo(path) -> Path:
    """A named pipe (nothing ever writes to it: opening it for reading would block)."""
    os.mkfifo(path)
    return Path(path)


# ------------------------------------------------------------------------------------------------ fuzz generators
HOSTILE_PATH_KINDS = ("http_folder", "https_folder", "concat_proto", "subfile_proto", "ffconcat", "playlist", "fifo",
                      "device", "url", "bytes_like_name")


def write_switch_seeds(out_dir) -> list[Path]:
    """Parameter-set switch seeds for the fuzzer: up and down mid-stream, in mp4, mkv and raw Annex-B, and one that
    switches above the default max_pixels (4352x4352)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_resolution_switch(out_dir / "switch_up.mp4", sizes=((64, 64), (160, 96)), frames=(12, 8)),
        write_resolution_switch(out_dir / "switch_down.mkv", sizes=((160, 96), (64, 64)), frames=(12, 8)),
        write_resolution_switch(out_dir / "switch_three.h264", sizes=((64, 64), (128, 64), (64, 128)),
                                frames=(8, 6, 6)),
        write_resolution_switch(out_dir / "switch_big.mkv", sizes=((64, 64), (4352, 4352)), frames=(6, 2)),
    ]


def hostile_path_case(kind: str, data: bytes, suffix: str, work_dir, host: str) -> str:
    """Write `data` so that the path string returned (relative to `work_dir`, the worker's cwd, unless absolute)
    tries `kind`'s trick; the worker must answer with a result or a typed error and never touch the network."""
    work_dir = Path(work_dir)
    (work_dir / f"case{suffix}").write_bytes(data)
    if kind in ("http_folder", "https_folder"):
        return protocol_like_path(work_dir, kind.split("_")[0], host, name=f"case{suffix}", content=data)
    if kind in ("concat_proto", "subfile_proto"):  # a local file literally named like a protocol string
        name = f"concat:case{suffix}|case{suffix}" if kind == "concat_proto" else \
            f"subfile,,start,0,end,{len(data)},,:case{suffix}"
        (work_dir / name).write_bytes(data)
        return name
    if kind == "ffconcat":
        write_ffconcat(work_dir / "list.mp4", [f"case{suffix}", f"http://{host}/remote.mp4"])
        return "list.mp4"
    if kind == "playlist":
        write_playlist(work_dir / "list.m3u8.mp4", f"http://{host}/segment.ts")
        return "list.m3u8.mp4"
    if kind == "fifo":
        if not (work_dir / "pipe.mp4").exists():
            fifo(work_dir / "pipe.mp4")
        return str(work_dir / "pipe.mp4")
    if kind == "device":
        return "/dev/zero"
    if kind == "url":
        return f"http://{host}/x{suffix}"
    if kind == "bytes_like_name":  # a local file literally named like a protocol list
        name = f"pipe:{0}{suffix}"
        (work_dir / name).write_bytes(data)
        return name
    raise ValueError(kind)
