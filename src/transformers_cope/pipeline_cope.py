"""`video-question-answering` pipeline for CoPE-VideoLM: a video path (or a list of them) + a question -> answers.

Why a pipeline of our own: Transformers ships no video QA task, and CoPE-VideoLM's inputs (keyframes, Δ steps and a
per-video step layout) need their own batching: keyframes and Δ steps of all videos are concatenated, the prompts are
left-padded. The answer is parsed from `<think>...</think><answer>...</answer>` when the model writes them.
Test-time scaling comes from `test_time_scaling.py` (self-consistency: K sampled chains, majority vote; best-of-N: a
verifier picks one chain), each run as one batched `generate` call per video.

Ships to the Hub as remote code next to the model (`config.custom_pipelines`), so it imports its siblings only as
`from .x import Y` and needs nothing but transformers and torch; `pipeline(model=repo, trust_remote_code=True)` then
works without this package.
"""

import copy
import os
import re

import torch
from transformers import AutoModelForImageTextToText, GenerationConfig, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import no_collate_fn
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator
from transformers.utils import logging

from .errors import check_number
from .test_time_scaling import best_of_n as run_best_of_n
from .test_time_scaling import normalize_answer
from .test_time_scaling import self_consistency as run_self_consistency

logger = logging.get_logger(__name__)

TASK = "video-question-answering"
IM_END = "<|im_end|>"
THINK_INSTRUCTION = "Think first inside <think></think>, then give the answer inside <answer></answer>."
# Knobs of CoPEVideoProcessor a call may override (the step layout and the codec extraction).
VIDEO_KNOBS = (
    "fps", "gop_size", "keyframes_per_gop", "max_steps", "codec_size", "codec_mode", "use_token_compression",
    "compression_threshold",
)
_VIDEO_TENSORS = ("pixel_values_videos", "delta_motion_vectors", "delta_residuals", "video_compression_mask")
_VIDEO_LISTS = ("video_frame_types", "video_timestamps")
_ERROR_KEY = "cope_error"  # an input that failed under errors="return" (see `preprocess`)
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)


def _check_generation_numbers(**values) -> None:
    """Finite, in-range generation and test-time-scaling numbers, one-line ValueError (issue 16, D8)."""
    for name in ("max_new_tokens", "self_consistency", "best_of_n", "num_return_sequences"):
        check_number(name, values[name], low=1, high=10**6, integer=True, optional=True)
    check_number("temperature", values["temperature"], low=0, high=1e4, optional=True)
    check_number("top_p", values["top_p"], low=0, high=1, optional=True)
    check_number("top_k", values["top_k"], low=0, high=10**7, integer=True, optional=True)


def parse_answer(text: str) -> dict:
    """Split a generation into {"answer", "reasoning"} ("reasoning" only when a <think> block is there).

    The answer is the `<answer>` block's content, else the text with any `<think>` block removed; both stripped.
    """
    result = {}
    think = _THINK.search(text)
    if think is not None:
        result["reasoning"] = think.group(1).strip()
    answer = _ANSWER.search(text)
    if answer is not None:
        result["answer"] = answer.group(1).strip()
    else:
        rest = _THINK.sub("", text) if think is not None else text
        result["answer"] = rest.strip()
    return {"answer": result["answer"], **({"reasoning": result["reasoning"]} if "reasoning" in result else {})}


