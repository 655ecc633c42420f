"""GRPO with verifiable rewards on the synthetic motion QA set, starting from an SFT model.

    python examples/grpo_motion_qa.py                      # tiny model: SFT warm start, then GRPO (CPU, minutes)
    python examples/grpo_motion_qa.py --model PATH         # start from a saved CoPE-VideoLM checkpoint (+ processor)
    python examples/grpo_motion_qa.py --temporal-grpo      # T-GRPO: + reward for order-sensitive correct answers

Prints the mean reward (convex mix of format / accuracy / temporal IoU) on held-out prompts before and after GRPO.
The policy is trained with `CoPEGRPOTrainer` (TRL's GRPOTrainer with the video carried into its loss).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import set_seed

from transformers_cope.extras import require_extra

require_extra("train", "trl", "datasets", "evaluate")  # one line, before anything runs, if the [train] extra is missing

from transformers_cope import CoPEVideoLMForConditionalGeneration, CoPEVideoLMProcessor  # noqa: E402
from transformers_cope.data import generate_motion_qa  # noqa: E402
from transformers_cope.data.synthetic_qa import TASKS, to_messages  # noqa: E402
from transformers_cope.training.grpo import CoPEGRPOConfig, CoPEGRPOTrainer, evaluate_rewards, make_grpo_dataset  # noqa: E402
from transformers_cope.training.rewards import DEFAULT_REWARD_WEIGHTS, CombinedReward  # noqa: E402

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "src" / "transformers_cope" / "default_model"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="CoPE-VideoLM checkpoint to start from ('default': the embedded tiny model); "
                                   "without it a fresh tiny model is warm-started with SFT")
    p.add_argument("--processor", help="processor folder (default: the model folder, or the tiny processor)")
    p.add_argument("--output-dir", default="runs/grpo_motion_qa")
    p.add_argument("--data-dir", default=None, help="where the synthetic videos go (default: OUTPUT/data)")
    p.add_argument("--tasks", default="direction,moving,camera_pan,which_moves",
                   help=f"comma-separated motion QA tasks, from {','.join(TASKS)}")
    p.add_argument("--train-samples", type=int, default=96)
    p.add_argument("--eval-samples", type=int, default=24)
    p.add_argument("--sft-steps", type=int, default=None, help="SFT warm-start steps (default: 200 for a fresh "
                                                               "tiny model, 0 with --model)")
    p.add_argument("--sft-lr", type=float, default=2e-3)
    p.add_argument("--grpo-steps", type=int, default=30)
    p.add_argument("--grpo-lr", type=float, default=3e-4)
    p.add_argument("--prompts-per-step", type=int, default=4)
    p.add_argument("--num-generations", type=int, default=6)
    p.add_argument("--max-completion-length", type=int, default=48)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.0, help="KL weight to the SFT model (TRL default 0)")
    p.add_argument("--temporal-grpo", action="store_true", help="T-GRPO temporal-consistency reward")
    p.add_argument("--reward-weights", default=None,
                   help=f"JSON convex mix, default {json.dumps(DEFAULT_REWARD_WEIGHTS)}")
    p.add_argument("--eval-generations", type=int, default=6, help="sampled completions per held-out prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models run best on 1; "
                                                          "raise it for real models on CPU)")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------------- data
def build_data(data_dir: Path, *, train: int, held_out: int, tasks: list[str], seed: int = 0):
    """Train and held-out (validation split: other seeds, other videos) motion QA records."""
    train_records = generate_motion_qa(train, data_dir, split="train", seed=seed, tasks=tasks, progress=False)
    held_records = generate_motion_qa(held_out, data_dir, split="validation", seed=seed, tasks=tasks, progress=False)
    return train_records, held_records


# The tiny recipe of examples/train_motion_qa.py: 8 px motion-vector cells, MVs in units of 0.5 px, 4x4 MV patches.
TINY_PROCESSOR = {"mv_block": 8, "mv_normalizer": 0.5}


def load_processor(path: str | None):
    if path is None:
        from transformers_cope.tiny import build_tiny_processor

        return build_tiny_processor(**TINY_PROCESSOR)
    return CoPEVideoLMProcessor.from_pretrained(path)


def tiny_model():
    """A fresh tiny CoPE-VideoLM matching `load_processor(None)`."""
    from transformers_cope.tiny import tiny_model_config
    from transformers_cope.training import init_projection_layers

    base = tiny_model_config()
    delta = {**base.delta_config.to_dict(), "mv_patch_size": 4}
    model = CoPEVideoLMForConditionalGeneration(
        tiny_model_config(delta_config=delta, mv_normalizer=TINY_PROCESSOR["mv_normalizer"])
    )
    init_projection_layers(model)
    return model


def sft_warm_start(records, processor, *, steps: int, lr: float, output_dir: Path, model=None, seed: int = 0):
    """A short SFT on `<think>trace</think><answer>answer</answer>` replies (the policy's starting point), with
    the package's SFT collator; a fresh tiny model when `model` is None."""
    from transformers_cope.training import (
        ChatVideoDataset,
        CoPEDataCollator,
        apply_freezing,
        build_trainer,
        freeze_batchnorm,
        sft_arguments,
    )

    set_seed(seed)
    if model is None:
        model = tiny_model()
        apply_freezing(model, "full")  # a tiny model from scratch has no pretrained vision tower to keep
    else:
        apply_freezing(model, "paper")
    freeze_batchnorm(model)
    collator = CoPEDataCollator(processor)
    dataset = ChatVideoDataset([to_messages(r, reasoning=True) for r in records], collator, progress=False)
    args = sft_arguments(
        str(output_dir / "sft_run"), max_steps=steps, per_device_train_batch_size=16, learning_rate=lr,
        lr_scheduler_type="cosine", warmup_steps=max(1, steps // 10), weight_decay=0.0, logging_steps=max(1, steps // 5),
        save_strategy="no", use_cpu=not torch.cuda.is_available(), disable_tqdm=True, seed=seed,
    )
    build_trainer(model, processor, dataset, args=args, data_collator=collator).train()
    return model


def starting_point(args, train_records, output_dir: Path):
    """(model, processor, path of the saved starting checkpoint)."""
    model_path = args.model
    if model_path == "default":
        if not DEFAULT_MODEL_DIR.is_dir():
            raise SystemExit(f"--model default: no embedded model at {DEFAULT_MODEL_DIR}")
        model_path = str(DEFAULT_MODEL_DIR)
    processor = load_processor(args.processor or model_path)
    model = CoPEVideoLMForConditionalGeneration.from_pretrained(model_path) if model_path else None
    steps = args.sft_steps if args.sft_steps is not None else (0 if model is not None else 200)
    if model is None or steps > 0:
        t = time.time()
        model = sft_warm_start(train_records, processor, steps=steps, lr=args.sft_lr, output_dir=output_dir,
                               model=model, seed=args.seed)
        print(f"SFT warm start: {steps} steps in {time.time() - t:.0f} s")
    start_dir = output_dir / "sft"
    model.save_pretrained(start_dir)
    processor.save_pretrained(start_dir)
    return model, processor, start_dir


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    data_dir = Path(args.data_dir) if args.data_dir else output_dir / "data"
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    train_records, held_records = build_data(data_dir, train=args.train_samples, held_out=args.eval_samples,
                                             tasks=tasks, seed=args.seed)
    print(f"data: {len(train_records)} train / {len(held_records)} held-out prompts, tasks {tasks}")

    _, processor, start_dir = starting_point(args, train_records, output_dir)
    # The policy is loaded from the saved starting point, so TRL can also load it as the KL reference (beta > 0).
    model = CoPEVideoLMForConditionalGeneration.from_pretrained(start_dir)
    reward = CombinedReward(json.loads(args.reward_weights) if args.reward_weights else None)
    evaluate = dict(reward_fn=reward, num_samples=args.eval_generations, temperature=args.temperature,
                    max_new_tokens=args.max_completion_length, progress=False)

    set_seed(args.seed + 1)
    before = evaluate_rewards(model, processor, held_records, **evaluate)

    config = CoPEGRPOConfig(
        output_dir=str(output_dir / "grpo_run"),
        max_steps=args.grpo_steps,
        learning_rate=args.grpo_lr,
        lr_scheduler_type="constant",
        per_device_train_batch_size=args.prompts_per_step * args.num_generations,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        beta=args.beta,
        temporal_grpo=args.temporal_grpo,
        logging_steps=max(1, args.grpo_steps // 10),
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        seed=args.seed,
        gradient_checkpointing=False,
    )
    trainer = CoPEGRPOTrainer(model, reward_funcs=[reward], args=config,
                              train_dataset=make_grpo_dataset(train_records), processing_class=processor)
    t = time.time()
    trainer.train()
    print(f"GRPO: {args.grpo_steps} steps in {time.time() - t:.0f} s")
    train_rewards = [log["reward"] for log in trainer.state.log_history if "reward" in log]
    if train_rewards:
        print("training reward per logging step:", " ".join(f"{r:.3f}" for r in train_rewards))

    set_seed(args.seed + 1)
    after = evaluate_rewards(trainer.model, processor, held_records, **evaluate)
    print(f"\nheld-out prompts: {len(held_records)}, {args.eval_generations} samples each at T={args.temperature}")
    print(f"{'metric':<24}{'SFT start':>12}{'after GRPO':>12}")
    for key in before:
        print(f"{key:<24}{before[key]:>12.3f}{after.get(key, float('nan')):>12.3f}")
    final_dir = output_dir / "grpo"
    trainer.model.save_pretrained(final_dir)
    processor.save_pretrained(final_dir)
    print(f"saved the GRPO model to {final_dir}")
    return before, after


if __name__ == "__main__":
    main()
