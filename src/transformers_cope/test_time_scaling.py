"""Test-time scaling for CoPE-VideoLM: self-consistency (majority vote over K sampled reasoning chains) and best-of-N
with a verifier.

Why: reasoning chains sampled at temperature > 0 disagree; the answer most of them reach is more often right than one
greedy chain (Wang et al. 2023; gains saturate near K = 5 for video LMs, see the Video-LMM post-training survey).
Chains are generated as one batch of K copies of the prompt (video tensors repeated video-major), not with
`num_return_sequences`, whose `repeat_interleave` expansion would interleave the flat per-step Δ tensors of
different copies.

Ships to the Hub as remote code (the pipeline imports it): flat, third-party imports only, no package imports.
"""

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

# Per-step video tensors are flat over all videos of a batch (rows = keyframes / Δ steps / keyframe tokens), so a
# batch of n copies repeats them whole (video-major); the other tensors are per sample (dim 0 = batch).
FLAT_VIDEO_KEYS = ("pixel_values_videos", "delta_motion_vectors", "delta_residuals", "video_compression_mask")
LIST_VIDEO_KEYS = ("video_frame_types", "video_timestamps")

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_TAG_RE = re.compile(r"</?(think|answer)>", re.IGNORECASE)
_OPTION_RE = re.compile(r"^\s*\(?([A-Za-z])[\.\):]\s*(.*)$", re.DOTALL)
_EDGE_PUNCT = " \t\n\r.,;:!?\"'`()[]{}"


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or TRL's conversational form `[{"role": "assistant", "content": ...}]`."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        content = completion.get("content", "")
        if isinstance(content, list):  # content blocks
            return "".join(part.get("text", "") or "" for part in content if isinstance(part, Mapping))
        return str(content)
    if isinstance(completion, Sequence) and completion:
        return completion_text(completion[-1])
    return ""


def extract_answer(text: Any, *, fallback: bool = False) -> str | None:
    """The content of the last `<answer>...</answer>` of a completion, stripped; `None` when there is none.

    With `fallback=True`, a completion without answer tags gives its text outside `<think>` (models that answer
    plainly still vote); an unclosed `<answer>` (truncated generation) never counts as an answer.
    """
    text = completion_text(text)
    matches = _ANSWER_RE.findall(text)
    if matches:
        answer = matches[-1].strip()
        return answer or None
    if not fallback or re.search(r"<answer>", text, re.IGNORECASE):
        return None
    answer = _TAG_RE.sub("", _THINK_RE.sub("", text)).strip()
    return answer or None


def option_letters(options: Sequence[str] | None) -> dict[str, str]:
    """`["A. left", "B. right"]` -> {"left": "A", "right": "B"} (normalised option text -> letter)."""
    table = {}
    for option in options or ():
        match = _OPTION_RE.match(str(option))
        if match:
            table[_plain(match.group(2))] = match.group(1).upper()
    return table


def _plain(text: str) -> str:
    return " ".join(str(text).casefold().split()).strip(_EDGE_PUNCT)


def normalize_answer(answer: str | None, options: Sequence[str] | None = None) -> str | None:
    """Canonical form for comparing and voting: case-folded, single spaces, no edge punctuation.

    With multiple-choice `options`, "B", "b.", "(B)", "B. right" and "right" all become "B".
    """
    if answer is None:
        return None
    plain = _plain(answer)
    if not plain:
        return None
    if options:
        letters = option_letters(options)
        valid = set(letters.values())
        match = _OPTION_RE.match(answer.strip())
        if plain.upper() in valid:
            return plain.upper()
        if match and match.group(1).upper() in valid:
            return match.group(1).upper()
        if plain in letters:
            return letters[plain]
    return plain


