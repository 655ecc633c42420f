"""Codec layer on real files: raw motion vectors against PyAV side data, step layout, transcode, determinism."""

from __future__ import annotations

import av
import numpy as np
import pytest

from _video_factory import render_video, textured_scene, write_video
from transformers_cope.codec import (
    MV_COLUMNS,
    CodecPrimitives,
    extract_primitives,
    probe_video,
    read_motion_vectors,
    step_frame_types,
    transcode,
)

REAL = {"vid_h264.mp4": 3, "vid_mpeg4_part2.mp4": 30}  # file -> number of I-frames (design.md §3)


def _side_data_vectors(path):
    """Vectors read independently: a plain PyAV decode and frame.side_data, field by field (I/P streams give
    identical vectors under every threading mode, so frame threads keep this fast)."""
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        s.codec_context.options = {"flags2": "+export_mvs"}
        for f in c.decode(s):
            sd = f.side_data.get("MOTION_VECTORS")
            mv = np.zeros((0, 10), np.int32)
            if sd is not None:
                raw = sd.to_ndarray()
                mv = np.stack([raw[name].astype(np.int64) for name in MV_COLUMNS], 1).astype(np.int32)
            out.append(("?IPB"[int(f.pict_type)], mv, float(f.time), sd))
    return out


@pytest.fixture(scope="module", params=sorted(REAL))
def real_video(request, media_dir):
    path = media_dir / request.param
    return request.param, path, list(read_motion_vectors(path)), _side_data_vectors(path)


def test_read_motion_vectors_matches_side_data(real_video):
    name, path, ours, ref = real_video
    assert len(ours) == len(ref) == 337
    types = "".join(f.frame_type for f in ours)
    assert types == "".join(r[0] for r in ref)
    assert types.count("I") == REAL[name] and types.count("B") == 0
    assert [f.index for f in ours] == list(range(337))
    for f, (_, mv, t, _sd) in zip(ours, ref):
        assert f.motion_vectors.dtype == np.int32 and f.motion_vectors.shape[1] == 10
        np.testing.assert_array_equal(f.motion_vectors, mv)
        assert f.time == pytest.approx(t)
    for f in ours:
        if f.frame_type == "I":
            assert f.motion_vectors.shape == (0, 10)
    assert sum(len(f.motion_vectors) for f in ours) > 100_000
    assert np.all(np.diff([f.time for f in ours]) > 0)


def test_motion_vector_objects_agree_with_rows(real_video):
    """The MotionVector objects (the slow per-vector API) give the same rows, in the same order."""
    _, _, ours, ref = real_video
    checked = 0
    for f, (_, _, _, sd) in zip(ours, ref):
        if sd is None or f.frame_type != "P":
            continue
        rows = np.array([[getattr(v, name) for name in MV_COLUMNS] for v in sd], np.int64)
        np.testing.assert_array_equal(f.motion_vectors, rows)
        checked += 1
        if checked == 2:
            break
    assert checked == 2


def test_probe_real_videos(media_dir):
    info = probe_video(media_dir / "vid_h264.mp4")
    assert (info.codec, info.width, info.height, info.num_packets) == ("h264", 1280, 720, 337)
    assert info.reordered is False and info.ref_frames == 1 and len(info.keyframe_times) == 3
    assert info.fps == pytest.approx(25.0) and info.duration == pytest.approx(13.48)
    info = probe_video(media_dir / "vid_mpeg4_part2.mp4")
    assert info.codec == "mpeg4" and len(info.keyframe_times) == 30


def test_extract_real_h264_native_deterministic(media_dir):
    with pytest.warns(UserWarning, match="2 Δ step.* codec keyframe inside"):
        runs = [extract_primitives(media_dir / "vid_h264.mp4", mode="native", max_steps=10, size=(96, 128))
                for _ in range(2)]
    p = runs[0]
    assert p.mode == "native" and p.frame_types == "IPPPPPPPIP"
    assert p.keyframes.shape == (2, 96, 128, 3) and p.motion_vectors.shape == (8, 2, 6, 8)
    assert p.residuals.shape == (8, 3, 24, 32) and p.intra_masks.shape == (8, 6, 8)
    assert np.isfinite(p.motion_vectors).all() and np.isfinite(p.residuals).all()
    # the codec keyframe at 8.4 s falls in the window of step 6 (steps are ~1.4 s apart): that step is all intra
    assert p.intra_masks[5].all() and not p.intra_masks[0].all()
    _assert_same(*runs)


