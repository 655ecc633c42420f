"""Codec primitives for CoPE-VideoLM: RGB keyframes, fused motion vectors and residuals, read with PyAV.

Why this module exists: CoPE-VideoLM feeds the language model dense tokens for a few keyframes and a handful of
Δ-tokens for every other time step; the Δ-tokens are computed from what the video codec already knows about the
step (its motion vectors) plus what motion does not explain (a residual). FFmpeg exports motion vectors
(`flags2=+export_mvs`) but not residuals, and real files have B-frames, several reference frames and irregular GOPs.
This module turns any video into the paper's layout:

* `read_motion_vectors(path)`: the raw vectors per decoded frame, exactly as FFmpeg exports them.
* `transcode(path, ...)`: re-encode to an I/P-only stream with a fixed GOP (the paper: 30 fps, GOP 240).
* `extract_primitives(path, ...)`: steps sampled at `fps`, grouped into GOPs of `gop_size` steps with
  `keyframes_per_gop` RGB keyframes ("I") and Δ steps ("P"). For every Δ step: the motion of all codec frames
  between the previous step and this one, fused on a block grid, as content displacement in pixels; an intra mask;
  and the residual `frame_t - warp(frame_ref, fused field)` at reduced resolution.

Layout: this module keeps the public API and the extraction drivers and re-exports the public names of its flat
siblings (relative imports, so they ship together as remote code): `codec_types` (constants, result dataclasses),
`codec_probe` (opening, packet scan, `probe_video`), `codec_decode` (decoding, `read_motion_vectors`),
`codec_schedule` (step layout, sampling, sizes), `codec_fusion` (motion fusion, residual) and `codec_transcode`
(encoder settings, `transcode`).

One machinery serves both modes: a stream of decoded I/P frames with motion vectors plus a step schedule.
"transcode" makes that stream by re-encoding the sampled source in memory (mpeg4 or libx264, one reference frame,
no B-frames, a codec I-frame exactly at every "I" step); "native" uses the file's own P-frames when it already is
such a stream. Frames are streamed: memory holds the current frame, the reference step and the outputs only.

Conventions: x = column (right +), y = row (down +). FFmpeg's `motion_x / motion_scale` points from a block of the
current frame to its source in the reference (content moving +v gives -v); the fused field keeps that direction
internally and the returned `motion_vectors` are its negation, the content displacement from the reference step.
Rotation metadata (`frame.rotation`) is ignored: pixels and vectors stay in coded orientation; sample aspect ratio
is ignored too (frames are scaled in coded pixels).
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np

from .codec_decode import (
    _decoded_frames,
    _frame_type,
    _mv_table,
    _set_decoder_threads,
    _timed,
    _warn_truncated,
    read_motion_vectors,
)
from .codec_fusion import _Fuser, _grid_to_output, _Residual
from .codec_probe import _describe, _Reader, probe_video
from .codec_schedule import _grid_steps, _resolve_size, _sampled, _Sampler, _step_times, step_frame_types
from .codec_transcode import _configure_encoder, _encodable, _progress, _Scaler, transcode
from .codec_types import (
    _CLASSIC_MPEG_DECODERS,
    DEFAULT_MAX_DECODED_PIXELS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXEL_RATE,
    DEFAULT_MAX_PIXELS,
    MV_COLUMNS,
    MV_EXPORTING_CODECS,
    CodecPrimitives,
    DecodeLimits,
    MotionVectorFrame,
    VideoInfo,
)
from .errors import UnsupportedVideoError, VideoTooLargeError, check_number


__all__ = [
    "MV_COLUMNS",
    "MV_EXPORTING_CODECS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_DECODED_PIXELS",
    "DEFAULT_MAX_PIXEL_RATE",
    "DecodeLimits",
    "MotionVectorFrame",
    "CodecPrimitives",
    "VideoInfo",
    "probe_video",
    "read_motion_vectors",
    "transcode",
    "extract_primitives",
    "step_frame_types",
]


# ---------------------------------------------------------------------------------------------------- extraction


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
                return
            if self.error is None:
                try:
                    item()
                except BaseException as e:  # re-raised on the calling thread
                    self.error = e

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
    """Collects the outputs step by step; keeps only the reference step's small frame besides the outputs."""

    def __init__(self, types: str, out_hw, res_hw, mv_block: int, interpolation: str, return_frames: bool,
                 key_hw=None):
        self.types = types
        self.out_hw = out_hw
        self.key_hw = key_hw or out_hw  # keyframes: scaled from the source frame when this differs from out_hw
        self.mv_block = mv_block
        self.residual = _Residual(out_hw, res_hw, interpolation)
        self.return_frames = return_frames
        self.produced = []
        self.keyframes, self.frames, self.times, self.indices = [], [], [], []
        self.motion, self.masks, self.residuals = [], [], []
        self.small = {}
        self.finalized = 0  # number of steps whose outputs are complete

    def record(self, k: int, rgb: np.ndarray, time: float, index: int, frame=None, scale=None) -> None:
        """Step k's frame at out_hw (`rgb`); an "I" step at a different key_hw is scaled from the source `frame`."""
        assert k == len(self.produced)
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

    def result(self, mode: str, info: VideoInfo) -> CodecPrimitives:
        h, w = self.out_hw
        hg, wg = h // self.mv_block, w // self.mv_block
        hr, wr = self.residual.hr, self.residual.wr
        n_p = len(self.motion)
        return CodecPrimitives(
            frame_types="".join(self.produced[:self.finalized]),
            keyframes=np.stack(self.keyframes) if self.keyframes else np.zeros((0, *self.key_hw, 3), np.uint8),
            motion_vectors=np.stack(self.motion) if n_p else np.zeros((0, 2, hg, wg), np.float32),
            intra_masks=np.stack(self.masks) if n_p else np.zeros((0, hg, wg), bool),
            residuals=np.stack(self.residuals) if n_p else np.zeros((0, 3, hr, wr), np.float32),
            timestamps=np.asarray(self.times[:self.finalized], np.float64),
            frame_indices=np.asarray(self.indices[:self.finalized], np.int64),
            frame_size=(h, w),
            frames=(np.stack(self.frames[:self.finalized]) if self.frames else np.zeros((0, h, w, 3), np.uint8))
            if self.return_frames else None,
            mode=mode, source_fps=float(info.fps), duration=float(info.duration))


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


