"""Bad and unusual inputs: every one gives a typed error naming the file, or a correct result."""

from __future__ import annotations

import pickle
import time
import warnings

import numpy as np
import pytest

from _video_factory import cut_file, textured_scene, write_audio_only, write_video, write_y4m_header
from transformers_cope.codec import extract_primitives, probe_video, read_motion_vectors, transcode
from transformers_cope.errors import (
    CorruptVideoError,
    NotAVideoError,
    NoVideoStreamError,
    TruncatedVideoWarning,
    UnsupportedVideoError,
    VideoDecodeError,
    VideoTooLargeError,
)

PAN = (1.0, 0.5)  # px per frame; steps at 5 fps span 6 frames


@pytest.fixture(scope="module")
def scene():
    return textured_scene(height=64, width=96, num_frames=40, pan=PAN, seed=5)


@pytest.fixture(scope="module")
def media(tmp_path_factory, scene):
    d = tmp_path_factory.mktemp("bad")
    return d


def _extract(path, **kw):
    kw.setdefault("fps", 5)
    kw.setdefault("size", None)
    return extract_primitives(path, **kw)


def _assert_pan(p, scale=1.0, atol=0.35):
    """Every Δ step recovers the pan on its inter cells (interior of the frame)."""
    assert p.motion_vectors.shape[0] >= 3
    checked = 0
    for i, k in enumerate(np.flatnonzero(np.array(list(p.frame_types)) == "P")):
        span = p.frame_indices[k] - p.frame_indices[k - 1]
        inter = ~p.intra_masks[i][1:-1, 1:-1]
        if inter.sum() < 2:
            continue
        med = np.median(p.motion_vectors[i][:, 1:-1, 1:-1][:, inter], axis=1)
        np.testing.assert_allclose(med, np.array(PAN) * span * scale, atol=atol)
        checked += 1
    assert checked >= 2


# ---------------------------------------------------------------------------------------------- not a video


def test_error_hierarchy_and_message(tmp_path):
    err = CorruptVideoError(tmp_path / "x.mp4", "no frame could be decoded")
    assert isinstance(err, VideoDecodeError) and isinstance(err, ValueError)
    assert str(err) == f"{tmp_path / 'x.mp4'}: no frame could be decoded"
    assert err.path == str(tmp_path / "x.mp4") and err.reason == "no frame could be decoded"
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is CorruptVideoError and str(again) == str(err)
    assert issubclass(NoVideoStreamError, NotAVideoError)
    for cls in (NotAVideoError, CorruptVideoError, VideoTooLargeError, UnsupportedVideoError):
        assert issubclass(cls, VideoDecodeError)
    assert issubclass(TruncatedVideoWarning, UserWarning)


@pytest.mark.parametrize("kind", ["empty", "random", "text", "directory"])
def test_not_a_video(tmp_path, kind):
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(50_000))
    elif kind == "text":
        path.write_text("this is not a video\n" * 200)
    else:
        path.mkdir()
    for fn in (extract_primitives, probe_video, lambda p: list(read_motion_vectors(p)), transcode):
        with pytest.raises(NotAVideoError) as exc:
            fn(path)
        assert str(path) in str(exc.value)


def test_missing_file_and_bad_type(tmp_path):
    with pytest.raises(FileNotFoundError):
        extract_primitives(tmp_path / "nope.mp4")
    with pytest.raises(TypeError):
        extract_primitives(12345)
    with pytest.raises(NotAVideoError):
        extract_primitives(b"")


def test_audio_only(media):
    path = write_audio_only(media / "tone.m4a")
    with pytest.raises(NoVideoStreamError, match="no video stream.*audio"):
        extract_primitives(path)


# ------------------------------------------------------------------------------------------------ damaged


def test_truncated_mp4_index_first(media, scene):
    full = write_video(media / "faststart.mp4", scene, container_options={"movflags": "+faststart"})
    cut = cut_file(full, media / "cut_faststart.mp4", 0.5)
    with pytest.warns(TruncatedVideoWarning, match="cut_faststart.mp4"):
        frames = list(read_motion_vectors(cut))
    assert 5 < len(frames) < 40
    with pytest.warns(TruncatedVideoWarning):
        p = _extract(cut)
    assert 1 < p.num_steps < 7  # the steps whose frames decoded
    assert p.frame_indices[-1] < len(frames)


def test_truncated_mp4_index_last(media, scene):
    full = write_video(media / "plain.mp4", scene)
    cut = cut_file(full, media / "cut_plain.mp4", 0.5)
    with pytest.raises(CorruptVideoError, match="cut_plain.mp4.*moov"):
        _extract(cut)


def test_header_only_is_corrupt(media, scene):
    full = write_video(media / "hdr.mp4", scene, container_options={"movflags": "+faststart"})
    data = full.read_bytes()
    header = media / "header_only.mp4"
    header.write_bytes(data[: data.find(b"mdat") + 4])
    with pytest.raises(CorruptVideoError, match="no frame could be decoded"), \
            pytest.warns(TruncatedVideoWarning, match="index lists 40 frames"):
        _extract(header)


