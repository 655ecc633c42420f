"""GRPO with verifiable rewards for CoPE-VideoLM on TRL, with the video carried into the policy loss, and T-GRPO.

Why a subclass: TRL 1.16's `GRPOTrainer` handles image VLMs only. With video prompts its generation sees the video
(through `apply_chat_template`), but its log-prob passes (old / reference / policy) are built from a fixed list of
image keywords, so the policy gradient would be computed without the video, silently (the model, like upstream
VLMs, reads placeholders without video inputs as plain tokens). `CoPEGRPOTrainer` overrides four private methods of
TRL 1.16 (pinned `trl>=1.16,<1.17`; `tests/test_grpo.py` checks their signatures and behaviour):

- `_tokenize_prompts`: renders each prompt, decodes each video once (an LRU cache of `CodecPrimitives` per path:
  a prompt is repeated `num_generations` times per step) and keeps each row's video tensors;
- `_generate_and_score_completions`: adds the rows' video tensors to the batch dict (a list, which TRL's
  shuffle/split helpers carry along with the rows) and, for T-GRPO, first scores rollouts on shuffled steps;
- `_get_per_token_logps_and_entropies`: TRL's chunked fused-LM-head pass, with each chunk's video tensors;
- `_compute_loss`: points the log-prob pass at the batch's video tensors.

Refusals (a video LM trained on text-only forwards learns nothing about video, silently): every prompt must be
conversational with a `{"type": "video", ...}` block; a dataset with a `video`/`videos` column whose prompts do not
carry the video (TRL only injects `image` columns) is rejected at construction and again per batch; so are the
options whose rollouts or forwards bypass this class's video handling (`use_vllm`, `rollout_func`, `tools`,
`environment_factory`); the log-prob pass raises if a gradient-enabled forward would run without video tensors.
`allow_text_only=True` lets prompts without a video through (when the dataset has no video column).

T-GRPO (Video-R1): each prompt is also rolled out with its steps in shuffled order (Δ steps, and keyframes when a
video has several, permuted); a correct ordered answer earns `temporal_bonus` (+0.3) when the prompt's ordered
accuracy p and shuffled accuracy p~ satisfy p >= `temporal_ratio` (0.8) x p~. The bonus is an extra reward function
(`temporal`, weight 1) next to the others.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer
from trl.data_utils import is_conversational

from ..data.synthetic_qa import format_prompt
from ..test_time_scaling import FLAT_VIDEO_KEYS
from .policy_eval import evaluate_policy
from .rewards import REWARD_COLUMNS, CombinedReward, accuracy_reward, temporal_consistency_bonus
from .sft import freeze_batchnorm

__all__ = [
    "CoPEGRPOConfig",
    "CoPEGRPOTrainer",
    "TemporalConsistencyReward",
    "check_prompt_has_video",
    "evaluate_rewards",
    "make_grpo_dataset",
    "shuffle_video_steps",
]

# Columns that say "this row has a video" (TRL's GRPOTrainer reads only `image`/`images`; these it would ignore).
VIDEO_COLUMNS = ("video", "videos")
# GRPOTrainer keyword arguments whose rollouts or forwards bypass CoPEGRPOTrainer's video handling.
_UNSUPPORTED_KWARGS = ("rollout_func", "tools", "environment_factory")


@dataclass
class CoPEGRPOConfig(GRPOConfig):
    r"""`GRPOConfig` plus the T-GRPO and video-cache knobs.

    temporal_grpo: also roll out every prompt with shuffled steps and add T-GRPO's temporal reward.
    temporal_bonus: extra reward for a correct answer when ordered accuracy >= temporal_ratio x shuffled accuracy.
    temporal_ratio: the 0.8 of T-GRPO.
    temporal_shuffle: "steps" (Δ steps, and keyframes of videos with several) or "delta" (Δ steps only).
    video_cache_size: decoded videos (`CodecPrimitives`) kept in memory, per path.
    allow_text_only: accept prompts without a video block (they train text-only). Off by default: such a prompt is
        almost always a dataset bug (a `video` column the prompt does not reference, a pre-rendered string prompt).
    freeze_batchnorm: keep every BatchNorm layer (the Δ-encoder's residual ResNet) on its running statistics, also
        in train mode. Otherwise a completion's log-probability depends on which other rows share its batch or
        chunk, so sampling, the old/reference log-probs and the loss would each score a different policy.
    """

    temporal_grpo: bool = field(default=False, metadata={"help": "T-GRPO: reward temporal consistency."})
    temporal_bonus: float = field(default=0.3, metadata={"help": "T-GRPO extra reward for correct answers."})
    temporal_ratio: float = field(default=0.8, metadata={"help": "T-GRPO: ordered acc >= ratio x shuffled acc."})
    temporal_shuffle: str = field(default="steps", metadata={"help": "'steps' or 'delta'."})
    video_cache_size: int = field(default=256, metadata={"help": "Decoded videos kept per path."})
    allow_text_only: bool = field(
        default=False, metadata={"help": "Accept prompts without a video (text-only forwards)."}
    )
    freeze_batchnorm: bool = field(
        default=True, metadata={"help": "Keep BatchNorm layers (the Δ-encoder's ResNet) on running statistics."}
    )

    def __post_init__(self):
        # Transformers >= 5.23 renamed gradient_checkpointing (TRL's default: on) to activation_checkpointing; map
        # TRL's value onto the new name so it is not reported as a deprecated argument the user never passed.
        if getattr(self, "activation_checkpointing", False) is None:
            self.activation_checkpointing = self.gradient_checkpointing
        super().__post_init__()
        if self.temporal_shuffle not in ("steps", "delta"):
            raise ValueError(f"temporal_shuffle must be 'steps' or 'delta', got {self.temporal_shuffle!r}")
        if self.temporal_bonus < 0 or not 0 <= self.temporal_ratio:
            raise ValueError("temporal_bonus and temporal_ratio must be non-negative")


# ------------------------------------------------------------------------------------------------------ dataset
def make_grpo_dataset(records: Sequence[dict], *, reasoning: bool = True, video_key: str = "path"):
    """A `datasets.Dataset` for GRPO from motion-QA style records: a conversational `prompt` (video + question, the
    think/answer instruction when `reasoning`) plus the reward columns (answer, options, interval, ...)."""
    from datasets import Dataset

    rows = []
    for record in records:
        text = format_prompt(record, reasoning=reasoning)
        row = {"prompt": [{"role": "user", "content": [{"type": "video", video_key: str(record["video"])},
                                                          {"type": "text", "text": text}]}]}
        for key in REWARD_COLUMNS:
            value = record.get(key)
            if key == "interval" and value is not None:
                value = [float(v) for v in value]
            row[key] = value
        rows.append(row)
    return Dataset.from_list(rows)


def _clean_messages(messages: list[dict]) -> list[dict]:
    """Drop the None keys Arrow adds when it unifies content blocks ({"type", "path"} and {"type", "text"})."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{k: v for k, v in block.items() if v is not None} for block in content]
        out.append({**message, "content": content})
    return out


def _video_refs(messages: list[dict]) -> list[Any]:
    refs = []
    for message in messages:
        if isinstance(message["content"], list):
            for block in message["content"]:
                if block.get("type") == "video":
                    ref = block.get("path") or block.get("video") or block.get("url")
                    if ref is None:
                        raise ValueError(f"video block without a path/video/url: {block}")
                    refs.append(ref)
    return refs


def _concat_video(rows: Sequence[dict], device=None) -> dict[str, torch.Tensor]:
    """Concatenate per-row video tensors in row order (the order the model scatters them in)."""
    out = {}
    for key in FLAT_VIDEO_KEYS:
        parts = [row[key] for row in rows if key in row]
        if parts:
            tensor = torch.cat(parts, dim=0)
            out[key] = tensor.to(device) if device is not None else tensor
    return out


def shuffle_video_steps(video: dict[str, torch.Tensor], generator: torch.Generator, *, mode: str = "steps") -> dict:
    """The same video with its step order destroyed: Δ steps permuted (never the identity when there are >= 2) and,
    in "steps" mode without a compression mask, keyframes permuted too. Placeholders stay valid (rows keep their
    type), so the prompt's token ids are unchanged."""

    def permutation(n: int) -> torch.Tensor:
        perm = torch.randperm(n, generator=generator)
        if n >= 2 and torch.equal(perm, torch.arange(n)):
            perm = perm.roll(1)
        return perm

    out = dict(video)
    if "delta_motion_vectors" in video and video["delta_motion_vectors"].shape[0] >= 2:
        perm = permutation(video["delta_motion_vectors"].shape[0])
        out["delta_motion_vectors"] = video["delta_motion_vectors"][perm]
        out["delta_residuals"] = video["delta_residuals"][perm]
    keyframes = video.get("pixel_values_videos")
    if mode == "steps" and keyframes is not None and keyframes.shape[0] >= 2 and "video_compression_mask" not in video:
        out["pixel_values_videos"] = keyframes[permutation(keyframes.shape[0])]
    return out


def _prompt_key(prompt: Any) -> str:
    return json.dumps(prompt, sort_keys=True, default=str)


class TemporalConsistencyReward:
    """T-GRPO's temporal reward as a TRL reward function; reads the shuffled-step accuracies the trainer measured
    for the current batch (`trainer._shuffled_accuracy`, keyed by prompt)."""

    __name__ = "temporal"

    def __init__(self, bonus: float = 0.3, ratio: float = 0.8):
        self.bonus, self.ratio = bonus, ratio
        self.shuffled_accuracy: dict[str, float] = {}

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float]:
        correct = [r == 1.0 for r in accuracy_reward(prompts, completions, **kwargs)]
        keys = [_prompt_key(p) for p in prompts]
        return temporal_consistency_bonus(correct, keys, self.shuffled_accuracy, bonus=self.bonus, ratio=self.ratio)


