"""The sampling grid: where a camera's slots fall in time, and a frame's index on a clip's own frame grid.

Every producer actor computes sequence numbers from this one arithmetic, without talking to the others:
several actors sharing a camera, an actor taking a camera over mid-run, and a file replayed at its own
frame rate all agree on which slot (or frame) a time belongs to.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

# Slack when rounding times to frame indices and slots: absolute times near 1.8e9 s carry ~2.4e-7 s of
# float error, so 1e-4 of a frame (about a microsecond at 120 fps) keeps round trips exact.
SLOT_EPSILON = 1e-4
# A worker that starts takes the slot in progress only if it began this recently; a file or generated source plays
# a slot's frame at the slot's instant, so an older one would be a frame born old.
FRESH_START_S = 0.5


@dataclass(frozen=True)
class Grid:
    """Instants `start_s + k / fps` for k = first, first + 1, ...: a camera's sampling slots, or a clip's frames.
    A grid that continues another at a new rate (`continued`) starts at that one's next slot, not at 0."""

    start_s: float
    fps: float
    first: int = 0

    def slot_of(self, t: float) -> int:
        """The slot `t` falls in (the last instant at or before `t`)."""
        return math.floor((t - self.start_s) * self.fps + SLOT_EPSILON)

    def first_at_or_after(self, t: float) -> int:
        """The first slot whose instant is at or after `t`."""
        return math.ceil((t - self.start_s) * self.fps - SLOT_EPSILON)

    def time_of(self, slot: int) -> float:
        return self.start_s + slot / self.fps

    def start_at(self, t: float) -> int:
        """The first slot of this grid at or after `t`, never before its first: where a worker taking over at `t`
        starts, and where the one handing over stops."""
        return max(self.first_at_or_after(t), self.first)

    def fresh_start(self, t: float) -> int:
        """Where a worker that starts at `t` (not taking over) begins: the slot in progress if it began within
        `FRESH_START_S`, else the next one; never before the grid's first. A fleet's producers start some 15 s after
        its epoch (topics, Serve); at 0.1 fps the slot in progress then began up to 10 s before, and of 150 file
        cameras' first frames, played at their slots' instants, 57 were dropped stale in the benchmark."""
        return max(self.slot_of(t), self.first_at_or_after(t - FRESH_START_S), self.first)

    def continued(self, t: float, fps: float) -> Grid:
        """This grid from `t` on at `fps`: its first slot is this grid's first slot at or after `t`, at the same
        instant, so the slots (a camera's frame sequence numbers) go on rising across a rate change. Numbered from
        the epoch at the new rate instead, a camera going from 5 to 1 fps an hour in would restart near slot 3,600
        and reuse, over the next 4 hours, the 14,400 numbers it used in the last 48 minutes: frames counted as
        duplicates, their stored images overwritten."""
        if fps == self.fps:
            return self
        first = self.start_at(t)
        at = self.time_of(first)
        return Grid(at - first / fps, fps, first)


def slot_phase_s(camera_id: str, fps: float) -> float:
    """Where in its sampling period a camera's slots fall: a stable fraction of the period derived from
    its id. Cameras of one fleet share the run's epoch; without this, 150 cameras at the same fps would
    all capture at the same instant and hit the pipeline as one burst per period."""
    return (zlib.crc32(camera_id.encode()) % 1000) / 1000 / fps


def camera_grid(epoch_s: float, camera_id: str, fps: float) -> Grid:
    """A camera's sampling grid: slot 0 is the run's epoch plus the camera's phase."""
    return Grid(epoch_s + slot_phase_s(camera_id, fps), fps)


@dataclass
class CameraGrids:
    """The run's sampling grid of every camera it has sampled: the runner keeps it and hands it to every producer
    actor with their shards, so all of a camera's shards, and an actor Ray restarts, agree on its slots."""

    epoch_s: float
    grids: dict[str, Grid] = field(default_factory=dict)  # every camera id the run has seen: one per camera of its manifests

    def follow(self, cameras: Iterable[tuple[str, float]], t: float) -> dict[str, Grid]:
        """The grids of these (camera id, fps): a camera new to the run starts on the epoch's grid, one whose rate
        changed continues its grid from `t` (the handover time of its workers)."""
        for camera_id, fps in cameras:
            grid = self.grids.get(camera_id)
            self.grids[camera_id] = camera_grid(self.epoch_s, camera_id, fps) if grid is None else grid.continued(t, fps)
        return dict(self.grids)
