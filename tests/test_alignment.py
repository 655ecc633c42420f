"""Δ-encoder alignment pre-training: pairs from real codec primitives, a zero-initialised start at the copy baseline,
a short real Trainer run that beats the copy baseline on held-out steps, and a saved model without the auxiliary
transformers."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

from transformers_cope import CoPEVideoLMForConditionalGeneration, extract_primitives
from transformers_cope.data import make_textured_video
from transformers_cope.tiny import build_tiny_processor, tiny_model_config
from transformers_cope.training.alignment import (
    CoPEDeltaAligner,
    DeltaAlignmentConfig,
    DeltaAlignmentDataset,
    alignment_pairs,
    evaluate_alignment,
    train_alignment,
)


def _videos(folder, count, seed):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pan = tuple(float(v) for v in rng.uniform(-2.0, 2.0, 2))
        sprite = tuple(float(v) for v in rng.uniform(-3.0, 3.0, 2))
        paths.append(make_textured_video(folder / f"v{seed}_{i}.mp4", height=64, width=64, num_frames=40, fps=5,
                                         pan=pan, sprite_velocity=sprite, seed=seed * 100 + i))
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("align")
    processor = build_tiny_processor()
    train = DeltaAlignmentDataset(_videos(folder, 8, 1), processor.video_processor, progress=False)
    held = DeltaAlignmentDataset(_videos(folder, 3, 2), processor.video_processor, progress=False)
    return processor, train, held


def test_pairs_follow_the_step_layout(data, tmp_path):
    processor, train, _ = data
    video = make_textured_video(tmp_path / "v.mp4", height=64, width=64, num_frames=40, fps=5, pan=(1.0, 0.0))
    vp = processor.video_processor
    prims = extract_primitives(video, fps=vp.fps, gop_size=vp.gop_size, keyframes_per_gop=1, size=(64, 64),
                               return_frames=True)
    pairs = alignment_pairs(prims, vp)
    assert len(pairs) == prims.frame_types.count("P") == 7
    inputs = vp(prims, return_tensors="pt")
    # the Δ inputs are exactly the processor's; step 1's reference is step 0, the keyframe
    assert torch.equal(torch.stack([p["delta_motion_vectors"] for p in pairs]), inputs["delta_motion_vectors"])
    assert torch.equal(pairs[0]["pixel_values_reference"], inputs["pixel_values_videos"][0])
    assert torch.equal(pairs[1]["pixel_values_reference"], pairs[0]["pixel_values_target"])
    assert len(train) == 8 * 7
    with pytest.raises(ValueError, match="return_frames"):
        alignment_pairs(extract_primitives(video, size=(64, 64)), vp)


def test_alignment_beats_copy_baseline_and_drops_aux_parts(data, tmp_path):
    _, train, held = data
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config())
    tower_before = {k: v.clone() for k, v in model.model.vision_tower.state_dict().items()}
    delta_before = {k: v.clone() for k, v in model.model.delta_encoder.state_dict().items()}

    aligner = CoPEDeltaAligner(model)
    start = evaluate_alignment(aligner, held)
    # zero-initialised heads: training starts exactly at "copy the reference frame's tokens"
    assert start["mse"] == pytest.approx(start["copy_mse"]) and start["copy_mse"] > 0
    assert not any(name.startswith("vision_tower") for name, _ in aligner.named_parameters())

    args = TrainingArguments(str(tmp_path / "run"), max_steps=50, per_device_train_batch_size=16,
                             learning_rate=3e-3, warmup_steps=5, lr_scheduler_type="cosine", weight_decay=0.0,
                             logging_steps=20, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                             seed=0)
    aligner, trainer = train_alignment(model, train, args, config=DeltaAlignmentConfig(num_layers=1))
    after = evaluate_alignment(aligner, held)
    print(f"held-out patch MSE: copy baseline {after['copy_mse']:.4f}, aligned {after['mse']:.4f}")
    assert after["mse"] < 0.92 * after["copy_mse"]  # full-size run: examples/align_delta_encoder.py
    assert trainer.state.global_step == 50

    # the vision tower stayed frozen, the model's own Δ-encoder was trained in place
    assert all(torch.equal(v, model.model.vision_tower.state_dict()[k]) for k, v in tower_before.items())
    assert any(not torch.equal(v, model.model.delta_encoder.state_dict()[k]) for k, v in delta_before.items())
    # the saved CoPE model carries the aligned Δ-encoder and none of the auxiliary transformers
    model.save_pretrained(tmp_path / "aligned")
    keys = load_file(str(tmp_path / "aligned" / "model.safetensors")).keys()
    assert not any("reference_transformer" in k or "warped_transformer" in k for k in keys)
    reloaded = CoPEVideoLMForConditionalGeneration.from_pretrained(tmp_path / "aligned")
    name, value = next(iter(model.model.delta_encoder.state_dict().items()))
    assert torch.equal(reloaded.model.delta_encoder.state_dict()[name], value)