def _video_columns(row: dict) -> list[str]:
    return [key for key in VIDEO_COLUMNS if row.get(key) not in (None, [], "")]


def check_prompt_has_video(prompt: Any, *, row: dict | None = None, where: str = "the dataset",
                           allow_text_only: bool = False) -> None:
    """Raise ValueError when a GRPO prompt carries no video block (see the module docstring for why).

    `row` is the dataset row (its other columns): a `video`/`videos` column makes a video-less prompt an error even
    with `allow_text_only`, since the trainer would silently train without that video.
    """
    conversational = is_conversational({"prompt": prompt})
    has_video = conversational and bool(_video_refs(_clean_messages(prompt)))
    if has_video:
        return
    columns = _video_columns(row or {})
    fix = ("put the video in the prompt as a content block, e.g. [{'role': 'user', 'content': [{'type': 'video', "
           "'path': 'clip.mp4'}, {'type': 'text', 'text': question}]}] (make_grpo_dataset builds these)")
    kind = "a plain string (chat template already applied?)" if not conversational else "a chat without a video block"
    if columns:
        raise ValueError(
            f"{where}: the prompt is {kind} but the row has a {columns[0]!r} column: CoPEGRPOTrainer does not read "
            f"video columns, so GRPO would train on text-only forwards that never see the video. Instead, {fix}."
        )
    if not allow_text_only:
        raise ValueError(
            f"{where}: the prompt is {kind}, so its rollouts and policy loss would run without video. Either {fix}, "
            "or set CoPEGRPOConfig(allow_text_only=True) if text-only training is intended."
        )


