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
