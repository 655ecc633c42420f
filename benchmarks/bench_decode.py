"""Decode speed of CoPE-VideoLM: ms per generated token with the default dynamic KV cache (eager), a static cache,
and a static cache with the decode step compiled, after the same video prefill; and whether each gives eager's tokens.

Why: an earlier H200 run at paper size decoded at ~25 ms/token with the eager dynamic-cache loop although reading the
15 GB of bf16 weights takes under 4 ms there: Transformers' eager decode loop is host-bound. A static cache with a
compiled step (CUDA graphs via mode "reduce-overhead") is what removes the per-step Python and launch overhead.

ms/token = (time of generate with N new tokens - time with 1 new token) / (N - 1): the prefill and the first token
cancel out. Greedy, exactly N tokens (eos disabled, min_new_tokens = N). Median of `--repeats` after a warm-up that
also pays the compilation.

Usage:
  python benchmarks/bench_decode.py --size paper --device cuda      # GPU
  python benchmarks/bench_decode.py --quick                          # tiny model on CPU (what CI runs)
bench_ttft.py --decode runs the same measurement on the model it already built.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from _common import median, synchronize, table  # noqa: E402

MODES = ("eager", "static", "compiled")


def generation_kwargs(mode: str, device: str, compile_backend: str = "inductor") -> dict:
    """generate() options of one decode mode. Compiled: static cache + `compile_config` (fullgraph; CUDA graphs on
    a GPU via mode reduce-overhead); on CPU Transformers compiles only when told to (`_compile_all_devices`)."""
    if mode == "eager":
        return {"disable_compile": True}
    if mode == "static":
        return {"cache_implementation": "static", "disable_compile": True}
    if mode == "compiled":
        from transformers import CompileConfig

        on_cuda = str(device).startswith("cuda")
        config = CompileConfig(fullgraph=True, dynamic=False, backend=compile_backend,
                               mode="reduce-overhead" if on_cuda and compile_backend == "inductor" else None)
        if not on_cuda:
            config._compile_all_devices = True
        return {"cache_implementation": "static", "compile_config": config}
    raise ValueError(f"unknown decode mode {mode!r}; expected one of {MODES}")


def measure_decode(model, inputs: dict, device: str, new_tokens: int, repeats: int, modes=MODES,
                   compile_backend: str = "inductor") -> tuple[list[list[str]], dict[str, torch.Tensor]]:
    """Rows `[mode, ms/token, tokens/s, same tokens as eager, note]` and each mode's generated ids. A mode that fails
    (e.g. compilation unavailable) gets its error in the note instead of a time."""
    if new_tokens < 2:
        raise ValueError("--new-tokens must be >= 2 (ms/token is the difference between N and 1 new tokens)")

    def run(mode: str, n: int) -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                  **generation_kwargs(mode, device, compile_backend))

    outputs, rows = {}, []
    for mode in modes:
        try:
            outputs[mode] = run(mode, new_tokens)  # warm-up: compiles, allocates the static cache
            run(mode, 1)
            per_token = []
            for _ in range(repeats):
                synchronize(device)
                start = time.perf_counter()
                run(mode, new_tokens)
                synchronize(device)
                middle = time.perf_counter()
                run(mode, 1)
                synchronize(device)
                end = time.perf_counter()
                per_token.append(((middle - start) - (end - middle)) / (new_tokens - 1))
            ms = 1000 * median(per_token)
            rows.append([mode, f"{ms:.2f}", f"{1000 / ms:.0f}" if ms > 0 else "n/a", "", ""])
        except Exception as e:  # report and go on: one mode failing must not hide the others
            rows.append([mode, "failed", "", "", f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"])
    reference = outputs.get("eager")
    for row in rows:
        got = outputs.get(row[0])
        if got is None or reference is None:
            row[3] = "n/a"
        elif torch.equal(got.cpu(), reference.cpu()):
            row[3] = "yes"
        else:
            new = got.shape[1] - (reference.shape[1] - new_tokens)
            diff = (got[0, -new:].cpu() != reference[0, -new_tokens:].cpu()).nonzero()
            row[3] = f"no (first difference at new token {int(diff[0]) if len(diff) else '?'})"
    return rows, outputs


def print_decode(rows: list[list[str]], new_tokens: int, repeats: int, context: str) -> None:
    print()
    print(f"## Decode speed after the prefill of {context} ({new_tokens} new tokens, greedy, batch 1; median of "
          f"{repeats})")
    print(table(["decode mode", "ms / token", "tokens / s", "same tokens as eager", "note"], rows))
    print("eager = dynamic KV cache, no compilation; static = cache_implementation='static'; compiled = static cache + "
          "compile_config (fullgraph; on CUDA mode reduce-overhead = CUDA graphs). ms/token = (t(N) - t(1)) / (N - 1).")


def main(argv=None) -> int:
    import bench_ttft

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("cpu", "paper"), default="cpu")
    ap.add_argument("--device", default=None)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile-backend", default="inductor",
                    help="inductor (default); 'eager' checks graph capture only (fast, what the CPU dry run uses)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="tiny model, short clip, 8 tokens, 1 repeat")
    args = ap.parse_args(argv)
    size = "tiny" if args.quick else args.size
    device = args.device or ("cuda" if size == "paper" else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is available", file=sys.stderr)
        return 2
    new_tokens = 8 if args.quick and args.new_tokens == 64 else args.new_tokens
    repeats = 1 if args.quick else args.repeats
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model, inputs, context = bench_ttft.one_kf_setup(size, device, dtype, args.attn, args.workdir)
    rows, _ = measure_decode(model, inputs, device, new_tokens, repeats, compile_backend=args.compile_backend)
    print(f"# bench_decode: size={size} device={device} dtype={str(dtype).replace('torch.', '')} attn={args.attn}")
    print_decode(rows, new_tokens, repeats, context)
    return 0 if all(r[1] != "failed" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