def test_extract_real_mpeg4_transcode_deterministic(media_dir):
    runs = [extract_primitives(media_dir / "vid_mpeg4_part2.mp4", max_steps=6, size=(64, 64)) for _ in range(2)]
    p = runs[0]
    assert p.mode == "transcode"  # auto: a codec keyframe every 12 frames falls inside every Δ window
    assert p.frame_types == "IPPPPP" and p.motion_vectors.shape == (5, 2, 4, 4)
    assert p.intra_masks.mean() < 0.6
    _assert_same(*runs)


@pytest.mark.parametrize("mode", ["transcode", "native"])
def test_decoder_threads_do_not_change_outputs(media_dir, monkeypatch, mode):
    """MPEG-4 Part 2 at 720p decodes on one thread (the codec worker gets the other core); forcing the threaded
    decoder instead gives the same arrays bit for bit."""
    import warnings

    from transformers_cope import codec_decode, codec_extract

    threads = []
    original = codec_extract._set_decoder_threads

    def spy(stream, info, thread_type):
        original(stream, info, thread_type)
        threads.append(stream.codec_context.thread_count)

    monkeypatch.setattr(codec_extract, "_set_decoder_threads", spy)
    path = media_dir / "vid_mpeg4_part2.mp4"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # native: steps with a codec keyframe inside are all intra
        single = extract_primitives(path, mode=mode, max_steps=5, size=(64, 64))
        monkeypatch.setattr(codec_decode, "_SINGLE_THREAD_MAX_PIXELS", 0)
        threaded = extract_primitives(path, mode=mode, max_steps=5, size=(64, 64))
    assert threads[0] == 1 and threads[1] != 1
    _assert_same(single, threaded)


def test_auto_mode_choice(media_dir):
    # steps every 2 s with an "I" step at 10 s: the keyframe at 8.4 s opens a GOP, none falls inside a window,
    # H.264 with one reference frame and no B-frames -> the file's own P-frames are used
    p = extract_primitives(media_dir / "vid_h264.mp4", fps=0.5, gop_size=5, size=(64, 64))
    assert p.frame_types == "IPPPPIP" and p.mode == "native"


# ------------------------------------------------------------------------------------------------- step layout


def test_step_frame_types():
    assert step_frame_types(16, 8, 1) == "IPPPPPPPIPPPPPPP"
    assert step_frame_types(8, 8, 2) == "IPPPIPPP"
    assert step_frame_types(8, 8, 4) == "IPIPIPIP"
    assert step_frame_types(8, 8, 8) == "IIIIIIII"
    assert step_frame_types(3, 8, 1) == "IPP"
    with pytest.raises(ValueError):
        step_frame_types(8, 8, 9)


@pytest.fixture(scope="module")
def pan_video(tmp_path_factory):
    scene = textured_scene(height=64, width=96, num_frames=61, pan=(1.0, -0.5))
    return render_video(tmp_path_factory.mktemp("codec") / "pan.mp4", scene)