# ---------------------------------------------------------------------------------------------- sampling chains
def _prompt_inputs(processor, inputs, messages) -> dict:
    if (inputs is None) == (messages is None):
        raise ValueError("Pass exactly one of `inputs` (processor output for one prompt) or `messages`.")
    if messages is not None:
        if messages and isinstance(messages[0], (list, tuple)):
            if len(messages) != 1:
                raise ValueError(f"Test-time scaling takes one conversation, got {len(messages)}.")
            messages = messages[0]
        inputs = processor.apply_chat_template(
            [list(messages)], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
    inputs = dict(inputs)
    input_ids = inputs.get("input_ids")
    if not isinstance(input_ids, torch.Tensor):
        input_ids = torch.as_tensor(input_ids)
        inputs["input_ids"] = input_ids
    if input_ids.ndim == 1:
        inputs["input_ids"] = input_ids = input_ids[None]
        if isinstance(inputs.get("attention_mask"), torch.Tensor) and inputs["attention_mask"].ndim == 1:
            inputs["attention_mask"] = inputs["attention_mask"][None]
    if input_ids.shape[0] != 1:
        raise ValueError(
            f"Test-time scaling takes one prompt (input_ids of batch size 1), got batch size {input_ids.shape[0]}; "
            "call it once per prompt."
        )
    return inputs


def repeat_inputs(inputs: Mapping[str, Any], n: int) -> dict:
    """A batch of `n` copies of one prompt's model inputs: per-sample tensors repeat along dim 0, the flat per-step
    video tensors repeat whole (video-major, which is the order the model scatters them in), lists repeat."""
    out = {}
    for key, value in inputs.items():
        if value is None:
            continue
        if key in FLAT_VIDEO_KEYS and isinstance(value, torch.Tensor):
            out[key] = value.repeat(n, *([1] * (value.ndim - 1)))
        elif key in LIST_VIDEO_KEYS and isinstance(value, list):
            out[key] = list(value) * n
        elif isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == 1:
            out[key] = value.repeat(n, *([1] * (value.ndim - 1)))
        else:
            out[key] = value
    return out


def _generation_defaults(model, processor, generate_kwargs: dict) -> dict:
    """End chains at `<|im_end|>` as well as EOS (the chat template closes turns with it) and pad with the pad id."""
    tokenizer = getattr(processor, "tokenizer", processor)
    kwargs = dict(generate_kwargs)
    if "eos_token_id" not in kwargs and "generation_config" not in kwargs:
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        for token in ("<|im_end|>", getattr(tokenizer, "eos_token", None)):
            token_id = tokenizer.convert_tokens_to_ids(token) if token else None
            if token_id is not None and token_id != getattr(tokenizer, "unk_token_id", None) and token_id not in eos:
                eos.append(token_id)
        if eos:
            kwargs["eos_token_id"] = eos
    if "pad_token_id" not in kwargs and getattr(tokenizer, "pad_token_id", None) is not None:
        kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    return kwargs


@torch.no_grad()
def sample_chains(
    model,
    processor,
    inputs: Mapping[str, Any] | None = None,
    *,
    messages: Sequence[Mapping[str, Any]] | None = None,
    n: int = 5,
    do_sample: bool = True,
    temperature: float = 0.7,
    max_new_tokens: int = 128,
    batch_size: int | None = None,
    stop: Callable[[list[str]], bool] | None = None,
    **generate_kwargs,
) -> tuple[list[str], list[float]]:
    """Generate `n` completions for one prompt; returns their texts and mean token log-probabilities (the model's
    own confidence, from the unprocessed logits). Chains are generated `batch_size` at a time (default: all `n`);
    `stop(texts_so_far)` may end sampling early between batches."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    inputs = _prompt_inputs(processor, inputs, messages)
    device = getattr(model, "device", None)
    if device is not None:
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    kwargs = _generation_defaults(model, processor, generate_kwargs)
    if do_sample:
        kwargs.update(do_sample=True, temperature=temperature)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    pad_id = kwargs.get("pad_token_id")
    eos = kwargs.get("eos_token_id", getattr(model.generation_config, "eos_token_id", None))
    eos = set([] if eos is None else ([eos] if isinstance(eos, int) else list(eos)))
    batch_size = n if batch_size is None else max(1, int(batch_size))
    prompt_length = inputs["input_ids"].shape[1]
    texts, confidences = [], []
    while len(texts) < n:
        m = min(batch_size, n - len(texts))
        out = model.generate(
            **repeat_inputs(inputs, m),
            max_new_tokens=max_new_tokens,
            return_dict_in_generate=True,
            output_logits=True,
            **kwargs,
        )
        new_tokens = out.sequences[:, prompt_length:]
        logprobs = torch.stack(
            [torch.log_softmax(step.float(), dim=-1) for step in out.logits], dim=1
        ).gather(-1, new_tokens[:, : len(out.logits), None])[..., 0]
        for row, token_logprobs in zip(new_tokens.tolist(), logprobs):
            length = len(row)
            for i, token in enumerate(row):
                if token in eos:
                    length = i + 1
                    break
            if length == len(row) and pad_id is not None:  # padding after another row's end
                while length and row[length - 1] == pad_id and pad_id not in eos:
                    length -= 1
            confidences.append(float(token_logprobs[:length].mean()) if length else -math.inf)
        texts.extend(processor.batch_decode(new_tokens, skip_special_tokens=True))
        if stop is not None and len(texts) < n and stop(texts):
            break
    return texts, confidences


# ---------------------------------------------------------------------------------------------------- strategies
def majority_vote(
    answers: Sequence[str | None], confidences: Sequence[float] | None = None, options: Sequence[str] | None = None
) -> tuple[str | None, dict[str, int]]:
    """Most frequent normalised answer (None when no chain answered) and the vote counts, most voted first.

    Ties go to the answer whose chains have the larger summed confidence, then to the one seen first.
    """
    keys = [normalize_answer(a, options) for a in answers]
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None, {}
    confidences = list(confidences) if confidences is not None else [0.0] * len(keys)
    weight = {k: sum(c for kk, c in zip(keys, confidences) if kk == k and math.isfinite(c)) for k in counts}
    first = {k: keys.index(k) for k in counts}
    ranked = sorted(counts, key=lambda k: (-counts[k], -weight[k], first[k]))
    return ranked[0], {k: counts[k] for k in ranked}


def self_consistency(
    model,
    processor,
    inputs: Mapping[str, Any] | None = None,
    *,
    messages: Sequence[Mapping[str, Any]] | None = None,
    k: int = 5,
    temperature: float = 0.7,
    max_new_tokens: int = 128,
    options: Sequence[str] | None = None,
    answer_fallback: bool = False,
    early_stop: bool = False,
    batch_size: int | None = None,
    **generate_kwargs,
) -> dict[str, Any]:
    """Self-consistency: sample `k` reasoning chains for one prompt and majority-vote over their `<answer>`.

    Args:
        inputs / messages: processor output for ONE prompt (e.g. `processor.apply_chat_template(...,
            add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")`) or the conversation.
        k: number of chains. temperature, max_new_tokens, **generate_kwargs: passed to `generate`.
        options: multiple-choice options ("A. left", ...) so that "B" and "B. right" vote together.
        answer_fallback: count the plain text of chains without `<answer>` tags (see `extract_answer`).
        early_stop: sample `batch_size` chains at a time and stop once no other answer can catch up with the leader.
    Returns:
        {"answer": the winning answer as one of its chains wrote it (None if no chain answered), "votes": normalised
        answer -> count (most voted first), "agreement": winner's votes / chains sampled, "chains": texts,
        "answers": extracted answer per chain, "confidences": mean token log-prob per chain}.
    """
    if early_stop and batch_size is None:
        batch_size = 1

    def decided(texts: list[str]) -> bool:
        if not early_stop:
            return False
        _, votes = majority_vote([extract_answer(t, fallback=answer_fallback) for t in texts], None, options)
        counts = list(votes.values()) + [0, 0]
        return counts[0] > counts[1] + (k - len(texts))

    chains, confidences = sample_chains(
        model, processor, inputs, messages=messages, n=k, temperature=temperature, max_new_tokens=max_new_tokens,
        batch_size=batch_size, stop=decided, **generate_kwargs,
    )
    answers = [extract_answer(c, fallback=answer_fallback) for c in chains]
    winner, votes = majority_vote(answers, confidences, options)
    answer = None
    if winner is not None:
        answer = next(a for a in answers if normalize_answer(a, options) == winner)
    return {
        "answer": answer,
        "votes": votes,
        "agreement": votes[winner] / len(chains) if winner is not None else 0.0,
        "chains": chains,
        "answers": answers,
        "confidences": confidences,
    }


def best_of_n(
    model,
    processor,
    inputs: Mapping[str, Any] | None = None,
    *,
    messages: Sequence[Mapping[str, Any]] | None = None,
    n: int = 4,
    reward_fn: Callable[..., Sequence[float | None]] | None = None,
    reward_kwargs: Mapping[str, Any] | None = None,
    temperature: float = 0.7,
    max_new_tokens: int = 128,
    answer_fallback: bool = False,
    batch_size: int | None = None,
    **generate_kwargs,
) -> dict[str, Any]:
    """Best-of-N: sample `n` chains for one prompt and keep the one a verifier scores highest.

    `reward_fn` has the TRL reward signature `f(prompts, completions, **reward_kwargs) -> list[float | None]` (it gets
    `prompts=[messages] * n`, plain-string completions, and each `reward_kwargs` value repeated n times as a list, as
    TRL passes dataset columns). Without one, the verifier is the model's own confidence (mean token log-prob).
    `None` scores rank last. Returns {"answer", "best" (chain text), "index", "scores", "chains", "answers"}.
    """
    chains, confidences = sample_chains(
        model, processor, inputs, messages=messages, n=n, temperature=temperature, max_new_tokens=max_new_tokens,
        batch_size=batch_size, **generate_kwargs,
    )
    if reward_fn is None:
        scores = list(confidences)
    else:
        columns = {key: [value] * len(chains) for key, value in (reward_kwargs or {}).items()}
        raw = list(reward_fn(prompts=[messages] * len(chains), completions=list(chains), **columns))
        if len(raw) != len(chains):
            raise ValueError(f"reward_fn returned {len(raw)} scores for {len(chains)} chains")
        scores = [-math.inf if s is None or (isinstance(s, float) and math.isnan(s)) else float(s) for s in raw]
    # ties go to the more confident chain
    index = max(range(len(chains)), key=lambda i: (scores[i], confidences[i], -i))
    answers = [extract_answer(c, fallback=answer_fallback) for c in chains]
    return {
        "answer": answers[index],
        "best": chains[index],
        "index": index,
        "scores": scores,
        "chains": chains,
        "answers": answers,
    }


__all__ = [
    "best_of_n",
    "completion_text",
    "extract_answer",
    "majority_vote",
    "normalize_answer",
    "option_letters",
    "repeat_inputs",
    "sample_chains",
    "self_consistency",
]
