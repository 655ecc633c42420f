"""Tiny, offline building blocks: a locally trained tokenizer, the matching processor and model config.

Why: tests, examples, benchmarks and the embedded default model need a complete CoPE-VideoLM stack without any Hub
download. The tokenizer is a byte-level BPE trained in-process on a small built-in corpus of the synthetic QA
vocabulary (deterministic: same vocabulary and merges on every run), wrapped as a transformers `Qwen2Tokenizer`.
Not remote code.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from .processing_cope import CHAT_TEMPLATE, END_OF_TEXT, CoPEVideoLMProcessor, add_cope_special_tokens
from .video_processing_cope import CoPEVideoProcessor

TINY_VOCAB_SIZE = 640
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
    "pan panning static still which what where when how direction does do did is are the a an in of to from at by "
    "start starts end ends second seconds time video frame clip begins stops stop faster slower fast slow both "
    "neither none red green blue square circle sprite background towards away answer question think option options "
    "true false it its this that there after before during while then first half more less same different"
).split()
_TEMPLATES = (
    "Which direction does the object move?",
    "Which direction does the camera pan?",
    "Does the camera move? Answer yes or no.",
    "When does the object start moving?",
    "The object starts moving at {n} seconds.",
    "The object moves {d} and the camera pans {e}.",
    "Options: A. left B. right C. up D. down",
    "Answer with the option's letter from the given choices directly.",
    "<think>The object moves {d}, so the answer is {l}.</think><answer>{l}</answer>",
    "<think>The camera pans {e} while the object is still.</think><answer>{e}</answer>",
    "<answer>{l}</answer>",
    "Time {n}.{m}s: the {o} object moves {d}.",
    "Which object moves first? The {o} one moves first, the {p} one second.",
    "How many seconds does the clip last? {n} seconds.",
)


def _corpus() -> list[str]:
    """Deterministic training text: the QA templates filled every way, plus the chat roles and the word list."""
    lines = []
    fills = itertools.product("left right up down".split(), "ABCD", range(10), ("first", "second", "red", "blue"))
    for (d, letter, n, o), e, p in zip(fills, itertools.cycle("right left down up".split()), itertools.cycle(
            ("second", "first", "blue", "red"))):
        for template in _TEMPLATES:
            lines.append(template.format(d=d, e=e, l=letter, n=n, m=(n * 7) % 10, o=o, p=p))
    lines.append(" ".join(_WORDS))
    lines.append(" ".join(w.capitalize() for w in _WORDS))
    lines.extend(f"{role}\n" for role in ("system", "user", "assistant"))
    lines.append("0123456789 . , : ; ? ! ' \" ( ) - + = / \n 10 20 30 0.5 1.0 2.5 12.0")
    return lines


def build_tiny_tokenizer() -> Qwen2Tokenizer:
    """A ~640-token byte-level BPE `Qwen2Tokenizer` with the CoPE special tokens and chat template (left padding)."""
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
