"""Test-time scaling on held-out motion QA: greedy vs self-consistency (K sampled chains, majority vote over
<answer>) vs best-of-N (a verifier picks one chain).

    python examples/test_time_scaling.py                 # tiny model, SFT warm start (CPU, minutes)
    python examples/test_time_scaling.py --model PATH    # a saved CoPE-VideoLM checkpoint (e.g. the GRPO example's)

The best-of-N verifier never sees the answer: it is the format reward, ties broken by the model's confidence.
The same functions serve the pipeline: `transformers_cope.test_time_scaling.{self_consistency, best_of_n}`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import set_seed

from transformers_cope.extras import require_extra

require_extra("train", "trl", "datasets", "evaluate")  # one line, before anything runs, if the [train] extra is missing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # reuse the GRPO example's data and warm start

from grpo_motion_qa import DEFAULT_MODEL_DIR, build_data, load_processor, sft_warm_start  # noqa: E402

from transformers_cope import CoPEVideoLMForConditionalGeneration  # noqa: E402
from transformers_cope.data.synthetic_qa import TASKS, to_messages  # noqa: E402
from transformers_cope.test_time_scaling import best_of_n, extract_answer, sample_chains, self_consistency  # noqa: E402
from transformers_cope.training.rewards import format_reward, is_correct  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="CoPE-VideoLM checkpoint ('default': the embedded tiny model); without it a "
                                   "fresh tiny model is warm-started with SFT on reasoning traces")
    p.add_argument("--processor", help="processor folder (default: the model folder, or the tiny processor)")
    p.add_argument("--output-dir", default="runs/test_time_scaling")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tasks", default="direction,moving,camera_pan,which_moves",
                   help=f"comma-separated motion QA tasks, from {','.join(TASKS)}")
    p.add_argument("--train-samples", type=int, default=96)
    p.add_argument("--eval-samples", type=int, default=48)
    p.add_argument("--sft-steps", type=int, default=200)
    p.add_argument("--sft-lr", type=float, default=2e-3)
    p.add_argument("--k", type=int, default=5, help="self-consistency chains")
    p.add_argument("--n", type=int, default=5, help="best-of-N chains")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models run best on 1; "
                                                          "raise it for real models on CPU)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    data_dir = Path(args.data_dir) if args.data_dir else output_dir / "data"
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    train_records, held_records = build_data(data_dir, train=args.train_samples, held_out=args.eval_samples,
                                             tasks=tasks, seed=args.seed)
    model_path = str(DEFAULT_MODEL_DIR) if args.model == "default" else args.model
    processor = load_processor(args.processor or model_path)
    if model_path:
        model = CoPEVideoLMForConditionalGeneration.from_pretrained(model_path)
    else:
        t = time.time()
        model = sft_warm_start(train_records, processor, steps=args.sft_steps, lr=args.sft_lr, output_dir=output_dir,
                               seed=args.seed)
        print(f"SFT warm start: {args.sft_steps} steps in {time.time() - t:.0f} s")
    model.eval()

    def verifier(prompts, completions, **kwargs):  # answer-free: well-formed chains first
        return format_reward(prompts, completions)

    hits = {"greedy": 0, f"self-consistency@{args.k}": 0, f"best-of-{args.n}": 0}
    agreement = 0.0
    set_seed(args.seed + 1)
    t = time.time()
    for record in held_records:
        messages = to_messages(record, reasoning=True, include_answer=False)
        check = dict(options=record.get("options"), answer_type=record.get("answer_type"))
        greedy, _ = sample_chains(model, processor, messages=messages, n=1, do_sample=False,
                                  max_new_tokens=args.max_new_tokens)
        sc = self_consistency(model, processor, messages=messages, k=args.k, temperature=args.temperature,
                              max_new_tokens=args.max_new_tokens, options=record.get("options"))
        bon = best_of_n(model, processor, messages=messages, n=args.n, reward_fn=verifier,
                        temperature=args.temperature, max_new_tokens=args.max_new_tokens)
        hits["greedy"] += is_correct(extract_answer(greedy[0]), record["answer"], **check)
        hits[f"self-consistency@{args.k}"] += is_correct(sc["answer"], record["answer"], **check)
        hits[f"best-of-{args.n}"] += is_correct(bon["answer"], record["answer"], **check)
        agreement += sc["agreement"]
    n = len(held_records)
    print(f"\nheld-out accuracy on {n} prompts ({time.time() - t:.0f} s, temperature {args.temperature}):")
    for name, count in hits.items():
        print(f"  {name:<22}{count / n:.3f}  ({count}/{n})")
    print(f"  mean self-consistency agreement: {agreement / n:.2f}")
    return {name: count / n for name, count in hits.items()}


if __name__ == "__main__":
    main()
