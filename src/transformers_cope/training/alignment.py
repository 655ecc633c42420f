"""Δ-encoder alignment pre-training (CoPE-VideoLM §3): teach the Δ-encoder to say what the frozen vision tower would
have seen, before any language fine-tuning.

Two auxiliary transformers predict the frozen vision tower's patch tokens of a Δ step's target frame t:
  Reference transformer: the tokens of the reference frame t-s + the step's motion tokens -> a motion-warped guess;
  Warped transformer: that guess + the step's residual tokens -> the final prediction.
The loss is the patch-wise MSE to the true tokens of frame t (plus, weighted, the reference transformer's own MSE).
Motion and residual tokens are the Δ-encoder's output tokens at the vision width (its first `num_motion_queries`
and last `num_residual_queries`), the very tokens the shared projector later maps into the LLM.

Both auxiliary heads start at zero, so training starts exactly at the "copy the reference frame's tokens" baseline
and can only be judged against it. The auxiliary transformers live only in `CoPEDeltaAligner`; the CoPE model's
own Δ-encoder is trained in place, so `model.save_pretrained` afterwards writes a normal CoPE checkpoint without them.
Runs under `transformers.Trainer` (the aligner's forward returns the loss).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.utils import ModelOutput

from ..codec import CodecPrimitives, extract_primitives
from ..modeling_cope import CoPEVideoLMModel, sincos_2d_position_embedding

__all__ = [
    "AlignmentOutput",
    "CoPEDeltaAligner",
    "DeltaAlignmentConfig",
    "DeltaAlignmentDataset",
    "alignment_pairs",
    "evaluate_alignment",
    "train_alignment",
]


@dataclass
class DeltaAlignmentConfig:
    """Sizes of the auxiliary transformers (our choice; the paper gives none) and the loss weights.

    hidden_size: width of both auxiliary transformers (default: the vision width, at least 64, a multiple of 4 *
        num_heads). reference_loss_weight: weight of the reference transformer's own patch-wise MSE (deep
        supervision of the intermediate, motion-only prediction).
    """

    hidden_size: int | None = None
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int | None = None
    dropout: float = 0.0
    reference_loss_weight: float = 0.5

    def resolved_hidden_size(self, vision_width: int) -> int:
        if self.hidden_size is not None:
            size = int(self.hidden_size)
        else:
            step = 4 * self.num_heads
            size = max(64, math.ceil(vision_width / step) * step)
        if size % self.num_heads or size % 4:
            raise ValueError(f"hidden_size {size} must be divisible by num_heads ({self.num_heads}) and by 4")
        return size


@dataclass
class AlignmentOutput(ModelOutput):
    r"""
    loss: final patch-wise MSE + reference_loss_weight * reference MSE (when targets are known).
    prediction (`(n, num_patches, vision_width)`): the warped transformer's tokens for the target frames.
    reference_prediction (`(n, num_patches, vision_width)`): the reference transformer's (motion only) tokens.
    patch_mse / reference_mse / copy_mse: per-sample patch-wise MSE of the prediction, of the reference prediction
        and of the reference frame's tokens (the copy baseline), shape `(n,)`.
    """

    loss: torch.Tensor | None = None
    prediction: torch.Tensor | None = None
    reference_prediction: torch.Tensor | None = None
    patch_mse: torch.Tensor | None = None
    reference_mse: torch.Tensor | None = None
    copy_mse: torch.Tensor | None = None


class _AuxTransformer(nn.Module):
    """Token map + condition tokens -> an updated token map: `base + head(transformer([map; cond]))[map part]`.

    The head starts at zero so the module starts as the identity on `base`."""

    def __init__(self, vision_width: int, config: DeltaAlignmentConfig):
        super().__init__()
        hidden = config.resolved_hidden_size(vision_width)
        self.hidden_size = hidden
        self.map_in = nn.Linear(vision_width, hidden)
        self.cond_in = nn.Linear(vision_width, hidden)
        self.type_embedding = nn.Parameter(torch.zeros(2, hidden))
        layer = nn.TransformerEncoderLayer(
            hidden, config.num_heads, config.intermediate_size or 4 * hidden, dropout=config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vision_width)
        nn.init.normal_(self.type_embedding, std=0.02)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, token_map: torch.Tensor, cond: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
        n, length, _ = token_map.shape
        if grid is not None and grid[0] * grid[1] == length:
            pos = sincos_2d_position_embedding(grid[0], grid[1], self.hidden_size, token_map.device, token_map.dtype)
        else:  # a CLS token or an odd layout: 1-D positions
            pos = sincos_2d_position_embedding(1, length, self.hidden_size, token_map.device, token_map.dtype)
        x = torch.cat(
            [self.map_in(token_map) + pos + self.type_embedding[0], self.cond_in(cond) + self.type_embedding[1]], dim=1
        )
        x = self.encoder(x)
        return token_map + self.head(self.norm(x[:, :length]))


class CoPEDeltaAligner(nn.Module):
    """Alignment pre-training wrapper around a CoPE model's frozen vision tower and trainable Δ-encoder.

    Holds the auxiliary `reference_transformer` and `warped_transformer`. The vision tower is held outside the module
    tree (not trained, not in `state_dict`, but moved along with `.to()`); the Δ-encoder is the model's own module,
    trained in place. Pass `CoPEVideoLMForConditionalGeneration` or `CoPEVideoLMModel`.
    """

    def __init__(self, model: nn.Module, config: DeltaAlignmentConfig | None = None):
        super().__init__()
        base = getattr(model, "model", model)
        if not isinstance(base, CoPEVideoLMModel):
            raise TypeError(f"CoPEDeltaAligner needs a CoPE-VideoLM model, got {type(model).__name__}")
        self.alignment_config = config or DeltaAlignmentConfig()
        self.cope_config = base.config
        object.__setattr__(self, "_vision_tower", base.vision_tower)  # frozen: not a submodule
        self.delta_encoder = base.delta_encoder
        width = base.config.vision_config.hidden_size
        if self.delta_encoder.config.output_size != width:
            raise ValueError("the Δ-encoder's output size must equal the vision width")
        self.reference_transformer = _AuxTransformer(width, self.alignment_config)
        self.warped_transformer = _AuxTransformer(width, self.alignment_config)
        self.num_motion_queries = base.config.delta_config.num_motion_queries

    # the frozen tower follows .to() / .half() / .cuda() of the aligner
    def _apply(self, fn, *args, **kwargs):
        self._vision_tower._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    @property
    def vision_tower(self) -> nn.Module:
        return self._vision_tower

    @torch.no_grad()
    def vision_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The frozen tower's patch tokens `(n, num_patches, width)` at the layer the projector reads (unpooled)."""
        tower = self._vision_tower
        was_training = tower.training
        tower.eval()
        try:
            out = tower(pixel_values.to(tower.dtype), output_hidden_states=True, return_dict=True)
        finally:
            tower.train(was_training)
        layer = self.cope_config.vision_feature_layer
        if isinstance(layer, int):
            features = out.hidden_states[layer]
        else:
            features = torch.cat([out.hidden_states[i] for i in layer], dim=-1)
        if self.cope_config.vision_feature_select_strategy == "default":
            features = features[:, 1:]
        return features.float()

    def forward(
        self,
        delta_motion_vectors: torch.Tensor,
        delta_residuals: torch.Tensor,
        pixel_values_reference: torch.Tensor | None = None,
        pixel_values_target: torch.Tensor | None = None,
        reference_tokens: torch.Tensor | None = None,
        target_tokens: torch.Tensor | None = None,
        return_loss: bool = True,
    ) -> AlignmentOutput:
        r"""
        delta_motion_vectors `(n, 3, Gh, Gw)`, delta_residuals `(n, 3, Hr, Wr)`: one Δ step each (processor units).
        pixel_values_reference / pixel_values_target `(n, 3, S, S)`: frames t-s and t, normalised for the tower; or
        reference_tokens / target_tokens: their vision tokens, precomputed. Without a target, no loss.
        """
        if reference_tokens is None:
            if pixel_values_reference is None:
                raise ValueError("pass pixel_values_reference or reference_tokens")
            reference_tokens = self.vision_tokens(pixel_values_reference)
        if target_tokens is None and pixel_values_target is not None:
            target_tokens = self.vision_tokens(pixel_values_target)
        delta = self.delta_encoder(delta_motion_vectors, delta_residuals, return_dict=True).last_hidden_state
        delta = delta.to(reference_tokens.dtype)
        motion, residual = delta[:, : self.num_motion_queries], delta[:, self.num_motion_queries :]
        grid = tuple(self.cope_config.vision_grid)
        reference_prediction = self.reference_transformer(reference_tokens, motion, grid)
        prediction = self.warped_transformer(reference_prediction, residual, grid)
        if target_tokens is None:
            return AlignmentOutput(prediction=prediction, reference_prediction=reference_prediction)
        target_tokens = target_tokens.to(prediction.dtype)
        patch_mse = (prediction - target_tokens).pow(2).mean(dim=(1, 2))
        reference_mse = (reference_prediction - target_tokens).pow(2).mean(dim=(1, 2))
        copy_mse = (reference_tokens - target_tokens).pow(2).mean(dim=(1, 2)).detach()
        loss = patch_mse.mean() + self.alignment_config.reference_loss_weight * reference_mse.mean()
        return AlignmentOutput(
            loss=loss if return_loss else None,
            prediction=prediction,
            reference_prediction=reference_prediction,
            patch_mse=patch_mse.detach(),
            reference_mse=reference_mse.detach(),
            copy_mse=copy_mse,
        )


