"""The extraction machinery behind `iter_primitives` / `extract_primitives` (see `codec.py` for the layout).

A plan (`_Plan`: step schedule, native or transcode, options) is made from the packet scan; a driver
(`_iter_native`, `_iter_transcode`) decodes the source on the calling thread, processes frames in order on one
background thread (`_Worker`) and yields each GOP of steps (`GOPPrimitives`) as soon as its last step is complete.
A driver can run any range of GOPs from any seek point: that is how `codec_parallel` extracts segments in worker
processes and how `codec_live` follows a growing source.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from .codec_decode import _decoded_frames, _frame_type, _mv_table, _set_decoder_threads, _timed
from .codec_fusion import _Fuser, _grid_to_output, _Residual
from .codec_probe import _describe, _frame_timeline, _Reader
from .codec_schedule import _grid_steps, _resolve_size, _sampled, _Sampler, _step_times, step_frame_types
from .codec_transcode import _configure_encoder, _encodable, _progress, _Scaler
from .codec_types import _CLASSIC_MPEG_DECODERS, MV_EXPORTING_CODECS, GOPPrimitives, VideoInfo
from .errors import UnsupportedVideoError, VideoTooLargeError, check_number


class _Worker:
    """Runs submitted calls in order on one background thread.

    Why: PyAV releases the GIL while it decodes, encodes and scales, so the source decode on the calling thread
    overlaps with scaling, encoding and fusing here; on two cores the serial version left a core idle. One worker
    and a FIFO keep the order of every operation, so results stay bit-identical. The queue is bounded (memory)."""

    def __init__(self, maxsize: int = 8):
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="cope-codec-worker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                self.queue.task_done()
                return
            if self.error is None:
                try:
                    item()
                except BaseException as e:  # re-raised on the calling thread
                    self.error = e
            self.queue.task_done()

    def wait_idle(self) -> None:
        """Wait until everything submitted so far is done (live sources: hand out a finished GOP before blocking
        on input that may take long to arrive)."""
        self.queue.join()
        if self.error is not None:
            raise self.error

    def submit(self, fn) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(fn)

    def finish(self) -> None:
        """Wait for everything submitted; re-raise the worker's error, if any."""
        self.close()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)  # the worker keeps draining after an error, so this never blocks for long
            self.thread.join()


class _NeedTranscode(Exception):
    """Raised inside native extraction when the stream turns out not to be I/P (a B-frame appeared)."""


