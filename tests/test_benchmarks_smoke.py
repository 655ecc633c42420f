"""Smoke test of the benchmark scripts: they run end to end in --quick mode and print their tables.

No timing assertions (shared CI machines are noisy); only that the scripts work from this checkout and that every
expected row and section is printed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """The scripts in --quick mode, started together (they are mostly single-threaded), stdout by name. bench_ttft
    runs inside the GPU suite's dry run (gpu_suite.sh --dry-run: every step of the GPU run on the CPU at tiny sizes,
    bench_ttft with --profile --llava-ov --decode among them); its output file is returned as "gpu_suite.md"."""
    workdir = tmp_path_factory.mktemp("bench")
    suite_file = workdir / "gpu_suite.md"
    commands = {
        name: [sys.executable, str(BENCH / name), "--quick", "--workdir", str(workdir)]
        for name in ("bench_preprocess.py", "bench_transcode_quality.py")
    }
    commands["gpu_suite.sh"] = ["bash", str(BENCH / "gpu_suite.sh"), "--dry-run", "--output", str(suite_file),
                                "--workdir", str(workdir)]
    env = dict(os.environ, PYTHON=sys.executable)
    procs = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name, cmd in commands.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{name} failed:\n{stdout}\n{stderr}"
        out[name] = stdout
    out["gpu_suite.md"] = suite_file.read_text(encoding="utf-8")
    out["bench_ttft.py"] = suite_step(out["gpu_suite.md"], "TTFT at paper size")
    return out


def suite_step(suite: str, title: str) -> str:
    """The output of one step of the GPU suite's file."""
    steps = suite.split("\n# Step: ")
    return next(step for step in steps if step.startswith(title))


def table_rows(output: str, heading: str) -> list[list[str]]:
    """Cells of the Markdown table that follows `heading` (header and separator excluded)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[2:]


def test_bench_ttft_quick(outputs):
    out = outputs["bench_ttft.py"]
    assert "Preprocessing (decode, codec primitives, processor) is NOT included" in out
    rows = table_rows(out, "## TTFT and end-to-end latency")
    assert [r[0] for r in rows] == ["dense (every step a keyframe)", "4/8", "2/8", "1/8"]
    lines = out.splitlines()
    header = next(line for line in lines[[i for i, l in enumerate(lines) if l.startswith("## TTFT")][0]:]
                  if line.startswith("|"))
    for column in ("visual tokens", "vision tower", "Δ-encoder", "LLM prefill", "prefill = TTFT", "TTFT ratio",
                   "e2e ratio"):
        assert column in header
    tokens = [int(r[2].replace(",", "")) for r in rows]
    assert tokens[0] > tokens[1] > tokens[2] > tokens[3] > 0
    assert rows[0][8] == "1.000"  # the dense row is its own reference
    accounting = [r[0] for r in table_rows(out, "## Token accounting")]
    assert "64 s, 1 KF/GOP" in accounting and "8 s, 1 KF/GOP" in accounting
    assert "The paper's 6.9%" in out and "## Checks" in out


def test_bench_ttft_paper_size_refuses_without_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the paper size would really run")
    proc = subprocess.run([sys.executable, str(BENCH / "bench_ttft.py"), "--size", "paper"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "needs a CUDA GPU" in proc.stderr


def test_bench_preprocess_quick(outputs):
    out = outputs["bench_preprocess.py"]
    rows = table_rows(out, "## Wall time per video")
    assert len(rows) == 1 and rows[0][0].startswith("preprocess_quick")
    assert len(rows[0]) == 8  # video, source, frames + five methods
    speed = table_rows(out, "## Speed ratios")
    assert len(speed) == 1 and all(cell.endswith("x") for cell in speed[0][1:])


def test_bench_transcode_quality_quick(outputs):
    rows = table_rows(outputs["bench_transcode_quality.py"], "transcode (MPEG-4 Part 2")
    assert [r[1] for r in rows] == ["30", "5"]
    for row in rows:
        assert 0.0 < float(row[2]) < 1.0  # motion compensation leaves less than the plain frame difference
        assert 0.0 <= float(row[3]) <= 1.0
    assert rows[0][4] == "-" and "/" in rows[1][4]


def test_bench_ttft_quick_reports_profile_llava_decode_and_attention(outputs):
    """The paper-size GPU run's extra sections, on their CPU code path."""
    out = outputs["bench_ttft.py"]
    profile = table_rows(out, "## Profile of one prefill forward")
    assert [r[0] for r in profile] == ["dense", "1/8"] and all(int(r[1].replace(",", "")) > 0 for r in profile)
    llava = table_rows(out, "## Side by side: Transformers' LLaVA-OneVision")
    assert llava[0][0].startswith("Transformers LlavaOnevisionForConditionalGeneration (8 frames)")
    assert llava[0][1] == "129" and llava[0][3] == "1.000"  # 8 frames x 4 x 4 pooled tokens + 1 newline
    decode = table_rows(out, "## Decode speed after the prefill")
    assert [r[0] for r in decode] == ["eager", "static", "compiled"]
    assert [r[3] for r in decode] == ["yes", "yes", "yes"]  # the same tokens as eager
    assert "attention: requested auto -> auto: not on a GPU; configured: text sdpa, vision sdpa" in out


def test_gpu_suite_dry_run_runs_every_step(outputs):
    suite = outputs["gpu_suite.md"]
    assert suite.startswith("# CoPE-VideoLM GPU suite (DRY RUN on CPU")
    assert suite.count("\n# Step: ") == 3 and suite.count("exit status 0 after") == 3
    assert "0 failed step(s)" in suite
    compiled = suite_step(suite, "TTFT with the vision tower and the Δ-encoder compiled")
    assert "compile-encoders" in compiled.splitlines()[2]
    assert [r[0] for r in table_rows(compiled, "## TTFT and end-to-end latency")] == ["dense (every step a keyframe)",
                                                                                       "1/8"]
    embedded = suite_step(suite, "Embedded default model")
    assert "fp32 check (max abs diff <= 0.001 and the same tokens): PASS" in embedded
