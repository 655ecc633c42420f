"""Codec layer speed: plain RGB decode vs motion-vector export vs full primitive extraction, per video.

Why: CoPE-VideoLM's promise is that Δ steps are cheap; the codec layer must not be what makes them expensive.
The target is that extracting primitives (keyframes, fused motion, residuals) runs at least 0.8x as fast as a
plain decode of the same file to RGB frames, which any frame-based video LM pays anyway.

Columns are source frames per second (decoded frames / wall time), median of interleaved runs, and the ratio of
the primitives to the RGB decode both in wall time and in process CPU time (robust to a loaded machine):
  * RGB decode          PyAV, frame threads, every frame converted to RGB (what frame samplers do)
  * MV export           `read_motion_vectors` (every frame's vectors, no pixels)
  * primitives          `extract_primitives` at its defaults (auto mode, 1 fps, GOP 8, 224 px); also both modes
                        separately where the file allows native mode
  * ratio               primitives / RGB decode

Run: python benchmarks/bench_codec.py [--repeats 3] [--seconds 6] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import av  # noqa: E402
import torch  # noqa: E402

from _common import (  # noqa: E402
    MEDIA_DIR,
    default_workdir,
    generated_1080p_clip,
    interleaved_runs,
    load_average,
    machine_info,
    median,
    table,
)
from transformers_cope.codec import extract_primitives, probe_video, read_motion_vectors  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rgb_decode(path) -> int:
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for f in c.decode(s):
            f.to_ndarray(format="rgb24")
            n += 1
    return n


def mv_export(path) -> int:
    return sum(1 for _ in read_motion_vectors(path))


def primitives(path, mode: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extract_primitives(path, mode=mode)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6, help="length of the generated 1080p clip")
    ap.add_argument("--workdir", type=Path, default=default_workdir())
    args = ap.parse_args()
    torch.set_num_threads(1)  # the library keeps torch out of its loops; a benchmark may pin it anyway

    videos = {
        "vid_h264.mp4": MEDIA_DIR / "vid_h264.mp4",
        "vid_mpeg4_part2.mp4": MEDIA_DIR / "vid_mpeg4_part2.mp4",
    }
    t = time.perf_counter()
    videos["generated 1080p"] = generated_1080p_clip(args.workdir, seconds=args.seconds)
    print(f"generated 1080p clip ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    print("\n".join(machine_info()))
    print("columns: source frames per second (median of interleaved runs); ratio = primitives / RGB decode\n")
    rows = []
    for name, path in videos.items():
        info = probe_video(path)
        n = info.num_packets
        chosen = extract_primitives(path).mode
        jobs = {"rgb": lambda p=path: rgb_decode(p), "mv": lambda p=path: mv_export(p),
                "auto": lambda p=path: primitives(p, "auto")}
        other = "native" if chosen == "transcode" else "transcode"
        if other == "transcode" or info.reordered is False and info.codec in ("h264", "mpeg4", "mpeg2video"):
            jobs[other] = lambda p=path, m=other: primitives(p, m)
        cpu = {k: [] for k in jobs}

        def timed_cpu(key, job):
            def run():
                start = _cpu()
                job()
                cpu[key].append(_cpu() - start)
            return run

        times = interleaved_runs({k: timed_cpu(k, j) for k, j in jobs.items()}, repeats=args.repeats, warmup=1,
                                 progress=name)
        cpu = {k: v[1:] for k, v in cpu.items()}  # drop the warm-up round
        fps = {k: n / median(v) for k, v in times.items()}
        cpu_ratio = {k: median(cpu["rgb"]) / median(v) for k, v in cpu.items()}
        desc = (f"{name} ({info.codec} {info.width}x{info.height}, {n} frames, "
                f"{'B-frames' if info.reordered else 'I/P'})")
        rows.append([desc, f"{fps['rgb']:.0f}", f"{fps['mv']:.0f}", f"{fps['auto']:.0f} ({chosen})",
                     f"{fps['auto'] / fps['rgb']:.2f}", f"{cpu_ratio['auto']:.2f}",
                     f"{fps[other]:.0f} ({other}, {fps[other] / fps['rgb']:.2f} / {cpu_ratio[other]:.2f})"
                     if other in fps else "n/a (B-frames)"])
    print(table(["video", "RGB decode f/s", "MV export f/s", "primitives f/s", "ratio (wall)", "ratio (CPU)",
                 "other mode f/s (ratio wall / CPU)"], rows))
    print("\nratio (CPU): RGB decode's process CPU time / the primitives' (user + system, all threads): less "
          "sensitive than wall time to other processes on a shared machine")
    print(f"\nload average at end: {load_average()}")


if __name__ == "__main__":
    main()
