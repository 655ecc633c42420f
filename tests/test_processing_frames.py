"""Decoded frames as `videos` (the `BaseVideoProcessor` input contract): a `(T, H, W, 3)` array, a list of PIL images
or a tensor go through the codec's transcode path in memory, so their Δ steps carry real motion vectors."""

import numpy as np
import PIL.Image
import pytest
import torch

from transformers_cope.tiny import TINY_CODEC_SIZE, build_tiny_processor
from transformers_cope.video_processing_cope import CoPEVideoProcessorInitKwargs, CoPEVideosKwargs

SHIFT = 4  # px per frame the content moves left (a camera panning right)
FRAMES = 8


def pan_frames(shift: int = SHIFT, frames: int = FRAMES, side: int = TINY_CODEC_SIZE) -> np.ndarray:
    """A blocky random texture (8-px blocks: easy to match) seen through a window that slides right by `shift` px a
    frame, so the content moves left: codec motion vectors (content displacement) have dx = -shift, dy = 0."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (side // 8, (side + shift * frames) // 8 + 1, 3)).astype(np.uint8)
    texture = np.kron(blocks, np.ones((8, 8, 1), np.uint8))
    return np.stack([texture[:, shift * t: shift * t + side] for t in range(frames)])


def conversation_text(processor) -> str:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Does the camera pan?"}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def fused_motion(inputs, processor) -> np.ndarray:
    """Mean (dx, dy) in pixels over the inner MV cells of every Δ step (the border cells see the texture edge)."""
    vp = processor.video_processor
    mv = inputs["delta_motion_vectors"][:, :2, 1:-1, 1:-1] * vp.mv_normalizer
    return mv.mean(dim=(2, 3)).numpy()


@pytest.mark.parametrize("kind", ["ndarray", "pil", "tensor"])
def test_decoded_frames_carry_the_pan(kind):
    processor = build_tiny_processor()
    frames = pan_frames()
    videos = {
        "ndarray": frames,
        "pil": [PIL.Image.fromarray(f) for f in frames],
        "tensor": torch.from_numpy(frames).permute(0, 3, 1, 2),  # (T, 3, H, W), torchvision's layout
    }[kind]
    inputs = processor(videos=videos, text=conversation_text(processor), return_tensors="pt")
    assert inputs["video_frame_types"] == ["I" + "P" * (FRAMES - 1)]  # one frame per step by default
    motion = fused_motion(inputs, processor)
    assert motion.shape == (FRAMES - 1, 2)
    np.testing.assert_allclose(motion[:, 0], -SHIFT, atol=0.5)
    np.testing.assert_allclose(motion[:, 1], 0.0, atol=0.5)
    assert float(inputs["delta_motion_vectors"][:, 2].mean()) < 0.1  # inter-coded, not intra
    n_delta = int((inputs["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|delta_pad|>")).sum())
    assert n_delta == (FRAMES - 1) * processor.delta_tokens_per_step


def test_frame_rate_sets_the_steps():
    """At `frames_fps` = 4 and 1 step per second, 8 frames (2 s) give 2 steps, and a Δ step fuses the four frame
    hops in its window: -4 x 4 = -16 px."""
    processor = build_tiny_processor(max_steps=None)
    inputs = processor(videos=[pan_frames()], text=conversation_text(processor), frames_fps=4.0,
                       return_tensors="pt")
    assert inputs["video_frame_types"] == ["IP"]
    motion = fused_motion(inputs, processor)
    np.testing.assert_allclose(motion[0], [-4 * SHIFT, 0.0], atol=1.0)


def test_still_frames_have_no_motion_and_batch_of_two():
    processor = build_tiny_processor()
    still = np.repeat(pan_frames()[:1], 4, axis=0)
    inputs = processor(videos=[still, pan_frames()], text=[conversation_text(processor)] * 2, return_tensors="pt",
                       padding=True)
    assert inputs["video_frame_types"] == ["IPPP", "I" + "P" * (FRAMES - 1)]
    motion = fused_motion(inputs, processor)
    np.testing.assert_allclose(motion[:3], 0.0, atol=0.25)
    np.testing.assert_allclose(motion[3:, 0], -SHIFT, atol=0.5)


def test_kwargs_class_name_and_alias():
    assert CoPEVideosKwargs is CoPEVideoProcessorInitKwargs
    assert "frames_fps" in CoPEVideoProcessorInitKwargs.__annotations__


def test_bad_frames_are_rejected():
    processor = build_tiny_processor()
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        processor.video_processor(np.zeros((2, 16, 16, 2), dtype=np.uint8))
    with pytest.raises(TypeError, match="decoded frames"):
        processor.video_processor(3)
