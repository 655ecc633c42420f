"""CoPE-VideoLM video processor: codec primitives -> model tensors.

A video file goes through the codec layer (`extract_primitives`, PyAV), never torchcodec: the I steps become keyframes
for the vision tower, the P steps become motion-vector grids and residuals for the Δ-encoder. Ships as Hub remote code,
so it imports its siblings only as `from .x import Y`.
"""


import io
import math
import os
from fractions import Fraction
from typing import Any

import av
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import PILImageResampling, SizeDict
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor

from .codec import DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS, extract_primitives
from .errors import check_number

_CAPS = ("max_steps", "max_pixels", "max_frames")  # None means "no cap" here, not "class default"


class CoPEVideoProcessorInitKwargs(VideosKwargs, total=False):
    r"""Per-call knobs of `CoPEVideoProcessor`; every one is also an instance attribute, so checkpoints pin them.

    gop_size (`int`, *optional*, defaults to 8):
        Steps per GOP.
    keyframes_per_gop (`int`, *optional*, defaults to 1):
        RGB keyframes ("I" steps) per GOP; the other steps are Δ steps.
    codec_size (`int`, *optional*, defaults to 224):
        Side of the square frames the codec layer extracts (MV grid = codec_size // mv_block).
    codec_mode (`str`, *optional*, defaults to `"auto"`):
        "auto" | "transcode" | "native" (see `extract_primitives`). Decoded frames always take "transcode".
    codec_fps (`float`, *optional*, defaults to 5.0):
        Codec frames per second the transcode path re-encodes inside each Δ window (see `extract_primitives`).
    mv_block (`int`, *optional*, defaults to 16):
        MV cell size in pixels.
    residual_scale (`float`, *optional*, defaults to 0.25):
        Residual resolution relative to codec_size.
    mv_normalizer (`float`, *optional*, defaults to 20.0):
        Motion vectors are divided by it...
    mv_clip (`float`, *optional*, defaults to 10.0):
        ...and clipped to +-mv_clip.
    residual_std (`float`, *optional*, defaults to 0.1):
        Residuals are divided by 255 and then by residual_std.
    max_steps (`int`, *optional*, defaults to 64):
        Cap on steps per video (uniform sampling beyond it, like VideoLLaMA3); None = no cap.
    max_pixels (`int`, *optional*):
        Memory guard of the codec layer: pixels per source frame (checked from the stream header before decoding);
        above it a VideoTooLargeError is raised. None = no cap.
    max_frames (`int`, *optional*):
        Memory guard of the codec layer: decoded source frames. None = no cap.
    frames_fps (`float`, *optional*):
        Frame rate of decoded frames passed as `videos` (arrays, tensors, PIL lists); default: `video_metadata`'s
        fps when given, else `fps` (each frame is one step).
    patch_size (`int`, *optional*, defaults to 14):
        Vision patch size.
    pooling (`int`, *optional*, defaults to 2):
        Spatial pooling factor (tokens per keyframe side = ceil((size // patch_size) / pooling)).
    use_token_compression (`bool`, *optional*, defaults to `False`):
        VideoLLaMA3-style pruning of unchanged keyframe tokens.
    compression_threshold (`float`, *optional*, defaults to 0.1):
        Mean absolute pixel change (0..255) below which a keyframe token is pruned.
    """

    gop_size: int
    keyframes_per_gop: int
    codec_size: int
    codec_mode: str
    codec_fps: float
    mv_block: int
    residual_scale: float
    mv_normalizer: float
    mv_clip: float
    residual_std: float
    max_steps: int | None
    max_pixels: int | None
    max_frames: int | None
    patch_size: int
    pooling: int
    use_token_compression: bool
    compression_threshold: float
    frames_fps: float | None


CoPEVideosKwargs = CoPEVideoProcessorInitKwargs  # the name before 0.2; kept for imports that use it


def _is_primitives(obj: Any) -> bool:
    """Duck-typed check: remote code may load `codec.py` as a different module than the caller's."""
    return all(hasattr(obj, name) for name in ("frame_types", "keyframes", "motion_vectors", "residuals"))


def _is_video_ref(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike, bytes)) or _is_primitives(obj)


def _is_frame(obj: Any) -> bool:
    """One decoded frame: a PIL image, or a 3-D array / tensor (H, W, C) or (C, H, W)."""
    return isinstance(obj, PIL.Image.Image) or (isinstance(obj, (np.ndarray, torch.Tensor)) and obj.ndim == 3)