class _Steps:
    """Collects the outputs step by step and hands out each GOP as soon as its last step is complete.

    Memory: only the GOP being collected and the reference step's small frame are kept; completed GOPs go to
    `ready` (appended on the worker thread, taken by the generator on the calling thread)."""

    def __init__(self, types: str, out_hw, res_hw, mv_block: int, interpolation: str, return_frames: bool,
                 key_hw=None, *, gop_size: int, meta: dict, first_step: int = 0):
        self.types = types
        self.out_hw = out_hw
        self.key_hw = key_hw or out_hw  # keyframes: scaled from the source frame when this differs from out_hw
        self.mv_block = mv_block
        self.residual = _Residual(out_hw, res_hw, interpolation)
        self.return_frames = return_frames
        self.gop_size = gop_size
        self.meta = meta  # mode, source_fps, duration of every GOP
        self.ready: collections.deque[GOPPrimitives] = collections.deque()
        self.start = first_step  # first step of the GOP being collected
        self.finalized = first_step  # steps before this one are complete
        self._clear()
        self.small = {}

    def _clear(self) -> None:
        self.produced = []
        self.keyframes, self.frames, self.times, self.indices = [], [], [], []
        self.motion, self.masks, self.residuals = [], [], []

    def record(self, k: int, rgb: np.ndarray, time: float, index: int, frame=None, scale=None) -> None:
        """Step k's frame at out_hw (`rgb`); an "I" step at a different key_hw is scaled from the source `frame`."""
        assert k == self.start + len(self.produced)
        t = self.types[k]
        self.produced.append(t)
        self.times.append(time)
        self.indices.append(index)
        if t == "I":
            assert k == self.finalized, "Δ steps before a keyframe must be complete"
            same = self.key_hw == self.out_hw
            self.keyframes.append(rgb if same else scale(frame, self.key_hw, "rgb24").to_ndarray())
        if self.return_frames:
            self.frames.append(rgb)
        if k + 1 < len(self.types) and self.types[k + 1] == "P" or t == "P":
            self.small[k] = self.residual.small(rgb)
        if t == "I":
            self._advance(k)

    def finalize(self, k: int, fuser: _Fuser) -> None:
        """Complete P step k from the fused field of its window."""
        assert self.types[k] == "P" and k == self.finalized
        valid = np.zeros_like(fuser.valid) if fuser.broken else fuser.valid
        mv, mask = _grid_to_output(fuser.acc, valid, fuser.cell, fuser.hw, self.out_hw, self.mv_block)
        self.motion.append(mv)
        self.masks.append(mask)
        self.residuals.append(self.residual(self.small[k], self.small[k - 1], fuser.acc, fuser.cell, fuser.hw))
        self._advance(k)

    def _advance(self, k: int) -> None:
        self.finalized = k + 1
        self.small.pop(k - 1, None)
        if self.finalized % self.gop_size == 0:
            self._emit()

    def flush(self) -> None:
        """The last, possibly partial GOP: its complete steps (steps recorded but never completed are dropped)."""
        if self.finalized > self.start:
            self._emit()

    def _emit(self) -> None:
        n = self.finalized - self.start
        h, w = self.out_hw
        hg, wg = h // self.mv_block, w // self.mv_block
        hr, wr = self.residual.hr, self.residual.wr
        n_p = len(self.motion)
        self.ready.append(GOPPrimitives(
            index=self.start // self.gop_size, first_step=self.start,
            frame_types="".join(self.produced[:n]),
            keyframes=np.stack(self.keyframes) if self.keyframes else np.zeros((0, *self.key_hw, 3), np.uint8),
            motion_vectors=np.stack(self.motion) if n_p else np.zeros((0, 2, hg, wg), np.float32),
            intra_masks=np.stack(self.masks) if n_p else np.zeros((0, hg, wg), bool),
            residuals=np.stack(self.residuals) if n_p else np.zeros((0, 3, hr, wr), np.float32),
            timestamps=np.asarray(self.times[:n], np.float64),
            frame_indices=np.asarray(self.indices[:n], np.int64),
            frame_size=(h, w),
            frames=(np.stack(self.frames[:n]) if self.frames else np.zeros((0, h, w, 3), np.uint8))
            if self.return_frames else None,
            mode=self.meta["mode"], source_fps=float(self.meta["source_fps"]), duration=float(self.meta["duration"])))
        self.start = self.finalized
        self._clear()


def _native_blockers(info: VideoInfo, times: np.ndarray, types: str) -> tuple[list[str], list[str]]:
    """Why the file's own P-frames cannot serve: (hard reasons -> must transcode, soft reasons -> native would
    lose steps to intra)."""
    hard, soft = [], []
    if info.codec not in MV_EXPORTING_CODECS:
        hard.append(f"codec {info.codec!r} exports no motion vectors")
    if info.reordered:
        hard.append("the stream has B-frames (reordered packets)")
    elif info.reordered is None:
        soft.append("packets carry no timestamps, B-frames cannot be ruled out")
    if info.codec == "h264" and info.ref_frames != 1:
        soft.append(f"H.264 with max_num_ref_frames={info.ref_frames} (vectors may skip frames)")
    half = 0.5 / info.fps
    kf = info.keyframe_times
    hit = 0
    for k in range(1, len(times)):
        if types[k] == "P" and len(kf):
            lo, hi = np.searchsorted(kf, [times[k - 1] + half, times[k] + half], side="right")
            hit += int(hi > lo)
    if hit:
        soft.append(f"{hit} Δ step(s) have a codec keyframe inside their window")
    return hard, soft


