"""Δ-encoder alignment pre-training (CoPE-VideoLM's first stage) on synthetic textured videos.

    python examples/align_delta_encoder.py                  # tiny model (CPU, minutes)
    python examples/align_delta_encoder.py --model PATH     # a saved CoPE-VideoLM checkpoint (+ its processor)
    python examples/align_delta_encoder.py --videos DIR     # your own .mp4 files instead of synthetic ones

For every Δ step, auxiliary reference/warped transformers predict the frozen vision tower's tokens of the step's
frame from the previous frame's tokens, the motion tokens and the residual tokens. Prints the held-out patch-wise MSE
next to the "copy the reference frame's tokens" baseline, then saves the CoPE model (aligned Δ-encoder, no auxiliary
parts).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from transformers import TrainingArguments, set_seed

from transformers_cope import CoPEVideoLMForConditionalGeneration, CoPEVideoLMProcessor
from transformers_cope.data import make_textured_video
from transformers_cope.training.alignment import (
    DeltaAlignmentConfig,
    DeltaAlignmentDataset,
    evaluate_alignment,
    train_alignment,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="CoPE-VideoLM checkpoint (default: a fresh tiny model)")
    p.add_argument("--processor", help="processor folder (default: the model folder, or the tiny processor)")
    p.add_argument("--videos", help="folder of videos to align on (default: synthetic textured videos)")
    p.add_argument("--output-dir", default="runs/align_delta_encoder")
    p.add_argument("--train-videos", type=int, default=32)
    p.add_argument("--eval-videos", type=int, default=8)
    p.add_argument("--size", type=int, default=64, help="side of the synthetic videos")
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--layers", type=int, default=2, help="layers of each auxiliary transformer")
    p.add_argument("--hidden-size", type=int, default=None, help="auxiliary transformers' width")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models run best on 1; "
                                                          "raise it for real models on CPU)")
    return p.parse_args(argv)


def synthetic_videos(folder: Path, count: int, *, size: int, seed: int) -> list[Path]:
    """8 s textured videos (5 fps) with a random camera pan and, mostly, a sprite moving on its own."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pan = tuple(float(v) for v in rng.uniform(-2.0, 2.0, 2) * size / 64)
        sprite = tuple(float(v) for v in rng.uniform(-3.0, 3.0, 2) * size / 64) if rng.random() < 0.8 else None
        path = folder / f"video_{seed}_{i:04d}.mp4"
        if not path.exists():
            make_textured_video(path, height=size, width=size, num_frames=40, fps=5, pan=pan, sprite_velocity=sprite,
                                seed=seed * 10_000 + i)
        paths.append(path)
    return paths


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)

    if args.model:
        model = CoPEVideoLMForConditionalGeneration.from_pretrained(args.model)
    else:
        from transformers_cope.tiny import tiny_model_config

        model = CoPEVideoLMForConditionalGeneration(tiny_model_config())
    processor_path = args.processor or args.model
    if processor_path:
        processor = CoPEVideoLMProcessor.from_pretrained(processor_path)
    else:
        from transformers_cope.tiny import build_tiny_processor

        processor = build_tiny_processor()

    if args.videos:
        files = sorted(p for p in Path(args.videos).iterdir() if p.suffix.lower() in (".mp4", ".mkv", ".mov", ".avi"))
        if len(files) < 2:
            raise SystemExit(f"need at least 2 videos in {args.videos}")
        cut = max(1, len(files) // 5)
        train_paths, eval_paths = files[cut:], files[:cut]
    else:
        data = output_dir / "videos"
        train_paths = synthetic_videos(data / "train", args.train_videos, size=args.size, seed=args.seed + 1)
        eval_paths = synthetic_videos(data / "held_out", args.eval_videos, size=args.size, seed=args.seed + 2)
    t = time.time()
    train = DeltaAlignmentDataset(train_paths, processor.video_processor)
    held_out = DeltaAlignmentDataset(eval_paths, processor.video_processor)
    print(f"{len(train)} training / {len(held_out)} held-out Δ steps ({time.time() - t:.0f} s to extract)")

    config = DeltaAlignmentConfig(num_layers=args.layers, hidden_size=args.hidden_size)
    training_args = TrainingArguments(
        str(output_dir / "run"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, warmup_steps=max(1, args.steps // 20), lr_scheduler_type="cosine", weight_decay=0.0,
        logging_steps=max(1, args.steps // 10), save_strategy="no", report_to="none",
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True, seed=args.seed,
    )
    t = time.time()
    aligner, _ = train_alignment(model, train, training_args, config=config)
    print(f"alignment pre-training: {args.steps} steps in {time.time() - t:.0f} s")
    result = evaluate_alignment(aligner, held_out)
    print("\nheld-out patch-wise MSE to the frozen vision tower's tokens of the target frame:")
    print(f"  copy the reference frame's tokens (baseline) {result['copy_mse']:.4f}")
    print(f"  reference transformer (motion tokens only)   {result['reference_mse']:.4f}")
    print(f"  aligned: + residual tokens (warped)          {result['mse']:.4f}"
          f"   ({100 * (1 - result['mse'] / result['copy_mse']):.0f}% below the baseline)")

    save_dir = output_dir / "aligned"
    model.save_pretrained(save_dir)
    processor.save_pretrained(save_dir)
    aux = []
    for shard in save_dir.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            aux += [k for k in f.keys() if "reference_transformer" in k or "warped_transformer" in k]
    if aux:
        raise RuntimeError(f"auxiliary weights leaked into the saved model: {aux[:3]}")
    print(f"saved the aligned CoPE model (no auxiliary transformers) to {save_dir}")
    return result


if __name__ == "__main__":
    main()