def _extract_native(src, info, times, types, out_spec, make_steps, *, reader, max_frames, max_pixels, progress,
                    warned):
    container, stream, packets = reader.open()
    bar = _progress(progress, info.num_packets, f"codec primitives {_describe(src)}")
    worker = _Worker()
    scale = _Scaler()
    state = {"steps": None, "fuser": None, "grid": None}

    def handle(f, ftype, idx, t, targets, active):  # on the worker thread, frame by frame in order
        steps = state["steps"]
        if steps is None:
            steps = state["steps"] = make_steps(_resolve_size(out_spec, f.height, f.width, even=False), f)
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
                fuser.reset()

    try:
        _set_decoder_threads(stream, info, "AUTO" if info.reordered is False else "SLICE")
        stream.codec_context.options = {"flags2": "+export_mvs"}
        frames = _decoded_frames(src, packets, stream, max_frames=max_frames, max_pixels=max_pixels,
                                 progress=bar, warned=warned)
        k_next = 0  # steps assigned so far: the next step decides whether this frame's vectors are fused
        for idx, t, f, targets in _sampled(_timed(frames, info.fps), _Sampler(times), info.fps):
            ftype = _frame_type(f)
            if ftype == "B":
                raise _NeedTranscode("a B-frame")
            active = 0 < k_next < len(types) and types[k_next] == "P"
            worker.submit(lambda f=f, ftype=ftype, idx=idx, t=t, tg=targets, a=active: handle(f, ftype, idx, t, tg, a))
            k_next += len(targets)
        worker.finish()
        return state["steps"].result("native", info)
    finally:
        worker.close()
        container.close()
        if bar is not None:
            bar.close()


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
    times = pts.astype(np.float64) * info.time_base
    keys = np.searchsorted(times, info.keyframe_times)
    if keys[-1] >= n or not np.array_equal(times[keys], info.keyframe_times):
        return None
    keys = np.unique(keys)
    # frame i takes the targets in (mid[i - 1], mid[i]] (_Sampler / _sampled); the last frame one frame beyond
    mid = np.append(0.5 * (times[:-1] + times[1:]), times[-1] + 1.0 / info.fps)
    eps = 1e-6 * max(1.0, float(np.abs(times).max()))
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
            if p == 0:
                self.fuser.reset()
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


