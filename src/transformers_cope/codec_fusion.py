"""Motion fusion and residuals: painting exported vectors on a cell grid, CoViAR accumulation over a Δ window,
pooling to the output grid, and `frame_t - warp(frame_ref, fused field)`.

Why numpy: these grids are small, and torch's intra-op threads fight FFmpeg's decoder threads on few cores.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .codec_types import _CELL


def _paint(table: np.ndarray | None, gh: int, gw: int, cell: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """List-0 vectors of one frame painted on a grid of `cell`-px cells (8, 16, 32): field (2, gh, gw) float32 in
    pixels, current -> reference (FFmpeg's direction), and a mask (False = intra / no vector). Fully vectorised.

    cell 8: a block covers at most 2x2 cells (FFmpeg exports 16x16, 16x8, 8x16 and 8x8), so four masked
    scatters paint everything. cell 16 or 32: every block lies inside one macroblock, hence inside one cell; a
    cell gets the area-weighted mean of its blocks' vectors."""
    field = np.zeros((2, gh, gw), np.float32)
    mask = np.zeros((gh, gw), bool)
    if table is None or len(table) == 0:
        return field, mask
    src = table["source"]
    if (src >= 0).any():
        table = table[src < 0]
        if len(table) == 0:
            return field, mask
    w = table["w"].astype(np.int32)
    h = table["h"].astype(np.int32)
    scale = table["motion_scale"].astype(np.float32)
    scale[scale == 0] = 1.0
    vx = table["motion_x"] / scale
    vy = table["motion_y"] / scale
    if cell >= 16:  # every block lies inside one macroblock, hence inside one cell
        cx = table["dst_x"].astype(np.int32) // cell
        cy = table["dst_y"].astype(np.int32) // cell
        sel = (cx >= 0) & (cy >= 0) & (cx < gw) & (cy < gh)
        i = (cy * gw + cx)[sel]
        area = (w * h)[sel].astype(np.float64)
        n = gh * gw
        tot = np.bincount(i, area, n)
        hit = tot > 0
        tot[~hit] = 1.0
        field[0].reshape(-1)[:] = np.bincount(i, area * vx[sel], n) / tot
        field[1].reshape(-1)[:] = np.bincount(i, area * vy[sel], n) / tot
        mask.reshape(-1)[:] = hit
        return field, mask
    # cell 8: each block covers its top-left cell and, when wider / taller than a cell, the cells to the right /
    # below. One scatter over (offset, block) pairs writes in the same order as four passes, one per offset.
    x0 = (table["dst_x"] - (w >> 1)) // cell
    y0 = (table["dst_y"] - (h >> 1)) // cell
    cx = x0[None, :] + _OFFSETS_X
    cy = y0[None, :] + _OFFSETS_Y
    sel = (cx >= 0) & (cy >= 0) & (cx < gw) & (cy < gh)
    sel[1::2] &= w > cell
    sel[2:] &= h > cell
    i = (cy * gw + cx)[sel]
    field[0].reshape(-1)[i] = np.broadcast_to(vx, sel.shape)[sel]
    field[1].reshape(-1)[i] = np.broadcast_to(vy, sel.shape)[sel]
    mask.reshape(-1)[i] = True
    return field, mask


_OFFSETS_X = np.array([[0], [1], [0], [1]])  # the four cells a 16x16 block covers on the 8-px grid
_OFFSETS_Y = np.array([[0], [0], [1], [1]])


def _bilinear(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample a (C, h, w) array at float positions (x, y) in index units (cell centres at integers), clamping to
    the border. numpy on purpose: these grids are small, and torch's intra-op threads fight FFmpeg's decoder
    threads on few cores (a 3x3 conv measured 15 ms instead of 0.1 ms inside the decode loop)."""
    c, h, w = a.shape
    x = np.minimum(np.maximum(x, 0.0), w - 1.0)
    y = np.minimum(np.maximum(y, 0.0), h - 1.0)
    x0 = x.astype(np.int32)
    y0 = y.astype(np.int32)
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    i00 = y0 * w + x0
    i01 = i00 + (x0 < w - 1)
    dy = np.where(y0 < h - 1, w, 0)
    v00, v01, v10, v11 = np.take(a.reshape(c, h * w), np.stack([i00, i01, i00 + dy, i01 + dy]), axis=1).swapaxes(0, 1)
    top = v00 + (v01 - v00) * fx
    return top + ((v10 + (v11 - v10) * fx) - top) * fy


def _box3(a: np.ndarray) -> np.ndarray:
    """Sum over each cell's 3x3 neighbourhood (zero outside), for (C, h, w)."""
    r = a.copy()
    r[:, 1:] += a[:, :-1]
    r[:, :-1] += a[:, 1:]
    out = r.copy()
    out[:, :, 1:] += r[:, :, :-1]
    out[:, :, :-1] += r[:, :, 1:]
    return out


def _fill_intra(field: np.ndarray, mask: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Give intra cells the mean vector of their valid 3x3 neighbours (grown `iterations` rings), and the
    frame's median vector beyond that: a best guess that keeps chains through intra blocks plausible (content
    entering at a panning border continues the pan). The cells stay flagged as intra."""
    if mask.all() or not mask.any():
        return field
    w = mask.astype(np.float32)[None]
    f = field * w
    for _ in range(iterations):
        s = _box3(np.concatenate([f, w], 0))
        den = s[2:3]
        grow = (den > 0) & (w == 0)
        if not grow.any():
            break
        f = np.where(grow, s[:2] / np.maximum(den, 1e-6), f).astype(np.float32)
        w = np.where(grow, np.float32(1.0), w)
    out = f / np.maximum(w, 1e-6)
    if (w == 0).any():
        med = np.median(field[:, mask], axis=1).astype(np.float32)
        out = np.where(w > 0, out, med[:, None, None])
    return out.astype(np.float32)


class _Fuser:
    """CoViAR-style accumulation of per-frame fields on the 8-px grid, reset at every step.

    acc_t(x) = d_t(x) + acc_{t-1}(x + d_t(x)) (bilinear sampling, border clamp), so acc points from a cell of the
    current frame to its source in the reference step; validity multiplies the frame's inter mask with the
    sampled validity of the source and requires the source to lie inside the reference frame, so a cell is valid
    only if its whole chain is inter-coded and leads to content the reference step shows."""

    def __init__(self, height: int, width: int, cell: int = _CELL):
        """Grid of `cell`-px cells over a codec frame of height x width pixels."""
        self.cell = cell
        self.hw = (height, width)
        self.last_field = None
        gh, gw = -(-height // cell), -(-width // cell)
        self.gh, self.gw = gh, gw
        self.cy, self.cx = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32),
                                       indexing="ij")
        # the reference frame in the grid's index units (cell centres at integers): a source outside it is lost
        self.lo = -0.5
        self.hi_x, self.hi_y = width / cell - 0.5, height / cell - 0.5
        self.reset()

    def reset(self, forget: bool = False) -> None:
        """Start the next step's window. forget=True (at an "I" step) also drops the motion remembered for
        all-intra frames, so that every run of steps from a keyframe depends on its own frames only: GOPs are then
        self-contained, which streaming, parallel segments and sliding windows rely on."""
        if forget:
            self.last_field = None
        self.acc = np.zeros((2, self.gh, self.gw), np.float32)
        self.valid = np.ones((self.gh, self.gw), np.float32)
        self.frames = 0
        self.broken = False

    def cut(self) -> None:
        """An I-frame inside the window: nothing links this step to its reference any more."""
        self.acc[:] = 0
        self.valid[:] = 0
        self.broken = True

    def add_vectors(self, table: np.ndarray | None) -> None:
        self.add(*_paint(table, self.gh, self.gw, self.cell))

    def add(self, field: np.ndarray, mask: np.ndarray) -> None:
        if mask.any():
            d = _fill_intra(field, mask)
            self.last_field = d
        else:  # an all-intra P-frame: assume the motion of the last frame that had vectors (still flagged intra)
            d = self.last_field if self.last_field is not None else field
        mf = mask.astype(np.float32)
        if self.frames == 0:
            acc, valid = d, mf
        else:
            x = self.cx + d[0] * (1.0 / self.cell)
            y = self.cy + d[1] * (1.0 / self.cell)
            if self.valid.min() >= 1.0:
                acc = d + _bilinear(self.acc, x, y)
                valid = mf
            else:
                # sample acc weighted by validity: where valid neighbours exist only they count, so a chain is not
                # pulled towards the guessed vectors of intra cells next to it
                s = _bilinear(np.concatenate([self.acc * self.valid, self.valid[None]], 0), x, y)
                w = s[2]
                ok = w > 1e-3
                prev = s[:2] / np.where(ok, w, 1.0)
                if not ok.all():  # no valid neighbour at all: the plain (guessed) chain
                    prev = np.where(ok, prev, _bilinear(self.acc, x, y))
                acc = d + prev
                valid = mf * w
        # a chain whose source lies outside the reference frame links to content the reference does not show
        sx = self.cx + acc[0] * (1.0 / self.cell)
        sy = self.cy + acc[1] * (1.0 / self.cell)
        outside = (sx < self.lo) | (sy < self.lo) | (sx > self.hi_x) | (sy > self.hi_y)
        if outside.any():
            valid = np.where(outside, 0.0, valid)
        self.acc = acc.astype(np.float32, copy=False)
        self.valid = valid.astype(np.float32, copy=False)
        self.frames += 1


def _area_pool(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Adaptive average pooling of (C, h, w) to (C, out_h, out_w) (integral image; bins like torch's)."""
    c, h, w = a.shape
    if h % out_h == 0 and w % out_w == 0:
        return a.reshape(c, out_h, h // out_h, out_w, w // out_w).mean(axis=(2, 4), dtype=np.float64) \
            .astype(np.float32)
    s = np.zeros((c, h + 1, w + 1), np.float64)
    s[:, 1:, 1:] = a.cumsum(1, dtype=np.float64).cumsum(2)
    y0 = (np.arange(out_h) * h) // out_h
    y1 = -((-(np.arange(out_h) + 1) * h) // out_h)
    x0 = (np.arange(out_w) * w) // out_w
    x1 = -((-(np.arange(out_w) + 1) * w) // out_w)
    tot = s[:, y1][:, :, x1] - s[:, y0][:, :, x1] - s[:, y1][:, :, x0] + s[:, y0][:, :, x0]
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return (tot / area).astype(np.float32)


def _block_mean_uint8(rgb: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Mean over kh x kw blocks of an (H, W, 3) uint8 frame -> (3, H/kh, W/kw) float32, by integer sums of strided
    slices: twice as fast as _area_pool on the float frame (0.41 vs 0.88 ms at 224 -> 56 px) and equal to it bit
    for bit (integer sums are exact in any order; both divide the same sum by n in float64 and round once)."""
    h, w, c = rgb.shape
    x = rgb.reshape(h, w // kw, kw * c).astype(np.uint16)  # kh * kw <= 256 blocks of bytes fit
    cols = x[:, :, :c]
    for j in range(1, kw):
        cols = cols + x[:, :, j * c:(j + 1) * c]
    rows = cols.reshape(h // kh, kh, w // kw, c)
    total = rows[:, 0]
    for i in range(1, kh):
        total = total + rows[:, i]
    return (total.transpose(2, 0, 1).astype(np.float64) / (kh * kw)).astype(np.float32, order="C")


def _grid_to_output(acc: np.ndarray, valid: np.ndarray, cell: int, codec_hw: tuple[int, int],
                    out_hw: tuple[int, int], mv_block: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool a fused cell-grid field of a codec frame (Hc, Wc) onto the mv_block grid of the output frame (H, W):
    content displacement in output pixels (2, Hg, Wg) float32 and the intra mask (Hg, Wg)."""
    (hc, wc), (h, w) = codec_hw, out_hw
    hg, wg = h // mv_block, w // mv_block
    nh = min(acc.shape[1], max(1, int(round(hg * mv_block * hc / h / cell))))
    nw = min(acc.shape[2], max(1, int(round(wg * mv_block * wc / w / cell))))
    pooled = _area_pool(np.concatenate([acc[:, :nh, :nw], valid[None, :nh, :nw]], 0), hg, wg)
    motion = pooled[:2] * np.array([-w / wc, -h / hc], np.float32)[:, None, None]  # cur->ref -> content motion
    return motion.astype(np.float32), pooled[2] < 0.5


# -------------------------------------------------------------------------------------------------------- residual


class _Residual:
    """frame_t - warp(frame_ref, fused field) at (Hr, Wr): the reference is sampled where each pixel's content
    came from (border clamp), with the vector of the fused-grid cell the pixel lies in. Frames are area-downscaled
    first: warping at full size and pooling afterwards measured the same residual energy on real footage for 4x
    the cost. Intra cells keep their best-guess (filled) motion; the mask tells the model which cells those are."""

    def __init__(self, out_hw: tuple[int, int], res_hw: tuple[int, int], mode: str):
        self.h, self.w = out_hw
        self.hr, self.wr = res_hw
        self.mode = mode
        self.py, self.px = np.meshgrid(np.arange(self.hr, dtype=np.float32) + 0.5,
                                       np.arange(self.wr, dtype=np.float32) + 0.5, indexing="ij")

    def small(self, rgb: np.ndarray) -> np.ndarray:
        """(3, Hr, Wr) float32 area-downscaled copy of an RGB (H, W, 3) uint8 frame."""
        if (self.hr, self.wr) == (self.h, self.w):
            return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
        kh, kw = self.h // self.hr, self.w // self.wr
        if self.h % self.hr == 0 and self.w % self.wr == 0 and kh <= 8 and kw <= 8:  # larger blocks: fewer loops there
            return _block_mean_uint8(rgb, kh, kw)
        return _area_pool(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32), self.hr, self.wr)

    def __call__(self, cur: np.ndarray, ref: np.ndarray, acc: np.ndarray, cell: int,
                 codec_hw: tuple[int, int]) -> np.ndarray:
        hc, wc = codec_hw
        # each residual pixel takes the vector of the grid cell it lies in (block-constant like the codec's own
        # prediction; interpolating between cells smears an object's motion over its background)
        gx = np.minimum((self.px * (wc / self.wr) / cell).astype(np.int32), acc.shape[2] - 1)
        gy = np.minimum((self.py * (hc / self.hr) / cell).astype(np.int32), acc.shape[1] - 1)
        dense = acc[:, gy, gx]
        sx = self.px - 0.5 + dense[0] * (self.wr / wc)  # source position in residual index units
        sy = self.py - 0.5 + dense[1] * (self.hr / hc)
        if self.mode == "bilinear":
            warped = _bilinear(ref, sx, sy)
        elif self.mode == "nearest":
            xi = np.clip(np.rint(sx), 0, self.wr - 1).astype(np.int64)
            yi = np.clip(np.rint(sy), 0, self.hr - 1).astype(np.int64)
            warped = ref[:, yi, xi]
        else:  # bicubic: torch's kernel (a single small call per step)
            g = torch.from_numpy(np.stack([(2 * sx + 1) / self.wr - 1, (2 * sy + 1) / self.hr - 1], -1))[None]
            warped = F.grid_sample(torch.from_numpy(ref)[None], g.float(), mode="bicubic", padding_mode="border",
                                   align_corners=False)[0].numpy()
        return (cur - warped).astype(np.float32)
