"""Remote code: a saved CoPE-VideoLM (model + processor, and the pipeline) loads and generates in a fresh interpreter
where `import transformers_cope` is impossible, with `trust_remote_code=True` only."""

from __future__ import annotations

import torch

import transformers_cope  # noqa: F401
from isolated_python import run_isolated
from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.hub import save_cope_pretrained
from transformers_cope.pipeline_cope import TASK
from transformers_cope.tiny import build_tiny_processor, tiny_model_config


def test_saved_model_and_processor_generate_without_the_package(tmp_path, media_dir):
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval()
    processor = build_tiny_processor()
    plain, shared = tmp_path / "plain", tmp_path / "with_pipeline"
    model.save_pretrained(plain)
    processor.save_pretrained(plain)
    save_cope_pretrained(model, processor, shared)

    video = str(media_dir / "vid_mpeg4_part2.mp4")
    question = "Does the camera pan left or right?"
    messages = [{"role": "user", "content": [{"type": "video", "path": video}, {"type": "text", "text": question}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")
    expected = model.generate(**inputs, max_new_tokens=6, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    expected_text = processor.batch_decode(expected[None], skip_special_tokens=True)[0].strip()

    result = run_isolated(
        f"""
        import json, torch
        from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline
        processor = AutoProcessor.from_pretrained({str(plain)!r}, trust_remote_code=True)
        model = AutoModelForImageTextToText.from_pretrained({str(plain)!r}, trust_remote_code=True).eval()
        messages = {messages!r}
        inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)[0, inputs["input_ids"].shape[1]:]
        pipe = pipeline(model={str(shared)!r}, trust_remote_code=True, device="cpu")
        print(json.dumps({{
            "model": type(model).__module__, "processor": type(processor).__module__,
            "video_processor": type(processor.video_processor).__module__,
            "frame_types": inputs["video_frame_types"], "tokens": out.tolist(),
            "task": pipe.task, "pipeline": type(pipe).__module__,
            "answer": pipe({video!r}, question={question!r}, max_new_tokens=6),
            "voted": pipe({video!r}, question={question!r}, max_new_tokens=3, self_consistency=2),
        }}))
        """,
        cwd=tmp_path,
    )
    for key in ("model", "processor", "video_processor", "pipeline"):
        assert result[key].startswith("transformers_modules."), (key, result[key])
    assert result["frame_types"] == inputs["video_frame_types"]
    assert result["tokens"] == expected.tolist()
    assert result["task"] == TASK
    assert result["answer"] == [{"answer": expected_text}]
    assert sum(result["voted"][0]["votes"].values()) <= 2 and "agreement" in result["voted"][0]
