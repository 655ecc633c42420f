"""GOP-by-GOP extraction: `iter_primitives` yields each GOP as soon as it is decoded, and its GOPs concatenated are
`extract_primitives` bit for bit (native and transcode, B-frame sources, the shared real clips)."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from _video_factory import textured_scene, write_video
from transformers_cope import GOPPrimitives, iter_primitives
from transformers_cope.codec import CodecPrimitives, extract_primitives

FIELDS = ("keyframes", "motion_vectors", "intra_masks", "residuals", "timestamps", "frame_indices", "frames")
REAL = ("vid_h264.mp4", "vid_mpeg4_part2.mp4", "city_cc0.mpg")


def assert_same(a: CodecPrimitives, b: CodecPrimitives) -> None:
    assert a.frame_types == b.frame_types and a.frame_size == b.frame_size and a.mode == b.mode
    assert (a.source_fps, a.duration) == (b.source_fps, b.duration)
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope="module")
def bframe_clip(tmp_path_factory):
    """H.264 with B-frames (3 reference frames, a keyframe every 15 frames): 5 s at 30 fps."""
    scene = textured_scene(height=96, width=128, num_frames=150, pan=(1.5, 0.5), sprite_velocity=(-2.0, 1.0))
    return write_video(tmp_path_factory.mktemp("stream") / "bframes.mp4", scene, bframes=2, gop_size=15,
                       options={"preset": "veryfast"})


def check_gops(gops: list[GOPPrimitives], gop_size: int) -> None:
    assert [g.index for g in gops] == list(range(len(gops)))
    assert [g.first_step for g in gops] == [i * gop_size for i in range(len(gops))]
    assert all(g.num_steps == gop_size for g in gops[:-1]) and 1 <= gops[-1].num_steps <= gop_size
    assert all(g.frame_types[0] == "I" for g in gops)
    for g in gops:  # each GOP's arrays belong to its own steps
        assert g.keyframes.shape[0] == g.frame_types.count("I")
        assert g.motion_vectors.shape[0] == g.residuals.shape[0] == g.frame_types.count("P")
        assert len(g.timestamps) == len(g.frame_indices) == g.num_steps


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("mode", ["transcode", pytest.param("native", marks=pytest.mark.slow)])
def test_gops_concatenate_to_extract_primitives_on_real_clips(media_dir, name, mode):
    kwargs = dict(mode=mode, fps=2.0, gop_size=4, size=(64, 96), return_frames=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # native on these clips: B-frames / keyframes inside windows
        whole = extract_primitives(media_dir / name, **kwargs)
        it = iter_primitives(media_dir / name, **kwargs)
        gops = list(it)
    assert it.num_steps == whole.num_steps and it.num_gops == len(gops) > 1
    check_gops(gops, 4)
    assert_same(CodecPrimitives.from_gops(gops), whole)


@pytest.mark.parametrize("kwargs", [dict(mode="transcode"), dict(mode="transcode", codec="libx264", keyframes_per_gop=2),
                                    dict(mode="native"), dict(mode="auto", fps=4.0, codec_fps=8.0)])
def test_gops_concatenate_to_extract_primitives_on_b_frames(bframe_clip, kwargs):
    kwargs = {"fps": 3.0, "gop_size": 3, "size": (64, 96), **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # native with B-frames: transcodes instead, with a warning
        whole = extract_primitives(bframe_clip, **kwargs)
        gops = list(iter_primitives(bframe_clip, **kwargs))
    assert whole.mode == "transcode"
    check_gops(gops, 3)
    assert_same(CodecPrimitives.from_gops(gops), whole)


def test_first_gop_arrives_before_the_video_is_decoded(media_dir, monkeypatch):
    """Streaming, not a batch in disguise: the first GOP is out while most of the file is still undecoded."""
    from transformers_cope import codec_extract

    decoded = []
    original = codec_extract._decoded_frames

    def counting(*args, **kwargs):
        for frame in original(*args, **kwargs):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(codec_extract, "_decoded_frames", counting)
    it = iter_primitives(media_dir / "vid_mpeg4_part2.mp4", mode="transcode", fps=4.0, gop_size=4, size=(64, 64))
    first = next(it)
    at_first = len(decoded)
    rest = list(it)
    assert first.index == 0 and len(rest) >= 4
    assert at_first < len(decoded) / 3, (at_first, len(decoded))


def test_closing_early_releases_the_worker(media_dir):
    before = threading.active_count()
    with iter_primitives(media_dir / "city_cc0.mpg", fps=4.0, gop_size=2, size=(64, 64)) as it:
        assert next(it).index == 0
    assert threading.active_count() == before


def test_bad_input_raises_at_the_call_not_at_the_first_gop(tmp_path):
    from transformers_cope import NotAVideoError

    path = tmp_path / "text.mp4"
    path.write_text("not a video")
    with pytest.raises(NotAVideoError):
        iter_primitives(path)


def test_a_slow_consumer_gets_the_same_gops(media_dir):
    """The worker thread keeps producing while the consumer is busy: what it hands over must not depend on timing."""
    import time

    kwargs = dict(mode="transcode", fps=4.0, gop_size=3, size=(64, 96))
    whole = extract_primitives(media_dir / "vid_h264.mp4", **kwargs)
    gops = []
    for gop in iter_primitives(media_dir / "vid_h264.mp4", **kwargs):
        time.sleep(0.05)
        gops.append(gop)
    assert_same(CodecPrimitives.from_gops(gops), whole)


def test_memory_is_bounded_by_one_gop(media_dir):
    """Peak traced memory while discarding GOPs stays far below the whole result's size (numpy reports its
    buffers to tracemalloc): the extractor keeps the GOP being collected, not the video."""
    import tracemalloc

    kwargs = dict(mode="transcode", fps=8.0, gop_size=4, size=(128, 192), return_frames=True)
    total = 0
    tracemalloc.start()
    try:
        for gop in iter_primitives(media_dir / "vid_mpeg4_part2.mp4", **kwargs):
            total += sum(getattr(gop, name).nbytes for name in FIELDS)
            del gop
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < total / 3, (peak, total)
