"""Parallel extraction speed-up: `extract_primitives(num_workers=N)` against the sequential run, same file, same run.

Why: the codec work is what a user waits for before the first token, and it runs on one process; splitting the file
at codec keyframes lets worker processes share it (`transformers_cope.codec_parallel`). The outputs are checked bit
for bit against the sequential ones here too. Columns: median wall seconds over interleaved runs (a change of
machine load hits every variant about equally) and the speed-up sequential / parallel.

Run: python benchmarks/bench_parallel_extraction.py [--repeats 3] [--workers 1 2] [--seconds 60] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _common import (  # noqa: E402
    MEDIA_DIR,
    default_workdir,
    generated_clip,
    interleaved_runs,
    load_average,
    machine_info,
    median,
    table,
)
from transformers_cope.codec import extract_primitives, probe_video  # noqa: E402

FIELDS = ("keyframes", "motion_vectors", "intra_masks", "residuals", "timestamps", "frame_indices")


def same(a, b) -> bool:
    return a.frame_types == b.frame_types and all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=int, default=60, help="length of the generated 720p clip")
    ap.add_argument("--workdir", type=Path, default=default_workdir())
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print("\n".join(machine_info()))
    print(f"cores available to this process: {len(os.sched_getaffinity(0))}; load at start: {load_average()}")
    clips = {name: MEDIA_DIR / name for name in ("vid_h264.mp4", "vid_mpeg4_part2.mp4", "city_cc0.mpg")}
    clips[f"generated 720p {args.seconds}s"] = generated_clip(args.workdir, seconds=args.seconds, fps=30, height=720,
                                                                width=1280, name=f"clip720p_{args.seconds}s")
    rows = []
    for label, path in clips.items():
        info = probe_video(path)
        jobs = {n: (lambda n=n: extract_primitives(path, num_workers=n)) for n in args.workers}
        reference = extract_primitives(path, num_workers=1)
        identical = all(same(reference, extract_primitives(path, num_workers=n)) for n in args.workers)
        times = interleaved_runs(jobs, args.repeats, progress=label)
        base = median(times[args.workers[0]])
        rows.append([label, f"{info.width}x{info.height} {info.codec}", info.num_packets, len(info.keyframe_times)]
                    + [f"{median(times[n]):.2f} s ({base / median(times[n]):.2f}x)" for n in args.workers]
                    + ["yes" if identical else "NO"])
    print(table(["clip", "source", "packets", "keyframes"] + [f"{n} worker(s)" for n in args.workers]
                + ["bit-identical"], rows))
    print(f"load at end: {load_average()}")


if __name__ == "__main__":
    main()
