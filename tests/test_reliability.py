"""Reliability: damaged inputs (fuzzing), absurd declared sizes, memory on long videos, concurrency, safe loading.

Why: the processor runs unattended over user files in DataLoader workers and servers; it must end every input in
a valid result or a typed VideoDecodeError, bound its memory, and behave the same from threads and workers.
Bad inputs with a known shape (empty, text, cut mp4, ...) are covered one by one in test_codec_errors.py; this file
covers what a seeded random search finds and the process-level properties (RSS, time, threads, workers).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from fuzzing import check_features, make_seed_videos, run_fuzz
from transformers_cope.errors import VideoDecodeError, VideoTooLargeError
from transformers_cope.tiny import build_tiny_video_processor

REPO = Path(__file__).resolve().parents[1]
SMALL = {"codec_size": 64, "fps": 4.0, "gop_size": 4, "max_steps": 6}


def _run_python(code: str, timeout: float = 300) -> dict:
    """Run `code` in a fresh interpreter (one torch thread) and return the JSON it prints on its last line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO), env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------ fuzzing


@pytest.fixture(scope="module")
def seed_videos(tmp_path_factory, media_dir):
    return make_seed_videos(media_dir, tmp_path_factory.mktemp("fuzz_seeds"), seconds=1.0)


def test_fuzz_small(seed_videos, tmp_path):
    """Six mutated videos per seed through one persistent worker: no crash, no hang, every result valid (CI version
    of benchmarks/fuzz_videos.py). Bounded by count, not by a time budget: the worker's start (the package import)
    took ~28 s of a 30 s budget on a loaded machine, so a budget made the number of cases, and the test, depend on
    the load."""
    cases = 6 * len(seed_videos)
    report = run_fuzz(seed_videos, tmp_path / "work", cases=cases, seed=1234, timeout=30.0,
                      keep_failures=tmp_path / "failures")
    print(report.summary())
    assert report.cases == cases, report.summary()
    assert report.ok, (report.summary(), report.failures)
    assert report.valid >= len(seed_videos)  # at least the unmutated seeds
    assert report.typed > 0


@pytest.mark.slow
def test_fuzz_detects_crash_and_hang(tmp_path):
    """The harness itself: a worker that dies by a signal mid-case counts as a crash, one that stalls as a hang,
    and the worker is restarted for the next case (slow: three interpreter starts)."""
    from fuzzing import FuzzWorker

    good = make_seed_videos(None, tmp_path)[0]
    worker = FuzzWorker(SMALL)
    try:
        assert worker.run(good, timeout=60)["status"] == "valid"
        crash = worker.run(good, timeout=60, selftest="crash")
        assert crash["status"] == "crash" and "SIGSEGV" in crash["error"], crash
        assert worker.run(good, timeout=3, selftest="hang")["status"] == "hang"
        assert worker.run(good, timeout=60)["status"] == "valid" and worker.restarts == 2
    finally:
        worker.close()


# ------------------------------------------------------------------------------------------- absurd declared size


def _write_mpeg2(path: Path, width: int = 64, height: int = 64, frames: int = 6) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg2video", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            rgb = np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _declare_mpeg2_size(path: Path, width: int, height: int) -> Path:
    """Rewrite every MPEG-2 sequence header (12-bit width/height) and sequence extension (2 high bits each) so the
    stream declares width x height (up to 16383) while its slices stay tiny: what a hostile or broken file looks
    like to FFmpeg, which reports the declared size before decoding anything."""
    data = bytearray(path.read_bytes())
    i = data.find(b"\x00\x00\x01\xb3")
    assert i >= 0
    while i >= 0:
        data[i + 4:i + 7] = (((width & 0xFFF) << 12) | (height & 0xFFF)).to_bytes(3, "big")
        i = data.find(b"\x00\x00\x01\xb3", i + 4)
    i = data.find(b"\x00\x00\x01\xb5")
    while i >= 0:
        if data[i + 4] >> 4 == 1:  # sequence_extension: id(4) profile_level(8) progressive(1) chroma(2) h_ext(2) v_ext(2)
            bits = int.from_bytes(data[i + 4:i + 8], "big")
            shift = 32 - 4 - 8 - 1 - 2 - 2
            bits &= ~(0xF << (shift - 2))
            bits |= ((width >> 12) & 3) << shift | ((height >> 12) & 3) << (shift - 2)
            data[i + 4:i + 8] = bits.to_bytes(4, "big")
        i = data.find(b"\x00\x00\x01\xb5", i + 4)
    path.write_bytes(bytes(data))
    return path


