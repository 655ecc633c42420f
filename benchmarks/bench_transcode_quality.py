"""How well the transcode path's fused motion explains real footage, per `codec_fps` (and encoder quantiser).

Why: `codec_fps` (codec frames re-encoded per second inside each Δ window) sets most of the transcode path's cost,
and its default must rest on measured quality, not on speed alone. Real clips have no ground-truth motion, so the
measure is the one the model sees: how much of the plain frame difference is left after motion compensation.

Columns, over every Δ step of each video (processor defaults otherwise: 1 fps, GOP 8, 224 px, 16-px MV cells):
  * E_mc / E_naive   mean |residual| / mean |frame_t - frame_ref| at the residual's resolution (lower is better:
                     the fused vectors explain more of the change)
  * intra            share of MV cells flagged intra (no motion chain back to the reference step)
  * EPE vs 30        median / 90th percentile distance (px at 224) to the vectors fused at codec_fps=30, the
                     paper's every-frame setting, on cells that are inter in both
  * truth            (generated 1080p clip only) median fused background vector against the exact pan
  * time             one extraction, wall (indicative only; bench_preprocess.py does the timing properly)

Run: python benchmarks/bench_transcode_quality.py [--codec-fps 30,10,5,3] [--qscale 2] [--workdir DIR]
     python benchmarks/bench_transcode_quality.py --quick   # smoke run: the smallest real clip, codec_fps 30 and 5
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _common import (  # noqa: E402
    MEDIA_DIR,
    default_workdir,
    generated_1080p_clip,
    generated_clip,
    machine_info,
    table,
)
from transformers_cope.codec import extract_primitives  # noqa: E402
from transformers_cope.codec_fusion import _block_mean_uint8  # noqa: E402
from transformers_cope.video_processing_cope import CoPEVideoProcessor  # noqa: E402

MEDIA = ("vid_h264.mp4", "vid_mpeg4_part2.mp4", "city_cc0.mpg")
REFERENCE_FPS = 30.0


def measure(path: Path, codec_fps: float, qscale: int, base: dict):
    start = time.perf_counter()
    p = extract_primitives(path, **{**base, "mode": "transcode", "codec_fps": codec_fps, "qscale": qscale},
                           return_frames=True)
    seconds = time.perf_counter() - start
    kh, kw = p.frames.shape[1] // p.residuals.shape[2], p.frames.shape[2] // p.residuals.shape[3]
    small = [_block_mean_uint8(frame, kh, kw) for frame in p.frames]  # at the residual's resolution, as it is made
    steps = [k for k, t in enumerate(p.frame_types) if t == "P"]
    naive = float(np.mean([np.abs(small[k] - small[k - 1]).mean() for k in steps]))
    return p, float(np.abs(p.residuals).mean()) / naive, seconds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--codec-fps", default="30,10,5,3", help="comma-separated codec_fps values (30 is the reference)")
    ap.add_argument("--qscale", type=int, default=2, help="MPEG-4 Part 2 quantiser of the transcode (default 2)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the generated 1080p clip is cached")
    ap.add_argument("--quick", action="store_true", help="smoke run: city_cc0.mpg only, codec_fps 30 and 5")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    values = [30.0, 5.0] if args.quick else [float(v) for v in args.codec_fps.split(",")]
    if REFERENCE_FPS not in values:
        values.insert(0, REFERENCE_FPS)
    vp = CoPEVideoProcessor()
    base = vp._codec_kwargs(vp._options({}))
    workdir = args.workdir or default_workdir()
    if args.quick:
        clip = None
        small = MEDIA_DIR / "city_cc0.mpg"
        videos = [small if small.exists() else generated_clip(workdir, seconds=6, fps=25, height=240, width=320,
                                                              name="quality_quick")]
    else:
        clip = generated_1080p_clip(workdir)
        videos = [MEDIA_DIR / name for name in MEDIA if (MEDIA_DIR / name).exists()] + [clip]

    print("\n".join(machine_info()))
    print(f"transcode (MPEG-4 Part 2, qscale {args.qscale}) at the processor's defaults; reference: codec_fps "
          f"{REFERENCE_FPS:g}\n")
    rows = []
    for path in videos:
        results = {cf: measure(path, cf, args.qscale, base) for cf in values}
        ref = results[REFERENCE_FPS][0]
        for cf in values:
            p, ratio, seconds = results[cf]
            epe = "-"
            if cf != REFERENCE_FPS:
                both = ~(ref.intra_masks | p.intra_masks)
                d = np.sqrt(((p.motion_vectors - ref.motion_vectors) ** 2).sum(axis=1))[both]
                epe = f"{np.median(d):.2f} / {np.percentile(d, 90):.2f}"
            truth = "-"
            if path == clip:  # the clip's background pans 3 px right and 1 px down per 1080p frame at 30 fps
                mv, inter = p.motion_vectors, ~p.intra_masks
                pan = np.array([3 * 30 * p.frame_size[1] / 1920, 1 * 30 * p.frame_size[0] / 1080])
                got = np.array([np.median(mv[:, 0][inter]), np.median(mv[:, 1][inter])])
                truth = f"({got[0]:.1f}, {got[1]:.1f}) vs ({pan[0]:.1f}, {pan[1]:.1f})"
            rows.append([path.name, f"{cf:g}", f"{ratio:.3f}", f"{p.intra_masks.mean():.3f}", epe, truth,
                         f"{seconds:.2f} s"])
    print(table(["video", "codec_fps", "E_mc / E_naive", "intra", "EPE vs 30 (med / p90)", "truth (bg px/step)",
                 "time"], rows))


if __name__ == "__main__":
    main()
