"""The `video-question-answering` pipeline on fresh synthetic motion videos: one video, a batch, self-consistency.

    python examples/pipeline.py                 # the embedded model
    python examples/pipeline.py --model PATH    # any CoPE-VideoLM folder or Hub id
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from transformers import pipeline

import transformers_cope  # noqa: F401  (registers the model classes and the video-question-answering task)
from transformers_cope.embedded import default_model_path
from transformers_cope.data import generate_motion_qa
from transformers_cope.data.synthetic_qa import format_prompt


def asked(record: dict) -> str:
    """The question with its lettered options, if any ("... [A. left / B. right / ...]"): a letter answer means
    nothing without them."""
    options = record.get("options")
    return record["question"] + (f" [{' / '.join(options)}]" if options else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)")
    parser.add_argument("--num", type=int, default=4)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    model = args.model or default_model_path()

    vqa = pipeline("video-question-answering", model=str(model), device="cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as folder:
        # the embedded model's training distribution: 4 s, 64x64, direction questions (open and multiple choice)
        records = generate_motion_qa(args.num, folder, tasks=("direction",), duration_s=4, seed=args.seed,
                                     split="test", progress=False)

        # one video
        first = records[0]
        print(asked(first), "->", vqa(first["video"], question=format_prompt(first)), "| truth:", first["answer"])

        # a batch: a list of {"video", "question"} dicts, two videos per generate call
        inputs = [{"video": r["video"], "question": format_prompt(r)} for r in records]
        for record, result in zip(records, vqa(inputs, batch_size=2)):
            print(f"{asked(record)}: {result[0]['answer']!r} truth {record['answer']!r}")

        # self-consistency: 5 sampled answers, majority vote
        voted = vqa(first["video"], question=format_prompt(first), self_consistency=5, temperature=0.7,
                    options=first["options"])[0]
        print("self-consistency:", voted["answer"], voted["votes"], f"agreement {voted['agreement']:.0%}")

        # a denser layout for this call only: 2 keyframes per 8-step GOP
        print("2 keyframes/GOP:", vqa(first["video"], question=format_prompt(first), keyframes_per_gop=2)[0])


if __name__ == "__main__":
    main()
