"""Preprocessing wall time per video, from the file to model-ready tensors.

Compared on the same file and the same sampled frames (the steps our processor takes at its defaults: 1 fps, at most
64 steps):
  * CoPE processor        `CoPEVideoProcessor()` at its defaults (paper: 224 px codec frames, GOP 8, 1 keyframe per
                          GOP, 384 px keyframes): file -> keyframe pixels + MV grids + residuals.
  * codec primitives      `extract_primitives` alone with the processor's settings (the codec part of the above).
  * plain PyAV decode     decode the file (frame threads) and convert exactly those frames to RGB arrays: the floor
                          for any decoder-based preprocessing.
  * VideoLlama3 / LLaVA-OneVision video processors (Transformers): their file loading needs torchcodec, so the frames
                          are decoded with `transformers.video_utils.load_video(backend="pyav")` (same frame
                          indices) and passed as arrays + metadata; the decode time is part of their total.
Warm-up, then the median of several runs, the methods interleaved run by run. Videos: the three real files in
../shared/media and a generated 1080p H.264 clip with B-frames (cached in --workdir).

Usage:
  python benchmarks/bench_preprocess.py            # all four videos
  python benchmarks/bench_preprocess.py --quick    # smoke run: one small video, one run
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import (  # noqa: E402
    MEDIA_DIR,
    default_workdir,
    fmt_s,
    generated_1080p_clip,
    generated_clip,
    interleaved_runs,
    load_average,
    machine_info,
    median,
    table,
)

MEDIA = ("vid_h264.mp4", "vid_mpeg4_part2.mp4", "city_cc0.mpg")
METHODS = ("cope_processor", "cope_primitives", "plain_decode", "videollama3", "llava_onevision")
LABELS = {
    "cope_processor": "CoPE processor (file -> tensors)",
    "cope_primitives": "codec primitives only",
    "plain_decode": "plain PyAV RGB decode",
    "videollama3": "VideoLlama3VideoProcessor (+ load_video)",
    "llava_onevision": "LlavaOnevisionVideoProcessor (+ load_video)",
}


def plain_decode(path: Path, indices: np.ndarray) -> list[np.ndarray]:
    """Decode with frame threads and keep the wanted frames as RGB arrays (source resolution)."""
    wanted = {int(i) for i in indices}
    last = max(wanted)
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                frames.append(frame.to_ndarray(format="rgb24"))
            if i >= last:
                break
    return frames


def hf_pipeline(processor, path: Path, indices: np.ndarray, with_metadata: bool):
    from transformers.video_utils import load_video

    frames, metadata = load_video(str(path), backend="pyav", sample_indices_fn=lambda metadata, **kw: indices)
    if with_metadata:
        return processor(videos=[frames], video_metadata=[metadata], return_tensors="pt")
    return processor(videos=[frames], return_tensors="pt")


def codec_kwargs(vp) -> dict:
    """The `extract_primitives` arguments that the processor uses at its defaults."""
    return vp._codec_kwargs(vp._options({}))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media-dir", type=Path, default=MEDIA_DIR)
    ap.add_argument("--workdir", type=Path, default=None, help="where the generated 1080p clip is cached")
    ap.add_argument("--videos", nargs="*", type=Path, default=None, help="video files (default: media + 1080p clip)")
    ap.add_argument("--no-1080p", action="store_true", help="skip the generated 1080p clip")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per method (median reported)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 1; 0 in --quick)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1, all methods alike: PyAV decodes with its own threads "
                         "and torch's OpenMP threads oversubscribe 2 cores; 0 keeps torch's default)")
    ap.add_argument("--quick", action="store_true", help="smoke run: one small generated clip, one run")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    from transformers import LlavaOnevisionVideoProcessor, VideoLlama3VideoProcessor

    from transformers_cope.codec import extract_primitives, probe_video
    from transformers_cope.video_processing_cope import CoPEVideoProcessor

    workdir = args.workdir or default_workdir()
    repeats = args.repeats or (1 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    if args.videos:
        videos = list(args.videos)
    elif args.quick:
        videos = [generated_clip(workdir, seconds=4, fps=10, height=96, width=160, name="preprocess_quick")]
    else:
        videos = [args.media_dir / name for name in MEDIA if (args.media_dir / name).exists()]
        missing = [name for name in MEDIA if not (args.media_dir / name).exists()]
        if missing:
            print(f"note: {missing} not found in {args.media_dir}", file=sys.stderr)
        if not args.no_1080p:
            videos.append(generated_1080p_clip(workdir))

    print("# bench_preprocess: file -> model-ready tensors, per video")
    for line in machine_info():
        print(line)
    ours = CoPEVideoProcessor()
    vl3 = VideoLlama3VideoProcessor()
    llava = LlavaOnevisionVideoProcessor()
    print(f"CoPE processor defaults: fps {ours.fps:g}, GOP {ours.gop_size}, {ours.keyframes_per_gop} keyframe per GOP, "
          f"codec {ours.codec_size} px ({ours.codec_mode}), keyframes {ours.size['height']} px, max_steps "
          f"{ours.max_steps}; torch threads {torch.get_num_threads()}")

    rows, speed_rows, cpu_rows = [], [], []
    for path in videos:
        info = probe_video(path)  # reordered packets, not the decoder's has_b_frames flag (set on I/P MPEG-2)
        desc = f"{info.codec} {info.width}x{info.height} {'I/P/B' if info.reordered else 'I/P'}"
        prim = extract_primitives(path, **codec_kwargs(ours))
        indices = np.asarray(prim.frame_indices)
        jobs = {
            "cope_processor": lambda: ours(videos=str(path), return_tensors="pt"),
            "cope_primitives": lambda: extract_primitives(path, **codec_kwargs(ours)),
            "plain_decode": lambda: plain_decode(path, indices),
            "videollama3": lambda: hf_pipeline(vl3, path, indices, with_metadata=True),
            "llava_onevision": lambda: hf_pipeline(llava, path, indices, with_metadata=False),
        }
        cpu: dict[str, list[float]] = {}
        times = interleaved_runs(jobs, repeats, warmup, progress=path.name, cpu=cpu)
        t = {name: median(times[name]) for name in METHODS}
        c = {name: median(cpu[name]) for name in METHODS}
        rows.append([
            path.name, desc, f"{len(indices)} ({prim.frame_types.count('I')} I + {prim.frame_types.count('P')} P, "
            f"{prim.mode})", *(fmt_s(t[name]) for name in METHODS),
        ])
        speed_rows.append([
            path.name, f"{t['plain_decode'] / t['cope_primitives']:.2f}x",
            f"{t['videollama3'] / t['cope_processor']:.2f}x", f"{t['llava_onevision'] / t['cope_processor']:.2f}x",
            f"{t['plain_decode'] / t['cope_processor']:.2f}x",
        ])
        cpu_rows.append([path.name, *(fmt_s(c[name]) for name in METHODS),
                         f"{c['plain_decode'] / c['cope_primitives']:.2f}x",
                         f"{c['videollama3'] / c['cope_processor']:.2f}x"])

    print()
    print(f"## Wall time per video (median of {repeats} runs after {warmup} warm-up, methods interleaved)")
    print(table(["video", "source", "frames (steps)", *(LABELS[name] for name in METHODS)], rows))
    print()
    print("## Speed ratios (> 1: ours faster; same file, same frame indices)")
    print(table(["video", "primitives speed vs plain decode (target >= 0.8x)",
                 "CoPE processor vs VideoLlama3 (target >= 1x)", "CoPE processor vs LLaVA-OneVision",
                 "CoPE processor vs plain decode"], speed_rows))
    print("Ratios are time(other) / time(ours) from the same run. The HF processors' totals include "
          "load_video(backend='pyav'), which decodes with PyAV's default slice threads; plain decode uses frame "
          "threads (the faster setting), so it is the stricter floor.")
    print()
    print("## CPU time per video (process CPU seconds, all threads; the work itself, less disturbed by other load)")
    print(table(["video", *(LABELS[name] for name in METHODS), "primitives vs plain decode (CPU)",
                 "CoPE processor vs VideoLlama3 (CPU)"], cpu_rows))
    print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
