"""The embedded default model: small, safetensors + JSON only, loads with and without the Auto classes, and answers
motion questions about freshly rendered synthetic videos it never saw."""

import json

import torch

from transformers_cope.data import generate_motion_qa
from transformers_cope.embedded import DEFAULT_MODEL_DIR, default_model_path, export_default_model, load_default_model
from transformers_cope.training import evaluate_video_qa


def test_files_are_small_and_data_only():
    path = default_model_path()
    files = {p.name: p.stat().st_size for p in path.iterdir() if p.is_file()}
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "README.md"} <= set(files)
    assert sum(files.values()) < 8 * 2**20  # a few MB in the package
    assert not [name for name in files if name.endswith((".py", ".bin", ".pt", ".pkl"))]
    assert "auto_map" not in (path / "config.json").read_text()
    card = (path / "README.md").read_text()
    for task in ("direction", "moving", "camera_pan"):
        assert task in card


def test_answers_unseen_motion_questions(tmp_path):
    model, processor = load_default_model()
    assert not model.training
    # seed 77: videos the model was not trained or evaluated on
    records = generate_motion_qa(9, tmp_path, split="test", seed=77, tasks=("direction", "moving", "camera_pan"),
                                 duration_s=4.0, progress=False)
    result = evaluate_video_qa(model, records, processor=processor, progress=False)
    assert result.accuracy >= 0.75, result.predictions


def test_auto_classes_load_it():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import transformers_cope  # noqa: F401

    model = AutoModelForImageTextToText.from_pretrained(DEFAULT_MODEL_DIR)
    processor = AutoProcessor.from_pretrained(DEFAULT_MODEL_DIR)
    assert type(model).__name__ == "CoPEVideoLMForConditionalGeneration"
    assert type(processor).__name__ == "CoPEVideoLMProcessor"
    assert processor.tokenizer.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id


def test_export_strips_code_and_auto_map(tmp_path):
    from transformers_cope import CoPEVideoLMForConditionalGeneration
    from transformers_cope.tiny import build_tiny_processor, tiny_model_config

    trained = tmp_path / "trained"
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config())
    model.save_pretrained(trained)
    build_tiny_processor().save_pretrained(trained)
    (trained / "training_args.bin").write_bytes(b"pickle")
    assert any(p.suffix == ".py" for p in trained.iterdir())  # save_pretrained copied the remote code
    target = export_default_model(trained, tmp_path / "exported")
    names = {p.name for p in target.iterdir()}
    assert "model.safetensors" in names and not any(n.endswith((".py", ".bin")) for n in names)
    assert "auto_map" not in json.dumps(json.loads((target / "processor_config.json").read_text()))
    reloaded = CoPEVideoLMForConditionalGeneration.from_pretrained(target)
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value)
