"""`cope-videolm chat VIDEO`: the video is ingested once (progress bar on stderr), then questions come from stdin."""

from __future__ import annotations

import io
import json
import time

import pytest

from transformers_cope.cli import EMBEDDED_INSTRUCTION, _embedded_model_dir, main
from transformers_cope.data import generate_motion_qa

pytestmark = pytest.mark.skipif(_embedded_model_dir() is None, reason="this install has no embedded default model")

QUESTIONS = ["Which direction does the red square move?", "Does the camera pan left or right?"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    out = tmp_path_factory.mktemp("chat")
    return generate_motion_qa(1, out, tasks=("direction",), duration_s=8, fps=10, progress=False, seed=4,
                              split="test")[0]["video"]


def _expected(video):
    from transformers import pipeline

    from transformers_cope.pipeline_cope import TASK

    vqa = pipeline(TASK, model=str(_embedded_model_dir()), device="cpu")
    return [vqa(video, question=f"{q}\n{EMBEDDED_INSTRUCTION}", max_steps=None)[0]["answer"] for q in QUESTIONS]


def test_chat_in_a_pipe_prints_only_the_answers(video, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(QUESTIONS) + "\n"))
    assert main(["chat", video, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == _expected(video)
    assert "question>" not in captured.out + captured.err


def test_chat_in_a_terminal_prompts_and_shows_the_ingestion_bar(video, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", _Terminal(QUESTIONS[0] + "\nquit\n" + QUESTIONS[1] + "\n"))
    assert main(["chat", video, "--progress", "--json", "--live"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == 1 and lines[0]["answer"] and lines[0]["steps"] >= 1  # stopped at "quit"
    assert captured.err.count("question> ") == 2
    assert "ingesting" in captured.err and "GOP" in captured.err


def test_chat_on_a_bad_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert main(["chat", str(bad)]) == 2
    assert "bad.mp4" in capsys.readouterr().err


def test_chat_follows_a_file_that_is_still_being_written(tmp_path, monkeypatch, capsys):
    import threading

    from test_session import _write_growing_ts

    path, written = tmp_path / "live.ts", threading.Event()
    writer = threading.Thread(target=_write_growing_ts, args=(path, written), kwargs={"seconds": 6}, daemon=True)
    writer.start()
    deadline = time.monotonic() + 60
    while not (path.exists() and path.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)  # the recording has started (--idle-timeout counts from the first look)
    monkeypatch.setattr("sys.stdin", io.StringIO(QUESTIONS[1] + "\n"))
    assert main(["chat", str(path), "--follow", "--idle-timeout", "8", "--json", "--no-progress"]) == 0
    writer.join(timeout=60)
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["answer"] and 1 <= line["steps"] <= 6
