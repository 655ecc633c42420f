"""Video fuzzing harness shared by tests/test_reliability.py (small, CI) and benchmarks/fuzz_videos.py (large).

Why: users feed the processor whatever files they have. Every damaged input must end in either a valid result or
a typed `VideoDecodeError`; never a segfault, a hang, or a stray exception from deep inside FFmpeg or numpy.

How: seed videos (the real clips cut to their first ~1.5 s, plus synthetic ones) are mutated (bit flips,
truncation, chunk deletion/duplication/zeroing, header damage) by a seeded RNG; case `i` of seed `s` depends only
on (s, i), so any failure can be replayed alone. Each case runs in a persistent worker subprocess (importing torch
costs seconds, so one interpreter serves many cases) that is restarted only when it dies (crash: signal or exit)
or overruns the per-case timeout (hang). An exception that is not a VideoDecodeError is reported as a crash too.

Run a worker by hand: python tests/fuzzing.py --worker '{"codec_size": 64}'  (JSON lines in, JSON lines out).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["SEED_NAMES", "make_seed_videos", "mutate", "FuzzWorker", "FuzzReport", "run_fuzz", "check_features",
           "DEFAULT_PROCESSOR"]

SEED_NAMES = ("vid_h264.mp4", "vid_mpeg4_part2.mp4", "city_cc0.mpg")
# Low-res processor settings: 64 px codec frames, a handful of steps; the decode of the source dominates anyway.
DEFAULT_PROCESSOR = {"codec_size": 64, "fps": 4.0, "gop_size": 4, "max_steps": 6}
MUTATIONS = ("bitflip", "truncate", "delete", "duplicate", "zero", "header")


# ------------------------------------------------------------------------------------------------------ seeds


def _cut_container(src: Path, dst: Path, seconds: float, options: dict | None = None) -> Path:
    """Stream-copy the video packets of the first `seconds` (by decode time) into a new file of the same format."""
    import av

    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        with av.open(str(dst), mode="w", format=inp.format.name.split(",")[0], options=options or {}) as out:
            ost = out.add_stream_from_template(stream)
            for pkt in inp.demux(stream):
                if pkt.dts is None:
                    continue
                if pkt.dts * stream.time_base > seconds:
                    break
                pkt.stream = ost
                out.mux(pkt)
    return dst


def make_seed_videos(media_dir: Path | None, out_dir: Path, *, seconds: float = 1.5) -> list[Path]:
    """The unmutated inputs: the three real clips cut to `seconds` (the mp4s remuxed by stream copy, one with the
    index first, one with it last; the MPEG-PS cut at a byte offset, which is how that format is cut in practice)
    and three synthetic textured videos (H.264 with B-frames, MPEG-4 Part 2, H.264 I/P in Matroska)."""
    from transformers_cope.data import make_textured_video

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = []
    if media_dir is not None and Path(media_dir).is_dir():
        media_dir = Path(media_dir)
        seeds.append(_cut_container(media_dir / "vid_h264.mp4", out_dir / "real_h264.mp4", seconds))
        seeds.append(_cut_container(media_dir / "vid_mpeg4_part2.mp4", out_dir / "real_mpeg4.mp4", seconds,
                                    {"movflags": "+faststart"}))
        import av

        with av.open(str(media_dir / "city_cc0.mpg")) as c:
            dur = float(c.duration or 0) / 1e6 or 7.6
        size = os.path.getsize(media_dir / "city_cc0.mpg")
        with open(media_dir / "city_cc0.mpg", "rb") as fh:
            data = fh.read(int(size * min(1.0, seconds / dur)))
        (out_dir / "real_mpeg2.mpg").write_bytes(data)
        seeds.append(out_dir / "real_mpeg2.mpg")
    seeds.append(make_textured_video(out_dir / "syn_h264_b.mp4", height=96, width=128, num_frames=36,
                                     pan=(1.5, 0.5), sprite_velocity=(-2.0, 1.0), bframes=2, fps=24, seed=1))
    seeds.append(make_textured_video(out_dir / "syn_mpeg4.mp4", height=64, width=96, num_frames=36, pan=(1.0, -1.0),
                                     codec="mpeg4", fps=24, gop_size=12, seed=2))
    seeds.append(make_textured_video(out_dir / "syn_h264.mkv", height=80, width=80, num_frames=30,
                                     pan=(0.0, 2.0), fps=20, gop_size=10, seed=3))
    return seeds


# -------------------------------------------------------------------------------------------------- mutations


def mutate(data: bytes, rng: np.random.Generator, *, max_ops: int = 3) -> tuple[bytes, list[str]]:
    """Apply 1..max_ops random mutations; returns the new bytes and a description of each operation."""
    buf = bytearray(data)
    ops = []
    for _ in range(int(rng.integers(1, max_ops + 1))):
        if len(buf) < 16:
            break
        kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        n = len(buf)
        if kind == "bitflip":
            k = int(rng.integers(1, 64))
            pos = rng.integers(0, n, size=k)
            for p in pos:
                buf[int(p)] ^= 1 << int(rng.integers(8))
            ops.append(f"bitflip x{k}")
        elif kind == "truncate":
            at = int(rng.integers(1, n))
            del buf[at:]
            ops.append(f"truncate@{at}")
        elif kind in ("delete", "duplicate", "zero"):
            length = int(min(n // 2, rng.integers(1, max(2, n // 8))))
            at = int(rng.integers(0, n - length))
            if kind == "delete":
                del buf[at:at + length]
            elif kind == "duplicate":
                buf[at:at] = buf[at:at + length]
            else:
                buf[at:at + length] = bytes(length)
            ops.append(f"{kind}[{at}:+{length}]")
        else:  # header: overwrite bytes inside the index/header with random values (sizes, dims, counts)
            moov = bytes(buf).find(b"moov")
            if moov >= 4 and rng.random() < 0.7:
                start, end = moov - 4, min(n, moov - 4 + max(8, int.from_bytes(buf[moov - 4:moov], "big")))
            else:
                start, end = 0, min(n, 2048)
            k = int(rng.integers(1, 17))
            for p in rng.integers(start, max(start + 1, end), size=k):
                buf[int(p)] = int(rng.integers(256))
            ops.append(f"header x{k} in [{start}:{end}]")
    return bytes(buf), ops


# ----------------------------------------------------------------------------------------------------- checks


def check_features(out) -> tuple[str, int, int]:
    """Validate one processor output for a single video: raises AssertionError with the reason if invalid.
    Returns (frame_types, n_I, n_P)."""
    import torch

    types = out["video_frame_types"]
    assert isinstance(types, list) and len(types) == 1, f"video_frame_types={types!r}"
    types = types[0]
    assert types and set(types) <= {"I", "P"} and types[0] == "I", f"bad frame types {types!r}"
    n_i, n_p = types.count("I"), types.count("P")
    pix, mv, res = out["pixel_values_videos"], out["delta_motion_vectors"], out["delta_residuals"]
    for name, t in (("pixel_values_videos", pix), ("delta_motion_vectors", mv), ("delta_residuals", res)):
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32, f"{name}: {type(t)} {getattr(t, 'dtype', '')}"
        assert t.ndim == 4 and all(s > 0 for s in t.shape[1:]), f"{name}: empty dims {tuple(t.shape)}"
        assert bool(torch.isfinite(t).all()), f"{name}: non-finite values"
    assert pix.shape[0] == n_i and pix.shape[1] == 3, f"pixel_values {tuple(pix.shape)} vs {types!r}"
    assert mv.shape[0] == n_p and mv.shape[1] == 3, f"motion {tuple(mv.shape)} vs {types!r}"
    assert res.shape[0] == n_p and res.shape[1] == 3, f"residuals {tuple(res.shape)} vs {types!r}"
    if n_p:
        intra = mv[:, 2]
        assert bool(((intra == 0) | (intra == 1)).all()), "intra channel not in {0, 1}"
    ts = np.asarray(out["video_timestamps"][0], dtype=np.float64)
    assert ts.shape == (len(types),) and np.isfinite(ts).all(), f"timestamps {ts}"
    # non-decreasing, not strictly: across a gap in the stream two grid steps can pick the same nearest frame
    assert (np.diff(ts) >= 0).all(), f"timestamps decreasing: {ts}"
    return types, n_i, n_p


# ----------------------------------------------------------------------------------------------------- worker


def _worker_main(config: dict) -> None:
    """Serve cases: read {"path": ...} lines, answer one JSON line each."""
    import warnings

    import torch

    torch.set_num_threads(1)
    from transformers_cope.errors import VideoDecodeError
    from transformers_cope.tiny import build_tiny_video_processor

    limit_mb = float(config.pop("memory_limit_mb", 0) or 0)
    processor = build_tiny_video_processor(**config)
    out_stream = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    if limit_mb:
        _start_memory_watchdog(limit_mb, out_stream)
    print(json.dumps({"ready": True}), file=out_stream, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        _reset_peak_rss()
        t0 = time.perf_counter()
        if req.get("selftest") == "crash":  # harness self-test: die by a signal mid-case
            os.kill(os.getpid(), signal.SIGSEGV)
        if req.get("selftest") == "hang":
            time.sleep(3600)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                features = processor(videos=[req["path"]], return_tensors="pt")
            types, n_i, n_p = check_features(features)
            reply = {"status": "valid", "types": types, "warnings": sorted({w.category.__name__ for w in caught})}
        except VideoDecodeError as e:
            reply = {"status": "typed", "error": type(e).__name__, "message": str(e)[:300]}
        except AssertionError as e:
            reply = {"status": "invalid", "error": "AssertionError", "message": str(e)[:300],
                     "traceback": traceback.format_exc()[-2000:]}
        except BaseException as e:  # noqa: BLE001 - exactly what the fuzzer hunts for
            reply = {"status": "untyped", "error": type(e).__name__, "message": str(e)[:300],
                     "traceback": traceback.format_exc()[-2000:]}
        reply["seconds"] = round(time.perf_counter() - t0, 4)
        reply["maxrss_kb"] = _maxrss_kb()
        reply["case_peak_rss_kb"] = _case_peak_rss_kb()
        print(json.dumps(reply), file=out_stream, flush=True)


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so that it measures this case alone (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _case_peak_rss_kb() -> int:
    """Peak RSS since the last reset (the worker's baseline, torch included, plus what the case added)."""
    return _status_kb("VmHWM") or _maxrss_kb()


def _start_memory_watchdog(limit_mb: float, out_stream) -> None:
    """The per-case memory limit: a thread that ends the worker, with a "memory" reply, once its RSS passes
    `limit_mb` (RLIMIT_AS would also count the decoder threads' untouched malloc arenas)."""
    import threading

    def watch():
        while True:
            rss = _status_kb("VmRSS")
            if rss > limit_mb * 1024:
                print(json.dumps({"status": "memory", "error": f"RSS {rss // 1024} MB > {limit_mb:.0f} MB",
                                  "case_peak_rss_kb": rss}), file=out_stream, flush=True)
                os._exit(86)
            time.sleep(0.02)

    threading.Thread(target=watch, name="memory-watchdog", daemon=True).start()


def _maxrss_kb() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class FuzzWorker:
    """A persistent worker subprocess; `run(path, timeout)` returns the reply dict, or a crash/hang record (and
    the worker is restarted on the next call)."""

    def __init__(self, config: dict | None = None, *, start_timeout: float = 120.0, cwd: Path | None = None):
        self.config = dict(DEFAULT_PROCESSOR if config is None else config)
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._started = False
        self._buf = b""

    def _start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker",
                                      json.dumps(self.config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=self.cwd)
        self._buf = b""
        self._eof = False
        self._started = True
        ready = self._read_line(self.start_timeout)
        if ready is None or not json.loads(ready).get("ready"):
            self.close()
            raise RuntimeError("fuzz worker failed to start")

    def _read_line(self, timeout: float) -> bytes | None:
        """One line from the worker's stdout within `timeout`, or None (timeout or EOF)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        try:
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, 65536)
                if not chunk:
                    self._eof = True
                    return None
                self._buf += chunk
        finally:
            sel.close()
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def run(self, path: Path, timeout: float, selftest: str | None = None) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            if self._started:
                self.restarts += 1
            self._start()
        t0 = time.perf_counter()
        try:
            self.proc.stdin.write((json.dumps({"path": str(path), "selftest": selftest}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._read_line(timeout)
        if line is not None:
            return json.loads(line)
        seconds = round(time.perf_counter() - t0, 3)
        if self._eof:  # the worker closed its stdout: it is exiting, collect its status
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:  # still running: hang
            self.close()
            return {"status": "hang", "seconds": seconds}
        code = self.proc.returncode
        what = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return {"status": "crash", "error": what, "seconds": seconds}

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        self.proc = None


# ------------------------------------------------------------------------------------------------------ driver


@dataclass
class FuzzReport:
    seed: int
    cases: int = 0
    valid: int = 0
    typed: int = 0
    crashes: int = 0
    hangs: int = 0
    invalid: int = 0
    memory: int = 0  # cases stopped by the per-case memory limit
    network_requests: int = 0  # requests the loopback server saw (hostile path cases; must stay 0)
    hostile: dict = field(default_factory=dict)  # hostile path kind -> count
    max_case_rss_mb: float = 0.0
    max_case_rss_case: str = ""
    errors: dict = field(default_factory=dict)  # typed error class -> count
    mutations: dict = field(default_factory=dict)  # mutation kind -> count
    failures: list = field(default_factory=list)  # (case, seed file, ops, reply) for crash/hang/invalid/untyped
    seconds: float = 0.0
    max_case_seconds: float = 0.0
    worker_maxrss_mb: float = 0.0
    restarts: int = 0

    @property
    def ok(self) -> bool:
        return self.crashes == 0 and self.hangs == 0 and self.invalid == 0 and self.memory == 0 \
            and self.network_requests == 0

    def summary(self) -> str:
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        muts = ", ".join(f"{k} {v}" for k, v in sorted(self.mutations.items()))
        hostile = ", ".join(f"{k} {v}" for k, v in sorted(self.hostile.items())) or "none"
        return (f"fuzz seed={self.seed}: cases={self.cases} valid={self.valid} typed_errors={self.typed} "
                f"crashes={self.crashes} hangs={self.hangs} invalid_results={self.invalid}\n"
                f"  typed errors: {errs}\n  mutations applied: {muts}\n"
                f"  time {self.seconds:.1f} s (slowest case {self.max_case_seconds:.2f} s), worker peak RSS "
                f"{self.worker_maxrss_mb:.0f} MB, worker restarts {self.restarts}\n"
                f"  peak RSS of one case {self.max_case_rss_mb:.0f} MB ({self.max_case_rss_case}); memory-limit "
                f"stops {self.memory}; hostile paths: {hostile}; network requests {self.network_requests}")


def run_fuzz(seeds: list[Path], work_dir: Path, *, cases: int, seed: int = 0, timeout: float = 30.0,
             config: dict | None = None, time_budget: float | None = None, keep_failures: Path | None = None,
             include_unmutated: bool = True, progress: bool = False, hostile_every: int = 0,
             memory_limit_mb: float = 0, start_timeout: float = 120.0) -> FuzzReport:
    """Run `cases` mutated inputs (round-robin over `seeds`) through one persistent worker; stops early when
    `time_budget` seconds are spent. Failing inputs are copied to `keep_failures` for replay.

    hostile_every: every n-th case hands the worker a hostile *path* instead (protocol-like folders, ffconcat and
    playlists naming a loopback server, FIFOs, devices, URLs; `_hostile_videos.hostile_path_case`) while a
    loopback HTTP server counts requests. memory_limit_mb: the worker is stopped (a "memory" failure) above it."""
    from _hostile_videos import HOSTILE_PATH_KINDS, LoopbackCounter, hostile_path_case

    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    originals = [Path(s).read_bytes() for s in seeds]
    report = FuzzReport(seed=seed)
    config = dict(DEFAULT_PROCESSOR if config is None else config)
    if memory_limit_mb:
        config["memory_limit_mb"] = memory_limit_mb
    worker = FuzzWorker(config, cwd=work_dir, start_timeout=start_timeout)
    server = LoopbackCounter(originals[0]).__enter__()
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cases, desc="fuzz", unit="case")
    try:
        for i in range(cases):
            if time_budget is not None and time.perf_counter() - start > time_budget:
                break
            which = i % len(seeds)
            rng = np.random.default_rng([seed, i])
            if include_unmutated and i < len(seeds):
                data, ops = originals[which], ["none"]
            else:
                data, ops = mutate(originals[which], rng)
            suffix = Path(seeds[which]).suffix
            path = work_dir / f"case{suffix}"
            path.write_bytes(data)
            target = str(path)
            if hostile_every and i % hostile_every == hostile_every - 1:
                kind = HOSTILE_PATH_KINDS[int(rng.integers(len(HOSTILE_PATH_KINDS)))]
                target = hostile_path_case(kind, data, suffix, work_dir, server.host)
                ops = [*ops, f"path:{kind}"]
                report.hostile[kind] = report.hostile.get(kind, 0) + 1
            reply = worker.run(target, timeout)
            report.cases += 1
            for op in ops:
                kind = op.split()[0].split("@")[0].split("[")[0]
                report.mutations[kind] = report.mutations.get(kind, 0) + 1
            status = reply["status"]
            report.max_case_seconds = max(report.max_case_seconds, float(reply.get("seconds", 0)))
            report.worker_maxrss_mb = max(report.worker_maxrss_mb, reply.get("maxrss_kb", 0) / 1024)
            case_rss = reply.get("case_peak_rss_kb", 0) / 1024
            if case_rss > report.max_case_rss_mb:
                report.max_case_rss_mb = case_rss
                report.max_case_rss_case = f"case {i}: {Path(seeds[which]).name} {' + '.join(ops)}"
            if status == "valid":
                report.valid += 1
            elif status == "typed":
                report.typed += 1
                report.errors[reply["error"]] = report.errors.get(reply["error"], 0) + 1
            else:
                if status == "hang":
                    report.hangs += 1
                elif status == "invalid":
                    report.invalid += 1
                elif status == "memory":
                    report.memory += 1
                    worker.close()  # it is exiting; the next case starts a fresh one
                else:  # crash by signal/exit, or an exception that is not a VideoDecodeError
                    report.crashes += 1
                report.failures.append({"case": i, "seed_file": Path(seeds[which]).name, "ops": ops, **reply})
                if keep_failures is not None:
                    Path(keep_failures).mkdir(parents=True, exist_ok=True)
                    (Path(keep_failures) / f"case{i}_{status}{path.suffix}").write_bytes(data)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(valid=report.valid, typed=report.typed, bad=len(report.failures))
    finally:
        if bar is not None:
            bar.close()
        report.restarts = worker.restarts
        worker.close()
        report.network_requests = server.count
        server.__exit__(None, None, None)
    report.seconds = time.perf_counter() - start
    return report


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        _worker_main(json.loads(sys.argv[2]) if len(sys.argv) > 2 else dict(DEFAULT_PROCESSOR))
    else:
        print(__doc__)
