"""Verifiable rewards for RL on video QA (GRPO), with TRL's reward signature `f(prompts, completions, **kwargs)`.

Why verifiable: the synthetic motion QA (and multiple-choice / grounding benchmarks) have exact answers, so the
reward is a rule, not a learned model. Completions may be plain strings or TRL's conversational form; dataset
columns arrive as keyword lists (`answer`, `options`, `interval`, `answer_type`, `answer_text`, ...), one entry per
completion. A reward returns `None` where it does not apply (TRL then ignores it for that completion).

- `format_reward`: 1 for exactly `<think>...</think><answer>...</answer>`, else 0.
- `accuracy_reward`: 1 if the `<answer>` matches: option letter (or its text) for multiple choice, the word,
  the number of seconds, or the interval "t0 to t1".
- `temporal_iou_reward`: IoU of the answered interval with the true one, for grounding questions only.
- `CombinedReward`: a convex mix of these, renormalised over the rewards that apply to each completion.
- `temporal_consistency_bonus`: T-GRPO's extra reward (Video-R1) for correct answers when the ordered-step
  accuracy of a prompt's group is at least `ratio` x its accuracy with shuffled steps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..test_time_scaling import completion_text, extract_answer, normalize_answer

__all__ = [
    "DEFAULT_REWARD_WEIGHTS",
    "REWARD_COLUMNS",
    "CombinedReward",
    "accuracy_reward",
    "format_reward",
    "is_correct",
    "parse_interval",
    "temporal_consistency_bonus",
    "temporal_iou",
    "temporal_iou_reward",
]

_FORMAT_RE = re.compile(r"^\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.DOTALL)
_NUMBER = r"-?\d+(?:\.\d+)?"
_INTERVAL_RE = re.compile(rf"({_NUMBER})\s*(?:s\b|sec\w*)?\s*(?:to|-|–|,|and|until)\s*({_NUMBER})", re.IGNORECASE)
_NUMBER_RE = re.compile(rf"^\s*({_NUMBER})\s*(?:s|sec|secs|second|seconds)?\s*$", re.IGNORECASE)

# Dataset columns the rewards read (kept next to "prompt" in a GRPO dataset).
REWARD_COLUMNS = ("answer", "answer_text", "answer_type", "options", "interval", "task", "id")

# Default convex mix (weights sum to 1). For non-grounding questions temporal IoU does not apply and the mix is
# renormalised over format and accuracy (0.25 / 0.75).
DEFAULT_REWARD_WEIGHTS = {"format": 0.2, "accuracy": 0.6, "temporal_iou": 0.2}


def _column(value: Any, n: int) -> list:
    """A dataset column as TRL passes it (one entry per completion); a scalar is broadcast."""
    if value is None:
        return [None] * n
    if isinstance(value, (list, tuple)) and len(value) == n:
        return list(value)
    return [value] * n


# ---------------------------------------------------------------------------------------------------- parsing
def parse_interval(text: str | None) -> tuple[float, float] | None:
    """'2 to 5', '2-5', '2 s to 5 s', '[2, 5]' -> (2.0, 5.0) (ordered); None when there is no interval."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)) and len(text) == 2:
        a, b = float(text[0]), float(text[1])
        return (min(a, b), max(a, b))
    match = _INTERVAL_RE.search(str(text))
    if not match:
        return None
    a, b = float(match.group(1)), float(match.group(2))
    return (min(a, b), max(a, b))


def _option_text(options: Sequence[str] | None, letter: str | None) -> str | None:
    for option in options or ():
        if normalize_answer(option, options) == letter:
            return re.sub(r"^\s*\(?[A-Za-z][\.\):]\s*", "", str(option))
    return None


def _as_number(text: str | None) -> float | None:
    if text is None:
        return None
    match = _NUMBER_RE.match(str(text))
    return float(match.group(1)) if match else None


def is_correct(prediction: str | None, answer: Any, *, options: Sequence[str] | None = None,
               answer_type: str | None = None) -> bool:
    """Whether an extracted answer matches the ground truth.

    Multiple choice (`options` given): the letter, or the option's text, must be the answer's letter. Otherwise the
    normalised word must match; numbers compare numerically ('3', '3 s', '3.0'); intervals compare both ends.
    """
    if prediction is None or answer is None:
        return False
    if options:
        return normalize_answer(prediction, options) == normalize_answer(str(answer), options)
    truth = str(answer)
    if answer_type == "interval" or (answer_type is None and parse_interval(truth) is not None):
        got, want = parse_interval(prediction), parse_interval(truth)
        return got is not None and want is not None and all(math.isclose(x, y) for x, y in zip(got, want))
    want_number = _as_number(truth)
    if want_number is not None:
        got_number = _as_number(prediction)
        return got_number is not None and math.isclose(got_number, want_number)
    return normalize_answer(prediction) == normalize_answer(truth)