def _native_cell(codec_hw, out_hw, mv_block: int) -> int:
    """Fusion cell of a source that is downscaled: the largest of 8, 16, 32 px that is at most 2/3 of one output
    cell in source pixels (720p -> 224 px: 32). Fusing far finer than the output grid only costs time: at 720p a
    16-px grid took 0.6 ms per frame to fuse, a 32-px grid 0.25 ms."""
    span = min(codec_hw[0] * mv_block / out_hw[0], codec_hw[1] * mv_block / out_hw[1])
    return max(c for c in (8, 16, 32) if c == 8 or c <= span / 1.5)


def _iter_native(plan: "_Plan", opened, *, first_step: int = 0, stop_step: int | None = None, frame_filter=None,
                 seeked: bool = False, after=None, progress: bool = False, warned: bool = False
                 ) -> Iterator[GOPPrimitives]:
    """Native mode: the file's own I/P frames and vectors. Yields GOPs [first_step, stop_step) as they complete.
    `opened`: (container, stream, packets), closed here. `frame_filter`: a transform of the decoded frames (used
    by segments that start at a seek point); `seeked`: decoding starts at a seek point (frames are indexed by the
    packet scan's timestamps, and the packets read are not the whole file's);
    `after(frames)`: called with the decoded frames left once every step has its frame."""
    src, info, types = plan.src, plan.info, plan.types
    stop_step = len(types) if stop_step is None else stop_step
    container, stream, packets = opened
    bar = _progress(progress, info.num_packets, f"codec primitives {_describe(src)}")
    worker = _Worker()
    scale = _Scaler()
    state = {"steps": None, "fuser": None, "grid": None}

    def handle(f, ftype, idx, t, targets, active):  # on the worker thread, frame by frame in order
        steps = state["steps"]
        if steps is None:
            steps = state["steps"] = plan.make_steps(plan.src_hw or (f.height, f.width), f, "native", first_step,
                                                     even=False)
        codec_hw = (f.height, f.width)
        if state["grid"] != codec_hw:
            changed = state["grid"] is not None
            state["grid"] = codec_hw
            state["fuser"] = _Fuser(f.height, f.width, _native_cell(codec_hw, steps.out_hw, steps.mv_block))
            if changed and active:
                state["fuser"].cut()  # the frame size changed inside a window
        fuser = state["fuser"]
        if active:
            if ftype == "I":
                fuser.cut()
            elif not fuser.broken:
                fuser.add_vectors(_mv_table(f))
        if len(targets):
            rgb = scale(f, steps.out_hw, "rgb24").to_ndarray()
            for k in targets:
                steps.record(k, rgb, t, idx, f, scale)
                if types[k] == "P":
                    steps.finalize(k, fuser)
                fuser.reset(forget=types[k] == "I")

    try:
        _set_decoder_threads(stream, info, "AUTO" if info.reordered is False else "SLICE")
        stream.codec_context.options = {"flags2": "+export_mvs"}
        frames = _decoded_frames(src, packets, stream, max_frames=plan.max_frames, max_pixels=plan.max_pixels,
                                 progress=bar, warned=warned, whole_file=not seeked)
        if frame_filter is not None:
            frames = frame_filter(frames)
        timed = _timed(frames, info.fps, info.frame_pts if seeked else None)
        k_next = first_step  # steps assigned so far: the next step decides whether this frame's vectors are fused
        for idx, t, f, targets in _sampled(timed, _Sampler(plan.times, first_step, stop_step), info.fps):
            ftype = _frame_type(f)
            if ftype == "B":
                raise _NeedTranscode("a B-frame")
            active = 0 < k_next < len(types) and types[k_next] == "P"
            worker.submit(lambda f=f, ftype=ftype, idx=idx, t=t, tg=targets, a=active: handle(f, ftype, idx, t, tg, a))
            k_next += len(targets)
            yield from _drain(state)
        if after is not None:
            after(frames)
        worker.finish()
        if state["steps"] is not None:
            state["steps"].flush()
        yield from _drain(state)
    finally:
        worker.close()
        container.close()
        if bar is not None:
            bar.close()