def _extract_transcode(src, info, times, types, out_spec, make_steps, *, reader, codec, codec_fps, enc_kwargs,
                       max_frames, max_pixels, progress, warned):
    # targets: for each P step, the interior codec frames of its window at ~codec_fps, then the step itself
    tt, kind = [], []
    for k in range(len(times)):
        if k and types[k] == "P":
            m = max(1, int(round((times[k] - times[k - 1]) * codec_fps)))
            # at most ~2 targets per source packet: they already pick every frame of the window, and damaged
            # timestamps (a window of years) must not turn into billions of targets
            m = min(m, 2 * info.num_packets + 2)
            for j in range(1, m):
                tt.append(times[k - 1] + (times[k] - times[k - 1]) * j / m)
                kind.append(-1 - k)  # interior of step k's window
        tt.append(times[k])
        kind.append(k)
    rate = Fraction(max(codec_fps, 1.0)).limit_denominator(1001)
    container, stream, packets = reader.open()
    bar = _progress(progress, info.num_packets, f"codec primitives {_describe(src)}")
    worker = _Worker()
    scale = _Scaler()
    state = {"steps": None, "tc": None}

    def handle(f, idx, t, targets):  # on the worker thread, frame by frame in order
        if state["steps"] is None:
            out_hw = _resolve_size(out_spec, f.height, f.width, even=True)
            state["steps"] = make_steps(out_hw, f)
            state["tc"] = _Transcoder(state["steps"], out_hw, codec, rate, enc_kwargs)
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

    # Non-reference B-frames are never needed when codec frames are at most half the source rate: the decoder
    # skips them (measured ~40% less decode work on x264 files with B-frames), the rest are still >= codec_fps.
    skipping = bool(info.reordered) and codec_fps * 2 <= info.fps
    keep = _gop_tail_filter(info, np.asarray(tt))  # I/P: GOP tails after the last sampled frame are not decoded
    try:
        _set_decoder_threads(stream, info, "AUTO")  # pixels only: frame threading is deterministic for them
        if skipping:
            stream.codec_context.skip_frame = "NONREF"
        frames = _decoded_frames(src, packets, stream, max_frames=max_frames, max_pixels=max_pixels,
                                 progress=bar, warned=warned, skipping=skipping, keep=keep)
        timed = _timed(frames, info.fps, info.frame_pts if skipping or keep is not None else None)
        for idx, t, f, targets in _sampled(timed, _Sampler(np.asarray(tt)), info.fps):
            if len(targets):
                worker.submit(lambda f=f, idx=idx, t=t, tg=targets: handle(f, idx, t, tg))
        worker.submit(lambda: state["tc"] is not None and state["tc"].close())
        worker.finish()
        return state["steps"].result("transcode", info)
    finally:
        worker.close()
        container.close()
        if bar is not None:
            bar.close()


def _too_small_for_grid(path, hw, mv_block: int, size) -> None:
    """A frame smaller than one motion cell has no motion grid (issue 16, D7: 1x1 and 2x2 videos)."""
    if size is None:
        raise UnsupportedVideoError(path, f"frame size {hw[1]}x{hw[0]} is smaller than mv_block={mv_block}: no "
                                          f"motion grid at the source size; pass size= (e.g. 224) to scale it")
    raise ValueError(f"mv_block={mv_block} is larger than the frame size {hw}")


