"""Smoke test of benchmarks/bench_file_to_answer.py --quick: it runs end to end from this checkout and prints every
table (no timing assertions: shared machines are noisy), and the CoPE methods agree on the first token."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_file_to_answer.py"


def test_bench_file_to_answer_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for heading in ("## File -> first token", "## Ratios against the dense pipeline", "## Follow-up question",
                    "## A session holding every step", "KV cache at paper size"):
        assert heading in out, heading
    row = next(line for line in out.splitlines() if line.startswith("| pan_10s"))
    assert row.rstrip(" |").endswith("yes")  # sequential and streaming produced the same first token
    assert "session follow-up latency" in out
    assert not list(Path(BENCH).parent.glob("*.mp4"))  # clips go to the workdir, never into the repository
