"""CoPEVideoProcessor: codec primitives -> model tensors (tiny sizes, real and synthetic videos)."""

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from transformers_cope.codec import extract_primitives
from transformers_cope.data.render import make_textured_video
from transformers_cope.tiny import TINY_VIDEO_PROCESSOR, build_tiny_video_processor
from transformers_cope.video_processing_cope import CoPEVideoProcessor, flatten_videos

TOKENS = 16  # tiny: 32 px / patch 4 = 8x8 patches, 2x2 pooling -> 4x4


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory):
    """3 s of a panning texture with a moving sprite, 64x64 at 30 fps (libx264, I/P)."""
    path = tmp_path_factory.mktemp("videos") / "pan.mp4"
    return make_textured_video(path, height=64, width=64, num_frames=90, pan=(1.0, 0.5), sprite_velocity=(-1.5, 0.0),
                               fps=30, seed=3)


def expected_layout(n_steps: int, gop: int, k: int) -> str:
    """Contract: within each GOP, k evenly spaced steps are I (k=1 -> 0; k=2 -> 0,4; k=gop -> all)."""
    positions = {i * gop // k for i in range(k)}
    return "".join("I" if s % gop in positions else "P" for s in range(n_steps))


def fake_primitives(keyframes, n_p=2, grid=4, res=16, mv_value=0.0, residual_value=0.0, intra=False):
    """Duck-typed CodecPrimitives with known values (the processor only reads these fields)."""
    keyframes = np.asarray(keyframes, dtype=np.uint8)
    n_i = len(keyframes)
    types = "".join("I" + "P" * n_p for _ in range(n_i))
    return SimpleNamespace(
        frame_types=types,
        keyframes=keyframes,
        motion_vectors=np.full((n_i * n_p, 2, grid, grid), mv_value, np.float32),
        intra_masks=np.full((n_i * n_p, grid, grid), intra, bool),
        residuals=np.full((n_i * n_p, 3, res, res), residual_value, np.float32),
        timestamps=np.arange(len(types), dtype=np.float64),
    )


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def check_video_outputs(vp, out, k):
    """Shapes, dtypes, layout and value ranges of a single-video output."""
    (types,), (times,) = out["video_frame_types"], out["video_timestamps"]
    n_i, n_p = types.count("I"), types.count("P")
    assert types == expected_layout(len(types), 8, k)
    assert len(types) >= 8 and len(times) == len(types) and all(b > a for a, b in zip(times, times[1:]))
    pv, mv, res = out["pixel_values_videos"], out["delta_motion_vectors"], out["delta_residuals"]
    assert pv.shape == (n_i, 3, 32, 32) and pv.dtype == torch.float32
    assert mv.shape == (n_p, 3, 4, 4) and mv.dtype == torch.float32
    assert res.shape == (n_p, 3, 16, 16) and res.dtype == torch.float32
    assert pv.min() >= -1.0 and pv.max() <= 1.0 and pv.std() > 0.05
    if n_p:
        assert mv[:, :2].abs().max() <= vp.mv_clip
        assert set(mv[:, 2].unique().tolist()) <= {0.0, 1.0}
        assert torch.isfinite(res).all() and res.abs().max() <= 255 / 255 / vp.residual_std + 1e-4
    assert "video_compression_mask" not in out


def test_real_video(media_dir):
    vp = build_tiny_video_processor(keyframes_per_gop=2)
    check_video_outputs(vp, vp(str(media_dir / "vid_h264.mp4"), return_tensors="pt"), k=2)


@pytest.mark.parametrize("k", [1, 2, 8])
def test_synthetic_video_layouts(synthetic_video, k):
    vp = build_tiny_video_processor(fps=4.0, keyframes_per_gop=k)
    out = vp(synthetic_video, return_tensors="pt")
    check_video_outputs(vp, out, k)
    assert len(out["video_frame_types"][0]) == 12  # 3 s at 4 fps


def test_synthetic_video_deterministic_and_moving(synthetic_video):
    vp = build_tiny_video_processor(fps=4.0)
    first, second = vp(synthetic_video), vp(synthetic_video)
    assert_same(first, second)
    types = first["video_frame_types"][0]
    assert types == expected_layout(len(types), 8, 1) and len(types) == 12
    assert first["pixel_values_videos"].shape == (types.count("I"), 3, 32, 32)
    assert first["delta_motion_vectors"][:, :2].abs().sum() > 0  # the scene pans: motion vectors are not all zero


def test_primitives_input_matches_path(synthetic_video):
    vp = build_tiny_video_processor(fps=4.0, keyframes_per_gop=2)
    primitives = extract_primitives(synthetic_video, **vp._codec_kwargs(vp._options({})))
    assert_same(vp(synthetic_video), vp(primitives))
    assert flatten_videos([[synthetic_video], [primitives, str(synthetic_video)]]) == [
        synthetic_video, primitives, str(synthetic_video)]


def test_codec_fps_reaches_the_transcoder(synthetic_video):
    vp = build_tiny_video_processor(fps=4.0, codec_mode="transcode", codec_fps=30.0)
    kwargs = vp._codec_kwargs(vp._options({}))
    assert kwargs["codec_fps"] == 30.0
    fine = vp(synthetic_video)
    assert_same(fine, vp(extract_primitives(synthetic_video, **kwargs)))
    # 4 steps per second: at 30 codec frames per second each Δ window fuses ~7 frames, at 4 only the step itself
    coarse = vp(synthetic_video, codec_fps=4.0)
    assert not torch.equal(fine["delta_residuals"], coarse["delta_residuals"])


def test_keyframes_come_from_the_source_frame_at_the_vision_size(synthetic_video):
    """Keyframes larger than the codec frames are scaled from the source, not the 64 px codec frame upsampled."""
    vp = build_tiny_video_processor(size={"height": 96, "width": 96}, codec_size=64)
    kwargs = vp._codec_kwargs(vp._options({}))
    assert kwargs["keyframe_size"] == (96, 96) and kwargs["size"] == (64, 64)
    out = vp(synthetic_video)
    assert out["pixel_values_videos"].shape[-2:] == (96, 96)
    assert_same(out, vp(extract_primitives(synthetic_video, **kwargs)))
    upsampled = vp(extract_primitives(synthetic_video, **{**kwargs, "keyframe_size": None}))
    assert upsampled["pixel_values_videos"].shape == out["pixel_values_videos"].shape
    assert not torch.equal(upsampled["pixel_values_videos"], out["pixel_values_videos"])
    assert torch.equal(upsampled["delta_residuals"], out["delta_residuals"])


def test_normalisation_is_exact():
    keyframes = np.zeros((2, 64, 64, 3), np.uint8)
    keyframes[1] = 255
    prim = fake_primitives(keyframes, mv_value=30.0, residual_value=-51.0, intra=True)
    vp = build_tiny_video_processor(mv_normalizer=20.0, mv_clip=1.0, residual_std=0.2)
    out = vp(prim)
    assert torch.allclose(out["pixel_values_videos"][0], torch.full((3, 32, 32), -1.0))
    assert torch.allclose(out["pixel_values_videos"][1], torch.full((3, 32, 32), 1.0))
    mv = out["delta_motion_vectors"]
    assert torch.allclose(mv[:, :2], torch.full_like(mv[:, :2], 1.0))  # 30 / 20 = 1.5, clipped to 1.0
    assert torch.equal(mv[:, 2], torch.ones_like(mv[:, 2]))
    assert torch.allclose(out["delta_residuals"], torch.full_like(out["delta_residuals"], -51.0 / 255 / 0.2))
    unclipped = build_tiny_video_processor()(fake_primitives(keyframes, mv_value=-30.0))["delta_motion_vectors"]
    assert torch.allclose(unclipped[:, :2], torch.full_like(unclipped[:, :2], -1.5))
    assert torch.equal(unclipped[:, 2], torch.zeros_like(unclipped[:, 2]))


def test_dense_layout_has_empty_delta_tensors():
    prim = fake_primitives(np.zeros((3, 64, 64, 3), np.uint8), n_p=0)
    out = build_tiny_video_processor()(prim)
    assert out["delta_motion_vectors"].shape == (0, 3, 4, 4)
    assert out["delta_residuals"].shape == (0, 3, 16, 16)


def test_token_compression_mask():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # already at the vision size: no resize blur
    changed = base.copy()
    changed[:8, 24:] = 255 - changed[:8, 24:]  # top-right 8x8 pixels = pooled token (0, 3) of 4x4
    keyframes = np.stack([base, base, changed])
    out = build_tiny_video_processor(use_token_compression=True)(fake_primitives(keyframes))
    mask = out["video_compression_mask"].view(3, TOKENS)
    assert mask.dtype == torch.bool
    assert mask[0].all()  # first keyframe kept whole
    assert mask[1].tolist() == [True] + [False] * 15  # static frame: at least one token kept
    expected = torch.zeros(TOKENS, dtype=torch.bool)
    expected[3] = True
    assert torch.equal(mask[2], expected)
    loose = build_tiny_video_processor(use_token_compression=True, compression_threshold=1e9)(fake_primitives(keyframes))
    assert loose["video_compression_mask"].view(3, TOKENS).sum(1).tolist() == [16, 1, 1]


def test_batch_concatenates_in_order(synthetic_video, media_dir):
    vp = build_tiny_video_processor(fps=4.0, max_steps=10)
    real = media_dir / "vid_mpeg4_part2.mp4"
    one, two = vp(synthetic_video), vp(real)
    both = vp([[synthetic_video], [real]])
    assert both["video_frame_types"] == one["video_frame_types"] + two["video_frame_types"]
    assert both["video_timestamps"] == one["video_timestamps"] + two["video_timestamps"]
    for key in ("pixel_values_videos", "delta_motion_vectors", "delta_residuals"):
        assert torch.equal(both[key], torch.cat([one[key], two[key]]))
    assert len(two["video_frame_types"][0]) == 10  # max_steps caps long videos


def test_threads_match_sequential(synthetic_video):
    vp = build_tiny_video_processor(fps=4.0, use_token_compression=True)
    knobs = [{"keyframes_per_gop": k} for k in (1, 2, 4, 8)]
    sequential = [vp(synthetic_video, **kw) for kw in knobs]
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = vp(synthetic_video, **knobs[i])
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for got, want in zip(results, sequential):
        assert_same(got, want)
    assert vp.keyframes_per_gop == 1  # per-call kwargs never touch the instance


def test_save_load_keeps_knobs(tmp_path):
    vp = build_tiny_video_processor(keyframes_per_gop=4, max_steps=None, mv_clip=2.5, use_token_compression=True,
                                    codec_fps=7.5)
    vp.save_pretrained(tmp_path)
    loaded = CoPEVideoProcessor.from_pretrained(tmp_path)
    for key in ("keyframes_per_gop", "max_steps", "mv_clip", "use_token_compression", "codec_size", "patch_size",
                "pooling", "residual_std", "mv_normalizer", "gop_size", "fps", "codec_fps"):
        assert getattr(loaded, key) == getattr(vp, key), key
    assert loaded.max_steps is None
    assert dict(loaded.size) == TINY_VIDEO_PROCESSOR["size"]
    assert loaded.tokens_per_keyframe() == TOKENS
    assert CoPEVideoProcessor().keyframe_token_grid() == 14  # paper: 384 / 14 = 27 patches -> 14 pooled


def test_bad_inputs():
    vp = build_tiny_video_processor()
    with pytest.raises(TypeError, match="paths, MP4 bytes, CodecPrimitives or decoded frames"):
        vp({"video": "clip.mp4"})  # decoded frames are accepted now (tests/test_processing_frames.py)
    with pytest.raises(TypeError, match="unexpected keyword"):
        vp(fake_primitives(np.zeros((1, 64, 64, 3))), not_a_knob=1)
    with pytest.raises(ValueError, match="share the codec size"):
        vp([fake_primitives(np.zeros((1, 64, 64, 3))), fake_primitives(np.zeros((1, 64, 64, 3)), grid=8)])
    broken = fake_primitives(np.zeros((2, 64, 64, 3)))
    broken.keyframes = broken.keyframes[:1]
    with pytest.raises(ValueError, match="counts disagree"):
        vp(broken)