@pytest.mark.parametrize("mode", ["transcode", "native"])
def test_layout_and_shapes(pan_video, mode):
    p = extract_primitives(pan_video, fps=4, gop_size=4, keyframes_per_gop=2, size=(64, 96), mode=mode,
                           return_frames=True, residual_scale=0.5)
    assert isinstance(p, CodecPrimitives) and p.mode == mode
    assert p.frame_types == "IPIPIPIPI" and p.num_steps == 9
    n_i, n_p = 5, 4
    assert p.keyframes.shape == (n_i, 64, 96, 3) and p.keyframes.dtype == np.uint8
    assert p.motion_vectors.shape == (n_p, 2, 4, 6) and p.motion_vectors.dtype == np.float32
    assert p.intra_masks.shape == (n_p, 4, 6) and p.intra_masks.dtype == bool
    assert p.residuals.shape == (n_p, 3, 32, 48) and p.residuals.dtype == np.float32
    assert p.frames.shape == (9, 64, 96, 3)
    np.testing.assert_allclose(p.timestamps, np.arange(9) / 4, atol=1 / 60)
    # nearest frame to each step time; a tie (7.5) goes to the earlier frame
    np.testing.assert_array_equal(p.frame_indices, np.ceil(np.arange(9) / 4 * 30 - 0.5).astype(np.int64))
    assert p.timestamps.dtype == np.float64 and p.frame_indices.dtype == np.int64
    is_i = np.array([t == "I" for t in p.frame_types])
    np.testing.assert_array_equal(p.keyframes, p.frames[is_i])
    assert p.frame_size == (64, 96) and p.source_fps == pytest.approx(30.0)
    assert p.duration == pytest.approx(61 / 30)
    # content moves (+1, -0.5) px per source frame; each Δ step spans 7 frames here
    p_steps = np.flatnonzero(~is_i)
    span = p.frame_indices[p_steps] - p.frame_indices[p_steps - 1]
    med = np.median(p.motion_vectors[:, :, 1:-1, 1:-1], axis=(2, 3))
    np.testing.assert_allclose(med, span[:, None] * np.array([1.0, -0.5]), atol=0.3)


def test_sizes_grid_and_caps(pan_video):
    p = extract_primitives(pan_video, fps=2, size=40)  # short side 40 -> 48, long side 60 -> 64 (multiples of 16)
    assert p.frame_size == (48, 64)
    p = extract_primitives(pan_video, fps=2, size=None, mv_block=8, residual_scale=1.0)
    assert p.frame_size == (64, 96) and p.motion_vectors.shape[2:] == (8, 12) and p.residuals.shape[2:] == (64, 96)
    p = extract_primitives(pan_video, fps=10, max_steps=4, size=(32, 32))
    np.testing.assert_array_equal(p.frame_indices, [0, 21, 39, 60])  # linspace over the 21 steps of 10 fps
    assert p.frame_types == "IPPP"
    p = extract_primitives(pan_video, fps=2, gop_size=2, keyframes_per_gop=2, size=(32, 32))
    assert p.frame_types == "IIIII" and p.motion_vectors.shape == (0, 2, 2, 2) and p.residuals.shape[0] == 0


def test_progress_bar(pan_video, capsys):
    p = extract_primitives(pan_video, fps=2, size=(32, 32), progress=True)
    assert p.num_steps == 5
    assert "frame" in capsys.readouterr().err


def test_invalid_arguments(pan_video):
    for kwargs in ({"fps": 0}, {"mode": "fast"}, {"residual_scale": 0}, {"keyframes_per_gop": 0},
                   {"codec": "vp9"}, {"codec": "libx264", "preset": "ultrafast"}, {"mv_block": 128, "size": (64, 64)}):
        with pytest.raises(ValueError):
            extract_primitives(pan_video, **kwargs)


# --------------------------------------------------------------------------------------------------- transcode


@pytest.fixture(scope="module")
def bframe_video(tmp_path_factory):
    scene = textured_scene(height=64, width=96, num_frames=45, pan=(1.5, 0.5), sprite_velocity=(-2.0, 1.0))
    return write_video(tmp_path_factory.mktemp("codec") / "bframes.mp4", scene, bframes=3,
                       options={"preset": "medium"})


def test_bframe_fixture_has_b_frames(bframe_video):
    types = "".join(f.frame_type for f in read_motion_vectors(bframe_video))
    assert types.count("B") > 10
    assert probe_video(bframe_video).reordered is True


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_transcode_fixed_gop_in_memory(bframe_video, codec):
    data = transcode(bframe_video, codec=codec, fps=20, gop_size=6, size=(32, 48))
    assert isinstance(data, bytes)
    frames = list(read_motion_vectors(data))
    types = "".join(f.frame_type for f in frames)
    assert len(frames) == 30  # 1.5 s at 20 fps (the source's 45 frames at 30 fps)
    assert types == ("IPPPPP" * 5)
    np.testing.assert_allclose([f.time for f in frames], np.arange(30) / 20, atol=1e-6)
    info = probe_video(data)
    assert (info.width, info.height) == (48, 32) and info.codec == ("h264" if codec == "libx264" else "mpeg4")
    assert all(set(f.motion_vectors[:, 0].tolist()) <= {-1} for f in frames)  # one reference, list 0 only


