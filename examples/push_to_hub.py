"""Share a CoPE-VideoLM on the Hub: model + processor + video-question-answering pipeline + model card, one commit.

    python examples/push_to_hub.py --local                     # a loopback Hub on 127.0.0.1, no network, no token
    python examples/push_to_hub.py --repo you/cope-videolm     # the real Hub (HF_TOKEN or `hf auth login`)

--model picks the checkpoint to push (a folder written by save_pretrained; default: the embedded model, or a tiny
untrained one when this install has none). With --local the script then reloads the pushed repo the way a user
would, in a fresh interpreter through `trust_remote_code=True`, and asks it about a synthetic video.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

import transformers_cope
from transformers_cope.embedded import default_model_path
from transformers_cope.data import generate_motion_qa
from transformers_cope.data.synthetic_qa import format_prompt
from transformers_cope.hub import push_cope_to_hub
from transformers_cope.testing.hub_server import LocalHubServer
from transformers_cope.tiny import build_tiny_processor, tiny_model_config


def load_model(path: str | None):
    if path is None:
        try:
            path = default_model_path()
        except FileNotFoundError:
            path = None
    if path is None:
        print("no embedded model in this install: pushing a tiny untrained model (its answers are noise)")
        torch.manual_seed(0)
        return transformers_cope.CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval(), build_tiny_processor()
    return AutoModelForImageTextToText.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default="user/cope-videolm", help="repo id (default: user/cope-videolm)")
    parser.add_argument("--model", help="checkpoint folder to push (default: the embedded model)")
    parser.add_argument("--local", action="store_true", help="push to a loopback Hub instead of huggingface.co")
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args()
    model, processor = load_model(args.model)

    if not args.local:
        info = push_cope_to_hub(model, processor, args.repo, private=args.private or None)
        print(f"pushed: {info.commit_url}")
        return

    with LocalHubServer(idle_timeout=120, lifetime=900) as hub, tempfile.TemporaryDirectory() as work:
        info = push_cope_to_hub(model, processor, args.repo, endpoint=hub.endpoint, token="local")
        print(f"pushed to the local Hub: {info.commit_url}")
        print("files:", ", ".join(sorted(hub.files(args.repo))))
        record = generate_motion_qa(1, work, tasks=("direction",), duration_s=4, seed=7, split="test",
                                    question_format="open", progress=False)[0]
        video, question = record["video"], format_prompt(record)
        # What a user without transformers-cope runs: everything comes from the repo (remote code).
        code = textwrap.dedent(f"""
            from transformers import pipeline
            vqa = pipeline(model={args.repo!r}, trust_remote_code=True, device="cpu")
            print(type(vqa).__module__, vqa({video!r}, question={question!r}))
        """)
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": os.path.join(work, "hf_home")}
        subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=work)
        print("ground truth:", record["answer"])


if __name__ == "__main__":
    main()
