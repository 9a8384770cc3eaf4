"""One camera's tracking: its results put back in capture order, a tracker per model, and the events.

The results of one camera reach the results topic in the order consumers finish them, not the order the
frames were captured: with several consumers (or a camera topic of several partitions) frame 11 can be
written before frame 10. A tracker must see them in capture order, so results wait in a reorder buffer
until a result captured `reorder_window_ms` later has arrived; one that comes after its turn has passed is
counted `late` and not tracked. Release depends only on the results, never on the wall clock, so the same
results give the same events however fast they are read, and a restored state resumes exactly.

Everything here is plain data (`to_state` / `from_state`: JSON), so a camera's tracking can be saved with
the offset of the last result it reflects and continued elsewhere.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from camerafleet.api.geometry import line_problem, polygon_problem
from camerafleet.tracking.clips import ClipFrames, ClipSettings
from camerafleet.tracking.events import CameraEvents, Event, EventSettings, Frame, LineRule, ZoneRule
from camerafleet.tracking.tracker import Detection, Observation, Tracker, TrackerSettings

# Tracked frames held for the stage, which takes them after every batch (500 results at most): a caller that
# never takes them holds the last few thousand.
TRACKED_KEPT = 4096
# Capture times of released results remembered to tell a result written twice from one that came too late:
# redeliveries come within a consumer batch or a rebalance of the first copy, a few hundred results at most.
RELEASED_KEPT = 1024


@dataclass(frozen=True, order=True)
class TrackedResult:
    """What tracking needs of a processed result: when, which frame, and each detector's boxes."""

    capture_ms: int
    uri: str = field(compare=False)
    width: int = field(compare=False)
    height: int = field(compare=False)
    detections: dict[str, list[Detection]] = field(compare=False)  # by model

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> TrackedResult | None:
        """From a results-topic record (its JSON as a dict); None when it has nothing to track (not processed,
        or no detector among its models)."""
        models = record.get("models") or {}
        if record.get("outcome") != "processed" or record.get("captureTsMs") is None:
            return None
        detections = {
            name: [Detection(tuple(d["box"]), float(d["score"]), str(d["label"]), _description(d)) for d in result["detections"]]
            for name, result in sorted(models.items())
            if isinstance(result, dict) and isinstance(result.get("detections"), list)
        }
        if not detections:
            return None
        return cls(
            int(record["captureTsMs"]),
            str(record.get("uri") or ""),
            int(record.get("width") or 0),
            int(record.get("height") or 0),
            detections,
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "capture_ms": self.capture_ms,
            "uri": self.uri,
            "width": self.width,
            "height": self.height,
            "detections": {m: [[*d.box, d.score, d.label, d.appearance] for d in ds] for m, ds in self.detections.items()},
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> TrackedResult:
        detections = {
            m: [Detection((d[0], d[1], d[2], d[3]), d[4], d[5], d[6] if len(d) > 6 else None) for d in ds]  # saved before appearances: 6
            for m, ds in s["detections"].items()
        }
        return cls(s["capture_ms"], s["uri"], s["width"], s["height"], detections)


def _description(d: dict[str, Any]) -> str | None:
    appearance = d.get("appearance")
    return appearance if isinstance(appearance, str) else None


@dataclass(frozen=True)
class TrackedFrame:
    """A frame as the trackers saw it: each model's confirmed tracks on it (none: nothing tracked there)."""

    capture_ms: int
    tracks: dict[str, list[Observation]]  # by model


@dataclass(frozen=True)
class CameraRules:
    """A camera's zones and lines, and how its tracking is tuned."""

    zones: Sequence[ZoneRule] = ()
    lines: Sequence[LineRule] = ()
    reorder_window_ms: int = 2000
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    events: EventSettings = field(default_factory=EventSettings)
    clips: ClipSettings | None = None  # None: no frames kept for clips


class CameraTracking:
    """Takes one camera's results in the order they were written; gives its events in capture order."""

    def __init__(self, camera_id: str, rules: CameraRules):
        self.camera_id, self.rules = camera_id, rules
        self.trackers: dict[str, Tracker] = {}
        self.buffer: list[TrackedResult] = []  # a heap by capture time
        self.released_ms = -1  # capture time of the last result given to the trackers
        self.released: deque[int] = deque(maxlen=RELEASED_KEPT)  # ... and of the ones before it
        self.newest_ms = -1  # newest capture time seen
        self.counts: Counter[str] = Counter()  # tracked, late, duplicate, untracked: this process's, not saved
        self.problems: list[str] = []  # zones or lines that do not fit the camera's frame (they are left out)
        self.events = CameraEvents(camera_id, settings=rules.events)
        self.frame_size: tuple[int, int] | None = None
        self.clips = ClipFrames(rules.clips) if rules.clips else None
        self.kept: list[tuple[int, str]] = []  # frames to keep for clips (capture ms, uri), until `take_kept`
        self.tracked: deque[TrackedFrame] = deque(maxlen=TRACKED_KEPT)  # frames tracked, until `take_tracked`

    def take(self, record: dict[str, Any]) -> list[Event]:
        """A result from the results topic; returns the events of the results it releases."""
        result = TrackedResult.of_record(record)
        if result is None:
            self.counts["untracked"] += 1
            return []
        if result.capture_ms in self.released or any(r.capture_ms == result.capture_ms for r in self.buffer):
            self.counts["duplicate"] += 1  # a result written twice (redelivered to the consumers)
            return []
        if result.capture_ms <= self.released_ms:
            self.counts["late"] += 1
            return []
        heapq.heappush(self.buffer, result)
        self.newest_ms = max(self.newest_ms, result.capture_ms)
        out: list[Event] = []
        while self.buffer and self.buffer[0].capture_ms <= self.newest_ms - self.rules.reorder_window_ms:
            out += self._track(heapq.heappop(self.buffer))
        return out

    def update_rules(self, rules: CameraRules) -> None:
        """New zones, lines or settings (a manifest edit), from the next result on; tracks and open events go on."""
        self.rules = rules
        self.events.settings = rules.events
        for tracker in self.trackers.values():
            tracker.settings = rules.tracker
        if rules.clips is None:
            self.clips = None
        elif self.clips is None:
            self.clips = ClipFrames(rules.clips)
        else:
            self.clips.settings = rules.clips
        if self.frame_size is not None:
            width, height = self.frame_size
            self.frame_size = None
            self._fit(width, height)

    def finish(self) -> list[Event]:
        """Track what the buffer holds and end every track (the camera left the fleet, or the fleet stops for
        good; a stage that only moves elsewhere saves its state instead)."""
        out: list[Event] = []
        while self.buffer:
            out += self._track(heapq.heappop(self.buffer))
        for model, tracker in sorted(self.trackers.items()):
            out += self.events.end(model, tracker.finish())
        return out

    def _track(self, result: TrackedResult) -> list[Event]:
        self._fit(result.width, result.height)
        self.released_ms = result.capture_ms
        self.released.append(result.capture_ms)
        self.counts["tracked"] += 1
        out: list[Event] = []
        frame = Frame(result.capture_ms, result.uri)
        tracks: dict[str, list[Observation]] = {}
        for model in sorted(set(self.trackers) | set(result.detections)):
            tracker = self.trackers.setdefault(model, Tracker(self.rules.tracker))
            update = tracker.update(result.capture_ms / 1000, result.detections.get(model, []))
            tracks[model] = update.observations
            out += self.events.observe(model, frame, update)
        self.tracked.append(TrackedFrame(result.capture_ms, tracks))
        if self.clips is not None and result.uri:
            self.kept += self.clips.frame(result.capture_ms, result.uri, tracking=bool(self.events.tracks))
        return out

    def take_tracked(self) -> list[TrackedFrame]:
        """The frames tracked since the last call, in capture order."""
        tracked = list(self.tracked)
        self.tracked.clear()
        return tracked

    def take_kept(self) -> list[tuple[int, str]]:
        """The frames to keep for clips (capture ms, uri) since the last call."""
        kept, self.kept = self.kept, []
        return kept

    def _fit(self, width: int, height: int) -> None:
        """Check the zones and lines against the frame's size, once it is known (and again if it changes)."""
        if (width, height) == self.frame_size or not width or not height:
            return
        self.frame_size = (width, height)
        self.problems = []
        zones, lines = [], []
        for z in self.rules.zones:
            if problem := polygon_problem(z.polygon, width, height):
                self.problems.append(f"camera {self.camera_id}: zone {z.name!r} is left out: {problem}")
            else:
                zones.append(z)
        for line in self.rules.lines:
            if problem := line_problem(line.a, line.b, width, height):
                self.problems.append(f"camera {self.camera_id}: line {line.name!r} is left out: {problem}")
            else:
                lines.append(line)
        self.events.zones, self.events.lines = zones, lines

    def to_state(self) -> dict[str, Any]:
        return {
            "trackers": {m: t.to_state() for m, t in self.trackers.items()},
            "buffer": [r.to_state() for r in sorted(self.buffer)],
            "released": list(self.released),
            "released_ms": self.released_ms,
            "newest_ms": self.newest_ms,
            "events": self.events.to_state(),
            "clips": self.clips.to_state() if self.clips else None,
        }

    @classmethod
    def from_state(cls, camera_id: str, rules: CameraRules, state: dict[str, Any]) -> CameraTracking:
        c = cls(camera_id, rules)
        c.trackers = {m: Tracker.from_state(t, rules.tracker) for m, t in state["trackers"].items()}
        c.buffer = [TrackedResult.from_state(r) for r in state["buffer"]]  # sorted: a valid heap
        c.released.extend(state["released"])
        c.released_ms, c.newest_ms = state["released_ms"], state["newest_ms"]
        c.events.restore(state["events"])
        if c.clips is not None and state.get("clips"):  # states saved before clips have none
            c.clips.restore(state["clips"])
        return c
