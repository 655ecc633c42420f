"""Pictures of what the Δ-encoder sees for one Δ step: the fused motion-vector field and the residual.

Why: "the model reads motion vectors" is abstract until one sees them. `render_step` draws, side by side, (1) the
step's frame with the motion field as arrows (one per MV cell; intra cells crossed out), (2) the field in HSV flow
colouring (hue = direction, brightness = speed, with a colour wheel) over the faded frame, and (3) the residual's
magnitude (what motion compensation leaves). Pillow and numpy only.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["delta_step_index", "flow_to_rgb", "render_step", "save_step_png", "step_motion_summary"]

_PANEL_MIN_WIDTH = 360
_HEADER = 34
_GAP = 6


def delta_step_index(frame_types: str, step: int) -> int:
    """Index of step `step` among the Δ ("P") steps; raises ValueError for a keyframe or an out-of-range step."""
    if not 0 <= step < len(frame_types):
        raise ValueError(f"step {step} is out of range: the video has {len(frame_types)} steps (0..{len(frame_types) - 1})")
    if frame_types[step] != "P":
        delta_steps = [i for i, kind in enumerate(frame_types) if kind == "P"]
        hint = f"Δ steps are {_ranges(delta_steps)}" if delta_steps else "this layout has no Δ steps"
        raise ValueError(f"step {step} is a keyframe (I) and has no motion vectors; {hint}")
    return frame_types[:step].count("P")


def _ranges(values: list[int]) -> str:
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def step_motion_summary(primitives) -> list[dict]:
    """Per Δ step: step index, time, mean and max motion magnitude (px), intra share, mean |residual| (0..255)."""
    rows = []
    p = 0
    for step, kind in enumerate(primitives.frame_types):
        if kind != "P":
            continue
        mv = np.asarray(primitives.motion_vectors[p], dtype=np.float32)
        mag = np.hypot(mv[0], mv[1])
        intra = np.asarray(primitives.intra_masks[p], dtype=bool)
        moving = mag[~intra] if (~intra).any() else np.zeros(1, np.float32)
        rows.append({
            "step": step,
            "time": float(primitives.timestamps[step]),
            "mean_motion": float(moving.mean()),
            "max_motion": float(moving.max()),
            "intra": float(intra.mean()),
            "residual": float(np.abs(primitives.residuals[p]).mean()),
        })
        p += 1
    return rows


def flow_to_rgb(dx: np.ndarray, dy: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """HSV flow colouring: hue = direction (right red, down yellow-green, left cyan, up violet), value = speed."""
    mag = np.hypot(dx, dy)
    scale = float(max_magnitude) if max_magnitude else float(mag.max()) or 1.0
    hue = (np.arctan2(dy, dx) % (2 * np.pi)) / (2 * np.pi)
    value = np.clip(mag / scale, 0.0, 1.0)
    hsv = np.stack([hue * 255, np.full_like(hue, 255), value * 255], axis=-1).astype(np.uint8)
    return np.array(Image.fromarray(hsv, mode="HSV").convert("RGB"))


def _colour_wheel(size: int) -> Image.Image:
    ys, xs = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    rgb = flow_to_rgb(xs, ys, max_magnitude=1.0)
    alpha = (np.hypot(xs, ys) <= 1.0).astype(np.uint8) * 255
    return Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")


def _heat(values: np.ndarray) -> np.ndarray:
    """0..1 -> black-red-yellow-white (a plain 'hot' map)."""
    v = np.clip(values, 0.0, 1.0)
    r = np.clip(v * 3, 0, 1)
    g = np.clip(v * 3 - 1, 0, 1)
    b = np.clip(v * 3 - 2, 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def _arrow(draw: ImageDraw.ImageDraw, x0: float, y0: float, x1: float, y1: float, colour, width: int) -> None:
    draw.line([(x0, y0), (x1, y1)], fill=colour, width=width)
    length = math.hypot(x1 - x0, y1 - y0)
    if length < 2:
        return
    head = min(6.0, 0.4 * length)
    angle = math.atan2(y1 - y0, x1 - x0)
    for side in (-0.5, 0.5):
        draw.line([(x1, y1), (x1 - head * math.cos(angle + side), y1 - head * math.sin(angle + side))],
                  fill=colour, width=width)


def render_step(primitives, step: int, *, arrow_gain: float | None = None, residual_range: float = 64.0) -> Image.Image:
    """The picture of Δ step `step` (needs `extract_primitives(..., return_frames=True)`)."""
    if getattr(primitives, "frames", None) is None:
        raise ValueError("render_step needs the step frames: extract_primitives(..., return_frames=True)")
    p = delta_step_index(primitives.frame_types, step)
    frame = np.asarray(primitives.frames[step], dtype=np.uint8)
    height, width = frame.shape[:2]
    mv = np.asarray(primitives.motion_vectors[p], dtype=np.float32)
    intra = np.asarray(primitives.intra_masks[p], dtype=bool)
    residual = np.abs(np.asarray(primitives.residuals[p], dtype=np.float32)).mean(axis=0)
    grid_h, grid_w = intra.shape
    cell_y, cell_x = height / grid_h, width / grid_w
    zoom = max(1, math.ceil(_PANEL_MIN_WIDTH / width))
    pw, ph = width * zoom, height * zoom

    mag = np.hypot(mv[0], mv[1])
    valid = mag[~intra]
    typical = float(np.percentile(valid, 95)) if valid.size else 0.0
    if arrow_gain is None:  # the typical vector spans ~90% of a cell, never shrunk, at most 8x
        arrow_gain = float(np.clip(0.9 * min(cell_x, cell_y) / typical, 1.0, 8.0)) if typical > 0 else 1.0

    # (1) frame + arrows
    arrows = Image.fromarray(frame).resize((pw, ph), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(arrows)
    for gy in range(grid_h):
        for gx in range(grid_w):
            cx, cy = (gx + 0.5) * cell_x * zoom, (gy + 0.5) * cell_y * zoom
            if intra[gy, gx]:
                r = 0.2 * min(cell_x, cell_y) * zoom
                draw.line([(cx - r, cy - r), (cx + r, cy + r)], fill=(255, 60, 60), width=1)
                draw.line([(cx - r, cy + r), (cx + r, cy - r)], fill=(255, 60, 60), width=1)
                continue
            dx, dy = mv[0, gy, gx] * arrow_gain * zoom, mv[1, gy, gx] * arrow_gain * zoom
            if math.hypot(dx, dy) < 1.0:
                draw.point((cx, cy), fill=(255, 255, 255))
                continue
            # arrows start where the content was and end where it is now (content displacement)
            _arrow(draw, cx - dx, cy - dy, cx, cy, (0, 0, 0), 3)
            _arrow(draw, cx - dx, cy - dy, cx, cy, (255, 255, 255), 1)

    # (2) HSV flow over the faded frame
    colours = flow_to_rgb(mv[0], mv[1], max_magnitude=max(typical, 1e-6)).copy()
    colours[intra] = 0
    flow = Image.fromarray(colours).resize((pw, ph), Image.Resampling.NEAREST)
    faded = Image.fromarray(frame).convert("L").convert("RGB").resize((pw, ph), Image.Resampling.BICUBIC)
    flow = Image.blend(faded, flow, 0.75)
    wheel = _colour_wheel(max(24, min(pw, ph) // 6))
    flow.paste(wheel, (pw - wheel.width - 4, 4), wheel)

    # (3) residual magnitude
    heat = Image.fromarray(_heat(residual / residual_range)).resize((pw, ph), Image.Resampling.BILINEAR)

    canvas = Image.new("RGB", (3 * pw + 2 * _GAP, ph + _HEADER), (255, 255, 255))
    font = ImageFont.load_default()
    note = ImageDraw.Draw(canvas)
    time = float(primitives.timestamps[step])
    titles = (
        f"step {step} (t={time:.1f}s): motion vectors x{arrow_gain:.1f}",
        f"flow: hue=direction, brightness=speed (max {typical:.1f}px)",
        f"|residual| (0..{residual_range:g} of 255), mean {residual.mean():.1f}",
    )
    for i, (panel, title) in enumerate(zip((arrows, flow, heat), titles)):
        x = i * (pw + _GAP)
        canvas.paste(panel, (x, _HEADER))
        note.text((x + 2, 4), title, fill=(0, 0, 0), font=font)
    note.text((2, 18), f"mean |mv| {float(valid.mean()) if valid.size else 0.0:.1f}px, intra cells "
                       f"{int(intra.sum())}/{intra.size} (red x); arrows: where content moved from -> to",
              fill=(90, 90, 90), font=font)
    return canvas


def save_step_png(primitives, step: int, path: str | Path, **kwargs) -> Path:
    """`render_step` written as a PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    render_step(primitives, step, **kwargs).save(path, format="PNG")
    return path
