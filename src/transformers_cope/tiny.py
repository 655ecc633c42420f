"""Tiny, offline building blocks: a locally trained tokenizer, the matching processor and model config.

Why: tests, examples, benchmarks and the embedded default model need a complete CoPE-VideoLM stack without any Hub
download. The tokenizer is a byte-level BPE trained in-process on a small built-in corpus of the synthetic QA
vocabulary (deterministic: same vocabulary and merges on every run), wrapped as a transformers `Qwen2Tokenizer`.
Not remote code.
"""

from __future__ import annotations

import json
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from .processing_cope import CHAT_TEMPLATE, END_OF_TEXT, CoPEVideoLMProcessor, add_cope_special_tokens
from .video_processing_cope import CoPEVideoProcessor

TINY_VOCAB_SIZE = 1000
TINY_VISION = {"image_size": 32, "patch_size": 4, "hidden_size": 32}
TINY_CODEC_SIZE = 64
TINY_VIDEO_PROCESSOR = {
    "size": {"height": TINY_VISION["image_size"], "width": TINY_VISION["image_size"]},
    "patch_size": TINY_VISION["patch_size"],
    "pooling": 2,
    "codec_size": TINY_CODEC_SIZE,
}
_PROCESSOR_KEYS = ("use_timestamps", "use_row_newlines", "use_delta_end", "delta_tokens_per_step")

_WORDS = (
    "left right up down yes no A B C D first second third last object objects camera moves move moving moved pans "
    "pan panning static still stays which what where when how direction does do did is are the a an in of to from at "
    "by start starts end ends second seconds time video frame clip begins stops stop until faster slower fast slow "
    "both neither none red green blue yellow square circle sprite background towards away answer question think "
    "option options letter word whole number true false it its this that there after before during while then half "
    "more less same different px per inside give first"
).split()
_TEMPLATES = (
    "Which direction does the {c} {s} move?",
    "Does the {c} {s} move?",
    "Does the camera pan left or right?",
    "When does the {c} {s} start moving?",
    "During which seconds does the {c} {s} move?",
    "Which object moves, the {c} {s} or the {c2} {s2}?",
    "Which object moves faster, the {c} {s} or the {c2} {s2}?",
    "Which object starts moving first, the {c} {s} or the {c2} {s2}?",
    "A. left\nB. right\nC. up\nD. down",
    "Answer with the option's letter.",
    "Answer with one word.",
    "Answer with a whole number of seconds.",
    "Answer as 'start to end' in whole seconds.",
    "Think first inside <think></think>, then give the answer inside <answer></answer>.",
    "<think>The {c} {s} moves {n} px {d}.</think><answer>{l}</answer>",
    "<think>The background moves {n} px {e}, so the camera pans {e}.</think><answer>{e}</answer>",
    "<think>The {c} {s} is still until {n} s, moves {d} until {m} s, then stops.</think><answer>{n} to {m}</answer>",
    "<think>The {c} {s} moves {n}.{m} px per second; the {c2} {s2} {m}.{n}.</think><answer>{c}</answer>",
    "The {c} {s} starts moving at {n} s; the {c2} {s2} at {m} s.",
    "The {c} {s} stays still.",
    "Time {n}.{m}s:",
)
_FILLS = {"d": "left right up down", "e": "right left down up", "l": "A B C D", "c": "red green blue yellow",
          "c2": "blue yellow red green", "s": "square circle", "s2": "circle square"}


