"""The training examples end to end (slow: run with `pytest -m slow`)."""

import pytest

from _examples import load


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_headline_with_defaults(tmp_path):
    """The full headline run (about 2-5 minutes on 2 cores): >= 90% with Δ steps, chance with keyframes only."""
    results = load("train_motion_qa").main(
        ["--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "model"), "--quiet"]
    )
    assert results["delta_accuracy"] >= 0.9, results
    assert results["keyframes_only_accuracy"] <= 0.4, results


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_lora_finetune_example(tmp_path):
    results = load("lora_finetune").main([
        "--train-samples", "32", "--test-samples", "16", "--max-steps", "4", "--quiet",
        "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "lora"),
    ])
    assert results["reload_max_abs_diff"] < 1e-4 and results["merge_max_abs_diff"] < 1e-4  # float32 rounding
    assert (tmp_path / "lora" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "lora" / "merged" / "model.safetensors").is_file()
    assert 0.0 <= results["accuracy_after"] <= 1.0