def _declare_mp4_size(path: Path, width: int, height: int) -> Path:
    """Patch the avc1 sample entry (16-bit width/height) of an H.264 mp4 to declare width x height."""
    data = bytearray(path.read_bytes())
    i = data.find(b"avc1")
    assert i >= 0
    data[i + 28:i + 30] = width.to_bytes(2, "big")
    data[i + 30:i + 32] = height.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def test_absurd_declared_size_fails_fast(tmp_path):
    """MPEG-2 streams (program stream and elementary stream) whose headers declare 12000x12000 (the largest size
    these headers allow that FFmpeg still accepts; 30000x30000 YUV4MPEG is in test_codec_errors.py) are refused
    from the header in well under a second, in a fresh process whose peak RSS barely moves; a caller who raises
    max_pixels is told the frames do not decode instead."""
    for suffix in (".mpg", ".m2v"):
        _declare_mpeg2_size(_write_mpeg2(tmp_path / f"huge{suffix}"), 12000, 12000)
    _declare_mpeg2_size(_write_mpeg2(tmp_path / "big.mpg"), 4608, 4608)  # 21 Mpx: just over the 4096^2 default
    result = _run_python(f"""
        import json, resource, time, torch
        torch.set_num_threads(1)
        from transformers_cope.tiny import build_tiny_video_processor
        from transformers_cope.errors import VideoTooLargeError
        processor = build_tiny_video_processor(codec_size=64, fps=4.0, max_steps=6)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = {{}}
        for name in ("huge.mpg", "huge.m2v", "big.mpg"):
            t = time.perf_counter()
            try:
                processor(videos=[{str(tmp_path)!r} + "/" + name], return_tensors="pt")
                out[name] = ["no error", 0.0]
            except VideoTooLargeError as e:
                out[name] = [str(e), time.perf_counter() - t]
        out["rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        print(json.dumps(out))
    """)
    for name in ("huge.mpg", "huge.m2v", "big.mpg"):
        message, seconds = result[name]
        assert "max_pixels" in message, (name, message)
        assert seconds < 1.0, (name, seconds)
    assert "12000x12000" in result["huge.mpg"][0] and "4608x4608" in result["big.mpg"][0]
    assert result["rss_growth_mb"] < 64, result


def test_declared_size_in_mp4_header_is_not_trusted(tmp_path):
    """An mp4 whose sample entry claims 30000x30000 around a 64x64 H.264 stream: FFmpeg takes the size from the
    stream's SPS, so the file processes normally (no giant allocation) with a valid result."""
    from transformers_cope.data import make_textured_video

    path = _declare_mp4_size(make_textured_video(tmp_path / "liar.mp4", height=64, width=64, num_frames=12,
                                                 pan=(1.0, 0.0)), 30000, 30000)
    out = build_tiny_video_processor(**SMALL)(videos=[str(path)], return_tensors="pt")
    check_features(out)


def test_caps_are_configurable_through_the_processor(tmp_path):
    """max_steps samples uniformly (documented), max_pixels/max_frames refuse with VideoTooLargeError naming the
    cap; the codec layer's caps are reachable from the processor via `max_pixels` / `max_frames`."""
    from transformers_cope.data import make_textured_video

    path = make_textured_video(tmp_path / "v.mp4", height=64, width=96, num_frames=40, pan=(1.0, 0.0), fps=10)
    processor = build_tiny_video_processor(**SMALL)
    out = processor(videos=[str(path)], return_tensors="pt", fps=10.0, max_steps=5)
    assert len(out["video_frame_types"][0]) == 5
    ts = out["video_timestamps"][0]
    assert ts[0] == 0.0 and ts[-1] == pytest.approx(3.9) and np.allclose(np.diff(ts), np.diff(ts)[0], atol=0.11)
    with pytest.raises(VideoTooLargeError, match="max_pixels=1000"):
        processor(videos=[str(path)], max_pixels=1000)
    with pytest.raises(VideoTooLargeError, match="max_frames=10"):
        processor(videos=[str(path)], max_frames=10)
    with pytest.raises(VideoTooLargeError, match="max_frames=10"):
        build_tiny_video_processor(**SMALL, max_frames=10)(videos=[str(path)])


