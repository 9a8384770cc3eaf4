"""Camera sources and the sampler that turns a capture stream into frames for inference.

A source is a video file (played at its own frame rate, looping, like a camera that never stops), a
live camera (RTSP, MJPEG over HTTP: `live.py`), or a synthetic scene. Frames are sampled down to the
camera's `inferenceFps` on a grid anchored at the run's epoch and continued at each rate change
(`grid.py`, `sampler.py`).
"""

from __future__ import annotations

from camerafleet.api.source_report import SourceProblem
from camerafleet.sources.base import DecodeCounts, FrameSource, SourceError, is_stream_url, redact
from camerafleet.sources.files import SyntheticSource, VideoFileSource
from camerafleet.sources.grid import CameraGrids, Grid, camera_grid, slot_phase_s
from camerafleet.sources.sampler import Sampler

__all__ = [
    "CameraGrids", "DecodeCounts", "FrameSource", "Grid", "Sampler", "SourceError", "SourceProblem", "SyntheticSource", "VideoFileSource",
    "camera_grid", "is_stream_url", "open_source", "redact", "slot_phase_s",
]  # fmt: skip


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
    if is_stream_url(source):
        from camerafleet.sources.live import LiveSource  # PyAV is loaded only by producers of live cameras

        return LiveSource(source, display_name or redact(source), inference_fps, stall_timeout_s, max_frame_age_s)
    return VideoFileSource(source, epoch_s, display_name)
