"""The speed-shifted motion QA keeps the scenes and answers and scales only the motion."""

import numpy as np
import pytest

from transformers_cope.data import ground_truth, record_scene
from transformers_cope.data.shifted_qa import ShiftedMotionQA
from transformers_cope.data.synthetic_qa import SyntheticMotionQA


def test_travel_is_scaled_and_first_frame_kept():
    base = SyntheticMotionQA(tasks=("direction",), duration_s=4)
    slow = ShiftedMotionQA(travel_scale=0.25, tasks=("direction",), duration_s=4)
    for index in range(4):
        a, _ = base.build_record(index, seed=0, split="test")
        b, _ = slow.build_record(index, seed=0, split="test")
        assert (a["answer"], a["question"], a["seed"]) == (b["answer"], b["question"], b["seed"])
        ga, gb = ground_truth(record_scene(a)), ground_truth(record_scene(b))
        last = a["num_frames"] - 1
        assert np.allclose(gb.displacement(last, 0, 0), 0.25 * np.asarray(ga.displacement(last, 0, 0)))
        assert a["scene"]["sprites"][0]["start_xy"] == b["scene"]["sprites"][0]["start_xy"]
    with pytest.raises(ValueError, match="travel_scale"):
        ShiftedMotionQA(travel_scale=1.5)


def test_which_half_is_order_sensitive():
    """`which_half`: same total motion either way, only its timing differs; frame 0 does not depend on the answer."""
    from transformers_cope.data.order_qa import OrderMotionQA

    gen = OrderMotionQA(duration_s=8, question_format="open")
    answers = set()
    for index in range(6):
        record, scene = gen.build_record(index, seed=0, split="train")
        answers.add(record["answer"])
        truth = ground_truth(scene)
        fps = int(record["fps"])
        per_second = [float(np.hypot(*truth.displacement((t + 1) * fps, t * fps, 0))) for t in range(7)]
        moving = [t for t, d in enumerate(per_second) if d > 1e-6]
        assert moving == ([0, 1, 2] if record["answer"] == "first" else [4, 5, 6]), (record["answer"], per_second)
        twin = gen.make_sample("which_half", "second" if record["answer"] == "first" else "first", record["seed"])
        assert twin.scene.sprites[0].start_xy == scene.sprites[0].start_xy
    assert answers == {"first", "second"}
    with pytest.raises(ValueError, match="unknown tasks"):
        OrderMotionQA(tasks=("sideways",))
