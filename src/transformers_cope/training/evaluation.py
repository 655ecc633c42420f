"""Evaluation harness: accuracy of a CoPE-VideoLM on video multiple-choice / short-answer QA.

Input: a JSONL (or list of dicts) of `{"video", "question", "options", "answer"}` records (the synthetic motion QA
format; `task` and `answer_type` are used when present). Each record is asked with the same prompt the model was
trained with (`data.format_prompt`), answered by greedy `generate`, and scored with `evaluate` through the shipped
metric module `answer_accuracy.py` (exact match after normalisation; `evaluate.load("accuracy")` needs the Hub).
Works for any registered model: a folder path (loaded with the Auto classes) or a model object plus processor.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.synthetic_qa import format_prompt, load_motion_qa
from .collator import CoPEDataCollator, PrimitivesCache

ANSWER_ACCURACY_PATH = str(Path(__file__).with_name("answer_accuracy.py"))

__all__ = [
    "ANSWER_ACCURACY_PATH",
    "EvalResult",
    "evaluate_video_qa",
    "greedy_answers",
    "load_answer_accuracy",
    "load_model_and_processor",
    "prompt_messages",
]


@dataclasses.dataclass
class EvalResult:
    """accuracy over all records, per task (records without `task` count as "all"), and every prediction."""

    accuracy: float
    num_samples: int
    per_task: dict[str, float]
    predictions: list[dict]

    def summary(self) -> str:
        tasks = ", ".join(f"{task} {acc:.3f}" for task, acc in sorted(self.per_task.items()))
        return f"accuracy {self.accuracy:.3f} on {self.num_samples} samples ({tasks})"

    def to_json(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=1), encoding="utf-8")


def load_answer_accuracy():
    """The `evaluate` metric module shipped with the package (works offline)."""
    import evaluate

    return evaluate.load(ANSWER_ACCURACY_PATH)


def load_model_and_processor(model_or_path, processor=None, *, dtype=None, device=None):
    """(model, processor) from a folder path / Hub id or a model object (then `processor` is needed)."""
    if isinstance(model_or_path, (str, os.PathLike)):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        import transformers_cope  # noqa: F401  (registers the Auto classes)

        model = AutoModelForImageTextToText.from_pretrained(model_or_path, dtype=dtype)
        processor = processor or AutoProcessor.from_pretrained(model_or_path)
    else:
        model = model_or_path
        if processor is None:
            raise ValueError("pass `processor=` together with a model object")
    if device is not None:
        model = model.to(device)
    return model, processor


def prompt_messages(record: dict) -> list[dict]:
    """The generation prompt of a QA record: its video and `format_prompt(record)`."""
    return [{"role": "user", "content": [{"type": "video", "path": record["video"]},
                                         {"type": "text", "text": format_prompt(record)}]}]


def _stop_ids(processor) -> list[int]:
    tokenizer = processor.tokenizer
    ids = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id]
    return [i for i in dict.fromkeys(ids) if i is not None and i != tokenizer.unk_token_id]


@torch.no_grad()
def greedy_answers(model, processor, conversations: Sequence[list], *, collator: CoPEDataCollator | None = None,
                   max_new_tokens: int = 8) -> list[str]:
    """Greedy answers (decoded text after the prompt) for one batch of generation prompts (chat messages).

    The one decoding path of the harness; adapters (e.g. the lmms-eval model) call it so that their answers are the
    harness's answers for the same prompts.
    """
    collator = collator or CoPEDataCollator(processor, padding_side="left")
    tokenizer = processor.tokenizer
    device = next(model.parameters()).device
    batch = collator.pad([collator.encode(messages, add_generation_prompt=True) for messages in conversations])
    batch.pop("labels", None)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=_stop_ids(processor),
                         pad_token_id=tokenizer.pad_token_id)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


@torch.no_grad()
def evaluate_video_qa(
    model_or_path,
    records: str | os.PathLike | Sequence[dict],
    *,
    processor=None,
    keyframes_only: bool = False,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    cache: PrimitivesCache | None = None,
    progress: bool = True,
    metric=None,
) -> EvalResult:
    """Greedy-decode an answer for every record and score it with the `answer_accuracy` metric.

    keyframes_only: strip the Δ steps of every video (the ablation: what the keyframes alone can answer).
    cache: share decoded codec primitives with training (same processor settings) to skip re-decoding.
    """
    model, processor = load_model_and_processor(model_or_path, processor)
    if isinstance(records, (str, os.PathLike)):
        records = load_motion_qa(records)
    records = list(records)
    collator = CoPEDataCollator(processor, keyframes_only=keyframes_only, padding_side="left", cache=cache)
    metric = metric or load_answer_accuracy()
    was_training = model.training
    model.eval()
    predictions = []
    try:
        bar = tqdm(total=len(records), desc="evaluate" + (" (keyframes only)" if keyframes_only else ""),
                   disable=not progress)
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            texts = greedy_answers(model, processor, [prompt_messages(r) for r in chunk], collator=collator,
                                   max_new_tokens=max_new_tokens)
            for record, text in zip(chunk, texts):
                predictions.append({
                    "id": record.get("id"), "task": record.get("task", "all"), "prediction": text.strip(),
                    "answer": str(record["answer"]),
                })
            bar.update(len(chunk))
        bar.close()
    finally:
        model.train(was_training)

    def score(rows: list[dict]) -> float:
        if not rows:
            return 0.0
        return float(metric.compute(predictions=[r["prediction"] for r in rows],
                                    references=[r["answer"] for r in rows])["accuracy"])

    by_task: dict[str, list[dict]] = defaultdict(list)
    for row in predictions:
        by_task[row["task"]].append(row)
    return EvalResult(
        accuracy=score(predictions),
        num_samples=len(predictions),
        per_task={task: score(rows) for task, rows in by_task.items()},
        predictions=predictions,
    )