def temporal_iou(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float:
    """Intersection over union of two [start, end] intervals (0 if either is missing or empty)."""
    if a is None or b is None:
        return 0.0
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else float(a == b)


# ---------------------------------------------------------------------------------------------------- rewards
def format_reward(prompts=None, completions=None, **kwargs) -> list[float]:
    """1.0 for `<think>non-empty</think><answer>non-empty</answer>` and nothing else around it, else 0.0."""
    rewards = []
    for completion in completions:
        match = _FORMAT_RE.match(completion_text(completion))
        ok = match is not None and match.group("think").strip() and match.group("answer").strip()
        ok = ok and "<answer>" not in match.group("think") and "<think>" not in match.group("answer")
        rewards.append(1.0 if ok else 0.0)
    return rewards


def accuracy_reward(prompts=None, completions=None, *, answer=None, options=None, answer_type=None,
                    **kwargs) -> list[float | None]:
    """1.0 when the `<answer>` is right (see `is_correct`), 0.0 when wrong or missing; None without a ground truth.

    Reads the dataset columns `answer`, `options` (multiple choice) and `answer_type`.
    """
    n = len(completions)
    rewards = []
    for completion, truth, opts, kind in zip(completions, _column(answer, n), _column(options, n),
                                             _column(answer_type, n)):
        if truth is None:
            rewards.append(None)
            continue
        correct = is_correct(extract_answer(completion), truth, options=opts, answer_type=kind)
        rewards.append(1.0 if correct else 0.0)
    return rewards


def _true_interval(answer, answer_text, options, interval, answer_type) -> tuple[float, float] | None:
    """The ground-truth interval of a grounding question (its answer is an interval); None for other questions."""
    if answer_type not in (None, "interval", "mc"):
        return None
    text = answer_text
    if parse_interval(text) is None:
        text = _option_text(options, normalize_answer(str(answer), options)) if options else answer
    truth = parse_interval(text) if isinstance(text, str) else None
    if truth is None and answer_type == "interval" and interval is not None:
        truth = parse_interval(interval)
    return truth


def temporal_iou_reward(prompts=None, completions=None, *, answer=None, options=None, interval=None,
                        answer_type=None, answer_text=None, **kwargs) -> list[float | None]:
    """IoU between the answered interval and the true one, for grounding questions (whose answer is an interval);
    None for every other question. A multiple-choice letter is read as its option's interval."""
    n = len(completions)
    cols = [_column(v, n) for v in (answer, answer_text, options, interval, answer_type)]
    rewards = []
    for completion, truth, text, opts, span, kind in zip(completions, *cols):
        want = _true_interval(truth, text, opts, span, kind)
        if want is None:
            rewards.append(None)
            continue
        got_text = extract_answer(completion)
        if opts and got_text is not None:
            got_text = _option_text(opts, normalize_answer(got_text, opts)) or got_text
        rewards.append(temporal_iou(parse_interval(got_text), want))
    return rewards


_REWARDS = {"format": format_reward, "accuracy": accuracy_reward, "temporal_iou": temporal_iou_reward}


class CombinedReward:
    """A convex mix of the verifiable rewards, as one TRL reward function.

    `weights` maps "format" / "accuracy" / "temporal_iou" to non-negative weights that sum to 1. Per completion the
    mix is taken over the rewards that apply (not None) and renormalised, so it stays in [0, 1]: a direction question
    is scored by format and accuracy, a grounding one by all three.
    """

    def __init__(self, weights: Mapping[str, float] | None = None):
        weights = dict(DEFAULT_REWARD_WEIGHTS if weights is None else weights)
        unknown = sorted(set(weights) - set(_REWARDS))
        if unknown:
            raise ValueError(f"unknown rewards {unknown}; choose from {sorted(_REWARDS)}")
        if any(w < 0 for w in weights.values()) or not math.isclose(sum(weights.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"reward weights must be non-negative and sum to 1 (a convex mix), got {weights}")
        self.weights = {k: float(w) for k, w in weights.items() if w > 0}
        self.__name__ = "cope_reward"

    def components(self, prompts, completions, **kwargs) -> dict[str, list[float | None]]:
        return {name: _REWARDS[name](prompts, completions, **kwargs) for name in self.weights}

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float]:
        parts = self.components(prompts, completions, **kwargs)
        rewards = []
        for i in range(len(completions)):
            total = weight = 0.0
            for name, w in self.weights.items():
                value = parts[name][i]
                if value is not None:
                    total += w * value
                    weight += w
            rewards.append(total / weight if weight > 0 else 0.0)
        return rewards


def temporal_consistency_bonus(
    correct: Sequence[bool], group_ids: Sequence[Any], shuffled_accuracy: Mapping[Any, float], *,
    bonus: float = 0.3, ratio: float = 0.8,
) -> list[float]:
    """T-GRPO (Video-R1): `bonus` for each correct completion of a group whose ordered accuracy p (the mean of
    `correct` over the group) satisfies p >= ratio * p~ (p~ = accuracy of the same prompt with shuffled steps);
    0 otherwise, and 0 for groups without a shuffled accuracy."""
    groups: dict[Any, list[bool]] = {}
    for ok, gid in zip(correct, group_ids):
        groups.setdefault(gid, []).append(bool(ok))
    ordered = {gid: sum(v) / len(v) for gid, v in groups.items()}
    out = []
    for ok, gid in zip(correct, group_ids):
        shuffled = shuffled_accuracy.get(gid)
        earn = ok and shuffled is not None and ordered[gid] >= ratio * shuffled
        out.append(float(bonus) if earn else 0.0)
    return out
