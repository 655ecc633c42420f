"""Model cards (the Hub's README.md) for CoPE-VideoLM checkpoints, with the checkpoint's own numbers.

Why: a card that says "fewer tokens" is less useful than one that states this checkpoint's GOP layout and what a
64-step video costs with it against the dense baseline. The prose (overview, usage, tips) is the model page's
(modeling_docs/cope_videolm.md holds the same paragraphs, tests keep them in sync); the numbers come from the config
and processor being pushed, via `count_video_tokens`.
"""

from __future__ import annotations

from typing import Any

import yaml

from .configuration_cope import count_video_tokens, gop_frame_types

__all__ = ["OVERVIEW", "TIPS", "build_model_card", "gop_settings", "token_table"]

OVERVIEW = (
    "CoPE-VideoLM (Sarkar et al., 2026, arXiv 2602.13191) is a video language model that reads the video codec's own "
    "primitives. The video is split into groups of pictures (GOPs): a few RGB keyframes (I-frames) per GOP go "
    "through the vision tower as usual, while every other time step (a P-frame) is represented only by its motion "
    "vectors and residual, which a light Δ-encoder turns into a handful of Δ-tokens. The language model reads the "
    "time-ordered interleave of keyframe tokens and Δ-tokens, so a video costs far fewer tokens and no vision-encoder "
    "pass for P-frames, which cuts the time to first token."
)

TIPS = [
    "Pass video files (or `CodecPrimitives`): the processor reads motion vectors and residuals from the codec with "
    "PyAV. Decoded frames (a `(T, H, W, 3)` array, a list of PIL images, a tensor) work too: they are encoded in "
    "memory and go through the codec's transcode path, so their Δ steps carry real motion vectors.",
    "`keyframes_per_gop` trades tokens for appearance detail: 1 keyframe per 8-step GOP uses about 16% of the dense "
    "tokens, `keyframes_per_gop == gop_size` is the dense baseline. Override it per call "
    "(`processor(..., keyframes_per_gop=2)` or `pipe(..., keyframes_per_gop=2)`).",
    "Files without exportable motion vectors (HEVC, VP9, AV1) or with B-frames are transcoded in memory to an I/P "
    "stream first (`codec_mode=\"auto\"`, the default); `codec_mode=\"transcode\"` always re-encodes.",
    "Video inputs are read at prefill only; generation then runs from the KV cache like any causal LM.",
    "Batched `generate` needs left padding (`processor.tokenizer.padding_side = \"left\"`); the pipeline pads left "
    "by itself.",
]


def gop_settings(config, processor=None) -> dict[str, Any]:
    """The step layout that runs: the processor's knobs when given (they are what extraction uses), else the config's."""
    video = getattr(processor, "video_processor", None)
    source = video if video is not None else config
    settings = {
        "fps": float(getattr(source, "fps", config.fps)),
        "gop_size": int(getattr(source, "gop_size", config.gop_size)),
        "keyframes_per_gop": int(getattr(source, "keyframes_per_gop", config.keyframes_per_gop)),
        "max_steps": getattr(video, "max_steps", None) if video is not None else None,
        "codec_size": getattr(video, "codec_size", None) if video is not None else None,
        "delta_tokens_per_step": int(config.delta_tokens_per_step),
        "tokens_per_keyframe": int(config.tokens_per_keyframe),
        "keyframe_grid": tuple(config.keyframe_grid),
    }
    return settings


def token_table(config, *, num_steps: int = 64, gop_size: int | None = None,
                keyframe_options: tuple[int, ...] | None = None, current: int | None = None,
                current_label: str = "this checkpoint") -> str:
    """Markdown table: LLM tokens of a `num_steps`-step video per keyframe density, against the dense baseline."""
    gop_size = int(gop_size or config.gop_size)
    if keyframe_options is None:
        keyframe_options = tuple(k for k in (1, 2, 4) if k < gop_size)
    dense = count_video_tokens("I" * num_steps, config)["total_tokens"]
    rows = [
        "| layout | keyframes | Δ steps | tokens | share of dense |",
        "|---|---:|---:|---:|---:|",
    ]
    for k in (*keyframe_options, gop_size):
        counts = count_video_tokens(gop_frame_types(num_steps, gop_size, k), config)
        name = "dense (every step a keyframe)" if k == gop_size else f"{k} keyframe{'s' if k > 1 else ''} per GOP"
        if k == current:
            name += f" ({current_label})"
        share = counts["total_tokens"] / dense
        rows.append(f"| {name} | {counts['num_keyframes']} | {counts['num_delta_steps']} | "
                    f"{counts['total_tokens']:,} | {share:.1%} |")
    return "\n".join(rows)


def _backbone(config, name: str) -> str:
    sub = getattr(config, name)
    size = getattr(sub, "hidden_size", "?")
    layers = getattr(sub, "num_hidden_layers", "?")
    return f"{type(sub).__name__} (hidden {size}, {layers} layers)"


