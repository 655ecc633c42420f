"""Live sources: GOPs from a file another thread is still writing (MPEG-TS, fragmented MP4), from demuxed packets
and from decoded frames; no error and no hang (every wait is bounded by a timeout)."""

from __future__ import annotations

import io
import threading
import time

import av
import numpy as np
import pytest

from _video_factory import write_video
from test_codec_stream import FIELDS
from transformers_cope import iter_live_primitives, iter_primitives
from transformers_cope.data.render import iter_frames, textured_scene

LAYOUT = dict(fps=4.0, gop_size=4, size=(64, 96))


def encoded(fmt: str, options: dict | None = None, frames: int = 150) -> bytes:
    """5 s of a panning scene, H.264 I/P (keyframe every 30 frames), muxed as `fmt` in memory."""
    scene = textured_scene(height=96, width=128, num_frames=frames, pan=(1.5, 0.5), sprite_velocity=(-2.0, 1.0))
    return write_video(io.BytesIO(), scene, fps=30, gop_size=30, format=fmt, container_options=options).getvalue()


def assert_gops_equal(a, b) -> None:
    assert (a.index, a.first_step, a.frame_types, a.frame_size) == (b.index, b.first_step, b.frame_types, b.frame_size)
    for name in FIELDS[:-1]:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("fmt, options", [("mpegts", None), ("mp4", {"movflags": "frag_keyframe+empty_moov"})])
def test_growing_file_written_by_another_thread(tmp_path, fmt, options):
    """The writer writes a third of the file, then waits until the reader has a GOP (so GOPs really come out while
    the file grows), then writes the rest and signals the end. The GOPs equal those of the finished file."""
    data = encoded(fmt, options)
    path = tmp_path / f"growing.{fmt}"
    first_gop, finished, errors = threading.Event(), threading.Event(), []

    def writer():
        try:
            with open(path, "wb") as fh:
                third = len(data) // 3
                for i in range(0, third, 4096):
                    fh.write(data[i:min(i + 4096, third)])
                    fh.flush()
                    time.sleep(0.005)
                first_gop.wait(timeout=60)
                for i in range(third, len(data), 4096):
                    fh.write(data[i:i + 4096])
                    fh.flush()
        except BaseException as e:  # reported by the test thread
            errors.append(e)
        finally:
            finished.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    gops = []
    for gop in iter_live_primitives(path, finished=finished, idle_timeout=30, **LAYOUT):
        if not gops:
            assert not finished.is_set(), "the first GOP came only after the whole file was written"
            first_gop.set()
        gops.append(gop)
    thread.join(timeout=60)
    assert not errors and not thread.is_alive()
    assert [g.index for g in gops] == list(range(len(gops))) and len(gops) >= 5
    assert gops[-1].duration == pytest.approx(gops[-1].timestamps[-1] - gops[0].timestamps[0] + 0.25)
    # the finished file read as a file: the same GOPs
    whole = list(iter_primitives(path, mode="transcode", num_workers=1, **LAYOUT))
    assert len(gops) == len(whole)
    for live, done in zip(gops, whole):
        assert_gops_equal(live, done)


def test_a_stalled_writer_ends_the_stream_after_idle_timeout(tmp_path):
    data = encoded("mpegts")
    path = tmp_path / "stalled.ts"
    path.write_bytes(data[: len(data) // 2])  # and nothing more, and no end signal
    start = time.monotonic()
    gops = list(iter_live_primitives(path, idle_timeout=0.5, **LAYOUT))
    assert time.monotonic() - start < 30
    assert len(gops) >= 1 and all(g.frame_types[0] == "I" for g in gops)


def test_nothing_arrives(tmp_path):
    from transformers_cope import NotAVideoError

    with pytest.raises(NotAVideoError, match="no data arrived"):
        list(iter_live_primitives(tmp_path / "never_written.ts", idle_timeout=0.3, **LAYOUT))


def test_byte_chunks_and_demuxed_packets(media_dir):
    data = encoded("mpegts")
    from_chunks = list(iter_live_primitives((data[i:i + 1000] for i in range(0, len(data), 1000)), **LAYOUT))
    assert len(from_chunks) >= 5
    # packets demuxed elsewhere (city_cc0.mpg: MPEG-2 I/P): complete GOPs equal those of the file
    with av.open(str(media_dir / "city_cc0.mpg")) as container:
        from_packets = list(iter_live_primitives(container.demux(container.streams.video[0]), **LAYOUT))
    whole = list(iter_primitives(media_dir / "city_cc0.mpg", mode="transcode", num_workers=1, **LAYOUT))
    assert len(from_packets) == len(whole)
    for live, done in zip(from_packets, whole):
        assert_gops_equal(live, done)


def test_decoded_frames_are_encoded_in_memory():
    """numpy RGB frames of a pan of +1.5 px/frame (x) at 30 frames/s: the Δ steps (every 7.5 frames) see it, in
    96/128 of the pixels."""
    scene = textured_scene(height=96, width=128, num_frames=60, pan=(1.5, 0.0))
    gops = list(iter_live_primitives(iter_frames(scene), frame_rate=30.0, **LAYOUT))
    assert [g.frame_types for g in gops] == ["IPPP", "IPPP"]
    mv = np.concatenate([g.motion_vectors for g in gops])
    valid = ~np.concatenate([g.intra_masks for g in gops])
    assert np.median(mv[:, 0][valid]) == pytest.approx(1.5 * 7.5 * 96 / 128, rel=0.2)
    with pytest.raises(TypeError, match="RGB uint8"):
        list(iter_live_primitives([np.zeros((8, 8), np.float32)], **LAYOUT))
