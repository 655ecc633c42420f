"""Synthetic video renderer: decoded files have the requested layout and the content really moves as declared."""

import hashlib
import types

import av
import numpy as np
import pytest

from transformers_cope.data.render import (
    Scene,
    Sprite,
    ground_truth,
    ground_truth_flow,
    iter_frames,
    make_textured_video,
    render_frame,
    render_frames,
    render_video,
    sprite_label_map,
    textured_scene,
)


def decode(path):
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        types_ = "".join("?IPB"[int(f.pict_type)] for f in frames)
        return np.stack([f.to_ndarray(format="rgb24") for f in frames]), types_, frames[0].format.name


def phase_correlation(a, b):
    """(dx, dy) such that b ~= a shifted by (dx, dy), with a parabolic sub-pixel peak fit."""
    a = a.astype(np.float64).mean(-1)
    b = b.astype(np.float64).mean(-1)
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    fa, fb = np.fft.fft2((a - a.mean()) * win), np.fft.fft2((b - b.mean()) * win)
    r = fb * np.conj(fa)
    corr = np.fft.ifft2(r / (np.abs(r) + 1e-9)).real
    py, px = np.unravel_index(np.argmax(corr), corr.shape)
    h, w = corr.shape

    def sub(c_m, c_0, c_p):
        den = c_m - 2 * c_0 + c_p
        return 0.0 if den == 0 else 0.5 * (c_m - c_p) / den

    dy = py + sub(corr[(py - 1) % h, px], corr[py, px], corr[(py + 1) % h, px])
    dx = px + sub(corr[py, (px - 1) % w], corr[py, px], corr[py, (px + 1) % w])
    return ((dx + w / 2) % w - w / 2, (dy + h / 2) % h - h / 2)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_decoded_layout(tmp_path, codec):
    scene = Scene(height=48, width=80, num_frames=17, seed=3, pan=(1.0, 0.0))
    path = render_video(tmp_path / f"v_{codec}.mp4", scene, codec=codec, fps=15, gop_size=8)
    frames, kinds, fmt = decode(path)
    assert frames.shape == (17, 48, 80, 3)
    assert fmt == "yuv420p"
    assert kinds == "IPPPPPPPIPPPPPPPI"
    with av.open(str(path)) as c:
        assert c.streams.video[0].average_rate == 15


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_bframes(tmp_path, codec):
    scene = Scene(height=32, width=32, num_frames=12, seed=0, pan=(1.0, 1.0))
    _, kinds, _ = decode(render_video(tmp_path / "b.mp4", scene, codec=codec, gop_size=12, bframes=2))
    assert "B" in kinds and kinds[0] == "I"
    _, kinds, _ = decode(render_video(tmp_path / "p.mp4", scene, codec=codec, gop_size=12, bframes=0))
    assert set(kinds[1:]) == {"P"}


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p10le"])
def test_x264_pix_fmts(tmp_path, pix_fmt):
    scene = Scene(height=32, width=48, num_frames=4, seed=1)
    frames, _, fmt = decode(render_video(tmp_path / "f.mp4", scene, pix_fmt=pix_fmt))
    assert fmt == pix_fmt and frames.shape == (4, 32, 48, 3)
    err = np.abs(frames.astype(int) - render_frames(scene).astype(int)).mean()
    assert err < 12, err


@pytest.mark.parametrize("pan", [(3.0, -2.0), (1.5, 0.75)])
def test_pan_shifts_decoded_content(tmp_path, pan):
    scene = Scene(height=96, width=96, num_frames=9, seed=7, pan=pan)
    frames, _, _ = decode(render_video(tmp_path / "pan.mp4", scene, gop_size=4))
    for k in (2, 4, 8):  # across P frames and across a keyframe
        dx, dy = phase_correlation(frames[0], frames[k])
        assert abs(dx - pan[0] * k) < 0.3 and abs(dy - pan[1] * k) < 0.3, (k, dx, dy)
    # and the camera panning left (content moving left) gives the opposite sign
    left = Scene(height=96, width=96, num_frames=5, seed=7, pan=(-2.0, 0.0))
    frames, _, _ = decode(render_video(tmp_path / "left.mp4", left))
    dx, dy = phase_correlation(frames[0], frames[4])
    assert abs(dx + 8) < 0.3 and abs(dy) < 0.3


def test_subpixel_pan_is_exact_translation():
    scene = Scene(height=40, width=40, num_frames=5, seed=2, pan=(0.25, 0.5))
    f = render_frames(scene).astype(int)
    # after 4 frames the content moved by exactly (1, 2) px: rendered pixels agree up to 8-bit rounding
    assert np.abs(f[4][2:, 1:] - f[0][:-2, :-1]).max() <= 1
    # and the half-way frame is a genuinely different (sub-pixel shifted) image, not a repeat
    assert np.abs(f[2] - f[0]).mean() > 5


