"""Fused motion vectors and residuals against the analytic motion of rendered textured videos.

Every case renders a textured scene with known motion (a global pan and/or a moving object, integer, sub-pixel
and multi-pixel speeds in several directions), encodes it with libx264 or mpeg4, extracts primitives and checks:
the fused content displacement on textured, fully inter cells matches the truth to well within 1 px per fused
codec frame, and the residual (motion compensated) keeps a small share of the plain frame difference's energy.
"""

from __future__ import annotations

import numpy as np
import pytest

from _video_factory import Scene, Sprite, render_video
from transformers_cope.codec import extract_primitives
from transformers_cope.data.render import ground_truth_flow

H, W, N = 128, 160, 46  # 1.5 s at 30 fps
FPS = 4  # steps every 7-8 source frames


def _scene(pan, sprite_velocity, seed=3):
    sprites = ()
    if sprite_velocity is not None:
        vx, vy = sprite_velocity
        travel = (N - 1) / 2
        start = (W / 2 - 24 - vx * travel, H / 2 - 24 - vy * travel)
        sprites = (Sprite(size=48, start_xy=start, velocity=sprite_velocity, seed=seed + 7),)
    return Scene(height=H, width=W, num_frames=N, seed=seed, pan=pan, sprites=sprites)


def _cell_truth(scene, t, ref, block):
    """Mean true displacement per block cell, and whether the cell shows one motion only (no object edge)."""
    flow, labels = ground_truth_flow(scene, t, ref)
    hg, wg = H // block, W // block
    f = flow[:, :hg * block, :wg * block].reshape(2, hg, block, wg, block)
    lab = labels[:hg * block, :wg * block].reshape(hg, block, wg, block)
    uniform = (lab.min(axis=(1, 3)) == lab.max(axis=(1, 3)))
    return f.mean(axis=(2, 4)), uniform


def _visible_in_ref(scene, t, ref):
    """(H, W) bool: the content of frame t at this pixel was visible in frame ref (not disoccluded, not
    entering through the border). Nothing can predict the other pixels from the reference."""
    flow, labels_t = ground_truth_flow(scene, t, ref)
    _, labels_ref = ground_truth_flow(scene, ref, max(ref - 1, 0)) if ref > 0 else (None, None)
    if labels_ref is None:
        from transformers_cope.data.render import sprite_label_map
        labels_ref = sprite_label_map(scene, ref)
    ys, xs = np.mgrid[0:H, 0:W]
    sx = np.rint(xs - flow[0]).astype(int)
    sy = np.rint(ys - flow[1]).astype(int)
    inside = (sx >= 0) & (sy >= 0) & (sx < W) & (sy < H)
    same = np.zeros((H, W), bool)
    same[inside] = labels_ref[sy[inside], sx[inside]] == labels_t[inside]
    return inside & same


