"""Configuration of CoPE-VideoLM: a vision tower for keyframes, a Δ-encoder for codec primitives, a causal LM.

Ships to the Hub as remote code: flat, and the only local import is `from .x import Y`.
Written in the Transformers 5.17 config style (explicit `sub_configs` + `__post_init__`), which 5.23 still reads,
because the GPU image runs 5.17 and `SubConfigSpec` only exists in later releases.
"""

import math
import sys

from transformers import AutoConfig, PreTrainedConfig

_DEFAULT_VISION = {
    # SigLIP-so400m-patch14-384 as LLaVA-OneVision/LLaVA-Video use it: last layer dropped, no pooling head.
    "model_type": "siglip_vision_model",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "patch_size": 14,
    "image_size": 384,
    "num_hidden_layers": 26,
    "num_attention_heads": 16,
    "vision_use_head": False,
}


def _resolve_sub_config(value, default: dict | None, name: str) -> PreTrainedConfig:
    """Turn None / a dict / a config into a config object of any registered Transformers model type."""
    if isinstance(value, PreTrainedConfig):
        return value
    if value is None:
        value = dict(default or {})
    if not isinstance(value, dict):
        raise TypeError(f"`{name}` must be a dict or a PreTrainedConfig, got {type(value).__name__}")
    value = dict(value)
    model_type = value.pop("model_type", None) or (default or {}).get("model_type")
    if model_type is None:
        raise ValueError(f"`{name}` needs a `model_type`")
    return AutoConfig.for_model(model_type, **value)


def _drop_installed_custom_pipelines(kwargs: dict) -> None:
    """Forget a saved folder's `custom_pipelines` entries for tasks this process already serves with the installed
    package's pipeline class.

    Why: `pipeline(task, model=folder)` prefers `config.custom_pipelines` over registered tasks and then demands
    `trust_remote_code=True` to run the folder's `pipeline_cope.py`. With transformers_cope imported, the task is
    registered (`pipeline_cope.register_pipeline`) and that code is never needed, so the entry is dropped and the
    registered class is used. Without the package nothing is registered: the entry stays, and trust_remote_code is
    still required, as it should be. `save_cope_pretrained` writes the entry afresh, so nothing is lost on save.
    """
    custom = kwargs.get("custom_pipelines")
    registry = getattr(sys.modules.get("transformers.pipelines"), "PIPELINE_REGISTRY", None)
    if not isinstance(custom, dict) or registry is None:
        return
    served = {task for task, spec in registry.supported_tasks.items()
              if getattr(spec.get("impl"), "__module__", "").startswith("transformers_cope.")}
    kept = {task: spec for task, spec in custom.items() if task not in served}
    if kept:
        kwargs["custom_pipelines"] = kept
    else:
        kwargs.pop("custom_pipelines")


