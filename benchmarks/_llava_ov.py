"""Transformers' own `LlavaOnevisionForConditionalGeneration` at the size of a CoPE-VideoLM config, for a side-by-side
time to first token in the same process (bench_ttft.py --llava-ov).

Why: CoPE's dense row is our own re-implementation of the frame-based baseline; the upstream LLaVA-OneVision model
with the same vision tower (SigLIP, 2x2 bilinear pooling) and the same LLM (Qwen2), fed 64 RGB frames, shows that the
baseline is not handicapped by our code. Random weights: only the timing matters. Its video input is what the LLaVA
processor would give: `frames x ceil(g/2)^2 + 1` placeholders (one newline per video), g = image_size / patch_size.
"""

from __future__ import annotations

import math

import torch


def build_llava_ov(cope_config, device: str, dtype: torch.dtype, attn: str):
    """LLaVA-OneVision with CoPE's vision and text sub-configs (features of the last layer, all patches, as
    `vision_feature_layer=-1` / "full"), its placeholder ids taken from CoPE's vocabulary, built on `device`."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    config = LlavaOnevisionConfig(
        vision_config=cope_config.vision_config.to_dict(),
        text_config=cope_config.text_config.to_dict(),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        video_token_index=cope_config.video_token_id,
        image_token_index=cope_config.delta_token_id,  # unused here (no images); any id inside the vocabulary
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaOnevisionForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn)
    return model.eval()


def llava_video_tokens(model, num_frames: int) -> int:
    vision = model.config.vision_config
    pooled = math.ceil((vision.image_size // vision.patch_size) / 2)
    return num_frames * pooled * pooled + 1


def llava_inputs(model, prompt_ids: list[int], visual_ids: set[int], num_frames: int, device: str | torch.device,
                 dtype: torch.dtype) -> dict:
    """The CoPE prompt's text tokens (host-side ids) with its visual span replaced by LLaVA-OneVision's video
    placeholders, and random frames; every tensor built on `device`."""
    first = next(i for i, t in enumerate(prompt_ids) if t in visual_ids)  # where the video sat in the CoPE prompt
    text = [t for t in prompt_ids if t not in visual_ids]
    ids = text[:first] + [model.config.video_token_id] * llava_video_tokens(model, num_frames) + text[first:]
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    size = model.config.vision_config.image_size
    torch.manual_seed(0)  # seeds every device's generator
    pixels = torch.randn((1, num_frames, 3, size, size), device=device, dtype=torch.float32)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values_videos": pixels.to(dtype),
    }