def _write_days_apart(path: Path, gap_ticks: int = 2 ** 22, frames: int = 24) -> Path:
    """A 24-frame Matroska H.264 file whose frames are 2^22 / 24 s (~2 days) apart: a few KB of video whose
    timestamps span 46 days (fuzz case 568 of seed 20240611 got there by damaging an mp4's moov box)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 24)
        texture = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(texture, i, axis=1), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i * gap_ticks, Fraction(1, 24)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_damaged_timestamps_spanning_days_do_not_hang(tmp_path):
    """Regression (found by benchmarks/fuzz_videos.py): a window of days between two steps made the transcoder
    plan codec_fps targets per second of it (a hang, then memory); now the work is bounded by the packets, and
    without max_steps the step grid is refused with VideoTooLargeError instead of materialising millions of steps."""
    from transformers_cope.codec import extract_primitives, probe_video
    path = _write_days_apart(tmp_path / "days.mkv")
    assert probe_video(path).duration > 40 * 86400
    t = time.perf_counter()
    try:
        check_features(build_tiny_video_processor(**SMALL)(videos=[str(path)], return_tensors="pt"))
    except VideoDecodeError:
        pass
    with pytest.raises(VideoTooLargeError, match="set max_steps"):
        extract_primitives(path, fps=4.0, size=(64, 64), max_steps=None)
    assert time.perf_counter() - t < 20


# ---------------------------------------------------------------------------------------------- long videos


def test_long_video_memory_is_bounded(tmp_path):
    """1 min vs 6 min of 64x64 video (steps at 1 fps, no step cap), each measured in a fresh process: peak RSS
    grows by a small multiple of the returned arrays (per-step lists are stacked at the end), not with the source
    frames (6 min = 720 decoded frames). benchmarks/long_video_memory.py runs 1/10/60 minutes."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from long_video_memory import measure, write_long_video

    warmup = write_long_video(tmp_path / "warmup.mp4", 10 / 60, seed=1)
    short = measure(write_long_video(tmp_path / "m1.mp4", 1), warmup)
    long = measure(write_long_video(tmp_path / "m6.mp4", 6), warmup)
    print(short, long, sep="\n")
    assert (short["steps"], long["steps"]) == (60, 360)
    extra_output = long["primitives_mb"] + long["output_mb"] - short["primitives_mb"] - short["output_mb"]
    assert long["growth_mb"] - short["growth_mb"] < 4 * extra_output + 16, (short, long)
    assert long["growth_mb"] < 64, long


# ----------------------------------------------------------------------------------------------- concurrency


@pytest.fixture(scope="module")
def small_videos(tmp_path_factory):
    from transformers_cope.data import make_textured_video

    d = tmp_path_factory.mktemp("concurrency")
    return [str(make_textured_video(d / f"v{i}.mp4", height=64, width=96, num_frames=30, pan=(1.0 + i, -0.5 * i),
                                    codec="mpeg4" if i % 2 else "libx264", seed=i, fps=15)) for i in range(4)]


def _same(a, b) -> None:
    assert a["video_frame_types"] == b["video_frame_types"]
    assert a["video_timestamps"] == b["video_timestamps"]
    for key in ("pixel_values_videos", "delta_motion_vectors", "delta_residuals"):
        assert torch.equal(a[key], b[key]), key


class _VideoDataset(torch.utils.data.Dataset):
    def __init__(self, paths, processor):
        self.paths, self.processor = paths, processor

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return dict(self.processor(videos=[self.paths[i]], return_tensors="pt"))


