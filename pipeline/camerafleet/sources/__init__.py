"""Camera sources and the sampler that turns a capture stream into frames for inference.

A source is a video file (played at its own frame rate, looping, like a camera that never stops: `files.py`), a
live camera (RTSP, MJPEG over HTTP, any stream URL FFmpeg reads: `live.py`), or a generated scene
(`synthetic.py`); `opening.py` picks one for a camera. Frames are sampled down to the camera's `inferenceFps`
on a grid anchored at the run's epoch and continued at each rate change (`grid.py`, `sampler.py`). This
package's own names need no FFmpeg, so the runner, which keeps the grids, loads none.
"""

from __future__ import annotations

from camerafleet.api.source_report import SourceProblem
from camerafleet.sources.base import DecodeCounts, FrameSource, SourceError, is_stream_url, redact
from camerafleet.sources.grid import CameraGrids, Grid, camera_grid, slot_phase_s
from camerafleet.sources.sampler import Sampler

__all__ = [
    "CameraGrids", "DecodeCounts", "FrameSource", "Grid", "Sampler", "SourceError", "SourceProblem",
    "camera_grid", "is_stream_url", "redact", "slot_phase_s",
]  # fmt: skip