# ---------------------------------------------------------------------------------------------------------- data
def _codec_kwargs(video_processor, keyframes_per_gop: int | None) -> dict:
    """The codec settings the video processor uses at inference (so alignment sees the same primitives)."""
    size = int(video_processor.codec_size)
    return {
        "fps": float(video_processor.fps),
        "gop_size": int(video_processor.gop_size),
        "keyframes_per_gop": int(keyframes_per_gop or video_processor.keyframes_per_gop),
        "mode": video_processor.codec_mode,
        "size": (size, size),
        "mv_block": int(video_processor.mv_block),
        "residual_scale": float(video_processor.residual_scale),
        "max_steps": video_processor.max_steps,
    }


def alignment_pairs(primitives: CodecPrimitives, video_processor) -> list[dict[str, torch.Tensor]]:
    """One training example per Δ step of a video extracted with `return_frames=True`: the normalised RGB of its
    reference step (the previous step) and of the step itself, and its Δ inputs exactly as the processor makes
    them (so alignment and inference see the same units)."""
    if primitives.frames is None:
        raise ValueError("alignment needs every step's RGB: extract with extract_primitives(..., return_frames=True)")
    types = str(primitives.frame_types)
    delta = video_processor(primitives, return_tensors="pt")
    n = len(types)
    empty = np.zeros((0,), dtype=np.float32)
    dense = dataclasses.replace(
        primitives,
        frame_types="I" * n,
        keyframes=primitives.frames,
        motion_vectors=empty.reshape(0, *primitives.motion_vectors.shape[1:]),
        intra_masks=np.zeros((0, *primitives.intra_masks.shape[1:]), dtype=bool),
        residuals=empty.reshape(0, *primitives.residuals.shape[1:]),
    )
    pixels = video_processor(dense, return_tensors="pt")["pixel_values_videos"]
    pairs = []
    for j, step in enumerate(k for k, t in enumerate(types) if t == "P"):
        pairs.append({
            "pixel_values_reference": pixels[step - 1],
            "pixel_values_target": pixels[step],
            "delta_motion_vectors": delta["delta_motion_vectors"][j],
            "delta_residuals": delta["delta_residuals"][j],
        })
    return pairs


