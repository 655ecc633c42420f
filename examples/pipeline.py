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
from transformers_cope.cli import _embedded_model_dir
from transformers_cope.data import generate_motion_qa
from transformers_cope.data.synthetic_qa import format_prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)")
    parser.add_argument("--num", type=int, default=4)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    model = args.model or _embedded_model_dir()
    if model is None:
        raise SystemExit("this install has no embedded model: pass --model PATH")

    vqa = pipeline("video-question-answering", model=str(model), device="cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as folder:
        records = generate_motion_qa(args.num, folder, tasks=("direction", "camera_pan"), seed=args.seed,
                                     split="test", question_format="open", progress=False)

        # one video
        first = records[0]
        print(first["question"], "->", vqa(first["video"], question=format_prompt(first)), "| truth:", first["answer"])

        # a batch: a list of {"video", "question"} dicts, two videos per generate call
        inputs = [{"video": r["video"], "question": format_prompt(r)} for r in records]
        for record, result in zip(records, vqa(inputs, batch_size=2)):
            print(f"{record['task']:>10}: {result[0]['answer']!r:10} truth {record['answer']!r}")

        # self-consistency: 5 sampled answers, majority vote
        voted = vqa(first["video"], question=format_prompt(first), self_consistency=5, temperature=0.7)[0]
        print("self-consistency:", voted["answer"], voted["votes"], f"agreement {voted['agreement']:.0%}")

        # a denser layout for this call only: 2 keyframes per 8-step GOP
        print("2 keyframes/GOP:", vqa(first["video"], question=format_prompt(first), keyframes_per_gop=2)[0])


if __name__ == "__main__":
    main()
