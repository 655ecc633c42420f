"""Video sessions: GOP-by-GOP prefill into the KV cache equals one-shot prompting, and the cache serves many questions.

Runs on the embedded trained model (`transformers_cope.embedded`), whose answers are real words, on synthetic motion
videos cut into several GOPs (gop_size 2 or 4 at 1 fps), so every prompt is prefilled in 3-5 chunks.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from transformers_cope.cli import _embedded_model_dir
from transformers_cope.data import generate_motion_qa
from transformers_cope.data.synthetic_qa import format_prompt
from transformers_cope.session_cope import CoPEVideoSession, iter_video_gops, split_gops

pytestmark = pytest.mark.skipif(_embedded_model_dir() is None, reason="this install has no embedded default model")

FOLLOW_UPS = ("Does the camera pan left or right?\nAnswer with one word.", "Is anything moving?\nAnswer with one word.")
LOGIT_ATOL = 1e-4  # float32; measured max |diff| 5e-6 on these videos (chunked attention and per-GOP vision tower)


@pytest.fixture(scope="module")
def embedded():
    from transformers_cope import load_default_model

    torch.manual_seed(0)
    return load_default_model()


def _one_shot(model, processor, video, question, **video_kwargs):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[prompt], videos=[video], return_tensors="pt", max_steps=None, **video_kwargs)


def _check_video(model, processor, video, questions, gop_size, forced_length=0):
    session = CoPEVideoSession(model, processor, gop_size=gop_size).ingest(video)
    assert session.frame_types.count("I") >= 3  # several chunks
    for question in questions:
        inputs = _one_shot(model, processor, video, question, gop_size=gop_size)
        assert torch.equal(torch.cat([session.input_ids, session.question_ids(question)], 1), inputs["input_ids"])
        with torch.no_grad():
            reference = model(**inputs).logits
        logits = session.question_logits(question)
        torch.testing.assert_close(logits, reference[:, -logits.shape[1]:], atol=LOGIT_ATOL, rtol=0)
        options = {"max_new_tokens": 8, "do_sample": False, "eos_token_id": session.stop_token_ids()}
        if forced_length:
            options.update(min_new_tokens=forced_length, max_new_tokens=forced_length)
        expected = model.generate(**inputs, **options)[:, inputs["input_ids"].shape[1]:]
        assert session.generate(question, **options).tolist() == expected.tolist(), question
        assert session.num_cached_tokens == session.input_ids.shape[1]  # cropped back to the video


def test_session_matches_one_shot_prompting(embedded, tmp_path):
    model, processor = embedded
    records = generate_motion_qa(2, tmp_path, tasks=("direction", "camera_pan"), duration_s=8, fps=10,
                                 progress=False, seed=11, split="test")
    for record in records:
        questions = (format_prompt(record), *FOLLOW_UPS)
        _check_video(model, processor, record["video"], questions, gop_size=2, forced_length=6)
    # the same answers as the text the one-shot pipeline decodes
    session = CoPEVideoSession(model, processor, gop_size=2).ingest(records[0]["video"])
    answer = session.ask(format_prompt(records[0]), max_new_tokens=8)
    assert answer and answer == session.ask(format_prompt(records[0]), max_new_tokens=8)


@pytest.mark.slow
def test_session_matches_one_shot_on_16_videos_3_questions(embedded, tmp_path):
    model, processor = embedded
    records = generate_motion_qa(16, tmp_path, tasks=("direction", "moving", "camera_pan"), duration_s=12, fps=10,
                                 progress=False, seed=2024, split="test")
    for record in records:
        _check_video(model, processor, record["video"], (format_prompt(record), *FOLLOW_UPS), gop_size=4)


def _concat(gops):
    first = gops[0]
    fields = {name: np.concatenate([getattr(g, name) for g in gops])
              for name in ("keyframes", "motion_vectors", "intra_masks", "residuals", "timestamps", "frame_indices")}
    import dataclasses

    return dataclasses.replace(first, frame_types="".join(g.frame_types for g in gops), frames=None, **fields)


def test_sliding_window_equals_one_shot_on_the_kept_gops(embedded, tmp_path):
    model, processor = embedded
    record = generate_motion_qa(1, tmp_path, tasks=("direction",), duration_s=10, fps=10, progress=False, seed=5,
                                split="test")[0]
    gops = list(iter_video_gops(record["video"], 2, **CoPEVideoSession(model, processor, gop_size=2).codec_kwargs()))
    assert len(gops) == 5
    session = CoPEVideoSession(model, processor, gop_size=2, max_steps=5)  # holds 2 GOPs (4 steps)
    question = format_prompt(record)
    for count, gop in enumerate(gops, 1):
        session.ingest_gop(gop)
        kept = gops[max(0, count - 2):count]
        assert session.num_steps == sum(len(g.frame_types) for g in kept)
        assert session.timestamps == [float(t) for g in kept for t in g.timestamps]  # absolute times stay
        inputs = _one_shot(model, processor, _concat(kept), question, gop_size=2)
        expected = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        got = session.generate(question, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        assert got.tolist() == expected[:, inputs["input_ids"].shape[1]:].tolist()
        # positions restart after the prefix: the cache is exactly the one-shot prompt of the window
        assert session.num_cached_tokens == inputs["input_ids"].shape[1] - session.question_ids(question).shape[1]
    assert session.num_ingested_steps == 10


def test_questions_while_another_thread_ingests(embedded, tmp_path):
    model, processor = embedded
    record = generate_motion_qa(1, tmp_path, tasks=("moving",), duration_s=12, fps=10, progress=False, seed=9,
                                split="test")[0]
    session = CoPEVideoSession(model, processor, gop_size=2)
    gops = split_gops(_concat(list(iter_video_gops(record["video"], 2, **session.codec_kwargs()))), 2)
    errors, seen = [], []

    def produce():
        try:
            for gop in gops[1:]:
                session.ingest_gop(gop)
                time.sleep(0.05)
        except BaseException as err:  # reported to the main thread
            errors.append(err)

    worker = threading.Thread(target=produce, daemon=True)
    session.ingest_gop(gops[0])
    worker.start()
    deadline = time.monotonic() + 120
    while worker.is_alive() and time.monotonic() < deadline:
        seen.append(session.num_steps)
        assert session.ask(format_prompt(record), max_new_tokens=4)
    worker.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not worker.is_alive(), "ingestion hung"
    assert not errors, errors
    assert session.num_steps == 12 and len(seen) >= 2


def test_pipeline_answers_a_list_of_questions_from_one_session(embedded, tmp_path):
    from transformers import pipeline

    from transformers_cope.pipeline_cope import TASK

    model, processor = embedded
    record = generate_motion_qa(1, tmp_path, tasks=("direction",), duration_s=8, fps=10, progress=False, seed=3,
                                split="test")[0]
    vqa = pipeline(TASK, model=model, processor=processor, device="cpu")
    questions = [format_prompt(record), *FOLLOW_UPS]
    many = vqa(record["video"], question=questions, max_new_tokens=8, gop_size=2)
    assert many == [vqa(record["video"], question=q, max_new_tokens=8, gop_size=2) for q in questions]
    assert vqa({"video": record["video"]}, question=questions[:1], reasoning=True, max_new_tokens=4) == [
        vqa(record["video"], question=questions[0], reasoning=True, max_new_tokens=4)]
    with pytest.raises(ValueError, match="one video"):
        vqa([record["video"], record["video"]], question=questions)
    with pytest.raises(ValueError, match="one question per call"):
        vqa(record["video"], question=questions, self_consistency=3)


def test_session_errors_are_clear(embedded):
    model, processor = embedded
    with pytest.raises(ValueError, match="holds no video"):
        CoPEVideoSession(model, processor).ask("What moves?")
    with pytest.raises(ValueError, match="at least one GOP"):
        CoPEVideoSession(model, processor, gop_size=4, max_steps=3)
    with pytest.raises(ValueError, match="use_token_compression"):
        CoPEVideoSession(model, processor, use_token_compression=True)
    with pytest.raises(TypeError, match="video path, CodecPrimitives or an iterable"):
        CoPEVideoSession(model, processor).ingest(42)


def _write_growing_ts(path, done: threading.Event, seconds: int = 12, fps: int = 10):
    """A camera pan written as MPEG-TS (H.264 with B-frames), flushed every second with a pause: a live recording."""
    import av

    background = np.random.default_rng(0).integers(0, 255, (64, 64 + 2 * seconds * fps, 3), dtype=np.uint8)
    try:
        with open(path, "wb") as fh, av.open(fh, "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            stream.options = {"preset": "veryfast", "x264-params": "keyint=20:bframes=2"}
            for t in range(seconds * fps):
                frame = np.ascontiguousarray(background[:, 2 * t:2 * t + 64])
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                if t % fps == fps - 1:
                    fh.flush()
                    time.sleep(0.15)
            out.mux(stream.encode(None))
    finally:
        done.set()


def test_live_file_written_by_another_thread_while_questions_are_asked(embedded, tmp_path):
    model, processor = embedded
    path = tmp_path / "live.ts"
    written, ingested = threading.Event(), threading.Event()
    session = CoPEVideoSession(model, processor, gop_size=2)
    errors, received = [], []

    def ingest():
        try:
            follow = iter_video_gops(path, 2, live=True, finished=written, **session.codec_kwargs())
            session.ingest(received.append(gop) or gop for gop in follow)  # codec.iter_live_primitives
        except BaseException as err:  # reported to the main thread
            errors.append(err)
        finally:
            ingested.set()

    writer = threading.Thread(target=_write_growing_ts, args=(path, written), daemon=True)
    reader = threading.Thread(target=ingest, daemon=True)
    writer.start()
    reader.start()
    question = "Does the camera pan left or right?\nAnswer with one word."
    answers, deadline = [], time.monotonic() + 180
    while not ingested.is_set() and time.monotonic() < deadline:
        if session.num_steps:
            answers.append((session.num_steps, session.ask(question, max_new_tokens=4)))
        time.sleep(0.05)
    reader.join(timeout=max(1.0, deadline - time.monotonic()))
    assert ingested.is_set() and not reader.is_alive(), "live ingestion hung"
    assert not errors, errors
    assert answers and all(answer for _, answer in answers)
    assert len({steps for steps, _ in answers}) >= 2  # questions were answered while the video grew
    # once the recording is complete the session holds all of it and answers as a one-shot prompt of what it read
    assert session.num_steps == 12 and len(received) == 6
    inputs = _one_shot(model, processor, _concat(received), question, gop_size=2)
    expected = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    got = session.generate(question, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert got.tolist() == expected[:, inputs["input_ids"].shape[1]:].tolist()
