"""The step schedule: which steps are keyframes, when steps fall, which decoded frame each step takes, sizes.

Why: the schedule is decided from timestamps alone (no pixels), so the same rules serve the native and the
transcode paths and any segment of a file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import av
import numpy as np


def step_frame_types(num_steps: int, gop_size: int = 8, keyframes_per_gop: int = 1) -> str:
    """The "I"/"P" letter of each step: GOPs of `gop_size` steps, `keyframes_per_gop` evenly spaced "I" per GOP.

    k=1 -> step 0 of each GOP; k=2 -> 0, 4 of 8; k=4 -> 0, 2, 4, 6; k=gop_size -> every step (dense baseline)."""
    if gop_size < 1 or not 1 <= keyframes_per_gop <= gop_size:
        raise ValueError(f"need gop_size >= 1 and 1 <= keyframes_per_gop <= gop_size, got gop_size={gop_size}, "
                         f"keyframes_per_gop={keyframes_per_gop}")
    key = {(i * gop_size) // keyframes_per_gop for i in range(keyframes_per_gop)}
    return "".join("I" if s % gop_size in key else "P" for s in range(num_steps))


def _step_times(first: float, last: float, fps: float, max_steps: int | None) -> np.ndarray:
    """Step times on the `fps` grid from the first frame to the last; uniformly subsampled to `max_steps`
    (VideoLLaMA3's rule: linspace over the grid, rounded)."""
    n = max(_grid_steps(first, last, fps), 1)
    if max_steps is not None and n > max_steps:  # index the grid without building it (damaged timestamps can
        idx = np.round(np.linspace(0, n - 1, max_steps)).astype(np.int64)  # declare years of video)
        return first + idx.astype(np.float64) / fps
    return first + np.arange(n, dtype=np.float64) / fps


def _grid_steps(first: float, last: float, fps: float) -> int:
    return int(math.floor((last - first) * fps + 1e-6)) + 1


class _Sampler:
    """Assigns each target time, in order, to the decoded frame nearest to it (ties go to the earlier frame).

    Streaming with one frame of look-ahead: a frame's targets are known once the next frame's time is."""

    def __init__(self, times: np.ndarray, start: int = 0, stop: int | None = None):
        """Targets `times[start:stop]` (a segment's share); `take` returns their indices into `times`."""
        self.times = np.asarray(times, np.float64)
        self.pos = start
        self.stop = len(self.times) if stop is None else stop

    @property
    def done(self) -> bool:
        return self.pos >= self.stop

    def take(self, upto: float) -> range:
        end = int(np.searchsorted(self.times, upto, side="right"))
        end = min(max(end, self.pos), self.stop)
        r = range(self.pos, end)
        self.pos = end
        return r


def _sampled(timed: Iterator[tuple[int, float, av.VideoFrame]], sampler: _Sampler, fps: float):
    """Yield (index, time, frame, targets) for every frame; stops early once every target has a frame."""
    prev = None
    for item in timed:
        if prev is not None:
            yield (*prev, sampler.take(0.5 * (prev[1] + item[1])))
            if sampler.done:
                return
        prev = item
    if prev is not None:
        yield (*prev, sampler.take(prev[1] + 1.0 / fps))


# --------------------------------------------------------------------------------------------------------- sizing


def _round16(x: float) -> int:
    return max(16, int(math.floor(x / 16.0 + 0.5)) * 16)


def _resolve_size(size, height: int, width: int, even: bool) -> tuple[int, int]:
    """int: short side (aspect kept, both sides multiples of 16); (H, W): exact; None: the source size.
    even=True (encoding yuv420p with libx264) rounds odd sides down to even."""
    if size is None:
        h, w = height, width
    elif isinstance(size, (int, np.integer)):
        if size < 16:
            raise ValueError(f"size must be >= 16, got {size}")
        scale = float(size) / min(height, width)
        h, w = _round16(height * scale), _round16(width * scale)
    else:
        h, w = (int(v) for v in size)
        if h < 2 or w < 2:
            raise ValueError(f"size must be at least 2x2, got {size}")
    if even:
        h, w = max(2, h - h % 2), max(2, w - w % 2)
    return int(h), int(w)
