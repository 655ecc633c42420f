"""Synthetic motion QA: reproducible, split-disjoint, balanced, answers true to the rendered motion, and no answer
visible in the first frame."""

import collections
import hashlib
import json

import av
import numpy as np
import pytest

from transformers_cope.data.render import ground_truth, render_frame
from transformers_cope.data.synthetic_qa import (
    ANSWER_WORDS,
    COLORS,
    TASKS,
    SyntheticMotionQA,
    format_prompt,
    generate_motion_qa,
    load_motion_qa,
    record_scene,
    sample_seed,
    to_messages,
)

SMALL = dict(size=(64, 64), duration_s=8.0, fps=5.0)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("qa")
    recs = generate_motion_qa(2 * len(TASKS), out, seed=3, split="train", progress=False, **SMALL)
    return out, recs


def decode(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_generate_writes_jsonl_and_videos(generated):
    out, recs = generated
    assert len(recs) == 16 and {r["task"] for r in recs} == set(TASKS)
    loaded = load_motion_qa(out / "train.jsonl")
    assert loaded == recs
    lines = (out / "train.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["video"] == "videos/train/train-000000.mp4"  # relative on disk: folder is portable
    frames = decode(recs[0]["video"])
    assert frames.shape == (40, 64, 64, 3)
    assert recs[0]["num_frames"] == 40 and recs[0]["duration"] == 8.0


def test_reproducible_bytes(generated, tmp_path):
    out, recs = generated
    again = generate_motion_qa(2 * len(TASKS), tmp_path, seed=3, split="train", progress=False, num_workers=2,
                               **SMALL)
    assert (tmp_path / "train.jsonl").read_bytes() == (out / "train.jsonl").read_bytes()
    for a, b in zip(recs, again):
        assert hashlib.sha256(open(a["video"], "rb").read()).digest() == \
               hashlib.sha256(open(b["video"], "rb").read()).digest()
    other = SyntheticMotionQA(**SMALL).build_record(0, seed=4)[0]
    assert other["seed"] != recs[0]["seed"] and other["scene"] != recs[0]["scene"]


def test_splits_disjoint():
    gen = SyntheticMotionQA(**SMALL)
    seeds = {s: {sample_seed(0, s, i) for i in range(2000)} for s in ("train", "validation", "test")}
    assert all(len(v) == 2000 for v in seeds.values())
    assert not (seeds["train"] & seeds["test"]) and not (seeds["train"] & seeds["validation"])
    train = {json.dumps(gen.build_record(i, seed=0, split="train")[0]["scene"]) for i in range(64)}
    test = {json.dumps(gen.build_record(i, seed=0, split="test")[0]["scene"]) for i in range(64)}
    assert not train & test
    with pytest.raises(ValueError):
        sample_seed(0, "dev", 0)


def test_answers_balanced():
    gen = SyntheticMotionQA(**SMALL)
    recs = [gen.build_record(i, seed=1)[0] for i in range(len(TASKS) * 60)]
    by_task = collections.defaultdict(list)
    for r in recs:
        by_task[r["task"]].append(r)
    for task, rs in by_task.items():
        if task in ("which_moves", "speed", "event_order"):  # answer = which of the two objects (option A/B)
            keys = [r["scene"]["sprites"][0]["color"] == list(COLORS[r["answer_text"]]) for r in rs]
        elif task == "grounding":
            keys = [r["answer_text"].split()[0] for r in rs]
        else:
            keys = [r["answer_text"] for r in rs]
        counts = collections.Counter(keys)
        assert max(counts.values()) - min(counts.values()) <= 1, (task, counts)
        assert len(counts) == {"direction": 4, "camera_pan": 2, "moving": 2, "start_time": 5,
                               "grounding": 5}.get(task, 2), (task, counts)
    fmt = collections.Counter(r["options"] is None for r in recs)
    assert 0.35 < fmt[True] / len(recs) < 0.65  # "mixed": about half open-ended


def _first_moving_frame(gt, i):
    return int(np.argmax(gt.sprite_moving[:, i]))


def test_answers_match_ground_truth():
    gen = SyntheticMotionQA(**SMALL, question_format="mc", shuffle_options=True)
    fps = gen.fps
    for idx in range(len(TASKS) * 12):
        rec, _ = gen.build_record(idx, seed=7, split="test")
        scene = record_scene(rec)
        gt = ground_truth(scene)
        ans, task, last = rec["answer_text"], rec["task"], scene.num_frames - 1
        # the multiple-choice letter points at the answer text
        chosen = next(o for o in rec["options"] if o.startswith(rec["answer"] + ". "))
        assert chosen.split(". ", 1)[1].endswith(ans) or ans in chosen
        assert set(ans.split()) <= set(ANSWER_WORDS)
        # objects never leave the frame, so their appearance and position carry no hint
        assert np.all(gt.sprite_visible_fraction > 0.999)
        names = [c for s in scene.sprites for c, rgb in COLORS.items() if tuple(rgb) == s.color]
        moved = [np.hypot(*gt.displacement(last, 0, i)) for i in range(len(scene.sprites))]
        if task == "direction":
            dx, dy = gt.displacement(last, 0, 0)
            expect = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
            assert ans == expect and max(abs(dx), abs(dy)) > 8
        elif task == "moving":
            assert (moved[0] > 8) == (ans == "yes") and (moved[0] == 0) == (ans == "no")
        elif task == "camera_pan":
            dx = gt.displacement(last, 0)[0]
            assert (dx > 0) == (ans == "left") and abs(dx) > 8  # camera pans left => content moves right
        elif task == "which_moves":
            k = names.index(ans)
            assert moved[k] > 8 and moved[1 - k] == 0
        elif task == "speed":
            k = names.index(ans)
            assert moved[k] > 1.5 * moved[1 - k] > 0
        elif task == "event_order":
            k = names.index(ans)
            assert _first_moving_frame(gt, k) + 2 * fps <= _first_moving_frame(gt, 1 - k)
            assert rec["interval"][0] == (_first_moving_frame(gt, k) - 1) / fps
        else:  # start_time, grounding: moving exactly on frames (t0 * fps, t1 * fps]
            t0, t1 = rec["interval"]
            frames = np.nonzero(gt.sprite_moving[:, 0])[0]
            assert frames[0] == t0 * fps + 1 and frames[-1] == t1 * fps
            assert ans == (str(int(t0)) if task == "start_time" else f"{int(t0)} to {int(t1)}")


@pytest.mark.parametrize("task", TASKS)
def test_first_frame_does_not_reveal_answer(task):
    gen = SyntheticMotionQA(**SMALL)
    seed = sample_seed(5, "train", 11)
    scenes = [gen.make_sample(task, a, seed).scene for a in gen._answers(task)]
    first = [render_frame(s, 0) for s in scenes]
    for f in first[1:]:
        np.testing.assert_array_equal(f, first[0])
    # ...while the motion over time differs between answers
    tracks = [np.concatenate([ground_truth(s).sprite_positions.ravel(), ground_truth(s).background_offset.ravel()])
              for s in scenes]
    assert all(not np.allclose(t, tracks[0]) for t in tracks[1:])


def test_decoded_motion_matches_answer(generated):
    """Measured on the decoded video: the sprite patch of frame 0 is found again shifted the answer's way."""
    _, recs = generated
    checked = 0
    for rec in recs:
        if rec["task"] not in ("direction", "camera_pan"):
            continue
        frames = decode(rec["video"]).astype(np.float64).mean(-1)
        scene = record_scene(rec)
        if rec["task"] == "direction":
            x0, y0, x1, y1 = np.round(ground_truth(scene).sprite_boxes[0, 0]).astype(int)
            patch = frames[0, y0 + 2:y1 - 2, x0 + 2:x1 - 2]
            oy, ox = y0 + 2, x0 + 2
            target = frames[-1]
        else:  # compare with the frame 1 s later: the pan (3-8 px/s) stays within the search window
            patch = frames[0, 16:48, 16:48]
            oy, ox = 16, 16
            target = frames[int(rec["fps"])]
        ph, pw = patch.shape
        best, arg = np.inf, None
        for y in range(0, 64 - ph + 1):
            for x in range(0, 64 - pw + 1):
                err = np.mean((target[y:y + ph, x:x + pw] - patch) ** 2)
                if err < best:
                    best, arg = err, (x - ox, y - oy)
        dx, dy = arg
        measured = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
        if rec["task"] == "camera_pan":
            measured = {"right": "left", "left": "right"}[measured]
        assert measured == rec["answer_text"], (rec["id"], arg)
        checked += 1
    assert checked == 4


def test_messages_and_prompt(generated):
    _, recs = generated
    mc = next(r for r in recs if r["options"])
    msgs = to_messages(mc)
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[0]["content"][0] == {"type": "video", "path": mc["video"]}
    text = msgs[0]["content"][1]["text"]
    assert text.startswith(mc["question"]) and all(o in text for o in mc["options"])
    assert "letter" in text
    assert msgs[1]["content"] == [{"type": "text", "text": mc["answer"]}]
    think = to_messages(mc, reasoning=True)
    assert think[1]["content"][0]["text"] == f"<think>{mc['reasoning']}</think><answer>{mc['answer']}</answer>"
    assert "<think>" in think[0]["content"][1]["text"]
    assert len(to_messages(mc, include_answer=False)) == 1
    openq = next(r for r in recs if r["task"] == "start_time")
    assert "seconds" in format_prompt(openq) or "letter" in format_prompt(openq)
    assert to_messages(openq, video_key="video")[0]["content"][0] == {"type": "video", "video": openq["video"]}


def test_invalid_configs():
    with pytest.raises(ValueError):
        SyntheticMotionQA(tasks=("direction", "juggling"))
    with pytest.raises(ValueError):
        SyntheticMotionQA(size=(63, 64))
    with pytest.raises(ValueError):
        SyntheticMotionQA(duration_s=5.0)  # event_order needs 7 s
    SyntheticMotionQA(duration_s=5.0, tasks=("direction", "camera_pan"))
    with pytest.raises(ValueError):
        SyntheticMotionQA(question_format="essay")
