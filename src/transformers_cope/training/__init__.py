"""Training CoPE-VideoLM: SFT collator and presets, LoRA recipe, evaluation harness (Trainer / TRL / PEFT based)."""

from .collator import IGNORE_INDEX, CoPEDataCollator, PrimitivesCache, keyframes_only, video_refs
from .evaluation import EvalResult, evaluate_video_qa, load_answer_accuracy, load_model_and_processor
from .sft import (
    FREEZE_PRESETS,
    ChatVideoDataset,
    apply_freezing,
    build_trainer,
    cope_core,
    freeze_batchnorm,
    init_projection_layers,
    set_chat_stop_tokens,
    sft_arguments,
    trainable_parameter_count,
)

__all__ = [
    "EvalResult",
    "FREEZE_PRESETS",
    "IGNORE_INDEX",
    "ChatVideoDataset",
    "CoPEDataCollator",
    "PrimitivesCache",
    "apply_freezing",
    "build_trainer",
    "cope_core",
    "freeze_batchnorm",
    "init_projection_layers",
    "set_chat_stop_tokens",
    "evaluate_video_qa",
    "keyframes_only",
    "load_answer_accuracy",
    "load_model_and_processor",
    "sft_arguments",
    "trainable_parameter_count",
    "video_refs",
]
