"""Time to first token (prefill) and end-to-end latency of CoPE-VideoLM against its dense-RGB baseline.

One video (default: a generated 64 s clip; --video for your own), one model (random weights: only the timing
matters), one prompt. The layouts differ only in keyframes per 8-step GOP: 8 (dense baseline: every step a keyframe
through the vision tower), 4, 2 and 1 (the others are Δ steps through the Δ-encoder). For each layout:
visual tokens, prefill time = time to first token (vision tower + Δ-encoder + LLM prefill + first token), and
end-to-end latency for N new tokens (greedy, N forced with min_new_tokens). Warm-up, then the median of several
runs, layouts interleaved run by run. Preprocessing (decode + codec primitives + processor) is NOT part of TTFT
here: the inputs are model-ready tensors on the device before the clock starts (bench_preprocess.py times it).

Sizes:
  --size cpu    the paper's token geometry (SigLIP 384 px / patch 14 -> 27x27 -> 2x2 bilinear pooling = 14x14 =
                196 tokens + 14 row newlines = 210 per keyframe; 8 Δ-tokens + 1 separator = 9 per Δ step;
                224 px codec frames -> 14x14 MV grid, 56x56 residual) with small widths, so it runs on a CPU in
                minutes and the token ratio is the paper's.
  --size paper  SigLIP-so400m-patch14-384 vision + Qwen2-7B text + the default Δ-encoder, bf16, built directly on
                the GPU (random weights). Needs --device cuda; refuses without a GPU.
  --quick       smoke run: tiny model and a short small clip (tests/test_benchmarks_smoke.py).

Usage:
  python benchmarks/bench_ttft.py                          # CPU config, a few minutes
  python benchmarks/bench_ttft.py --size paper --device cuda --attn sdpa
  python benchmarks/bench_ttft.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from _gpu import (  # noqa: E402
    attention_report,
    count_host_syncs,
    fmt_ms,
    pick_attention,
    profile_call,
    to_device,
    visual_token_mask,
)
from _common import (  # noqa: E402
    default_workdir,
    fmt_s,
    generated_clip,
    interleaved_runs,
    machine_info,
    median,
    synchronize,
    table,
)

GOP = 8
LAYOUTS = (8, 4, 2, 1)  # keyframes per 8-step GOP; 8 = dense baseline
PAPER_TTFT = {8: 2.39, 4: 0.90, 2: 0.51, 1: 0.33}  # s, RTX 4090, 64 s clip at 1 fps (paper)
PAPER_E2E = {8: 3.78, 4: 2.28, 2: 1.71, 1: 1.66}  # s, 64 new tokens
PROMPT = "Which direction does the sprite move?"
FLOAT_INPUTS = ("pixel_values_videos", "delta_motion_vectors", "delta_residuals")

# CPU config: the paper's token geometry, small widths (vision 64 x 2 layers, Δ-encoder 32 x 1 layer, LLM 128 x 2
# layers with Qwen2-7B's 7:1 query:key-value head ratio kept as 2:1). On 2 cores the 13,440-token dense prefill takes
# a few seconds; attention is the dominant prefill cost at this width (see benchmarks/README.md).
CPU_VISION = dict(model_type="siglip_vision_model", image_size=384, patch_size=14, hidden_size=64,
                  intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, vision_use_head=False)
CPU_TEXT = dict(model_type="qwen2", hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16384)
CPU_DELTA = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128,
                 residual_embedding_size=8, residual_hidden_sizes=[8, 16], residual_depths=[1, 1])
# Paper config: SigLIP-so400m-patch14-384 (the config default, last layer dropped as LLaVA-OneVision does) + Qwen2-7B.
PAPER_TEXT = dict(model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                  num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                  max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)


# ------------------------------------------------------------------------------------------------------ building


def build_processor(size: str):
    from transformers_cope.processing_cope import CHAT_TEMPLATE, CoPEVideoLMProcessor
    from transformers_cope.tiny import build_tiny_tokenizer, build_tiny_video_processor
    from transformers_cope.video_processing_cope import CoPEVideoProcessor

    tokenizer = build_tiny_tokenizer()
    if size == "tiny":
        video_processor = build_tiny_video_processor(fps=1.0, max_steps=64)
    else:  # the paper's processor defaults: 384 px keyframes, patch 14, 2x2 pooling, 224 px codec frames
        video_processor = CoPEVideoProcessor(max_steps=64)
    return CoPEVideoLMProcessor(video_processor=video_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build_config(size: str, tokenizer):
    from transformers_cope.configuration_cope import CoPEVideoLMConfig
    from transformers_cope.tiny import tiny_model_config

    vocab = tokenizer.get_vocab()
    ids = dict(
        video_token_id=vocab["<|video_pad|>"], image_token_id=vocab["<|video_pad|>"],
        delta_token_id=vocab["<|delta_pad|>"], frame_newline_token_id=vocab["<|frame_newline|>"],
        delta_end_token_id=vocab["<|delta_end|>"], vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )
    if size == "tiny":
        return tiny_model_config()
    special = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    if size == "cpu":
        text = dict(CPU_TEXT, vocab_size=len(tokenizer), **special)
        return CoPEVideoLMConfig(vision_config=dict(CPU_VISION), text_config=text, delta_config=dict(CPU_DELTA), **ids)
    # paper: the tiny tokenizer's ids all lie inside Qwen2's 152,064-row vocabulary, so the prompt is valid input
    return CoPEVideoLMConfig(vision_config=None, text_config=dict(PAPER_TEXT, **special), delta_config=None, **ids)


def build_model(config, device: str, dtype: torch.dtype, attn: str):
    """Random weights created directly on `device` in `dtype` (no fp32 copy on the host: 7B parameters in fp32
    would be 30 GB)."""
    from transformers_cope.modeling_cope import CoPEVideoLMForConditionalGeneration

    torch.manual_seed(0)
    config._attn_implementation = attn
    with torch.device(device):
        model = CoPEVideoLMForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn)
    model.eval()
    model.generation_config.eos_token_id = None  # always generate exactly the requested tokens
    model.generation_config.pad_token_id = config.text_config.pad_token_id or 0
    return model


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------------ timing


class ComponentTimer:
    """Wall time spent inside named submodules during one forward (hooks; synchronised on GPU)."""

    def __init__(self, modules: dict[str, torch.nn.Module], device: str):
        self.device = device
        self.totals = dict.fromkeys(modules, 0.0)
        self._start: dict[str, float] = {}
        self._handles = []
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, name):
        def hook(module, args):
            synchronize(self.device)
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name):
        def hook(module, args, output):
            synchronize(self.device)
            self.totals[name] += time.perf_counter() - self._start.pop(name)
        return hook

    def reset(self) -> None:
        self.totals = dict.fromkeys(self.totals, 0.0)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def visual_token_ids(processor) -> list[int]:
    return [processor.video_token_id, processor.frame_newline_token_id, processor.delta_token_id,
            processor.delta_end_token_id]


def visual_token_count(input_ids: torch.Tensor, processor) -> int:
    """Visual placeholders in `input_ids` (on whatever device they are; read back to the host for the report)."""
    return int(visual_token_mask(input_ids, visual_token_ids(processor)).sum())


def slice_primitives(prim, steps: int):
    """The first `steps` steps of a video's primitives (a shorter clip with the same content)."""
    types = prim.frame_types[:steps]
    n_i, n_p = types.count("I"), types.count("P")
    return dataclasses.replace(
        prim, frame_types=types, keyframes=prim.keyframes[:n_i], motion_vectors=prim.motion_vectors[:n_p],
        intra_masks=prim.intra_masks[:n_p], residuals=prim.residuals[:n_p], timestamps=prim.timestamps[:steps],
        frame_indices=prim.frame_indices[:steps], frames=None if prim.frames is None else prim.frames[:steps])


