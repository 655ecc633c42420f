"""Assemble a CoPE-VideoLM from pretrained parts, keeping their weights and adding a fresh Δ-encoder.

Two recipes:

(a) a vision checkpoint (e.g. SigLIP) + a causal-LM checkpoint (e.g. Qwen2): the projector is new as well;

    model = assemble_from_parts("google/siglip-so400m-patch14-384", "Qwen/Qwen2-7B-Instruct", tokenizer=tokenizer)

(b) a LLaVA-OneVision / LLaVA-Video checkpoint in Transformers format (`LlavaOnevisionForConditionalGeneration`, or any
    LLaVA-family class with `model.vision_tower`, `model.multi_modal_projector`, `model.language_model`, `lm_head`):
    its vision tower, projector (when the shapes match ours) and language model are reused;

    model = assemble_from_llava_onevision("llava-hf/LLaVA-Video-7B-Qwen2-hf", tokenizer=tokenizer)

With `tokenizer=`, the CoPE special tokens are added to it (`processing_cope.add_cope_special_tokens`) and their ids
go into the config; otherwise pass `token_ids={"video_token_id": ..., "delta_token_id": ..., ...}`. The language
model's embeddings grow if an id falls outside them; rows of newly added tokens start at the mean embedding.
The result is an ordinary `CoPEVideoLMForConditionalGeneration`: `save_pretrained` it (and the processor) and load it
back with `from_pretrained`. Not remote code: this module may import anything.
"""

import logging
import os
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText, ResNetModel

from .configuration_cope import CoPEDeltaConfig, CoPEVideoLMConfig
from .modeling_cope import CoPEDeltaEncoder, CoPEMultiModalProjector, CoPEVideoLMForConditionalGeneration

logger = logging.getLogger(__name__)

# special token -> config field (the processor's token strings)
TOKEN_FIELDS = {
    "<|video_pad|>": "video_token_id",
    "<|delta_pad|>": "delta_token_id",
    "<|frame_newline|>": "frame_newline_token_id",
    "<|delta_end|>": "delta_end_token_id",
    "<|vision_start|>": "vision_start_token_id",
    "<|vision_end|>": "vision_end_token_id",
}
_REQUIRED_FIELDS = ("video_token_id", "delta_token_id")

PathOrModel = str | os.PathLike | nn.Module


def resolve_token_ids(tokenizer=None, token_ids: dict[str, int] | None = None) -> tuple[dict[str, int], list[int]]:
    """Config token-id fields from a tokenizer (adding the CoPE special tokens to it) and/or an explicit dict keyed by
    config field (`video_token_id`) or token string (`<|video_pad|>`). Returns (fields, ids newly added to the
    tokenizer)."""
    fields: dict[str, int] = {}
    added: list[int] = []
    if tokenizer is not None:
        from .processing_cope import add_cope_special_tokens

        old_len = len(tokenizer)
        token_map = add_cope_special_tokens(tokenizer)
        fields.update({TOKEN_FIELDS[t]: i for t, i in token_map.items() if t in TOKEN_FIELDS})
        added = sorted(i for i in token_map.values() if i >= old_len)
    for key, value in (token_ids or {}).items():
        field = TOKEN_FIELDS.get(key, key)
        if field not in TOKEN_FIELDS.values() and field != "image_token_id":
            raise ValueError(f"unknown token id key {key!r}; use one of {sorted(TOKEN_FIELDS.values())} or their tokens")
        fields[field] = int(value)
    fields.pop("image_token_id", None)  # always equal to video_token_id
    missing = [f for f in _REQUIRED_FIELDS if f not in fields]
    if missing:
        raise ValueError(f"no {missing}: pass `tokenizer=` (CoPE special tokens are added to it) or `token_ids=`")
    for field in TOKEN_FIELDS.values():  # unknown optional ids: None rather than the config's Qwen2-vocab defaults
        fields.setdefault(field, None)
    return fields, added


def _load(path_or_model: PathOrModel, loader, **kwargs) -> nn.Module:
    return path_or_model if isinstance(path_or_model, nn.Module) else loader.from_pretrained(path_or_model, **kwargs)


def _load_vision_tower(path_or_model: PathOrModel, **kwargs) -> nn.Module:
    """A vision-only model; from a dual encoder checkpoint (SigLIP/CLIP with a text tower) its `vision_model`."""
    if isinstance(path_or_model, nn.Module):
        return path_or_model
    config = AutoConfig.from_pretrained(path_or_model)
    if hasattr(config, "vision_config") and hasattr(config, "text_config"):  # e.g. SiglipConfig: keep the vision half
        full = AutoModel.from_pretrained(path_or_model, **kwargs)
        vision = getattr(full, "vision_model", None)
        if vision is None or not hasattr(vision, "config"):
            raise ValueError(f"cannot find a vision model with a config in {path_or_model}")
        return vision
    if hasattr(config, "vision_use_head") or config.model_type == "siglip_vision_model":
        config.vision_use_head = False  # the pooling head is unused: the LM reads patch tokens
    return AutoModel.from_pretrained(path_or_model, config=config, **kwargs)


