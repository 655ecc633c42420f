"""The codec layer against crafted inputs (issue 16): caps that hold mid-stream (D1), local paths that stay local
(D2), demuxers that read other files refused (D3), the decode budget (D6), tiny frames (D7), non-finite knobs
(D8), and FIFOs/devices/bytes paths/animated WebP (D10). Every input is generated here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from _hostile_videos import (
    LoopbackCounter,
    fifo,
    protocol_like_path,
    write_animated_webp,
    write_ffconcat,
    write_playlist,
    write_resolution_switch,
)
from _video_factory import render_video, textured_scene
from transformers_cope import extract_primitives, read_motion_vectors
from transformers_cope.codec import DecodeLimits, probe_video
from transformers_cope.codec_types import VideoInfo
from transformers_cope.errors import NotAVideoError, UnsupportedVideoError, VideoTooLargeError

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    return render_video(folder / "clip.mp4", textured_scene(height=64, width=96, num_frames=20, pan=(1.0, 0.0),
                                                            seed=3), fps=10, gop_size=10, preset="veryfast")


@pytest.fixture(scope="module")
def other_clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("other")
    return render_video(folder / "other.mp4", textured_scene(height=48, width=48, num_frames=6, seed=4), fps=6,
                        codec="mpeg4")


# ------------------------------------------------------------------------------------------- D1 mid-stream switch
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".h264"])
def test_resolution_switch_is_checked_on_every_size_change(tmp_path, suffix):
    path = write_resolution_switch(tmp_path / f"switch{suffix}", sizes=((64, 64), (160, 96)), frames=(10, 4))
    assert probe_video(path).width == 64  # the header only knows the first size
    with pytest.raises(VideoTooLargeError, match=r"frame 10\b.*160x96.*max_pixels=6400"):
        list(read_motion_vectors(path, max_pixels=6400))
    with pytest.raises(VideoTooLargeError, match=r"frame 10\b.*160x96"):
        extract_primitives(path, fps=25, max_pixels=6400)
    # a switch within the cap still decodes every frame
    assert len(list(read_motion_vectors(path, max_pixels=160 * 96))) == 14
    assert extract_primitives(path, fps=25, size=64).num_steps == 14


def test_ffmpeg_refuses_the_allocation_where_no_parameter_set_is_parsed(tmp_path, monkeypatch):
    """Without the SPS pre-check (as for codecs whose parameter sets are not parsed here), FFmpeg's own
    max_pixels refuses the frame before allocating it, and the failure is still a VideoTooLargeError."""
    from transformers_cope import codec_probe

    path = write_resolution_switch(tmp_path / "switch.mkv", sizes=((64, 64), (640, 480)), frames=(10, 2))
    monkeypatch.setattr(codec_probe, "_h264_packet_sps_sizes", lambda data, length_size: [])
    # FFmpeg's backstop is 2 x cap + 64 Ki pixels = 73728 < 640x480
    with pytest.raises(VideoTooLargeError, match=r"frame 10: .*640x480.*decoder refused"):
        list(read_motion_vectors(path, max_pixels=4096))
    small = write_resolution_switch(tmp_path / "small.mkv", sizes=((64, 64), (160, 96)), frames=(10, 2))
    with pytest.raises(VideoTooLargeError, match=r"frame 10: decoded frame size 160x96"):  # below the backstop
        list(read_motion_vectors(small, max_pixels=4096))


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_switch_above_default_cap_peaks_low(tmp_path, suffix):
    """64x64 switching to 4352x4352 (above the default 4096x4096): typed error, and the child's peak RSS stays
    near its baseline (the decoder never allocates a 4352x4352 frame)."""
    path = write_resolution_switch(tmp_path / f"big{suffix}", sizes=((64, 64), (4352, 4352)), frames=(10, 1))
    code = textwrap.dedent(f"""
        import resource, sys
        import transformers_cope
        from transformers_cope.errors import VideoTooLargeError
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for run in (lambda: transformers_cope.extract_primitives({str(path)!r}, fps=25),
                    lambda: list(transformers_cope.read_motion_vectors({str(path)!r}))):
            try:
                run()
                sys.exit("no error")
            except VideoTooLargeError as e:
                assert "4352x4352" in str(e), e
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
        """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split()[-1]) < 100  # MB above the interpreter's baseline (one 4352^2 frame: 27 MB+)


# ------------------------------------------------------------------------------------------- D2 local means local
def test_protocol_like_relative_path_is_read_locally_with_zero_requests(tmp_path, clip, other_clip, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with LoopbackCounter(other_clip.read_bytes()) as server:
        rel = protocol_like_path(tmp_path, "http", server.host, content=clip.read_bytes())
        assert rel.startswith("http:/127.0.0.1:")
        info = probe_video(rel)
        assert (info.codec, info.width, info.height) == ("h264", 96, 64)  # the local file, not the served mpeg4
        assert extract_primitives(rel, size=None, fps=5).frame_size == (64, 96)
        assert server.count == 0
        # plain URLs: refused by default, opened with the explicit opt-in
        with pytest.raises(UnsupportedVideoError, match="allow_network=True"):
            probe_video(f"http://{server.host}/x.mp4")
        assert server.count == 0
        assert probe_video(f"http://{server.host}/x.mp4", allow_network=True).codec == "mpeg4"
        assert server.count >= 1


def test_protocol_strings_are_never_handed_to_ffmpeg(tmp_path, clip, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("concat:a.mp4|b.mp4", "subfile:whatever.mp4", "pipe:0", "data:video/mp4;base64,AAAA"):
        with pytest.raises(UnsupportedVideoError, match="local files only"):
            probe_video(name)
    literal = "concat:clip.mp4|clip.mp4"  # a local file really named so is just that file
    Path(literal).write_bytes(clip.read_bytes())
    assert probe_video(literal).width == 96


# ------------------------------------------------------------------------------------------- D3 referencing demuxers
@pytest.mark.parametrize("name", ["list.ffconcat", "list.mp4", "list.txt"])
def test_ffconcat_lists_are_refused(tmp_path, clip, name):
    (tmp_path / "sibling.mp4").write_bytes(clip.read_bytes())
    path = write_ffconcat(tmp_path / name, ["sibling.mp4"])
    assert path.stat().st_size < 64
    for call in (probe_video, extract_primitives, lambda p: list(read_motion_vectors(p))):
        with pytest.raises(UnsupportedVideoError, match="ffconcat"):
            call(path)
    with pytest.raises(UnsupportedVideoError, match="ffconcat"):
        extract_primitives(path.read_bytes())


def test_playlists_are_refused_without_a_request(tmp_path):
    with LoopbackCounter(b"x") as server:
        path = write_playlist(tmp_path / "live.mp4", f"http://{server.host}/segment.ts")
        with pytest.raises(UnsupportedVideoError, match="playlist"):
            extract_primitives(path)
        assert server.count == 0


def test_the_demuxer_allow_list_holds_without_the_text_sniffing(tmp_path, clip, monkeypatch):
    """Defence in depth: with the first-bytes check disabled, FFmpeg's format_whitelist still refuses concat."""
    from transformers_cope import codec_probe

    (tmp_path / "sibling.mp4").write_bytes(clip.read_bytes())
    path = write_ffconcat(tmp_path / "list.mp4", ["sibling.mp4"])
    monkeypatch.setattr(codec_probe, "_referencing_kind", lambda head: None)
    with pytest.raises(UnsupportedVideoError, match="refused"):
        probe_video(path)
    assert "concat" not in codec_probe._format_whitelist().split(",")
    assert "mov,mp4,m4a,3gp,3g2,mj2" in codec_probe._format_whitelist().split(",") or \
        "mov" in codec_probe._format_whitelist()


