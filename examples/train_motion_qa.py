#!/usr/bin/env python
"""Train a CoPE-VideoLM on synthetic motion QA and compare it with and without its Δ steps.

The headline experiment of transformers-cope: every question asks about motion and a single frame carries no
information about the answer (the synthetic benchmark is built that way), so a model that reads the codec's Δ steps
(motion vectors + residuals) can answer, and the same model fed only its RGB keyframes cannot. The script

  1. renders the synthetic motion QA videos (train + held-out test split; cached under --data-dir),
  2. builds a tiny CoPE-VideoLM from scratch (or loads any saved CoPE model/processor folder with --model PATH),
  3. fine-tunes it with `transformers.Trainer` (or TRL's `SFTTrainer` with --use-trl) on the answers only,
  4. evaluates greedy answers on the held-out split twice, with Δ steps and keyframes only, and prints both.

Runs unchanged on one CPU, or under `accelerate launch` with DDP or FSDP:
    python examples/train_motion_qa.py
    accelerate launch --config_file examples/accelerate_ddp.yaml examples/train_motion_qa.py
    accelerate launch --config_file examples/accelerate_fsdp.yaml examples/train_motion_qa.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

DEFAULT_DATA_DIR = Path(os.environ.get("COPE_DATA_DIR", Path.home() / ".cache" / "transformers_cope" / "motion_qa"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=None, help="saved CoPE model + processor folder to start from (default: a tiny "
                                                 "model built from scratch)")
    p.add_argument("--output-dir", default="outputs/motion_qa", help="where the trained model + processor go")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="synthetic videos are rendered (once) here")
    p.add_argument("--tasks", default="direction", help="comma-separated synthetic QA tasks")
    p.add_argument("--train-samples", type=int, default=1024)
    p.add_argument("--test-samples", type=int, default=128)
    p.add_argument("--duration", default="4", help="seconds per synthetic video (1 step per second); a comma list "
                                                   "(e.g. 4,8) splits the samples evenly over clip lengths")
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--max-steps", type=int, default=-1, help="overrides --epochs when > 0")
    p.add_argument("--batch-size", type=int, default=16, help="per device")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-steps", type=int, default=30)
    p.add_argument("--optim", default="adamw_torch")
    p.add_argument("--freeze", default=None, choices=["paper", "full", "delta", "lora"],
                   help="freezing preset (training/sft.py); default 'full' from scratch (nothing is pretrained), "
                        "'paper' (vision tower frozen) with --model")
    p.add_argument("--freeze-batchnorm", action=argparse.BooleanOptionalAction, default=True,
                   help="Δ-encoder BatchNorm on running statistics: N processes train exactly like one")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--use-trl", action="store_true", help="train with TRL's SFTTrainer instead of Trainer")
    p.add_argument("--text-hidden-size", type=int, default=64, help="tiny model only")
    p.add_argument("--text-layers", type=int, default=2, help="tiny model only")
    p.add_argument("--mv-block", type=int, default=8, help="tiny model only: motion-vector cell (px of 64 px frames)")
    p.add_argument("--mv-normalizer", type=float, default=0.5, help="tiny model only: MV px per input unit")
    p.add_argument("--mv-patch-size", type=int, default=4, help="tiny model only: MV cells per Δ-encoder patch side")
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--workers", type=int, default=2, help="processes for rendering and codec extraction")
    p.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is there (automatic without CUDA; "
                                                 "under `accelerate launch` that gives gloo DDP over CPU processes)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads per process (the tiny model's ops are too small to gain from more; "
                        "0 = torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logging-steps", type=int, default=25)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def build_model_and_processor(args):
    """A saved CoPE model/processor (--model) or a tiny one from scratch sized by the flags."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import transformers_cope  # noqa: F401  (Auto registration)
    from transformers_cope.tiny import build_tiny_processor, tiny_model_config
    from transformers_cope.training import init_projection_layers

    if args.model:
        return AutoModelForImageTextToText.from_pretrained(args.model), AutoProcessor.from_pretrained(args.model)
    processor = build_tiny_processor(mv_block=args.mv_block, mv_normalizer=args.mv_normalizer)
    base = tiny_model_config()
    text = base.text_config.to_dict()
    heads = max(1, args.text_hidden_size // 16)
    text.pop("layer_types", None)
    text.update(hidden_size=args.text_hidden_size, intermediate_size=2 * args.text_hidden_size,
                num_hidden_layers=args.text_layers, num_attention_heads=heads,
                num_key_value_heads=max(1, heads // 2), head_dim=args.text_hidden_size // heads)
    delta = base.delta_config.to_dict()
    delta.update(mv_patch_size=args.mv_patch_size)
    config = tiny_model_config(text_config=text, delta_config=delta, mv_normalizer=args.mv_normalizer)
    model = AutoModelForImageTextToText.from_config(config)
    init_projection_layers(model)
    return model, processor


def motion_qa_split(args, split: str, num_samples: int, tasks: list[str]) -> list[dict]:
    """Render (or reuse) `num_samples` records of a split, spread over the clip lengths in --duration; the folder
    name pins every setting, so reruns reuse the videos."""
    from transformers_cope.data.shifted_qa import ShiftedMotionQA
    from transformers_cope.data.synthetic_qa import SyntheticMotionQA

    travel_scale = float(getattr(args, "travel_scale", 1.0))
    durations = [float(d) for d in str(args.duration).split(",") if d.strip()]
    records = []
    for i, duration in enumerate(durations):
        count = num_samples // len(durations) + (1 if i < num_samples % len(durations) else 0)
        if count == 0:
            continue
        folder = Path(args.data_dir) / f"{'-'.join(tasks)}_{duration:g}s_seed{args.seed}"
        if travel_scale != 1.0:
            folder = folder.with_name(folder.name + f"_travel{travel_scale:g}")
            generator = ShiftedMotionQA(travel_scale=travel_scale, tasks=tasks, duration_s=duration)
        else:
            generator = SyntheticMotionQA(tasks=tasks, duration_s=duration)
        records += generator.generate(count, folder, seed=args.seed, split=split, num_workers=args.workers,
                                      overwrite=False, progress=not args.quiet)
    return records


def main(argv=None) -> dict:
    args = parse_args(argv)
    from transformers_cope.extras import require_extra

    # up front, not after minutes of training: evaluate/datasets score the held-out split, TRL and PEFT on request
    require_extra("train", "evaluate", "datasets", *(["trl"] if args.use_trl else []),
                  *(["peft"] if args.freeze == "lora" else []))
    args.freeze = args.freeze or ("paper" if args.model else "full")
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import set_seed

    from transformers_cope.data.synthetic_qa import to_messages
    from transformers_cope.training import (
        ChatVideoDataset,
        CoPEDataCollator,
        apply_freezing,
        build_trainer,
        evaluate_video_qa,
        freeze_batchnorm,
        load_model_and_processor,
        set_chat_stop_tokens,
        sft_arguments,
    )

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    training_args = sft_arguments(
        args.output_dir,
        use_trl=args.use_trl,
        gradient_checkpointing=args.gradient_checkpointing,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_steps,
        weight_decay=0.0,
        optim=args.optim,
        logging_steps=args.logging_steps,
        save_strategy="no",
        seed=args.seed,
        disable_tqdm=args.quiet,
        dataloader_num_workers=0,
        use_cpu=args.cpu or not torch.cuda.is_available(),
    )
    is_main = training_args.process_index == 0
    with training_args.main_process_first(desc="render synthetic motion QA"):
        train_records = motion_qa_split(args, "train", args.train_samples, tasks)
        test_records = motion_qa_split(args, "test", args.test_samples, tasks) if not args.no_eval else []

    set_seed(args.seed)
    model, processor = build_model_and_processor(args)
    counts = apply_freezing(model, args.freeze)
    if args.freeze_batchnorm:
        freeze_batchnorm(model)
    collator = CoPEDataCollator(processor)
    train_dataset = ChatVideoDataset([to_messages(r) for r in train_records], collator, num_workers=args.workers,
                                     progress=not args.quiet)
    peft_config = None
    if args.freeze == "lora":
        from transformers_cope.training.lora import lora_config

        peft_config = lora_config(model)
    if is_main:
        print(f"model: {counts['trainable']:,} trainable of {counts['total']:,} parameters; "
              f"{len(train_dataset)} training samples ({', '.join(tasks)})", flush=True)
    trainer = build_trainer(model, processor, train_dataset, args=training_args, data_collator=collator,
                            peft_config=peft_config)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start

    # Stop generation at the end of the assistant turn, then save model + processor (safetensors).
    set_chat_stop_tokens(model, processor)
    trainer.save_model(args.output_dir)
    results = {"train_seconds": round(train_seconds, 1), "output_dir": str(args.output_dir), "tasks": tasks,
               "train_samples": len(train_dataset), "world_size": training_args.world_size,
               "distributed_type": str(trainer.accelerator.distributed_type),
               # FSDP units (decoder, vision and Δ layers from `_no_split_modules`, plus the root)
               "fsdp_units": sum(type(m).__name__.startswith("FSDP") for m in trainer.model_wrapped.modules())}
    if is_main and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not results["fsdp_units"]:
        print("note: FSDP was requested but Accelerate runs FSDP on accelerators only; "
              f"this CPU run used {results['distributed_type']} (plain data parallel) instead", flush=True)
    if args.no_eval or not is_main:
        if is_main:
            print(json.dumps(results))
        return results

    # Evaluated on the main process only: the unwrapped model (a PeftModel with --freeze lora), or for FSDP, whose
    # parameters are sharded across processes, the full checkpoint just saved.
    evaluated = trainer.accelerator.unwrap_model(trainer.model)
    if "FSDP" in results["distributed_type"]:
        evaluated, _ = load_model_and_processor(args.output_dir)
    eval_kwargs = dict(processor=processor, batch_size=args.eval_batch_size, progress=not args.quiet,
                       cache=collator.cache)
    with_delta = evaluate_video_qa(evaluated, test_records, **eval_kwargs)
    keyframes = evaluate_video_qa(evaluated, test_records, keyframes_only=True, **eval_kwargs)
    results.update(
        delta_accuracy=with_delta.accuracy,
        keyframes_only_accuracy=keyframes.accuracy,
        delta_per_task=with_delta.per_task,
        keyframes_only_per_task=keyframes.per_task,
        test_samples=with_delta.num_samples,
    )
    chance = {"direction": 0.25, "camera_pan": 0.5, "moving": 0.5}
    print(f"train time: {train_seconds:.1f} s ({results['train_samples']} samples, {len(tasks)} task(s))")
    print(f"held-out accuracy with Δ steps:      {with_delta.accuracy:.3f}  ({with_delta.summary()})")
    print(f"held-out accuracy keyframes only:    {keyframes.accuracy:.3f}  ({keyframes.summary()})")
    known = [chance[t] for t in tasks if t in chance]
    if known:
        print(f"chance level: {sum(known) / len(known):.3f}")
    Path(args.output_dir, "eval_results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