def test_mpeg4_qscale_takes_effect(media_dir):
    """Regression: global_quality alone left the MPEG-4 encoder at qmin (2) whatever qscale said."""
    src = media_dir / "vid_mpeg4_part2.mp4"
    sizes = {q: len(transcode(src, codec="mpeg4", fps=5, size=(96, 160), qscale=q)) for q in (2, 12)}
    assert sizes[12] < 0.6 * sizes[2]


def test_transcode_to_file_paper_defaults(bframe_video, tmp_path):
    out = transcode(bframe_video, tmp_path / "paper.mp4")
    assert out == tmp_path / "paper.mp4" and out.stat().st_size > 0
    types = "".join(f.frame_type for f in read_motion_vectors(out))
    assert types == "I" + "P" * 44  # 30 fps, GOP 240: one keyframe in 1.5 s
    assert probe_video(out).fps == pytest.approx(30.0)


# ------------------------------------------------------------------------------------------------- determinism


def _assert_same(a: CodecPrimitives, b: CodecPrimitives):
    assert a.frame_types == b.frame_types and a.mode == b.mode
    for name in ("keyframes", "motion_vectors", "intra_masks", "residuals", "timestamps", "frame_indices"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes(), name


def test_deterministic_on_b_frame_stream(bframe_video):
    runs = [extract_primitives(bframe_video, fps=6, size=(64, 96)) for _ in range(2)]
    assert runs[0].mode == "transcode"
    _assert_same(*runs)
    mvs = [[f.motion_vectors for f in read_motion_vectors(bframe_video)] for _ in range(2)]
    assert all(np.array_equal(x, y) for x, y in zip(*mvs))


# ------------------------------------------------------------------------------------------------------ memory


def test_memory_does_not_grow_with_duration(tmp_path):
    """Streaming: with the same number of output steps, a 4x longer video peaks at about the same memory."""
    import tracemalloc

    peaks = {}
    for seconds in (4, 16):
        scene = textured_scene(height=64, width=64, num_frames=30 * seconds, pan=(0.5, 0.25), seed=seconds)
        path = write_video(tmp_path / f"{seconds}s.mp4", scene, gop_size=1000)
        for mode in ("transcode", "native"):
            tracemalloc.start()
            p = extract_primitives(path, fps=2, max_steps=6, size=(64, 64), mode=mode, return_frames=True)
            peaks[seconds, mode] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert p.num_steps == 6
    for mode in ("transcode", "native"):
        assert peaks[16, mode] < 1.25 * peaks[4, mode] + 256 * 1024, peaks


# ------------------------------------------------------------------------------------------------- one open


@pytest.mark.parametrize("name", ["vid_h264.mp4", "city_cc0.mpg"])
def test_scan_and_decode_share_one_open(media_dir, monkeypatch, name):
    """The packet scan's container is rewound for the decode (av.open probes streams: 15-35 ms on these files) in
    extract_primitives, read_motion_vectors and transcode; when the rewind cannot be verified the file is
    reopened, with identical results."""
    from transformers_cope import codec_probe

    opens = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opens.append(a[0]) or real_open(*a, **k))
    kwargs = dict(max_steps=9, size=(64, 96))
    shared = extract_primitives(media_dir / name, **kwargs)
    assert len(opens) == 1

    del opens[:]
    assert len(list(read_motion_vectors(media_dir / name))) > 0 and len(opens) == 1
    transcode(media_dir / name, codec="mpeg4", fps=2, size=(64, 96))
    assert len(opens) == 3  # the source once, the in-memory MP4 it writes once

    del opens[:]
    monkeypatch.setattr(codec_probe._Reader, "_rewound", lambda self, container, stream: container.close())
    reopened = extract_primitives(media_dir / name, **kwargs)
    assert len(opens) == 2
    _assert_same(shared, reopened)