def build_model_card(model_or_config, processor=None, *, repo_id: str | None = None,
                     base_models: list[str] | None = None, license: str = "apache-2.0",
                     tags: list[str] | None = None, description: str | None = None, num_steps: int = 64) -> str:
    """The README.md of a CoPE-VideoLM repo: metadata, overview, this checkpoint's layout and token savings, usage."""
    model = model_or_config if hasattr(model_or_config, "config") else None
    config = model.config if model is not None else model_or_config
    settings = gop_settings(config, processor)
    repo = repo_id or "<user>/<repo>"
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "video-text-to-text",
        "license": license,
        "tags": ["cope-videolm", "video", "video-question-answering", "codec", "motion-vectors", "custom_code",
                 *(tags or [])],
    }
    if base_models:
        metadata["base_model"] = list(base_models)
    steps = gop_frame_types(min(num_steps, settings["gop_size"] * 2), settings["gop_size"],
                            settings["keyframes_per_gop"])
    layout = count_video_tokens(gop_frame_types(num_steps, settings["gop_size"], settings["keyframes_per_gop"]), config)
    dense = count_video_tokens("I" * num_steps, config)
    saved = 1 - layout["total_tokens"] / dense["total_tokens"]
    params = f"{sum(p.numel() for p in model.parameters()):,}" if model is not None else "n/a"
    gh, gw = settings["keyframe_grid"]

    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).strip(),
        "---",
        "",
        f"# {repo.split('/')[-1]}: CoPE-VideoLM",
        "",
    ]
    if description:
        lines += [description.strip(), ""]
    lines += [
        OVERVIEW,
        "",
        "## This checkpoint",
        "",
        "| setting | value |",
        "|---|---|",
        f"| vision tower | {_backbone(config, 'vision_config')} |",
        f"| language model | {_backbone(config, 'text_config')} |",
        f"| Δ-encoder | {config.delta_config.num_motion_queries} motion + {config.delta_config.num_residual_queries} "
        f"residual queries, hidden {config.delta_config.hidden_size} |",
        f"| parameters | {params} |",
        f"| steps per second (`fps`) | {settings['fps']:g} |",
        f"| GOP (`gop_size` steps) | {settings['gop_size']} |",
        f"| keyframes per GOP (`keyframes_per_gop`) | {settings['keyframes_per_gop']} |",
        f"| step layout (first GOPs) | `{steps}` |",
        f"| tokens per keyframe | {gh}x{gw} = {settings['tokens_per_keyframe']} (+ row separators) |",
        f"| Δ-tokens per P step | {settings['delta_tokens_per_step']} (+ 1 separator) |",
    ]
    if settings["max_steps"] is not None:
        lines.append(f"| max steps per video | {settings['max_steps']} |")
    if settings["codec_size"] is not None:
        lines.append(f"| codec frame size | {settings['codec_size']} px |")
    lines += [
        "",
        f"### Token savings ({num_steps}-step video, e.g. {num_steps / settings['fps']:g} s at {settings['fps']:g} fps)",
        "",
        f"With this checkpoint's layout a {num_steps}-step video costs **{layout['total_tokens']:,}** LLM tokens "
        f"instead of {dense['total_tokens']:,} for dense keyframes: **{saved:.0%} fewer**.",
        "",
        token_table(config, num_steps=num_steps, gop_size=settings["gop_size"],
                    current=settings["keyframes_per_gop"]),
        "",
        "## Usage",
        "",
        "The repo carries its code (`trust_remote_code=True`); with `pip install transformers-cope` the classes are "
        "also registered locally. PyAV (`pip install av`) reads the codec primitives.",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'vqa = pipeline(model="{repo}", trust_remote_code=True)',
        'print(vqa("clip.mp4", question="Which direction does the red square move?"))',
        "# [{'answer': ...}]",
        "```",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'processor = AutoProcessor.from_pretrained("{repo}", trust_remote_code=True)',
        f'model = AutoModelForImageTextToText.from_pretrained("{repo}", trust_remote_code=True)',
        'messages = [{"role": "user", "content": [{"type": "video", "path": "clip.mp4"},',
        '                                         {"type": "text", "text": "Does the camera pan left or right?"}]}]',
        "inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,",
        '                                       return_dict=True, return_tensors="pt")',
        "out = model.generate(**inputs, max_new_tokens=32)",
        'print(processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0])',
        "```",
        "",
        "## Tips",
        "",
        *[f"- {tip}" for tip in TIPS],
        "",
        "## Reference",
        "",
        "CoPE-VideoLM: Sarkar et al., 2026, [arXiv:2602.13191](https://arxiv.org/abs/2602.13191). Card written by "
        "`transformers_cope.model_card.build_model_card`.",
        "",
    ]
    return "\n".join(lines)
