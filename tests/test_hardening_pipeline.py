"""Per-item errors in batched pipeline calls (issue 16, D11), special tokens in user text (D10) and numeric knobs
validated in the video processor, the pipeline and the CLI (D8)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import transformers_cope  # noqa: F401
from _video_factory import render_video, textured_scene
from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.errors import CorruptVideoError, NotAVideoError
from transformers_cope.pipeline_cope import TASK, register_pipeline
from transformers_cope.tiny import build_tiny_processor, tiny_model_config


@pytest.fixture(scope="module")
def pipe():
    from transformers import pipeline

    register_pipeline()
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval()
    return pipeline(TASK, model=model, processor=build_tiny_processor(), device="cpu")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("batch")
    good = [str(render_video(folder / f"v{i}.mp4", textured_scene(height=64, width=64, num_frames=12,
                                                                  pan=(1.0 + i, 0.0), seed=i), fps=6))
            for i in range(3)]
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(Path(good[0]).read_bytes()[:2000])  # index at the end: cannot be opened
    text = folder / "notes.mp4"
    text.write_text("not a video at all\n")
    return [good[0], str(corrupt), good[1], str(text), good[2]]


# ------------------------------------------------------------------------------------------- D11 per-item errors
QUESTION = "Which way does it move?"


@pytest.fixture(scope="module")
def expected(pipe, videos):
    return [pipe(videos[i], question=QUESTION, max_new_tokens=3)[0] for i in (0, 2, 4)]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_errors_return_keeps_the_good_answers_in_place(pipe, videos, expected, batch_size):
    results = pipe(videos, question=QUESTION, max_new_tokens=3, batch_size=batch_size, errors="return")
    assert len(results) == 5
    assert [results[i][0] for i in (0, 2, 4)] == expected
    assert results[1][0]["type"] == "CorruptVideoError" and "corrupt.mp4" in results[1][0]["error"]
    assert results[3][0]["type"] == "NotAVideoError" and "notes.mp4" in results[3][0]["error"]
    assert set(results[1][0]) == {"error", "type"}


def test_default_still_raises_naming_the_file(pipe, videos):
    with pytest.raises(CorruptVideoError, match="corrupt.mp4"):
        pipe(videos, question="q", max_new_tokens=2, batch_size=2)
    with pytest.raises(NotAVideoError, match="notes.mp4"):
        pipe(videos[3], question="q", max_new_tokens=2)
    with pytest.raises(ValueError, match='errors must be "raise" or "return"'):
        pipe(videos[0], question="q", errors="ignore")


def test_all_failing_batch_returns_only_errors(pipe, videos):
    results = pipe([videos[1], videos[3]], question="q", max_new_tokens=2, batch_size=2, errors="return")
    assert [r[0]["type"] for r in results] == ["CorruptVideoError", "NotAVideoError"]


# ------------------------------------------------------------------------------------------- D10 special tokens
@pytest.mark.parametrize("token", ["<|delta_pad|>", "<|delta_end|>", "<|frame_newline|>"])
def test_user_text_with_expansion_tokens_is_rejected(pipe, videos, token):
    processor = pipe.processor
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": f"what {token} is it?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    with pytest.raises(ValueError, match=f"contains {__import__('re').escape(token)}, a token only the processor"):
        processor(text=[prompt], videos=[videos[0]], return_tensors="pt")
    with pytest.raises(ValueError, match="only the processor inserts"):
        pipe(videos[0], question=f"is {token} here?", max_new_tokens=2)


def test_an_extra_video_placeholder_is_rejected(pipe, videos):
    processor = pipe.processor
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "and <|video_pad|>?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    with pytest.raises(ValueError, match="2 <\\|video_pad\\|> placeholders but 1 videos"):
        processor(text=[prompt], videos=[videos[0]], return_tensors="pt")


# ------------------------------------------------------------------------------------------- D8 numeric knobs
@pytest.mark.parametrize("kwargs", [
    {"residual_std": 0}, {"mv_normalizer": 0}, {"mv_clip": float("inf")}, {"fps": float("nan")},
    {"codec_fps": 1e300}, {"gop_size": float("inf")}, {"max_steps": 0}, {"residual_scale": 2.0},
    {"compression_threshold": float("nan")}, {"codec_size": 0},
])
def test_video_processor_knobs(pipe, videos, kwargs):
    with pytest.raises(ValueError) as err:
        pipe.processor.video_processor(videos=[videos[0]], return_tensors="pt", **kwargs)
    assert type(err.value) is ValueError and "\n" not in str(err.value)
    assert next(iter(kwargs)) in str(err.value)


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": 0}, {"temperature": float("nan")}, {"top_p": 1.5}, {"self_consistency": float("inf")},
    {"best_of_n": 0}, {"num_return_sequences": 2.5}, {"fps": float("nan")},
])
def test_pipeline_knobs(pipe, videos, kwargs):
    with pytest.raises(ValueError) as err:
        pipe(videos[0], question="q", **kwargs)
    assert "\n" not in str(err.value).split("\n\n")[0]
    assert next(iter(kwargs)) in str(err.value)


@pytest.mark.parametrize("argv", [
    ["ask", "x.mp4", "q", "--fps", "nan"], ["ask", "x.mp4", "q", "--max-steps", "0"],
    ["ask", "x.mp4", "q", "--temperature", "inf"], ["ask", "x.mp4", "q", "--self-consistency", "-3"],
    ["ask", "x.mp4", "q", "--max-new-tokens", "1e9"], ["chat", "x.mp4", "--window", "0"],
    ["inspect", "x.mp4", "--fps", "1e300"], ["inspect", "x.mp4", "--gop-size", "nan"],
    ["inspect", "x.mp4", "--size", "0"], ["demo", "--num", "0"], ["demo", "--duration", "-1"],
])
def test_cli_bad_arguments_exit_2_with_one_line(argv, capsys):
    from transformers_cope.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cope-videolm") and "error: argument" in lines[0], lines