class CoPEDeltaConfig(PreTrainedConfig):
    r"""Configuration of the Δ-encoder that turns one Δ step (fused motion vectors + residual) into Δ-tokens.

    Motion branch: the MV grid `[dx, dy, intra]` is cut into `mv_patch_size` patches (a linear patch embedding) and a
    transformer with `num_motion_queries` learnable queries reads them. Residual branch: the residual (RGB, plus the
    intra mask as a 4th channel when `residual_use_intra_mask`) goes through the first stages of a ResNet-18
    (`residual_hidden_sizes`/`residual_depths`, Transformers' `ResNetModel`) and a transformer with
    `num_residual_queries` queries. The concatenated query outputs are mapped to `output_size` (the vision width, so
    that keyframe tokens and Δ-tokens share the projector). Sizes the paper does not give are our choice.
    """

    model_type = "cope_delta"
    base_config_key = "delta_config"

    hidden_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 6
    intermediate_size: int = 1536
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    mv_channels: int = 3
    mv_patch_size: int = 2
    residual_channels: int = 3
    residual_use_intra_mask: bool = True
    residual_embedding_size: int = 64
    residual_hidden_sizes: list[int] | None = None
    residual_depths: list[int] | None = None
    num_motion_queries: int = 4
    num_residual_queries: int = 4
    output_size: int | None = None
    # The 2-D sin-cos positions have unit scale, while patch embeddings of small motion vectors start near 0.01: at
    # full scale the positions swamp the content and the LM never learns to read Δ-tokens (measured on the synthetic
    # direction task: chance accuracy; at 0.02, 100% train accuracy after ~175 steps).
    position_embedding_scale: float = 0.02

    def __post_init__(self, **kwargs):
        if self.residual_hidden_sizes is None:
            self.residual_hidden_sizes = [64, 128]  # ResNet-18 stages 1-2 (conv2_x, conv3_x)
        if self.residual_depths is None:
            self.residual_depths = [2, 2]
        self.residual_hidden_sizes = list(self.residual_hidden_sizes)
        self.residual_depths = list(self.residual_depths)
        if len(self.residual_hidden_sizes) != len(self.residual_depths):
            raise ValueError(
                f"residual_hidden_sizes {self.residual_hidden_sizes} and residual_depths {self.residual_depths} "
                "must have the same length (one entry per ResNet stage)"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_size % 4:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by 4 (2-D sin-cos positions)")
        super().__post_init__(**kwargs)

    @property
    def num_queries(self) -> int:
        return self.num_motion_queries + self.num_residual_queries

    @property
    def num_recorded_hidden_layers(self) -> int:
        """Layers whose outputs `output_hidden_states` returns: those of the motion and of the residual branch."""
        return 2 * self.num_hidden_layers


class CoPEVideoLMConfig(PreTrainedConfig):
    r"""Configuration of a CoPE-VideoLM.

    Args:
        vision_config: any Transformers vision encoder config (default: SigLIP-so400m-patch14-384 vision as in
            LLaVA-Video). Keyframes are encoded by it.
        text_config: any decoder config (default: Qwen2).
        delta_config: [`CoPEDeltaConfig`]; its `output_size` defaults to the vision width.
        video_token_id: `<|video_pad|>`, one placeholder per pooled keyframe token.
        image_token_id: must equal `video_token_id` (TRL reads `config.image_token_id`); defaults to it.
        delta_token_id: `<|delta_pad|>`, one placeholder per Δ-token.
        frame_newline_token_id, delta_end_token_id, vision_start_token_id, vision_end_token_id: plain text tokens
            the processor writes (ids kept here so generation can suppress them); `None` when unknown.
        fps, gop_size, keyframes_per_gop: the step layout (steps sampled at `fps`, grouped in GOPs of `gop_size`
            steps, `keyframes_per_gop` RGB keyframes per GOP; `keyframes_per_gop == gop_size` is the dense baseline).
        delta_tokens_per_step: Δ-tokens per Δ step (= motion + residual queries of the Δ-encoder).
        pooling_mode, pooling_stride: how vision patch tokens are pooled ("bilinear" as LLaVA-Video: 27x27 -> 14x14
            with stride 2; "average"; "none").
        use_row_newlines, use_delta_end: whether the processor writes `<|frame_newline|>` after each pooled row and
            `<|delta_end|>` after each Δ step (token accounting reads them).
        vision_feature_layer, vision_feature_select_strategy: which vision hidden state feeds the projector
            (LLaVA semantics: -1 is the last layer's output before the post-layernorm; "default" drops a CLS token).
        projector_hidden_act, multimodal_projector_bias: the 2-layer MLP shared by keyframe and Δ-tokens.
        mv_normalizer, mv_clip: motion vectors reach the model as pixels / mv_normalizer clipped to +-mv_clip.
    """

    model_type = "cope_videolm"
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig, "delta_config": CoPEDeltaConfig}
    keys_to_ignore_at_inference = ["cache", "past_key_values"]

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    delta_config: dict | PreTrainedConfig | None = None
    video_token_id: int = 151656
    image_token_id: int | None = None
    delta_token_id: int = 151666
    frame_newline_token_id: int | None = 151665
    delta_end_token_id: int | None = 151667
    vision_start_token_id: int | None = 151652
    vision_end_token_id: int | None = 151653
    fps: float = 1.0
    gop_size: int = 8
    keyframes_per_gop: int = 1
    delta_tokens_per_step: int = 8
    pooling_mode: str = "bilinear"
    pooling_stride: int = 2
    use_row_newlines: bool = True
    use_delta_end: bool = True
    vision_feature_layer: int = -1
    vision_feature_select_strategy: str = "full"
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True
    mv_normalizer: float = 20.0
    mv_clip: float = 10.0
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        self.vision_config = _resolve_sub_config(self.vision_config, _DEFAULT_VISION, "vision_config")
        self.text_config = _resolve_sub_config(self.text_config, {"model_type": "qwen2"}, "text_config")
        if isinstance(self.delta_config, dict):
            self.delta_config = CoPEDeltaConfig(**self.delta_config)
        elif self.delta_config is None:
            self.delta_config = CoPEDeltaConfig()
        vision_width = self.vision_config.hidden_size
        if self.delta_config.output_size is None:
            self.delta_config.output_size = vision_width
        elif self.delta_config.output_size != vision_width:
            raise ValueError(
                f"delta_config.output_size ({self.delta_config.output_size}) must equal the vision width "
                f"({vision_width}): keyframe tokens and Δ-tokens share one projector"
            )
        if self.image_token_id is None:
            self.image_token_id = self.video_token_id
        if self.image_token_id != self.video_token_id:
            raise ValueError(
                f"image_token_id ({self.image_token_id}) must equal video_token_id ({self.video_token_id}): "
                "images are one-keyframe videos and TRL reads config.image_token_id"
            )
        if self.delta_token_id == self.video_token_id:
            raise ValueError("delta_token_id and video_token_id must differ")
        if self.delta_tokens_per_step != self.delta_config.num_queries:
            raise ValueError(
                f"delta_tokens_per_step ({self.delta_tokens_per_step}) must equal the Δ-encoder's queries "
                f"(num_motion_queries + num_residual_queries = {self.delta_config.num_queries})"
            )
        if not 1 <= self.keyframes_per_gop <= self.gop_size:
            raise ValueError(f"keyframes_per_gop must be in [1, gop_size={self.gop_size}], got {self.keyframes_per_gop}")
        if self.pooling_mode not in ("bilinear", "average", "none"):
            raise ValueError(f"pooling_mode must be 'bilinear', 'average' or 'none', got {self.pooling_mode!r}")
        if self.pooling_stride < 1:
            raise ValueError(f"pooling_stride must be >= 1, got {self.pooling_stride}")
        if self.vision_feature_select_strategy not in ("full", "default"):
            raise ValueError(
                f"vision_feature_select_strategy must be 'full' or 'default', got {self.vision_feature_select_strategy!r}"
            )
        # As VideoLlama3/LLaVA: the backbone may tie its embeddings; the composite model ties what the top config says.
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        _drop_installed_custom_pipelines(kwargs)
        super().__post_init__(**kwargs)

    # ---- token accounting helpers (used by the model, the processor and users) ----
    @property
    def vision_grid(self) -> tuple[int, int]:
        """Patch grid of one keyframe before pooling (27 x 27 for SigLIP-384/14)."""
        image_size = self.vision_config.image_size
        patch_size = self.vision_config.patch_size
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        return h // ph, w // pw

    @property
    def keyframe_grid(self) -> tuple[int, int]:
        """Token grid of one keyframe after pooling (14 x 14 for SigLIP-384/14 with 2x2 bilinear pooling)."""
        return pooled_grid(self.vision_grid, self.pooling_mode, self.pooling_stride)

    @property
    def tokens_per_keyframe(self) -> int:
        """`<|video_pad|>` placeholders per keyframe (before any compression mask)."""
        gh, gw = self.keyframe_grid
        return gh * gw

    def frame_types_for(self, num_steps: int) -> str:
        """Step layout ("I"/"P" per step) for `num_steps` steps with this config's GOP knobs."""
        return gop_frame_types(num_steps, self.gop_size, self.keyframes_per_gop)

    def count_video_tokens(self, frame_types: str, **kwargs) -> dict[str, int]:
        """Token accounting for one video's step layout; see the module-level `count_video_tokens`."""
        return count_video_tokens(frame_types, self, **kwargs)