class VideoQuestionAnsweringPipeline(Pipeline):
    r"""Answer questions about videos with a CoPE-VideoLM.

    ```python
    from transformers import pipeline
    import transformers_cope  # registers the task (not needed with trust_remote_code=True on a Hub repo)

    vqa = pipeline("video-question-answering", model="path/or/repo")
    vqa("clip.mp4", question="Which direction does the red square move?")
    # [{'answer': 'left'}]
    vqa(["a.mp4", "b.mp4"], question="Does the camera pan left or right?", batch_size=2)
    vqa("clip.mp4", question=["Which way does it move?", "Does the camera pan?"])  # the video is prefilled once
    # [[{'answer': 'left'}], [{'answer': 'no'}]]
    vqa("clip.mp4", question="...", reasoning=True, self_consistency=5)
    # [{'answer': 'left', 'reasoning': '...', 'votes': {'left': 4, 'up': 1}, 'agreement': 0.8}]
    ```

    Inputs: a video path, a `{"video": path, "question": str}` dict, or a list of either (a list gives a list of
    results). Call options:
        question: the question (required unless every input dict carries one); a list of questions about one video
            prefills the video once (`session_cope.CoPEVideoSession`) and returns one result list per question.
        reasoning: append the `<think>/<answer>` instruction to the question (models trained with traces use it).
        self_consistency: K > 1 samples K chains per video (temperature 0.7 unless set) and returns the majority
            answer with `votes` and `agreement` (`test_time_scaling.self_consistency`).
        best_of_n: N > 1 samples N chains and keeps the one `reward_fn` scores highest (TRL reward signature
            `f(prompts, completions, **reward_kwargs)`; default: the model's own confidence), with its `score`.
        options: multiple-choice options ("A. left", ...) so that "B" and "B. right" count as one answer in votes.
        num_return_sequences: return that many sampled answers per video instead (no vote).
        max_new_tokens, do_sample, temperature, top_p, top_k, generate_kwargs: generation options.
        fps, gop_size, keyframes_per_gop, max_steps, codec_size, codec_mode, use_token_compression, video_kwargs:
            the processor's step layout and codec options for this call.
        errors: "raise" (default: the first failing input raises, named in the error) or "return" (a failing
            input's result is `[{"error": message, "type": exception class name}]`; the others are answered).
        batch_size (pipeline option): videos per `generate` call (test-time scaling batches the chains of one
            video instead).
    Output per video: a list of dicts `{"answer": str, "reasoning": str (when the model wrote <think>), ...}`.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False
    _pipeline_calls_generate = True
    _default_generation_config = GenerationConfig(max_new_tokens=64)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError("The video-question-answering pipeline needs the model's processor (processor=...).")
        if self.tokenizer is None:
            self.tokenizer = self.processor.tokenizer

    # ------------------------------------------------------------------------------------------------ parameters
    def _sanitize_parameters(
        self,
        question=None,
        reasoning=None,
        self_consistency=None,
        best_of_n=None,
        reward_fn=None,
        reward_kwargs=None,
        options=None,
        num_return_sequences=None,
        video_kwargs=None,
        generate_kwargs=None,
        max_new_tokens=None,
        do_sample=None,
        temperature=None,
        top_p=None,
        top_k=None,
        errors=None,
        **kwargs,
    ):
        preprocess = {}
        if errors is not None:
            if errors not in ("raise", "return"):
                raise ValueError(f'errors must be "raise" or "return", got {errors!r}')
            preprocess["errors"] = errors
        _check_generation_numbers(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                  self_consistency=self_consistency, best_of_n=best_of_n,
                                  num_return_sequences=num_return_sequences)
        if question is not None:
            preprocess["question"] = question
        if reasoning is not None:
            preprocess["reasoning"] = bool(reasoning)
        knobs = dict(video_kwargs or {})
        for name in VIDEO_KNOBS:
            if name in kwargs:
                knobs[name] = kwargs.pop(name)
        if knobs:
            preprocess["video_kwargs"] = knobs

        generate = dict(generate_kwargs or {})
        for name, value in (("max_new_tokens", max_new_tokens), ("do_sample", do_sample),
                            ("temperature", temperature), ("top_p", top_p), ("top_k", top_k)):
            if value is not None:
                generate[name] = value
        generation_keys = {key for key in vars(GenerationConfig()) if not key.startswith("_")}
        unknown = sorted(set(kwargs) - generation_keys)
        if unknown:
            raise TypeError(f"video-question-answering got unexpected arguments {unknown}.")
        generate.update(kwargs)
        # Samples per video are made by repeating the batch (CoPE video inputs are not expandable by `generate`).
        generate.pop("num_return_sequences", None)

        forward = {}
        postprocess = {}
        if generate:
            forward["generate_kwargs"] = generate
        if self_consistency is not None and best_of_n is not None:
            raise ValueError("Pass either self_consistency or best_of_n, not both.")
        if reward_fn is not None and best_of_n is None:
            raise ValueError("reward_fn is the best_of_n verifier; pass best_of_n=N as well.")
        scaling = None
        if self_consistency is not None and int(self_consistency) > 1:
            scaling = {"method": "self_consistency", "k": int(self_consistency), "options": options}
        elif best_of_n is not None and int(best_of_n) > 1:
            scaling = {"method": "best_of_n", "n": int(best_of_n), "reward_fn": reward_fn,
                       "reward_kwargs": dict(reward_kwargs or {})}
        for name, value in (("self_consistency", self_consistency), ("best_of_n", best_of_n),
                            ("num_return_sequences", num_return_sequences)):
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if scaling is not None:
            forward["scaling"] = scaling
        elif num_return_sequences is not None and int(num_return_sequences) > 1:
            forward["num_samples"] = int(num_return_sequences)
            forward["sample"] = True
        return preprocess, forward, postprocess

    def __call__(self, videos, question=None, **kwargs):
        """Answer `question` about `videos` (a path, a {"video", "question"} dict, or a list of them)."""
        if isinstance(question, (list, tuple)):
            return self._answer_with_session(videos, list(question), **kwargs)
        if question is not None:
            kwargs["question"] = question
        if isinstance(videos, tuple):
            videos = list(videos)
        return super().__call__(videos, **kwargs)

    def _answer_with_session(self, video, questions: list, **kwargs) -> list[list[dict]]:
        """Several questions about one video: its primitives are extracted and prefilled once into a
        `CoPEVideoSession`, then each question prefills only its own tokens (the answers are those of separate calls).
        Returns one result list per question, in order."""
        from .session_cope import CoPEVideoSession

        if isinstance(video, dict):
            video = video.get("video")
        if hasattr(video, "__fspath__"):
            video = video.__fspath__()
        if isinstance(video, (list, tuple)):
            raise ValueError("A list of questions is asked about one video; pass one video (a path or CodecPrimitives).")
        if not questions or not all(isinstance(q, str) and q for q in questions):
            raise ValueError("question=[...] needs non-empty strings.")
        preprocess, forward, _ = self._sanitize_parameters(**kwargs)
        if forward.get("scaling") is not None or forward.get("num_samples", 1) > 1:
            raise ValueError("self_consistency, best_of_n and num_return_sequences take one question per call.")
        video_kwargs = dict(preprocess.get("video_kwargs") or {})
        video_processor = self.processor.video_processor
        codec_kwargs = video_processor._codec_kwargs(video_processor._options(video_kwargs))
        primitives = video_processor.fetch_videos(video, **codec_kwargs)  # as a one-shot call extracts it
        video_kwargs.pop("max_steps", None)  # sampling is done; the session keeps every extracted step
        session = CoPEVideoSession(self.model, self.processor, **video_kwargs).ingest(primitives)
        options = self._generation_options(forward.get("generate_kwargs"), sample=False)
        options.pop("num_return_sequences", None)
        results = []
        for question in questions:
            text = f"{question}\n{THINK_INSTRUCTION}" if preprocess.get("reasoning") else question
            generated = session.generate(text, **options)
            texts = self.processor.post_process_image_text_to_text(generated, skip_special_tokens=True)
            results.append([parse_answer(t) for t in texts])
        return results

    # ------------------------------------------------------------------------------------------------ preprocess
    def preprocess(self, inputs, question=None, reasoning=False, video_kwargs=None, errors="raise"):
        """One input -> model inputs. With errors="return" a failing input becomes an error marker that batching,
        `_forward` and `postprocess` carry to its place in the results (issue 16, D11: one corrupt file in a batch
        no longer loses the others' answers); otherwise the error is raised with the input named."""
        try:
            return self._preprocess_one(inputs, question, reasoning, video_kwargs)
        except Exception as e:
            if errors == "return":
                return {_ERROR_KEY: {"error": str(e), "type": type(e).__name__}}
            name = inputs.get("video") if isinstance(inputs, dict) else inputs
            if hasattr(e, "add_note") and isinstance(name, (str, os.PathLike)) and os.fspath(name) not in str(e):
                e.add_note(f"video-question-answering: while processing {os.fspath(name)}")
            raise

    def _preprocess_one(self, inputs, question=None, reasoning=False, video_kwargs=None):
        if isinstance(inputs, dict):
            if "video" not in inputs:
                raise ValueError('A dict input needs a "video" key (and optionally "question").')
            video = inputs["video"]
            question = inputs.get("question", question)
        else:
            video = inputs
        if hasattr(video, "__fspath__"):
            video = video.__fspath__()
        if not isinstance(video, str) and not all(
            hasattr(video, name) for name in ("frame_types", "keyframes", "motion_vectors", "residuals")
        ):
            raise TypeError(
                f"video-question-answering takes video file paths (or CodecPrimitives); got {type(video).__name__}."
            )
        if not question:
            raise ValueError("video-question-answering needs a question: pipe(video, question='...').")
        self._note_untrained_question(question)
        text = f"{question}\n{THINK_INSTRUCTION}" if reasoning else question
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        model_inputs = self.processor(
            text=[prompt], videos=[video], return_tensors="pt", **dict(video_kwargs or {})
        )
        return dict(model_inputs)

    def _note_untrained_question(self, question: str) -> None:
        """One warning line when the checkpoint lists the questions it was trained for (`config.trained_questions`:
        regular expressions over the question's first line, case-insensitive) and this question matches none:
        a small model answers anything with confidence, so the caller is told at run time, not only in the card."""
        patterns = getattr(self.model.config, "trained_questions", None)
        if not patterns:
            return
        first = question.strip().splitlines()[0].strip()
        if any(re.fullmatch(pattern, first, flags=re.IGNORECASE) for pattern in patterns):
            return
        examples = "; ".join(getattr(self.model.config, "trained_question_examples", None) or patterns)
        logger.warning(f"this model was trained only for questions like: {examples}. {first!r} is none of them, so "
                       "its answer is not meaningful.")

    # ------------------------------------------------------------------------------------------------ batching
    def _collate(self, items: list[dict]) -> dict:
        """Left-pad the prompts (generation continues at the right edge); concatenate keyframes and Δ steps.
        Inputs that failed (errors="return") are left out of the tensors and listed, in place, under `_ERROR_KEY`."""
        errors = [item.get(_ERROR_KEY) for item in items]
        if any(error is not None for error in errors):
            good = [item for item in items if _ERROR_KEY not in item]
            return {**(self._collate(good) if good else {}), _ERROR_KEY: errors}
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            raise ValueError("Batching needs a tokenizer pad token.")
        length = max(item["input_ids"].shape[1] for item in items)
        batch = {
            "input_ids": torch.full((len(items), length), pad_id, dtype=items[0]["input_ids"].dtype),
            "attention_mask": torch.zeros((len(items), length), dtype=items[0]["attention_mask"].dtype),
        }
        for row, item in enumerate(items):
            n = item["input_ids"].shape[1]
            batch["input_ids"][row, length - n :] = item["input_ids"][0]
            batch["attention_mask"][row, length - n :] = item["attention_mask"][0]
        keys = set(items[0])
        if any(set(item) != keys for item in items):
            raise ValueError("Videos of one batch were processed with different options; use batch_size=1.")
        for key in _VIDEO_TENSORS:
            if key in keys:
                batch[key] = torch.cat([item[key] for item in items], dim=0)
        for key in _VIDEO_LISTS:
            if key in keys:
                batch[key] = [entry for item in items for entry in item[key]]
        return batch

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """As `Pipeline.get_iterator`, with a collate function that understands CoPE video inputs."""
        if forward_params.get("scaling") is not None:
            batch_size = 1  # the K (or N) chains of one video already form the generate batch
        if hasattr(inputs, "__len__") and hasattr(inputs, "__getitem__"):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:  # a generator: streamed, one worker (as Pipeline.get_iterator does)
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
            num_workers = min(num_workers, 1)
        collate_fn = no_collate_fn if batch_size == 1 else self._collate
        loader = torch.utils.data.DataLoader(
            dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=collate_fn
        )
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    # ------------------------------------------------------------------------------------------------ generation
    def _stop_token_ids(self) -> list[int] | None:
        """The model's EOS ids plus `<|im_end|>`: the chat template closes every turn with it, and a model fine-tuned
        on chats ends its answer there rather than at `<|endoftext|>`."""
        eos = self.model.generation_config.eos_token_id
        ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        tokenizer = self.tokenizer
        im_end = tokenizer.convert_tokens_to_ids(IM_END) if IM_END in tokenizer.get_vocab() else None
        if im_end is not None and im_end not in ids:
            ids.append(im_end)
        return ids or None

    def _init_generate_kwargs(self) -> dict:
        """Generation options given when the pipeline was built. Transformers >= 5.18 keeps them apart
        (`_generate_kwargs`); 5.17 folds them into `self.generation_config` (the model's config + the pipeline's
        defaults + these), so there they are read back as what differs from the model's config with the defaults."""
        if hasattr(self, "_generate_kwargs"):
            return dict(self._generate_kwargs)
        own = getattr(self, "generation_config", None)
        if own is None:
            return {}
        reference = copy.deepcopy(self.model.generation_config)  # built as 5.17's Pipeline.__init__ builds its own
        reference.update(**self._default_generation_config.to_dict(), defaults_only=True)
        if hasattr(self.model, "_prepare_generation_config"):
            reference, _ = self.model._prepare_generation_config(generation_config=reference)
        if self.tokenizer is not None and reference.pad_token_id is None:
            reference.pad_token_id = self.tokenizer.pad_token_id
        ours, theirs = own.to_dict(), reference.to_dict()
        return {key: value for key, value in ours.items()
                if not key.startswith("_") and key != "transformers_version" and theirs.get(key) != value}

    def _generation_options(self, generate_kwargs: dict, sample: bool, temperature: float = 1.0) -> dict:
        """`generate()` kwargs for one call: call-time options over init-time ones, `<|im_end|>` as a stop token and
        the tokenizer's pad id unless the user chose them, 64 new tokens unless a length was given."""
        generate_kwargs = dict(generate_kwargs or {})
        if sample:
            generate_kwargs.setdefault("do_sample", True)
            generate_kwargs.setdefault("temperature", temperature)
        # a call's generation_config replaces the init-time options, as in transformers >= 5.18
        init = {} if "generation_config" in generate_kwargs else self._init_generate_kwargs()
        given = {**init, **generate_kwargs}
        user_config = given.get("generation_config")
        if "eos_token_id" not in given and (user_config is None or user_config.eos_token_id is None):
            stop = self._stop_token_ids()
            if stop is not None:
                generate_kwargs["eos_token_id"] = stop
        if "pad_token_id" not in given and self.tokenizer.pad_token_id is not None:
            generate_kwargs["pad_token_id"] = self.tokenizer.pad_token_id
        if hasattr(self, "_prepare_generate_kwargs"):  # transformers >= 5.18: call, init and pipeline defaults
            return self._prepare_generate_kwargs(generate_kwargs)
        merged = {**init, **generate_kwargs}
        lengths = ("max_new_tokens", "max_length")
        if not any(key in merged for key in lengths) and getattr(user_config, "max_new_tokens", None) is None:
            merged["max_new_tokens"] = self._default_generation_config.max_new_tokens
        return merged

    def _forward(self, model_inputs, generate_kwargs=None, num_samples=1, sample=False, scaling=None):
        if _ERROR_KEY in model_inputs:
            errors = model_inputs[_ERROR_KEY]
            if isinstance(errors, dict):  # batch_size=1: this input failed
                return {_ERROR_KEY: errors}
            good = {key: value for key, value in model_inputs.items() if key != _ERROR_KEY}
            rows = iter(self._forward(good, generate_kwargs, num_samples, sample, scaling)["generated_ids"]
                        if good else ())
            return {"generated_ids": [None if error is not None else next(rows) for error in errors],
                    _ERROR_KEY: errors}
        if scaling is not None:
            return self._scaled_forward(model_inputs, generate_kwargs, scaling)
        inputs = dict(model_inputs)
        batch = inputs["input_ids"].shape[0]
        if num_samples > 1:  # rows k * batch + b hold sample k of video b
            for key in ("input_ids", "attention_mask", *_VIDEO_TENSORS):
                if key in inputs:
                    inputs[key] = torch.cat([inputs[key]] * num_samples, dim=0)
            for key in _VIDEO_LISTS:
                if key in inputs:
                    inputs[key] = list(inputs[key]) * num_samples
        inputs = self._cast_video_inputs(inputs)
        kwargs = self._generation_options(generate_kwargs, sample)
        kwargs.pop("num_return_sequences", None)
        output = self.model.generate(**inputs, **kwargs, return_dict_in_generate=False)
        prompt_length = inputs["input_ids"].shape[1]
        generated = output[:, prompt_length:]
        generated = generated.reshape(num_samples, batch, -1).transpose(0, 1)  # (batch, samples, new tokens)
        return {"generated_ids": generated}

    def _cast_video_inputs(self, inputs: dict) -> dict:
        """Float video tensors in the model's dtype (a bfloat16 model gets bfloat16 keyframes and Δ inputs)."""
        dtype = self.model.dtype
        for key in ("pixel_values_videos", "delta_motion_vectors", "delta_residuals"):
            if key in inputs and inputs[key].is_floating_point():
                inputs[key] = inputs[key].to(dtype)
        return inputs

    def _scaled_forward(self, model_inputs, generate_kwargs, scaling: dict) -> dict:
        """Self-consistency or best-of-N for one video through `test_time_scaling` (its chains form one batch)."""
        inputs = self._cast_video_inputs(dict(model_inputs))
        kwargs = self._generation_options(generate_kwargs, sample=True, temperature=0.7)
        kwargs.pop("num_return_sequences", None)
        kwargs.pop("do_sample", None)
        max_new_tokens = kwargs.pop("max_new_tokens", None) or getattr(kwargs.get("generation_config"),
                                                                          "max_new_tokens", None) or 64
        common = {"temperature": kwargs.pop("temperature"), "max_new_tokens": max_new_tokens, "answer_fallback": True}
        if scaling["method"] == "self_consistency":
            result = run_self_consistency(self.model, self.processor, inputs, k=scaling["k"],
                                          options=scaling["options"], **common, **kwargs)
            winner = normalize_answer(result["answer"], scaling["options"])
            chosen = next((chain for chain, answer in zip(result["chains"], result["answers"])
                           if answer is not None and normalize_answer(answer, scaling["options"]) == winner), None)
            extra = {"votes": result["votes"], "agreement": result["agreement"]}
        else:
            result = run_best_of_n(self.model, self.processor, inputs, n=scaling["n"], reward_fn=scaling["reward_fn"],
                                   reward_kwargs=scaling["reward_kwargs"], **common, **kwargs)
            chosen = result["best"]
            extra = {"score": result["scores"][result["index"]]}
        return {"scaled": [{"answer": result["answer"], "chain": chosen, **extra}]}

    # ---------------------------------------------------------------------------------------------- postprocess
    def postprocess(self, model_outputs):
        if model_outputs.get(_ERROR_KEY) is not None:
            return [dict(model_outputs[_ERROR_KEY])]
        if "scaled" in model_outputs:
            scaled = dict(model_outputs["scaled"][0])
            chain = scaled.pop("chain")
            parsed = parse_answer(chain) if chain is not None else {}
            answer = scaled.pop("answer")
            out = {"answer": answer if answer is not None else ""}
            if "reasoning" in parsed:
                out["reasoning"] = parsed["reasoning"]
            return [{**out, **scaled}]
        generated = model_outputs["generated_ids"]
        if generated.ndim == 3:  # one video (the pipeline keeps a batch axis of 1)
            generated = generated[0]
        texts = self.processor.post_process_image_text_to_text(generated, skip_special_tokens=True)
        return [parse_answer(text) for text in texts]


def register_pipeline() -> None:
    """Register `video-question-answering` with Transformers' pipeline registry (idempotent, no warning)."""
    registered = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if registered is not None and registered.get("impl") is VideoQuestionAnsweringPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK,
        pipeline_class=VideoQuestionAnsweringPipeline,
        pt_model=AutoModelForImageTextToText,
        type="multimodal",
    )


__all__ = [
    "TASK",
    "THINK_INSTRUCTION",
    "VideoQuestionAnsweringPipeline",
    "parse_answer",
    "register_pipeline",
]
