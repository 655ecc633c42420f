"""CoPE-VideoLM processor: tokenizer + `CoPEVideoProcessor`, with per-step placeholder expansion.

The chat template writes ONE `<|video_pad|>` per video; the processor expands it step by step from the video
processor's layout: an I step becomes rows of `<|video_pad|>` (one per pooled keyframe token) each closed by
`<|frame_newline|>`, a Δ step becomes `<|delta_pad|>` x delta_tokens_per_step + `<|delta_end|>`; optionally each step
is preceded by `Time {t:.1f}s:` as in VideoLLaMA3. Ships as Hub remote code (flat, relative imports only).
"""


from transformers.processing_utils import ProcessingKwargs, ProcessorMixin

from .video_processing_cope import CoPEVideoProcessor, CoPEVideoProcessorInitKwargs, flatten_videos

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VIDEO_TOKEN = "<|video_pad|>"
FRAME_NEWLINE = "<|frame_newline|>"
DELTA_TOKEN = "<|delta_pad|>"
DELTA_END = "<|delta_end|>"
COPE_SPECIAL_TOKENS = (
    IM_START, IM_END, END_OF_TEXT, VISION_START, VISION_END, VIDEO_TOKEN, FRAME_NEWLINE, DELTA_TOKEN, DELTA_END,
)

# Qwen2 style. A video block renders as <|vision_start|><|video_pad|><|vision_end|> once; assistant turns are wrapped in
# {% generation %} so `return_assistant_tokens_mask=True` works for SFT. No default system prompt (shorter prompts).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}{%- generation -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'text' -%}{{- content['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endgeneration -%}{%- else -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'video' -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif content['type'] == 'text' -%}{{- content['text'] -}}"
    "{%- elif content['type'] == 'image' -%}{{- raise_exception('CoPE-VideoLM reads videos, not images.') -}}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def add_cope_special_tokens(tokenizer, chat_template: str | None = CHAT_TEMPLATE) -> dict[str, int]:
    """Add the CoPE special tokens that `tokenizer` lacks (any tokenizer, e.g. a real Qwen2 one) and set its chat template.

    Tokens already in the vocabulary keep their ids (Qwen2 already has the `<|vision_*|>` and `<|video_pad|>` ones).
    Returns token -> id for every CoPE special token. Resize the LM's embeddings to `len(tokenizer)` afterwards.
    """
    vocab = tokenizer.get_vocab()
    missing = [token for token in COPE_SPECIAL_TOKENS if token not in vocab]
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = END_OF_TEXT
    if tokenizer.eos_token is None:
        tokenizer.eos_token = END_OF_TEXT
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return {token: tokenizer.convert_tokens_to_ids(token) for token in COPE_SPECIAL_TOKENS}


class CoPEProcessorKwargs(ProcessingKwargs, total=False):
    """Routes the video processor's knobs (keyframes_per_gop, codec_size, ...) given flat to `processor(...)`."""

    videos_kwargs: CoPEVideoProcessorInitKwargs
    _defaults = {}  # TypedDicts do not inherit it, and transformers 5.17's apply_chat_template reads it


