"""Parallel extraction: a file split at codec keyframes into segments of whole GOPs of steps, extracted by worker
processes and stitched back bit-identical to the sequential result.

Why it is exact. A segment is a range of GOPs of steps [first_step, stop_step). Every GOP starts with an "I" step,
and nothing crosses an "I" step: the transcode path starts a fresh encoder there, the native path starts a fresh
motion window, and the fusion forgets the motion it remembered for all-intra frames (`_Fuser.reset(forget=True)`).
So a Δ window, hence a fusion window, never crosses a segment boundary: the boundary is a keyframe step, whose own
window is not fused, and the windows after it only read frames after it. What a segment needs from the file is
therefore the decoded frames from the one its first step samples onwards, decoded exactly as a decode from the
start would decode them. The segment decodes from the last codec keyframe at or before that frame (found from the
packet scan, checked by seeking to it in the parent, and again in the worker), which gives identical pixels and
vectors when the keyframe refreshes the decoder completely: H.264 IDR pictures (a non-IDR I-frame may be predicted
across), HEVC IRAP pictures, and the keyframes of the other codecs. Frames that come out before the keyframe
(open-GOP leading pictures) are dropped. Each step takes the same frame as in the sequential run because targets
go to the nearest frame by timestamp and the segment's sampler only holds its own targets; frames are indexed by
their rank in the packet scan's timestamps, which equals the sequential decode count once every frame is checked
to decode exactly once (each segment also decodes up to the next segment's keyframe to check that).

When it does not split (the result is then the sequential one): fewer than 2 workers, input that is not a local file
(bytes, a URL, a live source), a process that cannot have children (a daemonic DataLoader worker) or, for the default
num_workers=None, any child process (a prefetch pool: no processes multiplied by processes), a scan that found
damage or packets without timestamps or with repeated ones, no keyframe to split at, or a seek that does not land
on the keyframe. If a worker finds something unexpected while decoding (a lost frame, a warning, a B-frame in native
mode), the remaining GOPs are extracted sequentially from the first one not yet yielded.

Workers are forked (on Linux): a spawned interpreter would pay the package import (seconds) per call. A worker only
runs this codec code on its own files, with torch at one thread.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import av
import numpy as np

from .codec_extract import (
    _gop_tail_filter,
    _iter_native,
    _iter_transcode,
    _NeedTranscode,
    _Plan,
    _sequential,
    _transcode_targets,
)
from .codec_probe import _frame_timeline, _open, _Reader
from .codec_types import GOPPrimitives

# num_workers=None: one worker per 2 available cores (a sequential extraction already keeps about two busy: the
# decoder's threads and the codec worker thread; on this project's 2-core machine 2 workers measured 0.93-1.15x,
# benchmarks/README.md), and none below this many source packets per segment, where the fork and the copy of the
# results cost more than they save. An explicit num_workers splits any splittable file.
MIN_PACKETS_PER_SEGMENT = 300


def default_num_workers() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class _Segment:
    first_step: int
    stop_step: int
    seek_pts: int | None  # None: decode from the start of the file
    check_until: int | None  # decode at least up to this pts (the next segment's keyframe) to check every frame


class _Unsplittable(Exception):
    """A segment cannot reproduce the sequential decode (lost frame, wrong seek, warning)."""


def _independent(pkt, stream) -> bool:
    """True if decoding can start at this key packet with the result of a decode from the start: H.264 needs an IDR
    slice in it, HEVC an IRAP picture (BLA, IDR, CRA); the other codecs' keyframes refresh the decoder."""
    name = stream.codec_context.name
    if name not in ("h264", "hevc"):
        return True
    data = bytes(pkt)
    extradata = bytes(stream.codec_context.extradata or b"")
    length_field = None  # avcC / hvcC extradata: NAL units are length-prefixed, else Annex B start codes
    if name == "h264" and len(extradata) > 4 and extradata[0] == 1:
        length_field = (extradata[4] & 3) + 1
    elif name == "hevc" and len(extradata) > 22 and extradata[0] == 1:
        length_field = (extradata[21] & 3) + 1
    headers = []
    if length_field is None:
        headers = [part[0] for part in data.split(b"\x00\x00\x01")[1:] if part]
    else:
        pos = 0
        while pos + length_field < len(data):
            headers.append(data[pos + length_field])
            pos += length_field + max(int.from_bytes(data[pos:pos + length_field], "big"), 1)
    if name == "h264":
        return any(b & 0x1F == 5 for b in headers)
    return any(16 <= (b >> 1) & 0x3F <= 21 for b in headers)


