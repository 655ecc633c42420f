"""Quickstart: ask a CoPE-VideoLM about a fresh synthetic motion video with the plain Transformers API.

    python examples/quickstart.py                 # the embedded model that ships with transformers-cope
    python examples/quickstart.py --model PATH    # any CoPE-VideoLM folder or Hub id
"""

import argparse
import tempfile

import transformers_cope  # registers CoPE-VideoLM with the Auto classes
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers_cope.embedded import default_model_path
from transformers_cope.data import generate_motion_qa, to_messages

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
checkpoint = args.model or default_model_path()  # the tiny model trained on synthetic motion QA

processor = AutoProcessor.from_pretrained(checkpoint)
model = AutoModelForImageTextToText.from_pretrained(checkpoint).eval()

with tempfile.TemporaryDirectory() as folder:
    record = generate_motion_qa(1, folder, tasks=("direction",), duration_s=4, seed=args.seed, split="test",
                                question_format="open", progress=False)[0]
    messages = to_messages(record, include_answer=False)  # [{"role": "user", "content": [video, question]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                           return_dict=True, return_tensors="pt")
    print("step layout:", inputs["video_frame_types"][0], "| prompt tokens:", inputs["input_ids"].shape[1])
    out = model.generate(**inputs, max_new_tokens=16)
    answer = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    print(record["question"], "->", answer.strip(), "| ground truth:", record["answer"])
