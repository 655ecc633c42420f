"""Δ-encoder alignment pre-training (CoPE-VideoLM's first stage) on synthetic textured videos, with its controls.

    python examples/align_delta_encoder.py                  # tiny model, 2 seeds x 3 variants (CPU, minutes)
    python examples/align_delta_encoder.py --model PATH     # a saved CoPE-VideoLM checkpoint (+ its processor)
    python examples/align_delta_encoder.py --videos DIR     # your own .mp4 files instead of synthetic ones

For every Δ step, auxiliary reference/warped transformers predict the frozen vision tower's tokens of the step's
frame from the previous frame's tokens, the motion tokens and the residual tokens. The auxiliary transformers also see
the reference tokens, so they can lower the MSE without the Δ-encoder (e.g. by shrinking tokens to their mean). The
example therefore trains the same recipe three times per seed, with the real Δ inputs, with the Δ inputs zeroed and
with the Δ inputs of another step (shuffled), and prints their held-out patch-wise MSE next to the copy baseline and
the best affine shrink of the reference tokens (fitted on the training split). Only "with Δ" below "Δ zeroed" by more
than the seed spread shows that the Δ-encoder carries information.

Defaults chosen so that the Δ-encoder's contribution is measurable (see the README's training table):
  - more data with motion in every clip: 192 training videos (1,344 Δ steps), each with a camera pan (up to 2 px
    per frame) and an object moving on its own (up to 3 px per frame): 10-15 px per 1 s step, inside x264's motion
    search range (larger steps gave the codec nothing to find and Δ nothing to add). Measured (seeds 0/1), Δ's
    margin over Δ zeroed: 32 videos none or negative, 96 videos +0.0068 / +0.0008 (no larger than the seed spread),
    192 videos +0.0047 / +0.0072 (the seed spread of "with Δ" is 0.0014);
  - small auxiliary transformers (1 layer, width 32 = the vision width): less capacity to fit the reference alone;
  - tower tokens computed once (the tower is frozen), and early stopping on a validation split (other videos):
    every variant stops at its own best step, so none is compared past its overfitting point.
The saved model is the "with Δ" run of the first seed (aligned Δ-encoder, no auxiliary parts).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

from transformers_cope import CoPEVideoLMForConditionalGeneration, CoPEVideoLMProcessor
from transformers_cope.data import make_textured_video
from transformers_cope.training.alignment import (
    DeltaAlignmentConfig,
    DeltaAlignmentDataset,
    evaluate_alignment,
    train_alignment,
)
from transformers_cope.training.alignment_controls import (
    ablate_delta,
    mean_shrink_baseline,
    per_step_mse,
    with_vision_tokens,
)

VARIANTS = {"none": "aligned, with Δ", "zero": "aligned, Δ zeroed", "shuffle": "aligned, Δ shuffled across steps"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="CoPE-VideoLM checkpoint (default: a fresh tiny model)")
    p.add_argument("--processor", help="processor folder (default: the model folder, or the tiny processor)")
    p.add_argument("--videos", help="folder of videos to align on (default: synthetic textured videos)")
    p.add_argument("--output-dir", default="runs/align_delta_encoder")
    p.add_argument("--train-videos", type=int, default=192)
    p.add_argument("--val-videos", type=int, default=16, help="validation split for early stopping")
    p.add_argument("--eval-videos", type=int, default=16, help="held-out videos (7 Δ steps each)")
    p.add_argument("--size", type=int, default=64, help="side of the synthetic videos")
    p.add_argument("--max-pan", type=float, default=2.0, help="camera pan, px per frame at 64 px (uniform +-)")
    p.add_argument("--max-object", type=float, default=3.0, help="object velocity, px per frame at 64 px")
    p.add_argument("--steps", type=int, default=1500, help="most training steps (early stopping may stop sooner)")
    p.add_argument("--eval-every", type=int, default=50, help="validation every N steps")
    p.add_argument("--patience", type=int, default=4, help="validations without improvement before stopping")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--layers", type=int, default=1, help="layers of each auxiliary transformer")
    p.add_argument("--hidden-size", type=int, default=32, help="auxiliary transformers' width")
    p.add_argument("--variants", default="none,zero,shuffle", help=f"comma list from {','.join(VARIANTS)}")
    p.add_argument("--seeds", default="0,1", help="comma list of training seeds: auxiliary initialisation and batch "
                                                  "order (the data and the model stay the same)")
    p.add_argument("--model-seed", type=int, default=0, help="initialisation of a fresh tiny model (its frozen "
                                                             "vision tower defines the targets)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models run best on 1; "
                                                          "raise it for real models on CPU)")
    return p.parse_args(argv)


def synthetic_videos(folder: Path, count: int, *, size: int, seed: int, max_pan: float = 2.0,
                     max_object: float = 3.0) -> list[Path]:
    """8 s textured videos (5 fps) with a random camera pan and a sprite moving on its own."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pan = tuple(float(v) for v in rng.uniform(-max_pan, max_pan, 2) * size / 64)
        sprite = tuple(float(v) for v in rng.uniform(-max_object, max_object, 2) * size / 64)
        path = folder / f"video_{seed}_{i:04d}_{max_pan:g}_{max_object:g}.mp4"
        if not path.exists():
            make_textured_video(path, height=size, width=size, num_frames=40, fps=5, pan=pan, sprite_velocity=sprite,
                                seed=seed * 10_000 + i)
        paths.append(path)
    return paths


