#!/usr/bin/env python
"""Camera-motion answers of a CoPE-VideoLM on the real clips in ../shared/media (held out: never trained on).

Two checks, each with answers verified by looking at the frames (the model card shows what was seen):
  1. Segments where the real camera holds still (Big Buck Bunny, both encodings: 3.5-8.0 s, the bunny walks and
     waves; 8.5-12.4 s, the bunny rises into a still sky shot): the answer is "static".
  2. The same still segments (and the city clip's last shot, 5.2-7.6 s, whose camera drifts by under 1 % of the
     frame per second) seen through a virtual camera: a crop window of 80 % of the frame sliding left, right, up or
     down by 4 % of the frame per second, or held still: real footage, real objects moving, known camera motion.
  3. The same sources through a virtual zoom: the crop window shrinks (zoom in) or grows (zoom out) around the
     frame's centre by 6 % per second, asked "Does the camera zoom in or out?".
Segments are cut and re-encoded in memory-light temp files (libx264); the processor then reads them as any file.

    python benchmarks/camera_real_clips.py [--model PATH] [--media ../shared/media]
"""

from __future__ import annotations

import argparse
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# (file, start s, end s, what the frames show)
STILL_SEGMENTS = (
    ("vid_h264.mp4", 3.5, 8.0, "still camera, the bunny walks out and waves"),
    ("vid_h264.mp4", 8.5, 12.4, "still camera, the bunny rises into a sky shot"),
    ("vid_mpeg4_part2.mp4", 3.5, 8.0, "still camera, the bunny walks out and waves"),
    ("vid_mpeg4_part2.mp4", 8.5, 12.4, "still camera, the bunny rises into a sky shot"),
)
VIRTUAL_SOURCES = STILL_SEGMENTS[:2] + (("city_cc0.mpg", 5.2, 7.6, "near-still camera on two towers at night"),)
WINDOW_DIR = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "static": (0, 0)}
QUESTION = "How does the camera move?\nAnswer with one word."
ZOOM_QUESTION = "Does the camera zoom in or out?\nAnswer with one word."
ZOOM_SIGN = {"in": 1.0, "out": -1.0}


def read_segment(path: Path, start: float, end: float) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or Fraction(25)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)
                  if f.time is not None and start <= f.time < end]
    return frames, rate


def write_clip(path: Path, frames, rate: Fraction) -> Path:
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast", "x264-params": "bframes=0"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: h - h % 2, : w - w % 2]), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def virtual_camera(frames, rate: Fraction, motion: str, speed: float = 0.04, window: float = 0.8,
                   zoom_speed: float = 0.06):
    """A crop window (window x the frame) sliding by `speed` of the frame per second in `motion`'s direction, or,
    for motion "in"/"out", shrinking/growing around the centre by `zoom_speed` per second (window 0.8 at mid-clip)."""
    h, w = frames[0].shape[:2]
    ux, uy = WINDOW_DIR.get(motion, (0, 0))
    n = len(frames)
    travel = speed * n / float(rate)  # fraction of the frame over the clip
    out_w, out_h = int(window * w) // 2 * 2, int(window * h) // 2 * 2  # every frame the same size
    out = []
    for k, rgb in enumerate(frames):
        f = k / max(n - 1, 1)
        scale = np.exp(-ZOOM_SIGN.get(motion, 0.0) * zoom_speed * (f - 0.5) * n / float(rate))
        ww, wh = min(window * scale, 1.0) * w, min(window * scale, 1.0) * h
        x0 = (w - ww) / 2 + ux * (f - 0.5) * travel * w
        y0 = (h - wh) / 2 + uy * (f - 0.5) * travel * h
        img = Image.fromarray(rgb).transform((out_w, out_h), Image.AFFINE, (ww / out_w, 0, x0, 0, wh / out_h, y0),
                                             resample=Image.BILINEAR)
        out.append(np.asarray(img))
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    parser.add_argument("--media", default=str(REPO.parent / "shared" / "media"))
    args = parser.parse_args(argv)
    from transformers import pipeline

    import transformers_cope  # noqa: F401
    from transformers_cope.embedded import default_model_path

    vqa = pipeline("video-question-answering", model=str(args.model or default_model_path()), device="cpu")
    media = Path(args.media)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cope-real-") as tmp:
        for name, start, end, seen in STILL_SEGMENTS:
            frames, rate = read_segment(media / name, start, end)
            clip = write_clip(Path(tmp) / f"{name}-{start}.mp4", frames, rate)
            answer = vqa(str(clip), question=QUESTION, max_new_tokens=4)[0]["answer"]
            rows.append(("real camera", f"{name} {start:g}-{end:g} s", seen, "static", answer))
        for name, start, end, seen in VIRTUAL_SOURCES:
            frames, rate = read_segment(media / name, start, end)
            for motion in WINDOW_DIR:
                clip = write_clip(Path(tmp) / f"{name}-{start}-{motion}.mp4", virtual_camera(frames, rate, motion), rate)
                answer = vqa(str(clip), question=QUESTION, max_new_tokens=4)[0]["answer"]
                rows.append(("virtual camera", f"{name} {start:g}-{end:g} s", seen, motion, answer))
            for motion in ZOOM_SIGN:
                clip = write_clip(Path(tmp) / f"{name}-{start}-zoom-{motion}.mp4", virtual_camera(frames, rate, motion),
                                  rate)
                answer = vqa(str(clip), question=ZOOM_QUESTION, max_new_tokens=4)[0]["answer"]
                rows.append(("virtual zoom", f"{name} {start:g}-{end:g} s", seen, motion, answer))
    print("| check | clip | what the frames show | truth | answer |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    correct = {kind: [r[3] == r[4].strip().lower() for r in rows if r[0] == kind]
               for kind in ("real camera", "virtual camera", "virtual zoom")}
    for kind, hits in correct.items():
        print(f"{kind}: {sum(hits)}/{len(hits)} correct")
    return {"rows": rows, "correct": {k: (sum(v), len(v)) for k, v in correct.items()}}


if __name__ == "__main__":
    main()