class DeltaAlignmentDataset(torch.utils.data.Dataset):
    """Δ-step examples from videos (paths or `CodecPrimitives` with frames), decoded with the video processor's codec
    settings; `keyframes_per_gop=1` (default) turns 7 of 8 steps into training pairs."""

    def __init__(self, videos: Sequence[str | Path | CodecPrimitives], video_processor, *,
                 keyframes_per_gop: int | None = 1, progress: bool = True):
        from tqdm.auto import tqdm

        kwargs = _codec_kwargs(video_processor, keyframes_per_gop)
        self.examples: list[dict[str, torch.Tensor]] = []
        for video in tqdm(list(videos), desc="alignment pairs", disable=not progress):
            prims = video if isinstance(video, CodecPrimitives) else extract_primitives(
                video, return_frames=True, **kwargs
            )
            self.examples.extend(alignment_pairs(prims, video_processor))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.examples[index]


# ---------------------------------------------------------------------------------------------------- train/eval
def _stack(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in batch]) for key in batch[0]}


@torch.no_grad()
def evaluate_alignment(aligner: CoPEDeltaAligner, dataset, *, batch_size: int = 32) -> dict[str, float]:
    """Held-out patch-wise MSE of the aligned prediction, of the reference (motion-only) prediction, and of the
    "copy the reference frame's tokens" baseline, averaged over Δ steps."""
    was_training = aligner.training
    aligner.eval()
    device = next(aligner.parameters()).device
    sums = {"mse": 0.0, "reference_mse": 0.0, "copy_mse": 0.0}
    count = 0
    try:
        for start in range(0, len(dataset), batch_size):
            batch = _stack([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            out = aligner(**{k: v.to(device) for k, v in batch.items()})
            sums["mse"] += float(out.patch_mse.sum())
            sums["reference_mse"] += float(out.reference_mse.sum())
            sums["copy_mse"] += float(out.copy_mse.sum())
            count += out.patch_mse.shape[0]
    finally:
        aligner.train(was_training)
    if count == 0:
        raise ValueError("evaluate_alignment got an empty dataset")
    return {key: value / count for key, value in sums.items()}


def train_alignment(model: nn.Module, train_dataset, args, *, eval_dataset=None,
                    config: DeltaAlignmentConfig | None = None, callbacks: list | None = None) -> tuple[
                        CoPEDeltaAligner, Any]:
    """Run alignment pre-training with `transformers.Trainer` (`args`: `TrainingArguments`).

    Trains the model's Δ-encoder in place together with the auxiliary transformers (vision tower frozen); returns
    `(aligner, trainer)`. Save the CoPE model itself afterwards (`model.save_pretrained`): it carries the aligned
    Δ-encoder and none of the auxiliary parts.
    """
    from transformers import Trainer

    aligner = CoPEDeltaAligner(model, config)
    if getattr(args, "remove_unused_columns", False):
        args.remove_unused_columns = False
    trainer = Trainer(
        model=aligner, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, data_collator=_stack,
        callbacks=callbacks,
    )
    trainer.train()
    return aligner, trainer
