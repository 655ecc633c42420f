"""Shifted variants of the synthetic motion QA, for adaptation experiments (LoRA, domain shift).

Why: adapting a model only shows something on data it does poorly on before. `SyntheticMotionQA` draws each
object's travel between 0.6 and 1.0 of the longest travel that stays in frame; `ShiftedMotionQA` scales that range
(`travel_scale`), so the same questions come with slower (or faster) motion than a model was trained on: a speed-range
shift with the same scenes, vocabulary and answers. Everything else (first frame independent of the answer, balanced
answers, per-split seeds) is inherited.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .synthetic_qa import TASKS, SyntheticMotionQA

__all__ = ["ShiftedMotionQA", "generate_shifted_motion_qa"]


class ShiftedMotionQA(SyntheticMotionQA):
    """`SyntheticMotionQA` whose object travel is scaled by `travel_scale` (0.2: a fifth of the usual motion)."""

    def __init__(self, *, travel_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not 0 < travel_scale <= 1:
            raise ValueError(f"travel_scale must be in (0, 1] (objects must stay in frame), got {travel_scale}")
        self.travel_scale = float(travel_scale)
        self.max_travel *= self.travel_scale


def generate_shifted_motion_qa(num_samples: int, out_dir: str | Path, *, travel_scale: float, seed: int = 0,
                               split: str = "train", tasks: Sequence[str] = TASKS, size: tuple[int, int] = (64, 64),
                               duration_s: float = 8.0, fps: float = 10.0, question_format: str = "mixed",
                               num_workers: int = 1, progress: bool = True, **kwargs) -> list[dict]:
    """Functional form of ShiftedMotionQA(...).generate(...), like `generate_motion_qa`."""
    gen = ShiftedMotionQA(travel_scale=travel_scale, size=size, duration_s=duration_s, fps=fps, tasks=tasks,
                          question_format=question_format, **kwargs)
    return gen.generate(num_samples, out_dir, seed=seed, split=split, num_workers=num_workers, progress=progress)
