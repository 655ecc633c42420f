"""Camera moves over photographs (data/camera_motion.py): answer-blind first frame, true codec motion, records."""

from __future__ import annotations

import numpy as np
import pytest

from transformers_cope import extract_primitives
from transformers_cope.data.camera_motion import CAMERA_MOTIONS, CameraMotionQA, camera_frames
from transformers_cope.data.synthetic_qa import format_prompt, load_motion_qa


def _photo(seed: int, size=(160, 240)) -> np.ndarray:
    """A photo stand-in with structure at every scale (smoothed noise at three scales, per channel)."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.zeros((h, w, 3))
    for cell in (4, 12, 40):
        coarse = rng.standard_normal((h // cell + 2, w // cell + 2, 3))
        img += np.kron(coarse, np.ones((cell, cell, 1)))[:h, :w] * cell ** 0.5
    img = (img - img.mean()) / img.std() * 45 + 120
    return np.clip(img, 0, 255).astype(np.uint8)


PHOTOS = [_photo(0), _photo(1)]


def test_first_frame_does_not_depend_on_the_motion():
    qa = CameraMotionQA(PHOTOS)
    firsts = [next(camera_frames(PHOTOS, qa.draw(1234, motion))) for motion in CAMERA_MOTIONS]
    for frame in firsts[1:]:
        np.testing.assert_array_equal(frame, firsts[0])
    params = [qa.draw(1234, motion) for motion in CAMERA_MOTIONS]
    shared = {k for k in params[0] if k != "motion"}
    assert all(p[k] == params[0][k] for p in params for k in shared)


def test_codec_motion_follows_the_camera(tmp_path):
    """Rendered, encoded and read back through the processor's codec layer: content moves against the camera."""
    qa = CameraMotionQA(PHOTOS, durations=(4,), heights=(96,), fps_choices=(10,), object_probability=0.0)
    expected = {"left": (1, 0), "right": (-1, 0), "up": (0, 1), "down": (0, -1), "static": (0, 0)}
    from transformers_cope.data.camera_motion import render_camera_video

    for k, motion in enumerate(CAMERA_MOTIONS):
        params = dict(qa.draw(77 + k, motion), speed=0.12, shake=0.0, gain_end=1.0)
        path = render_camera_video(tmp_path / f"{motion}.mp4", PHOTOS, params)
        prims = extract_primitives(path, fps=1.0, gop_size=8, keyframes_per_gop=1, size=(64, 64), mv_block=8)
        dx, dy = (float(np.median(prims.motion_vectors[:, i])) for i in (0, 1))
        sx, sy = expected[motion]
        if motion == "static":
            assert abs(dx) < 0.5 and abs(dy) < 0.5, (motion, dx, dy)
        else:  # 12 % of the frame per second = 7.7 px of the 64 px codec frame
            assert (dx * sx + dy * sy) > 4 and abs(dx * sy + dy * sx) < 1.5, (motion, dx, dy)


def test_records_are_balanced_and_load_back(tmp_path):
    qa = CameraMotionQA(PHOTOS, durations=(4,), heights=(72,), fps_choices=(10,))
    records = qa.generate(10, tmp_path, seed=3, split="test", progress=False)
    motion = [r for r in records if r["task"] == "camera_motion"]
    assert sorted(r["answer_text"] for r in motion) == sorted(CAMERA_MOTIONS)
    assert {r["answer_text"] for r in records if r["task"] == "camera_pan_photo"} <= {"left", "right"}
    assert load_motion_qa(tmp_path / "test.jsonl") == records
    for r in records:
        prompt = format_prompt(r)
        assert prompt.startswith(r["question"])
        if r["options"]:
            assert r["answer"] in "ABCD" and f"{r['answer']}. {r['answer_text']}" in r["options"]
    again = CameraMotionQA(PHOTOS, durations=(4,), heights=(72,), fps_choices=(10,)).build_record(4, seed=3,
                                                                                                   split="test")[0]
    assert again == {**records[4], "video": again["video"]}


def test_bad_photos_are_refused():
    with pytest.raises(ValueError, match="RGB uint8"):
        CameraMotionQA([np.zeros((32, 32, 3), np.uint8)])
    with pytest.raises(ValueError, match="unknown tasks"):
        CameraMotionQA(PHOTOS, tasks=("zoom",))
    with pytest.raises(ValueError, match="object_sizes"):
        CameraMotionQA(PHOTOS, object_sizes=(0.5, 0.9))
    with pytest.raises(ValueError, match="object_speeds"):
        CameraMotionQA(PHOTOS, object_speeds=(0.3, 0.1))


def test_subject_knobs_draw_large_fast_objects():
    """The embedded model's "subjects" set: every clip has a subject in the knobs' ranges."""
    from transformers_cope.embedded_training import SUBJECT_KNOBS

    qa = CameraMotionQA(PHOTOS, **SUBJECT_KNOBS)
    for seed in range(20):
        obj = qa.draw(seed, "static")["object"]
        assert obj is not None and 0.3 <= obj["size"] <= 0.7
        assert 0.05 - 1e-9 <= float(np.hypot(*obj["velocity"])) <= 0.4 + 1e-9


def test_codec_motion_of_a_zoom_diverges_or_converges(tmp_path):
    """camera_zoom: zooming in, the content grows from the centre (codec vectors point outwards: positive divergence);
    zooming out, inwards. Frame 0 is the same for both."""
    from transformers_cope.data.camera_motion import render_camera_video

    qa = CameraMotionQA(PHOTOS, tasks=("camera_zoom",), durations=(4,), heights=(96,), fps_choices=(10,),
                        object_probability=0.0)
    firsts = [next(camera_frames(PHOTOS, qa.draw(5, m))) for m in ("in", "out")]
    np.testing.assert_array_equal(firsts[0], firsts[1])
    divergence = {}
    for k, motion in enumerate(("in", "out")):
        params = dict(qa.draw(77 + k, motion), speed=0.15, shake=0.0, gain_end=1.0)
        path = render_camera_video(tmp_path / f"zoom_{motion}.mp4", PHOTOS, params)
        mv = extract_primitives(path, fps=1.0, gop_size=8, keyframes_per_gop=1, size=(64, 64),
                                mv_block=8).motion_vectors.mean(0)  # (2, 8, 8)
        centred = np.arange(8) - 3.5
        divergence[motion] = float((mv[0] * centred[None, :]).mean() + (mv[1] * centred[:, None]).mean())
    assert divergence["in"] > 3 and divergence["out"] < -3, divergence
    records = qa.generate(4, tmp_path / "records", seed=1, split="test", progress=False)
    assert sorted(r["answer_text"] for r in records) == ["in", "in", "out", "out"]
    assert all(r["question"] == "Does the camera zoom in or out?" for r in records)