# ------------------------------------------------------------------------------------------------------ inputs


def default_video(size: str, workdir: Path | None) -> Path:
    """The generated clip: 64 s at 224 px (8 s at 64 px for the tiny model), cached in `workdir`."""
    workdir = workdir or default_workdir()
    if size == "tiny":
        return generated_clip(workdir, seconds=8, fps=4, height=64, width=64, name="ttft_quick")
    return generated_clip(workdir, seconds=64, fps=10, height=224, width=224, name="ttft")


def layout_batches(processor, video: Path, layout_keys, short_clip: int = 0):
    """`{name: (keyframes per GOP, primitives, processor batch)}` for each layout, and the preprocessing time of each
    (decode + codec primitives + processor; NOT part of TTFT)."""
    from transformers_cope.codec import extract_primitives

    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": PROMPT}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    vp = processor.video_processor
    layouts, prep_times = {}, {}
    for k in layout_keys:
        start = time.perf_counter()
        prim = extract_primitives(video, fps=vp.fps, gop_size=GOP, keyframes_per_gop=k, mode=vp.codec_mode,
                                  size=(vp.codec_size, vp.codec_size), mv_block=vp.mv_block,
                                  residual_scale=vp.residual_scale, max_steps=64)
        batch = processor(text=prompt, videos=[prim], return_tensors="pt")
        prep_times[k] = time.perf_counter() - start
        layouts[f"{k}/{GOP}"] = (k, prim, batch)
        if k == 1 and short_clip and short_clip < prim.num_steps:
            short = slice_primitives(prim, short_clip)
            layouts[f"1/{GOP}, first {short_clip} s of the clip"] = (
                k, short, processor(text=prompt, videos=[short], return_tensors="pt"))
    return layouts, prep_times


