"""Synthetic motion video QA: the project's own sanity benchmark for the Δ pathway.

Every question is about motion (direction, which object moves, camera pan, event order, speed, when motion starts),
and each scene is built so that a single frame carries no information about the answer: all random draws that
shape frame 0 (textures, colours, shapes, positions) happen before, and independently of, the answer, and every
object's start position comes from the same distribution whatever it later does. With one keyframe per GOP only
the Δ steps (motion vectors, residuals) can answer. `SyntheticMotionQA.make_sample` with the same seed and a
different answer gives an identical first frame (tested).

Answers use a tiny fixed vocabulary (ANSWER_WORDS: directions, yes/no, colours, option letters, whole seconds) so
that a tiny LM with a tiny tokenizer can learn it. Records are plain dicts, one JSON line each:
  {"id", "split", "task", "video" (relative to the JSONL's folder on disk; absolute in loaded records),
   "question", "options" (["A. left", ...] or None), "answer" (letter for multiple choice, else the word/number),
   "answer_text" (the word/number), "reasoning" (a short trace, no tags), "interval" ([t0, t1] s or None),
   "seed", "fps", "duration", "num_frames", "size" [H, W], "scene" (the render.Scene as a dict: ground truth)}.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .render import Scene, Sprite, ground_truth, render_video

__all__ = [
    "TASKS",
    "DIRECTIONS",
    "COLORS",
    "SHAPES",
    "ANSWER_WORDS",
    "SyntheticMotionQA",
    "generate_motion_qa",
    "load_motion_qa",
    "record_scene",
    "format_prompt",
    "format_answer",
    "to_messages",
    "sample_seed",
]

TASKS = ("direction", "moving", "camera_pan", "which_moves", "speed", "event_order", "start_time", "grounding")
DIRECTIONS = ("left", "right", "up", "down")
_DIR_VEC = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
COLORS = {"red": (215, 45, 40), "green": (40, 165, 60), "blue": (45, 80, 220), "yellow": (230, 200, 40)}
SHAPES = {"square": "rect", "circle": "ellipse"}
LETTERS = "ABCD"
SPLITS = {"train": 0, "validation": 1, "test": 2}
ANSWER_WORDS = (*DIRECTIONS, "yes", "no", *COLORS, *LETTERS, "to", *(str(i) for i in range(10)))
_BACKGROUND_GRAY = (118, 118, 118)
_BACKGROUND_CONTRAST = 32.0

_INSTRUCTIONS = {
    "mc": "Answer with the option's letter.",
    "word": "Answer with one word.",
    "seconds": "Answer with a whole number of seconds.",
    "interval": "Answer as 'start to end' in whole seconds.",
}
THINK_INSTRUCTION = "Think first inside <think></think>, then give the answer inside <answer></answer>."


def sample_seed(seed: int, split: str, index: int) -> int:
    """Per-sample seed; seeds of different splits never collide (the split is the seed modulo 3)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    h = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EED, int(index)]).generate_state(2, np.uint64)[0])
    return 3 * (h % (1 << 48)) + SPLITS[split]


@dataclasses.dataclass
class _Sample:
    question: str
    answer_text: str
    choices: list[str] | None  # option texts for multiple choice, in order (None: open only)
    answer_index: int | None  # index of answer_text in choices
    kind: str  # instruction for the open form: "word" | "seconds" | "interval"
    reasoning: str
    interval: list[float] | None
    scene: Scene


