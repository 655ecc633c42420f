"""The GPU suite: every GPU measurement of this repository in one prepared run that fits an 8-minute slot, writing all
tables to one Markdown file. Start it through gpu_suite.sh (which provides PyAV from a carried wheel if missing).

Why: GPUs reach this project only now and then, for minutes. Everything that should be measured on one is prepared
here, runs unattended, keeps going when one step fails (each step is a subprocess with its own time limit, its
output and exit status recorded), and `--dry-run` runs the same steps on the CPU at tiny sizes so CI keeps the script
working between GPU sessions (tests/test_benchmarks_smoke.py).

Steps (GPU):
  1. environment: GPU, driver, versions, attention packages;
  2. bench_ttft --size paper: TTFT of dense / 4 / 2 / 1 KF per GOP with per-component times (vision, Δ-encoder, LLM),
     end-to-end, a torch.profiler launch count and host syncs of one prefill, which attention kernels ran,
     Transformers' LlavaOnevisionForConditionalGeneration of the same size side by side, and decode ms/token for
     eager / static cache / compiled;
  3. bench_ttft --size paper --compile-encoders: the same prefill with the vision tower and Δ-encoder compiled;
  4. check_embedded_cuda: the embedded default model on CUDA vs CPU (fp32 must agree; bf16 reported).

Usage: benchmarks/gpu_suite.sh [--dry-run] [--output FILE] [--attn auto|sdpa|flash_attention_2|...]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BUDGET_S = 480  # the whole suite must end within 8 minutes on the GPU machine
DRY_RUN_LIMIT_S = 600


def steps(dry_run: bool, attn: str, workdir: str) -> list[tuple[str, list[str], int]]:
    """(title, command, time limit in s). The dry run swaps the paper size on CUDA for the tiny model on the CPU and
    inductor for the 'eager' compile backend (graph capture without code generation: fast, same code path)."""
    py = [sys.executable]
    size = ["--quick", "--device", "cpu"] if dry_run else ["--size", "paper", "--device", "cuda", "--repeats", "3"]
    backend = "eager" if dry_run else "inductor"
    common = ["--workdir", workdir, "--attn", attn]
    return [
        ("TTFT at paper size: components, profile, LLaVA-OneVision side by side, decode modes",
         py + [str(BENCH / "bench_ttft.py"), *size, *common, "--profile", "--llava-ov", "--decode",
               "--decode-compile-backend", backend], 290),
        ("TTFT with the vision tower and the Δ-encoder compiled (1 KF/GOP vs dense, no end-to-end)",
         py + [str(BENCH / "bench_ttft.py"), *size, *common, "--compile-encoders", "--compile-backend", backend,
               "--layouts", "1", "--short-clip", "0", "--no-e2e", "--warmup", "1", "--profile"], 135),
        ("Embedded default model: CUDA vs CPU",
         py + [str(BENCH / "check_embedded_cuda.py"), "--workdir", workdir]
         + (["--dry-run"] if dry_run else ["--device", "cuda"]), 50),
    ]


def environment() -> str:
    import importlib.util

    import torch
    import transformers

    lines = [f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
             f"{platform.platform()}, {os.cpu_count()} CPUs"]
    try:
        import av

        lines.append(f"av {av.__version__}")
    except ImportError:
        lines.append("av: NOT importable")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
                     f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            lines.append(f"nvidia-smi: {smi.stdout.strip()}")
        except (OSError, subprocess.TimeoutExpired) as e:
            lines.append(f"nvidia-smi: {e}")
    else:
        lines.append("GPU: none (CPU only)")
    packages = {name: importlib.util.find_spec(name) is not None for name in ("flash_attn", "kernels", "triton")}
    lines.append("attention packages: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in packages.items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes (what CI runs)")
    ap.add_argument("--output", type=Path, default=None,
                    help="Markdown file for all tables (default: $OUT/gpu_suite.md, else ./gpu_suite.md)")
    ap.add_argument("--attn", default="auto", help="attention implementation for the paper-size runs (default auto: "
                    "flash_attention_2 where flash_attn is installed, else sdpa)")
    ap.add_argument("--workdir", default=None, help="generated clips (default: $COPE_BENCH_DIR or /tmp/cope_bench)")
    args = ap.parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU here; run with --dry-run to check the suite on the CPU", file=sys.stderr)
        return 2
    output = args.output or Path(os.environ.get("OUT") or ".") / "gpu_suite.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or os.environ.get("COPE_BENCH_DIR") or "/tmp/cope_bench"
    start = time.perf_counter()
    failures = 0
    with open(output, "w", encoding="utf-8") as out:
        def emit(text: str = "") -> None:
            out.write(text + "\n")
            out.flush()
            print(text, flush=True)

        emit(f"# CoPE-VideoLM GPU suite{' (DRY RUN on CPU, tiny sizes: checks the code path, not the speed)' if args.dry_run else ''}")
        emit(f"started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
        emit()
        emit("## Environment")
        emit(environment())
        for title, command, limit in steps(args.dry_run, args.attn, workdir):
            left = BUDGET_S - (time.perf_counter() - start)
            emit()
            emit(f"# Step: {title}")
            emit(f"command: {' '.join(Path(c).name if c.startswith(str(BENCH)) else c for c in command)}")
            if left < 20 and not args.dry_run:
                emit(f"SKIPPED: {left:.0f} s left of the {BUDGET_S} s budget")
                failures += 1
                continue
            # the dry run checks the code path on a (possibly loaded) CPU: generous limits, no budget
            timeout = DRY_RUN_LIMIT_S if args.dry_run else min(limit, int(left))
            t0 = time.perf_counter()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            try:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
                status, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
            except subprocess.TimeoutExpired as e:
                status = "timeout"
                stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            emit(stdout.rstrip())
            emit(f"exit status {status} after {time.perf_counter() - t0:.0f} s (limit {timeout} s)")
            if status != 0:
                failures += 1
                tail = [line for line in stderr.splitlines() if not line.startswith(("USDT:", "Loading weights"))]
                emit("stderr (last 30 lines):")
                emit("\n".join(tail[-30:]))
        emit()
        emit(f"suite finished in {time.perf_counter() - start:.0f} s with {failures} failed step(s); tables in {output}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