def _drain(state: dict) -> Iterator[GOPPrimitives]:
    steps = state["steps"]
    while steps is not None and steps.ready:
        yield steps.ready.popleft()


def _gop_tail_filter(info: VideoInfo, targets: np.ndarray) -> Callable[[av.Packet], bool] | None:
    """A packet filter that drops the frames of each GOP after the last one the sampler will take, or None.

    Why: on an I/P stream of the MPEG-1/2, MPEG-4 Part 2 and H.263 decoders every keyframe refreshes the whole
    picture and every P-frame predicts from the frame before it, so the frames of a GOP after its last sampled frame
    feed nothing we use; with a keyframe every 12 frames and a codec frame every 5 that is ~15% of the decode. The
    sampled frames, hence every output, stay identical: each target goes to the nearest frame (_Sampler), which is
    computed here from the packet scan's timestamps (both frames around a target are kept when it sits on a
    midpoint), and dropping frames nobody takes moves no target. Streams with B-frames, missing timestamps or no
    keyframes decode every packet."""
    pts = info.frame_pts
    n = len(pts)
    if (info.reordered is not False or info.codec not in _CLASSIC_MPEG_DECODERS or n == 0 or n != info.num_packets
            or not len(info.keyframe_times) or not info.time_base or not len(targets)):
        return None
    timeline = _frame_timeline(info)
    if timeline is None:
        return None
    _, keys, mid, eps = timeline
    taken = np.concatenate([np.searchsorted(mid, targets - eps), np.searchsorted(mid, targets + eps)])
    taken = np.minimum(taken, n - 1)
    gop = np.searchsorted(keys, np.arange(n), side="right") - 1  # -1: before the first keyframe (never dropped)
    last_taken = np.full(len(keys), -1)
    np.maximum.at(last_taken, gop[taken][gop[taken] >= 0], taken[gop[taken] >= 0])
    drop = (gop >= 0) & (np.arange(n) > last_taken[np.maximum(gop, 0)])
    if not drop.any():
        return None
    dropped_pts = set(pts[drop].tolist())
    return lambda pkt: pkt.pts is None or pkt.pts not in dropped_pts


