"""Order-sensitive motion QA: questions whose answer changes when the Δ steps are shuffled.

Why: T-GRPO rewards answers that depend on the order of the steps; on the base tasks (constant velocity from the first
to the last frame) every step carries the same motion, so shuffling the steps cannot change the answer and the
temporal reward has nothing to measure. `which_half` asks whether an object moves in the first or the second half of
the clip: the total motion is the same either way, only *when* it happens differs, so the steps' order is the answer
(with shuffled steps a model can only guess, 50%). Reading motion per step is what the `direction` task already
teaches, so a tiny model learns it in minutes. Frame 0 does not depend on the answer (same draws as the base tasks).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .synthetic_qa import DIRECTIONS, TASKS, SyntheticMotionQA, _Sample

__all__ = ["ORDER_TASKS", "OrderMotionQA", "generate_order_qa"]

ORDER_TASKS = ("which_half",)
_HALVES = ("first", "second")


class OrderMotionQA(SyntheticMotionQA):
    """`SyntheticMotionQA` plus the order-sensitive tasks in ORDER_TASKS (and any base task)."""

    def __init__(self, *, tasks: Sequence[str] = ORDER_TASKS, **kwargs):
        base = [t for t in tasks if t not in ORDER_TASKS]
        unknown = [t for t in base if t not in TASKS]
        if unknown or not tasks:
            raise ValueError(f"unknown tasks {unknown}; choose from {TASKS + ORDER_TASKS}")
        super().__init__(tasks=base or ("direction",), **kwargs)
        self.tasks = tuple(tasks)

    def _task_code(self, task: str) -> int:
        if task in ORDER_TASKS:
            return len(TASKS) + ORDER_TASKS.index(task)
        return super()._task_code(task)

    def _answers(self, task: str) -> list:
        return list(_HALVES) if task == "which_half" else super()._answers(task)

    def make_sample(self, task: str, answer: Any, seed: int) -> _Sample:
        if task != "which_half":
            return super().make_sample(task, answer, seed)
        rng = np.random.default_rng(seed)
        (obj,) = self._objects(rng, 1)
        name = self._name(obj)
        travel = rng.uniform(0.6, 1.0) * self.max_travel
        direction = DIRECTIONS[int(rng.integers(4))]
        fps = int(round(self.fps))
        half = int(self.duration) // 2
        t0, t1 = (0, half - 1) if answer == "first" else (half, int(self.duration) - 1)
        velocity = self._velocity(direction, travel, (t1 - t0) * fps)
        scene = self._scene(seed, [self._sprite(obj, velocity, t0 * fps, t1 * fps)])
        why = f"{name.capitalize()} moves {direction} from {t0} s to {t1} s, so it moves in the {answer} half."
        return _Sample(f"Does {name} move in the first or the second half of the video?", answer, list(_HALVES),
                       _HALVES.index(answer), "word", why, [float(t0), float(t1)], scene)


def generate_order_qa(num_samples: int, out_dir: str | Path, *, seed: int = 0, split: str = "train",
                      tasks: Sequence[str] = ORDER_TASKS, duration_s: float = 8.0, fps: float = 10.0,
                      question_format: str = "mixed", num_workers: int = 1, progress: bool = True,
                      **kwargs) -> list[dict]:
    """Functional form of OrderMotionQA(...).generate(...), like `generate_motion_qa`."""
    gen = OrderMotionQA(tasks=tasks, duration_s=duration_s, fps=fps, question_format=question_format, **kwargs)
    return gen.generate(num_samples, out_dir, seed=seed, split=split, num_workers=num_workers, progress=progress)
