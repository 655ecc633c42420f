"""CoPE-VideoLM modeling: keyframes -> vision tower, Δ steps (codec motion vectors + residuals) -> Δ-encoder, both
through one projector and scattered into a causal LM in time order.

Layout follows Transformers v5 VLMs (LLaVA-OneVision / VideoLlama3): `ForConditionalGeneration.model` holds
`vision_tower`, `delta_encoder`, `multi_modal_projector` and the *base* `language_model`; `lm_head` sits on top.
The projector is named and shaped like LLaVA's so LLaVA-OneVision/LLaVA-Video weights load into it unchanged.

Ships to the Hub as remote code: flat, relative imports only. One code base for Transformers 5.17 (the GPU image) and
the newest release: the KV-cache argument and output field are called `past_key_values` on 5.17 and `cache` from 5.2x
on (`CACHE_KWARG`); both names are accepted everywhere and the installed release's own name is the one passed on, so
neither version warns.
"""

import dataclasses
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel, ResNetConfig
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.resnet.modeling_resnet import ResNetEmbeddings, ResNetEncoder
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.import_utils import is_tracing
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_cope import CoPEDeltaConfig, CoPEVideoLMConfig

# Inputs that only the prefill step may see: generation drops them once the KV cache holds the video.
PREFILL_ONLY_INPUTS = (
    "pixel_values_videos",
    "delta_motion_vectors",
    "delta_residuals",
    "video_compression_mask",
    "video_frame_types",
    "video_timestamps",
)

# The KV-cache keyword of the installed Transformers: `cache` since 5.2x (`past_key_values` deprecated there, removed in
# 5.40), `past_key_values` on 5.17. Read from the generation mixin, which is what calls our forward.
CACHE_KWARG = (
    "cache" if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    else "past_key_values"
)


def _cache_alias(func):
    """Where the installed release calls the cache `cache`, `past_key_values` is deprecated exactly as in upstream
    models (`deprecate_kwarg(..., "5.40.0", new_name="cache")`: a FutureWarning, then renamed); on 5.17 it is the
    release's own name and passes silently. Generation itself always passes the release's name, so it never warns."""
    if CACHE_KWARG == "cache":
        return deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")(func)
    return func


