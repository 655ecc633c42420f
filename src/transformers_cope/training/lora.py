"""PEFT LoRA recipe for CoPE-VideoLM.

The recipe (what `lora_config` builds):
  * LoRA adapters on the language model's linear layers only, chosen by a regex restricted to `language_model`
    (PEFT's `"all-linear"` would also hit the vision tower, the Δ-encoder's attention and the projector);
  * the Δ-encoder and the shared projector are new or task-specific, so they are trained whole and saved inside the
    adapter with `modules_to_save`;
  * the vision tower stays frozen, as in the paper.
An adapter folder holds `adapter_config.json` + `adapter_model.safetensors`; `PeftModel.from_pretrained(base, dir)`
(or `load_lora`) restores it, and `merge_and_unload()` (or `merge_lora`) gives back a plain
`CoPEVideoLMForConditionalGeneration` with the same logits. For special tokens added to a pretrained tokenizer, pass
`trainable_token_indices={"embed_tokens": [ids]}` so their embedding rows train too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from torch import nn

from .sft import cope_core

DEFAULT_MODULES_TO_SAVE = ("delta_encoder", "multi_modal_projector")

__all__ = [
    "DEFAULT_MODULES_TO_SAVE",
    "apply_lora",
    "language_model_linear_regex",
    "load_lora",
    "lora_config",
    "merge_lora",
]


def language_model_linear_regex(model: nn.Module | None = None, names: Sequence[str] | None = None) -> str:
    """Regex (PEFT applies `re.fullmatch` to module names) for the LLM's linear layers.

    `names` default to the leaf names of every `nn.Linear` inside `model`'s language model (for Qwen2:
    q/k/v/o_proj, gate/up/down_proj); without a model, the Qwen2/Llama names.
    """
    if names is None:
        if model is None:
            names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        else:
            language_model = cope_core(model).language_model
            names = sorted({n.rsplit(".", 1)[-1] for n, m in language_model.named_modules() if isinstance(m, nn.Linear)})
    if not names:
        raise ValueError("the language model has no nn.Linear layers to adapt")
    return r".*\blanguage_model\..*\.(" + "|".join(re.escape(n) for n in names) + r")"


def lora_config(
    model: nn.Module | None = None,
    *,
    r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.0,
    target_modules: str | Sequence[str] | None = None,
    modules_to_save: Sequence[str] | None = DEFAULT_MODULES_TO_SAVE,
    **kwargs,
):
    """A `peft.LoraConfig` following the recipe above; extra kwargs go to `LoraConfig`."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules if target_modules is not None else language_model_linear_regex(model),
        modules_to_save=list(modules_to_save) if modules_to_save else None,
        **kwargs,
    )


def apply_lora(model: nn.Module, config=None, **kwargs):
    """Wrap `model` in a `PeftModel` with `config` (default: `lora_config(model, **kwargs)`)."""
    from peft import get_peft_model

    return get_peft_model(model, config if config is not None else lora_config(model, **kwargs))


def load_lora(base_model: nn.Module, adapter_dir: str | os.PathLike, *, is_trainable: bool = False):
    """A saved adapter (LoRA weights + the whole Δ-encoder/projector) on top of `base_model`."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, adapter_dir, is_trainable=is_trainable)


def merge_lora(peft_model) -> nn.Module:
    """Fold the adapters into the base weights; returns the plain CoPE model (same logits, no PEFT needed)."""
    return peft_model.merge_and_unload()