def _corpus() -> list[str]:
    """Deterministic training text: the QA templates filled many ways, the chat roles and the word list."""
    lines = []
    choices = {key: value.split() for key, value in _FILLS.items()}
    for i in range(120):
        fill = {key: options[(i * (j + 1) + i // 4) % len(options)] for j, (key, options) in enumerate(choices.items())}
        fill.update(n=i % 10, m=(i * 7 + 3) % 10)
        lines.extend(template.format(**fill) for template in _TEMPLATES)
    for _ in range(3):  # min_frequency 2: every word and role name gets its merges
        lines.append(" ".join(_WORDS))
        lines.append(" ".join(w.capitalize() for w in _WORDS))
        lines.extend(_WORDS)  # bare words too: answers start right after "assistant\n", without a space
        lines.extend(f"{role}\n" for role in ("system", "user", "assistant"))
    lines.append("0123456789 . , : ; ? ! ' \" ( ) - + = / \n 10 20 30 0.5 1.0 2.5 12.0")
    return lines


def build_tiny_tokenizer() -> Qwen2Tokenizer:
    """A ~1000-token byte-level BPE `Qwen2Tokenizer` with the CoPE special tokens and chat template (left padding)."""
    trainer_tokenizer = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    trainer_tokenizer.normalizer = normalizers.NFC()
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer_tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    trainer_tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    model = json.loads(trainer_tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, model_max_length=8192, padding_side="left")
    add_cope_special_tokens(tokenizer, chat_template=CHAT_TEMPLATE)
    return tokenizer


def build_tiny_video_processor(**overrides: Any) -> CoPEVideoProcessor:
    """The tiny `CoPEVideoProcessor`: 32 px keyframes, patch 4, 2x2 pooling (4x4 = 16 tokens), 64 px codec frames."""
    return CoPEVideoProcessor(**{**TINY_VIDEO_PROCESSOR, **overrides})


def build_tiny_processor(**overrides: Any) -> CoPEVideoLMProcessor:
    """Tiny tokenizer + tiny video processor. `overrides` go to the video processor, except the processor's own
    knobs (use_timestamps, use_row_newlines, use_delta_end, delta_tokens_per_step)."""
    processor_kwargs = {k: overrides.pop(k) for k in _PROCESSOR_KEYS if k in overrides}
    return CoPEVideoLMProcessor(
        video_processor=build_tiny_video_processor(**overrides),
        tokenizer=build_tiny_tokenizer(),
        chat_template=CHAT_TEMPLATE,
        **processor_kwargs,
    )


def tiny_model_config(**overrides: Any):
    """A `CoPEVideoLMConfig` matching `build_tiny_processor()`: SigLIP vision 32 px / patch 4 / hidden 32 (8x8
    patches -> 4x4 = 16 pooled tokens), Δ-encoder hidden 32 with a 2-stage ResNet of width 8/16, Qwen2 text hidden
    64 x 2 layers, vocabulary and every token id from the tiny tokenizer. `overrides` replace top-level entries."""
    from .configuration_cope import CoPEVideoLMConfig  # lazy: only the model side needs it

    tokenizer = build_tiny_tokenizer()
    vocab = tokenizer.get_vocab()
    config: dict[str, Any] = {
        "vision_config": {
            "model_type": "siglip_vision_model",
            "image_size": TINY_VISION["image_size"],
            "patch_size": TINY_VISION["patch_size"],
            "hidden_size": TINY_VISION["hidden_size"],
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "vision_use_head": False,
        },
        "text_config": {
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": None,
        },
        "delta_config": {
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "residual_embedding_size": 8,
            "residual_hidden_sizes": [8, 16],
            "residual_depths": [1, 1],
        },
        "video_token_id": vocab["<|video_pad|>"],
        "image_token_id": vocab["<|video_pad|>"],
        "delta_token_id": vocab["<|delta_pad|>"],
        "frame_newline_token_id": vocab["<|frame_newline|>"],
        "delta_end_token_id": vocab["<|delta_end|>"],
        "vision_start_token_id": vocab["<|vision_start|>"],
        "vision_end_token_id": vocab["<|vision_end|>"],
        "mv_normalizer": CoPEVideoProcessor.mv_normalizer,
        "mv_clip": CoPEVideoProcessor.mv_clip,
    }
    config.update(overrides)
    return CoPEVideoLMConfig(**config)


__all__ = [
    "build_tiny_tokenizer",
    "build_tiny_video_processor",
    "build_tiny_processor",
    "tiny_model_config",
    "TINY_VISION",
    "TINY_CODEC_SIZE",
    "TINY_VIDEO_PROCESSOR",
]
