"""How a camera's source is doing, in words the summary, the metrics and the README share.

Kept in the API (no FFmpeg, no OpenCV) because the run's summary and its readers use these names too.
"""

from __future__ import annotations

from enum import StrEnum


class SourceProblem(StrEnum):
    """Why a camera's source is down; the producer reconnects with backoff (slowly for `auth_failed`)."""

    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth_failed"
    STALLED = "stalled"
    ENDED = "ended"
    UNREADABLE = "unreadable"


class DecodeMode(StrEnum):
    """Which frames of a camera are decoded (`sources/live.py`, `sources/files.py`)."""

    EVERY_FRAME = "every_frame"
    """The keyframe interval is not known yet (until two keyframes arrived), so every frame is decoded."""
    KEYFRAMES_ONLY = "keyframes_only"
    """At most one sample per keyframe interval: only keyframes are decoded (MJPEG: only sampled frames)."""
    UNTIL_LAST_SAMPLED = "until_last_sampled"
    """Several samples per keyframe interval: each group of pictures is decoded up to the last frame a slot takes."""


class TimeSource(StrEnum):
    """Where a live frame's capture time comes from."""

    CAMERA_CLOCK = "camera_clock"
    """The camera's RTCP sender reports map the frame's RTP time to wall-clock time."""
    ARRIVAL = "arrival"
    """No usable camera clock (MJPEG, no sender report yet, or a clock that is off): when the frame arrived."""
