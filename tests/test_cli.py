"""`cope-videolm`: inspect (layout, token table, motion picture), ask (with a saved tiny model), errors -> exit 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import transformers_cope  # noqa: F401
from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.cli import _embedded_model_dir, main
from transformers_cope.data import generate_motion_qa
from transformers_cope.tiny import build_tiny_processor, tiny_model_config


def test_inspect_prints_layout_tokens_and_draws_the_motion(media_dir, tmp_path, capsys):
    png = tmp_path / "out.png"
    rc = main(["inspect", str(media_dir / "vid_h264.mp4"), "--png", str(png), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    # 13.5 s at 1 fps: 14 steps, GOPs of 8 with one keyframe each
    assert "layout: IPPPPPPP IPPPPP" in out
    assert "2 x 210 + 12 x 9 = 528 vs 2,940 dense (82% fewer)" in out
    assert "| 1 keyframe per GOP (this layout) | 2 | 12 | 528 | 18.0% |" in out
    assert "| dense (every step a keyframe) | 14 | 0 | 2,940 | 100.0% |" in out
    assert "| Δ step | time |" in out and f"wrote {png}" in out
    # the processor's geometry by default: the 16:9 source squashed to the square 224 px codec frames
    assert "codec frames 224x224" in out
    # Markdown tables: every row has as many cells as the header (pipes inside cells are escaped)
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Δ step"))
    table = [line for line in lines[start:] if line.startswith("|")]
    cells = {len([c for c in re.split(r"(?<!\\)\|", line)[1:-1]]) for line in table}
    assert cells == {6}, table[:3]

    image = Image.open(png)
    assert image.format == "PNG"
    image.load()
    width, height = image.size
    assert 3 * 360 <= width <= 4000 and 200 <= height <= 2000
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 20  # not a blank or uniform picture
    # the middle panel is the HSV flow field: the video's motion shows up as saturated colour
    panel = image.convert("HSV").crop((width // 3 + 10, 40, 2 * width // 3 - 10, height - 5))
    hsv = np.asarray(panel, dtype=np.float32)
    coloured = (hsv[..., 1] > 128) & (hsv[..., 2] > 64)
    assert coloured.mean() > 0.05
    hues = hsv[..., 0][coloured]
    assert np.histogram(hues, bins=8, range=(0, 256))[0].max() < coloured.sum()  # more than one direction


def test_inspect_step_choice_and_layout_options(media_dir, tmp_path, capsys):
    png = tmp_path / "step3.png"
    assert main(["inspect", str(media_dir / "vid_mpeg4_part2.mp4"), "--keyframes-per-gop", "2", "--step", "3",
                 "--png", str(png), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "layout: IPPPIPPP IPPPIP" in out and "(Δ step 3)" in out and png.stat().st_size > 1000
    # the progress bar (shown by default for long videos on a terminal) goes to stderr
    assert main(["inspect", str(media_dir / "city_cc0.mpg"), "--progress"]) == 0
    captured = capsys.readouterr()
    assert "codec primitives" in captured.err and "frame/s" in captured.err and "layout: IPPPPPPP" in captured.out
    assert main(["inspect", str(media_dir / "vid_mpeg4_part2.mp4"), "--step", "8", "--png", str(png)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step 8 is a keyframe" in err[0]


def test_bad_videos_exit_2_with_one_line(tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    for argv in (["inspect", str(text)], ["inspect", str(tmp_path / "missing.mp4")], ["inspect", str(tmp_path)],
                 ["ask", str(text), "What moves?", "--model", str(tmp_path)],
                 ["ask", str(tmp_path / "missing.mp4"), "What moves?"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"cope-videolm {argv[0]}: error: "), err
        assert str(tmp_path) in err[0]


def test_console_script_entry_point():
    """pyproject declares the launcher; an install made from this checkout carries it (an older editable install's
    metadata keeps the entry point it was installed with until `pip install -e .` runs again)."""
    import tomllib
    from importlib.metadata import EntryPoint, entry_points

    import transformers_cope_cli

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    declared = pyproject["project"]["scripts"]["cope-videolm"]
    assert declared == "transformers_cope_cli:main"
    assert EntryPoint("cope-videolm", declared, "console_scripts").load() is transformers_cope_cli.main
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "cope-videolm"]
    if script.value != declared:
        pytest.skip(f"installed metadata says {script.value!r} (stale editable install): pip install -e .")


def _launcher(*argv: str, check_imports: bool = False) -> subprocess.CompletedProcess:
    """The console script's code path (`transformers_cope_cli.main`) in a fresh interpreter; with check_imports the
    names of the heavy modules it imported are printed last."""
    code = ("import sys, transformers_cope_cli\n"
            "try:\n    rc = transformers_cope_cli.main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            + ("print('HEAVY', sorted(m for m in ('torch', 'transformers', 'av', 'numpy', 'transformers_cope') "
               "if m in sys.modules))\n" if check_imports else "")
            + "sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=300)


def test_launcher_parses_before_heavy_imports(tmp_path):
    """--help, usage errors, a missing file, a URL and an empty question are answered with no torch, Transformers,
    PyAV or package import (that is what makes `cope-videolm --help` print in well under a second)."""
    helped = _launcher("--help", check_imports=True)
    assert helped.returncode == 0 and "ask" in helped.stdout and "HEAVY []" in helped.stdout
    for argv, message in ((["ask", str(tmp_path / "missing.mp4"), "What moves?"], "no such file"),
                          (["ask", "https://example.com/clip.mp4", "What moves?"], "download the video first"),
                          (["inspect", "http://example.com/a.mp4"], "URLs are not fetched"),
                          (["ask", str(Path(__file__)), "   "], "the question is empty")):
        done = _launcher(*argv, check_imports=True)
        assert done.returncode == 2, (argv, done.stderr)
        assert "HEAVY []" in done.stdout and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert _launcher("ask").returncode == 2  # argparse usage error
    # argument checkers that import from the package still work from the launcher (they import it on demand)
    checked = _launcher("ask", str(tmp_path / "missing.mp4"), "What moves?", "--fps", "2")
    assert checked.returncode == 2 and "no such file" in checked.stderr
    bad = _launcher("ask", str(tmp_path / "missing.mp4"), "What moves?", "--fps", "nan")
    assert bad.returncode == 2 and "--fps" in bad.stderr


def test_empty_question_exits_2_in_the_package_cli(media_dir, capsys):
    assert main(["ask", str(media_dir / "vid_h264.mp4"), ""]) == 2
    assert capsys.readouterr().err.strip() == "cope-videolm ask: error: the question is empty"


def test_ask_with_a_saved_model(tmp_path, capsys):
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval()
    model.save_pretrained(tmp_path / "tiny")
    build_tiny_processor().save_pretrained(tmp_path / "tiny")
    record = generate_motion_qa(1, tmp_path / "qa", tasks=("direction",), duration_s=4, fps=10, progress=False)[0]
    argv = ["ask", record["video"], record["question"], "--model", str(tmp_path / "tiny"), "--max-new-tokens", "4",
            "--device", "cpu", "--no-progress"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["layout"] == "IPPP" and isinstance(result["answer"], str)
    assert main([*argv, "--self-consistency", "3"]) == 0
    out = capsys.readouterr().out
    assert "votes:" in out and "agreement" in out


@pytest.mark.skipif(_embedded_model_dir() is not None, reason="this install has an embedded model")
def test_ask_without_model_or_embedded_model_says_so(media_dir, capsys):
    assert main(["ask", str(media_dir / "vid_h264.mp4"), "What moves?"]) == 2
    assert "no --model given" in capsys.readouterr().err


def test_demo_prints_answers_against_ground_truth(tmp_path, capsys):
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval()
    model.save_pretrained(tmp_path / "tiny")
    build_tiny_processor().save_pretrained(tmp_path / "tiny")
    assert main(["demo", "--model", str(tmp_path / "tiny"), "--num", "2", "--seed", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("seed: 5 (same videos again: cope-videolm demo --seed 5)")
    assert out.count("ground truth:") == 2 and out.count("question:") == 2
    assert "/2 correct in" in out


@pytest.mark.skipif(_embedded_model_dir() is None, reason="this install has no embedded default model")
def test_demo_and_ask_with_the_embedded_model(tmp_path, capsys):
    assert main(["demo", "--num", "3", "--seed", "11", "--device", "cpu"]) == 0  # the README's main job
    out = capsys.readouterr().out
    correct = int(out.strip().splitlines()[-1].split("/")[0])
    assert correct >= 2, out
    record = generate_motion_qa(1, tmp_path, tasks=("direction",), duration_s=4, fps=10, seed=31337, split="test",
                                question_format="open", progress=False)[0]
    assert main(["ask", record["video"], record["question"], "--device", "cpu", "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["question"].endswith("Answer with one word.")
    assert result["answer"].strip().lower() == record["answer"]