def _is_decoded_video(obj: Any) -> bool:
    """One video as decoded frames (the `BaseVideoProcessor` input contract): a 4-D array / tensor, or a list of
    frames."""
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.ndim == 4
    return isinstance(obj, (list, tuple)) and len(obj) > 0 and all(_is_frame(f) for f in obj)


def flatten_videos(videos: Any) -> list:
    """One flat list of videos from a path, MP4 bytes, a `CodecPrimitives`, decoded frames (a `(T, H, W, 3)` array
    or tensor, or a list of PIL images / 3-D arrays), or (nested) lists of them.

    `apply_chat_template` hands over `list[list[path]]` (one list per conversation); batching concatenates, so order
    is conversation by conversation, video by video. A single 3-D frame is a one-frame video.
    """
    if _is_video_ref(videos) or _is_decoded_video(videos):
        return [videos]
    if _is_frame(videos):
        return [[videos]]
    if isinstance(videos, (list, tuple)):
        flat = []
        for item in videos:
            flat.extend(flatten_videos(item))
        return flat
    raise TypeError(
        "CoPEVideoProcessor takes video file paths, MP4 bytes, CodecPrimitives or decoded frames ((T, H, W, 3) "
        f"arrays/tensors, lists of PIL images), or lists of them; got {type(videos).__name__}."
    )


