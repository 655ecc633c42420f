"""Parallel extraction: segments split at codec keyframes, extracted by worker processes, stitched back bit for bit
equal to the sequential result; files that cannot be split fall back to sequential."""

from __future__ import annotations

import warnings

import av
import pytest

from _video_factory import textured_scene, write_video
from test_codec_stream import assert_same
from transformers_cope import codec_parallel
from transformers_cope.codec import extract_primitives, iter_primitives


@pytest.fixture
def splits(monkeypatch):
    """The segments of every split, and a failure if the parallel path gives up on a segment and finishes
    sequentially (the split must really hold, not pass by falling back)."""
    from transformers_cope import codec

    seen = []

    def spy(plan, num_workers):
        seen.append(codec_parallel._split(plan, num_workers))
        return seen[-1]

    def fail(*args, **kwargs):
        raise AssertionError("a segment could not reproduce the sequential decode")

    monkeypatch.setattr(codec, "_split", spy)
    monkeypatch.setattr(codec_parallel, "_sequential", fail)
    return seen


def both(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # native on the real clips: inexact-mode warnings
        sequential = extract_primitives(path, num_workers=1, **kwargs)
        parallel = extract_primitives(path, num_workers=2, **kwargs)
    return sequential, parallel


@pytest.mark.parametrize("name", ["vid_h264.mp4", "vid_mpeg4_part2.mp4", "city_cc0.mpg"])
@pytest.mark.parametrize("mode", ["transcode", pytest.param("native", marks=pytest.mark.slow)])
def test_parallel_equals_sequential_on_real_clips(media_dir, name, mode, splits):
    sequential, parallel = both(media_dir / name, mode=mode, fps=2.0, gop_size=4, size=(64, 96), return_frames=True)
    assert splits[-1] is not None and len(splits[-1]) == 2 and splits[-1][1].seek_pts is not None
    assert_same(parallel, sequential)


@pytest.fixture(scope="module")
def bframe_clip(tmp_path_factory):
    """H.264 with B-frames and three reference frames, an IDR keyframe every 15 frames: 4 s at 30 fps."""
    scene = textured_scene(height=96, width=128, num_frames=120, pan=(2.0, 0.5), sprite_velocity=(-2.0, 1.0))
    return write_video(tmp_path_factory.mktemp("parallel") / "bframes.mp4", scene, bframes=2, gop_size=15,
                       options={"preset": "veryfast"})


@pytest.mark.parametrize("kwargs", [dict(), dict(codec="libx264", keyframes_per_gop=2),
                                    dict(fps=8.0, codec_fps=10.0, gop_size=5)])
def test_parallel_equals_sequential_on_b_frames(bframe_clip, kwargs, splits):
    kwargs = {"fps": 3.0, "gop_size": 2, "size": (64, 96), "mode": "transcode", **kwargs}
    sequential, parallel = both(bframe_clip, **kwargs)
    assert splits[-1] is not None and splits[-1][1].seek_pts > 0
    assert_same(parallel, sequential)


def test_open_gop_keyframes_are_not_split_points(tmp_path):
    """x264's open GOPs mark non-IDR I-frames as keyframes; frames after them may be predicted from before them,
    so they are no split points: the file is extracted sequentially, with the same result."""
    scene = textured_scene(height=64, width=96, num_frames=60, pan=(1.5, 0.5))
    path = write_video(tmp_path / "open_gop.mp4", scene, bframes=2, gop_size=15, x264_params="open-gop=1")
    it = iter_primitives(path, num_workers=2, fps=4.0, gop_size=2, size=(64, 96))
    assert len(it.info.keyframe_times) == 4
    it.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        independent = [codec_parallel._independent(p, stream) for p in container.demux(stream) if p.is_keyframe]
    assert independent == [True, False, False, False]
    sequential, parallel = both(path, fps=4.0, gop_size=2, size=(64, 96))
    assert_same(parallel, sequential)


def test_unsplittable_inputs_run_sequentially(media_dir, pan_clip):
    data = (media_dir / "vid_h264.mp4").read_bytes()
    kwargs = dict(fps=2.0, gop_size=4, size=(64, 96))
    assert_same(extract_primitives(data, num_workers=2, **kwargs), extract_primitives(data, num_workers=1, **kwargs))
    # one keyframe only: nothing to split at
    with iter_primitives(pan_clip, num_workers=2) as it:
        assert len(it.info.keyframe_times) == 1
    assert_same(extract_primitives(pan_clip, num_workers=2, **kwargs), extract_primitives(pan_clip, num_workers=1,
                                                                                            **kwargs))


@pytest.fixture
def pan_clip(tmp_path):
    scene = textured_scene(height=64, width=96, num_frames=60, pan=(1.5, 0.5))
    return write_video(tmp_path / "one_gop.mp4", scene, gop_size=1000)


def test_default_workers_leave_short_clips_and_two_cores_sequential(media_dir, monkeypatch):
    from transformers_cope.codec_extract import _make_plan
    from transformers_cope.codec_probe import _Reader

    assert codec_parallel.default_num_workers() >= 1
    with _Reader(media_dir / "vid_h264.mp4", None, None) as reader:
        plan = _make_plan(media_dir / "vid_h264.mp4", reader.info, fps=1.0, gop_size=4, keyframes_per_gop=1,
                          mode="transcode", size=(64, 64), mv_block=16, residual_scale=0.25, max_steps=None,
                          max_frames=None, max_pixels=None, return_frames=False, codec="mpeg4", codec_fps=5.0,
                          preset="medium", crf=23, qscale=2, encoder_threads=1, residual_interpolation="bilinear",
                          keyframe_size=None)
    assert plan.info.num_packets < 2 * codec_parallel.MIN_PACKETS_PER_SEGMENT
    assert codec_parallel._split(plan, None) is None
    assert codec_parallel._split(plan, 2) is not None
    # the rule itself: one worker per two cores (an extraction keeps two busy), one per MIN_PACKETS_PER_SEGMENT
    monkeypatch.setattr(codec_parallel, "MIN_PACKETS_PER_SEGMENT", 100)
    monkeypatch.setattr(codec_parallel, "default_num_workers", lambda: 2)
    assert codec_parallel._split(plan, None) is None
    monkeypatch.setattr(codec_parallel, "default_num_workers", lambda: 4)
    assert len(codec_parallel._split(plan, None)) == 2