def pooled_grid(grid: tuple[int, int], pooling_mode: str, stride: int) -> tuple[int, int]:
    """Grid after pooling: ceil(h / stride) as LLaVA-Video's bilinear resize (27 -> 14)."""
    if pooling_mode == "none" or stride == 1:
        return tuple(grid)
    return math.ceil(grid[0] / stride), math.ceil(grid[1] / stride)


def gop_frame_types(num_steps: int, gop_size: int, keyframes_per_gop: int) -> str:
    """The codec's step layout: in each GOP of `gop_size` steps, `keyframes_per_gop` evenly spaced steps are "I"
    (k=1 -> 0; k=2 -> 0, 4; k=4 -> 0, 2, 4, 6 of 8; k=gop_size -> all "I"), the rest "P"."""
    if not 1 <= keyframes_per_gop <= gop_size:
        raise ValueError(f"keyframes_per_gop must be in [1, {gop_size}], got {keyframes_per_gop}")
    keyframe_slots = {(i * gop_size) // keyframes_per_gop for i in range(keyframes_per_gop)}
    return "".join("I" if step % gop_size in keyframe_slots else "P" for step in range(num_steps))


def count_video_tokens(
    frame_types: str,
    config: CoPEVideoLMConfig,
    *,
    use_row_newlines: bool | None = None,
    use_delta_end: bool | None = None,
) -> dict[str, int]:
    """LLM tokens that one video with step layout `frame_types` (e.g. "IPPPPPPP" * 8) costs.

    Counts the placeholders and the separators the processor writes (a `<|frame_newline|>` per pooled row and a
    `<|delta_end|>` per Δ step, unless switched off); not the `<|vision_start|>`/`<|vision_end|>` pair nor
    "Time t s:" text. Paper size: 14x14 = 196 + 14 = 210 per keyframe, 8 + 1 = 9 per Δ step, so a 64 s clip at
    1 fps costs 64 * 210 = 13,440 tokens dense and 8 * 210 + 56 * 9 = 2,184 with one keyframe per 8-step GOP.
    """
    bad = set(frame_types) - {"I", "P"}
    if bad:
        raise ValueError(f"frame_types may only contain 'I' and 'P', got {sorted(bad)} in {frame_types!r}")
    use_row_newlines = config.use_row_newlines if use_row_newlines is None else use_row_newlines
    use_delta_end = config.use_delta_end if use_delta_end is None else use_delta_end
    rows, _ = config.keyframe_grid
    num_keyframes = frame_types.count("I")
    num_delta_steps = frame_types.count("P")
    pads_per_keyframe = config.tokens_per_keyframe
    tokens_per_keyframe = pads_per_keyframe + (rows if use_row_newlines else 0)
    tokens_per_delta_step = config.delta_tokens_per_step + (1 if use_delta_end else 0)
    keyframe_tokens = num_keyframes * tokens_per_keyframe
    delta_tokens = num_delta_steps * tokens_per_delta_step
    return {
        "num_steps": len(frame_types),
        "num_keyframes": num_keyframes,
        "num_delta_steps": num_delta_steps,
        "tokens_per_keyframe": tokens_per_keyframe,
        "tokens_per_delta_step": tokens_per_delta_step,
        "video_pad_tokens": num_keyframes * pads_per_keyframe,
        "delta_pad_tokens": num_delta_steps * config.delta_tokens_per_step,
        "keyframe_tokens": keyframe_tokens,
        "delta_tokens": delta_tokens,
        "total_tokens": keyframe_tokens + delta_tokens,
    }


__all__ = ["CoPEDeltaConfig", "CoPEVideoLMConfig", "count_video_tokens", "gop_frame_types", "pooled_grid"]