def test_processor_is_thread_safe(small_videos):
    """Eight calls from four threads (different per-call kwargs mixed in) equal the single-threaded results."""
    processor = build_tiny_video_processor(**SMALL)
    calls = [(p, {}) for p in small_videos] + [(p, {"gop_size": 2, "max_steps": 4}) for p in small_videos]
    expected = [processor(videos=[p], return_tensors="pt", **kw) for p, kw in calls]
    results, errors = [None] * len(calls), []

    def work(i):
        try:
            path, kw = calls[i]
            results[i] = processor(videos=[path], return_tensors="pt", **kw)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=lambda j=j: [work(i) for i in range(j, len(calls), 4)]) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for got, want in zip(results, expected):
        _same(got, want)
    assert processor.gop_size == 4 and processor.max_steps == 6  # per-call kwargs never leak into the instance


def test_processor_in_dataloader_workers(small_videos):
    """DataLoader(num_workers=2): same tensors as in the main process, and a typed error raised in a worker
    reaches the caller as a VideoDecodeError."""
    processor = build_tiny_video_processor(**SMALL)
    expected = [_VideoDataset(small_videos, processor)[i] for i in range(len(small_videos))]
    loader = torch.utils.data.DataLoader(_VideoDataset(small_videos, processor), batch_size=None, num_workers=2)
    got = list(loader)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        _same(g, e)
    bad = Path(small_videos[0]).with_name("bad.mp4")
    bad.write_bytes(b"not a video at all" * 10)
    loader = torch.utils.data.DataLoader(_VideoDataset([str(bad)], processor), batch_size=None, num_workers=2)
    with pytest.raises(VideoDecodeError):
        list(loader)


# ---------------------------------------------------------------------------------------------- safe loading


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    from transformers_cope import CoPEVideoLMForConditionalGeneration
    from transformers_cope.tiny import build_tiny_processor, tiny_model_config

    folder = tmp_path_factory.mktemp("tiny_saved")
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval()
    model.save_pretrained(folder)
    build_tiny_processor().save_pretrained(folder)
    return model, folder


def test_pickle_checkpoint_is_refused_unless_asked(saved_tiny, tmp_path):
    """A folder with only pytorch_model.bin: Transformers 5 would unpickle it by default; CoPE-VideoLM refuses with
    a clear message (direct class and Auto class), and loads it with an explicit use_safetensors=False."""
    import shutil

    from transformers import AutoModelForImageTextToText

    from transformers_cope import CoPEVideoLMForConditionalGeneration

    model, folder = saved_tiny
    assert (folder / "model.safetensors").is_file()
    pickled = tmp_path / "pickled"
    shutil.copytree(folder, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    for cls in (CoPEVideoLMForConditionalGeneration, AutoModelForImageTextToText):
        with pytest.raises(OSError, match="refuses pickle checkpoints.*use_safetensors=False"):
            cls.from_pretrained(pickled)
    loaded = CoPEVideoLMForConditionalGeneration.from_pretrained(pickled, use_safetensors=False)
    reference = CoPEVideoLMForConditionalGeneration.from_pretrained(folder)  # safetensors: loads by default
    for (name, a), (_, b) in zip(loaded.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name


def test_remote_code_needs_trust_remote_code(saved_tiny, tmp_path):
    """Without the package installed, the saved folder's model and processor load only with trust_remote_code=True:
    the remote code is never executed implicitly."""
    from isolated_python import run_isolated

    _, folder = saved_tiny
    result = run_isolated(f"""
        import json
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
        out = {{}}
        for name, load in (("config", AutoConfig.from_pretrained), ("model", AutoModelForImageTextToText.from_pretrained),
                           ("processor", AutoProcessor.from_pretrained)):
            try:
                load({str(folder)!r}, trust_remote_code=False)
                out[name] = "loaded"
            except ValueError as e:
                out[name] = str(e)
        print(json.dumps(out))
        """, cwd=tmp_path)
    for name in ("config", "model", "processor"):
        assert "trust_remote_code" in result[name], (name, result[name])