def test_garbage_in_the_middle(media, scene):
    full = write_video(media / "mid.mp4", scene, container_options={"movflags": "+faststart"})
    data = bytearray(full.read_bytes())
    start = data.find(b"mdat") + 4
    mid = start + (len(data) - start) // 2
    data[mid:mid + 2000] = np.random.default_rng(1).bytes(2000)
    damaged = media / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedVideoWarning)
        p = _extract(damaged)
    assert p.num_steps >= 2 and np.isfinite(p.motion_vectors).all()


# ----------------------------------------------------------------------------------------------- too large


def test_declared_huge_frame_fails_fast(media):
    path = write_y4m_header(media / "huge.y4m", 30000, 30000)
    t = time.perf_counter()
    with pytest.raises(VideoTooLargeError, match="30000x30000"):
        extract_primitives(path)
    with pytest.raises(VideoTooLargeError):
        extract_primitives(write_y4m_header(media / "big.y4m", 12000, 12000))
    assert time.perf_counter() - t < 2.0


def test_configurable_caps(media, scene):
    path = write_video(media / "caps.mp4", scene)
    with pytest.raises(VideoTooLargeError, match="max_pixels=1000"):
        extract_primitives(path, max_pixels=1000)
    with pytest.raises(VideoTooLargeError, match="max_frames=10"):
        extract_primitives(path, max_frames=10)
    with pytest.raises(VideoTooLargeError):
        list(read_motion_vectors(path, max_frames=10))
    assert extract_primitives(path, max_frames=40, max_pixels=64 * 96, fps=5).num_steps == 7


# ------------------------------------------------------------------------------------- unusual but valid


def test_all_intra_video(media, scene):
    path = write_video(media / "intra.mp4", scene, gop_size=1)
    assert {f.frame_type for f in read_motion_vectors(path)} == {"I"}
    p = _extract(path)
    assert p.mode == "transcode"  # every window holds codec keyframes: re-encoded
    _assert_pan(p)
    with pytest.warns(UserWarning, match="Δ step"):  # native is possible but loses every Δ step to intra
        q = _extract(path, mode="native")
    assert q.mode == "native" and q.intra_masks.all()


def test_b_frame_video(media, scene):
    path = write_video(media / "bframes.mp4", scene, bframes=2, options={"preset": "medium"})
    assert "B" in "".join(f.frame_type for f in read_motion_vectors(path))
    p = _extract(path)
    assert p.mode == "transcode"
    _assert_pan(p)
    with pytest.warns(UserWarning, match="B-frames"):
        assert _extract(path, mode="native").mode == "transcode"


@pytest.mark.parametrize("codec, suffix, opts", [("libx265", "mp4", {"x265-params": "log-level=none"}),
                                                 ("libvpx-vp9", "webm", {}), ("mjpeg", "avi", {}),
                                                 ("mpeg2video", "mpg", {})])
def test_codecs_without_usable_vectors_are_transcoded(media, scene, codec, suffix, opts):
    pix = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    path = write_video(media / f"{codec}.{suffix}", scene, codec=codec, pix_fmt=pix, options=opts, gop_size=12)
    p = _extract(path)
    assert p.mode == "transcode"
    _assert_pan(p)
    if codec in ("libx265", "libvpx-vp9"):
        assert all(len(f.motion_vectors) == 0 for f in read_motion_vectors(path))
        with pytest.warns(UserWarning, match="exports no motion vectors"):
            assert _extract(path, mode="native").mode == "transcode"


def test_odd_size(media):
    odd = textured_scene(height=17, width=33, num_frames=20, pan=(1.0, 0.0), seed=2)
    path = write_video(media / "odd.mp4", odd, codec="mpeg4", gop_size=100)
    p = extract_primitives(path, fps=5, size=None, mv_block=8, mode="native")
    assert p.frame_size == (17, 33) and p.motion_vectors.shape[2:] == (2, 4)
    q = extract_primitives(path, fps=5, size=None, mv_block=8, mode="transcode")
    assert q.frame_size == (16, 32)  # libx264 needs even sides
    for r in (p, q):
        assert r.keyframes.shape[1:3] == r.frame_size and np.isfinite(r.residuals).all()
    r = extract_primitives(path, fps=5, size=(64, 64))
    assert r.frame_size == (64, 64) and r.motion_vectors.shape == (3, 2, 4, 4)


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p10le", "yuv422p"])
def test_high_chroma_and_bit_depth(media, scene, pix_fmt):
    path = write_video(media / f"{pix_fmt}.mp4", scene, pix_fmt=pix_fmt)
    assert probe_video(path).pix_fmt == pix_fmt
    for mode in ("native", "transcode"):
        p = _extract(path, mode=mode)
        assert p.mode == mode and p.keyframes.dtype == np.uint8
        _assert_pan(p)


def test_image_file_is_a_one_step_video(tmp_path):
    from PIL import Image

    path = tmp_path / "still.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    p = extract_primitives(path, size=(32, 32))
    assert p.frame_types == "I" and p.keyframes.shape == (1, 32, 32, 3) and p.motion_vectors.shape[0] == 0


def test_bytes_input(media, scene):
    path = write_video(media / "inmem.mp4", scene)
    a = _extract(path.read_bytes())
    b = _extract(path)
    assert a.frame_types == b.frame_types
    np.testing.assert_array_equal(a.motion_vectors, b.motion_vectors)
