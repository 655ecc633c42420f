"""Camera-motion QA over real photographs: a virtual camera pans (or holds still) over a photo.

Why: the synthetic motion QA (synthetic_qa.py) uses band-limited noise textures, and a model trained only on them
answers nonsense on real footage: real videos bring aspect ratios squashed to the processor's square codec frames,
slow pans of a pixel or two per step, handheld shake, lighting drift, sensor noise, independent objects moving in
front of a still camera, and the codecs' own vector quirks. Codec motion vectors do not depend on *what* the texture
is, but they do depend on its statistics (flat sky, edges, repeated structure), so here a crop window moves over
real photographs (any RGB arrays: the training script takes scikit-image's bundled photos; the held-out check takes
other photos, e.g. scikit-learn's) with varied speed, shake, lighting, noise, an optional independent object, frame
size, aspect, frame rate and codec.

The first frame never depends on the answer: the window's frame-0 position, the object, the lighting and every
other draw happen before the motion is chosen (the photo is mirror-padded so that any path stays inside it), so a
keyframes-only model stays at chance. Conventions as in render.py: the camera panning right moves the content left.
Records follow synthetic_qa's format (`task`, `question`, `options`, `answer`, ...; `scene` holds the camera's
parameters instead of a render.Scene), so the training collator and `evaluate_video_qa` take them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from .synthetic_qa import LETTERS, SPLITS, generate_split, sample_seed

__all__ = ["CAMERA_MOTIONS", "CAMERA_TASKS", "CAMERA_QUESTIONS", "DEFAULT_CAMERA_TASKS", "CameraMotionQA",
           "render_camera_video", "skimage_photos", "sklearn_photos"]

CAMERA_MOTIONS = ("left", "right", "up", "down", "static")
# camera_zoom comes last: a task's index seeds its answer blocks, so the older tasks' records never change.
CAMERA_TASKS = ("camera_motion", "camera_pan_photo", "camera_zoom")
DEFAULT_CAMERA_TASKS = ("camera_motion", "camera_pan_photo")
# The questions these tasks ask (the embedded model's card and the pipeline's out-of-domain note quote them).
CAMERA_QUESTIONS = {"camera_motion": "How does the camera move?",
                    "camera_pan_photo": "Does the camera pan left or right?",
                    "camera_zoom": "Does the camera zoom in or out?"}
_TASK_ANSWERS = {"camera_motion": CAMERA_MOTIONS, "camera_pan_photo": ("left", "right"), "camera_zoom": ("in", "out")}
_WINDOW_DIR = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0), "static": (0.0, 0.0),
               "in": (0.0, 0.0), "out": (0.0, 0.0)}
# zoom: the window shrinks (in: the content grows from the centre) or grows (out), by `speed` per second, at least 3 %
# per second (slower is under a pixel at the codec's 64 px) and at most 2x over the clip (the window stays on the
# mirror-padded photo)
_ZOOM_SIGN = {"in": 1.0, "out": -1.0}
# scikit-image's bundled photographs (no download): natural scenes, objects, textures, microscopy, astronomy.
SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cat", "coffee", "coins", "grass", "gravel", "hubble_deep_field",
                  "immunohistochemistry", "moon", "rocket", "retina", "motorcycle")


def skimage_photos(names: Sequence[str] = SKIMAGE_PHOTOS) -> list[np.ndarray]:
    """RGB uint8 photos bundled with scikit-image (`pip install scikit-image`; nothing is downloaded)."""
    try:
        from skimage import color, data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("camera-motion training photos come from scikit-image: pip install scikit-image") from exc
    photos = []
    for name in names:
        img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        img = np.asarray(img)
        if img.ndim == 2:
            img = (color.gray2rgb(img) if img.dtype == np.uint8 else (color.gray2rgb(img) * 255)).astype(np.uint8)
        photos.append(np.ascontiguousarray(img[..., :3].astype(np.uint8)))
    return photos


def sklearn_photos() -> list[np.ndarray]:
    """scikit-learn's two bundled photographs (china.jpg, flower.jpg): the held-out source of the camera check."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the held-out camera photos come from scikit-learn: pip install scikit-learn") from exc
    return [np.ascontiguousarray(img) for img in load_sample_images().images]