class _Transcoder:
    """In-memory re-encode of the sampled frames, one encoder per run of steps that starts at an "I" step.

    A fresh encoder makes that I step a codec I-frame; inside the run the encoder never places another one
    (keyint infinite, no scene cuts), one reference frame and no B-frames, so every vector points at the previous
    codec frame and fusing them reaches exactly the reference step. Windows that end at an "I" step are not
    encoded at all."""

    def __init__(self, steps: _Steps, hw, codec: str, rate: Fraction, enc_kwargs: dict):
        self.steps, self.hw, self.codec, self.rate, self.enc_kwargs = steps, hw, codec, rate, enc_kwargs
        self.enc = self.dec = None
        self.pts = self.decoded = -1
        self.last_index = None
        self.steps_at: dict[int, list[int]] = {}
        self.fuser = _Fuser(hw[0], hw[1])

    def start(self, yuv: av.VideoFrame, index: int) -> None:
        """Begin a run: a fresh encoder whose first frame (this "I" step) is a codec I-frame."""
        self.close()
        self.enc = av.CodecContext.create(self.codec, "w")
        _configure_encoder(self.enc, self.codec, self.hw[1], self.hw[0], self.rate, None, **self.enc_kwargs)
        self.dec = av.CodecContext.create("h264" if self.codec == "libx264" else "mpeg4", "r")
        # only the vectors are read from this decoder, and they come from the bitstream: skipping the inverse
        # DCT leaves them identical and saves ~10% of its time
        self.dec.options = {"flags2": "+export_mvs", "skip_idct": "all"}
        self.dec.thread_count = 1
        self.pts = self.decoded = -1
        self.last_index = None
        self.steps_at = {}
        self.push(yuv, index)

    def push(self, yuv: av.VideoFrame, index: int, step: int | None = None) -> None:
        """Encode the next codec frame (source frame `index`); `step`: the Δ step that ends at this frame."""
        if index != self.last_index:
            self.pts += 1
            self.last_index = index
            if step is not None:  # registered before encoding: low-latency encoders (mpeg4) return it at once
                self.steps_at.setdefault(self.pts, []).append(step)
            self._decode(self.enc.encode(_encodable(yuv, self.pts, self.rate)))
        elif step is not None:  # the same source frame again (step rate above the source's): an empty window
            if self.decoded >= self.pts:
                self.steps.finalize(step, self.fuser)
                self.fuser.reset()
            else:
                self.steps_at.setdefault(self.pts, []).append(step)

    def _decode(self, packets) -> None:
        for pkt in packets:
            for df in self.dec.decode(pkt):
                self._on_frame(df)

    def _on_frame(self, df: av.VideoFrame) -> None:
        p = int(df.pts)
        self.decoded = p
        if _frame_type(df) == "I":
            if p == 0:  # a run's first frame: its "I" step
                self.fuser.reset(forget=True)
            else:
                self.fuser.cut()
        elif not self.fuser.broken:
            self.fuser.add_vectors(_mv_table(df))
        for k in self.steps_at.pop(p, ()):
            self.steps.finalize(k, self.fuser)
            self.fuser.reset()

    def close(self) -> None:
        """Drain the run's encoder and decoder: every Δ step of the run is complete afterwards."""
        if self.enc is None:
            return
        self._decode(self.enc.encode(None))
        for df in self.dec.decode(None):
            self._on_frame(df)
        self.enc = self.dec = None


def _transcode_targets(times: np.ndarray, types: str, codec_fps: float, num_packets: int):
    """Targets of the transcode path: for each P step, the interior codec frames of its window at ~codec_fps, then
    the step itself. Returns (times, kinds, first target of each step): kind k >= 0 is step k, -1-k the interior of
    step k's window."""
    tt, kind, first = [], [], np.zeros(len(times) + 1, np.int64)
    for k in range(len(times)):
        first[k] = len(tt)
        if k and types[k] == "P":
            m = max(1, int(round((times[k] - times[k - 1]) * codec_fps)))
            # at most ~2 targets per source packet: they already pick every frame of the window, and damaged
            # timestamps (a window of years) must not turn into billions of targets
            m = min(m, 2 * num_packets + 2)
            for j in range(1, m):
                tt.append(times[k - 1] + (times[k] - times[k - 1]) * j / m)
                kind.append(-1 - k)  # interior of step k's window
        tt.append(times[k])
        kind.append(k)
    first[len(times)] = len(tt)
    return np.asarray(tt, np.float64), kind, first


