"""Controls for Δ-encoder alignment: the Δ ablations change only the Δ inputs (zeroed, or another step's), and the
mean-shrink baseline is the least-squares shrink of the reference tokens (real codec data, real tiny tower)."""

import numpy as np
import pytest
import torch

from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.data import make_textured_video
from transformers_cope.tiny import build_tiny_processor, tiny_model_config
from transformers_cope.training.alignment import CoPEDeltaAligner, DeltaAlignmentDataset, evaluate_alignment
from transformers_cope.training.alignment_controls import ablate_delta, mean_shrink_baseline, per_step_mse


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("align_controls")
    rng = np.random.default_rng(0)
    paths = [make_textured_video(folder / f"v{i}.mp4", height=64, width=64, num_frames=40, fps=5,
                                 pan=tuple(float(v) for v in rng.uniform(-4, 4, 2)), seed=i) for i in range(4)]
    processor = build_tiny_processor()
    train = DeltaAlignmentDataset(paths[:3], processor.video_processor, progress=False)
    held = DeltaAlignmentDataset(paths[3:], processor.video_processor, progress=False)
    torch.manual_seed(0)
    return CoPEDeltaAligner(CoPEVideoLMForConditionalGeneration(tiny_model_config())), train, held


def test_ablations_touch_only_the_delta_inputs(data):
    _, train, _ = data
    assert ablate_delta(train, "none") is train
    zero, shuffled = ablate_delta(train, "zero"), ablate_delta(train, "shuffle", seed=3)
    sources = shuffled.source.tolist()
    assert sorted(sources) == list(range(len(train))) and all(s != i for i, s in enumerate(sources))
    for i in (0, 5, len(train) - 1):
        item, z, s = train[i], zero[i], shuffled[i]
        for key in ("pixel_values_reference", "pixel_values_target"):
            assert torch.equal(z[key], item[key]) and torch.equal(s[key], item[key])
        assert not z["delta_motion_vectors"].any() and not z["delta_residuals"].any()
        other = train[sources[i]]
        assert torch.equal(s["delta_motion_vectors"], other["delta_motion_vectors"])
        assert torch.equal(s["delta_residuals"], other["delta_residuals"])
    with pytest.raises(ValueError, match="ablation"):
        ablate_delta(train, "reverse")


def test_mean_shrink_baseline_and_per_step_mse(data):
    aligner, train, held = data
    shrink = mean_shrink_baseline(aligner, train, held)
    start = evaluate_alignment(aligner, held)
    assert 0 < shrink["shrink"] < 1  # consecutive frames' tokens correlate, imperfectly
    assert shrink["mean_shrink_mse"] < start["copy_mse"]  # shrinking alone beats copying: why the control exists
    steps = per_step_mse(aligner, held)
    assert steps.shape == (len(held),) and float(steps.mean()) == pytest.approx(start["mse"], rel=1e-5)
