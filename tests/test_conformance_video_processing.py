"""Transformers' own `VideoProcessingTestMixin` (from the installed release's sdist, see tests/_upstream_tests.py)
run against `CoPEVideoProcessor` with decoded-frame inputs (PIL lists, arrays, tensors)."""

import unittest

import pytest
from _upstream_tests import UpstreamUnavailable, load

from transformers_cope.video_processing_cope import CoPEVideoProcessor

try:
    (common,) = load("test_video_processing_common")
except UpstreamUnavailable as e:
    pytest.skip(f"Transformers' test mixins unavailable: {e}", allow_module_level=True)

SIDE = 32


class CoPEVideoProcessingTester:
    """Random-noise videos of `num_frames` frames; with GOP 8 and one frame per step, each video of at most 8 frames
    has one keyframe, so `pixel_values_videos` (all keyframes of the batch, concatenated) is `(num_videos, 3, S, S)`
    (the layout the mixin checks)."""

    def __init__(self, batch_size=3, num_frames=4, num_channels=3, min_resolution=24, max_resolution=48):
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.num_channels = num_channels
        self.min_resolution = min_resolution
        self.max_resolution = max_resolution

    def prepare_video_processor_dict(self):
        return {
            "size": {"height": SIDE, "width": SIDE},
            "patch_size": 4,
            "pooling": 2,
            "codec_size": 64,
            "do_normalize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "do_convert_rgb": True,
        }

    def expected_output_video_shape(self, videos):
        return [3, SIDE, SIDE]

    def prepare_video_inputs(self, equal_resolution=False, return_tensors="pil"):
        return common.prepare_video_inputs(
            batch_size=self.batch_size,
            num_frames=self.num_frames,
            num_channels=self.num_channels,
            min_resolution=self.min_resolution,
            max_resolution=self.max_resolution,
            equal_resolution=equal_resolution,
            return_tensors=return_tensors,
        )


class CoPEVideoProcessingConformanceTest(common.VideoProcessingTestMixin, unittest.TestCase):
    fast_video_processing_class = CoPEVideoProcessor

    def setUp(self):
        super().setUp()
        self.video_processor_tester = CoPEVideoProcessingTester()

    @property
    def video_processor_dict(self):
        return self.video_processor_tester.prepare_video_processor_dict()

    def test_video_processor_from_dict_with_kwargs(self):
        # Overridden, as SmolVLM's and GLM-4V's video processor tests do: the mixin's dict has `shortest_edge` and
        # `crop_size`; CoPE's keyframes are squares (`size` height == width) and are never cropped.
        video_processor = CoPEVideoProcessor.from_dict(self.video_processor_dict)
        self.assertEqual(dict(video_processor.size), {"height": SIDE, "width": SIDE})
        video_processor = CoPEVideoProcessor.from_dict(self.video_processor_dict, size=42)
        self.assertEqual(dict(video_processor.size), {"height": 42, "width": 42})

    def test_call_sample_frames(self):
        # Overridden, as SmolVLM's and MiniCPM-V 4.6's tests do: the mixin reads sampled frames from axis 1 of a
        # stacked `(videos, frames, ...)` tensor. CoPE samples steps in the codec layer and reports them as
        # `video_frame_types` ("I" keyframe / "P" Δ step per step), so the step layout is what is checked here.
        video_processing = CoPEVideoProcessor(**self.video_processor_dict)
        self.video_processor_tester.num_frames = 8
        videos = self.video_processor_tester.prepare_video_inputs(equal_resolution=False, return_tensors="torch")
        # one frame per step by default; `num_frames` caps the steps (uniform sampling), on one video and a batch
        self.assertEqual(video_processing(videos[0], return_tensors="pt")["video_frame_types"], ["IPPPPPPP"])
        self.assertEqual(video_processing(videos[0], num_frames=3)["video_frame_types"], ["IPP"])
        self.assertEqual(video_processing(videos, num_frames=3)["video_frame_types"], ["IPP"] * len(videos))
        # `fps` samples by time: the frames' own rate comes from `video_metadata` (8 frames at 4 fps = 2 s)
        metadata = [[{"duration": 2.0, "total_num_frames": 8, "fps": 4}]]
        out = video_processing(videos[0], fps=2, video_metadata=metadata)
        self.assertEqual(out["video_frame_types"], ["IPPP"])
        self.assertEqual(out["video_timestamps"], [[0.0, 0.5, 1.0, 1.5]])
        out = video_processing(videos, fps=2, video_metadata=[common.VideoMetadata(fps=4, total_num_frames=8)] * 3)
        self.assertEqual(out["video_frame_types"], ["IPPP"] * len(videos))

    def test_call_numpy_4_channels(self):
        # Overridden: the mixin sets index 1 of the expected shape to 3 channels, reading it as `(frames, C, H, W)`;
        # CoPE's `pixel_values_videos` is `(keyframes, C, H, W)`. Same inputs (RGBA frames, scalar mean/std).
        video_processor = CoPEVideoProcessor(**self.video_processor_dict)
        self.video_processor_tester.num_channels = 4
        videos = self.video_processor_tester.prepare_video_inputs(equal_resolution=False, return_tensors="pil")
        kwargs = {"return_tensors": "pt", "input_data_format": "channels_last", "image_mean": 0.0, "image_std": 1.0}
        self.assertEqual(tuple(video_processor(videos[0], **kwargs)[self.input_name].shape), (1, 3, SIDE, SIDE))
        self.assertEqual(tuple(video_processor(videos, **kwargs)[self.input_name].shape), (3, 3, SIDE, SIDE))
