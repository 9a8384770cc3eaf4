"""Which source a camera's `source` opens: a generated scene, a live stream, or a video file."""

from __future__ import annotations

from camerafleet.sources.base import FrameSource, is_stream_url, redact
from camerafleet.sources.files import VideoFileSource
from camerafleet.sources.live import LiveSource
from camerafleet.sources.synthetic import SyntheticSource


def open_source(
    source: str,
    *,
    epoch_s: float,
    inference_fps: float,
    stall_timeout_s: float,
    max_frame_age_s: float,
    seed: int = 0,
    display_name: str | None = None,
) -> FrameSource:
    """Open a camera source; SourceError with a message naming the camera otherwise. `max_frame_age_s` is the
    fleet's freshness budget (consumer.maxFrameAgeMs), which bounds how slow a camera's clock may be trusted."""
    if source.startswith("synthetic:"):
        return SyntheticSource(source, seed, epoch_s)
    name = display_name or redact(source)
    if is_stream_url(source):
        return LiveSource(source, name, inference_fps, stall_timeout_s, max_frame_age_s)
    return VideoFileSource(source, epoch_s, 1.0 / inference_fps, name)