def _iter_transcode(plan: "_Plan", opened, *, first_step: int = 0, stop_step: int | None = None, frame_filter=None,
                    seeked: bool = False, after=None, progress: bool = False, warned: bool = False
                    ) -> Iterator[GOPPrimitives]:
    """Transcode mode: re-encode the sampled source in memory and fuse that stream's vectors. Yields GOPs
    [first_step, stop_step) as they complete; arguments as for _iter_native."""
    src, info, types, live = plan.src, plan.info, plan.types, plan.live
    stop_step = len(types) if stop_step is None else stop_step
    if live is None:
        tt, kind, step_target = _transcode_targets(plan.times, types, plan.codec_fps, info.num_packets)
    else:  # a live source: the schedule grows with the stream
        tt, kind = None, live.kind
    rate = Fraction(max(plan.codec_fps, 1.0)).limit_denominator(1001)
    container, stream, packets = opened  # stream None: `packets` are decoded frames already
    bar = _progress(progress, info.num_packets, f"codec primitives {_describe(src)}")
    worker = _Worker()
    scale = _Scaler()
    state = {"steps": None, "tc": None}

    def handle(f, idx, t, targets):  # on the worker thread, frame by frame in order
        if state["steps"] is None:
            state["steps"] = plan.make_steps(plan.src_hw or (f.height, f.width), f, "transcode", first_step,
                                             even=True)
            state["tc"] = _Transcoder(state["steps"], state["steps"].out_hw, plan.codec, rate, plan.enc_kwargs)
        steps, tc = state["steps"], state["tc"]
        yuv = None
        for j in targets:
            k = kind[j]
            if k < 0:  # window interior
                if yuv is None:
                    yuv = scale(f, steps.out_hw, "yuv420p")
                tc.push(yuv, idx)
                continue
            if types[k] == "I":
                tc.close()  # completes the previous run's Δ steps before this keyframe
            steps.record(k, scale(f, steps.out_hw, "rgb24").to_ndarray(), t, idx, f, scale)
            if types[k] == "P" or (k + 1 < len(types) and types[k + 1] == "P"):
                if yuv is None:
                    yuv = scale(f, steps.out_hw, "yuv420p")
                if types[k] == "I":
                    tc.start(yuv, idx)
                else:
                    tc.push(yuv, idx, step=k)
            if types[k] == "P" and (k + 1 == len(types) or types[k + 1] == "I"):
                tc.close()  # the run's last step: drain now, so that its GOP is out without waiting for the next

    # Non-reference B-frames are never needed when codec frames are at most half the source rate: the decoder
    # skips them (measured ~40% less decode work on x264 files with B-frames), the rest are still >= codec_fps.
    skipping = bool(info.reordered) and plan.codec_fps * 2 <= info.fps
    keep = None if live is not None else _gop_tail_filter(info, tt)  # I/P: GOP tails nobody samples stay undecoded
    try:
        if stream is not None:
            _set_decoder_threads(stream, info, "AUTO")  # pixels only: frame threading is deterministic for them
            if skipping:
                stream.codec_context.skip_frame = "NONREF"
            frames = _decoded_frames(src, packets, stream, max_frames=plan.max_frames, max_pixels=plan.max_pixels,
                                     progress=bar, warned=warned, skipping=skipping, keep=keep,
                                     whole_file=not seeked and live is None)
        else:
            frames = packets
        if frame_filter is not None:
            frames = frame_filter(frames)
        by_pts = skipping or keep is not None or seeked
        timed = _timed(frames, info.fps, info.frame_pts if by_pts else None)
        if live is not None:
            sampler, timed = live, live.started(timed)
        else:
            sampler = _Sampler(tt, int(step_target[first_step]), int(step_target[stop_step]))
        for idx, t, f, targets in _sampled(timed, sampler, info.fps):
            if len(targets):
                worker.submit(lambda f=f, idx=idx, t=t, tg=targets: handle(f, idx, t, tg))
                if live is not None:
                    worker.wait_idle()
                yield from _drain(state)
        if after is not None:
            after(frames)
        worker.submit(lambda: state["tc"] is not None and state["tc"].close())
        worker.finish()
        if state["steps"] is not None:
            state["steps"].flush()
        yield from _drain(state)
    finally:
        worker.close()
        if container is not None:
            container.close()
        if bar is not None:
            bar.close()