class SyntheticMotionQA:
    """Builds and renders motion QA samples. Knobs are fixed per instance so a dataset is a pure function of
    (knobs, seed, split, num_samples)."""

    def __init__(self, *, size: tuple[int, int] = (64, 64), duration_s: float = 8.0, fps: float = 10.0,
                 tasks: Sequence[str] = TASKS, question_format: str = "mixed", shuffle_options: bool = False,
                 codec: str = "libx264", crf: int = 18, preset: str = "medium", gop_size: int | None = None):
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ValueError(f"unknown tasks {unknown}; choose from {TASKS}")
        if question_format not in ("mc", "open", "mixed"):
            raise ValueError(f"question_format must be 'mc', 'open' or 'mixed', got {question_format!r}")
        self.height, self.width = int(size[0]), int(size[1])
        if self.height < 32 or self.width < 32 or self.height % 2 or self.width % 2:
            raise ValueError(f"size must be even and at least 32x32, got {size}")
        self.fps = float(fps)
        self.num_frames = int(round(duration_s * fps))
        self.duration = self.num_frames / self.fps
        if self.duration < 4:
            raise ValueError(f"duration_s must be at least 4 s, got {duration_s}")
        if abs(self.fps - round(self.fps)) > 1e-9:
            raise ValueError(f"fps must be a whole number (events start on whole seconds), got {fps}")
        if "event_order" in tasks and self.duration < 7:
            raise ValueError("event_order needs duration_s >= 7")
        self.tasks = tuple(tasks)
        self.question_format = question_format
        self.shuffle_options = shuffle_options
        self.codec, self.crf, self.preset, self.gop_size = codec, crf, preset, gop_size
        m = min(self.height, self.width)
        self.sprite_size = max(6, int(round(0.2 * m)))
        self.jitter = max(1, int(round(0.08 * m)))
        # longest travel that keeps an object inside the frame from any start position, in any direction
        self.max_travel = m / 2 - self.jitter - self.sprite_size / 2 - 1

    # ---------------------------------------------------------------------------------------------------- layout
    def _answers(self, task: str) -> list:
        last = int(self.duration) - 1
        return {"direction": list(DIRECTIONS), "moving": ["yes", "no"], "camera_pan": ["left", "right"],
                "which_moves": [0, 1], "speed": [0, 1], "event_order": [0, 1],
                "start_time": list(range(1, last - 1)), "grounding": list(range(1, last - 1))}[task]

    def _task_code(self, task: str) -> int:
        """A number per task that seeds its answer blocks (subclasses with extra tasks extend it)."""
        return TASKS.index(task)

    def _objects(self, rng: np.random.Generator, n: int) -> list[dict]:
        """Appearance and frame-0 position of n objects (n = 1: centre; n = 2: left/right halves)."""
        colors = rng.permutation(list(COLORS))[:n]
        shapes = rng.choice(list(SHAPES), size=n)
        s, c = self.sprite_size, self.jitter
        if n == 1:
            homes = [(self.width / 2, self.height / 2)]
            cx = c
        else:
            homes = [(self.width / 4, self.height / 2), (3 * self.width / 4, self.height / 2)]
            if rng.random() < 0.5:
                homes = homes[::-1]
            cx = max(0.0, min(c, self.width / 4 - s / 2 - 1))
        objs = []
        for k in range(n):
            x = homes[k][0] + rng.uniform(-cx, cx) - s / 2
            y = homes[k][1] + rng.uniform(-c, c) - s / 2
            objs.append({"color": str(colors[k]), "shape": str(shapes[k]), "xy": (float(x), float(y)),
                         "seed": int(rng.integers(1 << 31))})
        return objs

    def _sprite(self, obj: dict, velocity=(0.0, 0.0), start_frame: int = 0, stop_frame: int | None = None) -> Sprite:
        return Sprite(size=self.sprite_size, start_xy=obj["xy"], velocity=(float(velocity[0]), float(velocity[1])),
                      start_frame=int(start_frame), stop_frame=None if stop_frame is None else int(stop_frame),
                      seed=obj["seed"], color=COLORS[obj["color"]], shape=SHAPES[obj["shape"]])

    def _scene(self, seed: int, sprites: list[Sprite], pan=(0.0, 0.0)) -> Scene:
        return Scene(height=self.height, width=self.width, num_frames=self.num_frames, seed=seed, pan=pan,
                     sprites=tuple(sprites), background_color=_BACKGROUND_GRAY,
                     background_contrast=_BACKGROUND_CONTRAST)

    @staticmethod
    def _name(obj: dict) -> str:
        return f"the {obj['color']} {obj['shape']}"

    def _velocity(self, direction: str, travel: float, frames: int) -> tuple[float, float]:
        ux, uy = _DIR_VEC[direction]
        v = travel / max(frames, 1)
        return ux * v, uy * v

    # --------------------------------------------------------------------------------------------------- samples
    def make_sample(self, task: str, answer: Any, seed: int) -> _Sample:
        """Question, answer, reasoning and Scene for one sample. Frame 0 depends on `seed` only, never on `answer`."""
        rng = np.random.default_rng(seed)
        f, last = self.num_frames, self.num_frames - 1
        fps = int(round(self.fps))
        lmax = self.max_travel
        if task in ("direction", "moving", "start_time", "grounding"):
            (obj,) = self._objects(rng, 1)
            name = self._name(obj)
            travel = rng.uniform(0.6, 1.0) * lmax
            rand_dir = DIRECTIONS[int(rng.integers(4))]
            u = rng.random()
            if task == "direction":
                vel = self._velocity(answer, travel, last)
                scene = self._scene(seed, [self._sprite(obj, vel)])
                d = ground_truth(scene).displacement(last, 0, 0)
                return _Sample(f"Which direction does {name} move?", answer, list(DIRECTIONS),
                               DIRECTIONS.index(answer), "word",
                               f"{name.capitalize()} moves {_describe(d)}, so it moves {answer}.", None, scene)
            if task == "moving":
                vel = self._velocity(rand_dir, travel, last) if answer == "yes" else (0.0, 0.0)
                scene = self._scene(seed, [self._sprite(obj, vel)])
                d = np.hypot(*ground_truth(scene).displacement(last, 0, 0))
                why = f"{name.capitalize()} moves {d:.0f} px." if answer == "yes" else f"{name.capitalize()} stays still."
                return _Sample(f"Does {name} move?", answer, ["yes", "no"], ["yes", "no"].index(answer), "word",
                               why, None, scene)
            # start_time / grounding: rest, move during [t0, t1] whole seconds, rest
            t0 = int(answer)
            t1 = t0 + 2 + int(u * (int(self.duration) - 1 - (t0 + 2) + 1))
            vel = self._velocity(rand_dir, travel, (t1 - t0) * fps)
            scene = self._scene(seed, [self._sprite(obj, vel, t0 * fps, t1 * fps)])
            why = f"{name.capitalize()} is still until {t0} s, moves {rand_dir} until {t1} s, then stops."
            cands = self._answers(task)
            if task == "start_time":
                choices, idx = self._numeric_choices(rng, cands, t0, str)
                return _Sample(f"When does {name} start moving?", str(t0), choices, idx, "seconds", why,
                               [float(t0), float(t1)], scene)
            choices, idx = self._numeric_choices(rng, cands, t0, lambda a: f"{a} to {a + (t1 - t0)}")
            return _Sample(f"During which seconds does {name} move?", f"{t0} to {t1}", choices, idx, "interval",
                           why, [float(t0), float(t1)], scene)

        if task == "camera_pan":
            speed = rng.uniform(3.0, 8.0) * self.width / 64  # content px per second
            sign = 1.0 if answer == "left" else -1.0  # camera pans left => content moves right
            scene = self._scene(seed, [], pan=(sign * speed / self.fps, 0.0))
            d = ground_truth(scene).displacement(last, 0)
            return _Sample("Does the camera pan left or right?", answer, ["left", "right"],
                           ["left", "right"].index(answer), "word",
                           f"The background moves {_describe(d)}, so the camera pans {answer}.", None, scene)

        # two-object tasks: objects side by side, vertical motion (room to move without leaving the frame)
        objs = self._objects(rng, 2)
        names = [self._name(o) for o in objs]
        dirs = [("up", "down")[int(rng.integers(2))] for _ in objs]
        travels = rng.uniform(0.6, 1.0, size=2) * lmax
        slow = rng.uniform(0.15, 0.35) * lmax
        starts = int(rng.integers(1, int(self.duration) - 5)) if task == "event_order" else 0
        gap = int(rng.integers(2, int(self.duration) - 3 - starts)) if task == "event_order" else 0
        k = int(answer)
        choices = [names[0], names[1]]
        q_pair = f"{names[0]} or {names[1]}"
        if task == "which_moves":
            sprites = [self._sprite(o) for o in objs]
            sprites[k] = self._sprite(objs[k], self._velocity(dirs[k], travels[k], last))
            scene = self._scene(seed, sprites)
            gt = ground_truth(scene)
            ds = [np.hypot(*gt.displacement(last, 0, i)) for i in range(2)]
            why = f"{names[0].capitalize()} moves {ds[0]:.0f} px; {names[1]} moves {ds[1]:.0f} px."
            return _Sample(f"Which object moves, {q_pair}?", objs[k]["color"], choices, k, "word", why, None, scene)
        if task == "speed":
            trav = [slow, slow]
            trav[k] = travels[k]
            scene = self._scene(seed, [self._sprite(o, self._velocity(dirs[i], trav[i], last))
                                       for i, o in enumerate(objs)])
            gt = ground_truth(scene)
            sp = [np.hypot(*gt.displacement(last, 0, i)) / (last / self.fps) for i in range(2)]
            why = f"{names[0].capitalize()} moves {sp[0]:.1f} px per second; {names[1]} {sp[1]:.1f}."
            return _Sample(f"Which object moves faster, {q_pair}?", objs[k]["color"], choices, k, "word", why,
                           None, scene)
        # event_order: object k starts first, the other `gap` s later; each moves for 2 s
        t_first, t_second = starts, starts + gap
        t_start = [t_second, t_second]
        t_start[k] = t_first
        sprites = [self._sprite(o, self._velocity(dirs[i], travels[i], 2 * fps), t_start[i] * fps,
                                (t_start[i] + 2) * fps) for i, o in enumerate(objs)]
        scene = self._scene(seed, sprites)
        why = (f"{names[0].capitalize()} starts moving at {t_start[0]} s; {names[1]} at {t_start[1]} s.")
        return _Sample(f"Which object starts moving first, {q_pair}?", objs[k]["color"], choices, k, "word", why,
                       [float(t_first), float(t_first + 2)], scene)

    @staticmethod
    def _numeric_choices(rng, cands, truth, fmt):
        others = [c for c in cands if c != truth]
        picks = sorted([truth, *rng.choice(others, size=min(3, len(others)), replace=False).tolist()])
        return [fmt(int(c)) for c in picks], picks.index(truth)

    def build_record(self, index: int, *, seed: int = 0, split: str = "train") -> tuple[dict, Scene]:
        """Record (video path relative to the output folder) and Scene of sample `index`; no rendering."""
        task = self.tasks[index % len(self.tasks)]
        j = index // len(self.tasks)  # position among this task's samples: balanced answers per block
        answers = self._answers(task)
        block_rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, SPLITS[split], self._task_code(task),
                                           j // len(answers)])
        answer = answers[int(block_rng.permutation(len(answers))[j % len(answers)])]
        s_seed = sample_seed(seed, split, index)
        smp = self.make_sample(task, answer, s_seed)
        fmt_rng = np.random.default_rng([s_seed & 0xFFFFFFFF, 0xF0])
        mc = self.question_format == "mc" or (self.question_format == "mixed" and fmt_rng.random() < 0.5)
        options, answer_out = None, smp.answer_text
        if mc:
            order = list(range(len(smp.choices)))
            if self.shuffle_options:
                order = fmt_rng.permutation(order).tolist()
            options = [f"{LETTERS[i]}. {smp.choices[o]}" for i, o in enumerate(order)]
            answer_out = LETTERS[order.index(smp.answer_index)]
        rid = f"{split}-{index:06d}"
        record = {
            "id": rid, "split": split, "task": task, "video": f"videos/{split}/{rid}.mp4",
            "question": smp.question, "options": options, "answer": answer_out, "answer_text": smp.answer_text,
            "answer_type": "mc" if mc else smp.kind, "reasoning": smp.reasoning, "interval": smp.interval,
            "seed": s_seed, "fps": self.fps, "duration": self.duration, "num_frames": self.num_frames,
            "size": [self.height, self.width], "scene": _scene_to_dict(smp.scene),
        }
        return record, smp.scene

    # -------------------------------------------------------------------------------------------------- writing
    def generate(self, num_samples: int, out_dir: str | Path, *, seed: int = 0, split: str = "train",
                 num_workers: int = 1, overwrite: bool = True, progress: bool = True) -> list[dict]:
        """Render `num_samples` videos into out_dir/videos/<split>/ and write out_dir/<split>.jsonl.

        Returns the records with absolute video paths (as load_motion_qa does). Same arguments => identical JSONL
        and identical video bytes. overwrite=False keeps videos already on disk (resuming a long run).
        """
        return generate_split(self.build_record, _render_job, num_samples, out_dir, seed=seed, split=split,
                              job_extra=(self.codec, self.fps, self.gop_size, self.crf, self.preset),
                              num_workers=num_workers, overwrite=overwrite, progress=progress, desc=f"render {split}")