class CameraMotionQA:
    """Seeded camera-motion clips over `photos` (a list of RGB uint8 arrays) and their QA records.

    tasks: "camera_motion" ("How does the camera move?": left/right/up/down/static, open word or 4 options) and
    "camera_pan_photo" (the synthetic benchmark's "Does the camera pan left or right?" over photos) and
    "camera_zoom" ("Does the camera zoom in or out?"; not in the default `tasks`). A dataset is a
    pure function of (photos, knobs, seed, split, num_samples).

    The independent object appears with `object_probability`; its side is drawn from `object_sizes` (fractions of
    the frame height) and its speed from `object_speeds` (frames per second). The defaults keep it small and slow;
    a "subjects" set (large, fast: see embedded_training.SUBJECT_KNOBS) teaches that a big subject moving in front
    of a still camera is not the camera moving.
    """

    def __init__(self, photos: Sequence[np.ndarray], *, tasks: Sequence[str] = DEFAULT_CAMERA_TASKS,
                 durations: Sequence[int] = (4, 5, 6, 7, 8), heights: Sequence[int] = (72, 96, 128),
                 fps_choices: Sequence[int] = (10, 15, 25), object_probability: float = 0.5,
                 object_sizes: tuple[float, float] = (0.15, 0.45), object_speeds: tuple[float, float] = (0.0, 0.15)):
        if not photos:
            raise ValueError("CameraMotionQA needs at least one photo")
        unknown = [t for t in tasks if t not in CAMERA_TASKS]
        if unknown or not tasks:
            raise ValueError(f"unknown tasks {unknown}; choose from {CAMERA_TASKS}")
        self.photos = [np.asarray(p) for p in photos]
        for i, p in enumerate(self.photos):
            if p.ndim != 3 or p.shape[2] != 3 or p.dtype != np.uint8 or min(p.shape[:2]) < 64:
                raise ValueError(f"photo {i} must be RGB uint8 (H, W, 3) with sides >= 64, got {p.shape} {p.dtype}")
        self.tasks = tuple(tasks)
        self.durations, self.heights, self.fps_choices = tuple(durations), tuple(heights), tuple(fps_choices)
        self.object_probability = float(object_probability)
        self.object_sizes = _range("object_sizes", object_sizes)
        self.object_speeds = _range("object_speeds", object_speeds)
        if not 0.0 < self.object_sizes[1] <= 0.8:
            raise ValueError(f"object_sizes must lie in (0, 0.8] of the frame height, got {object_sizes}")

    # --------------------------------------------------------------------------------------------------- scene
    def draw(self, seed: int, motion: str) -> dict:
        """Every parameter of one clip. All draws that shape frame 0 come first and ignore `motion`."""
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xCA3])
        photo = int(rng.integers(len(self.photos)))
        ph, pw = self.photos[photo].shape[:2]
        h = int(rng.choice(self.heights))
        aspect = float(rng.uniform(1.0, 1.9)) if rng.random() < 0.8 else float(rng.uniform(0.6, 1.0))
        w = max(32, int(round(h * aspect / 2)) * 2)
        fps = int(rng.choice(self.fps_choices))
        duration = int(rng.choice(self.durations))
        # window: 35-80 % of the photo's short side (finer or coarser detail per codec block), aspect of the frame
        win_h = float(rng.uniform(0.35, 0.8)) * min(ph, pw) * min(1.0, 1.0 / aspect)
        win_w = win_h * w / h
        cx, cy = float(rng.uniform(0.3, 0.7) * pw), float(rng.uniform(0.3, 0.7) * ph)
        flip = bool(rng.random() < 0.5)
        gain_end = float(rng.uniform(0.75, 1.25)) if rng.random() < 0.4 else 1.0
        noise = float(rng.uniform(0.0, 5.0)) if rng.random() < 0.6 else 0.0
        shake = float(rng.uniform(0.0, 0.006)) if rng.random() < 0.5 else 0.0  # amplitude, fraction of the window
        obj = None
        if rng.random() < self.object_probability:
            src = int(rng.integers(len(self.photos)))
            size = float(rng.uniform(*self.object_sizes))  # fraction of the frame height
            obj = {"photo": src, "size": size, "ellipse": bool(rng.random() < 0.5),
                   "src_xy": [float(rng.uniform(0.1, 0.6)), float(rng.uniform(0.1, 0.6))],
                   "xy": [float(rng.uniform(0.1, 0.9 - size)), float(rng.uniform(0.1, 0.9 - size))]}
            # the object's own motion (frame fractions per second), independent of the camera's
            ang, spd = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(*self.object_speeds))
            obj["velocity"] = [spd * np.cos(ang), spd * np.sin(ang)]
        codec = ["libx264", "libx264", "mpeg4"][int(rng.integers(3))]
        bframes = int(rng.choice([0, 0, 2])) if codec == "libx264" else 0
        # drawn after frame 0 is fixed: the motion's speed and profile
        speed = float(np.exp(rng.uniform(np.log(0.012), np.log(0.25))))  # window fractions per second
        wobble = float(rng.uniform(0.0, 0.3))
        shake_seed = int(rng.integers(1 << 31))
        return {"photo": photo, "height": h, "width": w, "fps": fps, "duration": duration, "motion": motion,
                "window": [win_w, win_h], "center": [cx, cy], "flip": flip, "gain_end": gain_end, "noise": noise,
                "shake": shake, "object": obj, "codec": codec, "bframes": bframes, "speed": speed,
                "wobble": wobble, "shake_seed": shake_seed, "noise_seed": int(seed) & 0xFFFFFFFF}

    # -------------------------------------------------------------------------------------------------- records
    def build_record(self, index: int, *, seed: int = 0, split: str = "train") -> tuple[dict, dict]:
        """(record, camera parameters) of sample `index`; answers are balanced in blocks per task."""
        task = self.tasks[index % len(self.tasks)]
        j = index // len(self.tasks)
        answers = list(_TASK_ANSWERS[task])
        block = np.random.default_rng([int(seed) & 0xFFFFFFFF, SPLITS[split], 0xCA3 + CAMERA_TASKS.index(task),
                                       j // len(answers)])
        motion = answers[int(block.permutation(len(answers))[j % len(answers)])]
        s_seed = sample_seed(seed, split, index)
        params = self.draw(s_seed, motion)
        fmt = np.random.default_rng([s_seed & 0xFFFFFFFF, 0xF0])
        question = CAMERA_QUESTIONS[task]
        options, answer, answer_type = None, motion, "word"
        if fmt.random() < 0.5:
            if task == "camera_motion":  # the answer and 3 of the 4 others, in the canonical order
                others = [m for m in CAMERA_MOTIONS if m != motion]
                keep = set(fmt.choice(others, size=3, replace=False).tolist()) | {motion}
                choices = [m for m in CAMERA_MOTIONS if m in keep]
            else:
                choices = answers
            options = [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
            answer, answer_type = LETTERS[choices.index(motion)], "mc"
        if motion in _ZOOM_SIGN:
            reasoning = ("The picture grows outwards from its centre, so the camera zooms in." if motion == "in"
                         else "The picture shrinks towards its centre, so the camera zooms out.")
        elif motion == "static":
            reasoning = "The background stays in place, so the camera holds still."
        else:
            reasoning = f"The whole picture shifts consistently, so the camera pans {motion}."
        rid = f"{split}-{index:06d}"
        num_frames = params["duration"] * params["fps"]
        record = {
            "id": rid, "split": split, "task": task, "video": f"videos/{split}/{rid}.mp4", "question": question,
            "options": options, "answer": answer, "answer_text": motion, "answer_type": answer_type,
            "reasoning": reasoning,
            "interval": None, "seed": s_seed, "fps": float(params["fps"]), "duration": float(params["duration"]),
            "num_frames": num_frames, "size": [params["height"], params["width"]], "scene": params,
        }
        return record, params

    def generate(self, num_samples: int, out_dir: str | Path, *, seed: int = 0, split: str = "train",
                 num_workers: int = 1, overwrite: bool = True, progress: bool = True) -> list[dict]:
        """Render the clips into out_dir/videos/<split>/ and write out_dir/<split>.jsonl (absolute paths returned)."""
        return generate_split(self.build_record, _render_job, num_samples, out_dir, seed=seed, split=split,
                              num_workers=num_workers, overwrite=overwrite, progress=progress,
                              desc=f"render camera {split}", initializer=_set_photos, initargs=(self.photos,))


def _range(name: str, value) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo <= hi):
        raise ValueError(f"{name} must be a (low, high) pair with 0 <= low <= high, got {value!r}")
    return lo, hi


# ------------------------------------------------------------------------------------------------------ rendering
_PHOTOS: list[np.ndarray] = []


def _set_photos(photos) -> None:
    global _PHOTOS
    _PHOTOS = list(photos)


def _render_job(job) -> str:
    path, params = job
    render_camera_video(path, _PHOTOS, params)
    return path


def _padded(photo: np.ndarray) -> tuple[Image.Image, int, int]:
    """The photo mirror-padded by its own size on every side (any window path stays on real content)."""
    ph, pw = photo.shape[:2]
    return Image.fromarray(np.pad(photo, ((ph, ph), (pw, pw), (0, 0)), mode="reflect")), ph, pw


def camera_frames(photos: Sequence[np.ndarray], params: dict):
    """Yield the clip's RGB uint8 frames (H, W, 3) for `params` from `CameraMotionQA.draw`."""
    h, w, fps = params["height"], params["width"], params["fps"]
    n = params["duration"] * fps
    photo = photos[params["photo"]]
    if params["flip"]:
        photo = photo[:, ::-1]
    img, oy, ox = _padded(photo)
    win_w, win_h = params["window"]
    ux, uy = _WINDOW_DIR[params["motion"]]
    step = np.array([ux * win_w, uy * win_h]) * params["speed"] / fps  # window px per frame
    zoom = _ZOOM_SIGN.get(params["motion"], 0.0) * min(max(params["speed"], 0.03), np.log(2.0) / params["duration"])
    rng = np.random.default_rng(params["shake_seed"])
    # hand-held shake: smoothed noise around the path (bounded, unlike a random walk, so a still camera stays put)
    kernel = np.hanning(max(3, fps // 3))
    raw = rng.standard_normal((n + len(kernel), 2))
    smooth = np.stack([np.convolve(raw[:, i], kernel / np.sqrt((kernel**2).sum()), "valid")[:n] for i in range(2)], 1)
    shake = smooth * params["shake"] * np.array([win_w, win_h])
    shake -= shake[0]
    phase = rng.uniform(0, 2 * np.pi)
    t = np.arange(n)
    # speed wobbles around its mean (a hand-held or eased pan), never reversing
    progress = t + params["wobble"] * fps / (2 * np.pi * 0.5) * (np.sin(2 * np.pi * 0.5 * t / fps + phase) - np.sin(phase))
    obj = params["object"]
    if obj is not None:
        src = photos[obj["photo"]]
        oh = max(4, int(round(obj["size"] * h)))
        sh, sw = src.shape[:2]
        x0, y0 = int(obj["src_xy"][0] * (sw - 1) * 0.5), int(obj["src_xy"][1] * (sh - 1) * 0.5)
        side = max(8, min(sh - y0, sw - x0, int(0.4 * min(sh, sw))))
        patch = np.asarray(Image.fromarray(src[y0:y0 + side, x0:x0 + side]).resize((oh, oh), Image.BILINEAR), np.float32)
        yy, xx = (np.mgrid[0:oh, 0:oh] + 0.5) / oh - 0.5
        alpha = (np.clip((0.5 - np.hypot(xx, yy)) * oh + 0.5, 0, 1) if obj["ellipse"] else np.ones((oh, oh)))[..., None]
    noise_rng = np.random.default_rng([params["noise_seed"], 0x0153])
    for k in range(n):
        cx, cy = np.array(params["center"]) + step * progress[k] + shake[k]
        scale = float(np.exp(-zoom * progress[k] / fps)) if zoom else 1.0
        ww, wh = win_w * scale, win_h * scale
        x0, y0 = cx - ww / 2 + ox, cy - wh / 2 + oy
        frame = img.transform((w, h), Image.AFFINE, (ww / w, 0.0, x0, 0.0, wh / h, y0), resample=Image.BILINEAR)
        f = np.asarray(frame, np.float32)
        if obj is not None:
            px = int(round((obj["xy"][0] + obj["velocity"][0] * k / fps) * w))
            py = int(round((obj["xy"][1] + obj["velocity"][1] * k / fps) * h))
            ya, yb, xa, xb = max(py, 0), min(py + oh, h), max(px, 0), min(px + oh, w)
            if ya < yb and xa < xb:
                a = alpha[ya - py:yb - py, xa - px:xb - px]
                f[ya:yb, xa:xb] = a * patch[ya - py:yb - py, xa - px:xb - px] + (1 - a) * f[ya:yb, xa:xb]
        gain = 1.0 + (params["gain_end"] - 1.0) * k / max(n - 1, 1)
        f *= gain
        if params["noise"]:
            f += noise_rng.standard_normal(f.shape).astype(np.float32) * params["noise"]
        yield np.clip(f + 0.5, 0, 255).astype(np.uint8)


def render_camera_video(path: str | Path, photos: Sequence[np.ndarray], params: dict) -> Path:
    """Encode the clip to `path` with the drawn codec (libx264 I/P or with B-frames, or MPEG-4 Part 2), one thread
    (identical bytes on every run)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec, h, w = params["codec"], params["height"], params["width"]
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=Fraction(int(params["fps"])))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            b = int(params["bframes"])
            stream.options = {"preset": "veryfast", "crf": "20", "threads": "1",
                              "x264-params": f"scenecut=0:ref={1 if b == 0 else 2}:bframes={b}:b-adapt=0:open-gop=0"}
        else:
            stream.codec_context.gop_size = 12
            stream.options = {"sc_threshold": "1000000000", "qmin": "3", "qmax": "3"}
        reformatter = VideoReformatter()
        for i, rgb in enumerate(camera_frames(photos, params)):
            vf = reformatter.reformat(av.VideoFrame.from_ndarray(rgb, format="rgb24"), format="yuv420p")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    return path
