"""The embedded default model: a tiny CoPE-VideoLM trained on the synthetic motion QA, shipped inside the package.

Why: the pipeline, the CLI, examples and tests need a model that actually answers (about motion in synthetic videos)
without any download. It lives in `default_model/` next to this file (safetensors weights, configs, tokenizer and
processor files; its README.md is the model card). It was made with `transformers_cope.embedded_training` and copied
in with `export_default_model` (see the model card for the exact command). Beyond the synthetic tasks it was trained
for camera motion over real photographs, so "How does the camera move?" means something on real footage; other
questions about real videos do not, and the pipeline says so at run time (`TRAINED_QUESTIONS`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().with_name("default_model")
# What a model folder needs; code files and training pickles stay out (the package provides the classes).
_EXPORTED = ("config.json", "generation_config.json", "model.safetensors", "processor_config.json",
             "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")

# The questions the embedded model was trained for (its card lists them; the pipeline warns about any other): regular
# expressions over a question's first line, written into config.json as `trained_questions` by export_default_model.
_OBJECT = r"the (red|green|blue|yellow) (square|circle)"
TRAINED_QUESTIONS = (
    rf"which direction does {_OBJECT} move\?",
    rf"does {_OBJECT} move\?",
    r"does the camera pan left or right\?",
    r"how does the camera move\?",
)
TRAINED_QUESTION_EXAMPLES = (
    "Which direction does the red square move?", "Does the blue circle move?",
    "Does the camera pan left or right?", "How does the camera move?",
)

__all__ = ["DEFAULT_MODEL_DIR", "TRAINED_QUESTIONS", "default_model_path", "export_default_model",
           "load_default_model"]


def default_model_path() -> Path:
    """Folder of the embedded default model (loadable with `from_pretrained`)."""
    if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the embedded default model is missing from {DEFAULT_MODEL_DIR}; reinstall transformers-cope "
            "(package data default_model/*)"
        )
    return DEFAULT_MODEL_DIR


def load_default_model(**from_pretrained_kwargs):
    """(model, processor) of the embedded default model, in eval mode."""
    from .modeling_cope import CoPEVideoLMForConditionalGeneration
    from .processing_cope import CoPEVideoLMProcessor

    path = default_model_path()
    model = CoPEVideoLMForConditionalGeneration.from_pretrained(path, **from_pretrained_kwargs)
    processor = CoPEVideoLMProcessor.from_pretrained(path)
    return model.eval(), processor


def _strip_auto_map(path: Path) -> None:
    """Drop `auto_map` (remote-code pointers to .py files that are not exported) from a JSON file, nested too."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k != "auto_map"}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(strip(data), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def export_default_model(trained_dir: str | os.PathLike, target_dir: str | os.PathLike = DEFAULT_MODEL_DIR,
                         trained_questions=(TRAINED_QUESTIONS, TRAINED_QUESTION_EXAMPLES)) -> Path:
    """Copy a trained model + processor folder into `target_dir` as package data: safetensors and JSON/Jinja only.

    The remote-code `.py` copies and `auto_map` entries that `save_pretrained` adds are left out (the installed package
    registers the classes), as is Trainer's pickled `training_args.bin`. An existing README.md (the model card) stays.
    """
    trained_dir, target_dir = Path(trained_dir), Path(target_dir)
    if not (trained_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"{trained_dir} holds no model.safetensors")
    target_dir.mkdir(parents=True, exist_ok=True)
    for old in target_dir.iterdir():
        if old.name != "README.md" and old.is_file():
            old.unlink()
    for name in _EXPORTED:
        if (trained_dir / name).is_file():
            shutil.copyfile(trained_dir / name, target_dir / name)
            os.chmod(target_dir / name, 0o644)  # safetensors files are written owner-only
            if name.endswith(".json"):
                _strip_auto_map(target_dir / name)
    if trained_questions:
        config_path = target_dir / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config.update(trained_questions=list(trained_questions[0]), trained_question_examples=list(trained_questions[1]))
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target_dir