def test_sprite_start_stop_and_boxes():
    sprite = Sprite(size=(12, 16), start_xy=(10.0, 20.0), velocity=(2.0, -1.0), start_frame=3, stop_frame=6, seed=5)
    scene = Scene(height=48, width=64, num_frames=10, seed=1, sprites=[sprite])
    gt = ground_truth(scene)
    assert gt.sprite_moving[:, 0].tolist() == [False] * 4 + [True] * 3 + [False] * 3
    np.testing.assert_allclose(gt.sprite_positions[6, 0], (16.0, 17.0))
    np.testing.assert_allclose(gt.sprite_boxes[6, 0], (16.0, 17.0, 32.0, 29.0))
    np.testing.assert_allclose(gt.background_displacement, 0)
    frames = render_frames(scene).astype(int)
    changed = lambda a, b: np.abs(frames[a] - frames[b]).sum(-1) > 0  # noqa: E731
    assert not changed(0, 3).any() and not changed(6, 9).any()  # rests before start and after stop
    ys, xs = np.nonzero(changed(3, 4))
    # what changed lies inside the union of the old and new boxes (plus the 1-px anti-aliased rim)
    b3, b4 = gt.sprite_boxes[3, 0], gt.sprite_boxes[4, 0]
    assert xs.min() >= min(b3[0], b4[0]) - 1 and xs.max() <= max(b3[2], b4[2])
    assert ys.min() >= min(b3[1], b4[1]) - 1 and ys.max() <= max(b3[3], b4[3])
    # the sprite's own texture translated with it
    x, y = gt.sprite_positions[6, 0].astype(int)
    assert np.abs(frames[6][y + 1:y + 11, x + 1:x + 15] - frames[3][y + 4:y + 14, x - 5:x + 9]).max() <= 1


def test_visible_boxes_and_flow():
    sprite = Sprite(size=10, start_xy=(-5.0, 4.0), velocity=(1.5, 0.0), seed=2, shape="ellipse")
    scene = Scene(height=24, width=32, num_frames=4, seed=0, pan=(-1.0, 0.5), sprites=[sprite])
    gt = ground_truth(scene)
    np.testing.assert_allclose(gt.sprite_visible_boxes[0, 0], (0.0, 4.0, 5.0, 14.0))
    np.testing.assert_allclose(gt.sprite_visible_fraction[0, 0], 0.5)
    flow, labels = ground_truth_flow(scene, 3, ref=1)
    assert flow.shape == (2, 24, 32) and labels.shape == (24, 32)
    np.testing.assert_allclose(flow[:, labels == 0].T, np.tile([3.0, 0.0], ((labels == 0).sum(), 1)))
    np.testing.assert_allclose(flow[:, labels == -1].T, np.tile([-2.0, 1.0], ((labels == -1).sum(), 1)))
    assert 0.6 * np.pi * 25 < (sprite_label_map(scene, 3) == 0).sum() < 1.2 * np.pi * 25


def test_lazy_and_random_access():
    scene = textured_scene(height=32, width=32, num_frames=6, pan=(0.5, 0.0), sprite_velocity=(1.0, 1.0), seed=4)
    gen = iter_frames(scene)
    assert isinstance(gen, types.GeneratorType)
    frames = list(gen)
    np.testing.assert_array_equal(render_frame(scene, 5), frames[5])
    with pytest.raises(IndexError):
        render_frame(scene, 6)


def test_bytes_reproducible_and_seed_override(tmp_path):
    kwargs = dict(height=32, width=32, num_frames=6, pan=(1.0, 0.0), sprite_velocity=(0.0, 1.5), seed=9)
    a = make_textured_video(tmp_path / "a.mp4", **kwargs)
    b = make_textured_video(tmp_path / "b.mp4", **kwargs)
    # frames first (the renderer), then bytes (the encoder): a failure says which of the two varied
    np.testing.assert_array_equal(render_frames(textured_scene(**kwargs)), render_frames(textured_scene(**kwargs)))
    assert b"mbtree=0" in a.read_bytes()  # the encoder settings pinned for repeatable bitstreams
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest(), (
        "same frames, different bitstreams: the x264 encode varied between two identical runs")
    scene = Scene(height=32, width=32, num_frames=2, seed=1)
    c = render_video(tmp_path / "c.mp4", scene, seed=2)
    assert not np.array_equal(decode(c)[0], decode(render_video(tmp_path / "d.mp4", scene))[0])


def test_textures_have_detail_but_are_not_noise():
    f = render_frame(Scene(height=64, width=64, num_frames=1, seed=11), 0).astype(float).mean(-1)
    assert 25 < f.std() < 90
    # neighbouring pixels correlate (smooth structure) yet 2-px differences carry real detail for block matching
    c1 = np.corrcoef(f[:, :-1].ravel(), f[:, 1:].ravel())[0, 1]
    assert 0.5 < c1 < 0.99
    assert np.abs(np.diff(f, axis=1)).mean() > 4


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="even"):
        render_video(tmp_path / "odd.mp4", Scene(height=33, width=32, num_frames=2))
    with pytest.raises(ValueError, match="mpeg4"):
        render_video(tmp_path / "x.mp4", Scene(height=32, width=32, num_frames=2), codec="mpeg4", pix_fmt="yuv444p")
    with pytest.raises(ValueError, match="codec"):
        render_video(tmp_path / "x.mp4", Scene(height=32, width=32, num_frames=2), codec="vp9")
    with pytest.raises(ValueError):
        Sprite(shape="star")
    with pytest.raises(ValueError):
        Sprite(start_frame=5, stop_frame=2)
