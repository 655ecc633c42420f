"""Shared helpers of the benchmark scripts: machine description, robust timing, tables, generated clips.

Why: both benchmarks must print comparable, honest numbers on a shared (often loaded) machine, so they time the
same way (warm-up, several runs, median, methods interleaved run by run so that load changes hit all of them alike)
and print the machine and its load next to every table.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA_DIR = REPO.parent / "shared" / "media"  # the repository's sibling `shared/media` (the real test videos)


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return "n/a"


def machine_info(device: str = "cpu") -> list[str]:
    """Lines describing where the numbers come from (printed above every table)."""
    import av
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines = [
        f"machine: {platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} logical cores, "
        f"torch threads {torch.get_num_threads()}",
        f"load average (1/5/15 min) at start: {load_average()}",
        f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"av {av.__version__} (FFmpeg {'.'.join(map(str, av.library_versions.get('libavcodec', ())))} libavcodec)",
    ]
    if device.startswith("cuda") and torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}")
    return lines


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def interleaved_runs(jobs: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                     sync: Callable[[], None] | None = None, progress: str | None = None,
                     cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Wall time of each job, `warmup` untimed rounds then `repeats` timed rounds; every round runs all jobs in
    turn (rotating the start), so a change of machine load hits every job about equally. If `cpu` is given, the
    process CPU time of each run (all threads: decoder threads included) is appended to it per job: the work done,
    which other processes' load disturbs much less than the wall time."""
    names = list(jobs)
    times: dict[str, list[float]] = {name: [] for name in names}
    if cpu is not None:
        cpu.update({name: [] for name in names})
    for r in range(warmup + repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            if sync:
                sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            jobs[name]()
            if sync:
                sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
                if cpu is not None:
                    cpu[name].append(time.process_time() - start_cpu)
        if progress:
            what = "warm-up" if r < warmup else f"run {r - warmup + 1}/{repeats}"
            print(f"  [{progress}] {what} done", file=sys.stderr, flush=True)
    return times


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (what the README quotes verbatim)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def generated_clip(workdir: Path, *, seconds: int, fps: int, height: int, width: int, name: str,
                   codec: str = "libx264") -> Path:
    """A textured synthetic clip (camera pan + a moving sprite) rendered once into `workdir` and reused."""
    from transformers_cope.data import make_textured_video

    path = Path(workdir) / f"{name}_{seconds}s_{fps}fps_{height}x{width}_{codec}.mp4"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.mp4")
        make_textured_video(tmp, height=height, width=width, num_frames=seconds * fps, fps=fps,
                            pan=(1.0, 0.5), sprite_velocity=(2.0, -1.0), codec=codec)
        tmp.replace(path)
    return path


def default_workdir() -> Path:
    """Where generated clips are cached between runs (override with --workdir or COPE_BENCH_DIR)."""
    return Path(os.environ.get("COPE_BENCH_DIR", Path(os.environ.get("TMPDIR", "/tmp")) / "cope_bench"))


def texture(height: int, width: int, seed: int):
    """A 1/f ("pink") colour texture, uint8 (height, width, 3): the spectrum of natural images, so synthetic pans
    cost the encoder and decoder what real footage does. Same seed => same pixels."""
    import numpy as np

    g = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(height, width))
    out = np.empty((height, width, 3), np.float32)
    for c in range(3):
        spec = amp * np.exp(2j * np.pi * g.random(amp.shape))
        img = np.fft.irfft2(spec, s=(height, width))
        out[..., c] = (img - img.mean()) / (img.std() + 1e-9)
    return np.clip(128 + 40 * out, 0, 255).astype(np.uint8)


def generated_1080p_clip(workdir: Path, *, seconds: int = 10, fps: int = 30, bframes: int = 3) -> Path:
    """A 1920x1080 H.264 clip like a camera or web file (High profile, B-frames, x264's default GOP), made fast:
    one 1/f colour texture panned by whole pixels, a textured square moving across it, and mild sensor noise so the
    bitrate (and so the decode cost) is that of real footage rather than of a smooth synthetic frame."""
    import numpy as np

    path = Path(workdir) / f"clip1080p_{seconds}s_{fps}fps_b{bframes}.mp4"
    if path.exists():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, w, pan = 1080, 1920, (3, 1)  # content moves 3 px right and 1 px down per frame
    n = seconds * fps
    big_h, big_w = h + pan[1] * n + 8, w + pan[0] * n + 8

    background = texture(big_h, big_w, 1)
    sprite = texture(240, 240, 2)

    def frames():
        for t in range(n):
            # the camera pans right/down, so the content moves left/up: crop further right/down each frame
            frame = background[pan[1] * (n - t):pan[1] * (n - t) + h, pan[0] * (n - t):pan[0] * (n - t) + w].copy()
            x, y = 200 + 8 * t % (w - 440), 400 + (4 * t) % (h - 640)
            frame[y:y + 240, x:x + 240] = sprite
            yield sensor_noise(frame, rng, 3)

    return encode_h264(path, frames(), fps=fps, width=w, height=h, bframes=bframes)


def sensor_noise(frame, rng, amplitude: int):
    """`frame` (H, W, 3 uint8) plus integer noise in [-amplitude, amplitude], one value per 2x2 block (chroma-sized,
    so the encoder sees grain in every plane), the same on the three channels."""
    import numpy as np

    h, w = frame.shape[:2]
    noise = rng.integers(-amplitude, amplitude + 1, size=(h // 2, w // 2, 1), dtype=np.int16)
    return np.clip(frame.astype(np.int16) + np.repeat(np.repeat(noise, 2, 0), 2, 1), 0, 255).astype(np.uint8)


def encode_h264(path: Path, frames, *, fps: int, width: int, height: int, bframes: int) -> Path:
    """Encode RGB frames as H.264 like a camera or web file (x264 veryfast, CRF 23, `bframes` B-frames, its default
    GOP); written to a temporary name first, so an interrupted run never leaves a clip the cache would reuse."""
    import av

    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "x264-params": f"bframes={bframes}"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    tmp.replace(path)
    return path
