"""Test-time scaling on held-out motion QA: greedy vs one sampled chain vs self-consistency (K sampled chains,
majority vote over <answer>) vs best-of-N (a verifier picks one chain).

    python examples/test_time_scaling.py                 # tiny model, SFT warm start (CPU, minutes)
    python examples/test_time_scaling.py --model PATH    # a saved CoPE-VideoLM checkpoint (e.g. the GRPO example's)

Voting only has room when single samples are often, but not always, right. The default model is the GRPO example's
SFT start (direction task, 4 s clips, 512 prompts, 200 SFT steps), whose sampled accuracy at T=0.7 lies between 50%
and 90%. Prints each strategy's held-out accuracy on 96 prompts with a 95% interval, per sampling seed, and the
paired difference self-consistency minus greedy.

What to expect from a tiny model: its `<think>` chain holds one decision (the direction word), so the majority of K
samples converges to the most likely answer, which is greedy's answer, from below: self-consistency recovers what
sampling loses, ties greedy at best, and cannot pass it (measured in the README's training table, also at T=0.3/0.5
and on under-trained starts). The one regime where voting beat greedy was a start so under-trained that its greedy
chain never closed its `<answer>` tag (sampling escapes the loop): 0.25 vs 0.00, both near chance.

The best-of-N verifier never sees the answer: it is the format reward, ties broken by the model's confidence.
The same functions serve the pipeline: `transformers_cope.test_time_scaling.{self_consistency, best_of_n}`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import set_seed

from transformers_cope.extras import require_extra

require_extra("train", "trl", "datasets", "evaluate")  # one line, before anything runs, if the [train] extra is missing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # reuse the GRPO example's data and warm start

from grpo_motion_qa import DEFAULT_MODEL_DIR, data_from_args, load_processor, sft_warm_start  # noqa: E402

from transformers_cope.training.policy_eval import mean_ci95  # noqa: E402

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
    p.add_argument("--tasks", default="direction", help=f"comma-separated motion QA tasks, from {','.join(TASKS)}")
    p.add_argument("--duration", type=float, default=4.0, help="clip length in seconds")
    p.add_argument("--travel-scale", type=float, default=1.0, help="object travel (< 1: slower motion)")
    p.add_argument("--train-samples", type=int, default=512)
    p.add_argument("--eval-samples", type=int, default=96)
    p.add_argument("--sft-steps", type=int, default=200)
    p.add_argument("--sft-lr", type=float, default=2e-3)
    p.add_argument("--k", type=int, default=9, help="self-consistency chains")
    p.add_argument("--n", type=int, default=5, help="best-of-N chains (0: skip best-of-N)")
    p.add_argument("--temperature", type=float, default=0.7,
                   help="sampling temperature (0.7: the usual self-consistency setting and sample_chains' default)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--seed", type=int, default=0, help="SFT start seed")
    p.add_argument("--sample-seeds", default="0,1", help="comma list of sampling seeds")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models run best on 1; "
                                                          "raise it for real models on CPU)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    _, train_records, held_records = data_from_args(args)
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

    names = ["greedy", "one sample", f"self-consistency@{args.k}"] + ([f"best-of-{args.n}"] if args.n > 0 else [])
    runs = []
    for sample_seed in [int(x) for x in args.sample_seeds.split(",")]:
        set_seed(1000 + sample_seed)
        hits = {name: [] for name in names}
        agreement = []
        t = time.time()
        for record in held_records:
            messages = to_messages(record, reasoning=True, include_answer=False)
            check = dict(options=record.get("options"), answer_type=record.get("answer_type"))
            greedy, _ = sample_chains(model, processor, messages=messages, n=1, do_sample=False,
                                      max_new_tokens=args.max_new_tokens)
            sc = self_consistency(model, processor, messages=messages, k=args.k, temperature=args.temperature,
                                  max_new_tokens=args.max_new_tokens, options=record.get("options"))
            answers = [extract_answer(greedy[0]), sc["answers"][0], sc["answer"]]
            if args.n > 0:
                bon = best_of_n(model, processor, messages=messages, n=args.n, reward_fn=verifier,
                                temperature=args.temperature, max_new_tokens=args.max_new_tokens)
                answers.append(bon["answer"])
            for name, answer in zip(names, answers):
                hits[name].append(float(is_correct(answer, record["answer"], **check)))
            agreement.append(sc["agreement"])
        runs.append(hits)
        n = len(held_records)
        print(f"\nsampling seed {sample_seed}: held-out accuracy on {n} prompts ({time.time() - t:.0f} s, "
              f"temperature {args.temperature}), 95% interval over prompts:")
        for name in names:
            mean, half = mean_ci95(hits[name])
            print(f"  {name:<22}{mean:.3f} ± {half:.3f}  ({int(sum(hits[name]))}/{n})")
        diff, half = mean_ci95([a - b for a, b in zip(hits[names[2]], hits["greedy"])])
        print(f"  self-consistency minus greedy (paired): {diff:+.3f} ± {half:.3f}; "
              f"mean agreement {statistics.fmean(agreement):.2f}")
    summary = {name: statistics.fmean(statistics.fmean(r[name]) for r in runs) for name in names}
    print(f"\nmean over sampling seeds {args.sample_seeds}: "
          + ", ".join(f"{name} {value:.3f}" for name, value in summary.items()))
    return summary


if __name__ == "__main__":
    main()