def _check_dataset(dataset, name: str, allow_text_only: bool) -> None:
    """Check every prompt of a map-style dataset up front (iterable datasets are checked batch by batch)."""
    if dataset is None:
        return
    if isinstance(dataset, dict):
        for key, value in dataset.items():
            _check_dataset(value, f"{name}[{key!r}]", allow_text_only)
        return
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        return
    columns = getattr(dataset, "column_names", None)
    if columns is not None and "prompt" in columns:
        prompts = dataset["prompt"]
        extra = {key: dataset[key] for key in VIDEO_COLUMNS if key in columns}
        for i, prompt in enumerate(prompts):
            row = {key: values[i] for key, values in extra.items()}
            check_prompt_has_video(prompt, row=row, where=f"{name} row {i}", allow_text_only=allow_text_only)
        return
    for i in range(len(dataset)):
        row = dataset[i]
        if isinstance(row, dict) and "prompt" in row:
            check_prompt_has_video(row["prompt"], row=row, where=f"{name} row {i}", allow_text_only=allow_text_only)


# ------------------------------------------------------------------------------------------------------ trainer
class CoPEGRPOTrainer(GRPOTrainer):
    """`trl.GRPOTrainer` for CoPE-VideoLM: video tensors reach every log-prob pass; optional T-GRPO.

    Takes GRPOTrainer's arguments. `processing_class` must be a `CoPEVideoLMProcessor`; `reward_funcs` defaults to
    `CombinedReward()` (format / accuracy / temporal IoU). Prompts are conversational with
    `{"type": "video", "path": ...}` blocks (see `make_grpo_dataset`). Generation stops at `<|im_end|>` as well as
    EOS, and never samples the video placeholder tokens.
    """

    _tag_names = ["trl", "grpo", "cope-videolm"]

    def __init__(self, model, reward_funcs=None, args: GRPOConfig | None = None, train_dataset=None,
                 eval_dataset=None, processing_class=None, **kwargs):
        if args is None:
            args = CoPEGRPOConfig("cope-grpo")
        if processing_class is None:
            raise ValueError("CoPEGRPOTrainer needs processing_class=CoPEVideoLMProcessor(...)")
        unsupported = [key for key in _UNSUPPORTED_KWARGS if kwargs.get(key) is not None]
        if getattr(args, "use_vllm", False):
            unsupported.append("use_vllm=True")
        if unsupported:
            raise ValueError(
                f"CoPEGRPOTrainer does not support {', '.join(unsupported)}: those paths generate or score "
                "completions without the video tensors this trainer carries (TRL 1.16 handles images only)."
            )
        allow_text_only = bool(getattr(args, "allow_text_only", False))
        _check_dataset(train_dataset, "train_dataset", allow_text_only)
        _check_dataset(eval_dataset, "eval_dataset", allow_text_only)
        if isinstance(model, str):  # load it here so its generation config can be set up below
            from transformers import AutoModelForImageTextToText

            init_kwargs = dict(args.model_init_kwargs or {})
            init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
            model = AutoModelForImageTextToText.from_pretrained(model, **init_kwargs)
        if reward_funcs is None:
            reward_funcs = [CombinedReward()]
        reward_funcs = list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
        self._temporal_reward = None
        if getattr(args, "temporal_grpo", False):
            self._temporal_reward = TemporalConsistencyReward(args.temporal_bonus, args.temporal_ratio)
            if args.reward_weights is not None and len(args.reward_weights) == len(reward_funcs):
                args.reward_weights = [*args.reward_weights, 1.0]
            reward_funcs.append(self._temporal_reward)
        self._configure_generation(model, processing_class, args)
        if getattr(args, "freeze_batchnorm", True):
            freeze_batchnorm(model)
        self._video_cache: OrderedDict[str, Any] = OrderedDict()
        self._video_batch: list[dict] | None = None
        super().__init__(model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)

    @staticmethod
    def _configure_generation(model, processor, args) -> None:
        tokenizer = processor.tokenizer
        vocab = tokenizer.get_vocab()
        if hasattr(model, "generation_config") and "<|im_end|>" in vocab:
            eos = model.generation_config.eos_token_id
            eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
            for token_id in (vocab["<|im_end|>"], tokenizer.eos_token_id):
                if token_id is not None and token_id not in eos:
                    eos.append(token_id)
            model.generation_config.eos_token_id = eos
        generation_kwargs = dict(args.generation_kwargs or {})
        if "suppress_tokens" not in generation_kwargs:
            names = ("<|video_pad|>", "<|delta_pad|>", "<|frame_newline|>", "<|delta_end|>", "<|vision_start|>",
                     "<|vision_end|>")
            generation_kwargs["suppress_tokens"] = [vocab[name] for name in names if name in vocab]
        args.generation_kwargs = generation_kwargs

    @property
    def _allow_text_only(self) -> bool:
        return bool(getattr(self.args, "allow_text_only", False))

    # ---------------------------------------------------------------------------------------------- video cache
    def _primitives(self, ref: Any):
        """Decoded codec primitives of a video path (LRU-cached); `CodecPrimitives` pass through."""
        if not isinstance(ref, (str, bytes)) and not hasattr(ref, "__fspath__"):
            return ref
        key = str(ref)
        if key in self._video_cache:
            self._video_cache.move_to_end(key)
            return self._video_cache[key]
        prims = self.processing_class.video_processor.fetch_videos(key)
        self._video_cache[key] = prims
        limit = getattr(self.args, "video_cache_size", 256)
        while len(self._video_cache) > max(0, limit):
            self._video_cache.popitem(last=False)
        return prims

    def encode_prompt(self, prompt: list[dict]) -> tuple[list[int], dict[str, torch.Tensor]]:
        """Prompt token ids (placeholders expanded) and the prompt's video tensors."""
        processor = self.processing_class
        prompt = _clean_messages(prompt)
        text = processor.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=False, **(getattr(self, "chat_template_kwargs", None) or {})
        )
        videos = [self._primitives(ref) for ref in _video_refs(prompt)]
        encoded = processor(text=[text], videos=videos or None, return_tensors="pt")
        video = {key: encoded[key] for key in FLAT_VIDEO_KEYS if key in encoded}
        return encoded["input_ids"][0].tolist(), video

    # ----------------------------------------------------------------------------------- TRL 1.16 private hooks
    def _tokenize_prompts(self, prompts: list):
        for prompt in prompts:
            check_prompt_has_video(prompt, where="a GRPO batch", allow_text_only=self._allow_text_only)
        if not is_conversational({"prompt": prompts[0]}):
            self._video_batch = [{} for _ in prompts]
            return super()._tokenize_prompts(prompts)
        prompt_ids, videos = [], []
        for prompt in prompts:
            ids, video = self.encode_prompt(prompt)
            prompt_ids.append(ids)
            videos.append(video)
        self._video_batch = videos
        return prompt_ids, None, _concat_video(videos)

    def _generate_and_score_completions(self, inputs):
        for row in inputs:  # iterable datasets are only seen here
            check_prompt_has_video(row.get("prompt"), row=row, where="a GRPO batch",
                                   allow_text_only=self._allow_text_only)
        if self._temporal_reward is not None:
            self._temporal_reward.shuffled_accuracy = self._shuffled_accuracy(inputs)
        output = super()._generate_and_score_completions(inputs)
        output["video_inputs"] = self._video_batch
        return output

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **image_kwargs):
        """TRL's chunked log-prob pass (fused LM head), with each chunk's rows' video tensors."""
        videos = self._video_batch
        if videos is None or len(videos) != input_ids.size(0):
            raise RuntimeError(
                f"CoPEGRPOTrainer has video tensors for {0 if videos is None else len(videos)} rows but the log-prob "
                f"pass got {input_ids.size(0)}: the batch dict lost its 'video_inputs'"
            )
        if torch.is_grad_enabled() and not self._allow_text_only and not all(videos):
            missing = [i for i, video in enumerate(videos) if not video]
            raise RuntimeError(
                f"CoPEGRPOTrainer: a gradient-enabled forward would run without video tensors for rows {missing[:8]} "
                "(prompts without a video); the policy would learn from text alone"
            )
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            ids, mask = input_ids[start:end], attention_mask[start:end]
            model_inputs = {"input_ids": ids, "attention_mask": mask, **_concat_video(videos[start:end], ids.device)}
            if compute_aux_loss:
                model_inputs["output_router_logits"] = True
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            all_logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                all_entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                all_aux.append(outputs.aux_loss)
        logps = torch.cat(all_logps, dim=0)
        entropies = torch.cat(all_entropies, dim=0) if compute_entropy else None
        aux_loss = torch.stack(all_aux).mean() if compute_aux_loss else None
        return logps, entropies, aux_loss

    def _compute_loss(self, model, inputs):
        if "video_inputs" not in inputs:
            raise KeyError("CoPEGRPOTrainer batches carry 'video_inputs'; this batch has none")
        self._video_batch = inputs["video_inputs"]
        return super()._compute_loss(model, inputs)

    # ------------------------------------------------------------------------------------------------- T-GRPO
    @torch.no_grad()
    def _shuffled_accuracy(self, inputs: list[dict]) -> dict[str, float]:
        """Roll out each row once with its steps shuffled; accuracy per prompt (over its rows)."""
        prompts = [x["prompt"] for x in inputs]
        prompt_ids, _, _ = self._tokenize_prompts(prompts)
        generator = torch.Generator().manual_seed(int(self.args.seed) + int(self.state.global_step))
        shuffled = [shuffle_video_steps(v, generator, mode=self.args.temporal_shuffle) for v in self._video_batch]
        self._video_batch = shuffled
        completion_ids, _ = self._generate_single_turn(prompt_ids, None, _concat_video(shuffled), len(prompts))
        texts = self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
        columns = {key: [x.get(key) for x in inputs] for key in inputs[0] if key != "prompt"}
        correct = accuracy_reward(prompts, texts, **columns)
        per_prompt: dict[str, list[float]] = {}
        for prompt, value in zip(prompts, correct):
            per_prompt.setdefault(_prompt_key(prompt), []).append(0.0 if value is None else value)
        accuracy = {key: sum(v) / len(v) for key, v in per_prompt.items()}
        if accuracy:
            self._metrics["train" if self.model.training else "eval"]["temporal/shuffled_accuracy"].append(
                sum(accuracy.values()) / len(accuracy)
            )
        return accuracy


# --------------------------------------------------------------------------------------------------- evaluation
def evaluate_rewards(model, processor, records: Sequence[dict], **kwargs) -> dict[str, Any]:
    """Mean verifiable reward and its parts on held-out QA records: `policy_eval.evaluate_policy` (kept under this
    name for existing callers)."""
    return evaluate_policy(model, processor, records, **kwargs)