def model_inputs(batch, device: str, dtype: torch.dtype) -> dict:
    """A processor batch as model inputs on `device` (video tensors in the model's dtype)."""
    tensors = {key: value for key, value in batch.items() if isinstance(value, torch.Tensor)}
    tensors["video_frame_types"] = batch["video_frame_types"]
    return to_device(tensors, device, dtype, FLOAT_INPUTS)


def one_kf_setup(size: str, device: str, dtype: torch.dtype, attn: str, workdir: Path | None = None):
    """(model, 1 KF/GOP inputs, description) for the benchmarks that need one realistic prefill (bench_decode)."""
    processor = build_processor(size)
    model = build_model(build_config(size, processor.tokenizer), device, dtype, pick_attention(attn, device)[0])
    layouts, _ = layout_batches(processor, default_video(size, workdir), (1,))
    k, prim, batch = layouts[f"1/{GOP}"]
    context = f"1 KF/GOP, {prim.num_steps} steps, {batch['input_ids'].shape[1]:,} prompt tokens"
    return model, model_inputs(batch, device, dtype), context


# ------------------------------------------------------------------------------------------------------ accounting


def accounting_rows(config) -> tuple[list[list[object]], list[str]]:
    """Token accounting with the paper's formula: 64 s clip per layout, and short clips against the 64-keyframe
    dense budget (LLaVA-Video samples 64 frames whatever the clip length)."""
    from transformers_cope.configuration_cope import count_video_tokens, gop_frame_types

    dense64 = count_video_tokens(gop_frame_types(64, GOP, GOP), config)["total_tokens"]
    per_kf = count_video_tokens("I", config)["total_tokens"]
    per_p = count_video_tokens("P", config)["total_tokens"]
    rows = []
    for seconds, k in [(64, 4), (64, 2), (64, 1), (8, 1), (16, 1), (24, 1), (25, 1), (32, 1)]:
        types = gop_frame_types(seconds, GOP, k)
        c = count_video_tokens(types, config)
        same_len_dense = seconds * per_kf
        rows.append([
            f"{seconds} s, {k} KF/GOP",
            f"{c['num_keyframes']} x {per_kf} + {c['num_delta_steps']} x {per_p} = {c['total_tokens']:,}",
            f"{100 * c['total_tokens'] / same_len_dense:.1f}% of {same_len_dense:,}",
            f"{100 * c['total_tokens'] / dense64:.1f}% of {dense64:,}",
        ])
    share = 0.069 * dense64
    per_gop = per_kf + 7 * per_p
    shares = {t: count_video_tokens(gop_frame_types(t, GOP, 1), config)["total_tokens"] / dense64 for t in range(1, 65)}
    below = max((t for t, s in shares.items() if s < 0.069), default=0)
    above = min((t for t, s in shares.items() if s >= 0.069), default=64)
    notes = [
        f"The paper's 6.9% is 1 KF + 7 Δ per GOP against a 64-keyframe dense budget ({dense64:,} tokens; LLaVA-Video "
        f"samples 64 frames whatever the length) on PerceptionTest, whose clips are short: 0.069 x {dense64:,} = "
        f"{share:,.0f} tokens = {share / per_gop:.2f} GOPs of {per_kf} + 7 x {per_p} = {per_gop} tokens. At 1 fps a "
        f"T-second clip costs {per_kf} x ceil(T/8) + {per_p} x (T - ceil(T/8)) tokens: {below} s -> "
        f"{100 * shares[below]:.1f}%, {above} s -> {100 * shares[above]:.1f}%, so 6.9% is the average over clips of "
        "about that length (PerceptionTest's average is ~23 s).",
        f"On the 64 s clip the dense baseline and CoPE read the same 64 steps: (8 x {per_kf} + 56 x {per_p}) / "
        f"(64 x {per_kf}) = {100 * (8 * per_kf + 56 * per_p) / dense64:.2f}%.",
        "Paper formula, minutes covered by a budget B: dense B // 210 // 60; CoPE 8B // (210k + 9(8-k)) // 60.",
    ]
    return rows, notes


