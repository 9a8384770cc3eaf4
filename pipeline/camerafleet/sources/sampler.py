"""The sampler: which captured frames of a camera are a shard's samples, on the camera's sampling grid.

A frame's sequence number is its slot on the grid (`grid.py`), so several producer actors sharing a
camera (each taking every n-th slot) and an actor that takes over a camera mid-run agree on sequence
numbers without talking to each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from camerafleet.sources.grid import Grid


@dataclass
class Sampler:
    """Picks the frames of one shard of a camera on the camera's sampling grid."""

    grid: Grid
    shard: int = 0
    shards: int = 1
    last_slot: int = -1
    skipped_slots: int = 0

    def slot_of(self, t: float) -> int:
        return self.grid.slot_of(t)

    def next_slot(self) -> int:
        """The next slot this shard owns."""
        slot = self.last_slot + 1
        return slot + (self.shard - slot) % self.shards

    def next_due(self) -> float:
        """Wall-clock time of the next slot this shard owns."""
        return self.grid.time_of(self.next_slot())

    def miss_until(self, t: float) -> int:
        """Give up this shard's slots up to the one at `t` (its source is down); returns how many."""
        first, slot = self.next_slot(), self.slot_of(t)
        if slot < first:
            return 0
        missed = (slot - first) // self.shards + 1
        self.last_slot = first + (missed - 1) * self.shards
        return missed

    def shed_next(self) -> int:
        """Give up this shard's next slot (not admitted: the pipeline could not process it in time); returns 1."""
        self.last_slot = self.next_slot()
        return 1

    def accept(self, t: float) -> int | None:
        """The frame's sequence number if a frame captured at `t` is this shard's next sample, else None."""
        slot = self.slot_of(t)
        if slot < self.grid.first or slot <= self.last_slot or slot % self.shards != self.shard:
            return None  # a frame from before the camera's grid starts (the epoch, or its last rate change) is not a sample
        if self.last_slot >= 0:
            self.skipped_slots += max(0, (slot - self.last_slot) // self.shards - 1)
        self.last_slot = slot
        return slot