def _split(plan: _Plan, num_workers: int | None) -> list[_Segment] | None:
    """Segments of whole GOPs starting at usable keyframes, balanced by source packets; None when not splittable."""
    info = plan.info
    auto = num_workers is None
    workers = default_num_workers() if auto else int(num_workers)
    if auto:  # one extraction keeps ~2 cores busy (decoder threads + the codec worker thread)
        workers = min(workers // 2, info.num_packets // MIN_PACKETS_PER_SEGMENT)
        if multiprocessing.parent_process() is not None:
            return None  # already in a worker process (a prefetch pool, a DataLoader): do not multiply processes
    if (workers < 2 or not isinstance(plan.src, (str, os.PathLike)) or not os.path.isfile(os.fspath(plan.src))
            or multiprocessing.current_process().daemon):
        return None  # bytes, URLs, pipes and devices are not seekable from another process
    pts = info.frame_pts
    n = len(pts)
    if (info.truncated or info.reordered is None or n < 2 or n != info.num_packets or not info.time_base
            or not len(info.keyframe_times) or np.any(np.diff(pts) <= 0)):
        return None
    timeline = _frame_timeline(info)
    if timeline is None:
        return None
    _, keys, mid, eps = timeline
    if plan.native:
        targets, step_target = plan.times, np.arange(len(plan.types) + 1)
    else:
        targets, _, step_target = _transcode_targets(plan.times, plan.types, plan.codec_fps, info.num_packets)
    candidates = []  # (key frame index, GOP start step, first frame of that step)
    for start in range(plan.gop_size, len(plan.types), plan.gop_size):
        frame = min(int(np.searchsorted(mid, targets[step_target[start]] - eps, side="left")), n - 1)
        k = int(np.searchsorted(keys, frame, side="right")) - 1
        if k >= 0 and keys[k] > 0 and (not candidates or keys[k] > candidates[-1][0]):
            candidates.append((int(keys[k]), start, frame))
    # balance the decoding: the segment before a split decodes up to the split step's frame, the one after from
    # the keyframe before it, so a split "sits" between the two
    chosen = []
    for s in range(1, workers):
        goal = s * n / workers
        best = min((c for c in candidates if not chosen or c[0] > chosen[-1][0]),
                   key=lambda c: abs(0.5 * (c[0] + c[2]) - goal), default=None)
        if best is not None and best not in chosen:
            chosen.append(best)
    chosen = [(key, start) for key, start, _ in chosen]
    chosen = _seekable(plan, chosen)
    if not chosen:
        return None
    bounds = [(None, 0)] + [(int(pts[i]), step) for i, step in chosen]
    return [_Segment(first_step=step, stop_step=bounds[j + 1][1] if j + 1 < len(bounds) else len(plan.types),
                     seek_pts=seek, check_until=bounds[j + 1][0] if j + 1 < len(bounds) else None)
            for j, (seek, step) in enumerate(bounds)]


def _seekable(plan: _Plan, chosen: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The split points whose seek lands on their keyframe packet, and whose keyframe refreshes the decoder."""
    kept = []
    try:
        container, stream = _open(plan.src)
    except Exception:
        return []
    try:
        for i, step in chosen:
            if _seek(container, stream, int(plan.info.frame_pts[i]), plan.info.time_base) is not None:
                kept.append((i, step))
    finally:
        container.close()
    return kept


def _seek(container, stream, key_pts: int, time_base: float):
    """Position the demuxer on the keyframe packet at `key_pts`: (that packet, the packets after it), or None.

    Seeking is exact in MP4/MKV; MPEG-PS/TS seeks land near the target (after it, on city_cc0.mpg), so the seek
    aims earlier and earlier and the packets up to the keyframe are skipped."""
    for back in (0.0, 1.0, 5.0, 30.0):  # seconds before the keyframe
        try:
            container.seek(max(int(key_pts - back / time_base), 0), stream=stream, backward=True, any_frame=False)
            packets = container.demux(stream)
            for n, pkt in enumerate(packets):
                if not pkt.size or pkt.pts is None:
                    continue
                if pkt.pts == key_pts:
                    if not pkt.is_keyframe or not _independent(pkt, stream):
                        return None
                    return pkt, packets
                if n == 0 and pkt.pts > key_pts or n > 2000 or pkt.is_keyframe and pkt.pts > key_pts:
                    break  # landed after it: aim earlier
        except (av.error.FFmpegError, ValueError):
            return None
    return None


class _Checked:
    """The decoded frames of a segment: drops those before its keyframe (leading pictures) and checks that every
    frame from there on is the next one of the packet scan, each exactly once."""

    def __init__(self, frames, seek_pts: int | None, frame_pts: np.ndarray, every_frame: bool):
        self.frames, self.seek_pts, self.frame_pts, self.every_frame = frames, seek_pts, frame_pts, every_frame
        self.expect = 0 if seek_pts is None else int(np.searchsorted(frame_pts, seek_pts))
        self.last_pts = None

    def __iter__(self):
        for f in self.frames:
            if f.pts is None:
                raise _Unsplittable("a frame without timestamp")
            if self.seek_pts is not None and f.pts < self.seek_pts:
                continue
            r = int(np.searchsorted(self.frame_pts, f.pts))
            if r >= len(self.frame_pts) or self.frame_pts[r] != f.pts or r < self.expect or \
                    (self.every_frame and r != self.expect):
                raise _Unsplittable(f"frame {r} decoded where frame {self.expect} was due")
            self.expect = r + 1
            self.last_pts = f.pts
            yield f

    def check_until(self, frames, pts: int | None) -> None:
        """Keep decoding (and checking) up to the frame at `pts`: the next segment starts there."""
        if pts is None:
            return
        for _ in frames:
            if self.last_pts is not None and self.last_pts >= pts:
                return


def _run_segment(plan: _Plan, seg: _Segment, *, opened=None, progress: bool = False,
                 warned: bool = False) -> Iterator[GOPPrimitives]:
    """One segment's GOPs (in a worker process, or streamed in the parent for the first segment)."""
    if opened is None:
        container, stream = _open(plan.src, plan.max_pixels)
        landed = _seek(container, stream, seg.seek_pts, plan.info.time_base)
        if landed is None:
            container.close()
            raise _Unsplittable(f"the seek to pts {seg.seek_pts} did not land on its keyframe")
        first, packets = landed
        opened = (container, stream, _guarded(plan, stream, _chain(first, packets)))
    checked = {}

    def frame_filter(frames):
        checked["c"] = _Checked(frames, seg.seek_pts, plan.info.frame_pts, every_frame=_every_frame(plan))
        return iter(checked["c"])

    def after(frames):
        checked["c"].check_until(frames, seg.check_until)

    drive = _iter_native if plan.native else _iter_transcode
    yield from drive(plan, opened, first_step=seg.first_step, stop_step=seg.stop_step, frame_filter=frame_filter,
                     seeked=seg.seek_pts is not None, after=after, progress=progress, warned=warned)


def _guarded(plan: _Plan, stream, packets):
    """The segment's packets under the caller's decode limits (in-band size changes, decoded pixels, wall clock
    from the segment's start), checked as `_Reader.open` checks a whole file's."""
    if plan.limits is None:
        return packets
    guard = _Reader.__new__(_Reader)
    guard.src, guard.limits, guard.started = plan.src, plan.limits, time.monotonic()
    return guard._guarded(stream, packets)


def _chain(first, packets):
    yield first
    yield from packets


def _segment_in_worker(plan: _Plan, seg: _Segment) -> list[GOPPrimitives] | str:
    """Worker process entry: the segment's GOPs, or why it could not reproduce the sequential decode."""
    import torch

    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gops = list(_run_segment(plan, seg))
        if caught:
            return f"warning while decoding: {caught[0].message}"
        return gops
    except (_Unsplittable, _NeedTranscode) as e:
        return f"{type(e).__name__}: {e}"


def _every_frame(plan: _Plan) -> bool:
    """Whether every packet is decoded (as opposed to skipped on purpose: non-reference B-frames, GOP tails)."""
    if plan.native:
        return True
    info = plan.info
    if bool(info.reordered) and plan.codec_fps * 2 <= info.fps:
        return False
    targets, _, _ = _transcode_targets(plan.times, plan.types, plan.codec_fps, info.num_packets)
    return _gop_tail_filter(info, targets) is None


def iter_parallel(plan: _Plan, reader: _Reader, segments: list[_Segment], *, progress: bool,
                  warned: bool) -> Iterator[GOPPrimitives]:
    """The first segment streamed from this process while worker processes extract the others; results in order.
    On a segment that cannot reproduce the sequential decode, the rest is extracted sequentially."""
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(max_workers=len(segments) - 1, mp_context=context)
    done, native_hw = 0, None
    try:
        with warnings.catch_warnings():
            # the workers run only this module's code on their own files (see the module docstring)
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            futures = [pool.submit(_segment_in_worker, plan, seg) for seg in segments[1:]]
        try:
            for gop in _run_segment(plan, segments[0], opened=reader.open(), progress=progress, warned=warned):
                done, native_hw = gop.first_step + gop.num_steps, gop.frame_size if gop.mode == "native" else None
                yield gop
            for future in futures:
                result = future.result()
                if isinstance(result, str):
                    raise _Unsplittable(result)
                for gop in result:
                    done, native_hw = gop.first_step + gop.num_steps, gop.frame_size if gop.mode == "native" else None
                    yield gop
            return
        except (_Unsplittable, _NeedTranscode):
            pass
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    yield from _sequential(plan, reader, progress=False, warned=warned, first_step=done, native_hw=native_hw)