def _describe(d) -> str:
    """'15 px right' for a displacement (x, y), along its dominant axis."""
    dx, dy = float(d[0]), float(d[1])
    if abs(dx) >= abs(dy):
        return f"{abs(dx):.0f} px {'right' if dx >= 0 else 'left'}"
    return f"{abs(dy):.0f} px {'down' if dy >= 0 else 'up'}"


def _render_job(job) -> str:
    path, scene, codec, fps, gop_size, crf, preset = job
    render_video(path, scene, codec=codec, fps=fps, gop_size=gop_size, crf=crf, preset=preset)
    return path


def _scene_to_dict(scene: Scene) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(scene)))


def record_scene(record: dict) -> Scene:
    """Rebuild the render.Scene of a record (its exact ground truth: render.ground_truth(record_scene(r)))."""
    d = dict(record["scene"])
    tup = lambda v: None if v is None else tuple(v)  # noqa: E731
    sprites = []
    for sd in d.pop("sprites"):
        sd = dict(sd)
        sd["size"] = sd["size"] if isinstance(sd["size"], int) else tuple(sd["size"])
        sd["start_xy"], sd["velocity"], sd["color"] = tup(sd["start_xy"]), tup(sd["velocity"]), tup(sd["color"])
        sprites.append(Sprite(**sd))
    for key in ("pan", "background_period", "background_color"):
        d[key] = tup(d.get(key))
    return Scene(**d, sprites=tuple(sprites))


