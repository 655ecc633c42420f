"""Peak memory of the processor on long videos: RSS must not grow with duration beyond the output tensors.

Why: the codec layer streams (decode -> sample -> re-encode -> fuse) and keeps only the sampled steps, so an hour of
video must cost about what a minute costs, plus the returned arrays. Each duration is measured in a fresh
subprocess (peak RSS from resource.getrusage, current RSS from /proc/self/status): the baseline is taken after
importing torch/transformers and processing a 10 s clip of the same kind (so the libraries and codecs are loaded),
the peak after processing the long one with a progress bar. Videos: 64x64 textured pan at 2 fps (H.264), steps at
1 fps with no step cap (the output grows with duration on purpose), the tiny processor (64 px codec frames).

Run: python benchmarks/long_video_memory.py [--minutes 1 10 60] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROCESSOR = {"codec_size": 64, "fps": 1.0, "gop_size": 8, "max_steps": None}


def write_long_video(path: Path, minutes: float, *, fps: int = 2, size: int = 64, seed: int = 0) -> Path:
    """A `minutes`-long size x size H.264 video at `fps`: a random texture panning 3 px right and 1 px down per frame
    (encoded in seconds: 7,200 frames for an hour)."""
    import av
    import numpy as np

    path = Path(path)
    texture = np.random.default_rng(seed).integers(0, 256, (size * 4, size * 4, 3), dtype=np.uint8)
    texture = ((texture.astype(np.uint16) + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) // 3).astype(np.uint8)
    n = int(round(minutes * 60 * fps))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"preset": "veryfast", "x264-params": "keyint=250:bframes=0"}
        for i in range(n):
            y, x = (i * 1) % (size * 3), (i * 3) % (size * 3)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[y:y + size, x:x + size]), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    return path


def _rss_now_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(video: str, warmup: str, progress: bool) -> dict:
    """Runs in the measuring subprocess: baseline after a warm-up clip, then the long video through the processor
    (extraction with a progress bar, then tensorisation)."""
    import torch

    torch.set_num_threads(1)
    from transformers_cope.codec import extract_primitives
    from transformers_cope.tiny import build_tiny_video_processor

    processor = build_tiny_video_processor(**PROCESSOR)
    codec_kwargs = processor._codec_kwargs(processor._options({}))
    processor(videos=[warmup], return_tensors="pt")
    base_peak, base_now = _peak_mb(), _rss_now_mb()
    t = time.perf_counter()
    primitives = extract_primitives(video, progress=progress, **codec_kwargs)
    extract_peak = _peak_mb()
    out = processor(videos=[primitives], return_tensors="pt")
    seconds = time.perf_counter() - t
    out_bytes = sum(v.numel() * v.element_size() for v in out.values() if isinstance(v, torch.Tensor))
    prim_bytes = sum(getattr(primitives, k).nbytes for k in ("keyframes", "motion_vectors", "intra_masks",
                                                             "residuals", "timestamps", "frame_indices"))
    return {"steps": len(out["video_frame_types"][0]), "duration_s": primitives.duration, "seconds": seconds,
            "baseline_peak_mb": base_peak, "baseline_rss_mb": base_now, "peak_mb": _peak_mb(),
            "growth_mb": _peak_mb() - base_peak, "extract_growth_mb": extract_peak - base_peak, "output_mb": out_bytes / 2 ** 20,
            "primitives_mb": prim_bytes / 2 ** 20}


def measure(video: Path, warmup: Path, *, progress: bool = False, timeout: float = 1200) -> dict:
    """Peak-RSS numbers for `video` from a fresh interpreter (see `child`)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(video), str(warmup)]
                          + (["--progress"] if progress else []), stdout=subprocess.PIPE,
                          stderr=None if progress else subprocess.PIPE, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement failed ({proc.returncode}): {(proc.stderr or '')[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("VIDEO", "WARMUP"), help=argparse.SUPPRESS)
    parser.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, progress=args.progress)))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cope-long-"))
    workdir.mkdir(parents=True, exist_ok=True)
    warmup = write_long_video(workdir / "warmup.mp4", 10 / 60, seed=1)
    print(f"processor {PROCESSOR}; 64x64 H.264 at 2 fps; load average {os.getloadavg()[0]:.2f}")
    rows = []
    for minutes in args.minutes:
        t = time.perf_counter()
        video = write_long_video(workdir / f"long_{minutes:g}min.mp4", minutes)
        print(f"wrote {video.name} ({video.stat().st_size / 2 ** 20:.1f} MB) in {time.perf_counter() - t:.1f} s",
              flush=True)
        rows.append((minutes, measure(video, warmup, progress=True)))
    print(f"\n{'minutes':>7} {'steps':>6} {'time s':>7} {'baseline MB':>11} {'peak MB':>8} {'growth MB':>9} "
          f"{'output MB':>9} {'primitives MB':>13}")
    for minutes, r in rows:
        print(f"{minutes:>7g} {r['steps']:>6} {r['seconds']:>7.1f} {r['baseline_peak_mb']:>11.0f} {r['peak_mb']:>8.0f} "
              f"{r['growth_mb']:>9.1f} {r['output_mb']:>9.2f} {r['primitives_mb']:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