# ------------------------------------------------------------------------------------------------------ main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("cpu", "paper"), default="cpu")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda for --size paper, else cpu)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                    help="default: float32 on CPU, bfloat16 on GPU")
    ap.add_argument("--attn", default="sdpa",
                    help="attention implementation: sdpa, eager, flash_attention_2, kernels-community/flash-attn2, or "
                         "auto (flash_attention_2 where flash_attn is installed on a GPU, else sdpa); one that cannot "
                         "run here falls back to sdpa and the report says so")
    ap.add_argument("--profile", action="store_true",
                    help="after timing, profile one prefill of the dense and the 1 KF/GOP layout (torch.profiler): "
                         "kernel launches (aten ops on CPU), host vs device time, host syncs (CUDA), attention kernels")
    ap.add_argument("--compile-encoders", action="store_true",
                    help="torch.compile the vision tower and the Δ-encoder (model.model.compile_encoders; static shapes "
                         "per layout, so each layout compiles once in the warm-up)")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode for --compile-encoders (e.g. "
                    "max-autotune-no-cudagraphs; default: torch's)")
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend for --compile-encoders")
    ap.add_argument("--layouts", default=None,
                    help="comma-separated keyframes per GOP to time (default 8,4,2,1; 8 = dense, always included)")
    ap.add_argument("--llava-ov", action="store_true",
                    help="also time Transformers' LlavaOnevisionForConditionalGeneration of the same size on the dense "
                         "layout's frames, interleaved with CoPE's dense and 1 KF/GOP prefill (same process)")
    ap.add_argument("--no-e2e", action="store_true", help="time the prefill only (no generate rounds)")
    ap.add_argument("--decode", action="store_true",
                    help="also measure decode ms/token (eager / static cache / compiled) after the 1 KF/GOP prefill "
                         "(bench_decode.py)")
    ap.add_argument("--decode-compile-backend", default="inductor",
                    help="torch.compile backend of the compiled decode ('eager': graph capture only, for dry runs)")
    ap.add_argument("--video", type=Path, default=None, help="video file (default: a generated 64 s clip)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the generated clip is cached")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per layout (median reported)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 1; 0 in --quick)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--short-clip", type=int, default=24,
                    help="also time 1 KF/GOP on the first N seconds against the 64-keyframe budget (0: off)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads on CPU (default 1: on a loaded machine, OpenMP threads that wait on "
                         "each other made every op 2-30x slower; 0 keeps torch's default)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny model, short small clip, one run")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    size = "tiny" if args.quick else args.size
    device = args.device or ("cuda" if size == "paper" else "cpu")
    if size == "paper" and not (device.startswith("cuda") and torch.cuda.is_available()):
        print("error: --size paper builds SigLIP-so400m + Qwen2-7B (8B parameters, ~16 GB in bf16) and needs a CUDA "
              f"GPU (--device cuda); {'no GPU is available here' if not torch.cuda.is_available() else 'got --device ' + device}."
              " Run --size cpu instead; no GPU numbers are produced without one.", file=sys.stderr)
        return 2
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is available", file=sys.stderr)
        return 2
    if args.threads and not device.startswith("cuda"):
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    repeats = args.repeats or (1 if args.quick else 5)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    new_tokens = 4 if args.quick and args.new_tokens == 64 else args.new_tokens
    warnings.filterwarnings("ignore", category=UserWarning)

    from transformers_cope.configuration_cope import count_video_tokens

    attn, attn_why = pick_attention(args.attn, device)
    layout_keys = LAYOUTS if not args.layouts else tuple(sorted({GOP, *map(int, args.layouts.split(","))}, reverse=True))
    if 1 not in layout_keys:
        print("error: --layouts must include 1 (the 1 KF/GOP row is what the checks compare)", file=sys.stderr)
        return 2
    print(f"# bench_ttft: size={size} device={device} dtype={str(dtype).replace('torch.', '')} attn={attn}"
          + (" compile-encoders" if args.compile_encoders else ""))
    for line in machine_info(device):
        print(line)

    processor = build_processor(size)
    config = build_config(size, processor.tokenizer)
    model = build_model(config, device, dtype, attn)
    inner = model.model
    if args.compile_encoders:
        inner.compile_encoders(backend=args.compile_backend, mode=args.compile_mode)
    print(f"model: vision {count_params(inner.vision_tower) / 1e6:.2f} M params "
          f"({config.vision_config.hidden_size} wide x {config.vision_config.num_hidden_layers} layers, "
          f"{config.vision_config.image_size} px / patch {config.vision_config.patch_size}), "
          f"Δ-encoder {count_params(inner.delta_encoder) / 1e6:.2f} M, projector "
          f"{count_params(inner.multi_modal_projector) / 1e6:.2f} M, LLM {count_params(inner.language_model) / 1e6:.1f} M "
          f"({config.text_config.hidden_size} wide x {config.text_config.num_hidden_layers} layers) + LM head "
          f"{count_params(model.lm_head) / 1e6:.1f} M; tokens per keyframe "
          f"{count_video_tokens('I', config)['total_tokens']}, per Δ step {count_video_tokens('P', config)['total_tokens']}")

    # ---- the video and the model inputs of every layout (preprocessing: timed once, NOT part of TTFT)
    video = args.video if args.video is not None else default_video(size, args.workdir)
    print(f"video: {video}")
    vp = processor.video_processor
    layouts, prep_times = layout_batches(processor, video, layout_keys, args.short_clip)
    inputs = {name: model_inputs(batch, device, dtype) for name, (k, prim, batch) in layouts.items()}
    first = layouts[f"{GOP}/{GOP}"][1]
    print(f"steps: {first.num_steps} at {vp.fps:g} fps ({first.duration:.1f} s source, codec {first.frame_size[0]}x"
          f"{first.frame_size[1]}, mode {first.mode}); preprocessing per layout (decode + codec primitives + processor; "
          "NOT part of TTFT, see bench_preprocess.py): "
          + ", ".join(f"{k}/{GOP} KF {fmt_s(t)}" for k, t in prep_times.items()))

    # ---- timing
    # compiled encoders run inside a compiled region, where timing hooks would break the graph: time the LLM only
    timed = {} if args.compile_encoders else {"vision": inner.vision_tower, "delta": inner.delta_encoder}
    timer = ComponentTimer({**timed, "llm": inner.language_model, "head": model.lm_head}, device)
    components: dict[str, list[dict[str, float]]] = {name: [] for name in inputs}

    def prefill(name):
        def run():
            timer.reset()
            with torch.inference_mode():
                out = model(**inputs[name], use_cache=True, logits_to_keep=1)
                out.logits[:, -1].argmax(-1).tolist()  # the first token, on the host
            components[name].append(dict(timer.totals))
        return run

    def generate(name):
        def run():
            with torch.inference_mode():
                out = model.generate(**inputs[name], max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                     do_sample=False)
            assert out.shape[1] == inputs[name]["input_ids"].shape[1] + new_tokens
        return run

    sync = (lambda: synchronize(device)) if device.startswith("cuda") else None
    # prefill and generate of every layout in the same rounds, so that they see the same machine load
    jobs = {("prefill", n): prefill(n) for n in inputs}
    if not args.no_e2e:
        jobs.update({("e2e", n): generate(n) for n in inputs})
    times = interleaved_runs(jobs, repeats, warmup, sync, "prefill + generate")
    t_prefill = {n: times[("prefill", n)] for n in inputs}
    t_e2e = {n: times.get(("e2e", n), []) for n in inputs}
    timer.remove()
    for name in components:  # drop the warm-up rounds' component timings
        components[name] = components[name][-repeats:]

    # ---- report
    dense_name = f"{GOP}/{GOP}"
    dense_tokens = visual_token_count(inputs[dense_name]["input_ids"], processor)
    dense_ttft = median(t_prefill[dense_name])
    dense_e2e = median(t_e2e[dense_name])
    rows = []
    for name in inputs:
        k, prim, batch = layouts[name]
        tokens = visual_token_count(inputs[name]["input_ids"], processor)
        expected = count_video_tokens(prim.frame_types, config)["total_tokens"]
        assert tokens == expected, f"{name}: {tokens} visual tokens in input_ids, count_video_tokens says {expected}"
        comp = {key: median([c.get(key, float("nan")) for c in components[name]])
                for key in ("vision", "delta", "llm", "head")}
        ttft, e2e = median(t_prefill[name]), median(t_e2e[name])
        label = "dense (every step a keyframe)" if name == dense_name else name
        rows.append([
            label, f"{prim.frame_types.count('I')} + {prim.frame_types.count('P')}", f"{tokens:,}",
            f"{100 * tokens / dense_tokens:.1f}%", fmt_s(comp["vision"]), fmt_s(comp["delta"]),
            fmt_s(comp["llm"] + comp["head"]), fmt_s(ttft), f"{ttft / dense_ttft:.3f}", fmt_s(e2e),
            "n/a" if e2e != e2e else f"{e2e / dense_e2e:.3f}",
        ])
    print()
    print(f"## TTFT and end-to-end latency ({new_tokens} new tokens), median of {repeats} runs after "
          f"{warmup} warm-up; ratios against the dense baseline of the same run")
    print(table(["layout (KF per 8-step GOP)", "KF + Δ steps", "visual tokens", "tokens vs dense row", "vision tower",
                 "Δ-encoder", "LLM prefill", "prefill = TTFT", "TTFT ratio", f"end-to-end ({new_tokens} tok)",
                 "e2e ratio"], rows))
    print("Preprocessing (decode, codec primitives, processor) is NOT included: inputs are tensors on the device "
          "before the clock starts; see bench_preprocess.py. TTFT = one forward (vision tower + Δ-encoder + "
          "projector + LLM prefill + LM head on the last position) and the first token on the host; 'LLM prefill' "
          "includes the LM head; the rest of TTFT is embedding, projector, pooling and scatter.")
    if size == "paper" or size == "cpu":
        paper_rows = [[f"{k}/{GOP}" if k != GOP else "dense", f"{PAPER_TTFT[k]:.2f} s",
                       f"{PAPER_TTFT[k] / PAPER_TTFT[GOP]:.2f}", f"{PAPER_E2E[k]:.2f} s",
                       f"{PAPER_E2E[k] / PAPER_E2E[GOP]:.2f}"] for k in LAYOUTS]
        print()
        print("## For reference: the paper's numbers (LLaVA-Video-7B size, RTX 4090, 64 s clip at 1 fps)")
        print(table(["layout", "TTFT", "TTFT ratio", "e2e (64 tok)", "e2e ratio"], paper_rows))

    acc_rows, notes = accounting_rows(config)
    print()
    print("## Token accounting (paper formula; count_video_tokens)")
    print(table(["clip, layout", "tokens", "vs dense of the same clip", "vs 64-keyframe dense budget"], acc_rows))
    for note in notes:
        print(note)

    one = f"1/{GOP}"
    tokens_one = visual_token_count(inputs[one]["input_ids"], processor)
    ratio_one = median(t_prefill[one]) / dense_ttft
    print()
    print("## Checks")
    if layouts[one][1].num_steps == 64:
        limit = 8 * count_video_tokens("I", config)["total_tokens"] + 56 * count_video_tokens("P", config)["total_tokens"]
        print(f"visual tokens at 1 KF/GOP: {tokens_one:,} vs dense {dense_tokens:,} = "
              f"{100 * tokens_one / dense_tokens:.2f}% (limit 8 x 210 + 56 x 9 = 2,184 = 16.25% at paper geometry; "
              f"this config {limit:,}): {'PASS' if tokens_one <= limit else 'FAIL'}")
    else:
        print(f"visual tokens at 1 KF/GOP: {tokens_one:,} vs dense {dense_tokens:,} "
              f"({layouts[one][1].num_steps} steps, not a 64 s clip)")
    verdict = "PASS" if ratio_one <= 0.2 else "FAIL"
    where = "GPU" if device.startswith("cuda") else "CPU"
    print(f"{where} prefill (TTFT) ratio at 1 KF/GOP vs dense: {ratio_one:.3f} (target <= 0.2; paper's GPU TTFT ratio "
          f"0.14): {verdict if size != 'tiny' else 'n/a in --quick'}")
    kernel_names = None
    if args.profile:
        kernel_names = print_profile(model, inputs, [dense_name, one], device)
    if args.llava_ov:
        print_llava_side_by_side(model, inputs, processor, dense_name, one, layouts[dense_name][1].num_steps,
                                 device, dtype, attn, repeats, warmup)
    if args.decode:
        from bench_decode import measure_decode, print_decode

        decode_rows, _ = measure_decode(model, inputs[one], device, max(new_tokens, 2), repeats,
                                        compile_backend=args.decode_compile_backend)
        print_decode(decode_rows, max(new_tokens, 2), repeats,
                     f"the 1 KF/GOP layout ({inputs[one]['input_ids'].shape[1]:,} prompt tokens)")
    print(attention_report(model, args.attn, attn_why, kernel_names))
    print(f"load average at end: {__import__('_common').load_average()}")
    return 0


