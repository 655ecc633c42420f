"""Held-out evaluation of a reasoning policy (SFT or GRPO) on verifiable video QA: what RL changes, measured apart.

Why separate numbers: a GRPO run can raise its reward by learning the output format alone while its answers get no
better. So this reports, per held-out set, the sampled accuracy at the training temperature (what GRPO optimises),
the greedy accuracy, the format rate, the answer rate (a parsable `<answer>`), and the accuracy among completions
that answer; each with a 95% interval over prompts (the samples of one prompt are not independent, so the interval
is over per-prompt means). The reward is the verifiable mix (`CombinedReward`) without any T-GRPO bonus, so runs
with and without T-GRPO compare on the same scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..test_time_scaling import extract_answer, sample_chains
from .rewards import REWARD_COLUMNS, CombinedReward

__all__ = ["evaluate_policy", "mean_ci95"]


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% interval (0 for fewer than 2 values)."""
    values = [float(v) for v in values]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, 1.96 * math.sqrt(var / len(values))


def _columns(record: dict, n: int) -> dict[str, list[Any]]:
    return {key: [record.get(key)] * n for key in REWARD_COLUMNS}


@torch.no_grad()
def evaluate_policy(model, processor, records: Sequence[dict], *, reward_fn: CombinedReward | None = None,
                    num_samples: int = 4, temperature: float = 1.0, max_new_tokens: int = 96, greedy: bool = True,
                    reasoning: bool = True, progress: bool = True, per_prompt: bool = False) -> dict[str, Any]:
    """Sampled (T=`temperature`, `num_samples` per prompt) and greedy metrics on held-out QA records.

    Keys (prefix `greedy_` for the greedy completion): `reward`, `format`, `accuracy`, `answered`,
    `accuracy_answered` (accuracy among completions with an `<answer>`), `temporal_iou` (grounding questions only);
    each with `<key>_ci95` (95% half-width over prompts) where it is a per-prompt mean. `per_prompt=True` adds
    `per_prompt`: `{key: [per-prompt mean, ...]}` for paired comparisons.
    """
    from tqdm.auto import tqdm

    from ..data.synthetic_qa import to_messages

    reward_fn = reward_fn or CombinedReward()
    was_training = model.training
    model.eval()
    modes = {"": dict(n=num_samples, do_sample=True, temperature=temperature)}
    if greedy:
        modes["greedy_"] = dict(n=1, do_sample=False)
    prompt_means: dict[str, list[float]] = {}
    answered_hits: dict[str, list[int]] = {}
    try:
        for record in tqdm(list(records), desc="evaluate policy", disable=not progress):
            messages = to_messages(record, reasoning=reasoning, include_answer=False)
            for prefix, options in modes.items():
                texts, _ = sample_chains(model, processor, messages=messages, max_new_tokens=max_new_tokens, **options)
                columns = _columns(record, len(texts))
                prompts = [messages] * len(texts)
                values = {"reward": reward_fn(prompts, texts, **columns)}
                values.update(reward_fn.components(prompts, texts, **columns))
                values["answered"] = [float(extract_answer(t) is not None) for t in texts]
                for name, vals in values.items():
                    vals = [v for v in vals if v is not None]
                    if vals:
                        prompt_means.setdefault(prefix + name, []).append(sum(vals) / len(vals))
                accuracy = values.get("accuracy") or [None] * len(texts)
                hits = answered_hits.setdefault(prefix, [0, 0])
                for ok, acc in zip(values["answered"], accuracy):
                    if ok and acc is not None:
                        hits[0] += int(acc == 1.0)
                        hits[1] += 1
    finally:
        model.train(was_training)
    out: dict[str, Any] = {}
    for key, means in prompt_means.items():
        out[key], out[key + "_ci95"] = mean_ci95(means)
    for prefix, (right, total) in answered_hits.items():
        out[prefix + "accuracy_answered"] = right / total if total else float("nan")
    if per_prompt:
        out["per_prompt"] = prompt_means
    return out