@torch.no_grad()
def _init_new_token_rows(model: CoPEVideoLMForConditionalGeneration, new_ids: list[int], num_old: int) -> None:
    """Rows of freshly added tokens start at the mean of the existing vocabulary's rows (input and output side)."""
    if not new_ids or num_old <= 0:
        return
    matrices = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings().weight
    if out.data_ptr() != matrices[0].data_ptr():
        matrices.append(out)
    for weight in matrices:
        weight[new_ids] = weight[:num_old].float().mean(0).to(weight.dtype)


def _assemble(
    vision_tower: nn.Module,
    language_model: nn.Module,
    lm_head: nn.Module,
    *,
    projector_state: dict[str, torch.Tensor] | None,
    config_kwargs: dict[str, Any],
    delta_config: CoPEDeltaConfig | dict | None,
    delta_encoder: PathOrModel | None,
    residual_backbone: PathOrModel | None,
    token_fields: dict[str, int],
    added_ids: list[int],
    num_old_tokens: int | None,
    generation_config=None,
) -> CoPEVideoLMForConditionalGeneration:
    if isinstance(delta_encoder, (str, os.PathLike)):
        delta_encoder = CoPEDeltaEncoder.from_pretrained(delta_encoder)
    if delta_encoder is not None:
        delta_config = delta_encoder.config
    config = CoPEVideoLMConfig(
        vision_config=vision_tower.config,
        text_config=language_model.config,
        delta_config=delta_config,
        **token_fields,
        **config_kwargs,
    )
    # A skeleton on the meta device (no allocation, no init), then the loaded parts are put in and the new ones built.
    with torch.device("meta"):
        model = CoPEVideoLMForConditionalGeneration(config)
    model.model.vision_tower = vision_tower
    model.model.language_model = language_model
    model.lm_head = lm_head
    dtype = language_model.get_input_embeddings().weight.dtype
    device = language_model.get_input_embeddings().weight.device
    if delta_encoder is None:
        delta_encoder = CoPEDeltaEncoder(config.delta_config)
        if residual_backbone is not None:
            init_residual_backbone(delta_encoder, residual_backbone)
    elif delta_encoder.config.output_size != config.vision_config.hidden_size:
        raise ValueError(
            f"the Δ-encoder outputs {delta_encoder.config.output_size} features, the vision width is "
            f"{config.vision_config.hidden_size}"
        )
    model.model.delta_encoder = delta_encoder.to(device=device, dtype=dtype)
    projector = CoPEMultiModalProjector(config)
    projector.apply(model.model._init_weights)
    if projector_state is not None:
        ours = projector.state_dict()
        if ours.keys() == projector_state.keys() and all(ours[k].shape == v.shape for k, v in projector_state.items()):
            projector.load_state_dict(projector_state)
        else:
            logger.warning("projector shapes differ from the checkpoint's: the projector starts fresh")
    model.model.multi_modal_projector = projector.to(device=device, dtype=dtype)

    vocab_needed = max(v for v in token_fields.values() if v is not None) + 1
    if vocab_needed > config.text_config.vocab_size:
        model.resize_token_embeddings(vocab_needed, mean_resizing=True)
    elif added_ids and num_old_tokens:
        _init_new_token_rows(model, added_ids, num_old_tokens)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.get_input_embeddings().weight
    if generation_config is not None:
        model.generation_config = generation_config
    return model.eval()


def assemble_from_parts(
    vision_model: PathOrModel,
    text_model: PathOrModel,
    *,
    tokenizer=None,
    token_ids: dict[str, int] | None = None,
    delta_config: CoPEDeltaConfig | dict | None = None,
    delta_encoder: PathOrModel | None = None,
    residual_backbone: PathOrModel | None = None,
    dtype: torch.dtype | str | None = None,
    **config_kwargs: Any,
) -> CoPEVideoLMForConditionalGeneration:
    """Vision checkpoint (SigLIP vision, or a SigLIP/CLIP dual encoder: its vision half) + causal-LM checkpoint
    (Qwen2 or any `AutoModelForCausalLM` with `.model` + `.lm_head`). Projector and Δ-encoder are new (the Δ-encoder
    may come from `delta_encoder=`, e.g. after alignment pre-training; its ResNet stages from `residual_backbone=`, a
    ResNet checkpoint). `config_kwargs` go to `CoPEVideoLMConfig` (GOP knobs, pooling, ...).
    """
    load_kwargs = {"dtype": dtype} if dtype is not None else {}
    num_old = len(tokenizer) if tokenizer is not None else None
    token_fields, added = resolve_token_ids(tokenizer, token_ids)
    vision = _load_vision_tower(vision_model, **load_kwargs)
    lm = _load(text_model, AutoModelForCausalLM, **load_kwargs)
    base = getattr(lm, lm.base_model_prefix)
    return _assemble(
        vision, base, lm.get_output_embeddings(),
        projector_state=None, config_kwargs=config_kwargs, delta_config=delta_config, delta_encoder=delta_encoder,
        residual_backbone=residual_backbone, token_fields=token_fields, added_ids=added, num_old_tokens=num_old,
        generation_config=getattr(lm, "generation_config", None),
    )


