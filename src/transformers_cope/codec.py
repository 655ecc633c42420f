"""Codec primitives for CoPE-VideoLM: RGB keyframes, fused motion vectors and residuals, read with PyAV.

Why this module exists: CoPE-VideoLM feeds the language model dense tokens for a few keyframes and a handful of
Δ-tokens for every other time step; the Δ-tokens are computed from what the video codec already knows about the
step (its motion vectors) plus what motion does not explain (a residual). FFmpeg exports motion vectors
(`flags2=+export_mvs`) but not residuals, and real files have B-frames, several reference frames and irregular GOPs.
This module turns any video into the paper's layout:

* `read_motion_vectors(path)`: the raw vectors per decoded frame, exactly as FFmpeg exports them.
* `transcode(path, ...)`: re-encode to an I/P-only stream with a fixed GOP (the paper: 30 fps, GOP 240).
* `extract_primitives(path, ...) -> CodecPrimitives`: steps sampled at `fps`, grouped into GOPs of `gop_size` steps
  with `keyframes_per_gop` RGB keyframes ("I") and Δ steps ("P"). For every Δ step: the motion of all codec frames
  between the previous step and this one, fused on a block grid, as content displacement in pixels; an intra mask;
  and the residual `frame_t - warp(frame_ref, fused field)` at reduced resolution.
* `iter_primitives(path, ...) -> GOPIterator`: the same, one GOP at a time (`GOPPrimitives`: the GOP's steps'
  letters, keyframes, motion vectors, intra masks, residuals, timestamps, frame indices, its index and first step),
  each yielded as soon as its last frame is decoded. `CodecPrimitives.from_gops(gops)` concatenates them into
  exactly `extract_primitives`' result, which is how `extract_primitives` is built.

Layout: this module keeps the public API and re-exports the public names of its flat siblings (relative imports, so
they ship together as remote code): `codec_types` (constants, result dataclasses), `codec_probe` (opening, packet
scan, `probe_video`), `codec_decode` (decoding, `read_motion_vectors`), `codec_schedule` (step layout, sampling,
sizes), `codec_fusion` (motion fusion, residual), `codec_transcode` (encoder settings, `transcode`) and
`codec_extract` (the plan and the native / transcode drivers).

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

import dataclasses
from collections.abc import Iterator

from .codec_extract import _check_options, _make_plan, _sequential
from .codec_live import iter_live_primitives
from .codec_parallel import _split, iter_parallel
from .codec_decode import _warn_truncated, read_motion_vectors
from .codec_probe import _Reader, probe_video
from .codec_schedule import step_frame_types
from .codec_transcode import transcode
from .codec_types import (
    DEFAULT_MAX_DECODED_PIXELS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXEL_RATE,
    DEFAULT_MAX_PIXELS,
    MV_COLUMNS,
    MV_EXPORTING_CODECS,
    CodecPrimitives,
    DecodeLimits,
    GOPPrimitives,
    MotionVectorFrame,
    VideoInfo,
)

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
    "GOPPrimitives",
    "GOPIterator",
    "VideoInfo",
    "probe_video",
    "read_motion_vectors",
    "transcode",
    "iter_primitives",
    "iter_live_primitives",
    "extract_primitives",
    "step_frame_types",
]


class GOPIterator(Iterator[GOPPrimitives]):
    """What `iter_primitives` returns: an iterator of GOPPrimitives plus what is known before the first GOP.

    info: the packet scan (VideoInfo). num_steps / num_gops: the planned number of steps and GOPs (the last GOP may
    end earlier on a damaged file). mode: "native" or "transcode" as planned (a B-frame found while decoding switches
    native to transcode; each GOP says its own mode). Close it (or use it as a context manager) to stop early and
    release the file and the worker threads."""

    def __init__(self, gops: Iterator[GOPPrimitives], *, info: VideoInfo | None, num_steps: int | None,
                 gop_size: int, mode: str, cleanup=None):
        self._gops = gops
        self._cleanup = cleanup
        self.info = info
        self.num_steps = num_steps
        self.gop_size = gop_size
        self.num_gops = None if num_steps is None else -(-num_steps // gop_size)
        self.mode = mode

    def __next__(self) -> GOPPrimitives:
        try:
            return next(self._gops)
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> "GOPIterator":
        return self

    def close(self) -> None:
        self._gops.close()
        if self._cleanup is not None:
            cleanup, self._cleanup = self._cleanup, None
            cleanup()

    def __enter__(self) -> "GOPIterator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_primitives(path, *, fps: float = 1.0, gop_size: int = 8, keyframes_per_gop: int = 1, mode: str = "auto",
                    size=(224, 224), mv_block: int = 16, residual_scale: float = 0.25, max_steps: int | None = None,
                    max_frames: int | None = DEFAULT_MAX_FRAMES, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                    return_frames: bool = False, progress: bool = False, codec: str = "mpeg4",
                    codec_fps: float = 5.0, preset: str = "medium", crf: float = 23, qscale: int = 2,
                    encoder_threads: int = 1, residual_interpolation: str = "bilinear",
                    keyframe_size=None, max_decoded_pixels: int | None = DEFAULT_MAX_DECODED_PIXELS,
                    max_pixel_rate: float | None = DEFAULT_MAX_PIXEL_RATE, max_decode_seconds: float | None = None,
                    allow_network: bool = False, num_workers: int | None = None) -> GOPIterator:
    """The codec primitives of `path` one GOP at a time: a `GOPIterator` of `GOPPrimitives`, each yielded as soon as
    the last frame it needs is decoded (arguments: see `extract_primitives`).

    The file is opened and its packets scanned before this returns (so a bad file raises here, and the iterator
    knows `info`, `num_steps`, `num_gops` up front); decoding happens while iterating. Memory holds one GOP being
    collected plus the decoder's frames, whatever the video's length. `CodecPrimitives.from_gops(gops)` of all the
    GOPs equals `extract_primitives(path, same arguments)` bit for bit.

    num_workers: processes extracting segments of the file in parallel (see `extract_primitives`); the first
    segment streams from this process, the others' GOPs follow when their worker is done.
    """
    _check_options(fps, codec_fps, mode, residual_scale, mv_block, max_steps, residual_interpolation, codec, preset,
                   gop_size, keyframes_per_gop, crf=crf, qscale=qscale, encoder_threads=encoder_threads,
                   max_frames=max_frames, max_pixels=max_pixels, max_decoded_pixels=max_decoded_pixels,
                   max_pixel_rate=max_pixel_rate, max_decode_seconds=max_decode_seconds)
    limits = DecodeLimits(max_pixels=max_pixels, max_frames=max_frames, max_decoded_pixels=max_decoded_pixels,
                          max_pixel_rate=max_pixel_rate, max_decode_seconds=max_decode_seconds,
                          allow_network=allow_network)
    reader = _Reader(path, max_pixels, max_frames, limits)  # the scan; its open container decodes afterwards
    try:
        plan = _make_plan(path, reader.info, fps=fps, gop_size=gop_size, keyframes_per_gop=keyframes_per_gop,
                          mode=mode, size=size, mv_block=mv_block, residual_scale=residual_scale,
                          max_steps=max_steps, max_frames=max_frames, max_pixels=max_pixels,
                          return_frames=return_frames, codec=codec, codec_fps=codec_fps, preset=preset, crf=crf,
                          qscale=qscale, encoder_threads=encoder_threads,
                          residual_interpolation=residual_interpolation, keyframe_size=keyframe_size)
        plan = dataclasses.replace(plan, limits=limits)
        warned = _warn_truncated(path, reader.info)
    except BaseException:
        reader.__exit__(None, None, None)
        raise
    segments = _split(plan, num_workers)
    if segments is None:
        gops = _sequential(plan, reader, progress=progress, warned=warned)
    else:
        gops = iter_parallel(plan, reader, segments, progress=progress, warned=warned)
    return GOPIterator(gops, info=plan.info, num_steps=len(plan.types), gop_size=gop_size,
                       mode="native" if plan.native else "transcode", cleanup=lambda: reader.__exit__(None, None, None))


def extract_primitives(path, *, fps: float = 1.0, gop_size: int = 8, keyframes_per_gop: int = 1,
                       mode: str = "auto", size=(224, 224), mv_block: int = 16, residual_scale: float = 0.25,
                       max_steps: int | None = None, max_frames: int | None = DEFAULT_MAX_FRAMES,
                       max_pixels: int | None = DEFAULT_MAX_PIXELS, return_frames: bool = False,
                       progress: bool = False, codec: str = "mpeg4", codec_fps: float = 5.0,
                       preset: str = "medium", crf: float = 23, qscale: int = 2, encoder_threads: int = 1,
                       residual_interpolation: str = "bilinear", keyframe_size=None,
                       max_decoded_pixels: int | None = DEFAULT_MAX_DECODED_PIXELS,
                       max_pixel_rate: float | None = DEFAULT_MAX_PIXEL_RATE, max_decode_seconds: float | None = None,
                       allow_network: bool = False, num_workers: int | None = None) -> CodecPrimitives:
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
    num_workers: processes that extract segments of the file in parallel; the result is bit-identical to the
        sequential one (how the seams stay exact: `codec_parallel`). The file is split at codec keyframes into
        segments of whole GOPs of steps; since every GOP starts at a keyframe step, at which the encoder, the motion
        window and the fusion state all start afresh, no fusion window crosses a segment boundary, and each segment
        decodes from the last codec keyframe before its first step (an IDR picture for H.264) so that its frames
        decode exactly as in a decode from the start. None (default): one worker per two cores this process may
        use (`os.sched_getaffinity`; one extraction already keeps two busy), at most one per 300 source packets,
        and only in a main process (not inside a pool or DataLoader worker): sequential on 2 cores; 1: sequential. Inputs that cannot be split (bytes, URLs, no usable keyframe,
        damaged or timestamp-less packets, a daemonic process) are extracted sequentially.
    Caps: `max_pixels` (per frame: from the stream header, then on every size change in the stream before the
    decoder allocates at that size), `max_frames` (decoded frames; checked from a packet scan first) and the decode
    budget raise VideoTooLargeError. Budget: `max_decoded_pixels` (frames x pixels per file; default one hour of
    1080p60 passes), `max_pixel_rate` (decoded pixels per second of the timeline; default DCI 4K at 30 fps passes,
    4096x4096 at 25 fps does not) and `max_decode_seconds` (wall clock from opening, off by default). Long videos
    stream: memory does not grow with duration beyond the returned arrays.
    Sources: a path is always the local file it names; http(s)/rtsp URLs are opened only with
    `allow_network=True`; playlists, concat lists and image-sequence patterns are refused (UnsupportedVideoError).
    """

    with iter_primitives(path, fps=fps, gop_size=gop_size, keyframes_per_gop=keyframes_per_gop, mode=mode, size=size,
                         mv_block=mv_block, residual_scale=residual_scale, max_steps=max_steps, max_frames=max_frames,
                         max_pixels=max_pixels, return_frames=return_frames, progress=progress, codec=codec,
                         codec_fps=codec_fps, preset=preset, crf=crf, qscale=qscale, encoder_threads=encoder_threads,
                         residual_interpolation=residual_interpolation, keyframe_size=keyframe_size,
                         max_decoded_pixels=max_decoded_pixels, max_pixel_rate=max_pixel_rate,
                         max_decode_seconds=max_decode_seconds, allow_network=allow_network, num_workers=num_workers) as gops:
        return CodecPrimitives.from_gops(gops)