def _pool(x, k):
    c, h, w = x.shape
    return x.reshape(c, h // k, k, w // k, k).mean(axis=(2, 4))


def _check(path, scene, *, mode, codec="libx264", codec_fps=10.0, max_err_per_frame=1.0, max_ratio=0.2):
    p = extract_primitives(path, fps=FPS, size=None, mode=mode, codec=codec, codec_fps=codec_fps,
                           return_frames=True, residual_scale=0.5)
    assert p.mode == mode
    assert p.frame_size == (H, W) and p.frame_types.startswith("IPPP")
    hr, wr = p.residuals.shape[2:]
    errors, energy_mc, energy_naive, coverage = [], [], [], []
    pi = 0
    for k, t in enumerate(p.frame_types):
        if t != "P":
            continue
        ref, cur = int(p.frame_indices[k - 1]), int(p.frame_indices[k])
        truth, uniform = _cell_truth(scene, cur, ref, 16)
        inter = ~p.intra_masks[pi]
        inner = np.zeros_like(inter)
        inner[1:-1, 1:-1] = True  # border cells see content entering or leaving the frame
        sel = inter & inner & uniform
        coverage.append(sel.sum() / (inner & uniform).sum())
        err = np.linalg.norm(p.motion_vectors[pi] - truth, axis=0)[sel]
        frames_fused = max(round(codec_fps * (cur - ref) / 30), 1) if mode == "transcode" else cur - ref
        assert np.median(err) <= max_err_per_frame * frames_fused
        errors.append(np.median(err))
        # residual vs plain difference at the residual resolution, same steps
        diff = _pool(p.frames[k].transpose(2, 0, 1).astype(np.float32), H // hr) - \
            _pool(p.frames[k - 1].transpose(2, 0, 1).astype(np.float32), H // hr)
        # only where the reference shows the content: disoccluded background cannot be predicted by any motion
        k_res = H // hr
        keep = _visible_in_ref(scene, cur, ref).reshape(hr, k_res, wr, k_res).all(axis=(1, 3))
        energy_mc.append(np.mean((p.residuals[pi] ** 2)[:, keep]))
        energy_naive.append(np.mean((diff ** 2)[:, keep]))
        pi += 1
    errors = np.asarray(errors)  # median error of the fused displacement per Δ step, px
    assert np.median(coverage) > 0.6, coverage
    ratio = np.sum(energy_mc) / np.sum(energy_naive)
    # a pan is predicted everywhere; an object on a static background leaves its outline (cells that straddle
    # it take one motion) in a frame difference that is otherwise only the object
    assert ratio < max_ratio, ratio
    return p, errors, ratio


MOTIONS = {
    "pan-integer": ((2.0, 1.0), None),
    "pan-quarter-pel": ((-1.5, 0.75), None),
    "pan-fast-up": ((0.0, -3.0), None),
    "object-right-down": ((0.0, 0.0), (3.0, 2.0)),
    "object-left-over-pan": ((1.0, 0.0), (-2.5, 1.5)),
}


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
@pytest.mark.parametrize("motion", sorted(MOTIONS))
def test_fused_motion_recovers_truth(tmp_path, motion, codec):
    """Sources from both encoders; re-encoded (transcode) with the default libx264 settings."""
    pan, sprite = MOTIONS[motion]
    scene = _scene(pan, sprite)
    path = render_video(tmp_path / "v.mp4", scene, codec=codec)
    p, errors, _ = _check(path, scene, mode="transcode", max_ratio=0.05 if sprite is None else 0.3)
    # far stricter in practice than 1 px per codec frame: the fused displacement itself is within 0.5 px
    assert np.all(errors <= 0.5), errors
    if sprite is not None:  # the object's own cells, and the sign convention: content displacement, x right, y down
        pi = 0
        for k, t in enumerate(p.frame_types):
            if t != "P":
                continue
            ref, cur = int(p.frame_indices[k - 1]), int(p.frame_indices[k])
            truth, uniform = _cell_truth(scene, cur, ref, 16)
            moving = np.asarray(sprite) * (cur - ref)
            cells = uniform & (np.abs(truth - moving[:, None, None]).max(axis=0) < 1e-3) & ~p.intra_masks[pi]
            assert cells.sum() >= 2
            np.testing.assert_allclose(np.median(p.motion_vectors[pi][:, cells], axis=1), moving, atol=0.5)
            pi += 1


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_native_mode_uses_source_vectors(tmp_path, codec):
    """An I/P source with one long GOP: the file's own P-frames are fused, every source frame of each window."""
    scene = _scene((1.25, -0.5), (-2.0, 1.0))
    path = render_video(tmp_path / "v.mp4", scene, codec=codec, gop_size=300)
    p, errors, _ = _check(path, scene, mode="native")
    assert np.median(errors) < 0.3  # mpeg4's half-pel vectors on quarter-pel motion: 0.25
    auto = extract_primitives(path, fps=FPS, size=None)
    assert auto.mode == "native"


def test_transcode_with_mpeg4_encoder(tmp_path):
    scene = _scene((2.0, -1.0), (0.0, 2.0))
    path = render_video(tmp_path / "v.mp4", scene)
    _check(path, scene, mode="transcode", codec="mpeg4")


@pytest.mark.parametrize("codec_fps", [5.0, 30.0])
def test_codec_fps_trade_off(tmp_path, codec_fps):
    """Fewer codec frames per step means larger per-frame motion; both ends of the range stay accurate."""
    scene = _scene((2.5, 1.0), None)
    path = render_video(tmp_path / "v.mp4", scene)
    _check(path, scene, mode="transcode", codec_fps=codec_fps)


def test_scaled_output_vectors_are_in_output_pixels(tmp_path):
    scene = _scene((2.0, 1.0), None)
    path = render_video(tmp_path / "v.mp4", scene)
    for mode in ("transcode", "native"):
        p = extract_primitives(path, fps=FPS, size=(64, 80), mode=mode)  # half the source size
        span = p.frame_indices[1] - p.frame_indices[0]
        med = np.median(p.motion_vectors[0][:, 1:-1, 1:-1].reshape(2, -1), axis=1)
        np.testing.assert_allclose(med, np.array([2.0, 1.0]) * span / 2, atol=0.3)


def test_residual_is_not_a_frame_difference(tmp_path):
    """On a pure pan the warped reference predicts the frame: the residual is near zero where the plain
    difference is large."""
    scene = _scene((3.0, 0.0), None)
    path = render_video(tmp_path / "v.mp4", scene, crf=10)
    p = extract_primitives(path, fps=FPS, size=None, residual_scale=0.25, return_frames=True)
    inner = np.abs(p.residuals[:, :, 4:-4, 4:-4])
    assert np.median(inner) < 2.0
    diff = p.frames[1].astype(np.float32) - p.frames[0].astype(np.float32)
    assert np.median(np.abs(diff)) > 8.0