@dataclass
class _Plan:
    """Everything decided before decoding: the step schedule, the mode and the options. Plain data (picklable), so
    that worker processes extracting segments get exactly the caller's decisions."""

    src: object
    info: VideoInfo
    times: np.ndarray
    types: str
    gop_size: int
    native: bool
    size: object
    keyframe_size: object
    mv_block: int
    residual_scale: float
    residual_interpolation: str
    return_frames: bool
    codec: str
    codec_fps: float
    enc_kwargs: dict
    max_frames: int | None
    max_pixels: int | None
    src_hw: tuple[int, int] | None = None  # source frame size the sizes derive from (None: the first frame's)
    live: object = None  # codec_live._LiveSchedule: targets made as the stream grows (then `times` is unused)
    limits: object = None  # codec_probe.DecodeLimits, enforced on the packets of parallel segments too

    def make_steps(self, src_hw, first_frame, mode: str, first_step: int, *, even: bool) -> _Steps:
        hw = _resolve_size(self.size, src_hw[0], src_hw[1], even=even)
        if min(hw) < self.mv_block:  # the first decoded frame may be smaller than the header said
            _too_small_for_grid(self.src, hw, self.mv_block, self.size)
        hr = max(1, int(round(hw[0] * self.residual_scale)))
        wr = max(1, int(round(hw[1] * self.residual_scale)))
        key_hw = None
        if self.keyframe_size is not None:
            key_hw = _resolve_size(self.keyframe_size, src_hw[0], src_hw[1], even=False)
        meta = dict(mode=mode, source_fps=self.info.fps, duration=self.info.duration)
        return _Steps(self.types, hw, (hr, wr), self.mv_block, self.residual_interpolation, self.return_frames,
                      key_hw, gop_size=self.gop_size, meta=meta, first_step=first_step)


def _check_options(fps, codec_fps, mode, residual_scale, mv_block, max_steps, residual_interpolation, codec, preset,
                   gop_size, keyframes_per_gop, *, crf=23, qscale=2, encoder_threads=1, max_frames=None,
                   max_pixels=None, max_decoded_pixels=None, max_pixel_rate=None, max_decode_seconds=None) -> None:
    """Every option checked up front, numbers finite and in range (issue 16, D8: NaN, inf and 1e300 used to come
    back as OverflowError/UFuncTypeError/av.ArgumentError from deep inside)."""
    check_number("fps", fps, low=0, high=1000, low_open=True)
    check_number("codec_fps", codec_fps, low=0, high=1000, low_open=True)
    check_number("residual_scale", residual_scale, low=0, high=1, low_open=True)
    check_number("mv_block", mv_block, low=1, high=4096, integer=True)
    check_number("max_steps", max_steps, low=1, high=10**7, integer=True, optional=True)
    check_number("gop_size", gop_size, low=1, high=10**6, integer=True)
    check_number("keyframes_per_gop", keyframes_per_gop, low=1, high=10**6, integer=True)
    for name, value in (("max_frames", max_frames), ("max_pixels", max_pixels),
                        ("max_decoded_pixels", max_decoded_pixels)):
        check_number(name, value, low=1, integer=True, optional=True)
    check_number("max_pixel_rate", max_pixel_rate, low=0, low_open=True, optional=True)
    check_number("max_decode_seconds", max_decode_seconds, low=0, low_open=True, optional=True)
    check_number("crf", crf, low=0, high=63)
    check_number("qscale", qscale, low=1, high=31, integer=True)
    check_number("encoder_threads", encoder_threads, low=0, high=256, integer=True)
    if mode not in ("auto", "native", "transcode"):
        raise ValueError(f"mode must be 'auto', 'native' or 'transcode', got {mode!r}")
    if residual_interpolation not in ("bilinear", "bicubic", "nearest"):
        raise ValueError(f"residual_interpolation must be bilinear, bicubic or nearest, got {residual_interpolation!r}")
    if codec not in ("libx264", "mpeg4"):
        raise ValueError(f"codec must be 'libx264' or 'mpeg4', got {codec!r}")
    if codec == "libx264" and preset == "ultrafast":
        raise ValueError("preset='ultrafast' gives integer-pel vectors only; use 'superfast' or slower")
    step_frame_types(1, int(gop_size), int(keyframes_per_gop))  # validates


