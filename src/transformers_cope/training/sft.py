"""Supervised fine-tuning of CoPE-VideoLM with `transformers.Trainer` or TRL's `SFTTrainer`.

What is here and why:
  * `apply_freezing`: the freezing presets. The paper fine-tunes end to end with the vision encoder frozen ("paper");
    "lora" leaves only the Δ-encoder and projector trainable and lets PEFT add adapters on the LLM (see `lora.py`);
    "delta" trains the Δ-encoder and projector alone; "full" trains everything (a model trained from scratch).
  * `freeze_batchnorm`: the Δ-encoder's residual branch is a ResNet with BatchNorm. Per-process batch statistics
    make multi-process training differ from one process with the same global batch (SyncBatchNorm needs GPUs), and
    tiny per-device batches make the statistics noisy. Freezing the statistics (running stats, affine still trained)
    makes DDP on any device exactly equivalent to one process.
  * `ChatVideoDataset`: chat samples encoded once (codec primitives extracted once, in parallel) so epochs cost only
    the model's forward and backward.
  * `sft_arguments` / `build_trainer`: the settings a video collator needs (`remove_unused_columns=False`, TRL's
    `skip_prepare_dataset`), activation checkpointing under its name in the installed Transformers release.
Distribution is the engine's: run the same script under `accelerate launch` (examples/accelerate_{ddp,fsdp}.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import Trainer, TrainingArguments

from .collator import CoPEDataCollator, video_refs

FREEZE_PRESETS = ("paper", "full", "delta", "lora")

__all__ = [
    "FREEZE_PRESETS",
    "ChatVideoDataset",
    "apply_freezing",
    "build_trainer",
    "cope_core",
    "freeze_batchnorm",
    "init_projection_layers",
    "set_chat_stop_tokens",
    "sft_arguments",
    "trainable_parameter_count",
]


def cope_core(model: nn.Module) -> nn.Module:
    """The `CoPEVideoLMModel` inside a `CoPEVideoLMForConditionalGeneration`, a PEFT model or a DDP/FSDP wrapper."""
    seen = model
    for _ in range(8):
        if hasattr(seen, "vision_tower") and hasattr(seen, "delta_encoder"):
            return seen
        if hasattr(seen, "get_base_model") and seen is not getattr(seen, "get_base_model")():
            seen = seen.get_base_model()
        elif hasattr(seen, "module"):
            seen = seen.module
        elif hasattr(seen, "model"):
            seen = seen.model
        else:
            break
    raise TypeError(f"{type(model).__name__} does not hold a CoPE-VideoLM (no vision_tower/delta_encoder found)")


def apply_freezing(model: nn.Module, preset: str = "paper") -> dict[str, int]:
    """Set `requires_grad` by preset; returns trainable / total parameter counts.

    paper: vision tower frozen; Δ-encoder, projector, LLM and LM head trained (the paper's fine-tuning).
    full:  everything trained (a model trained from scratch has no pretrained vision tower to keep).
    delta: only the Δ-encoder and the projector trained.
    lora:  as "delta"; PEFT then adds LoRA adapters on the LLM (`lora.apply_lora`), whose `modules_to_save` keep the
           Δ-encoder and projector trained and saved whole.
    """
    if preset not in FREEZE_PRESETS:
        raise ValueError(f"unknown freezing preset {preset!r}; choose from {FREEZE_PRESETS}")
    core = cope_core(model)
    model.requires_grad_(preset == "full")
    if preset == "paper":
        model.requires_grad_(True)
        core.vision_tower.requires_grad_(False)
    elif preset in ("delta", "lora"):
        core.delta_encoder.requires_grad_(True)
        core.multi_modal_projector.requires_grad_(True)
    return trainable_parameter_count(model)


def trainable_parameter_count(model: nn.Module) -> dict[str, int]:
    params = list(model.parameters())
    return {
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "total": sum(p.numel() for p in params),
    }


def init_projection_layers(model: nn.Module) -> None:
    """Re-initialise the layers that carry video features into the LLM with PyTorch's fan-in scaled default.

    For a model trained from scratch only. Transformers initialises every `nn.Linear` with N(0, 0.02): through the
    Δ-encoder's output projection and the 2-layer projector that makes keyframe and Δ-tokens ~20x smaller than text
    embeddings and almost constant across samples, and a tiny model then sits on a long loss plateau before it
    starts reading them (measured on synthetic motion QA: no progress in 600 steps; with this, progress after
    ~100-250). Pretrained or assembled models keep their own initialisation.
    """
    core = cope_core(model)
    layers = [core.delta_encoder.output_proj, *(m for m in core.multi_modal_projector.modules() if isinstance(m, nn.Linear))]
    with torch.no_grad():
        for layer in layers:
            layer.reset_parameters()


def _keep_eval(module: nn.Module, args) -> None:
    module.training = False


def freeze_batchnorm(model: nn.Module) -> int:
    """Keep every BatchNorm layer on its running statistics, also in `train()` mode; returns how many.

    The affine weight and bias stay trainable. Idempotent (a module is hooked once). Not saved with the model: call it
    again after loading if you train further.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if not getattr(module, "_cope_frozen_stats", False):
                module.register_forward_pre_hook(_keep_eval)
                module._cope_frozen_stats = True
            module.eval()
            count += 1
    return count


class ChatVideoDataset(torch.utils.data.Dataset):
    """Chat samples encoded once by a `CoPEDataCollator` (videos decoded once, in `num_workers` processes).

    `samples`: conversations (lists of messages) or dicts with "messages" (or TRL "prompt" + "completion").
    Items are the collator's encoded samples; batch them with the same collator.
    """

    def __init__(
        self,
        samples: Sequence[Any],
        collator: CoPEDataCollator,
        *,
        num_workers: int = 1,
        progress: bool = True,
    ):
        conversations = [s if isinstance(s, (list, tuple)) else collator.messages_of(s) for s in samples]
        collator.cache.prefetch(
            [ref for conv in conversations for ref in video_refs(conv)], num_workers=num_workers, progress=progress
        )
        self.conversations = conversations
        self.items = [collator.encode(conv) for conv in tqdm(conversations, desc="encode", disable=not progress)]

    def as_chat_dataset(self):
        """The raw conversations as a `datasets.Dataset` of {"messages"} rows (what TRL's SFTTrainer accepts); the
        collator encodes them per batch, reading videos from its already filled primitives cache."""
        from datasets import Dataset

        return Dataset.from_list([{"messages": conv} for conv in self.conversations])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def set_chat_stop_tokens(model, processor) -> None:
    """Make a trained chat model stop at the end of its turn: `<|im_end|>` (the chat template's turn end) or the
    tokenizer's EOS, padding with its pad token; saved with the model in generation_config.json."""
    tokenizer = processor.tokenizer
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def _checkpointing_name() -> str:
    """Transformers 5.23 renamed `gradient_checkpointing` to `activation_checkpointing` (5.17 only has the former)."""
    fields = TrainingArguments.__dataclass_fields__
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def sft_arguments(output_dir: str, *, use_trl: bool = False, gradient_checkpointing: bool = False, **kwargs):
    """`TrainingArguments` (or TRL's `SFTConfig`) with what a video collator needs.

    `remove_unused_columns=False` keeps the chat/video columns for the collator; with TRL,
    `dataset_kwargs={"skip_prepare_dataset": True}` stops SFTTrainer from tokenizing the dataset itself and
    `max_length=None` from truncating through video placeholders. Other kwargs pass through.
    """
    kwargs.setdefault("remove_unused_columns", False)
    kwargs.setdefault("report_to", "none")
    # Explicit either way: TRL's SFTConfig defaults checkpointing to on.
    kwargs[_checkpointing_name()] = bool(gradient_checkpointing)
    if use_trl:
        from trl import SFTConfig

        kwargs.setdefault("dataset_kwargs", {"skip_prepare_dataset": True})
        kwargs.setdefault("max_length", None)
        return SFTConfig(output_dir=output_dir, **kwargs)
    return TrainingArguments(output_dir=output_dir, **kwargs)


def build_trainer(
    model: nn.Module,
    processor,
    train_dataset,
    *,
    args,
    data_collator: CoPEDataCollator | None = None,
    eval_dataset=None,
    peft_config=None,
    callbacks=None,
):
    """A `Trainer` (for `TrainingArguments`) or TRL `SFTTrainer` (for `SFTConfig`) wired with the video collator."""
    data_collator = data_collator or CoPEDataCollator(processor)
    common = dict(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        processing_class=processor,
        callbacks=callbacks,
    )
    if type(args).__name__ == "SFTConfig":
        from trl import SFTTrainer

        if isinstance(train_dataset, ChatVideoDataset):  # TRL only takes `datasets` datasets
            common["train_dataset"] = train_dataset.as_chat_dataset()
        if isinstance(eval_dataset, ChatVideoDataset):
            common["eval_dataset"] = eval_dataset.as_chat_dataset()

        return SFTTrainer(peft_config=peft_config, **common)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
        common["model"] = model
    return Trainer(**common)