def print_llava_side_by_side(model, inputs: dict, processor, dense_name: str, one: str, num_frames: int, device: str,
                             dtype: torch.dtype, attn: str, repeats: int, warmup: int) -> None:
    """TTFT of Transformers' LLaVA-OneVision (same vision tower + LLM, `num_frames` RGB frames) interleaved with
    CoPE's dense and 1 KF/GOP prefill, all in this process."""
    from _llava_ov import build_llava_ov, llava_inputs

    llava = build_llava_ov(model.config, device, dtype, attn)
    prompt_ids = inputs[dense_name]["input_ids"][0].tolist()  # host-side setup, not timed
    llava_in = llava_inputs(llava, prompt_ids, set(visual_token_ids(processor)), num_frames, device, dtype)

    def first_token(m, kwargs):
        def run():
            with torch.inference_mode():
                m(**kwargs, use_cache=True, logits_to_keep=1).logits[:, -1].argmax(-1).tolist()
        return run

    jobs = {"llava": first_token(llava, llava_in), "dense": first_token(model, inputs[dense_name]),
            "one": first_token(model, inputs[one])}
    sync = (lambda: synchronize(device)) if device.startswith("cuda") else None
    times = interleaved_runs(jobs, repeats, warmup, sync, "LLaVA-OneVision side by side")
    ref = median(times["llava"])
    llava_tokens = int((llava_in["input_ids"] == llava.config.video_token_id).sum())
    rows = [
        [f"Transformers LlavaOnevisionForConditionalGeneration ({num_frames} frames)", f"{llava_tokens:,}",
         fmt_s(ref), "1.000"],
        [f"CoPE dense ({num_frames} keyframes)", f"{visual_token_count(inputs[dense_name]['input_ids'], processor):,}",
         fmt_s(median(times['dense'])), f"{median(times['dense']) / ref:.3f}"],
        [f"CoPE {one} KF/GOP", f"{visual_token_count(inputs[one]['input_ids'], processor):,}",
         fmt_s(median(times['one'])), f"{median(times['one']) / ref:.3f}"],
    ]
    print()
    print(f"## Side by side: Transformers' LLaVA-OneVision of the same size (median of {repeats}, interleaved)")
    print(table(["model (same vision tower + LLM, random weights)", "visual tokens", "TTFT", "vs LLaVA-OneVision"],
                rows))
    print(f"LLaVA-OneVision: vision_feature_layer -1, 'full' features, 2x2 bilinear pooling, one newline per video; "
          f"attention {llava.config.text_config._attn_implementation}. CoPE rows: the same prefill as the table above.")
    del llava
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def print_profile(model, inputs: dict, names: list[str], device: str) -> list[str]:
    """One profiled prefill per named layout (after the timed runs, without the component hooks): launches, host
    and device time, host syncs. Returns the device kernel (or aten op) names seen, for the attention report."""
    rows, seen = [], []
    for name in names:
        def run(name=name):
            with torch.inference_mode():
                model(**inputs[name], use_cache=True, logits_to_keep=1)

        run()  # warm: allocator and lazy inits outside the profile
        prof = profile_call(run, device)
        syncs = count_host_syncs(run, device)
        seen += prof["kernel_names"]
        rows.append([name if name != f"{GOP}/{GOP}" else "dense", f"{prof['launches']:,}", fmt_ms(prof["host_ms"]),
                     fmt_ms(prof["device_ms"]), fmt_ms(prof["wall_ms"]), "n/a (CPU)" if syncs is None else str(syncs)])
    what = "kernel launches (device kernels + copies)" if device.startswith("cuda") else "aten op calls (CPU)"
    print()
    print("## Profile of one prefill forward (torch.profiler, after the timed runs)")
    print(table(["layout", what, "host time (issue)", "device time (sum of kernels)", "wall (profiled)",
                 "host syncs"], rows))
    print("Launch-bound when host time >= device time: the GPU waits for Python. Host syncs are counted with "
          "torch.cuda.set_sync_debug_mode (the forward itself; the first token's read-back is not in it).")
    return seen


if __name__ == "__main__":
    raise SystemExit(main())
