"""Video sessions: a video's KV cache built GOP by GOP, then reused for any number of questions.

Why: a one-shot question pays decode + codec primitives + the prefill of every video token, and a follow-up pays it
all again. CoPE's GOPs are self-contained chunks (one keyframe + Δ steps), so a session feeds them into the language
model's cache as they arrive (the chat template's prefix first, then each GOP's tokens exactly as the processor would
expand them), and a question only prefills its own few tokens on top of the cached video: the cache is cropped back
to the video after each answer (`DynamicCache.crop`), never re-prefilled.

Equivalence with one-shot prompting: the session's token ids are the one-shot prompt's ids (the chat template is
split at the video placeholder, which sits between special tokens, so tokenizing the parts gives the same ids), and
positions run on from the cache length as in one prefill. Only float rounding differs (chunked attention and the
vision tower run per GOP): on the embedded model the logits agree within 1e-4 absolute in float32 and greedy answers
are token-identical (tests/test_session.py); bfloat16 would need a looser bound.

Sliding window (`max_steps`): once more than `max_steps` steps are held, the oldest GOPs are evicted. Positions: the
kept window is re-prefilled from the stored input embeddings of its GOPs (no vision tower again), so the cache is
exactly a one-shot prompt of [prefix + kept GOPs] and positions stay inside the range the model was trained on,
however long a live stream runs. Keeping the cached keys with their absolute RoPE positions would leave a gap
between the prefix and the window and let positions grow without bound; re-rotating the keys (StreamingLLM style)
is cheaper but only for plain RoPE and not bit-compatible with a one-shot prompt. The re-prefill is lazy: ingestion
after an eviction only embeds GOPs, and the next question pays one prefill of the window (<= `max_steps` steps).

Batch size 1. Batched sessions would need a cache row per video with different lengths: left padding inside the
cache plus a per-row attention mask and position ids for every chunk and question, and per-row crop/eviction
(DynamicCache crops all rows to one length); Transformers' generate supports the padding, the bookkeeping is what is
missing. Thread-safe: ingestion (e.g. from a producer thread reading a growing file) and questions take one lock, so
a question answers about what was ingested so far and ingestion resumes after it.

Ships as Hub remote code next to the pipeline (flat, relative imports only).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator

import torch
from transformers import DynamicCache

from .codec import extract_primitives

_VIDEO_PLACEHOLDER = "<|video_pad|>"
_PRIMITIVE_FIELDS = ("frame_types", "keyframes", "motion_vectors", "intra_masks", "residuals", "timestamps")


def _is_primitives(obj) -> bool:
    return all(hasattr(obj, name) for name in _PRIMITIVE_FIELDS)


def split_gops(primitives, gop_size: int) -> list:
    """One video's primitives (a `CodecPrimitives`) cut into GOPs of `gop_size` steps, each the same class restricted
    to its steps (the last may be shorter). Concatenating them gives the input back."""
    types = str(primitives.frame_types)
    if gop_size < 1:
        raise ValueError(f"gop_size must be >= 1, got {gop_size}")
    gops, i_start, p_start = [], 0, 0
    for start in range(0, len(types), gop_size):
        layout = types[start : start + gop_size]
        n_i, n_p = layout.count("I"), layout.count("P")
        changes = {
            "frame_types": layout,
            "keyframes": primitives.keyframes[i_start : i_start + n_i],
            "motion_vectors": primitives.motion_vectors[p_start : p_start + n_p],
            "intra_masks": primitives.intra_masks[p_start : p_start + n_p],
            "residuals": primitives.residuals[p_start : p_start + n_p],
            "timestamps": primitives.timestamps[start : start + len(layout)],
        }
        for name in ("frame_indices", "frames"):
            value = getattr(primitives, name, None)
            if value is not None:
                changes[name] = value[start : start + len(layout)]
        gops.append(dataclasses.replace(primitives, **changes) if dataclasses.is_dataclass(primitives)
                    else _Chunk(**changes))
        i_start, p_start = i_start + n_i, p_start + n_p
    return gops


@dataclasses.dataclass
class _Chunk:
    frame_types: str
    keyframes: object
    motion_vectors: object
    intra_masks: object
    residuals: object
    timestamps: object
    frame_indices: object = None
    frames: object = None


def iter_video_gops(path, gop_size: int, *, live: bool = False, **codec_kwargs) -> Iterator:
    """GOPs of a video file: the codec layer's streaming iterator (`codec.iter_primitives`; with `live=True`
    `codec.iter_live_primitives`, which follows a file that is still being written) when this install has it, else
    `extract_primitives` cut into GOPs (the same arrays, all extracted before the first GOP is yielded). Options the
    chosen reader does not take (e.g. `max_steps` for a live source, `num_workers` for an old codec layer) are
    dropped."""
    from . import codec

    iterate = getattr(codec, "iter_live_primitives" if live else "iter_primitives", None)
    if iterate is None and live:
        raise ValueError("this codec layer cannot follow a growing file (no codec.iter_live_primitives)")
    if iterate is not None:
        accepted = inspect.signature(iterate).parameters
        return iterate(path, gop_size=gop_size, **{k: v for k, v in codec_kwargs.items() if k in accepted})
    codec_kwargs.pop("num_workers", None)
    return iter(split_gops(extract_primitives(path, gop_size=gop_size, **codec_kwargs), gop_size))


@dataclasses.dataclass
class _HeldGOP:
    """What the session keeps of an ingested GOP: its token ids, step layout and times, and (only with a sliding
    window, for the re-prefill) its input embeddings."""

    ids: torch.Tensor
    frame_types: str
    timestamps: list
    embeds: torch.Tensor | None


class _Prefetched:
    """Iterate `source` in a producer thread, at most `depth` items ahead; errors re-raise in the consumer. Keeps the
    source's `num_gops` (for a progress bar); `close()` stops the producer and closes the source."""

    _END = object()

    def __init__(self, source, depth: int):
        import queue

        self.num_gops = getattr(source, "num_gops", None)
        self._source = source
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="cope-gop-prefetch", daemon=True)
        self._thread.start()

    def _produce(self):
        try:
            for item in self._source:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as err:  # handed to the consumer
            self._put(("error", err))

    def _put(self, entry) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            kind, value = self._queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    def close(self):
        self._stop.set()
        self._thread.join()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def _cache_kwarg(module) -> str:
    """The name a decoder's forward gives its cache: `cache` from transformers 5.2x, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _generate_cache_kwarg() -> str:
    from transformers.generation import utils

    return "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


class CoPEVideoSession:
    r"""One video held in a CoPE-VideoLM's KV cache, for many questions (see the module docstring for why and how).

    ```python
    session = CoPEVideoSession(model, processor)
    session.ingest("clip.mp4", progress=True)      # GOP by GOP into the cache
    session.ask("Which direction does the red square move?")
    session.ask("Does the camera pan?")            # only the question is prefilled
    ```

    Args:
        model: a `CoPEVideoLMForConditionalGeneration` (any device/dtype; batch size 1).
        processor: its `CoPEVideoLMProcessor`.
        max_steps: sliding window: keep at most this many steps (whole GOPs, oldest evicted first); None keeps all.
        video_kwargs: the video processor's knobs (fps, gop_size, keyframes_per_gop, codec_size, ...) for this
            session. A file is extracted with every step at `fps`: the processor's own `max_steps` (uniform
            subsampling of a whole file) does not apply; pass the processor's primitives to `ingest` to get them.
    """

    def __init__(self, model, processor, *, max_steps: int | None = None, **video_kwargs):
        self.model = model
        self.processor = processor
        video_processor = processor.video_processor
        self._options = video_processor._options(dict(video_kwargs))
        if self._options.get("use_token_compression"):
            raise ValueError("CoPEVideoSession does not support use_token_compression=True yet: its keep mask of a "
                             "GOP's first keyframe depends on the previous GOP's last keyframe.")
        self.video_kwargs = {k: v for k, v in video_kwargs.items() if k != "return_tensors"}
        self.gop_size = int(self._options["gop_size"])
        if max_steps is not None and max_steps < self.gop_size:
            raise ValueError(f"max_steps (the sliding window) must hold at least one GOP ({self.gop_size} steps), "
                             f"got {max_steps}")
        self.max_steps = max_steps
        self._base = model.model
        self._lm = self._base.language_model
        self._lm_cache_kwarg = _cache_kwarg(self._lm)
        self._gen_cache_kwarg = _generate_cache_kwarg()
        self._lock = threading.RLock()
        prefix_text, _ = self._split_prompt("?")
        self._prefix_text = prefix_text
        self._prefix_ids = self._tokenize(prefix_text, add_special_tokens=True)
        self.reset()

    # ------------------------------------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the video: an empty cache holding only the chat template's prefix."""
        with self._lock:
            self._gops: deque[_HeldGOP] = deque()
            self._evicted_steps = 0
            self._cache = DynamicCache()
            self._cached_gops = 0  # GOPs of self._gops whose tokens are in the cache (after the prefix)
            self._stale = False
            self._prefix_embeds = None
            with torch.inference_mode():
                embeds = self._embed_text(self._prefix_ids)
                if self.max_steps is not None:
                    self._prefix_embeds = embeds
                self._prefill(embeds)

    @property
    def num_steps(self) -> int:
        """Steps held (in the window)."""
        return sum(len(g.frame_types) for g in self._gops)

    @property
    def num_ingested_steps(self) -> int:
        """Steps ingested since the start, evicted ones included."""
        return self._evicted_steps + self.num_steps

    @property
    def frame_types(self) -> str:
        return "".join(g.frame_types for g in self._gops)

    @property
    def timestamps(self) -> list[float]:
        return [t for g in self._gops for t in g.timestamps]

    @property
    def num_cached_tokens(self) -> int:
        return self._cache.get_seq_length()

    @property
    def input_ids(self) -> torch.Tensor:
        """`(1, n)` ids of the prefix and the held GOPs: the one-shot prompt's ids up to the video's end."""
        return torch.cat([self._prefix_ids, *(g.ids for g in self._gops)], dim=1)

    # ------------------------------------------------------------------------------------------------ text
    def _split_prompt(self, question: str) -> tuple[str, str]:
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if prompt.count(_VIDEO_PLACEHOLDER) != 1:
            raise ValueError(f"the chat template wrote {prompt.count(_VIDEO_PLACEHOLDER)} {_VIDEO_PLACEHOLDER} for "
                             "one video block; a session needs exactly one")
        before, after = prompt.split(_VIDEO_PLACEHOLDER)
        return before, after

    def _tokenize(self, text: str, add_special_tokens: bool = False) -> torch.Tensor:
        ids = self.processor.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        return torch.tensor([ids], dtype=torch.long)

    def question_ids(self, question: str) -> torch.Tensor:
        """`(1, n)` ids that follow the video for `question`: the rest of the user turn and the assistant header."""
        before, after = self._split_prompt(question)
        if before != self._prefix_text:
            raise ValueError("the chat template writes text before the video that depends on the question; a session "
                             "caches that prefix once and cannot serve this template")
        return self._tokenize(after)

    # ------------------------------------------------------------------------------------------------ model
    @property
    def _device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def _embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self._base.get_input_embeddings()(ids.to(self._device))

    def _embed_gop(self, ids: torch.Tensor, features) -> torch.Tensor:
        """Input embeddings of one GOP's tokens: text embeddings with the keyframe and Δ features scattered into
        their placeholders (as `CoPEVideoLMModel.forward` does for a whole prompt)."""
        config = self.model.config
        ids = ids.to(self._device)
        embeds = self._embed_text(ids)
        dtype = embeds.dtype
        pixels = features["pixel_values_videos"].to(self._device, dtype)
        keyframes = self._base.get_video_features(pixels, return_dict=True).pooler_output.flatten(0, 1)
        parts = [(ids == config.video_token_id, keyframes, "A GOP's keyframe", "<|video_pad|>", "its keyframes")]
        motion = features.get("delta_motion_vectors")
        if motion is not None and motion.shape[0] > 0:
            delta = self._base.get_delta_features(motion.to(self._device, dtype),
                                                  features["delta_residuals"].to(self._device, dtype),
                                                  return_dict=True).pooler_output.flatten(0, 1)
            parts.append((ids == config.delta_token_id, delta, "A GOP's Δ", "<|delta_pad|>", "its Δ steps"))
        return type(self._base)._merge_features(embeds, parts)  # the model's own merge: same order, same checks

    def _prefill(self, embeds: torch.Tensor) -> None:
        self._lm(inputs_embeds=embeds, use_cache=True, **{self._lm_cache_kwarg: self._cache})

    def _refresh(self) -> None:
        """After an eviction: rebuild the cache as one prompt of [prefix + kept GOPs] from their stored embeddings."""
        if not self._stale:
            return
        self._cache = DynamicCache()
        self._prefill(self._prefix_embeds)
        for gop in self._gops:
            self._prefill(gop.embeds)
        self._cached_gops = len(self._gops)
        self._stale = False

    # ------------------------------------------------------------------------------------------------ ingestion
    def ingest_gop(self, gop) -> int:
        """Append one GOP (any object with the `CodecPrimitives` arrays restricted to its steps, starting with an "I"
        step) to the cache. Returns the number of tokens it added."""
        features = self.processor.video_processor(gop, return_tensors="pt", **self.video_kwargs)
        text = self.processor.replace_video_token(features, 0, **self.video_kwargs)
        ids = self._tokenize(text)
        with torch.inference_mode():
            embeds = self._embed_gop(ids, features)
            with self._lock:
                held = _HeldGOP(ids=ids, frame_types=features["video_frame_types"][0],
                                timestamps=list(features["video_timestamps"][0]),
                                embeds=embeds if self.max_steps is not None else None)
                self._gops.append(held)
                if not self._stale:
                    self._prefill(embeds)
                    self._cached_gops += 1
                self._evict()
        return ids.shape[1]

    def _evict(self) -> None:
        if self.max_steps is None:
            return
        while self.num_steps > self.max_steps and len(self._gops) > 1:
            self._evicted_steps += len(self._gops.popleft().frame_types)
            self._stale = True
        if self._stale:
            self._cache = DynamicCache()  # rebuilt at the next question (see _refresh); frees the old one now

    def ingest(self, video, *, progress: bool = False, progress_desc: str | None = None, prefetch: int = 2,
               live: bool = False, num_workers: int | None = None, **live_kwargs) -> "CoPEVideoSession":
        """Ingest a video GOP by GOP: a file path (streamed by the codec layer), one `CodecPrimitives` (cut into
        GOPs), or any iterable of per-GOP primitives (e.g. `codec.iter_primitives(...)` or a live source).

        prefetch: GOPs a producer thread extracts ahead while this thread prefills (extraction overlapped with the
            model; PyAV and torch release the GIL in their kernels). 0 extracts in this thread.
        live: the path is a file still being written: follow it (`codec.iter_live_primitives`; `live_kwargs` such
            as `finished=` or `idle_timeout=` go there) until it is finished.
        num_workers: processes extracting segments of a (complete) file in parallel (`iter_primitives`).
        progress: a tqdm bar on stderr. Returns the session."""
        if isinstance(video, (str, os.PathLike)):
            gops = iter_video_gops(os.fspath(video), self.gop_size, live=live, num_workers=num_workers,
                                   **self.codec_kwargs(), **live_kwargs)
        elif live or live_kwargs:
            raise ValueError("live=True follows a file path; pass other live sources through "
                             "codec.iter_live_primitives(...) yourself")
        else:
            gops = self._gop_source(video)
        if prefetch > 0 and not isinstance(gops, (list, tuple)):
            gops = _Prefetched(gops, prefetch)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            total = getattr(gops, "num_gops", None) or (len(gops) if hasattr(gops, "__len__") else None)
            bar = tqdm(total=total, unit="GOP", desc=progress_desc or "ingesting", leave=False, dynamic_ncols=True)
        try:
            for gop in gops:
                self.ingest_gop(gop)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(steps=self.num_ingested_steps, tokens=self.num_cached_tokens, refresh=False)
        finally:
            if bar is not None:
                bar.close()
            close = getattr(gops, "close", None)
            if close is not None:
                close()
        return self

    def codec_kwargs(self) -> dict:
        """`extract_primitives` options of this session: the processor's, with every step kept (no max_steps)."""
        kwargs = dict(self.processor.video_processor._codec_kwargs(self._options))
        kwargs["max_steps"] = None
        kwargs.pop("gop_size", None)
        return kwargs

    def _gop_source(self, video):
        if _is_primitives(video):
            return split_gops(video, self.gop_size)
        if isinstance(video, Iterable):
            return video
        raise TypeError(f"CoPEVideoSession.ingest takes a video path, CodecPrimitives or an iterable of GOPs; got "
                        f"{type(video).__name__}")

    # ------------------------------------------------------------------------------------------------ questions
    def _run(self, question: str, fn):
        """Run `fn(full_ids, cache)` on the cached video + the question's tokens, then crop the cache back."""
        with self._lock:
            if not self._gops:
                raise ValueError("the session holds no video yet: ingest a video (or wait for its first GOP)")
            self._refresh()
            video_length = self._cache.get_seq_length()
            full_ids = torch.cat([self.input_ids, self.question_ids(question)], dim=1).to(self._device)
            try:
                with torch.inference_mode():
                    return fn(full_ids, self._cache)
            finally:
                extra = self._cache.get_seq_length() - video_length
                if extra > 0:  # a negative count: the one crop form on both 5.17 and 5.2x
                    self._cache.crop(-extra)

    def question_logits(self, question: str) -> torch.Tensor:
        """`(1, n, vocab)` logits of the question's tokens given the cached video (the one-shot prompt's last n)."""
        def forward(full_ids, cache):
            new = full_ids[:, cache.get_seq_length():]
            hidden = self._lm(inputs_embeds=self._embed_text(new), use_cache=True,
                              **{self._lm_cache_kwarg: cache}).last_hidden_state
            return self.model.lm_head(hidden)

        return self._run(question, forward)

    def generate(self, question: str, **generate_kwargs) -> torch.Tensor:
        """`model.generate` on the cached video + `question`; returns the new token ids `(1, n_new)`. Options as
        for `generate` (greedy by default; `eos_token_id` defaults to the model's EOS ids plus `<|im_end|>`)."""
        generate_kwargs.setdefault("eos_token_id", self.stop_token_ids())
        if self.processor.tokenizer.pad_token_id is not None:
            generate_kwargs.setdefault("pad_token_id", self.processor.tokenizer.pad_token_id)

        def run(full_ids, cache):
            out = self.model.generate(input_ids=full_ids, attention_mask=torch.ones_like(full_ids),
                                      **{self._gen_cache_kwarg: cache}, **generate_kwargs)
            return out[:, full_ids.shape[1]:]

        return self._run(question, run)

    def ask(self, question: str, **generate_kwargs) -> str:
        """The decoded answer to `question` about what the session holds (special tokens removed, stripped)."""
        generated = self.generate(question, **generate_kwargs)
        return self.processor.tokenizer.decode(generated[0], skip_special_tokens=True).strip()

    def stop_token_ids(self) -> list[int]:
        """The model's EOS ids plus `<|im_end|>` (the chat template closes every turn with it)."""
        eos = self.model.generation_config.eos_token_id
        ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        vocab = self.processor.tokenizer.get_vocab()
        if "<|im_end|>" in vocab and vocab["<|im_end|>"] not in ids:
            ids.append(vocab["<|im_end|>"])
        return ids


__all__ = ["CoPEVideoSession", "iter_video_gops", "split_gops"]
