"""Write the cope_motion_qa task's JSONL (records only; videos are rendered from them on first use).

    python -m transformers_cope.lmms_plugin.make_task_data [--num 48] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.synthetic_qa import SyntheticMotionQA

TASK_JSONL = Path(__file__).resolve().parent / "tasks" / "cope_motion_qa" / "cope_motion_qa.jsonl"


def write_records(num: int = 48, seed: int = 0, path: Path = TASK_JSONL) -> list[dict]:
    """The test split's first `num` records of direction / moving / camera_pan at 4 s (the embedded model's data)."""
    generator = SyntheticMotionQA(tasks=("direction", "moving", "camera_pan"), duration_s=4)
    records = [generator.build_record(i, seed=seed, split="test")[0] for i in range(num)]
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    return records


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"wrote {len(write_records(args.num, args.seed))} records to {TASK_JSONL}")
