"""Synthetic textured videos with known motion, written with PyAV.

Why: codec motion vectors and the Δ pathway need videos whose true motion is known exactly. A scene is a periodic
textured background seen through a panning camera plus textured sprites moving in straight lines; every frame is a
pure function of the scene and the frame index, so frames are rendered lazily and ground truth is analytic.

Sub-pixel motion: textures are band-limited periodic fields stored as their Fourier spectra (Nyquist bins zeroed),
and a fractional shift is applied as a Fourier phase ramp, which is an exact translation of the band-limited
texture (no blur that changes with the sub-pixel phase, unlike bilinear sampling). Integer parts of a shift are a
roll. Sprite outlines are analytic area coverage (rectangle) or a signed-distance ramp (ellipse) evaluated in the
sprite's own coordinates, so they translate exactly too. Only the final rounding to 8 bits and the optional noise
are not translation invariant.

Conventions: x = column (right +), y = row (down +). Velocities are content displacement per frame in pixels of the
frame, in screen coordinates (a sprite's velocity does not include the camera pan). Frames are RGB uint8 (H, W, 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

__all__ = [
    "Sprite",
    "Scene",
    "GroundTruth",
    "ground_truth",
    "ground_truth_flow",
    "sprite_label_map",
    "make_texture_spectrum",
    "render_frame",
    "iter_frames",
    "render_frames",
    "render_video",
    "make_textured_video",
    "textured_scene",
    "TEXTURE_KINDS",
    "SPRITE_SHAPES",
]

TEXTURE_KINDS = ("pink", "blobs")
SPRITE_SHAPES = ("rect", "ellipse")
_SPRITE_MARGIN = 2  # texture pixels around a sprite's outline, so the anti-aliased edge has texture to show


@dataclass(frozen=True)
class Sprite:
    """A textured object moving in a straight line between two frames.

    size: (height, width) in pixels (an int means a square). start_xy: (x, y) of the top-left corner at frame 0,
    may be fractional or outside the frame. velocity: (vx, vy) px per frame. The sprite rests at start_xy up to
    `start_frame`, moves by `velocity` on each frame in (start_frame, stop_frame], then rests (stop_frame None =
    keeps moving to the end): position(t) = start_xy + velocity * (clip(t, start_frame, stop_frame) - start_frame).
    seed: its texture. color: base RGB (None = drawn from the seed). shape: "rect" or "ellipse".
    """

    size: int | tuple[int, int] = 16
    start_xy: tuple[float, float] = (0.0, 0.0)
    velocity: tuple[float, float] = (0.0, 0.0)
    start_frame: int = 0
    stop_frame: int | None = None
    seed: int = 0
    color: tuple[int, int, int] | None = None
    shape: str = "rect"
    texture: str = "blobs"

    def __post_init__(self) -> None:
        h, w = self.hw
        if h < 1 or w < 1:
            raise ValueError(f"Sprite size must be positive, got {self.size!r}")
        if self.shape not in SPRITE_SHAPES:
            raise ValueError(f"Sprite shape must be one of {SPRITE_SHAPES}, got {self.shape!r}")
        if self.texture not in TEXTURE_KINDS:
            raise ValueError(f"Sprite texture must be one of {TEXTURE_KINDS}, got {self.texture!r}")
        if self.start_frame < 0 or (self.stop_frame is not None and self.stop_frame < self.start_frame):
            raise ValueError(f"need 0 <= start_frame <= stop_frame, got {self.start_frame}, {self.stop_frame}")

    @property
    def hw(self) -> tuple[int, int]:
        if isinstance(self.size, (int, np.integer)):
            return int(self.size), int(self.size)
        h, w = self.size
        return int(h), int(w)

    def moved_frames(self, t: np.ndarray | int) -> np.ndarray:
        """Number of frames of motion accumulated by frame t."""
        stop = np.inf if self.stop_frame is None else self.stop_frame
        return np.clip(np.asarray(t, dtype=np.float64), self.start_frame, stop) - self.start_frame

    def position(self, t: np.ndarray | int) -> np.ndarray:
        """(x, y) of the top-left corner at frame(s) t: shape (..., 2)."""
        k = self.moved_frames(t)[..., None]
        return np.asarray(self.start_xy, np.float64) + k * np.asarray(self.velocity, np.float64)


@dataclass(frozen=True)
class Scene:
    """A camera panning over a periodic textured background, with sprites drawn on top in list order.

    pan: (vx, vy) background content displacement per frame in px (camera moving left => content moves right,
    +vx), applied on frames in (pan_start_frame, pan_stop_frame]. seed: background texture and noise.
    background_period: size (H, W) of the periodic background (None = twice the frame, so new content enters).
    noise_std: Gaussian pixel noise (0..255 units) drawn per frame from (seed, frame index).
    background_color: mean RGB of the background (None = drawn from the seed); background_contrast: luma std.
    """

    height: int = 64
    width: int = 64
    num_frames: int = 30
    seed: int = 0
    pan: tuple[float, float] = (0.0, 0.0)
    sprites: Sequence[Sprite] = field(default_factory=tuple)
    pan_start_frame: int = 0
    pan_stop_frame: int | None = None
    background: str = "pink"
    background_period: tuple[int, int] | None = None
    noise_std: float = 0.0
    background_color: tuple[int, int, int] | None = None
    background_contrast: float = 40.0

    def __post_init__(self) -> None:
        if self.height < 2 or self.width < 2 or self.num_frames < 1:
            raise ValueError(f"Scene needs height, width >= 2 and num_frames >= 1, got "
                             f"{self.height}x{self.width}x{self.num_frames}")
        if self.background not in TEXTURE_KINDS:
            raise ValueError(f"background must be one of {TEXTURE_KINDS}, got {self.background!r}")
        if self.background_period is not None:
            ph, pw = self.background_period
            if ph < self.height or pw < self.width:
                raise ValueError(f"background_period {self.background_period} is smaller than the frame")
        object.__setattr__(self, "sprites", tuple(self.sprites))

    def pan_offset(self, t: np.ndarray | int) -> np.ndarray:
        """Cumulative background displacement (x, y) at frame(s) t relative to frame 0: shape (..., 2)."""
        stop = np.inf if self.pan_stop_frame is None else self.pan_stop_frame
        k = np.clip(np.asarray(t, dtype=np.float64), self.pan_start_frame, stop) - self.pan_start_frame
        return k[..., None] * np.asarray(self.pan, np.float64)


# ----------------------------------------------------------------------------------------------------------- textures


def _freqs(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]


def make_texture_spectrum(shape: tuple[int, int], seed: int, kind: str = "pink", *, color=None,
                          luma_std: float = 40.0, chroma_std: float = 14.0, beta: float = 1.0,
                          blob_sigma: float = 2.5) -> np.ndarray:
    """rfft2 spectrum (3, h, w//2+1) of a periodic, band-limited RGB texture (0..255 scale before clipping).

    kind "pink": amplitude 1/f^beta (equal energy per octave: structure at every scale, detail for block matching).
    kind "blobs": Gaussian-smoothed noise pushed through tanh (crisp blobs) then band-limited again.
    Both roll off near Nyquist and have the Nyquist bins zeroed so Fourier shifts are exact real translations.
    """
    if kind not in TEXTURE_KINDS:
        raise ValueError(f"texture kind must be one of {TEXTURE_KINDS}, got {kind!r}")
    h, w = int(shape[0]), int(shape[1])
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x7E47])
    fy, fx = _freqs(h, w)
    f = np.sqrt(fy**2 + fx**2)
    taper = np.exp(-((f / 0.38) ** 4))
    white = np.fft.rfft2(rng.standard_normal((3, h, w)))
    if kind == "pink":
        f0 = 1.5 / max(h, w)
        spec = white * (taper / np.maximum(f, f0) ** beta)
        fields = np.fft.irfft2(spec, s=(h, w))
    else:
        smooth = np.exp(-2.0 * (np.pi * blob_sigma * f) ** 2)
        fields = np.fft.irfft2(white * smooth, s=(h, w))
        fields /= fields.std(axis=(1, 2), keepdims=True) + 1e-12
        fields = np.tanh(2.0 * fields)
        fields = np.fft.irfft2(np.fft.rfft2(fields) * taper, s=(h, w))
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    fields /= fields.std(axis=(1, 2), keepdims=True) + 1e-12
    if color is None:
        base = 70.0 + 115.0 * rng.random(3)
    else:
        base = np.asarray(color, np.float64)
    # channel 0 drives luma (equal RGB), channels 1-2 add chroma along two orthogonal colour directions
    u1 = np.array([1.0, -1.0, 0.0]) / np.sqrt(2)
    u2 = np.array([1.0, 1.0, -2.0]) / np.sqrt(6)
    rgb = (base[:, None, None] + luma_std * fields[0][None]
           + chroma_std * (u1[:, None, None] * fields[1][None] + u2[:, None, None] * fields[2][None]))
    spec = np.fft.rfft2(rgb)
    if h % 2 == 0:
        spec[:, h // 2, :] = 0
    if w % 2 == 0:
        spec[:, :, -1] = 0
    return spec.astype(np.complex128)


def _fourier_shift(spec: np.ndarray, dx: float, dy: float, shape: tuple[int, int]) -> np.ndarray:
    """Translate a periodic field by (dx, dy) px (content moves right/down for positive values)."""
    fy, fx = _freqs(*shape)
    ramp = np.exp(-2j * np.pi * (fy * dy + fx * dx))
    return np.fft.irfft2(spec * ramp, s=shape)


# ------------------------------------------------------------------------------------------------------ ground truth


@dataclass(frozen=True)
class GroundTruth:
    """Analytic motion of a scene. Displacements are from frame t-1 to frame t (row 0 is zero).

    background_offset / background_displacement: (T, 2) cumulative / per-frame (x, y) content shift of the
    background. sprite_positions: (T, S, 2) top-left (x, y); sprite_displacement: (T, S, 2); sprite_moving: (T, S)
    bool, True where the sprite moved since the previous frame. sprite_boxes: (T, S, 4) x0, y0, x1, y1 unclipped
    (floats, x1/y1 exclusive); sprite_visible_boxes: the same clipped to the frame (zero area when off screen);
    sprite_visible_fraction: (T, S) area on screen / sprite area (before occlusion by other sprites).
    """

    background_offset: np.ndarray
    background_displacement: np.ndarray
    sprite_positions: np.ndarray
    sprite_displacement: np.ndarray
    sprite_moving: np.ndarray
    sprite_boxes: np.ndarray
    sprite_visible_boxes: np.ndarray
    sprite_visible_fraction: np.ndarray

    def displacement(self, t: int, ref: int, sprite: int | None = None) -> np.ndarray:
        """(x, y) content displacement from frame `ref` to frame `t` of the background (sprite=None) or a sprite."""
        if sprite is None:
            return self.background_offset[t] - self.background_offset[ref]
        return self.sprite_positions[t, sprite] - self.sprite_positions[ref, sprite]


def ground_truth(scene: Scene) -> GroundTruth:
    """Per-frame true displacement of the background and of every sprite, and sprite bounding boxes."""
    t = np.arange(scene.num_frames)
    bg = scene.pan_offset(t)
    n = len(scene.sprites)
    pos = np.zeros((scene.num_frames, n, 2))
    sizes = np.zeros((n, 2))
    for i, sp in enumerate(scene.sprites):
        pos[:, i] = sp.position(t)
        h, w = sp.hw
        sizes[i] = (w, h)
    disp_bg = np.zeros_like(bg)
    disp_bg[1:] = np.diff(bg, axis=0)
    disp = np.zeros_like(pos)
    disp[1:] = np.diff(pos, axis=0)
    moving = np.zeros((scene.num_frames, n), bool)
    for i, sp in enumerate(scene.sprites):
        k = sp.moved_frames(t)
        moving[1:, i] = (np.diff(k) > 0) & (np.abs(np.asarray(sp.velocity)).sum() > 0)
    boxes = np.concatenate([pos, pos + sizes[None]], axis=-1)
    vis = boxes.copy()
    vis[..., [0, 2]] = np.clip(vis[..., [0, 2]], 0, scene.width)
    vis[..., [1, 3]] = np.clip(vis[..., [1, 3]], 0, scene.height)
    area = (vis[..., 2] - vis[..., 0]) * (vis[..., 3] - vis[..., 1])
    frac = area / np.maximum(sizes[:, 0] * sizes[:, 1], 1e-12)[None] if n else np.zeros((scene.num_frames, 0))
    return GroundTruth(bg, disp_bg, pos, disp, moving, boxes, vis, frac)


# ---------------------------------------------------------------------------------------------------------- renderer


class _Renderer:
    """Holds the texture spectra of one scene; frames are rendered on demand."""

    def __init__(self, scene: Scene, textures: bool = True):
        self.scene = scene
        period = scene.background_period or (2 * scene.height, 2 * scene.width)
        self.bg_shape = (int(period[0]), int(period[1]))
        self.bg_spec = None
        if textures:
            self.bg_spec = make_texture_spectrum(self.bg_shape, scene.seed, scene.background,
                                                 color=scene.background_color, luma_std=scene.background_contrast)
        self._bg_cache: dict[tuple[float, float], np.ndarray] = {}
        self._tile_cache: dict[int, tuple[tuple[float, float], np.ndarray]] = {}
        self._last: tuple[tuple, np.ndarray] | None = None  # (motion state, frame): static stretches are free
        self.sprite_specs = []
        for sp in scene.sprites:
            h, w = sp.hw
            tile = (h + 2 * _SPRITE_MARGIN, w + 2 * _SPRITE_MARGIN)
            spec = None
            if textures:
                # blob scale follows the sprite size so even small sprites carry several blobs to track
                spec = make_texture_spectrum(tile, sp.seed, sp.texture, color=sp.color, luma_std=50.0,
                                             chroma_std=10.0, blob_sigma=max(1.0, min(h, w) / 8))
            self.sprite_specs.append((tile, spec))

    def _background(self, t: int) -> np.ndarray:
        s = self.scene
        dx, dy = s.pan_offset(t)
        ix, iy = np.floor(dx), np.floor(dy)
        fx, fy = round(float(dx - ix), 9), round(float(dy - iy), 9)
        key = (fx, fy)
        shifted = self._bg_cache.get(key)
        if shifted is None:
            shifted = _fourier_shift(self.bg_spec, fx, fy, self.bg_shape)
            if len(self._bg_cache) > 64:
                self._bg_cache.clear()
            self._bg_cache[key] = shifted
        ph, pw = self.bg_shape
        rows = (np.arange(s.height) - int(iy)) % ph
        cols = (np.arange(s.width) - int(ix)) % pw
        return np.take(np.take(shifted, rows, axis=1), cols, axis=2)

    def sprite_coverage(self, idx: int, t: int):
        """Where sprite idx lies at frame t: (y0, y1, x0, x1) of its on-screen tile, fractional (fx, fy), alpha."""
        s = self.scene
        sp = s.sprites[idx]
        (th, tw), _ = self.sprite_specs[idx]
        h, w = sp.hw
        px, py = sp.position(t)
        ix, iy = int(np.floor(px)), int(np.floor(py))
        x0, y0 = ix - _SPRITE_MARGIN, iy - _SPRITE_MARGIN
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + tw, s.width), min(y0 + th, s.height)
        if cx1 <= cx0 or cy1 <= cy0:
            return None
        # local coordinates (sprite's top-left = 0) of each pixel's left/top edge
        u = np.arange(cx0, cx1) - px
        v = np.arange(cy0, cy1) - py
        if sp.shape == "rect":
            ax = np.clip(np.minimum(u + 1, w) - np.maximum(u, 0), 0, 1)
            ay = np.clip(np.minimum(v + 1, h) - np.maximum(v, 0), 0, 1)
            alpha = ay[:, None] * ax[None, :]
        else:
            a, b = w / 2.0, h / 2.0
            dxl = (u + 0.5 - a)[None, :]
            dyl = (v + 0.5 - b)[:, None]
            rho = np.sqrt((dxl / a) ** 2 + (dyl / b) ** 2)
            grad = np.sqrt((dxl / a**2) ** 2 + (dyl / b**2) ** 2) / np.maximum(rho, 1e-9)
            alpha = np.clip(0.5 - (rho - 1.0) / np.maximum(grad, 1e-9), 0.0, 1.0)
        return (cy0, cy1, cx0, cx1), (x0, y0), (float(px - ix), float(py - iy)), alpha

    def _draw_sprite(self, img: np.ndarray, idx: int, t: int) -> None:
        cov = self.sprite_coverage(idx, t)
        if cov is None:
            return
        (cy0, cy1, cx0, cx1), (x0, y0), (fx, fy), alpha = cov
        tile, spec = self.sprite_specs[idx]
        phase = (round(fx, 9), round(fy, 9))
        cached = self._tile_cache.get(idx)
        if cached is not None and cached[0] == phase:  # a resting sprite (or integer velocity) reuses its texture
            full = cached[1]
        else:
            full = _fourier_shift(spec, fx, fy, tile)
            self._tile_cache[idx] = (phase, full)
        tex = full[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        region = img[:, cy0:cy1, cx0:cx1]
        img[:, cy0:cy1, cx0:cx1] = region + alpha[None] * (tex - region)

    def frame(self, t: int) -> np.ndarray:
        s = self.scene
        if not 0 <= t < s.num_frames:
            raise IndexError(f"frame {t} out of range for a scene of {s.num_frames} frames")
        state = (tuple(s.pan_offset(t)), *(tuple(sp.position(t)) for sp in s.sprites))
        if s.noise_std == 0 and self._last is not None and self._last[0] == state:
            return self._last[1].copy()
        img = self._background(t)
        for i in range(len(s.sprites)):
            self._draw_sprite(img, i, t)
        if s.noise_std > 0:
            rng = np.random.default_rng([int(s.seed) & 0xFFFFFFFF, 0x9015E, t])
            img = img + rng.normal(0.0, s.noise_std, img.shape)
        out = np.ascontiguousarray(np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(1, 2, 0))
        self._last = (state, out.copy())
        return out


def render_frame(scene: Scene, t: int) -> np.ndarray:
    """Frame t of the scene as RGB uint8 (H, W, 3). For many frames use iter_frames (textures are built once)."""
    return _Renderer(scene).frame(t)


def iter_frames(scene: Scene) -> Iterator[np.ndarray]:
    """Lazily render every frame of the scene (RGB uint8 (H, W, 3)); memory stays at one frame plus textures."""
    r = _Renderer(scene)
    for t in range(scene.num_frames):
        yield r.frame(t)


def render_frames(scene: Scene) -> np.ndarray:
    """All frames as one (T, H, W, 3) uint8 array (small scenes and tests)."""
    return np.stack(list(iter_frames(scene)))


def sprite_label_map(scene: Scene, t: int, threshold: float = 0.5) -> np.ndarray:
    """int16 (H, W): index of the topmost sprite covering each pixel at frame t (coverage > threshold), -1 = background."""
    r = _Renderer(scene, textures=False)
    labels = np.full((scene.height, scene.width), -1, np.int16)
    for i in range(len(scene.sprites)):
        cov = r.sprite_coverage(i, t)
        if cov is not None:
            (y0, y1, x0, x1), _, _, alpha = cov
            labels[y0:y1, x0:x1][alpha > threshold] = i
    return labels


def ground_truth_flow(scene: Scene, t: int, ref: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense true displacement (2, H, W) float32 from frame `ref` (default t-1) to frame t, and the label map.

    Each pixel of frame t gets the displacement of what it shows: its topmost sprite's, else the background's.
    Disoccluded background gets the background's displacement (the codec may code it as intra).
    """
    ref = t - 1 if ref is None else ref
    if not (0 <= ref < scene.num_frames and 0 <= t < scene.num_frames):
        raise IndexError(f"frames ({ref}, {t}) out of range for a scene of {scene.num_frames} frames")
    gt = ground_truth(scene)
    labels = sprite_label_map(scene, t)
    flow = np.empty((2, scene.height, scene.width), np.float32)
    flow[:] = gt.displacement(t, ref)[:, None, None]
    for i in range(len(scene.sprites)):
        flow[:, labels == i] = gt.displacement(t, ref, i)[:, None]
    return flow, labels


# ----------------------------------------------------------------------------------------------------------- encoder

_SUBSAMPLED = ("yuv420p", "yuv422p", "yuv420p10le", "yuv422p10le", "yuvj420p", "yuvj422p", "nv12")


def render_video(path: str | Path, scene: Scene, *, codec: str = "libx264", fps: float = 30, gop_size: int | None = None,
                 bframes: int = 0, pix_fmt: str = "yuv420p", crf: int = 18, qscale: int = 2, preset: str = "medium",
                 seed: int | None = None, threads: int = 1, progress: bool = False) -> Path:
    """Render `scene` and encode it to `path` (container from the suffix, e.g. .mp4) with PyAV; returns the path.

    codec: "libx264" (crf, preset; pix_fmt yuv420p, yuv422p, yuv444p, yuv420p10le, ...) or "mpeg4" (MPEG-4 Part 2,
    fixed quantiser `qscale` 2-31 like ffmpeg -q:v; yuv420p only). gop_size: keyframe interval in frames (None =
    the codec default: x264 keyint 250, mpeg4 12); scene-cut keyframes are always off so the GOP is predictable.
    bframes: consecutive B-frames (fixed pattern; 0 = I/P only, one reference frame). seed: overrides scene.seed.
    threads=1 keeps the bytes identical across machines and runs (encoder threading changes the bitstream).
    """
    if seed is not None:
        scene = dataclasses.replace(scene, seed=int(seed))
    if codec not in ("libx264", "mpeg4"):
        raise ValueError(f"codec must be 'libx264' or 'mpeg4', got {codec!r}")
    if codec == "mpeg4" and pix_fmt != "yuv420p":
        raise ValueError(f"mpeg4 encodes yuv420p only, got pix_fmt={pix_fmt!r}")
    if pix_fmt in _SUBSAMPLED and (scene.height % 2 or scene.width % 2):
        raise ValueError(f"{pix_fmt} needs even frame sizes, got {scene.height}x{scene.width}")
    if bframes < 0 or (gop_size is not None and gop_size < 1):
        raise ValueError(f"need bframes >= 0 and gop_size >= 1, got bframes={bframes}, gop_size={gop_size}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, pix_fmt
        cc = stream.codec_context
        cc.thread_count = max(int(threads), 1)
        if codec == "libx264":
            # mbtree=0: macroblock-tree rate control is the one x264 stage this project has measured giving different
            # bitstreams for identical input (codec.py, single-threaded); it only moves bits between macroblocks.
            params = ["scenecut=0", "ref=1" if bframes == 0 else "ref=2", f"bframes={bframes}", "b-adapt=0",
                      "b-pyramid=none", "open-gop=0", "mbtree=0"]
            if gop_size is not None:
                params += [f"keyint={gop_size}", f"min-keyint={gop_size}"]
            stream.options = {"preset": preset, "crf": str(crf), "x264-params": ":".join(params),
                              "threads": str(max(int(threads), 1))}
        else:
            cc.gop_size = 12 if gop_size is None else int(gop_size)
            cc.max_b_frames = int(bframes)
            cc.qscale = True
            cc.global_quality = int(qscale) * 118  # FF_QP2LAMBDA: same as ffmpeg -q:v
            # qmin = qmax pins the quantiser (global_quality alone is not read by the encoder: it gave qmin, 2)
            stream.options = {"sc_threshold": "1000000000", "qmin": str(int(qscale)), "qmax": str(int(qscale))}
        frames = iter_frames(scene)
        if progress:
            from tqdm.auto import tqdm

            frames = tqdm(frames, total=scene.num_frames, desc=f"render {path.name}")
        reformatter = VideoReformatter()  # reused: a fresh swscale context per frame costs more than the encode
        for i, rgb in enumerate(frames):
            vf = reformatter.reformat(av.VideoFrame.from_ndarray(rgb, format="rgb24"), format=pix_fmt)
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    return path


def make_textured_video(path: str | Path, *, height: int = 64, width: int = 64, num_frames: int = 30,
                        pan: tuple[float, float] = (0.0, 0.0), sprite_velocity: tuple[float, float] | None = None,
                        sprite_size: int | None = None, codec: str = "libx264", fps: float = 30,
                        gop_size: int | None = None, bframes: int = 0, seed: int = 0, noise_std: float = 0.0,
                        **render_kwargs) -> Path:
    """One-call textured video: a panning background and, if `sprite_velocity` is given, one sprite whose path is
    centred in the frame (size default min(H, W) // 3). Returns the path; get the ground truth with
    `ground_truth(textured_scene(...))` or build the Scene yourself for anything fancier."""
    scene = textured_scene(height=height, width=width, num_frames=num_frames, pan=pan,
                           sprite_velocity=sprite_velocity, sprite_size=sprite_size, seed=seed, noise_std=noise_std)
    return render_video(path, scene, codec=codec, fps=fps, gop_size=gop_size, bframes=bframes, **render_kwargs)


def textured_scene(*, height: int = 64, width: int = 64, num_frames: int = 30, pan: tuple[float, float] = (0.0, 0.0),
                   sprite_velocity: tuple[float, float] | None = None, sprite_size: int | None = None,
                   seed: int = 0, noise_std: float = 0.0) -> Scene:
    """The Scene that make_textured_video renders (same arguments)."""
    sprites = ()
    if sprite_velocity is not None:
        size = sprite_size or max(min(height, width) // 3, 4)
        vx, vy = sprite_velocity
        travel = (num_frames - 1) / 2.0
        start = (width / 2 - size / 2 - vx * travel, height / 2 - size / 2 - vy * travel)
        sprites = (Sprite(size=size, start_xy=start, velocity=(vx, vy), seed=seed + 1),)
    return Scene(height=height, width=width, num_frames=num_frames, seed=seed, pan=pan, sprites=sprites,
                 noise_std=noise_std)

