"""Fuzz the video processor with damaged videos: every case must end in a valid result or a typed VideoDecodeError.

Why: a training or serving pipeline reads thousands of user files; one segfault, hang or stray exception from
FFmpeg/numpy in a damaged file kills a whole job. This is the large run of the harness in tests/fuzzing.py (the test
suite runs a small one): the real clips (cut to their first 1.5 s) and synthetic H.264/MPEG-4 videos, mutated by
bit flips, truncation, chunk deletion/duplication/zeroing and header damage, each case processed by the tiny
processor (64 px codec frames, at most 6 steps) in a persistent worker subprocess with a per-case timeout.

Outcomes: valid (shapes consistent with frame_types, finite, non-empty), typed error (VideoDecodeError subclass),
crash (the worker died by a signal, or raised anything else), hang (per-case timeout), invalid (a result that
fails the checks). Failing inputs are kept in --keep for replay (case i depends only on --seed and i).

Hostile inputs (issue 16): mid-stream parameter-set (resolution) switch seeds, one of them above the default
max_pixels, are fuzzed like the others; every --hostile-every-th case hands the worker a hostile path instead
(protocol-like folders such as `http:/127.0.0.1:PORT/x.mp4`, `concat:`/`subfile,` paths, ffconcat lists and
playlists naming a loopback HTTP server that counts requests, FIFOs, /dev/zero, plain URLs). The worker runs under a
memory limit (--memory-limit-mb) and reports each case's peak RSS (VmHWM reset per case).

Run: python benchmarks/fuzz_videos.py [--cases 2000] [--seed 20240611] [--timeout 60] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import MEDIA_DIR, load_average  # noqa: E402
from _hostile_videos import write_switch_seeds  # noqa: E402
from fuzzing import DEFAULT_PROCESSOR, make_seed_videos, run_fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--hostile-every", type=int, default=5, help="every n-th case is a hostile path (0: none)")
    parser.add_argument("--memory-limit-mb", type=float, default=2048, help="per-case RSS limit of the worker")
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--seconds", type=float, default=1.5, help="length the real clips are cut to")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="folder for failing inputs (default: workdir/failures)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report (with failures) as JSON")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cope-fuzz-"))
    seeds = make_seed_videos(MEDIA_DIR if MEDIA_DIR.is_dir() else None, workdir / "seeds", seconds=args.seconds)
    seeds += write_switch_seeds(workdir / "seeds")
    print(f"seed videos: {', '.join(f'{s.name} ({s.stat().st_size // 1024} KB)' for s in seeds)}")
    print(f"processor: {DEFAULT_PROCESSOR}; per-case timeout {args.timeout:.0f} s; load average {load_average()}")
    report = run_fuzz(seeds, workdir / "work", cases=args.cases, seed=args.seed, timeout=args.timeout,
                      keep_failures=args.keep or workdir / "failures", progress=True,
                      hostile_every=args.hostile_every, memory_limit_mb=args.memory_limit_mb, start_timeout=600)
    print(report.summary())
    for failure in report.failures:
        print(f"  FAILURE case {failure['case']} ({failure['seed_file']}, {' + '.join(failure['ops'])}): "
              f"{failure['status']} {failure.get('error', '')} {failure.get('message', '')}")
    if args.json:
        args.json.write_text(json.dumps(report.__dict__, indent=1, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