def extract_primitives(path, *, fps: float = 1.0, gop_size: int = 8, keyframes_per_gop: int = 1,
                       mode: str = "auto", size=(224, 224), mv_block: int = 16, residual_scale: float = 0.25,
                       max_steps: int | None = None, max_frames: int | None = DEFAULT_MAX_FRAMES,
                       max_pixels: int | None = DEFAULT_MAX_PIXELS, return_frames: bool = False,
                       progress: bool = False, codec: str = "mpeg4", codec_fps: float = 5.0,
                       preset: str = "medium", crf: float = 23, qscale: int = 2, encoder_threads: int = 1,
                       residual_interpolation: str = "bilinear", keyframe_size=None,
                       max_decoded_pixels: int | None = DEFAULT_MAX_DECODED_PIXELS,
                       max_pixel_rate: float | None = DEFAULT_MAX_PIXEL_RATE, max_decode_seconds: float | None = None,
                       allow_network: bool = False) -> CodecPrimitives:
    """Codec primitives of a video at CoPE-VideoLM's step layout (see CodecPrimitives for the arrays).

    Steps: sampled at `fps` from the first frame (nearest decoded frame by presentation time), uniformly
    subsampled to `max_steps` if there are more; GOPs of `gop_size` steps with `keyframes_per_gop` evenly spaced
    "I" steps (RGB keyframes) and "P" (Δ) steps whose reference is the previous step.

    Δ step primitives: every codec frame between the reference step and the step contributes its motion vectors;
    they are fused on an 8-px grid (CoViAR accumulation, reset at each step), pooled to `mv_block` cells and
    returned as content displacement in pixels of the `size` frames, with an intra mask for cells whose chain
    meets an intra block or codec I-frame. The residual is frame_t - warp(frame_ref, fused field) in RGB at
    `residual_scale` of the frame size, computed only for Δ steps, from the source frames scaled to `size`.

    mode:
      "transcode": re-encode the sampled source in memory (I/P, one reference frame, a codec I-frame exactly at
        every "I" step, no other I-frame) and fuse the vectors of that stream. Works for every codec and frame
        structure. Windows that end at an "I" step are not encoded at all.
      "native": use the file's own P-frames (h264/mpeg4/mpeg2video/h263 without B-frames), vectors scaled to
        `size`; a codec keyframe inside a Δ window makes that step all intra. Files whose codec exports no
        vectors or that have B-frames fall back to transcode with a warning.
      "auto" (default): native when it is exact (an exporting codec, no B-frames, one reference frame for H.264,
        no codec keyframe inside a Δ window), else transcode. Native costs a decode with vectors (the fastest
        path); transcode costs a decode plus resizing and encoding `codec_fps` small frames per second. Most
        real files (B-frames, frequent keyframes) take the transcode path.
    codec: encoder of the transcode path. "mpeg4" (default; MPEG-4 Part 2 at quantiser `qscale`, half-pel
        vectors, CoViAR's choice) is ~4x cheaper to encode than libx264 and keeps extraction faster than decoding
        every frame to RGB (benchmarks/bench_codec.py); it passes the same ground-truth tests. "libx264"
        (`preset`, `crf`; quarter-pel, better on fast motion; "ultrafast" is refused: integer-pel vectors) costs
        0.5-0.7x a plain decode on fast-decoding 720p sources at preset "medium" (benchmarks/bench_codec.py).
    codec_fps: codec frames per second inside Δ windows (transcode). The paper fuses 30. Each codec frame costs a
        resize, an encode, a vector decode and a fusion (~2 ms at 224 px), and every hop adds half-pel rounding
        and resampling drift to the fused chain: on the real clips in benchmarks/ the motion-compensated residual
        kept 0.61-0.78 of the frame difference's energy at 5, 0.64-0.80 at 10 and 0.80-0.84 at 30, so 5 is the
        default. Fewer frames means larger per-frame motion for the encoder's search: a rendered pan of 45 px per
        codec frame was recovered exactly, one of 60 px was lost to intra; raise it for such motion. Ground-truth tests
        pass at 5, 10 and 30.
    size: int (short side, aspect kept, multiples of 16) | (H, W) exact | None (source size). Transcode rounds
        odd sides down to even.
    keyframe_size: like `size`, for the "I" steps' RGB keyframes only (None: `size`). They are scaled from the
        source frame, so a vision tower at 384 px sees 384 px of detail rather than the codec frame upsampled; the
        Δ steps and residuals stay at `size`.
    Determinism: identical arrays bit for bit across runs. Transcode decodes pixels with frame threads, or one
        thread for cheap MPEG-1/2/4 Part 2 decodes up to 720p (decoded pixels do not depend on threading), encodes with a fixed thread count and x264's mbtree off (it made
        x264's output vary between identical runs); native mode uses frame threads only on streams without
        B-frames, whose exported vectors are identical under any threading.
    Caps: `max_pixels` (per frame: from the stream header, then on every size change in the stream before the
    decoder allocates at that size), `max_frames` (decoded frames; checked from a packet scan first) and the decode
    budget raise VideoTooLargeError. Budget: `max_decoded_pixels` (frames x pixels per file; default one hour of
    1080p60 passes), `max_pixel_rate` (decoded pixels per second of the timeline; default DCI 4K at 30 fps passes,
    4096x4096 at 25 fps does not) and `max_decode_seconds` (wall clock from opening, off by default). Long videos
    stream: memory does not grow with duration beyond the returned arrays.
    Sources: a path is always the local file it names; http(s)/rtsp URLs are opened only with
    `allow_network=True`; playlists, concat lists and image-sequence patterns are refused (UnsupportedVideoError).
    """
    fps = check_number("fps", fps, low=0, high=1000, low_open=True)
    codec_fps = check_number("codec_fps", codec_fps, low=0, high=1000, low_open=True)
    residual_scale = check_number("residual_scale", residual_scale, low=0, high=1, low_open=True)
    mv_block = check_number("mv_block", mv_block, low=1, high=4096, integer=True)
    max_steps = check_number("max_steps", max_steps, low=1, high=10**7, integer=True, optional=True)
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
    if not 0 < residual_scale <= 1:
        raise ValueError(f"residual_scale must be in (0, 1], got {residual_scale}")
    if mv_block < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"need mv_block >= 1 and max_steps >= 1, got {mv_block}, {max_steps}")
    if residual_interpolation not in ("bilinear", "bicubic", "nearest"):
        raise ValueError(f"residual_interpolation must be bilinear, bicubic or nearest, got {residual_interpolation!r}")
    if codec not in ("libx264", "mpeg4"):
        raise ValueError(f"codec must be 'libx264' or 'mpeg4', got {codec!r}")
    if codec == "libx264" and preset == "ultrafast":
        raise ValueError("preset='ultrafast' gives integer-pel vectors only; use 'superfast' or slower")
    gop_size = check_number("gop_size", gop_size, low=1, high=10**6, integer=True)
    keyframes_per_gop = check_number("keyframes_per_gop", keyframes_per_gop, low=1, high=10**6, integer=True)
    step_frame_types(1, gop_size, keyframes_per_gop)  # validates

    limits = DecodeLimits(max_pixels=max_pixels, max_frames=max_frames, max_decoded_pixels=max_decoded_pixels,
                          max_pixel_rate=max_pixel_rate, max_decode_seconds=max_decode_seconds,
                          allow_network=allow_network)
    with _Reader(path, max_pixels, max_frames, limits) as reader:  # the scan; its open container decodes afterwards
        info = reader.info
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
                          UserWarning, stacklevel=2)
        elif mode == "native" and soft:
            warnings.warn(f"{_describe(path)}: native mode will be inexact: {'; '.join(soft)}", UserWarning,
                          stacklevel=2)

        def make_steps(hw, first_frame):
            if min(hw) < mv_block:  # the first decoded frame may be smaller than the header said
                _too_small_for_grid(path, hw, mv_block, size)
            hr = max(1, int(round(hw[0] * residual_scale)))
            wr = max(1, int(round(hw[1] * residual_scale)))
            key_hw = None
            if keyframe_size is not None:
                key_hw = _resolve_size(keyframe_size, first_frame.height, first_frame.width, even=False)
            return _Steps(types, hw, (hr, wr), mv_block, residual_interpolation, return_frames, key_hw)

        common = dict(reader=reader, max_frames=max_frames, max_pixels=max_pixels, progress=progress,
                      warned=_warn_truncated(path, info))
        if use_native:
            try:
                return _extract_native(path, info, times, types, size, make_steps, **common)
            except _NeedTranscode as e:
                warnings.warn(f"{_describe(path)}: {e} appeared, transcoding instead of native mode", UserWarning,
                              stacklevel=2)
        enc_kwargs = dict(preset=preset, crf=crf, qscale=qscale, threads=encoder_threads)
        return _extract_transcode(path, info, times, types, size, make_steps, codec=codec, codec_fps=codec_fps,
                                  enc_kwargs=enc_kwargs, **common)
