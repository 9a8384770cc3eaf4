"""The sampling grid: where a camera's slots fall in time, and a frame's index on a clip's own frame grid.

Every producer actor computes sequence numbers from this one arithmetic, without talking to the others:
several actors sharing a camera, an actor taking a camera over mid-run, and a file replayed at its own
frame rate all agree on which slot (or frame) a time belongs to.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

# Slack when rounding times to frame indices and slots: absolute times near 1.8e9 s carry ~2.4e-7 s of
# float error, so 1e-4 of a frame (about a microsecond at 120 fps) keeps round trips exact.
SLOT_EPSILON = 1e-4


@dataclass(frozen=True)
class Grid:
    """Instants `start_s + k / fps` for k = 0, 1, ...: a camera's sampling slots, or a clip's frames."""

    start_s: float
    fps: float

    def slot_of(self, t: float) -> int:
        """The slot `t` falls in (the last instant at or before `t`)."""
        return math.floor((t - self.start_s) * self.fps + SLOT_EPSILON)

    def first_at_or_after(self, t: float) -> int:
        """The first slot whose instant is at or after `t`."""
        return math.ceil((t - self.start_s) * self.fps - SLOT_EPSILON)

    def time_of(self, slot: int) -> float:
        return self.start_s + slot / self.fps


def slot_phase_s(camera_id: str, fps: float) -> float:
    """Where in its sampling period a camera's slots fall: a stable fraction of the period derived from
    its id. Cameras of one fleet share the run's epoch; without this, 150 cameras at the same fps would
    all capture at the same instant and hit the pipeline as one burst per period."""
    return (zlib.crc32(camera_id.encode()) % 1000) / 1000 / fps


def camera_grid(epoch_s: float, camera_id: str, fps: float) -> Grid:
    """A camera's sampling grid: slot 0 is the run's epoch plus the camera's phase."""
    return Grid(epoch_s + slot_phase_s(camera_id, fps), fps)