# ------------------------------------------------------------------------------------------- D6 decode budget
def _info(frames: int, width: int, height: int, fps: float) -> VideoInfo:
    return VideoInfo(codec="h264", width=width, height=height, fps=fps, num_packets=frames, first_time=0.0,
                     last_time=(frames - 1) / fps, duration=frames / fps, keyframe_times=np.zeros(1),
                     reordered=False, ref_frames=1, pix_fmt="yuv420p", truncated=None)


def test_default_budget_passes_an_hour_of_1080p_and_refuses_4096_square():
    from transformers_cope.codec_probe import _check_budget

    for fps in (30, 60):
        _check_budget("hour.mp4", _info(3600 * fps, 1920, 1080, fps), DecodeLimits())  # passes
    _check_budget("dci4k.mp4", _info(300, 4096, 2160, 30), DecodeLimits())  # passes
    with pytest.raises(VideoTooLargeError, match="max_pixel_rate"):
        _check_budget("square.mp4", _info(250, 4096, 4096, 25), DecodeLimits())
    with pytest.raises(VideoTooLargeError, match="max_decoded_pixels"):  # timestamps stretched to dodge the rate
        _check_budget("slow.mp4", _info(40_000, 4096, 4096, 1), DecodeLimits())


@pytest.mark.slow
def test_a_4096_square_h264_file_is_refused_before_decoding(tmp_path):
    path = write_resolution_switch(tmp_path / "square.mp4", sizes=((4096, 4096),), frames=(3,))
    with pytest.raises(VideoTooLargeError, match="max_pixel_rate"):
        extract_primitives(path)