class CoPEVideoLMProcessor(ProcessorMixin):
    r"""Tokenizer + `CoPEVideoProcessor` for CoPE-VideoLM.

    Args:
        video_processor: a `CoPEVideoProcessor`.
        tokenizer: a tokenizer holding the CoPE special tokens (see `add_cope_special_tokens`).
        chat_template: Jinja template; defaults to `CHAT_TEMPLATE`.
        use_timestamps: write `Time {t:.1f}s:` before every step (VideoLLaMA3 style).
        use_row_newlines: close each pooled keyframe row with `<|frame_newline|>` (paper: 196 + 14 = 210 tokens).
        use_delta_end: close each Δ step with `<|delta_end|>` (paper: 8 + 1 = 9 tokens).
        delta_tokens_per_step: Δ-tokens per P step (paper: 4 motion + 4 residual = 8); must match the model config.
    Accepts `processor(text=..., videos=...)` with paths / `CodecPrimitives` / nested lists, and `apply_chat_template`
    with `{"type": "video", "path": ...}` blocks.
    """

    valid_processor_kwargs = CoPEProcessorKwargs
    skip_tensor_conversion = ["video_metadata", "text_replacement_offsets", "video_frame_types", "video_timestamps"]

    def __init__(
        self,
        video_processor=None,
        tokenizer=None,
        chat_template=None,
        use_timestamps: bool = False,
        use_row_newlines: bool = True,
        use_delta_end: bool = True,
        delta_tokens_per_step: int = 8,
        **kwargs,
    ):
        if tokenizer is None or video_processor is None:
            raise ValueError("CoPEVideoLMProcessor needs both a video_processor and a tokenizer.")
        vocab = tokenizer.get_vocab()
        missing = [token for token in COPE_SPECIAL_TOKENS if token not in vocab]
        if missing:
            raise ValueError(f"The tokenizer lacks the CoPE special tokens {missing}; call add_cope_special_tokens(tokenizer).")
        self.video_token = VIDEO_TOKEN
        self.delta_token = DELTA_TOKEN
        self.frame_newline_token = FRAME_NEWLINE
        self.delta_end_token = DELTA_END
        self.vision_start_token = VISION_START
        self.vision_end_token = VISION_END
        self.video_token_id = vocab[VIDEO_TOKEN]
        self.delta_token_id = vocab[DELTA_TOKEN]
        self.frame_newline_token_id = vocab[FRAME_NEWLINE]
        self.delta_end_token_id = vocab[DELTA_END]
        self.vision_start_token_id = vocab[VISION_START]
        self.vision_end_token_id = vocab[VISION_END]
        self.use_timestamps = bool(use_timestamps)
        self.use_row_newlines = bool(use_row_newlines)
        self.use_delta_end = bool(use_delta_end)
        self.delta_tokens_per_step = int(delta_tokens_per_step)
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None) or CHAT_TEMPLATE
        super().__init__(video_processor, tokenizer, chat_template=chat_template, **kwargs)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Build the video processor straight from the nested `processor_config.json` entry.

        So `CoPEVideoLMProcessor.from_pretrained` works without Auto registration; `AutoProcessor` reaches here too.
        """
        config = (processor_dict or {}).get("video_processor")
        if not isinstance(config, dict) or config.get("video_processor_type") != CoPEVideoProcessor.__name__:
            return super()._get_arguments_from_pretrained(pretrained_model_name_or_path, processor_dict, **kwargs)
        config = {k: v for k, v in config.items() if k not in ("video_processor_type", "auto_map", "processor_class")}
        knobs = CoPEVideoProcessor.valid_kwargs.__annotations__
        config.update({k: v for k, v in kwargs.items() if k in knobs})  # from_pretrained(path, keyframes_per_gop=2)
        video_processor = CoPEVideoProcessor(**config)
        subfolder = kwargs.pop("subfolder", "")
        tokenizer_kwargs = {k: v for k, v in kwargs.items() if k not in knobs}
        tokenizer = cls._load_tokenizer_from_pretrained(
            "tokenizer", pretrained_model_name_or_path, subfolder=subfolder, **tokenizer_kwargs
        )
        return [video_processor, tokenizer]

    # Δ-tokens are video content too: mark them as video (2) in mm_token_type_ids.
    @property
    def video_token_ids(self) -> list[int]:
        return [self.video_token_id, self.delta_token_id]

    # ------------------------------------------------------------------------------- placeholder expansion
    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if images is not None:
            raise ValueError("CoPEVideoLMProcessor reads videos, not images.")
        if text is None and videos is None:
            raise ValueError("CoPEVideoLMProcessor needs `text` and/or `videos`.")
        if text is not None:
            texts = [text] if isinstance(text, str) else text
            if not all(isinstance(sample, str) for sample in texts):
                raise ValueError("`text` must be a string or a list of strings.")
            # Only the processor writes the expansion tokens: typed by a user they would shift every placeholder
            # after them and fail later inside generate (issue 16, D10).
            for token in (self.delta_token, self.delta_end_token, self.frame_newline_token):
                if any(token in sample for sample in texts):
                    raise ValueError(f"The text contains {token}, a token only the processor inserts (when it "
                                     f"expands a video); remove it from the text.")
            n_text = sum(sample.count(self.video_token) for sample in texts)
            n_videos = len(flatten_videos(videos)) if videos is not None else 0
            if n_text != n_videos:
                raise ValueError(
                    f"The prompts hold {n_text} {self.video_token} placeholders but {n_videos} videos were passed "
                    "(one placeholder per video; the processor expands it)."
                )

    def _process_videos(self, videos, **kwargs):
        processed = self.video_processor(videos, **kwargs)
        count = len(processed["video_frame_types"])
        replacements = [self.replace_video_token(processed, video_idx=idx, **kwargs) for idx in range(count)]
        return processed, replacements

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        """The text that stands for video `video_idx`: per step [time stamp] + keyframe rows or Δ tokens."""
        grid = self.video_processor.keyframe_token_grid(
            kwargs.get("size"), kwargs.get("patch_size"), kwargs.get("pooling")
        )
        per_keyframe = grid * grid
        types = video_inputs["video_frame_types"][video_idx]
        times = video_inputs["video_timestamps"][video_idx]
        mask = video_inputs.get("video_compression_mask")
        kept_rows = None
        if mask is not None:
            offset = sum(t.count("I") for t in video_inputs["video_frame_types"][:video_idx]) * per_keyframe
            own = mask[offset : offset + types.count("I") * per_keyframe]
            kept_rows = _row_counts(own, types.count("I"), grid)

        delta = self.delta_token * self.delta_tokens_per_step + (self.delta_end_token if self.use_delta_end else "")
        newline = self.frame_newline_token if self.use_row_newlines else ""
        parts = []
        keyframe = 0
        for step, kind in enumerate(types):
            if self.use_timestamps:
                parts.append(f"Time {times[step]:.1f}s:")
            if kind == "I":
                rows = kept_rows[keyframe] if kept_rows is not None else [grid] * grid
                parts.append("".join(self.video_token * n + newline for n in rows))
                keyframe += 1
            else:
                parts.append(delta)
        return "".join(parts)

    def _check_special_mm_tokens(self, text, text_inputs, modalities):
        super()._check_special_mm_tokens(text, text_inputs, modalities)
        input_ids = text_inputs["input_ids"]
        input_ids = input_ids.tolist() if hasattr(input_ids, "tolist") else input_ids
        ids_count = [list(ids).count(self.delta_token_id) for ids in input_ids]
        text_count = [sample.count(self.delta_token) for sample in text]
        if ids_count != text_count:
            raise ValueError(
                f"Mismatch in {self.delta_token} count between text and input_ids ({ids_count} vs {text_count}); "
                "likely truncation: disable it or raise max_length."
            )

    # ------------------------------------------------------------------------------------------ chat template
    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        """As `ProcessorMixin.apply_chat_template`; on transformers releases whose assistant mask ignores the
        placeholder expansion (5.17), `return_assistant_tokens_mask=True` is answered by `assistant_tokens_mask`."""
        legacy = (
            kwargs.get("return_assistant_tokens_mask")
            and kwargs.get("tokenize")
            and kwargs.get("return_dict")
            and not hasattr(ProcessorMixin, "_adjust_assistant_masks_indices")
            and IM_START in (chat_template or self.chat_template or "")
        )
        if not legacy:
            return super().apply_chat_template(conversation, chat_template=chat_template, **kwargs)
        kwargs["return_assistant_tokens_mask"] = False
        return_tensors = kwargs.pop("return_tensors", None)
        out = super().apply_chat_template(conversation, chat_template=chat_template, return_tensors=None, **kwargs)
        out["assistant_masks"] = self.assistant_tokens_mask(out["input_ids"])
        out.convert_to_tensors(tensor_type=None if return_tensors == "auto" else return_tensors)
        return out

    def assistant_tokens_mask(self, input_ids) -> list[list[int]]:
        """1 on every assistant reply token (its text, `<|im_end|>` and the newline after it), 0 elsewhere.

        The span the chat template marks with {% generation %}, found from token ids (ChatML headers), so it is
        right after placeholder expansion and padding; for SFT collators that build their own batches.
        """
        rows = input_ids.tolist() if hasattr(input_ids, "tolist") else [list(row) for row in input_ids]
        if rows and isinstance(rows[0], int):
            rows = [rows]
        vocab = self.tokenizer.get_vocab()
        start, end = vocab[IM_START], vocab[IM_END]
        header = self.tokenizer("assistant\n", add_special_tokens=False)["input_ids"]
        newline = self.tokenizer("\n", add_special_tokens=False)["input_ids"]
        masks = []
        for row in rows:
            mask = [0] * len(row)
            i = 0
            while i < len(row):
                if row[i] == start and row[i + 1 : i + 1 + len(header)] == header:
                    j = i + 1 + len(header)
                    while j < len(row) and row[j] != end:
                        mask[j] = 1
                        j += 1
                    if j < len(row):
                        mask[j] = 1
                        if row[j + 1 : j + 1 + len(newline)] == newline:
                            for k in range(j + 1, j + 1 + len(newline)):
                                mask[k] = 1
                    i = j
                i += 1
            masks.append(mask)
        return masks

    # ---------------------------------------------------------------------------------------------- decoding
    def post_process_image_text_to_text(
        self, generated_outputs, skip_special_tokens=True, clean_up_tokenization_spaces=False, **kwargs
    ) -> list[str]:
        """Decode `generate` output (batch or single sequence) to strings."""
        if hasattr(generated_outputs, "ndim") and generated_outputs.ndim == 1:
            generated_outputs = generated_outputs[None]
        elif isinstance(generated_outputs, (list, tuple)) and generated_outputs and isinstance(generated_outputs[0], int):
            generated_outputs = [generated_outputs]
        return self.tokenizer.batch_decode(
            generated_outputs,
            skip_special_tokens=skip_special_tokens,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            **kwargs,
        )

    @property
    def model_input_names(self) -> list[str]:
        names = list(self.tokenizer.model_input_names) + list(self.video_processor.model_input_names)
        return list(dict.fromkeys(names))


def _row_counts(mask, n_keyframes: int, grid: int) -> list[list[int]]:
    """Kept tokens per pooled row, per keyframe, from a flat bool mask (row-major tokens)."""
    values = mask.tolist() if hasattr(mask, "tolist") else list(mask)
    if len(values) != n_keyframes * grid * grid:
        raise ValueError(
            f"video_compression_mask has {len(values)} entries for {n_keyframes} keyframes of {grid}x{grid} tokens."
        )
    counts = []
    for k in range(n_keyframes):
        base = k * grid * grid
        counts.append([sum(bool(v) for v in values[base + r * grid : base + (r + 1) * grid]) for r in range(grid)])
    return counts


__all__ = ["CoPEVideoLMProcessor", "add_cope_special_tokens", "CHAT_TEMPLATE", "COPE_SPECIAL_TOKENS"]