def assemble_from_llava_onevision(
    llava_model: PathOrModel,
    *,
    tokenizer=None,
    token_ids: dict[str, int] | None = None,
    delta_config: CoPEDeltaConfig | dict | None = None,
    delta_encoder: PathOrModel | None = None,
    residual_backbone: PathOrModel | None = None,
    dtype: torch.dtype | str | None = None,
    **config_kwargs: Any,
) -> CoPEVideoLMForConditionalGeneration:
    """A LLaVA-OneVision / LLaVA-Video checkpoint in Transformers format: its vision tower, 2-layer projector and
    language model + LM head are kept (LLaVA-Video is the paper's base model; its video pooling, 2x2 bilinear after
    the projector, is ours too). Its `vision_feature_layer`, `vision_feature_select_strategy`, projector activation
    and bias carry over. LLaVA-OneVision's learned `image_newline` vector is not used: CoPE writes a
    `<|frame_newline|>` text token after each pooled row instead.
    """
    load_kwargs = {"dtype": dtype} if dtype is not None else {}
    num_old = len(tokenizer) if tokenizer is not None else None
    token_fields, added = resolve_token_ids(tokenizer, token_ids)
    llava = _load(llava_model, AutoModelForImageTextToText, **load_kwargs)
    inner = llava.model
    for part in ("vision_tower", "multi_modal_projector", "language_model"):
        if not hasattr(inner, part):
            raise ValueError(f"{type(llava).__name__} has no `model.{part}`: not a LLaVA-family checkpoint")
    lcfg = llava.config
    carried = {
        "vision_feature_layer": lcfg.vision_feature_layer,
        "vision_feature_select_strategy": lcfg.vision_feature_select_strategy,
        "projector_hidden_act": lcfg.projector_hidden_act,
        "multimodal_projector_bias": getattr(lcfg, "multimodal_projector_bias", True),
    }
    projector_state = {k: v for k, v in inner.multi_modal_projector.state_dict().items()}
    return _assemble(
        inner.vision_tower, inner.language_model, llava.lm_head,
        projector_state=projector_state, config_kwargs={**carried, **config_kwargs}, delta_config=delta_config,
        delta_encoder=delta_encoder, residual_backbone=residual_backbone, token_fields=token_fields,
        added_ids=added, num_old_tokens=num_old, generation_config=getattr(llava, "generation_config", None),
    )


@torch.no_grad()
def init_residual_backbone(delta_encoder: CoPEDeltaEncoder, resnet: PathOrModel) -> list[str]:
    """Copy a pretrained ResNet's (e.g. ResNet-18's) stem and first stages into the Δ-encoder's residual branch,
    where shapes match. The stem's extra intra-mask channel starts at zero, so at first the branch sees the RGB
    residual exactly as the pretrained network would. Returns the copied parameter names."""
    source = _load(resnet, ResNetModel)
    source_state = source.state_dict()
    target = delta_encoder.residual_embeddings.backbone
    copied = []
    for name, tensor in target.state_dict().items():
        src = source_state.get(name)
        if src is None:
            continue
        if src.shape == tensor.shape:
            tensor.copy_(src)
        elif name == "embedder.embedder.convolution.weight" and src.shape[1] < tensor.shape[1] \
                and src.shape[0] == tensor.shape[0] and src.shape[2:] == tensor.shape[2:]:
            tensor.zero_()
            tensor[:, : src.shape[1]] = src
        else:
            continue
        if not name.endswith("num_batches_tracked"):
            copied.append(name)
    if not copied:
        raise ValueError("no ResNet parameter matched the Δ-encoder's residual backbone")
    return copied


__all__ = [
    "TOKEN_FIELDS",
    "assemble_from_llava_onevision",
    "assemble_from_parts",
    "init_residual_backbone",
    "resolve_token_ids",
]