@pytest.mark.parametrize("hw, res_hw", [((224, 224), (56, 56)), ((96, 128), (24, 32)), ((224, 400), (56, 100)),
                                        ((64, 64), (8, 8)), ((60, 90), (16, 24))])
def test_residual_downscale_fast_path_is_exact(hw, res_hw):
    """The integer block mean used for whole-number ratios equals the float area pool bit for bit."""
    from transformers_cope.codec_fusion import _area_pool, _Residual

    rng = np.random.default_rng(0)
    residual = _Residual(hw, res_hw, "bilinear")
    for rgb in (rng.integers(0, 256, (*hw, 3), dtype=np.uint8), np.full((*hw, 3), 255, np.uint8)):
        expected = _area_pool(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32), *res_hw)
        got = residual.small(rgb)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("layout", [dict(fps=1.0), dict(fps=2.0, keyframes_per_gop=8), dict(fps=3.0, codec_fps=9.0)])
def test_gop_tails_after_the_last_sampled_frame_are_not_decoded(media_dir, monkeypatch, layout):
    """city_cc0.mpg is MPEG-2 I/P with a keyframe every 12 frames: the frames of a GOP after its last sampled
    frame are read but not decoded, and the outputs are those of the full decode bit for bit."""
    from transformers_cope import codec_extract

    path = media_dir / "city_cc0.mpg"
    kwargs = dict(mode="transcode", size=(64, 96), return_frames=True, **layout)
    dropped = []
    original = codec_extract._gop_tail_filter

    def counting(info, targets):
        keep = original(info, targets)
        if keep is None:
            return None

        def counted(pkt):
            kept = keep(pkt)
            dropped.append(not kept)
            return kept
        return counted

    monkeypatch.setattr(codec_extract, "_gop_tail_filter", counting)
    skipped = extract_primitives(path, **kwargs)
    assert 0 < sum(dropped) < len(dropped)
    monkeypatch.setattr(codec_extract, "_gop_tail_filter", lambda info, targets: None)
    full = extract_primitives(path, **kwargs)
    _assert_same(skipped, full)
    np.testing.assert_array_equal(skipped.frames, full.frames)
    np.testing.assert_array_equal(skipped.frame_indices, full.frame_indices)


def test_gop_tail_filter_only_for_refreshing_ip_streams(media_dir):
    from transformers_cope.codec_extract import _gop_tail_filter

    targets = np.arange(0.0, 5.0, 0.2)
    assert _gop_tail_filter(probe_video(media_dir / "city_cc0.mpg"), targets) is not None
    assert _gop_tail_filter(probe_video(media_dir / "vid_h264.mp4"), targets) is None  # H.264: not a refresh codec


@pytest.mark.parametrize("mode", ["transcode", "native"])
def test_keyframes_at_their_own_size(media_dir, mode):
    """keyframe_size scales the "I" steps from the source frame; the Δ steps are those of the codec size."""
    import warnings

    path = media_dir / "vid_mpeg4_part2.mp4"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # native: keyframes inside windows make those steps intra
        base = extract_primitives(path, mode=mode, max_steps=9, size=(64, 64))
        big = extract_primitives(path, mode=mode, max_steps=9, size=(64, 64), keyframe_size=(96, 128))
    assert big.frame_size == (64, 64) and big.keyframes.shape == (2, 96, 128, 3)
    for name in ("motion_vectors", "intra_masks", "residuals", "frame_indices"):
        np.testing.assert_array_equal(getattr(big, name), getattr(base, name))
    # the same pictures: the large keyframes averaged down match the codec-size ones
    resized = av.VideoFrame.from_ndarray(big.keyframes[0], format="rgb24").reformat(64, 64, interpolation="AREA")
    assert np.abs(resized.to_ndarray().astype(int) - base.keyframes[0].astype(int)).mean() < 3.0