def _too_small_for_grid(path, hw, mv_block: int, size) -> None:
    """A frame smaller than one motion cell has no motion grid (issue 16, D7: 1x1 and 2x2 videos)."""
    if size is None:
        raise UnsupportedVideoError(path, f"frame size {hw[1]}x{hw[0]} is smaller than mv_block={mv_block}: no "
                                          f"motion grid at the source size; pass size= (e.g. 224) to scale it")
    raise ValueError(f"mv_block={mv_block} is larger than the frame size {hw}")


def _make_plan(path, info: VideoInfo, *, fps, gop_size, keyframes_per_gop, mode, size, mv_block, residual_scale,
               max_steps, max_frames, max_pixels, return_frames, codec, codec_fps, preset, crf, qscale,
               encoder_threads, residual_interpolation, keyframe_size, stacklevel: int = 3) -> _Plan:
    """The schedule from the packet scan, the native/transcode decision (with its warnings) and the options."""
    first = info.first_time if info.first_time is not None else 0.0
    last = info.last_time if info.last_time is not None else first + (info.num_packets - 1) / info.fps
    n_grid = _grid_steps(first, last, fps)
    if max_steps is None and max_frames is not None and n_grid > max_frames:
        raise VideoTooLargeError(path, f"{n_grid} steps at fps={fps} over {last - first:.0f} s of timestamps "
                                       f"exceed max_frames={max_frames}; set max_steps to sample them")
    times = _step_times(first, last, fps, max_steps)
    types = step_frame_types(len(times), gop_size, keyframes_per_gop)
    hw_check = _resolve_size(size, info.height or 16, info.width or 16, even=False)
    if min(hw_check) < mv_block:
        _too_small_for_grid(path, hw_check, mv_block, size)
    hard, soft = _native_blockers(info, times, types)
    use_native = (mode == "native" and not hard) or (mode == "auto" and not hard and not soft)
    if mode == "native" and hard:
        warnings.warn(f"{_describe(path)}: native mode impossible ({'; '.join(hard)}); transcoding instead",
                      UserWarning, stacklevel=stacklevel)
    elif mode == "native" and soft:
        warnings.warn(f"{_describe(path)}: native mode will be inexact: {'; '.join(soft)}", UserWarning,
                      stacklevel=stacklevel)
    return _Plan(src=path, info=info, times=times, types=types, gop_size=gop_size, native=use_native, size=size,
                 keyframe_size=keyframe_size, mv_block=mv_block, residual_scale=residual_scale,
                 residual_interpolation=residual_interpolation, return_frames=return_frames, codec=codec,
                 codec_fps=codec_fps, enc_kwargs=dict(preset=preset, crf=crf, qscale=qscale, threads=encoder_threads),
                 max_frames=max_frames, max_pixels=max_pixels)


def _sequential(plan: _Plan, reader: _Reader, *, progress: bool, warned: bool, first_step: int = 0,
                native_hw: tuple[int, int] | None = None) -> Iterator[GOPPrimitives]:
    """GOPs from `first_step` on, from one decode; native mode falls back to transcode when a B-frame appears (from
    the first GOP not yet yielded: GOPs are self-contained, so the ones already out stay valid). `native_hw`: the
    frame size of native GOPs the caller already yielded."""
    done, out_hw = first_step, native_hw
    if plan.native:
        try:
            for gop in _iter_native(plan, reader.open(), first_step=first_step, progress=progress, warned=warned):
                done = gop.first_step + gop.num_steps
                out_hw = gop.frame_size
                yield gop
            return
        except _NeedTranscode as e:
            warnings.warn(f"{_describe(plan.src)}: {e} appeared, transcoding instead of native mode"
                          + (f" from step {done}" if done else ""), UserWarning, stacklevel=3)
        if out_hw is not None:
            if out_hw[0] % 2 or out_hw[1] % 2:
                raise UnsupportedVideoError(plan.src, f"a B-frame appeared after {done} native steps, and their frame "
                                                      f"size {out_hw} cannot be encoded; use mode='transcode'")
            plan = dataclasses.replace(plan, size=out_hw)
    yield from _iter_transcode(plan, reader.open(), first_step=done, progress=progress, warned=warned)
