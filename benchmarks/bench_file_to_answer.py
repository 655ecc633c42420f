"""Wall time from a video file to the first generated token, and the latency of follow-up questions.

What a user waits for is file -> first token: decode + codec primitives + processor + prefill. Part 1 times it on the
shared real clips and a generated 5-minute 720p H.264 clip with B-frames, one run each (after a warm-up on a small
clip), all methods on the same sampled steps (the CoPE processor's defaults: 1 fps, at most 64 steps):
  (a) dense       Transformers' `LlavaOnevisionVideoProcessor` on the same frames (decoded with
                  `transformers.video_utils.load_video(backend="pyav")`) + the dense layout (every step a keyframe)
  (b) sequential  the CoPE processor on the path (`extract_primitives`, one thread) + prefill
  (c) parallel    the same with `extract_primitives(num_workers=N)` when the codec layer has it
  (d) streaming   `CoPEVideoSession`: `iter_primitives` (with `num_workers` when it has them) in a producer thread,
                  each GOP prefilled as it arrives
Part 2: a follow-up question about 1, 5 and 20-minute videos, with the session (only the question is prefilled),
re-prefilling kept primitives, and re-running from the file; plus a session holding every step of the 20-minute
video (1 fps): its ingestion time, follow-up latency, and peak RSS (measured in a fresh process), and the KV cache
formula at paper size.

Model: the CPU token-geometry config of bench_ttft.py (random weights; only time matters), or `--size paper --device
cuda` on a GPU. Clips are generated with PyAV into --workdir (default $TMPDIR/cope_bench), never into the repository.

Usage:
  python benchmarks/bench_file_to_answer.py            # CPU config, ~10 min on 2 cores (+~2 min to make the clips)
  python benchmarks/bench_file_to_answer.py --size paper --device cuda
  python benchmarks/bench_file_to_answer.py --quick    # smoke run: tiny model, short small clips
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import resource
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import (  # noqa: E402
    MEDIA_DIR,
    default_workdir,
    encode_h264,
    fmt_s,
    interleaved_runs,
    load_average,
    machine_info,
    median,
    sensor_noise,
    synchronize,
    table,
    texture,
)
from bench_ttft import PAPER_TEXT, build_config, build_model, build_processor  # noqa: E402

MEDIA = ("vid_h264.mp4", "vid_mpeg4_part2.mp4", "city_cc0.mpg")
QUESTIONS = ("Which direction does the sprite move?", "Does the camera pan left or right?",
             "Is anything moving in the last ten seconds?", "How many objects are there?")
METHODS = ("dense", "sequential", "parallel", "streaming", "streaming_1")
LABELS = {"dense": "(a) dense (LLaVA-OV processor)", "sequential": "(b) CoPE sequential",
          "parallel": "(c) CoPE parallel extraction", "streaming": "(d) CoPE streaming",
          "streaming_1": "(d) streaming, 1 extraction worker"}


# ------------------------------------------------------------------------------------------------------ clips


def panned_clip(workdir: Path, *, seconds: int, fps: int, height: int, width: int, bframes: int = 3) -> Path:
    """An H.264 clip with B-frames (x264 veryfast, its default GOP): a 1/f colour texture panned by whole pixels, a
    textured square moving across it, mild noise. Cheap to make (a crop per frame), realistic to decode."""
    path = Path(workdir) / f"pan_{seconds}s_{fps}fps_{height}x{width}_b{bframes}.mp4"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = seconds * fps
    pan = (2, 1)
    span_x, span_y = 4 * width, 4 * height  # the camera sweeps back and forth over a 4x larger texture

    background = texture(span_y + height, span_x + width, 1)
    side = max(16, height // 4)
    sprite = texture(side, side, 2)

    def frames():
        for t in range(n):
            x = (pan[0] * t) % (2 * span_x)
            y = (pan[1] * t) % (2 * span_y)
            x, y = (x if x < span_x else 2 * span_x - x), (y if y < span_y else 2 * span_y - y)
            frame = background[y:y + height, x:x + width].copy()
            sx, sy = (8 * t) % (width - side), (3 * t) % (height - side)
            frame[sy:sy + side, sx:sx + side] = sprite
            yield sensor_noise(frame, rng, 2)

    return encode_h264(path, frames(), fps=fps, width=width, height=height, bframes=bframes)


# ------------------------------------------------------------------------------------------------------ methods


class Bench:
    """The model, processor and the four ways from a path to the first token."""

    def __init__(self, model, processor, device: str, workers: int):
        from transformers import LlavaOnevisionVideoProcessor

        from transformers_cope.codec import extract_primitives

        self.model, self.processor, self.device, self.workers = model, processor, device, workers
        self.vp = processor.video_processor
        side = self.vp._image_side(self.vp.size)
        self.llava = LlavaOnevisionVideoProcessor(size={"height": side, "width": side})
        self.codec = self.vp._codec_kwargs(self.vp._options({}))
        from transformers_cope.codec import iter_primitives

        self.parallel_ok = "num_workers" in inspect.signature(extract_primitives).parameters
        self.stream_parallel_ok = "num_workers" in inspect.signature(iter_primitives).parameters

    def prompt(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def first_token(self, inputs: dict) -> int:
        inputs = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in inputs.items()}
        for key in ("pixel_values_videos", "delta_motion_vectors", "delta_residuals"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.model.dtype)
        out = self.model.generate(**inputs, max_new_tokens=1, do_sample=False)
        synchronize(self.device)
        return int(out[0, -1])

    def dense(self, path: Path, indices: np.ndarray, question: str) -> int:
        from transformers.video_utils import load_video

        frames, _ = load_video(str(path), backend="pyav", sample_indices_fn=lambda metadata, **kw: indices)
        pixels = self.llava(videos=[frames], return_tensors="pt")["pixel_values_videos"].flatten(0, 1)
        types = "I" * len(indices)
        expanded = self.processor.replace_video_token(
            {"video_frame_types": [types], "video_timestamps": [[0.0] * len(types)]}, 0)
        text = self.prompt(question).replace("<|video_pad|>", expanded)
        ids = self.processor.tokenizer(text, return_tensors="pt")
        return self.first_token({**ids, "pixel_values_videos": pixels, "video_frame_types": [types]})

    def sequential(self, path: Path, question: str) -> int:
        """The processor's path from a file, with the codec layer on one worker (its default is parallel now)."""
        from transformers_cope.codec import extract_primitives

        prim = extract_primitives(path, **self.codec, **({"num_workers": 1} if self.parallel_ok else {}))
        return self.first_token(self.processor(text=[self.prompt(question)], videos=[prim], return_tensors="pt"))

    def parallel(self, path: Path, question: str) -> int:
        from transformers_cope.codec import extract_primitives

        prim = extract_primitives(path, num_workers=self.workers, **self.codec)
        return self.first_token(self.processor(text=[self.prompt(question)], videos=[prim], return_tensors="pt"))

    def session(self, **kwargs):
        from transformers_cope.session_cope import CoPEVideoSession

        return CoPEVideoSession(self.model, self.processor, **kwargs)

    def streaming(self, path: Path, question: str, max_steps="processor", workers=None) -> tuple[int, object]:
        from transformers_cope.codec import iter_primitives

        session = self.session()
        codec = dict(self.codec)
        if max_steps != "processor":
            codec["max_steps"] = max_steps
        if self.stream_parallel_ok:
            codec["num_workers"] = workers or self.workers
        session.ingest(iter_primitives(path, **codec), prefetch=2)
        token = int(session.generate(question, max_new_tokens=1, do_sample=False)[0, -1])
        synchronize(self.device)
        return token, session


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _memory_child(args, path: str, queue) -> None:
    """In a fresh process: model, then a session holding every step of `path`; peak RSS before and after."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    warnings.filterwarnings("ignore")
    bench = make_bench(args)
    before, peak_before = _rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    elapsed, (_, session) = timed(lambda: bench.streaming(Path(path), QUESTIONS[0], max_steps=None))
    follow = [timed(lambda q=q: session.generate(q, max_new_tokens=1, do_sample=False))[0] for q in QUESTIONS[1:]]
    queue.put({"rss_before_mb": before, "peak_before_mb": peak_before,
               "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_after_mb": _rss_mb(),
               "steps": session.num_steps, "tokens": session.num_cached_tokens, "ingest_s": elapsed,
               "follow_up_s": median(follow)})


def make_bench(args) -> Bench:
    size = "tiny" if args.quick else args.size
    device = args.device or ("cuda" if size == "paper" else "cpu")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")]
    processor = build_processor(size)
    model = build_model(build_config(size, processor.tokenizer), device, dtype, args.attn)
    return Bench(model, processor, device, args.workers)


# ------------------------------------------------------------------------------------------------------ main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("cpu", "paper"), default="cpu")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda for --size paper, else cpu)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--media-dir", type=Path, default=MEDIA_DIR)
    ap.add_argument("--workdir", type=Path, default=None, help="where generated clips are cached")
    ap.add_argument("--workers", type=int, default=None, help="parallel extraction workers (default: CPU count)")
    ap.add_argument("--minutes", type=float, nargs="*", default=None, help="follow-up video lengths (1 5 20)")
    ap.add_argument("--no-memory", action="store_true", help="skip the every-step session of the longest video")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (as bench_ttft.py)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny model, short small clips")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    import os

    args = parse_args(argv)
    args.workers = args.workers or os.cpu_count() or 1
    if args.size == "paper" and not args.quick and not torch.cuda.is_available():
        print("error: --size paper needs a CUDA GPU (--device cuda); run --size cpu instead", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    from transformers_cope.codec import extract_primitives, probe_video

    workdir = args.workdir or default_workdir()
    bench = make_bench(args)
    device = bench.device
    print("# bench_file_to_answer: video file -> first generated token, and follow-up questions")
    for line in machine_info(device):
        print(line)
    size = "tiny (--quick)" if args.quick else args.size
    print(f"model: {size} config on {device} ({bench.model.dtype}); processor: fps {bench.vp.fps:g}, GOP "
          f"{bench.vp.gop_size}, {bench.vp.keyframes_per_gop} keyframe per GOP, at most {bench.vp.max_steps} steps; "
          f"torch threads {torch.get_num_threads()}; parallel extraction: "
          f"{f'{args.workers} workers' if bench.parallel_ok else 'not in this codec layer'}")

    if args.quick:
        videos = [panned_clip(workdir, seconds=10, fps=10, height=96, width=160)]
        minutes = args.minutes or [0.1, 0.2]
        follow_size = (96, 160)
    else:
        videos = [args.media_dir / name for name in MEDIA if (args.media_dir / name).exists()]
        print("making the 5-minute 720p clip (cached)...", file=sys.stderr, flush=True)
        videos.append(panned_clip(workdir, seconds=300, fps=24, height=720, width=1280))
        minutes = args.minutes or [1.0, 5.0, 20.0]
        follow_size = (176, 320)

    # warm-up: every method once on a small clip (kernels, lazy imports, allocator)
    warm = videos[0] if args.quick else panned_clip(workdir, seconds=10, fps=10, height=96, width=160)
    warm_idx = np.asarray(extract_primitives(warm, **bench.codec).frame_indices)
    bench.dense(warm, warm_idx, QUESTIONS[0])
    bench.sequential(warm, QUESTIONS[0])
    bench.streaming(warm, QUESTIONS[0])

    rows, ratio_rows = [], []
    for path in videos:
        info = probe_video(path)
        prim = extract_primitives(path, **bench.codec)  # the sampled steps (untimed): the dense baseline reads these
        indices = np.asarray(prim.frame_indices)
        t = {}
        tokens = {}
        print(f"  [{path.name}] timing...", file=sys.stderr, flush=True)
        t["dense"], tokens["dense"] = timed(lambda: bench.dense(path, indices, QUESTIONS[0]))
        t["sequential"], tokens["sequential"] = timed(lambda: bench.sequential(path, QUESTIONS[0]))
        if bench.parallel_ok:
            t["parallel"], tokens["parallel"] = timed(lambda: bench.parallel(path, QUESTIONS[0]))
        t["streaming"], (tokens["streaming"], _) = timed(lambda: bench.streaming(path, QUESTIONS[0]))
        if bench.stream_parallel_ok and args.workers > 1:  # the same without parallel extraction
            t["streaming_1"], (tokens["streaming_1"], _) = timed(
                lambda: bench.streaming(path, QUESTIONS[0], workers=1))
        same = len({tokens[m] for m in tokens if m != "dense"}) == 1
        desc = f"{info.codec} {info.width}x{info.height} {'I/P/B' if info.reordered else 'I/P'}, {info.duration:.0f} s"
        rows.append([path.name, desc, f"{len(indices)} ({prim.frame_types.count('I')} I, {prim.mode})",
                     *(fmt_s(t[m]) if m in t else "n/a" for m in METHODS), "yes" if same else "NO"])
        ratio_rows.append([path.name, *(f"{t[m] / t['dense']:.3f}" if m in t else "n/a" for m in METHODS[1:]),
                           f"{t['sequential'] / t['streaming']:.2f}x"])
    print()
    print("## File -> first token (one run each, after a warm-up; same sampled steps for every method)")
    print(table(["video", "source", "steps", *(LABELS[m] for m in METHODS), "CoPE first tokens agree"], rows))
    print()
    print("## Ratios against the dense pipeline of the same run (target: streaming <= 0.5 on the 720p clip)")
    print(table(["video", "sequential / dense", "parallel / dense", "streaming / dense",
                 "streaming (1 worker) / dense", "streaming speed-up vs sequential"], ratio_rows))

    # ---------------------------------------------------------------------------------- follow-up questions
    follow_rows = []
    latencies = {}
    longest = None
    sessions, clips = {}, {}
    for mins in minutes:
        path = panned_clip(workdir, seconds=int(round(mins * 60)), fps=10, height=follow_size[0],
                           width=follow_size[1])
        longest = clips[mins] = path
        print(f"  [{path.name}] ingesting...", file=sys.stderr, flush=True)
        _, sessions[mins] = bench.streaming(path, QUESTIONS[0])
    # follow-ups interleaved over the sessions, round by round, so that load changes hit every length alike
    repeats = 2 if args.quick else 9
    follow = interleaved_runs(
        {mins: (lambda s=session: s.generate(QUESTIONS[1 + len(s.frame_types) % 3], max_new_tokens=1,
                                             do_sample=False)) for mins, session in sessions.items()},
        repeats, warmup=1, sync=lambda: synchronize(device), progress="follow-ups")
    for mins in minutes:
        path, session = clips[mins], sessions[mins]
        prim = extract_primitives(path, **bench.codec)
        reprefill, _ = timed(lambda: bench.first_token(
            bench.processor(text=[bench.prompt(QUESTIONS[1])], videos=[prim], return_tensors="pt")))
        rerun, _ = timed(lambda: bench.sequential(path, QUESTIONS[1]))
        latencies[mins] = median(follow[mins])
        follow_rows.append([f"{mins:g} min", f"{session.num_steps} ({session.num_cached_tokens:,} tokens)",
                            fmt_s(latencies[mins]), fmt_s(reprefill), fmt_s(rerun),
                            f"{reprefill / latencies[mins]:.1f}x", f"{rerun / latencies[mins]:.1f}x"])
    sessions.clear()
    print()
    print(f"## Follow-up question -> first token (processor sampling: 1 fps, at most {bench.vp.max_steps} steps; "
          f"{follow_size[1]}x{follow_size[0]} H.264 clips with B-frames)")
    print(table(["video", "steps held", f"with the session (median of {repeats}, interleaved)",
                 "re-prefill (primitives kept)",
                 "re-run from the file", "re-prefill / session", "re-run / session"], follow_rows))
    first, last = minutes[0], minutes[-1]
    print(f"session follow-up latency {last:g} min / {first:g} min: {latencies[last] / latencies[first]:.2f} "
          "(target <= 1.2)")

    if not args.no_memory and longest is not None:
        # a fresh interpreter for an honest peak RSS; --quick forks (no re-import) since only the code path matters
        ctx = multiprocessing.get_context("fork" if args.quick else "spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_memory_child, args=(args, str(longest), queue))
        print(f"  [{longest.name}] every-step session in a fresh process...", file=sys.stderr, flush=True)
        child.start()
        result = queue.get()
        child.join()
        print()
        print(f"## A session holding every step of the {last:g}-minute video (1 fps, no sampling cap)")
        print(table(["steps", "cached tokens", "ingestion (file -> cache)", "follow-up -> first token",
                     "RSS with the model loaded", "RSS after", "peak RSS of the process"],
                    [[result["steps"], f"{result['tokens']:,}", fmt_s(result["ingest_s"]),
                      fmt_s(result["follow_up_s"]), f"{result['rss_before_mb']:.0f} MB",
                      f"{result['rss_after_mb']:.0f} MB", f"{result['peak_mb']:.0f} MB"]]))
        cfg = bench.model.config.text_config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * bench.model.dtype.itemsize
        print(f"KV cache of this config: 2 x {cfg.num_hidden_layers} layers x {cfg.num_key_value_heads} KV heads x "
              f"{head_dim} x {bench.model.dtype.itemsize} B = {per_token:,} B per token -> "
              f"{per_token * result['tokens'] / 2**20:.1f} MiB for {result['tokens']:,} tokens")
    paper_token = 2 * PAPER_TEXT["num_hidden_layers"] * PAPER_TEXT["num_key_value_heads"] * (
        PAPER_TEXT["hidden_size"] // PAPER_TEXT["num_attention_heads"]) * 2
    seconds = 20 * 60
    gops = -(-seconds // 8)
    paper_tokens = 210 * gops + 9 * (seconds - gops)
    print(f"KV cache at paper size (Qwen2-7B, bf16): 2 x 28 layers x 4 KV heads x 128 x 2 B = {paper_token:,} B "
          f"(56 KiB) per token; a 20-minute session at 1 fps, 1 KF/GOP holds 210 x {gops} + 9 x {seconds - gops} = "
          f"{paper_tokens:,} tokens = {paper_token * paper_tokens / 2**30:.2f} GiB (tokens(T s) = 210 ceil(T/8) + "
          "9 (T - ceil(T/8)); 64 sampled steps: 2,184 tokens = 0.12 GiB)")
    print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
