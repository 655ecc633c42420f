"""Evaluation harness: the offline `evaluate` accuracy module, and greedy QA scoring for a folder path or a model
object + processor, with and without Δ steps."""

import json

import pytest
import torch

from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.data import generate_motion_qa
from transformers_cope.tiny import build_tiny_processor, tiny_model_config
from transformers_cope.training import evaluate_video_qa, init_projection_layers, load_answer_accuracy
from transformers_cope.training.answer_accuracy import normalize_answer


def test_accuracy_module_loads_offline_through_evaluate(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = load_answer_accuracy()
    assert type(metric).__name__ == "AnswerAccuracy"
    result = metric.compute(predictions=["Left.", "<answer>B</answer>", "B. right", "up", " 3 to 5 "],
                            references=["left", "B", "B", "down", "3 to 5"])
    assert result == {"accuracy": 0.8}
    assert normalize_answer("C) up", "C") == "c" and normalize_answer("Yes!") == "yes"
    assert normalize_answer("Down", "D") == "down"  # a word is not taken for the letter it starts with


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    generate_motion_qa(6, root, split="test", tasks=("direction", "moving"), duration_s=4.0, progress=False)
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config())
    init_projection_layers(model)
    processor = build_tiny_processor()
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    return root, model, processor


def test_harness_scores_path_and_object_alike(setup, capsys):
    root, model, processor = setup
    jsonl = root / "test.jsonl"
    from_object = evaluate_video_qa(model, jsonl, processor=processor, batch_size=4, max_new_tokens=3)
    assert "evaluate" in capsys.readouterr().err  # tqdm progress
    from_path = evaluate_video_qa(str(root / "model"), jsonl, batch_size=3, max_new_tokens=3, progress=False)
    assert [p["prediction"] for p in from_object.predictions] == [p["prediction"] for p in from_path.predictions]
    assert from_object.num_samples == 6 and set(from_object.per_task) == {"direction", "moving"}

    # Scoring: make the references of half the records equal to what the model says.
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    for record, pred in zip(records, from_object.predictions):
        record["video"] = str(root / record["video"])
        if record["task"] == "direction":
            record["answer"] = pred["prediction"] or "-"
        else:
            record["answer"] = "never-said"
    scored = evaluate_video_qa(model, records, processor=processor, batch_size=6, max_new_tokens=3, progress=False)
    assert scored.per_task == {"direction": 1.0, "moving": 0.0}
    assert scored.accuracy == pytest.approx(0.5)
    assert "accuracy 0.500" in scored.summary()


def test_keyframes_only_evaluation_runs_without_delta(setup):
    root, model, processor = setup
    model.train()
    result = evaluate_video_qa(model, root / "test.jsonl", processor=processor, keyframes_only=True,
                               max_new_tokens=2, progress=False)
    assert result.num_samples == 6 and 0.0 <= result.accuracy <= 1.0
    assert model.training  # generation ran in eval mode; the harness restores the mode it found
    model.eval()
