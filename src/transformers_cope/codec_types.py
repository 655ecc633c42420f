"""Constants and result types of the codec layer (see `codec.py` for the whole picture).

Why a module of its own: every other codec_* module needs these, and the public dataclasses are what callers hold;
keeping them apart from the machinery lets each piece import them without import cycles.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

MV_COLUMNS = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale")
# Decoders whose frames carry MOTION_VECTORS side data (measured with PyAV 18; hevc, vp8, vp9, av1 export none).
MV_EXPORTING_CODECS = frozenset({"h264", "mpeg4", "mpeg2video", "h263"})
# The MPEG-1/2, MPEG-4 Part 2 and H.263-family decoders: one reference frame and a cheap decode. Two things follow.
# Threads gain little up to 720p on two cores: one thread decoded 405p MPEG-2 in 171-211 ms (slice threads: 153-254
# ms across runs) and 720p MPEG-4 Part 2 in 396 ms (frame threads: 383 ms on 1.5 cores), so they decode on one thread
# and leave the other core to the codec worker (_set_decoder_threads); at 1080p threads pay (MPEG-4 Part 2: 903 vs
# 1203 ms), and H.264 gains from them at every size. And on their I/P streams a keyframe refreshes the whole picture
# and a P-frame predicts only from the frame before it, so frames after a GOP's last sampled one feed nothing
# (_gop_tail_filter); H.264 may predict from older references.
_CLASSIC_MPEG_DECODERS = frozenset({"mpeg1video", "mpeg2video", "mpeg4", "h263", "h263p", "msmpeg4v1", "msmpeg4v2",
                                    "msmpeg4v3", "wmv1", "wmv2", "flv1"})
DEFAULT_MAX_PIXELS = 4096 * 4096  # per frame; 4K/DCI 4K pass, 8K must be allowed explicitly
DEFAULT_MAX_FRAMES = 500_000  # decoded frames: ~4.6 h at 30 fps
# The decode budget (issue 16, D6): decode cost is pixels, so it is capped in pixels, which a loaded machine does not
# change. Total decoded pixels per file: 2**39 = 5.5e11, i.e. one hour of 1080p at 60 fps (4.5e11) passes.
DEFAULT_MAX_DECODED_PIXELS = 2**39
# Decoded pixels per second of the video's timeline: 2**28 = 2.7e8, i.e. DCI 4K (4096x2160) at 30 fps or 1080p at
# 120 fps pass; 4096x4096 at 25 fps (4.2e8: 2.7 MB of it took 28-60 s to decode) does not.
DEFAULT_MAX_PIXEL_RATE = 2**28
_CELL = 8  # FFmpeg exports 16x16, 16x8, 8x16 and 8x8 blocks: an 8-px grid is the finest that carries information
_PICT_TYPES = {1: "I", 2: "P", 3: "B", 4: "P", 5: "I", 6: "P", 7: "B"}  # AVPictureType: S->P, SI->I, SP->P, BI->B
_ISO_BMFF_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"styp")


# ---------------------------------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class DecodeLimits:
    """What one file may cost; every limit raises VideoTooLargeError (None = no limit).

    max_pixels: pixels per frame, from the header, the probe and every in-band size change (before the decoder
        allocates at that size: FFmpeg's own `max_pixels` decoder option is set too).
    max_frames: decoded frames. max_decoded_pixels: frames x pixels over the file. max_pixel_rate: decoded pixels
        per second of the timeline (from the packet scan). max_decode_seconds: wall-clock seconds from opening
        to the last decoded frame (off by default: the pixel caps do not depend on machine load).
    allow_network: open http(s)/rtsp URLs (off: a string is always a local path, opened as an absolute `file:`).
    """

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_frames: int | None = DEFAULT_MAX_FRAMES
    max_decoded_pixels: int | None = DEFAULT_MAX_DECODED_PIXELS
    max_pixel_rate: float | None = DEFAULT_MAX_PIXEL_RATE
    max_decode_seconds: float | None = None
    allow_network: bool = False


@dataclass(frozen=True)
class MotionVectorFrame:
    """One decoded frame's motion vectors, untouched.

    frame_type: "I", "P" or "B". motion_vectors: int32 (N, 10), columns `MV_COLUMNS`, rows in FFmpeg's order,
    (0, 10) when the frame carries none (I-frames, all-intra frames). time: presentation time in seconds.
    index: position of the frame in display order (0-based).
    """

    frame_type: str
    motion_vectors: np.ndarray
    time: float
    index: int


@dataclass
class CodecPrimitives:
    """Codec primitives of one video at the step layout (see `extract_primitives`; `from_gops` builds it from GOPs).

    frame_types: one letter per step, "I" (RGB keyframe) or "P" (Δ step), e.g. "IPPPPPPPIPPPPPPP".
    keyframes: uint8 (n_I, Hk, Wk, 3) RGB at `frame_size`, or at extract_primitives' `keyframe_size` if given.
    motion_vectors: float32 (n_P, 2, Hg, Wg) content displacement in pixels of the H x W frames from the reference
        step (the previous step) to this step, fused over every codec frame in between; ch0 x (right +), ch1 y
        (down +); Hg = H // mv_block.
    intra_masks: bool (n_P, Hg, Wg), True where the cell has no motion chain back to the reference step.
    residuals: float32 (n_P, 3, Hr, Wr) RGB `frame_t - warp(frame_ref, fused field)`, 0..255 units, signed.
    timestamps: float64 (n_steps,) seconds; frame_indices: int64 (n_steps,) decoded source frame indices.
    frame_size: (H, W). frames: uint8 (n_steps, H, W, 3) or None. mode: "transcode" or "native".
    source_fps, duration: of the source, from its timestamps.
    """

    frame_types: str
    keyframes: np.ndarray
    motion_vectors: np.ndarray
    intra_masks: np.ndarray
    residuals: np.ndarray
    timestamps: np.ndarray
    frame_indices: np.ndarray
    frame_size: tuple[int, int]
    frames: np.ndarray | None
    mode: str
    source_fps: float
    duration: float

    @property
    def num_steps(self) -> int:
        return len(self.frame_types)

    @classmethod
    def from_gops(cls, gops) -> "CodecPrimitives":
        """Concatenate the GOPs of `iter_primitives` (in order) into one CodecPrimitives; bit-identical to
        `extract_primitives` on the same arguments. Needs at least one GOP (the shapes come from them)."""
        gops = list(gops)
        if not gops:
            raise ValueError("from_gops needs at least one GOP")
        last = gops[-1]
        if len({(g.frame_size, g.keyframes.shape[1:], g.residuals.shape[1:]) for g in gops}) != 1:
            raise ValueError("GOPs of different frame sizes cannot be concatenated")

        def cat(name):
            return np.concatenate([getattr(g, name) for g in gops])

        return cls(
            frame_types="".join(g.frame_types for g in gops), keyframes=cat("keyframes"),
            motion_vectors=cat("motion_vectors"), intra_masks=cat("intra_masks"), residuals=cat("residuals"),
            timestamps=cat("timestamps"), frame_indices=cat("frame_indices"), frame_size=last.frame_size,
            frames=cat("frames") if last.frames is not None else None,
            mode=last.mode if len({g.mode for g in gops}) == 1 else "+".join(dict.fromkeys(g.mode for g in gops)),
            source_fps=last.source_fps, duration=last.duration)


@dataclass
class GOPPrimitives:
    """The codec primitives of one GOP of steps, as `iter_primitives` yields them (one "I" step first, then its
    Δ steps and, with keyframes_per_gop > 1, its other keyframes). The arrays are those of `CodecPrimitives`
    restricted to the GOP's steps, so concatenating every GOP in order gives `extract_primitives`' arrays.

    index: GOP number (0-based; step `first_step = index * gop_size` is its first). frame_types: this GOP's letters
    (gop_size of them, fewer for the last GOP). source_fps, duration: of the source as known when the GOP was
    produced (a growing live source's duration grows). mode: "native" or "transcode".
    """

    index: int
    first_step: int
    frame_types: str
    keyframes: np.ndarray
    motion_vectors: np.ndarray
    intra_masks: np.ndarray
    residuals: np.ndarray
    timestamps: np.ndarray
    frame_indices: np.ndarray
    frame_size: tuple[int, int]
    frames: np.ndarray | None
    mode: str
    source_fps: float
    duration: float

    @property
    def num_steps(self) -> int:
        return len(self.frame_types)

    @property
    def end_time(self) -> float:
        """Timestamp of the GOP's last step in seconds."""
        return float(self.timestamps[-1])


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its first video stream, plus a packet scan (no decoding).

    num_packets: video packets (≈ frames). first_time/last_time: smallest/largest presentation time in seconds
    (None when the packets carry no timestamps). duration: last_time - first_time + one frame. keyframe_times:
    presentation times of key packets. reordered: True when packets come out of presentation order (B-frames),
    None when unknown. ref_frames: H.264 max_num_ref_frames from the SPS (None if not H.264 or not found).
    truncated: why the file looks cut or damaged (reading failed, or the index promises more frames than the
    file holds), else None. frame_pts: the packets' presentation timestamps sorted (display order, stream
    time base), which turn a decoded frame's pts into its index even when frames are skipped.
    """

    codec: str
    width: int
    height: int
    fps: float
    num_packets: int
    first_time: float | None
    last_time: float | None
    duration: float
    keyframe_times: np.ndarray
    reordered: bool | None
    ref_frames: int | None
    pix_fmt: str | None
    truncated: str | None = None
    frame_pts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    first_packet: tuple | None = dataclasses.field(default=None, repr=False, compare=False)
    time_base: float = dataclasses.field(default=0.0, repr=False, compare=False)  # seconds per frame_pts tick