def _one_cache(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """`cache` and its alias `past_key_values` (the name on Transformers 5.17) are the same argument."""
    if cache is not None and past_key_values is not None and cache is not past_key_values:
        raise ValueError("Pass the KV cache once: `cache` and `past_key_values` are two names of one argument")
    return cache if cache is not None else past_key_values


# ----------------------------------------------------------------------------------------------------------------
# Δ-encoder
# ----------------------------------------------------------------------------------------------------------------


def sincos_2d_position_embedding(
    height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Fixed 2-D sin-cos positions `(height * width, dim)`: MV grids and residual maps change size with the video's
    aspect ratio, so the Δ-encoder uses positions that need no interpolation."""
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    y = ys.reshape(-1, 1) * omega
    x = xs.reshape(-1, 1) * omega
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1).to(dtype)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
):
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class CoPEDeltaAttention(nn.Module):
    """Bidirectional multi-head self-attention; dispatches to the configured attention implementation."""

    def __init__(self, config: CoPEDeltaConfig):
        super().__init__()
        self.config = config
        self.embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.scale = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        self.is_causal = False
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        queries = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        keys = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        values = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            queries,
            keys,
            values,
            None,
            is_causal=self.is_causal,
            scaling=self.scale,
            dropout=0.0 if not self.training else self.dropout,
        )
        return self.out_proj(attn_output.reshape(*input_shape, -1).contiguous()), attn_weights


class CoPEDeltaMLP(nn.Module):
    def __init__(self, config: CoPEDeltaConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden_states)))


class CoPEDeltaLayer(GradientCheckpointingLayer):
    """Pre-norm transformer layer of the Δ-encoder's query transformers."""

    def __init__(self, config: CoPEDeltaConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = CoPEDeltaAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CoPEDeltaMLP(config)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        attn_output, _ = self.self_attn(self.layer_norm1(hidden_states))
        hidden_states = hidden_states + attn_output
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class CoPEDeltaQueryTransformer(nn.Module):
    """`num_queries` learnable queries read a token map through self-attention over [queries; tokens]; the query
    outputs are the branch's Δ-tokens."""

    def __init__(self, config: CoPEDeltaConfig, num_queries: int):
        super().__init__()
        self.num_queries = num_queries
        self.queries = nn.Parameter(torch.zeros(num_queries, config.hidden_size))
        self.layers = nn.ModuleList([CoPEDeltaLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        queries = self.queries.to(tokens.dtype).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        hidden_states = torch.cat([queries, tokens], dim=1)
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return self.norm(hidden_states[:, : self.num_queries])


class CoPEMotionEmbeddings(nn.Module):
    """Linear patch embedding of the MV grid `[dx, dy, intra]` plus 2-D sin-cos positions."""

    def __init__(self, config: CoPEDeltaConfig):
        super().__init__()
        self.patch_size = config.mv_patch_size
        self.position_scale = config.position_embedding_scale
        self.patch_embedding = nn.Conv2d(
            config.mv_channels, config.hidden_size, kernel_size=self.patch_size, stride=self.patch_size
        )

    def forward(self, motion_vectors: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        pad_h, pad_w = (-motion_vectors.shape[-2]) % p, (-motion_vectors.shape[-1]) % p
        if pad_h or pad_w:  # grids whose side is not a multiple of the patch: pad with "no motion, not intra"
            motion_vectors = F.pad(motion_vectors, (0, pad_w, 0, pad_h))
        patches = self.patch_embedding(motion_vectors)
        _, dim, h, w = patches.shape
        tokens = patches.flatten(2).transpose(1, 2)
        return tokens + self.position_scale * sincos_2d_position_embedding(h, w, dim, tokens.device, tokens.dtype)


class CoPEResidualBackbone(nn.Module):
    """ResNet stem + stages (Transformers' `ResNetEmbeddings`/`ResNetEncoder`, the parameter names of `ResNetModel`).

    Why not `ResNetModel` itself: a nested `PreTrainedModel` whose config is not a registered sub-config makes
    `set_attn_implementation("sdpa")` on the whole model fail, although convolutions have no attention to switch."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.embedder = ResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config)
        for module in self.modules():  # initialised as ResNet initialises them (`CoPEDeltaPreTrainedModel._init_weights`)
            if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
                module._resnet_init = True

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embedder(pixel_values), return_dict=True).last_hidden_state


class CoPEResidualEmbeddings(nn.Module):
    """The first stages of a ResNet-18 (Transformers' `ResNetModel`) over the residual (+ intra mask channel),
    its feature map flattened into tokens with 2-D sin-cos positions."""

    def __init__(self, config: CoPEDeltaConfig):
        super().__init__()
        self.use_intra_mask = config.residual_use_intra_mask
        self.position_scale = config.position_embedding_scale
        backbone_config = ResNetConfig(
            num_channels=config.residual_channels + (1 if self.use_intra_mask else 0),
            embedding_size=config.residual_embedding_size,
            hidden_sizes=list(config.residual_hidden_sizes),
            depths=list(config.residual_depths),
            layer_type="basic",
            hidden_act="relu",
            downsample_in_first_stage=False,
        )
        self.backbone = CoPEResidualBackbone(backbone_config)
        self.proj = nn.Linear(config.residual_hidden_sizes[-1], config.hidden_size)

    def forward(self, residuals: torch.Tensor, intra_mask: torch.Tensor | None) -> torch.Tensor:
        if self.use_intra_mask:
            mask = F.interpolate(intra_mask, size=residuals.shape[-2:], mode="nearest")
            residuals = torch.cat([residuals, mask], dim=1)
        features = self.backbone(residuals)
        _, _, h, w = features.shape
        tokens = self.proj(features.flatten(2).transpose(1, 2))
        positions = sincos_2d_position_embedding(h, w, tokens.shape[-1], tokens.device, tokens.dtype)
        return tokens + self.position_scale * positions


class _SafetensorsOnlyLoading:
    """Mixed into every CoPE `PreTrainedModel` (the Δ-encoder too: `AutoModel` loads a `cope_delta` folder)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Safetensors only, unless the caller passes `use_safetensors=False`: Transformers falls back to pickle
        checkpoints (pytorch_model.bin) by default, and unpickling a file from the internet is a code-execution
        risk that a plugin loading remote checkpoints should not take silently."""
        if (kwargs.get("use_safetensors") is not None or pretrained_model_name_or_path is None
                or kwargs.get("state_dict") is not None or kwargs.get("gguf_file")):
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, use_safetensors=True, **kwargs)
        except OSError as e:
            if "safetensors" not in str(e):
                raise
            raise OSError(
                f"{pretrained_model_name_or_path} has no safetensors weights (model.safetensors or "
                f"model.safetensors.index.json); CoPE-VideoLM refuses pickle checkpoints such as pytorch_model.bin "
                f"by default because loading them can run arbitrary code. Convert it to safetensors, or pass "
                f"use_safetensors=False if you trust the file."
            ) from e


class CoPEDeltaPreTrainedModel(_SafetensorsOnlyLoading, PreTrainedModel):
    config: CoPEDeltaConfig
    config_class = CoPEDeltaConfig
    base_model_prefix = "delta_encoder"
    main_input_name = "motion_vectors"
    input_modalities = ("video",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["CoPEDeltaLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # Both query transformers record their layers, so the hidden states number 2 * num_hidden_layers + 1; releases
    # that resolve negative `output_hidden_states` indices (5.2x) read that count from the config property.
    _can_record_outputs = {
        "hidden_states": OutputRecorder(
            CoPEDeltaLayer,
            **({"num_hidden_layers_key": "num_recorded_hidden_layers"}
               if "num_hidden_layers_key" in inspect.signature(OutputRecorder).parameters else {}),
        ),
        "attentions": CoPEDeltaAttention,
    }

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, CoPEDeltaQueryTransformer):
            init.normal_(module.queries, mean=0.0, std=self.config.initializer_range)
        elif getattr(module, "_resnet_init", False):  # as `ResNetPreTrainedModel._init_weights`, module by module
            if isinstance(module, nn.Conv2d):
                init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                init.ones_(module.weight)
                init.zeros_(module.bias)
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)


@dataclass
class CoPEDeltaEncoderOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.Tensor` of shape `(num_delta_steps, num_queries, output_size)`):
        Δ-tokens at the vision width: the first `num_motion_queries` come from the motion branch, the rest from the
        residual branch.
    pooler_output (`torch.Tensor` of shape `(num_delta_steps, num_queries, text_hidden_size)`, *optional*):
        Set by `CoPEVideoLMModel.get_delta_features`: the Δ-tokens after the shared projector (what fills the
        `<|delta_pad|>` placeholders). `None` from the bare encoder.
    hidden_states (`tuple(torch.Tensor)`, *optional*, returned when `output_hidden_states=True`):
        The motion branch's input and the output of each of its layers, then the output of each residual-branch
        layer (`CoPEDeltaLayer`), each `(num_delta_steps, queries + tokens, hidden_size)`.
    attentions (`tuple(torch.Tensor)`, *optional*, returned when `output_attentions=True`):
        Attention weights of each layer, motion branch first (eager attention only).
    motion_hidden_states (`torch.Tensor` of shape `(num_delta_steps, num_motion_queries, hidden_size)`):
        Motion-branch query outputs before the output projection (alignment pre-training reads them).
    residual_hidden_states (`torch.Tensor` of shape `(num_delta_steps, num_residual_queries, hidden_size)`):
        Residual-branch query outputs before the output projection.
    """

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    motion_hidden_states: torch.Tensor | None = None
    residual_hidden_states: torch.Tensor | None = None


class CoPEDeltaEncoder(CoPEDeltaPreTrainedModel):
    """Turns each Δ step (fused motion vectors + residual) into `num_motion_queries + num_residual_queries`
    Δ-tokens at the vision width. All Δ steps of a batch go through it at once."""

    def __init__(self, config: CoPEDeltaConfig):
        super().__init__(config)
        if config.residual_use_intra_mask and config.mv_channels < 3:
            raise ValueError("residual_use_intra_mask needs the intra mask as channel 2 of the MV grid (mv_channels >= 3)")
        self.motion_embeddings = CoPEMotionEmbeddings(config)
        self.motion_transformer = CoPEDeltaQueryTransformer(config, config.num_motion_queries)
        self.residual_embeddings = CoPEResidualEmbeddings(config)
        self.residual_transformer = CoPEDeltaQueryTransformer(config, config.num_residual_queries)
        self.output_proj = nn.Linear(config.hidden_size, config.output_size or config.hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.motion_embeddings.patch_embedding

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)  # last_hidden_state is the projected output, not a layer's
    def forward(
        self, motion_vectors: torch.Tensor, residuals: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> CoPEDeltaEncoderOutput:
        r"""
        motion_vectors (`torch.Tensor` of shape `(num_delta_steps, mv_channels, Gh, Gw)`):
            `[dx, dy, intra]` per MV cell, dx/dy in pixels / `mv_normalizer`.
        residuals (`torch.Tensor` of shape `(num_delta_steps, residual_channels, Hr, Wr)`):
            Motion-compensated residual, standardised.
        """
        cfg = self.config
        if motion_vectors.ndim != 4 or motion_vectors.shape[1] != cfg.mv_channels:
            raise ValueError(
                f"delta_motion_vectors must be (num_delta_steps, {cfg.mv_channels}, Gh, Gw), "
                f"got {tuple(motion_vectors.shape)}"
            )
        if residuals.ndim != 4 or residuals.shape[1] != cfg.residual_channels:
            raise ValueError(
                f"delta_residuals must be (num_delta_steps, {cfg.residual_channels}, Hr, Wr), got {tuple(residuals.shape)}"
            )
        if motion_vectors.shape[0] != residuals.shape[0]:
            raise ValueError(
                f"delta_motion_vectors has {motion_vectors.shape[0]} Δ steps but delta_residuals has {residuals.shape[0]}"
            )
        dtype = self.output_proj.weight.dtype
        motion_vectors, residuals = motion_vectors.to(dtype), residuals.to(dtype)
        motion = self.motion_transformer(self.motion_embeddings(motion_vectors))
        intra = motion_vectors[:, 2:3] if cfg.residual_use_intra_mask else None
        residual = self.residual_transformer(self.residual_embeddings(residuals, intra))
        tokens = self.output_proj(torch.cat([motion, residual], dim=1))
        return CoPEDeltaEncoderOutput(
            last_hidden_state=tokens, motion_hidden_states=motion, residual_hidden_states=residual
        )


# ----------------------------------------------------------------------------------------------------------------
# CoPE-VideoLM
# ----------------------------------------------------------------------------------------------------------------


class CoPEMultiModalProjector(nn.Module):
    """LLaVA's 2-layer GELU MLP (same parameter names), shared by keyframe tokens and Δ-tokens."""

    def __init__(self, config: CoPEVideoLMConfig):
        super().__init__()
        layers = config.vision_feature_layer
        num_layers = 1 if isinstance(layers, int) else len(layers)
        self.linear_1 = nn.Linear(
            config.vision_config.hidden_size * num_layers,
            config.text_config.hidden_size,
            bias=config.multimodal_projector_bias,
        )
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(
            config.text_config.hidden_size, config.text_config.hidden_size, bias=config.multimodal_projector_bias
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


class _CoPEMultimodalOutput(ModelOutput):
    """Shared behaviour of the two output classes: the encoders' outputs (`video_outputs`, `delta_outputs`, and the
    always-empty `image_outputs` that 5.2x VLM outputs carry) become tuples in `to_tuple`, as in Transformers'
    `MultimodalModelOutput`; the tensors scattered into the placeholders stay readable under their old names."""

    def to_tuple(self) -> tuple:
        nested = ("image_outputs", "video_outputs", "delta_outputs")
        return tuple(self[k].to_tuple() if k in nested else self[k] for k in self.keys())

    @property
    def video_hidden_states(self) -> torch.Tensor | None:
        """Projected, pooled keyframe tokens that filled the `<|video_pad|>` placeholders, `(num_tokens, hidden)`."""
        return None if self.video_outputs is None else self.video_outputs.pooler_output.flatten(0, -2)

    @property
    def delta_hidden_states(self) -> torch.Tensor | None:
        """Projected Δ-tokens that filled the `<|delta_pad|>` placeholders, `(num_tokens, hidden)`."""
        return None if self.delta_outputs is None else self.delta_outputs.pooler_output.flatten(0, -2)


def _multimodal_output(name: str, doc: str, leading: list[tuple[str, Any]]) -> type:
    """A dataclass output whose KV-cache field has the installed release's name (`CACHE_KWARG`): generation reads the
    cache back from the output under that name, so one fixed spelling would lose the cache on the other release."""
    fields = [
        *leading,
        (CACHE_KWARG, Cache | None),
        ("hidden_states", tuple[torch.Tensor, ...] | None),
        ("attentions", tuple[torch.Tensor, ...] | None),
        ("image_outputs", BaseModelOutputWithPooling | None),
        ("video_outputs", BaseModelOutputWithPooling | None),
        ("delta_outputs", ModelOutput | None),
    ]
    return dataclasses.make_dataclass(
        name,
        [(field, kind, dataclasses.field(default=None)) for field, kind in fields],
        bases=(_CoPEMultimodalOutput,),
        namespace={"__doc__": doc, "__module__": __name__},
    )


CoPEVideoLMModelOutputWithPast = _multimodal_output(
    "CoPEVideoLMModelOutputWithPast",
    r"""
    last_hidden_state (`torch.Tensor` of shape `(batch_size, sequence_length, hidden_size)`): the LM's last layer.
    cache (`Cache`, *optional*): the language model's KV cache (`past_key_values` on Transformers 5.17).
    hidden_states, attentions: the language model's, when requested.
    image_outputs: always `None` (images are one-keyframe videos); kept for the 5.2x multimodal output layout.
    video_outputs (`BaseModelOutputWithPooling`, *optional*):
        The vision tower's output for the keyframes; `pooler_output` holds the projected, pooled keyframe tokens that
        filled the `<|video_pad|>` placeholders: `(num_keyframes, tokens_per_keyframe, hidden_size)`, or
        `(num_kept_tokens, hidden_size)` after a `video_compression_mask`.
    delta_outputs (`CoPEDeltaEncoderOutput`, *optional*):
        The Δ-encoder's output; `pooler_output` `(num_delta_steps, delta_tokens_per_step, hidden_size)` filled the
        `<|delta_pad|>` placeholders.
    video_hidden_states, delta_hidden_states (properties): those `pooler_output`s flattened to `(num_tokens, hidden)`.
    """,
    [("last_hidden_state", torch.Tensor | None)],
)

CoPEVideoLMCausalLMOutputWithPast = _multimodal_output(
    "CoPEVideoLMCausalLMOutputWithPast",
    r"""
    loss (`torch.Tensor` of shape `(1,)`, *optional*): language-modeling loss when `labels` are given.
    logits (`torch.Tensor` of shape `(batch_size, sequence_length, vocab_size)`): next-token scores.
    cache, hidden_states, attentions, image_outputs, video_outputs, delta_outputs, video_hidden_states,
    delta_hidden_states: as in [`CoPEVideoLMModelOutputWithPast`].
    """,
    [("loss", torch.Tensor | None), ("logits", torch.Tensor | None)],
)


class CoPEVideoLMPreTrainedModel(_SafetensorsOnlyLoading, PreTrainedModel):
    config: CoPEVideoLMConfig
    config_class = CoPEVideoLMConfig
    base_model_prefix = "model"
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    # post_init() adds the children's (decoder layers, vision layers, ResNet blocks) to this set.
    _no_split_modules = ["CoPEDeltaLayer"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # The decode steps compile: video inputs reach the prefill only (`prepare_inputs_for_generation`) and a forward
    # without them is the plain LM (static cache, compiled decoding; tests/test_generation_paths.py checks
    # `torch.compile(model.forward, fullgraph=True)` on a decode step). The prefill's merge has static shapes too (one
    # cumsum-indexed gather, `_merge_features`); only the optional `video_compression_mask` selects data-dependently.
    _can_compile_fullgraph = True

class CoPEVideoLMModel(CoPEVideoLMPreTrainedModel):
    """Vision tower + Δ-encoder + shared projector + base language model (no LM head)."""

    # Reference: the loss is computed by the ForConditionalGeneration head, as in VideoLlama3.
    accepts_loss_kwargs = False

    def __init__(self, config: CoPEVideoLMConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.delta_encoder = CoPEDeltaEncoder(config.delta_config)
        self.multi_modal_projector = CoPEMultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.language_model.set_input_embeddings(value)

    def pool_keyframe_features(self, features: torch.Tensor) -> torch.Tensor:
        """`(n, h*w, D)` patch tokens -> `(n, h'*w', D)` with the configured pooling (LLaVA-Video: bilinear,
        27x27 -> ceil(27/2) = 14x14)."""
        mode, stride = self.config.pooling_mode, self.config.pooling_stride
        if mode == "none" or stride == 1:
            return features
        n, length, dim = features.shape
        h, w = self.config.vision_grid
        if h * w != length:
            side = math.isqrt(length)
            if side * side != length:
                raise ValueError(
                    f"cannot pool {length} vision tokens: expected the {h}x{w} grid of the vision config or a square"
                )
            h = w = side
        grid = features.view(n, h, w, dim).permute(0, 3, 1, 2)
        if mode == "bilinear":
            grid = F.interpolate(grid, size=(math.ceil(h / stride), math.ceil(w / stride)), mode="bilinear")
        else:
            grid = F.avg_pool2d(grid, kernel_size=stride, stride=stride, ceil_mode=True)
        return grid.permute(0, 2, 3, 1).reshape(n, -1, dim)

    @can_return_tuple
    def get_video_features(
        self, pixel_values_videos: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> BaseModelOutputWithPooling:
        r"""
        pixel_values_videos (`torch.Tensor` of shape `(num_keyframes, 3, S, S)`):
            All keyframes of the batch, in order.

        Returns the vision tower's output with `pooler_output` set to the projected, pooled keyframe tokens
        `(num_keyframes, tokens_per_keyframe, text_hidden_size)`. Other kwargs (`output_attentions`,
        `output_hidden_states`, ...) go to the vision tower, as in LLaVA-OneVision.
        """
        if pixel_values_videos.ndim == 5:  # (videos, frames, C, H, W) -> all frames in order
            pixel_values_videos = pixel_values_videos.flatten(0, 1)
        pixel_values_videos = pixel_values_videos.to(self.vision_tower.dtype)
        layer = self.config.vision_feature_layer
        # Transformers >= 5.2x captures only the selected layers when given their indices (0 would read as False);
        # older releases treat any truthy value as True and return them all. A caller asking for all hidden states
        # gets all of them.
        wanted = layer if isinstance(layer, int) else list(layer)
        if wanted == 0 or (isinstance(wanted, list) and 0 in wanted) or kwargs.pop("output_hidden_states", None):
            wanted = True
        kwargs["return_dict"] = True
        vision_outputs = self.vision_tower(pixel_values_videos, output_hidden_states=wanted, **kwargs)
        if isinstance(layer, int):
            features = vision_outputs.hidden_states[layer]
        else:
            features = torch.cat([vision_outputs.hidden_states[i] for i in layer], dim=-1)
        if self.config.vision_feature_select_strategy == "default":
            features = features[:, 1:]
        features = self.multi_modal_projector(features)
        vision_outputs.pooler_output = self.pool_keyframe_features(features)
        return vision_outputs

    @can_return_tuple
    def get_delta_features(
        self, delta_motion_vectors: torch.Tensor, delta_residuals: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> CoPEDeltaEncoderOutput:
        r"""
        delta_motion_vectors (`torch.Tensor` of shape `(num_delta_steps, 3, Gh, Gw)`): `[dx, dy, intra]`.
        delta_residuals (`torch.Tensor` of shape `(num_delta_steps, 3, Hr, Wr)`): standardised residuals.

        Returns the Δ-encoder's own output (`last_hidden_state` at the vision width, the branch states, and the
        requested hidden states / attentions) with `pooler_output` set to the projected Δ-tokens
        `(num_delta_steps, delta_tokens_per_step, text_hidden_size)`. Other kwargs go to the Δ-encoder.
        """
        kwargs["return_dict"] = True
        delta_outputs = self.delta_encoder(delta_motion_vectors, delta_residuals, **kwargs)
        delta_outputs.pooler_output = self.multi_modal_projector(delta_outputs.last_hidden_state)
        return delta_outputs

    def compile_encoders(self, **compile_kwargs) -> "CoPEVideoLMModel":
        """Opt-in `torch.compile` of the prefill's encoder paths: `get_video_features` (vision tower + projector +
        pooling) and `get_delta_features` (Δ-encoder + projector). Returns `self`.

        Why: at paper size the 1 KF/GOP prefill is launch-bound on a large GPU (an H200 ran 1,886 kernels with more
        host than device time); fusing the encoders' small ops removes most of their launches. Shapes are static
        (`dynamic=False` unless given): each layout (number of keyframes, of Δ steps) compiles once and is reused.
        `mode="reduce-overhead"` adds CUDA graphs, which pay when the same layout repeats (fixed-length clips, e.g.
        64 steps at 1 KF/GOP = 8 keyframes + 56 Δ steps); the LLM prefill is left eager (its length varies with the
        prompt). The forward has no host syncs on this path, so `fullgraph=True` also works (tests check it)."""
        options = {"dynamic": False, **compile_kwargs}
        # Transformers installs its output-capturing hooks on the first forward, under a threading lock that Dynamo
        # cannot trace: install them now, outside the compiled region.
        try:
            from transformers.utils.output_capturing import maybe_install_capturing_hooks
        except ImportError:  # a release without lazily installed hooks
            maybe_install_capturing_hooks = None
        if maybe_install_capturing_hooks is not None:
            for module in (*self.vision_tower.modules(), *self.delta_encoder.modules()):
                if isinstance(module, PreTrainedModel):
                    maybe_install_capturing_hooks(module)
        self.get_video_features = torch.compile(self.get_video_features, **options)
        self.get_delta_features = torch.compile(self.get_delta_features, **options)
        return self

    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor, token_id: int
    ) -> torch.BoolTensor:
        """`(batch, seq)` mask of the placeholders of `token_id`, from `input_ids` or, without them, by comparing
        `inputs_embeds` with that token's embedding."""
        if input_ids is not None:
            return input_ids == token_id
        token_embedding = self.get_input_embeddings()(
            torch.tensor(token_id, dtype=torch.long, device=inputs_embeds.device)
        )
        return (inputs_embeds == token_embedding).all(-1)

    @staticmethod
    def _merge_features(
        inputs_embeds: torch.Tensor, parts: list[tuple[torch.Tensor, torch.Tensor, str, str, str]]
    ) -> torch.Tensor:
        """Write each part's features into its placeholders, in placeholder order, with one gather and one `where`.

        `parts` holds `(placeholder mask (batch, seq), features (n, hidden), kind, token name, feature name)`. The
        n-th placeholder of a part (row-major over batch and sequence, as `masked_scatter` reads them) takes its
        n-th feature row; the rows come from the placeholders' running count (`cumsum`), so nothing is read back to
        the host: no `.item()`, no `nonzero`, static shapes (what torch.compile and CUDA graphs need). Counts are
        checked by `_check_placeholder_count` without a host sync on an accelerator."""
        batch, seq, hidden = inputs_embeds.shape
        features, index, any_mask, offset = [], None, None, 0
        for mask, feats, kind, token_name, feature_name in parts:
            mask = mask.to(inputs_embeds.device).reshape(-1)
            running = torch.cumsum(mask, 0)  # ordinal of each placeholder, 1-based
            CoPEVideoLMModel._check_placeholder_count(running[-1], feats.shape[0], kind, token_name, feature_name)
            rows = torch.clamp(running - 1, min=0) + offset
            index = torch.where(mask, rows, 0 if index is None else index)
            any_mask = mask if any_mask is None else any_mask | mask
            features.append(feats.to(inputs_embeds.device, inputs_embeds.dtype))
            offset += feats.shape[0]
        table = torch.cat(features) if len(features) > 1 else features[0]
        if table.shape[0] == 0:  # e.g. a compression mask that kept nothing: no placeholders either (checked above)
            return inputs_embeds
        gathered = table[index.clamp(max=max(table.shape[0] - 1, 0))]
        merged = torch.where(any_mask.unsqueeze(-1), gathered, inputs_embeds.reshape(batch * seq, hidden))
        return merged.view(batch, seq, hidden)

    @staticmethod
    def _check_placeholder_count(n_tokens: torch.Tensor, n_features: int, kind: str, token_name: str,
                                 feature_name: str) -> None:
        """Placeholders must match features one to one. On the CPU (no sync to avoid) a clear ValueError; on an
        accelerator a device-side assert (`torch._assert_async`: no host sync; a mismatch stops the next
        synchronising call); under torch.compile / fake tensors (tracing) nothing, as in Transformers' VLMs."""
        if is_tracing(n_tokens):
            return
        message = (
            f"{kind} placeholders and features do not match: input has {{}} {token_name} tokens but {feature_name} "
            f"give {n_features} features. Build the prompt with the CoPE processor (it expands placeholders from the "
            "same frame layout) or check truncation."
        )
        if n_tokens.device.type == "cpu":
            if int(n_tokens) != n_features:
                raise ValueError(message.format(int(n_tokens)))
        else:
            torch._assert_async(n_tokens == n_features, message.format("a different number of"))

    @_cache_alias
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        delta_motion_vectors: torch.Tensor | None = None,
        delta_residuals: torch.Tensor | None = None,
        video_compression_mask: torch.BoolTensor | None = None,
        video_frame_types: list[str] | None = None,
        video_timestamps: list[list[float]] | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CoPEVideoLMModelOutputWithPast:
        r"""
        cache (`Cache`, *optional*): the KV cache; `past_key_values` is the same argument (its name on 5.17).
        pixel_values_videos (`torch.Tensor` of shape `(num_keyframes, 3, S, S)`, *optional*):
            All keyframes of the batch in order, normalised for the vision tower.
        delta_motion_vectors (`torch.Tensor` of shape `(num_delta_steps, 3, Gh, Gw)`, *optional*):
            `[dx, dy, intra]` of every Δ step of the batch in order.
        delta_residuals (`torch.Tensor` of shape `(num_delta_steps, 3, Hr, Wr)`, *optional*):
            Standardised residuals of every Δ step of the batch in order.
        video_compression_mask (`torch.BoolTensor` of shape `(num_keyframes * tokens_per_keyframe,)`, *optional*):
            VideoLLaMA3-style pruning: `False` drops that keyframe token (its placeholder is not in `input_ids`).
        video_frame_types (`list[str]`, *optional*):
            Step layout per video ("IPPP..."), used only to check the tensors against it.
        video_timestamps (`list[list[float]]`, *optional*): accepted and ignored (the processor writes the times).

        Placeholder counts are checked against the features only when video inputs are given, as upstream VLMs do:
        without them (decode steps, an assistant model's prefill, text-only use) a placeholder id is a plain token.
        """
        cache = _one_cache(cache, past_key_values)
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if (delta_motion_vectors is None) != (delta_residuals is None):
            raise ValueError("delta_motion_vectors and delta_residuals must be given together")
        if delta_motion_vectors is not None and delta_motion_vectors.shape[0] == 0:
            delta_motion_vectors = delta_residuals = None  # a dense layout (every step a keyframe) has no Δ steps
        if video_frame_types is not None:
            self._check_frame_types(video_frame_types, pixel_values_videos, delta_motion_vectors)
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        # The encoders see the caller's output switches, nothing else of the LM's kwargs (e.g. packed-sequence
        # attention kwargs belong to the LM only).
        encoder_kwargs = {k: kwargs[k] for k in ("output_attentions", "output_hidden_states") if k in kwargs}

        video_outputs, parts = None, []
        if pixel_values_videos is not None:
            video_outputs = self.get_video_features(pixel_values_videos, return_dict=True, **encoder_kwargs)
            video_features = video_outputs.pooler_output.flatten(0, 1)
            if video_compression_mask is not None:
                video_compression_mask = video_compression_mask.reshape(-1).to(video_features.device, torch.bool)
                if video_compression_mask.shape[0] != video_features.shape[0]:
                    raise ValueError(
                        f"video_compression_mask has {video_compression_mask.shape[0]} entries but the keyframes "
                        f"give {video_features.shape[0]} tokens ({self.config.tokens_per_keyframe} per keyframe)"
                    )
                video_features = video_features[video_compression_mask]
                video_outputs.pooler_output = video_features
            mask = self.get_placeholder_mask(input_ids, inputs_embeds, self.config.video_token_id)
            parts.append((mask, video_features, "Video (keyframe)", "<|video_pad|>", "pixel_values_videos"))

        delta_outputs = None
        if delta_motion_vectors is not None:
            delta_outputs = self.get_delta_features(
                delta_motion_vectors, delta_residuals, return_dict=True, **encoder_kwargs
            )
            mask = self.get_placeholder_mask(input_ids, inputs_embeds, self.config.delta_token_id)
            parts.append((mask, delta_outputs.pooler_output.flatten(0, 1), "Delta", "<|delta_pad|>",
                          "delta_motion_vectors/delta_residuals"))
        if parts:  # keyframe and Δ features into their placeholders in one pass, without host syncs
            inputs_embeds = self._merge_features(inputs_embeds, parts)

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **{CACHE_KWARG: cache},
            **kwargs,
        )
        return CoPEVideoLMModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            video_outputs=video_outputs,
            delta_outputs=delta_outputs,
            **{CACHE_KWARG: outputs[CACHE_KWARG] if CACHE_KWARG in outputs else None},
        )

    @staticmethod
    def _check_frame_types(frame_types, pixel_values_videos, delta_motion_vectors):
        if isinstance(frame_types, str):
            frame_types = [frame_types]
        layout = "".join(frame_types)
        n_i, n_p = layout.count("I"), layout.count("P")
        got_i = 0 if pixel_values_videos is None else pixel_values_videos.shape[0]
        got_p = 0 if delta_motion_vectors is None else delta_motion_vectors.shape[0]
        if pixel_values_videos is not None and pixel_values_videos.ndim == 5:
            got_i = pixel_values_videos.shape[0] * pixel_values_videos.shape[1]
        if (n_i, n_p) != (got_i, got_p):
            raise ValueError(
                f"video_frame_types {frame_types} have {n_i} keyframes and {n_p} Δ steps but the inputs hold "
                f"{got_i} keyframes and {got_p} Δ steps"
            )


class CoPEVideoLMForConditionalGeneration(CoPEVideoLMPreTrainedModel, GenerationMixin):
    """CoPE-VideoLM with a language-modeling head; generates with a KV cache (video inputs are read at prefill)."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: CoPEVideoLMConfig):
        super().__init__(config)
        self.model = CoPEVideoLMModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module):
        self.lm_head = new_embeddings

    def get_video_features(self, pixel_values_videos: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        return self.model.get_video_features(pixel_values_videos, **kwargs)

    def get_delta_features(
        self, delta_motion_vectors: torch.Tensor, delta_residuals: torch.Tensor, **kwargs
    ) -> CoPEDeltaEncoderOutput:
        return self.model.get_delta_features(delta_motion_vectors, delta_residuals, **kwargs)

    @_cache_alias
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        delta_motion_vectors: torch.Tensor | None = None,
        delta_residuals: torch.Tensor | None = None,
        video_compression_mask: torch.BoolTensor | None = None,
        video_frame_types: list[str] | None = None,
        video_timestamps: list[list[float]] | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CoPEVideoLMCausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Targets for the language-modeling loss; -100 is ignored.
        See [`CoPEVideoLMModel.forward`] for the cache (`cache`, alias `past_key_values`) and the video inputs.
        """
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=_one_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            pixel_values_videos=pixel_values_videos,
            delta_motion_vectors=delta_motion_vectors,
            delta_residuals=delta_residuals,
            video_compression_mask=video_compression_mask,
            video_frame_types=video_frame_types,
            video_timestamps=video_timestamps,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, slice_indices, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return CoPEVideoLMCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            video_outputs=outputs.video_outputs,
            delta_outputs=outputs.delta_outputs,
            **{CACHE_KWARG: outputs[CACHE_KWARG] if CACHE_KWARG in outputs else None},
        )

    def _expand_inputs_for_generation(
        self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids: torch.LongTensor | None = None,
        **model_kwargs,
    ):
        """Beam search / `num_return_sequences` repeat each sample `expand_size` times. The video tensors are flat
        over the batch (not one row per sample), so they are repeated sample by sample here, keeping the order in
        which the placeholders of the expanded batch will read them."""
        video = {k: model_kwargs.pop(k) for k in PREFILL_ONLY_INPUTS if model_kwargs.get(k) is not None}
        if expand_size > 1 and video:
            video.pop("video_frame_types", None)  # only a consistency check; its per-video list is not per sample
            video.pop("video_timestamps", None)
            video = self._repeat_video_inputs(input_ids, expand_size, **video)
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size, is_encoder_decoder=is_encoder_decoder, input_ids=input_ids, **model_kwargs
        )
        model_kwargs.update(video)
        return input_ids, model_kwargs

    def _repeat_video_inputs(self, input_ids, expand_size, **video) -> dict:
        cfg = self.config
        if video.get("pixel_values_videos") is not None and video["pixel_values_videos"].ndim == 5:
            video["pixel_values_videos"] = video["pixel_values_videos"].flatten(0, 1)
        if input_ids is None or input_ids.shape[1] == 0:
            raise ValueError("expanding video inputs for generation (beams / num_return_sequences) needs input_ids")
        n_keyframes_total = 0 if video.get("pixel_values_videos") is None else video["pixel_values_videos"].shape[0]
        mask = video.get("video_compression_mask")
        if mask is not None:
            mask = mask.reshape(n_keyframes_total, -1)
            kept_before = torch.cat([mask.new_zeros(1, dtype=torch.long), mask.sum(1).cumsum(0)]).tolist()
        else:
            kept_before = [i * cfg.tokens_per_keyframe for i in range(n_keyframes_total + 1)]
        video_counts = (input_ids == cfg.video_token_id).sum(1).tolist()
        delta_counts = ((input_ids == cfg.delta_token_id).sum(1) // cfg.delta_tokens_per_step).tolist()
        keyframe_spans, delta_spans, kf_start, kept, p_start = [], [], 0, 0, 0
        for n_video, n_delta in zip(video_counts, delta_counts):  # one iteration per sample, not per token
            kept += n_video
            kf_end = kept_before.index(kept) if kept in kept_before else -1
            if kf_end < 0:
                raise ValueError("the <|video_pad|> placeholders of a sample do not end on a keyframe boundary")
            keyframe_spans.append((kf_start, kf_end))
            delta_spans.append((p_start, p_start + n_delta))
            kf_start, p_start = kf_end, p_start + n_delta

        def repeat(tensor, spans):
            return torch.cat([tensor[a:b] for a, b in spans for _ in range(expand_size)])

        out = {}
        for key in ("pixel_values_videos", "video_compression_mask"):
            if video.get(key) is not None:
                tensor = mask if key == "video_compression_mask" else video[key]
                out[key] = repeat(tensor, keyframe_spans).reshape(-1, *video[key].shape[1:])
        for key in ("delta_motion_vectors", "delta_residuals"):
            if video.get(key) is not None:
                out[key] = repeat(video[key], delta_spans)
        return out

    def _get_candidate_generator(self, *args, model_kwargs: dict, assistant_model=None, **kwargs):
        """Assisted decoding hands all of our generate kwargs to the assistant. A text-only assistant (any causal LM
        sharing the tokenizer) has no video inputs in its forward, so they are left out for it: it drafts from the
        prompt text alone and the target model's verification keeps the result exact."""
        if assistant_model is not None:
            accepted = inspect.signature(assistant_model.forward).parameters
            model_kwargs = {k: v for k, v in model_kwargs.items() if k not in PREFILL_ONLY_INPUTS or k in accepted}
        return super()._get_candidate_generator(*args, model_kwargs=model_kwargs, assistant_model=assistant_model, **kwargs)

    @_cache_alias
    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        cache: Cache | None = None,
        attention_mask: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        pixel_values_videos: torch.Tensor | None = None,
        delta_motion_vectors: torch.Tensor | None = None,
        delta_residuals: torch.Tensor | None = None,
        video_compression_mask: torch.BoolTensor | None = None,
        video_frame_types: list[str] | None = None,
        video_timestamps: list[list[float]] | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ):
        """The base signature spelled out (generation inspects it, e.g. for `inputs_embeds`), plus the video inputs.

        Video inputs go to the prefill only: afterwards the KV cache holds them. Transformers drops
        `pixel_values_videos` by itself but not the Δ inputs, and its mm_encoder_outputs flow (5.2x only) knows just
        image/video, so the model keeps this small override on both releases."""
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            next_sequence_length=next_sequence_length,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            is_first_iteration=is_first_iteration,
            **{CACHE_KWARG: _one_cache(cache, past_key_values)},
            **kwargs,
        )
        if is_first_iteration or not kwargs.get("use_cache", True):
            video = {
                "pixel_values_videos": pixel_values_videos,
                "delta_motion_vectors": delta_motion_vectors,
                "delta_residuals": delta_residuals,
                "video_compression_mask": video_compression_mask,
                "video_frame_types": video_frame_types,
                "video_timestamps": video_timestamps,
            }
            model_inputs.update({k: v for k, v in video.items() if v is not None})
        return model_inputs


__all__ = [
    "CoPEDeltaEncoder",
    "CoPEDeltaEncoderOutput",
    "CoPEDeltaPreTrainedModel",
    "CoPEVideoLMCausalLMOutputWithPast",
    "CoPEVideoLMForConditionalGeneration",
    "CoPEVideoLMModel",
    "CoPEVideoLMModelOutputWithPast",
    "CoPEVideoLMPreTrainedModel",
]