def test_budget_knobs(clip):
    with pytest.raises(VideoTooLargeError, match="max_pixel_rate"):
        extract_primitives(clip, max_pixel_rate=10_000)
    with pytest.raises(VideoTooLargeError, match="max_decoded_pixels"):
        extract_primitives(clip, max_decoded_pixels=96 * 64 * 5)
    with pytest.raises(VideoTooLargeError, match="max_decode_seconds"):
        extract_primitives(clip, max_decode_seconds=1e-9)
    with pytest.raises(VideoTooLargeError, match="max_decode_seconds"):
        list(read_motion_vectors(clip, limits=DecodeLimits(max_decode_seconds=1e-9)))
    assert extract_primitives(clip, max_decode_seconds=600).num_steps == 2


# ------------------------------------------------------------------------------------------- D7 tiny frames
@pytest.mark.parametrize("side", [1, 2])
def test_tiny_video_at_source_size_is_a_typed_error(tmp_path, side):
    path = tmp_path / f"tiny{side}.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=5)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv444p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((side, side, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame.reformat(format="yuv444p")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(UnsupportedVideoError, match=rf"{side}x{side} is smaller than mv_block=16"):
        extract_primitives(path, size=None)
    assert extract_primitives(path, size=(32, 32), fps=5).frame_size == (32, 32)


# ------------------------------------------------------------------------------------------- D8 numeric knobs
@pytest.mark.parametrize("kwargs", [
    {"fps": float("nan")}, {"fps": float("inf")}, {"fps": 1e300}, {"fps": 1e9}, {"fps": -1}, {"fps": 0},
    {"codec_fps": float("nan")}, {"codec_fps": 1e300}, {"codec_fps": float("-inf")},
    {"residual_scale": float("nan")}, {"mv_block": 0}, {"mv_block": 2.5}, {"max_steps": 0},
    {"max_steps": float("inf")}, {"gop_size": float("nan")}, {"keyframes_per_gop": 0}, {"crf": float("nan")},
    {"max_pixels": 0}, {"max_pixel_rate": float("nan")}, {"max_decode_seconds": -1},
])
def test_non_finite_or_out_of_range_knobs_are_one_line_value_errors(clip, kwargs):
    with pytest.raises(ValueError) as err:
        extract_primitives(clip, **kwargs)
    assert type(err.value) is ValueError and "\n" not in str(err.value)
    assert next(iter(kwargs)) in str(err.value)


def test_a_bool_is_not_a_number(clip):
    with pytest.raises(TypeError, match="fps must be a number"):
        extract_primitives(clip, fps=True)


# ------------------------------------------------------------------------------------------- D10 odd inputs
def test_fifo_is_not_a_regular_file_and_does_not_block(tmp_path):
    path = fifo(tmp_path / "pipe.mp4")
    result = {}

    def run():
        try:
            probe_video(path)
        except Exception as e:  # noqa: BLE001 - inspected below
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "opening a FIFO blocked"
    assert isinstance(result["error"], NotAVideoError) and "not a regular file" in str(result["error"])


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_are_not_regular_files(device):
    with pytest.raises(NotAVideoError, match="not a regular file"):
        extract_primitives(device)


def test_bytes_that_look_like_a_path_are_refused(clip):
    with pytest.raises(NotAVideoError, match="look like a file path.*str or os.PathLike"):
        extract_primitives(os.fsencode(str(clip)))
    assert extract_primitives(clip.read_bytes(), fps=5).num_steps > 0  # real content as bytes still works


def test_animated_webp_is_unsupported(tmp_path):
    path = write_animated_webp(tmp_path / "anim.webp")
    with pytest.raises(UnsupportedVideoError, match="animated WebP"):
        extract_primitives(path)
