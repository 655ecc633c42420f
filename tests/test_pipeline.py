"""The `video-question-answering` pipeline: inputs, outputs, batching, sampling options, errors, devices.

Mechanics run on a tiny untrained model (its answers are noise, so the tests compare the pipeline with a direct
`generate` and batched with sequential runs); the accuracy test uses the embedded trained model when it is there.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig, pipeline

import transformers_cope  # noqa: F401  (registers the Auto classes)
from transformers_cope import CoPEVideoLMForConditionalGeneration, VideoDecodeError
from transformers_cope.cli import _embedded_model_dir, _same_answer
from transformers_cope.data import generate_motion_qa
from transformers_cope.data.synthetic_qa import format_prompt
from transformers_cope.pipeline_cope import (
    TASK,
    THINK_INSTRUCTION,
    VideoQuestionAnsweringPipeline,
    parse_answer,
    register_pipeline,
)
from transformers_cope.tiny import build_tiny_processor, tiny_model_config


@pytest.fixture(scope="module")
def tiny():
    register_pipeline()
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval()
    return model, build_tiny_processor()


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("qa")
    return generate_motion_qa(3, out, tasks=("direction", "camera_pan"), duration_s=4, fps=10,
                              question_format="open", progress=False, seed=7)


@pytest.fixture(scope="module")
def vqa(tiny):
    model, processor = tiny
    return pipeline(TASK, model=model, processor=processor, device="cpu")


def _direct_answer(model, processor, video, question, max_new_tokens):
    messages = [{"role": "user", "content": [{"type": "video", "path": video}, {"type": "text", "text": question}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")
    stop = [processor.tokenizer.eos_token_id, processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop)
    return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()


def test_parse_answer_variants():
    assert parse_answer("left") == {"answer": "left"}
    assert parse_answer("  <answer>B</answer> ") == {"answer": "B"}
    assert parse_answer("<think>moves 12 px left</think><answer>left</answer>") == {
        "answer": "left", "reasoning": "moves 12 px left"}
    assert parse_answer("<think>moves right</think> right") == {"answer": "right", "reasoning": "moves right"}
    assert parse_answer("<think>cut off mid") == {"answer": "", "reasoning": "cut off mid"}
    assert parse_answer("<think>a</think><answer>cut") == {"answer": "cut", "reasoning": "a"}


def test_registered_task_builds_our_pipeline(vqa):
    assert isinstance(vqa, VideoQuestionAnsweringPipeline)
    assert vqa.task == TASK and vqa.device.type == "cpu"


def test_single_video_matches_direct_generate(tiny, vqa, records):
    model, processor = tiny
    record = records[0]
    question = format_prompt(record)
    result = vqa(record["video"], question=question, max_new_tokens=6)
    assert isinstance(result, list) and len(result) == 1 and set(result[0]) == {"answer"}
    assert result[0]["answer"] == _direct_answer(model, processor, record["video"], question, 6)


def test_list_input_batched_equals_sequential(vqa, records):
    inputs = [{"video": r["video"], "question": format_prompt(r)} for r in records]
    sequential = vqa(inputs, max_new_tokens=5, batch_size=1)
    batched = vqa(inputs, max_new_tokens=5, batch_size=2)  # prompts of different lengths: left padding
    assert len(batched) == len(records) and all(len(item) == 1 for item in batched)
    assert batched == sequential
    # a generator streams: results come lazily, in order
    streamed = vqa((item for item in inputs), max_new_tokens=5, batch_size=2)
    assert list(streamed) == sequential
    # a shared question for a list of paths
    shared = vqa([r["video"] for r in records[:2]], question="Does the camera pan left or right?", max_new_tokens=3,
                 batch_size=2)
    assert len(shared) == 2 and all("answer" in item[0] for item in shared)


def test_reasoning_and_video_kwargs_reach_the_prompt(vqa, records):
    video = records[0]["video"]
    default = vqa.preprocess(video, question="Which way?")
    thinking = vqa.preprocess(video, question="Which way?", reasoning=True)
    text = vqa.processor.batch_decode(thinking["input_ids"], skip_special_tokens=True)[0]
    assert THINK_INSTRUCTION in text
    assert default["video_frame_types"] == ["IPPP"]  # 4 s at 1 fps, one keyframe per 8-step GOP
    small_gop = vqa.preprocess(video, question="Which way?", video_kwargs={"gop_size": 2})
    assert small_gop["video_frame_types"] == ["IPIP"] and small_gop["pixel_values_videos"].shape[0] == 2
    # call options reach the processor through _sanitize_parameters as well
    preprocess_params, _, _ = vqa._sanitize_parameters(question="q", gop_size=2, keyframes_per_gop=2)
    assert preprocess_params["video_kwargs"] == {"gop_size": 2, "keyframes_per_gop": 2}
    dense = vqa.preprocess(video, **preprocess_params)
    assert dense["video_frame_types"] == ["IIII"] and "delta_motion_vectors" in dense


def test_generation_stops_at_im_end_unless_told_otherwise(tiny, vqa):
    model, processor = tiny
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    options = vqa._generation_options({}, sample=False)
    assert im_end in options["eos_token_id"] and processor.tokenizer.eos_token_id in options["eos_token_id"]
    assert options["pad_token_id"] == processor.tokenizer.pad_token_id and options["max_new_tokens"] == 64
    assert vqa._generation_options({"eos_token_id": 5}, sample=False)["eos_token_id"] == 5
    fixed = pipeline(TASK, model=model, processor=processor, device="cpu", eos_token_id=7, max_new_tokens=3)
    from_init = fixed._generation_options({}, sample=False)  # init-time options hold (5.17 and >= 5.18 alike)
    assert from_init["eos_token_id"] == 7 and from_init["max_new_tokens"] == 3
    assert fixed._generation_options({"max_new_tokens": 5}, sample=False)["max_new_tokens"] == 5
    config = GenerationConfig(max_new_tokens=2)  # a call's generation_config replaces the init-time options
    replaced = fixed._generation_options({"generation_config": config}, sample=False)
    assert replaced.get("eos_token_id", config.eos_token_id) != 7
    assert replaced.get("max_new_tokens", replaced["generation_config"].max_new_tokens) == 2
    sampled = vqa._generation_options({}, sample=True)
    assert sampled["do_sample"] is True and sampled["temperature"] == 1.0


def test_self_consistency_votes_over_k_samples(vqa, records):
    torch.manual_seed(0)
    result = vqa(records[0]["video"], question=format_prompt(records[0]), self_consistency=4, max_new_tokens=4)
    assert len(result) == 1
    voted = result[0]
    assert set(voted) <= {"answer", "reasoning", "votes", "agreement"}
    assert sum(voted["votes"].values()) <= 4 and 0 <= voted["agreement"] <= 1
    if voted["votes"]:
        assert max(voted["votes"].values()) / 4 == voted["agreement"]
    # a list of videos with test-time scaling: one vote per video
    both = vqa([r["video"] for r in records[:2]], question="Which direction?", self_consistency=3,
               max_new_tokens=3, batch_size=2)
    assert len(both) == 2 and all("votes" in item[0] for item in both)


def test_best_of_n_keeps_the_chain_the_verifier_prefers(vqa, records):
    seen = []

    def longest(prompts, completions, **kwargs):  # a TRL-style reward: here, longer is better
        seen.append(list(completions))
        return [float(len(c)) for c in completions]

    torch.manual_seed(0)
    result = vqa(records[1]["video"], question=format_prompt(records[1]), best_of_n=3, reward_fn=longest,
                 max_new_tokens=5)[0]
    assert len(seen) == 1 and len(seen[0]) == 3
    assert result["score"] == max(len(c) for c in seen[0])
    with pytest.raises(ValueError, match="not both"):
        vqa(records[1]["video"], question="q", best_of_n=2, self_consistency=2)


def test_num_return_sequences_gives_several_answers(vqa, records):
    torch.manual_seed(0)
    result = vqa(records[1]["video"], question=format_prompt(records[1]), num_return_sequences=3, do_sample=True,
                 max_new_tokens=4)
    assert len(result) == 3 and all("answer" in r for r in result)


def test_bad_inputs_raise_clear_errors(vqa, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    with pytest.raises(VideoDecodeError, match="notes.mp4"):
        vqa(str(text), question="What moves?")
    with pytest.raises(ValueError, match="needs a question"):
        vqa(str(text))
    with pytest.raises(TypeError, match="unexpected arguments"):
        vqa(str(text), question="q", not_an_option=1)


def test_bfloat16_model_gets_matching_inputs(tiny, records):
    model, processor = tiny
    model16 = CoPEVideoLMForConditionalGeneration(model.config).eval()
    model16.load_state_dict(model.state_dict())
    model16.to(torch.bfloat16)
    pipe = pipeline(TASK, model=model16, processor=processor, device="cpu")
    result = pipe(records[0]["video"], question="Which direction?", max_new_tokens=3)
    assert isinstance(result[0]["answer"], str)


def test_saved_folder_loads_through_the_registry(tiny, records, tmp_path):
    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    pipe = pipeline(TASK, model=str(tmp_path), device="cpu")
    assert isinstance(pipe, VideoQuestionAnsweringPipeline)
    question = format_prompt(records[2])
    expected = _direct_answer(model, processor, records[2]["video"], question, 5)
    assert pipe(records[2]["video"], question=question, max_new_tokens=5)[0]["answer"] == expected


@pytest.mark.skipif(_embedded_model_dir() is None, reason="this install has no embedded default model")
def test_embedded_model_answers_motion_questions_on_fresh_videos(tmp_path):
    # Fresh videos: a seed and split the training never used, the embedded model's data settings.
    records = generate_motion_qa(18, tmp_path, tasks=("direction", "moving", "camera_pan"), duration_s=4, fps=10,
                                 seed=90210, split="test", progress=False)
    vqa = pipeline(TASK, model=str(_embedded_model_dir()), device="cpu")
    results = vqa([{"video": r["video"], "question": format_prompt(r)} for r in records], batch_size=8,
                  max_new_tokens=8)
    correct = [_same_answer(result[0]["answer"], record) for result, record in zip(results, records)]
    # chance is 1/4 (direction) or 1/2 (moving, camera pan); the model card reports 1.000 held out
    assert sum(correct) / len(records) >= 0.85, [(r[0]["answer"], rec["answer"]) for r, rec in zip(results, records)]
