"""The headline result, shortened for CI: a tiny CoPE-VideoLM trained from scratch by examples/train_motion_qa.py
answers motion-direction questions on held-out videos from its Δ steps, and the same model fed its keyframes only
cannot (a single frame carries no information about the answer in this benchmark)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_motion_qa.py"


@pytest.mark.timeout(600)
def test_delta_steps_answer_motion_keyframes_alone_do_not(tmp_path):
    spec = importlib.util.spec_from_file_location("train_motion_qa", SCRIPT)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main([
        "--train-samples", "384", "--test-samples", "64", "--epochs", "8", "--seed", "0", "--quiet",
        "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "model"), "--logging-steps", "1000",
    ])
    assert results["test_samples"] == 64
    assert results["delta_accuracy"] >= 0.8, results
    assert results["keyframes_only_accuracy"] <= 0.5, results
    assert (tmp_path / "model" / "model.safetensors").is_file()
