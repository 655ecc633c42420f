"""Typed errors for video decoding.

Why: a data pipeline that reads thousands of user videos must tell "this file is not a video" from "this video is
damaged" from "this video is too big for the configured limits", and say which file it was, without a traceback
from deep inside FFmpeg. Every error is a ValueError (bad input, not a bug), carries `.path` and `.reason`, and
prints as "<path>: <reason>".
"""

from __future__ import annotations

import math
import numbers
import os

__all__ = [
    "VideoDecodeError",
    "NotAVideoError",
    "NoVideoStreamError",
    "CorruptVideoError",
    "VideoTooLargeError",
    "UnsupportedVideoError",
    "TruncatedVideoWarning",
    "check_number",
]


def _describe(path) -> str:
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    if isinstance(path, (bytes, bytearray, memoryview)):
        return f"<{len(path)} bytes in memory>"
    name = getattr(path, "name", None)
    return str(name) if isinstance(name, str) else f"<{type(path).__name__}>"


class VideoDecodeError(ValueError):
    """A video could not be read. `.path` names the input, `.reason` says what is wrong with it."""

    def __init__(self, path, reason: str | None = None):
        if reason is None:  # one-argument form: a message only (torch's DataLoader re-raises worker errors so)
            self.path, self.reason = None, str(path)
            super().__init__(self.reason)
            return
        self.path = _describe(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):  # keep the two-argument constructor picklable (DataLoader workers re-raise in the parent)
        return (type(self), (self.reason,) if self.path is None else (self.path, self.reason))


class NotAVideoError(VideoDecodeError):
    """The file is not a media file FFmpeg recognises (empty, random bytes, text, ...), or holds no video."""


class NoVideoStreamError(NotAVideoError):
    """The file is a media file but has no video stream (audio only, subtitles, cover art only)."""


class CorruptVideoError(VideoDecodeError):
    """The file claims to be a video but is damaged: its index is missing or not one frame decodes."""


class VideoTooLargeError(VideoDecodeError):
    """The video exceeds a configured cap (pixels per frame or decoded frames); raise the cap to accept it."""


class UnsupportedVideoError(VideoDecodeError):
    """The video is valid but this build cannot process it (no decoder for its codec, unusable pixel format)."""


class TruncatedVideoWarning(UserWarning):
    """Decoding stopped or skipped data midway (cut or damaged file); the frames that decoded are used."""


def check_number(name: str, value, *, low=None, high=None, low_open: bool = False, integer: bool = False,
                 optional: bool = False):
    """`value` if it is a finite number in range, else a one-line ValueError naming `name` (TypeError for a
    non-number). Why: NaN, inf and 1e300 reach numpy, PyAV and range() otherwise and come back as
    OverflowError/UFuncTypeError/av.ArgumentError from deep inside, or as silent inf/NaN features."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if integer and not isinstance(value, numbers.Integral):
        if not (math.isfinite(value) and float(value).is_integer()):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        value = int(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"{name} must be in {span}, got {value!r}")
    return value