def _frames_uint8(video: Any) -> np.ndarray:
    """Decoded frames -> uint8 `(T, H, W, 3)` RGB. Floats are read as 0..1 (as `do_rescale` expects of them);
    channel-first frames `(T, 3, H, W)` (torch's layout) are moved to channel-last."""
    if isinstance(video, (list, tuple)):
        frames = [np.asarray(f.convert("RGB")) if isinstance(f, PIL.Image.Image) else
                  (f.numpy() if isinstance(f, torch.Tensor) else np.asarray(f)) for f in video]
        array = np.stack(frames)
    else:
        array = video.detach().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    if array.ndim != 4:
        raise ValueError(f"decoded video frames must be (T, H, W, 3); got shape {array.shape}")
    if array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):
        array = array.transpose(0, 2, 3, 1)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] == 4:
        array = array[..., :3]
    if array.shape[-1] != 3:
        raise ValueError(f"decoded video frames must be RGB (T, H, W, 3); got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.asarray(array, dtype=np.float64)
        array = np.clip(np.rint(array * 255.0 if array.max(initial=0.0) <= 1.0 else array), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def encode_frames(frames: np.ndarray, fps: float) -> bytes:
    """Decoded RGB frames -> an in-memory lossless video (FFV1 in Matroska) at `fps`, for the codec layer.

    Why lossless and not the final codec: the codec layer's transcode path re-encodes the sampled frames itself (I/P,
    one reference, a codec I-frame at every "I" step), which is where the motion vectors come from; this container
    only hands it the frames and their times unchanged."""
    if fps <= 0:
        raise ValueError(f"frames_fps must be > 0, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = index, 1 / rate
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


class CoPEVideoProcessor(BaseVideoProcessor):
    r"""Turns videos into the inputs of `CoPEVideoLMForConditionalGeneration`.

    Output (all videos of the call concatenated along dim 0, in order):
        pixel_values_videos: float32 (n_I, 3, S, S), keyframes resized to `size` and normalised.
        delta_motion_vectors: float32 (n_P, 3, Gh, Gw): [dx, dy] / mv_normalizer clipped to +-mv_clip, intra mask.
        delta_residuals: float32 (n_P, 3, Hr, Wr): residual / 255 / residual_std.
        video_compression_mask: bool (n_I * tokens_per_keyframe,), only with `use_token_compression`.
        video_frame_types: list[str] per video, e.g. "IPPPPPPP"; video_timestamps: list[list[float]] per video.
    Defaults are the paper's (SigLIP 384 px, patch 14, 2x2 pooling -> 14x14 tokens, 1 fps, GOP 8, 1 keyframe per GOP).
    """

    resample = PILImageResampling.BICUBIC
    size = {"height": 384, "width": 384}
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = False
    fps = 1.0
    gop_size = 8
    keyframes_per_gop = 1
    codec_size = 224
    codec_mode = "auto"
    codec_fps = 5.0
    mv_block = 16
    residual_scale = 0.25
    mv_normalizer = 20.0
    mv_clip = 10.0
    residual_std = 0.1
    max_steps = 64
    max_pixels = DEFAULT_MAX_PIXELS
    max_frames = DEFAULT_MAX_FRAMES
    patch_size = 14
    pooling = 2
    use_token_compression = False
    compression_threshold = 0.1
    frames_fps = None
    valid_kwargs = CoPEVideoProcessorInitKwargs
    model_input_names = [
        "pixel_values_videos",
        "delta_motion_vectors",
        "delta_residuals",
        "video_compression_mask",
        "video_frame_types",
        "video_timestamps",
    ]

    def __init__(self, **kwargs: Unpack[CoPEVideoProcessorInitKwargs]) -> None:
        super().__init__(**kwargs)
        # BaseImageProcessor treats None as "use the class default"; keep an explicit None cap (no cap).
        for name in _CAPS:
            if name in kwargs and kwargs[name] is None:
                setattr(self, name, None)

    # ----------------------------------------------------------------------------------------------- sizes
    def keyframe_token_grid(self, size: Any = None, patch_size: int | None = None, pooling: int | None = None) -> int:
        """Pooled tokens per keyframe side: ceil((S // patch_size) / pooling), e.g. 384/14 -> 27 -> 14."""
        side = self._image_side(size if size is not None else self.size)
        patch_size = patch_size or self.patch_size
        pooling = pooling or self.pooling
        return math.ceil((side // patch_size) / pooling)

    def tokens_per_keyframe(self, **kwargs) -> int:
        return self.keyframe_token_grid(**kwargs) ** 2

    @staticmethod
    def _image_side(size: Any) -> int:
        if isinstance(size, int):
            return size
        if isinstance(size, (list, tuple)):
            height, width = size
        else:
            size = dict(size)
            height, width = size.get("height"), size.get("width")
        if height is None or width is None or height != width:
            raise ValueError(f"CoPEVideoProcessor needs a square `size` with height and width; got {size}.")
        return int(height)

    # -------------------------------------------------------------------------------------------- decoding
    def _codec_kwargs(self, options: dict) -> dict:
        max_steps = options["max_steps"]
        if options.get("num_frames") is not None:  # VideosKwargs' num_frames means "at most this many": a step cap.
            max_steps = options["num_frames"]
        return {
            "fps": float(options["fps"]),
            "gop_size": int(options["gop_size"]),
            "keyframes_per_gop": int(options["keyframes_per_gop"]),
            "mode": options["codec_mode"],
            "size": (int(options["codec_size"]), int(options["codec_size"])),
            "codec_fps": float(options["codec_fps"]),
            # keyframes straight from the source frame at the vision tower's size, not the codec frame upsampled
            "keyframe_size": (self._image_side(options["size"]),) * 2 if options["do_resize"] else None,
            "mv_block": int(options["mv_block"]),
            "residual_scale": float(options["residual_scale"]),
            "max_steps": None if max_steps is None else int(max_steps),
            "max_pixels": None if options["max_pixels"] is None else int(options["max_pixels"]),
            "max_frames": None if options["max_frames"] is None else int(options["max_frames"]),
        }

    def fetch_videos(self, video_url_or_urls, sample_indices_fn=None, frames_fps: float | None = None, **codec_kwargs):
        """Decode paths / MP4 bytes with the codec layer (PyAV). `CodecPrimitives` pass through; lists map
        element-wise. Decoded frames are encoded in memory (`encode_frames`, at `frames_fps`, default: one frame per
        step) and go through the codec layer's transcode path, so their Δ steps carry real codec motion vectors.

        Steps are sampled by the codec layer at `fps`, so `sample_indices_fn` is not supported.
        """
        if sample_indices_fn is not None:
            raise ValueError("CoPEVideoProcessor samples steps in the codec layer (fps, max_steps); "
                             "`sample_indices_fn` is not supported.")
        codec_kwargs = codec_kwargs or self._codec_kwargs(self._options({}))
        if _is_decoded_video(video_url_or_urls):
            data = encode_frames(_frames_uint8(video_url_or_urls), frames_fps or codec_kwargs["fps"])
            return extract_primitives(data, **{**codec_kwargs, "mode": "transcode"})
        if isinstance(video_url_or_urls, (list, tuple)):
            return [self.fetch_videos(video, frames_fps=frames_fps, **codec_kwargs) for video in video_url_or_urls]
        if _is_primitives(video_url_or_urls):
            return video_url_or_urls
        return extract_primitives(video_url_or_urls, **codec_kwargs)

    @staticmethod
    def _frames_fps(options: dict, index: int) -> float | None:
        """Frame rate of the `index`-th video when it is given as decoded frames: `frames_fps`, else the fps of its
        `video_metadata` (a `VideoMetadata` / dict, or a list of them), else None (one frame per step)."""
        if options.get("frames_fps") is not None:
            return float(options["frames_fps"])
        metadata = options.get("video_metadata")
        if isinstance(metadata, (list, tuple)):  # one per video, possibly nested like the videos: [[m0], [m1]]
            flat = []
            for item in metadata:
                flat.extend(item if isinstance(item, (list, tuple)) else [item])
            metadata = flat[index] if index < len(flat) else None
        fps = metadata.get("fps") if isinstance(metadata, dict) else getattr(metadata, "fps", None)
        return None if fps is None else float(fps)

    # ---------------------------------------------------------------------------------------- preprocessing
    def _options(self, kwargs: dict) -> dict:
        """Call kwargs over instance attributes; nothing is written to `self` (thread safety)."""
        names = set(self.valid_kwargs.__annotations__) | {"return_tensors"}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"CoPEVideoProcessor got unexpected keyword arguments {unknown}.")
        options = {name: getattr(self, name, None) for name in self.valid_kwargs.__annotations__}
        options.update({k: v for k, v in kwargs.items() if v is not None or k in _CAPS})
        options["return_tensors"] = kwargs.get("return_tensors")
        return options

    @staticmethod
    def _check_knobs(options: dict) -> None:
        """Numeric knobs finite and in range, one-line ValueError (issue 16, D8): residual_std=0 or
        mv_normalizer=0 used to give inf/NaN features silently, NaN/inf an OverflowError from int()."""
        positive = ("fps", "codec_fps", "mv_normalizer", "mv_clip", "residual_std")
        for name in positive:
            check_number(name, options[name], low=0, high=1e6, low_open=True)
        check_number("frames_fps", options.get("frames_fps"), low=0, high=1e6, low_open=True, optional=True)
        check_number("residual_scale", options["residual_scale"], low=0, high=1, low_open=True)
        check_number("compression_threshold", options["compression_threshold"], low=0)
        for name in ("gop_size", "keyframes_per_gop", "codec_size", "mv_block", "patch_size", "pooling"):
            check_number(name, options[name], low=1, high=10**6, integer=True)
        for name in ("max_steps", "max_pixels", "max_frames", "num_frames"):
            check_number(name, options.get(name), low=1, integer=True, optional=True)

    def preprocess(self, videos, **kwargs: Unpack[CoPEVideoProcessorInitKwargs]) -> BatchFeature:
        options = self._options(kwargs)
        self._check_knobs(options)
        for name in ("do_center_crop", "do_pad"):
            if options.get(name):
                raise ValueError(f"CoPEVideoProcessor does not support {name}=True.")
        flat = flatten_videos(videos)
        if not flat:
            raise ValueError("CoPEVideoProcessor got no videos.")
        codec_kwargs = self._codec_kwargs(options)
        primitives = [
            self.fetch_videos(video, frames_fps=self._frames_fps(options, i), **codec_kwargs)
            for i, video in enumerate(flat)
        ]
        return self._primitives_to_features(primitives, options)

    def _resized_keyframes(self, keyframes: np.ndarray, options: dict) -> torch.Tensor:
        """uint8 (n, H, W, 3) -> uint8 (n, 3, S, S) at the vision tower's size (normalised later, in place)."""
        frames = torch.from_numpy(np.ascontiguousarray(keyframes)).permute(0, 3, 1, 2).contiguous()
        if frames.shape[1] != 3:
            raise ValueError(f"keyframes must be RGB (n, H, W, 3); got shape {tuple(keyframes.shape)}.")
        side = self._image_side(options["size"])
        if options["do_resize"] and tuple(frames.shape[-2:]) != (side, side):
            frames = self.resize(frames, size=SizeDict(height=side, width=side), resample=options["resample"])
        return frames

    @staticmethod
    def _normalize_(pixels: torch.Tensor, options: dict) -> torch.Tensor:
        """Rescale and normalise 0..255 values in place: ((x * rescale_factor) - mean) / std, the usual order."""
        if options["do_rescale"]:
            pixels.mul_(float(options["rescale_factor"]))
        if options["do_normalize"]:  # a scalar or one value per RGB channel (extra values, e.g. alpha, unused)
            mean, std = (torch.as_tensor(options[k], dtype=torch.float32).reshape(-1)[:3] for k in ("image_mean", "image_std"))
            pixels.sub_(mean.view(1, -1, 1, 1))
            pixels.div_(std.view(1, -1, 1, 1))
        return pixels

    def _compression_mask(self, frames: torch.Tensor, grid: int, threshold: float) -> torch.Tensor:
        """VideoLLaMA3's differential pruning on one video's keyframes, in pixel units (0..255).

        A pooled token is kept when the mean |frame_t - previous keyframe| over its pixel block exceeds `threshold`.
        The first keyframe is kept whole; every keyframe keeps at least one token. `frames`: float (n, 3, S, S) in
        0..255 (the resized keyframes before normalisation).
        """
        count = frames.shape[0]
        mask = torch.ones(count, grid * grid, dtype=torch.bool)
        if count > 1:
            diff = (frames[1:] - frames[:-1]).abs().mean(dim=1, keepdim=True)
            block = F.adaptive_avg_pool2d(diff, (grid, grid)).flatten(1)
            mask[1:] = block > threshold
            empty = ~mask.any(dim=1)
            mask[empty, 0] = True
        return mask.flatten()

    def _primitives_to_features(self, primitives: list, options: dict) -> BatchFeature:
        """Write every video's tensors straight into preallocated batch tensors (no per-video temporaries and no
        concatenation copies: a dense 64-keyframe video is 113 MB of float pixels)."""
        grid = self.keyframe_token_grid(options["size"], options["patch_size"], options["pooling"])
        frame_types, timestamps = [], []
        mv_shape = res_shape = None
        for prim in primitives:
            types = str(prim.frame_types)
            n_i, n_p = types.count("I"), types.count("P")
            if len(types) != n_i + n_p or n_i == 0 or types[0] != "I":
                raise ValueError(f"Unexpected step layout {types!r}: need I/P steps starting with an I step.")
            if len(prim.keyframes) != n_i or len(prim.motion_vectors) != n_p or len(prim.residuals) != n_p:
                raise ValueError(
                    f"CodecPrimitives counts disagree with layout {types!r}: {len(prim.keyframes)} keyframes, "
                    f"{len(prim.motion_vectors)} motion fields, {len(prim.residuals)} residuals."
                )
            shapes = (2, *np.shape(prim.motion_vectors)[2:]), tuple(np.shape(prim.residuals)[1:])
            if mv_shape is None:
                mv_shape, res_shape = shapes
            elif shapes != (mv_shape, res_shape):
                raise ValueError("Videos of one batch must share the codec size (same MV grid and residual size).")
            frame_types.append(types)
            timestamps.append([float(t) for t in np.asarray(prim.timestamps).tolist()])

        n_i_total = sum(types.count("I") for types in frame_types)
        n_p_total = sum(types.count("P") for types in frame_types)
        mv_normalizer, mv_clip = float(options["mv_normalizer"]), float(options["mv_clip"])
        residual_std = float(options["residual_std"])
        motion = torch.empty((n_p_total, 3, *mv_shape[1:]), dtype=torch.float32)
        residuals = torch.empty((n_p_total, *res_shape), dtype=torch.float32)
        pixel_values, masks = None, []
        i0 = p0 = 0
        for prim, types in zip(primitives, frame_types):
            frames = self._resized_keyframes(prim.keyframes, options)
            if pixel_values is None:
                pixel_values = torch.empty((n_i_total, *frames.shape[1:]), dtype=torch.float32)
            elif frames.shape[1:] != pixel_values.shape[1:]:
                raise ValueError(f"Keyframes of one batch must share one size; got {tuple(frames.shape[1:])} and "
                                 f"{tuple(pixel_values.shape[1:])}.")
            i1, p1 = i0 + len(frames), p0 + types.count("P")
            pixels = pixel_values[i0:i1]
            pixels.copy_(frames)  # uint8 -> float32, still 0..255
            if options["use_token_compression"]:
                masks.append(self._compression_mask(pixels, grid, float(options["compression_threshold"])))
            self._normalize_(pixels, options)
            if p1 > p0:
                mv = motion[p0:p1]
                torch.div(torch.from_numpy(np.asarray(prim.motion_vectors, dtype=np.float32)), mv_normalizer,
                          out=mv[:, :2])
                mv[:, :2].clamp_(-mv_clip, mv_clip)
                mv[:, 2].copy_(torch.from_numpy(np.asarray(prim.intra_masks, dtype=bool)))
                res = residuals[p0:p1]
                torch.div(torch.from_numpy(np.asarray(prim.residuals, dtype=np.float32)), 255.0, out=res)
                res.div_(residual_std)
            i0, p0 = i1, p1

        data = {
            "pixel_values_videos": pixel_values,
            "delta_motion_vectors": motion,
            "delta_residuals": residuals,
            "video_frame_types": frame_types,
            "video_timestamps": timestamps,
        }
        if options["use_token_compression"]:
            data["video_compression_mask"] = torch.cat(masks, dim=0)
        return BatchFeature(
            data=data,
            tensor_type=options["return_tensors"],
            skip_tensor_conversion=["video_frame_types", "video_timestamps"],
        )


__all__ = ["CoPEVideoProcessor", "CoPEVideoProcessorInitKwargs", "CoPEVideosKwargs", "encode_frames", "flatten_videos"]