def generate_split(build_record, render_job, num_samples: int, out_dir: str | Path, *, seed: int, split: str,
                   job_extra: tuple = (), num_workers: int = 1, overwrite: bool = True, progress: bool = True,
                   desc: str = "render", initializer=None, initargs: tuple = ()) -> list[dict]:
    """The generators' shared `generate` (synthetic_qa, camera_motion): `build_record(i, seed=, split=)` gives
    (record, what to render); `render_job((path, what, *job_extra))` writes out_dir/<record's video> for every
    sample not on disk yet (all of them when `overwrite`), then the split's JSONL is written. Returns the records
    with absolute video paths."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    out_dir = Path(out_dir)
    (out_dir / "videos" / split).mkdir(parents=True, exist_ok=True)
    records, jobs = [], []
    for i in range(int(num_samples)):
        record, what = build_record(i, seed=seed, split=split)
        records.append(record)
        path = out_dir / record["video"]
        if overwrite or not path.exists():
            jobs.append((str(path), what, *job_extra))
    _map_jobs(render_job, jobs, num_workers=num_workers, progress=progress, desc=desc, initializer=initializer,
              initargs=initargs)
    return _write_split(out_dir, split, records)


def _map_jobs(fn, jobs: list, *, num_workers: int = 1, progress: bool = True, desc: str = "render",
              initializer=None, initargs: tuple = ()):
    """Run `fn` over `jobs` (in a process pool when num_workers > 1 and there is more than one job), with a tqdm
    bar; returns once every job is done."""
    pool = None
    if num_workers > 1 and len(jobs) > 1:
        pool = ProcessPoolExecutor(max_workers=num_workers, initializer=initializer, initargs=initargs)
        it = pool.map(fn, jobs, chunksize=max(1, len(jobs) // (8 * num_workers)))
    else:
        if initializer is not None:
            initializer(*initargs)
        it = map(fn, jobs)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(jobs), desc=desc)
    try:
        for _ in it:
            pass
    finally:
        if pool is not None:
            pool.shutdown()


def _write_split(out_dir: Path, split: str, records: list[dict]) -> list[dict]:
    """Write out_dir/<split>.jsonl atomically (once its videos are rendered, so a crash never leaves a JSONL that
    points at missing files) and return the records with absolute video paths."""
    tmp = out_dir / f".{split}.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    os.replace(tmp, out_dir / f"{split}.jsonl")
    return [_absolute(r, out_dir) for r in records]


def _absolute(record: dict, root: Path) -> dict:
    rec = dict(record)
    rec["video"] = str((Path(root) / rec["video"]).resolve())
    return rec


def load_motion_qa(jsonl: str | Path) -> list[dict]:
    """Read a JSONL written by generate; video paths become absolute."""
    jsonl = Path(jsonl)
    with open(jsonl, encoding="utf-8") as fh:
        return [_absolute(json.loads(line), jsonl.parent) for line in fh if line.strip()]


def generate_motion_qa(num_samples: int, out_dir: str | Path, *, seed: int = 0, split: str = "train",
                       tasks: Sequence[str] = TASKS, size: tuple[int, int] = (64, 64), duration_s: float = 8.0,
                       fps: float = 10.0, question_format: str = "mixed", num_workers: int = 1,
                       progress: bool = True, **kwargs) -> list[dict]:
    """Functional form of SyntheticMotionQA(...).generate(...); extra kwargs go to SyntheticMotionQA."""
    gen = SyntheticMotionQA(size=size, duration_s=duration_s, fps=fps, tasks=tasks,
                            question_format=question_format, **kwargs)
    return gen.generate(num_samples, out_dir, seed=seed, split=split, num_workers=num_workers, progress=progress)


def format_prompt(record: dict, *, reasoning: bool = False) -> str:
    """User text: question, options one per line, and the answer instruction."""
    lines = [record["question"]]
    if record.get("options"):
        lines += list(record["options"])
        lines.append(_INSTRUCTIONS["mc"])
    else:
        lines.append(_INSTRUCTIONS[record.get("answer_type", "word")])
    if reasoning:
        lines.append(THINK_INSTRUCTION)
    return "\n".join(lines)


def format_answer(record: dict, *, reasoning: bool = False) -> str:
    """Assistant text: the answer, or `<think>trace</think><answer>answer</answer>`."""
    if reasoning:
        return f"<think>{record['reasoning']}</think><answer>{record['answer']}</answer>"
    return str(record["answer"])


def to_messages(record: dict, *, reasoning: bool = False, include_answer: bool = True,
                video_key: str = "path") -> list[dict]:
    """Chat messages for the processor's chat template; include_answer=False gives the generation prompt."""
    msgs = [{"role": "user", "content": [{"type": "video", video_key: record["video"]},
                                         {"type": "text", "text": format_prompt(record, reasoning=reasoning)}]}]
    if include_answer:
        msgs.append({"role": "assistant",
                     "content": [{"type": "text", "text": format_answer(record, reasoning=reasoning)}]})
    return msgs
