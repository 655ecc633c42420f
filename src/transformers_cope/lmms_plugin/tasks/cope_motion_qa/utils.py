"""cope_motion_qa task functions: the prompt, the video (rendered from the record on first use) and the score.

The prompt is the harness's (`data.format_prompt`) and the score is the harness's metric normalisation
(`training.answer_accuracy.normalize_answer`), so lmms-eval's accuracy is `evaluate_video_qa`'s on the same records.
"""

from __future__ import annotations

import os
from pathlib import Path

_TASK_DIR = Path(__file__).resolve().parent


def _video_dir() -> Path:
    return Path(os.environ.get("COPE_LMMS_VIDEO_DIR", Path.home() / ".cache" / "transformers_cope" / "lmms_eval"))


def cope_doc_to_visual(doc: dict) -> list[str]:
    """The record's video: an existing path as given (absolute, or relative to this folder), else rendered from
    the record's scene (deterministic: same record, same bytes) into COPE_LMMS_VIDEO_DIR."""
    from transformers_cope.data.render import render_video
    from transformers_cope.data.synthetic_qa import record_scene

    video = Path(doc["video"])
    for candidate in (video, _TASK_DIR / video):
        if candidate.is_file():
            return [str(candidate)]
    target = _video_dir() / f"{doc['id']}-{doc['seed']}.mp4"
    if not target.is_file():
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.mp4")
        render_video(tmp, record_scene(doc), fps=float(doc["fps"]))
        os.replace(tmp, target)
    return [str(target)]


def cope_doc_to_text(doc: dict, lmms_eval_specific_kwargs=None) -> str:
    from transformers_cope.data.synthetic_qa import format_prompt

    return format_prompt(doc)


def cope_process_results(doc: dict, results: list[str]) -> dict:
    from transformers_cope.training.answer_accuracy import normalize_answer

    prediction, reference = results[0], str(doc["answer"])
    return {"accuracy": float(normalize_answer(prediction, reference) == normalize_answer(reference))}