def load_stack(args):
    if args.model:
        model = CoPEVideoLMForConditionalGeneration.from_pretrained(args.model)
    else:
        from transformers_cope.tiny import tiny_model_config

        model = CoPEVideoLMForConditionalGeneration(tiny_model_config())
    processor_path = args.processor or args.model
    if processor_path:
        return model, CoPEVideoLMProcessor.from_pretrained(processor_path)
    from transformers_cope.tiny import build_tiny_processor

    return model, build_tiny_processor()


def video_splits(args, output_dir: Path):
    """(train, validation, held-out) video paths."""
    if args.videos:
        files = sorted(p for p in Path(args.videos).iterdir() if p.suffix.lower() in (".mp4", ".mkv", ".mov", ".avi"))
        if len(files) < 3:
            raise SystemExit(f"need at least 3 videos in {args.videos}")
        cut = max(1, len(files) // 5)
        return files[2 * cut:], files[cut:2 * cut], files[:cut]
    data = output_dir / "videos"
    kw = dict(size=args.size, max_pan=args.max_pan, max_object=args.max_object)
    return (synthetic_videos(data / "train", args.train_videos, seed=1, **kw),
            synthetic_videos(data / "validation", args.val_videos, seed=2, **kw),
            synthetic_videos(data / "held_out", args.eval_videos, seed=3, **kw))


def train_variant(args, variant: str, seed: int, train, validation, held_out, output_dir: Path):
    """One alignment run on the Δ variant's data: (model, held-out summary, per-step held-out MSE, steps, seconds)."""
    set_seed(args.model_seed)  # the same "pretrained" model (frozen vision tower = same targets) for every run
    model, _ = load_stack(args)
    set_seed(seed)
    training_args = TrainingArguments(
        str(output_dir / f"run_{variant}_{seed}"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, warmup_steps=max(1, args.steps // 20), lr_scheduler_type="cosine", weight_decay=0.0,
        logging_steps=args.eval_every, eval_strategy="steps", eval_steps=args.eval_every, save_strategy="steps",
        save_steps=args.eval_every, save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="loss",
        greater_is_better=False, report_to="none", use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
        seed=seed,
    )
    config = DeltaAlignmentConfig(num_layers=args.layers, hidden_size=args.hidden_size)
    t = time.time()
    aligner, trainer = train_alignment(
        model, ablate_delta(train, variant, seed=seed), training_args, config=config,
        eval_dataset=ablate_delta(validation, variant, seed=seed + 1),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=args.patience)],
    )
    seconds = time.time() - t
    held = ablate_delta(held_out, variant, seed=seed + 2)
    best_step = int(str(trainer.state.best_model_checkpoint or "-0").rsplit("-", 1)[-1])
    return model, evaluate_alignment(aligner, held), per_step_mse(aligner, held), best_step, seconds


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.4f}"
    return f"{mean:.4f}  [{min(values):.4f} .. {max(values):.4f}]"


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    output_dir = Path(args.output_dir)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or "none" not in variants:
        raise SystemExit(f"--variants must include 'none' and come from {list(VARIANTS)}; got {variants}")
    seeds = [int(s) for s in args.seeds.split(",")]

    _, processor = load_stack(args)
    t = time.time()
    train_paths, val_paths, held_paths = video_splits(args, output_dir)
    set_seed(args.model_seed)
    token_source = _aligner_for_tokens(args)  # the frozen tower: its tokens are computed once, not every step
    splits = [with_vision_tokens(token_source, DeltaAlignmentDataset(paths, processor.video_processor,
                                                                    progress=False))
              for paths in (train_paths, val_paths, held_paths)]
    train, validation, held_out = splits
    print(f"Δ steps: {len(train)} training / {len(validation)} validation / {len(held_out)} held-out "
          f"({time.time() - t:.0f} s to render and extract)")

    results: dict[str, list[dict]] = {v: [] for v in variants}
    saved = None
    for seed in seeds:
        for variant in variants:
            model, summary, steps_mse, best, seconds = train_variant(args, variant, seed, train, validation,
                                                                     held_out, output_dir)
            results[variant].append({"mse": summary["mse"], "copy_mse": summary["copy_mse"], "per_step": steps_mse,
                                     "best_step": best, "seconds": seconds})
            print(f"seed {seed} {VARIANTS[variant]:<34} held-out MSE {summary['mse']:.4f} "
                  f"(best validation at step {best}, {seconds:.0f} s)")
            if variant == "none" and saved is None:
                saved = model
    shrink = mean_shrink_baseline(token_source, train, held_out)
    copy_mse = results["none"][0]["copy_mse"]

    print(f"\nheld-out patch-wise MSE to the frozen vision tower's tokens ({len(held_out)} Δ steps of "
          f"{len(held_paths)} videos), mean over seeds {seeds} [min .. max]:")
    print(f"  {'copy the reference frame tokens':<36}{copy_mse:.4f}")
    print(f"  {'mean-shrink of the reference tokens':<36}{shrink['mean_shrink_mse']:.4f}  (a = {shrink['shrink']:.3f})")
    for variant in variants:
        print(f"  {VARIANTS[variant]:<36}{_spread([r['mse'] for r in results[variant]])}")
    for variant in variants:
        if variant == "none":
            continue
        gains = []
        for with_delta, control in zip(results["none"], results[variant]):
            diff = control["per_step"] - with_delta["per_step"]  # paired over held-out steps
            half = 1.96 * float(diff.std(unbiased=True)) / len(diff) ** 0.5
            gains.append((float(diff.mean()), half))
        text = ", ".join(f"{g:+.4f} ± {h:.4f}" for g, h in gains)
        print(f"  {VARIANTS[variant]} minus with Δ, per seed (paired 95% interval over steps): {text}")
    result = {v: statistics.fmean(r["mse"] for r in results[v]) for v in variants}
    result.update(copy_mse=copy_mse, mean_shrink_mse=shrink["mean_shrink_mse"],
                  per_seed={v: [r["mse"] for r in results[v]] for v in variants})

    save_dir = output_dir / "aligned"
    saved.save_pretrained(save_dir)
    processor.save_pretrained(save_dir)
    aux = []
    for shard in save_dir.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            aux += [k for k in f.keys() if "reference_transformer" in k or "warped_transformer" in k]
    if aux:
        raise RuntimeError(f"auxiliary weights leaked into the saved model: {aux[:3]}")
    print(f"saved the aligned CoPE model (seed {seeds[0]}, no auxiliary transformers) to {save_dir}")
    return result


def _aligner_for_tokens(args):
    """An aligner around a freshly loaded model, used only for its frozen vision tower (the tokens' source)."""
    from transformers_cope.training.alignment import CoPEDeltaAligner

    model, _ = load_stack(args)
    return CoPEDeltaAligner(model)


if __name__ == "__main__":
    main()
