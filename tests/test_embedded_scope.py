"""The embedded model says what it was trained for: config.trained_questions, and a one-line pipeline warning for
any other question (its answers to those are not meaningful)."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
from transformers import pipeline

from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.data import generate_motion_qa
from transformers_cope.data.camera_motion import CAMERA_QUESTIONS, DEFAULT_CAMERA_TASKS
from transformers_cope.embedded import DEFAULT_MODEL_DIR, TRAINED_QUESTIONS
from transformers_cope.pipeline_cope import TASK, register_pipeline
from transformers_cope.pipeline_cope import logger as pipeline_logger
from transformers_cope.tiny import build_tiny_processor, tiny_model_config


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def warnings_of_pipeline():
    handler = _Lines()
    pipeline_logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        pipeline_logger.removeHandler(handler)


def test_trained_questions_cover_the_training_data(tmp_path):
    """Every question the embedded model was trained on matches a pattern; typical others do not."""
    records = generate_motion_qa(6, tmp_path, tasks=("direction", "moving", "camera_pan"), duration_s=4,
                                 progress=False)
    asked = [r["question"] for r in records] + [CAMERA_QUESTIONS[t] for t in DEFAULT_CAMERA_TASKS]
    for question in asked:
        assert any(re.fullmatch(p, question, flags=re.IGNORECASE) for p in TRAINED_QUESTIONS), question
    for other in ("What color is the car?", "Which object moves faster, the red square or the blue circle?",
                  "Describe the video.", CAMERA_QUESTIONS["camera_zoom"]):  # zoom: measured, not shipped
        assert not any(re.fullmatch(p, other, flags=re.IGNORECASE) for p in TRAINED_QUESTIONS), other


def test_shipped_config_lists_them():
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text(encoding="utf-8"))
    assert config["trained_questions"] == list(TRAINED_QUESTIONS)
    assert len(config["trained_question_examples"]) == len(TRAINED_QUESTIONS)


def test_pipeline_warns_for_an_untrained_question(tmp_path, warnings_of_pipeline):
    register_pipeline()
    torch.manual_seed(0)
    config = tiny_model_config()
    config.trained_questions = list(TRAINED_QUESTIONS)
    model = CoPEVideoLMForConditionalGeneration(config).eval()
    vqa = pipeline(TASK, model=model, processor=build_tiny_processor(), device="cpu")
    video = generate_motion_qa(1, tmp_path, tasks=("camera_pan",), duration_s=4, progress=False)[0]["video"]
    vqa(video, question="How does the camera move?\nAnswer with one word.", max_new_tokens=2)
    assert warnings_of_pipeline == []
    vqa(video, question="What color is the car?", max_new_tokens=2)
    assert len(warnings_of_pipeline) == 1
    line = warnings_of_pipeline[0]
    assert "\n" not in line and "'What color is the car?'" in line and "not meaningful" in line
