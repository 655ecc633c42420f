"""Supervised fine-tuning batches for CoPE-VideoLM: chat samples with videos -> padded model inputs.

Why a custom collator: Transformers' and TRL's built-in vision collators only know images. Here each chat sample is
rendered with the processor's chat template, its videos become codec primitives (decoded once and cached, so epochs
do not re-decode), the prompt is masked to -100 so only assistant replies are learned, and the video tensors of the
batch are concatenated along dim 0 in placeholder order (the model scatters them by that order).

Works with `transformers.Trainer` and with TRL's `SFTTrainer` (pass it as `data_collator` with
`dataset_kwargs={"skip_prepare_dataset": True}` and `remove_unused_columns=False`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
from tqdm.auto import tqdm

IGNORE_INDEX = -100
VIDEO_TENSOR_KEYS = ("pixel_values_videos", "delta_motion_vectors", "delta_residuals", "video_compression_mask")
_VIDEO_REF_KEYS = ("video", "path", "url")

__all__ = [
    "IGNORE_INDEX",
    "CoPEDataCollator",
    "PrimitivesCache",
    "keyframes_only",
    "video_refs",
]


def _is_primitives(obj: Any) -> bool:
    return all(hasattr(obj, name) for name in ("frame_types", "keyframes", "motion_vectors", "residuals"))


def keyframes_only(primitives):
    """The same video with its Δ steps removed: only the RGB keyframes ("I" steps) stay.

    The ablation of the headline result: a CoPE model fed this sees exactly the keyframes it would see with Δ steps,
    but nothing of the motion between them.
    """
    types = str(primitives.frame_types)
    keep = [i for i, kind in enumerate(types) if kind == "I"]
    mv = primitives.motion_vectors
    frames = primitives.frames
    return dataclasses.replace(
        primitives,
        frame_types="I" * len(keep),
        motion_vectors=mv[:0],
        intra_masks=primitives.intra_masks[:0],
        residuals=primitives.residuals[:0],
        timestamps=primitives.timestamps[keep],
        frame_indices=primitives.frame_indices[keep],
        frames=None if frames is None else frames[keep],
    )


def _extract(job):
    video_processor, path = job
    return video_processor.fetch_videos(path)


class PrimitivesCache:
    """Codec primitives per video path, extracted once with the processor's own codec settings.

    Keys are `os.fspath(path)`; `CodecPrimitives` objects pass through untouched. `prefetch` fills the cache for
    many paths (optionally in worker processes, with a progress bar) before training starts.
    """

    def __init__(self, video_processor):
        self.video_processor = video_processor
        self._store: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, path) -> bool:
        return os.fspath(path) in self._store

    def get(self, video):
        if _is_primitives(video):
            return video
        key = os.fspath(video)
        if key not in self._store:
            self._store[key] = self.video_processor.fetch_videos(key)
        return self._store[key]

    def prefetch(self, paths: Iterable, *, num_workers: int = 1, progress: bool = True) -> None:
        todo = list(dict.fromkeys(os.fspath(p) for p in paths if not _is_primitives(p)))
        todo = [p for p in todo if p not in self._store]
        if not todo:
            return
        jobs = [(self.video_processor, p) for p in todo]
        if num_workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(max_workers=num_workers) as pool:
                results = pool.map(_extract, jobs, chunksize=max(1, len(jobs) // (4 * num_workers)))
                for path, prim in tqdm(zip(todo, results), total=len(todo), desc="codec primitives",
                                       disable=not progress):
                    self._store[path] = prim
        else:
            for path, job in tqdm(list(zip(todo, jobs)), desc="codec primitives", disable=not progress):
                self._store[path] = _extract(job)


def video_refs(messages: Sequence[dict]) -> list:
    """Video references (paths or `CodecPrimitives`) of a conversation, in the order the template renders them."""
    refs = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) or content is None:
            continue
        for block in content:
            if block.get("type") != "video":
                continue
            ref = next((block[k] for k in _VIDEO_REF_KEYS if block.get(k) is not None), None)
            if ref is None:
                raise ValueError(f"video block without a 'video'/'path'/'url' entry: {block}")
            refs.append(ref)
    return refs


def _clean_messages(messages: Sequence[dict]) -> list[dict]:
    """Drop the None fields that Arrow adds to content blocks (datasets store blocks as one struct type)."""
    cleaned = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str) and content is not None:
            content = [{k: v for k, v in block.items() if v is not None} for block in content]
        cleaned.append({**{k: v for k, v in message.items() if v is not None}, "content": content})
    return cleaned


class CoPEDataCollator:
    """Chat samples with videos -> a padded training batch for `CoPEVideoLMForConditionalGeneration`.

    A feature is one of:
      * `{"messages": [...]}`: a conversation whose user turns hold `{"type": "video", "path"|"video"|"url": ...}`
        blocks (a path or a `CodecPrimitives`) and whose assistant turns are the targets;
      * `{"prompt": [...], "completion": [...]}`: TRL's conversational prompt-completion form;
      * an already encoded sample (`input_ids`, `labels`, video tensors), e.g. from `encode()` or a cached dataset.

    Args:
        processor: a `CoPEVideoLMProcessor`.
        train_on: "assistant" (default: loss on assistant replies only, prompt and video masked to -100) or "all"
            (every text token; video placeholders are never targets).
        keyframes_only: strip the Δ steps of every video (the keyframes-only ablation).
        padding_side: "right" (default for training) or "left"; None uses the tokenizer's.
        max_length: refuse samples longer than this (truncation would cut video placeholders apart).
        cache: a `PrimitivesCache` shared with other collators/datasets; one is created otherwise.
    """

    def __init__(
        self,
        processor,
        *,
        train_on: str = "assistant",
        keyframes_only: bool = False,
        padding_side: str | None = "right",
        max_length: int | None = None,
        cache: PrimitivesCache | None = None,
    ):
        if train_on not in ("assistant", "all"):
            raise ValueError(f"train_on must be 'assistant' or 'all', got {train_on!r}")
        if padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side must be 'left', 'right' or None, got {padding_side!r}")
        self.processor = processor
        self.train_on = train_on
        self.keyframes_only = keyframes_only
        self.padding_side = padding_side or processor.tokenizer.padding_side
        self.max_length = max_length
        self.cache = cache if cache is not None else PrimitivesCache(processor.video_processor)
        tokenizer = processor.tokenizer
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._never_targets = torch.tensor(
            [processor.video_token_id, processor.delta_token_id, processor.frame_newline_token_id,
             processor.delta_end_token_id, processor.vision_start_token_id, processor.vision_end_token_id]
        )

    # ---------------------------------------------------------------------------------------------- one sample
    def messages_of(self, feature: dict) -> list[dict]:
        if "messages" in feature and feature["messages"] is not None:
            return _clean_messages(feature["messages"])
        if "prompt" in feature and "completion" in feature:
            return _clean_messages(list(feature["prompt"]) + list(feature["completion"]))
        raise KeyError(
            "CoPEDataCollator needs 'messages', 'prompt' + 'completion', or encoded 'input_ids' in each feature; "
            f"got keys {sorted(feature)}"
        )

    def primitives_of(self, messages: Sequence[dict]) -> list:
        prims = [self.cache.get(ref) for ref in video_refs(messages)]
        return [keyframes_only(p) for p in prims] if self.keyframes_only else prims

    def encode(self, messages: Sequence[dict], *, add_generation_prompt: bool = False) -> dict[str, Any]:
        """One conversation -> unpadded `input_ids`, `labels` and its video tensors (for caching per sample).

        With `add_generation_prompt=True` (a prompt to generate from), no labels are made.
        """
        messages = _clean_messages(messages)
        text = self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        prims = self.primitives_of(messages)
        inputs = self.processor(text=text, videos=prims or None, return_tensors="pt")
        input_ids = inputs["input_ids"][0]
        if self.max_length is not None and input_ids.shape[0] > self.max_length:
            raise ValueError(
                f"sample has {input_ids.shape[0]} tokens, more than max_length={self.max_length}; truncating would "
                "cut video placeholders apart: raise max_length or sample fewer steps (processor max_steps)"
            )
        if self.train_on == "assistant" and not add_generation_prompt:
            mask = torch.tensor(self.processor.assistant_tokens_mask(input_ids[None])[0], dtype=torch.bool)
        else:
            mask = torch.ones_like(input_ids, dtype=torch.bool)
        mask &= ~torch.isin(input_ids, self._never_targets)
        encoded = {"input_ids": input_ids, "attention_mask": inputs["attention_mask"][0]}
        if not add_generation_prompt:
            encoded["labels"] = torch.where(mask, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        for key in VIDEO_TENSOR_KEYS:
            if key in inputs:
                encoded[key] = inputs[key]
        if "video_frame_types" in inputs:
            encoded["video_frame_types"] = list(inputs["video_frame_types"])
        return encoded

    # ------------------------------------------------------------------------------------------------- batching
    def __call__(self, features: list[dict]) -> dict[str, Any]:
        encoded = [f if "input_ids" in f else self.encode(self.messages_of(f)) for f in features]
        return self.pad(encoded)

    def pad(self, encoded: list[dict]) -> dict[str, Any]:
        """Pad token sequences to the longest one and concatenate the video tensors in sample order."""
        ids = [torch.as_tensor(e["input_ids"]) for e in encoded]
        longest = max(len(x) for x in ids)
        batch_ids = torch.full((len(ids), longest), self.pad_token_id, dtype=torch.long)
        batch_mask = torch.zeros((len(ids), longest), dtype=torch.long)
        batch_labels = torch.full((len(ids), longest), IGNORE_INDEX, dtype=torch.long)
        for row, (e, x) in enumerate(zip(encoded, ids)):
            span = slice(0, len(x)) if self.padding_side == "right" else slice(longest - len(x), longest)
            batch_ids[row, span] = x
            batch_mask[row, span] = torch.as_tensor(e.get("attention_mask", torch.ones_like(x)))
            labels = e.get("labels")
            if labels is not None:
                batch_labels[row, span] = torch.as_tensor(labels)
        batch: dict[str, Any] = {"input_ids": batch_ids, "attention_mask": batch_mask}
        if any(e.get("labels") is not None for e in encoded):
            batch["labels"] = batch_labels
        for key in VIDEO_TENSOR_KEYS:
            parts = [torch.as_tensor(e[key]) for e in encoded if e.get(key) is not None]
            if parts:
                batch[key] = torch.cat(parts, dim=0)
        # No Δ steps at all (keyframes-only batch): leave the Δ-encoder out of the forward pass.
        if "delta_motion_vectors" in batch and batch["delta_motion_vectors"].shape[0] == 0:
            batch.pop("delta_motion_vectors")
            batch.pop("delta_residuals", None)
        if all("video_frame_types" in e for e in encoded):
            batch["video_frame_types"] = [t for e in encoded for t in e["video_frame_types"]]
        return batch
