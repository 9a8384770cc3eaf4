"""From one camera's tracks to events: an object seen, entering and leaving a zone, loitering in it, crossing
a line (with its direction). Pure and deterministic: the same tracker updates give the same events with the
same ids, so a replayed stretch of results re-sends events a reader already has under the same ids.

Each event has a start, updates (its best snapshot improved; at most one per `update_interval_s`) and an end;
a line crossing is one record (`instant`). A track's box stands for the object by an anchor point: the
bottom centre (where a person or vehicle touches the ground: what a zone drawn on the floor means) or the
centre (faces). Boundaries get slack against boxes that jitter by a few pixels from frame to frame (the
commonest cause of counts that inflate): a line is crossed only when the anchor moves from more than a margin
on one side (5% of the box's height) to more than a margin on the other across the drawn segment, and a zone
is left only once the anchor has been outside for `exit_grace_s`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from camerafleet.api.geometry import Anchor, Box, Point, cross, inside, segments_intersect, side
from camerafleet.tracking.tracker import EndedTrack, TrackerUpdate

LINE_MARGIN = 0.05  # of the box's height: an anchor this close to a line is on neither side


@dataclass(frozen=True)
class Filter:
    """Which tracks a zone or line counts: by model and by label (empty: all)."""

    models: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    anchor: Anchor = Anchor.BOTTOM_CENTER

    def takes(self, model: str, label: str) -> bool:
        return (not self.models or model in self.models) and (not self.labels or label in self.labels)


@dataclass(frozen=True)
class ZoneRule:
    name: str
    polygon: tuple[Point, ...]
    filter: Filter = Filter()
    loiter_s: float | None = None  # a loitering event once a track has been inside this long


@dataclass(frozen=True)
class LineRule:
    """A directed line a -> b: crossing to its right (as seen walking from a to b on screen) is `in`."""

    name: str
    a: Point
    b: Point
    filter: Filter = Filter()


class Kind(enum.StrEnum):
    OBJECT = "object"
    ZONE = "zone"
    LOITER = "loiter"
    LINE = "line"


class Phase(enum.StrEnum):
    START = "start"
    UPDATE = "update"
    END = "end"
    INSTANT = "instant"  # a line crossing


@dataclass(frozen=True)
class Snapshot:
    """The frame that shows the object best so far (highest score) and its box there."""

    capture_ms: int
    uri: str
    box: Box
    score: float


@dataclass(frozen=True)
class Event:
    id: str  # the same for every record of one event, and the same when its results are replayed
    camera_id: str
    model: str
    kind: Kind
    phase: Phase
    track_id: int
    label: str
    start_ms: int
    at_ms: int  # when this record's phase happened: the capture time of the frame that showed it; a loitering's
    # start, when the stay passed the zone's limit (between samples, or while the track was lost and found again)
    snapshot: Snapshot
    where: str = ""  # the zone or line
    direction: str = ""  # line crossings: "in" or "out"


@dataclass(frozen=True)
class Frame:
    """The frame a tracker update is about."""

    capture_ms: int
    uri: str


@dataclass(frozen=True)
class EventSettings:
    update_interval_s: float = 5.0
    exit_grace_s: float = 1.0


@dataclass(frozen=True)
class LineSide:
    """Where a track was last seen off a line: the side (1 or -1), its anchor point, and the capture time."""

    side: int
    at: Point
    ms: int | None


def _crossed_at(line: LineRule, before: LineSide, now: LineSide, now_ms: int) -> int:
    """When the anchor crossed the line, moving straight from where it was last seen to where it is now: the
    frame that shows a crossing can come seconds after it, at a low rate or after a track was lost and found
    again (a person hidden behind another through the door is found 3 s later on the other side)."""
    if before.ms is None:  # a side remembered before sides had times
        return now_ms
    d0, d1 = cross(line.a, line.b, before.at), cross(line.a, line.b, now.at)
    share = d0 / (d0 - d1) if d0 != d1 else 1.0
    return round(before.ms + min(1.0, max(0.0, share)) * (now_ms - before.ms))


@dataclass
class _Open:
    """An event that has started and not ended."""

    id: str
    kind: Kind
    where: str
    start_ms: int
    snapshot: Snapshot
    last_sent_ms: int
    improved: bool = False
    outside_since_ms: int | None = None  # zones: when the anchor left, while within the grace

    def to_state(self) -> dict[str, Any]:
        return {**asdict(self), "snapshot": {**asdict(self.snapshot), "box": list(self.snapshot.box)}}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> _Open:
        snap = s["snapshot"]
        return cls(**{**s, "kind": Kind(s["kind"]), "snapshot": Snapshot(**{**snap, "box": tuple(snap["box"])})})


@dataclass
class _TrackMemory:
    label: str
    opened: dict[tuple[Kind, str], _Open] = field(default_factory=dict)
    sides: dict[str, LineSide] = field(default_factory=dict)  # line -> the side it was last seen on, where and when

    def to_state(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "opened": [o.to_state() for o in self.opened.values()],
            "sides": {name: [s.side, list(s.at), s.ms] for name, s in self.sides.items()},
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> _TrackMemory:
        opened = [_Open.from_state(o) for o in s["opened"]]
        # A state saved before sides had a time holds [side, point]: its next crossing is stamped when seen.
        sides = {name: LineSide(v[0], (v[1][0], v[1][1]), v[2] if len(v) > 2 else None) for name, v in s["sides"].items()}
        return cls(s["label"], {(o.kind, o.where): o for o in opened}, sides)


class CameraEvents:
    """Events of one camera's tracks, all models."""

    def __init__(
        self, camera_id: str, zones: Sequence[ZoneRule] = (), lines: Sequence[LineRule] = (), settings: EventSettings | None = None
    ):
        self.camera_id = camera_id
        self.zones, self.lines = list(zones), list(lines)
        self.settings = settings or EventSettings()
        self.tracks: dict[tuple[str, int], _TrackMemory] = {}

    def to_state(self) -> list[dict[str, Any]]:
        return [{"model": m, "track": t, **memory.to_state()} for (m, t), memory in self.tracks.items()]

    def restore(self, state: list[dict[str, Any]]) -> None:
        self.tracks = {(s["model"], s["track"]): _TrackMemory.from_state(s) for s in state}

    def observe(self, model: str, frame: Frame, update: TrackerUpdate) -> list[Event]:
        """The events of one tracker update for `model` on `frame`."""
        out: list[Event] = []
        for o in update.observations:
            memory = self.tracks.get((model, o.track_id))
            if memory is None:
                memory = self.tracks[(model, o.track_id)] = _TrackMemory(o.label)
                if o.before_confirmed is not None:  # which side of each line it came from
                    for line in self.lines:
                        if line.filter.takes(model, o.label):
                            self._side(memory, line, o.before_confirmed.box, round(o.before_confirmed.t * 1000))
            snap = Snapshot(frame.capture_ms, frame.uri, o.box, o.score)
            self._object(out, model, o.track_id, memory, snap, frame.capture_ms)
            for zone in self.zones:
                if zone.filter.takes(model, o.label):
                    self._zone(out, model, o.track_id, memory, zone, snap, frame.capture_ms)
            for line in self.lines:
                if line.filter.takes(model, o.label):
                    self._line(out, model, o.track_id, memory, line, snap, frame.capture_ms)
        out += self.end(model, update.ended)
        return out

    def end(self, model: str, ended: Iterable[EndedTrack]) -> list[Event]:
        """Close every open event of tracks that ended (and forget them)."""
        out: list[Event] = []
        for e in ended:
            memory = self.tracks.pop((model, e.track_id), None)
            if memory is None:
                continue
            end_ms = round(e.last_seen * 1000)
            # Zones and loiters before the object itself: readers see the object's end last.
            for key in sorted(memory.opened, key=lambda k: k[0] == Kind.OBJECT):
                out.append(self._record(memory.opened[key], model, e.track_id, memory.label, Phase.END, end_ms))
        return out

    def _object(self, out: list[Event], model: str, track: int, memory: _TrackMemory, snap: Snapshot, now_ms: int) -> None:
        self._touch(out, model, track, memory, Kind.OBJECT, "", snap, now_ms)

    def _zone(self, out: list[Event], model: str, track: int, memory: _TrackMemory, zone: ZoneRule, snap: Snapshot, now_ms: int) -> None:
        visit = memory.opened.get((Kind.ZONE, zone.name))
        if inside(zone.filter.anchor.of(snap.box), zone.polygon):
            if visit is not None:
                visit.outside_since_ms = None
            self._touch(out, model, track, memory, Kind.ZONE, zone.name, snap, now_ms)
            visit = memory.opened[(Kind.ZONE, zone.name)]
            loiters_from_ms = None if zone.loiter_s is None else visit.start_ms + round(zone.loiter_s * 1000)
            if loiters_from_ms is not None and now_ms >= loiters_from_ms:
                self._touch(out, model, track, memory, Kind.LOITER, zone.name, snap, now_ms, started_ms=loiters_from_ms)
            return
        if visit is None:
            return
        if visit.outside_since_ms is None:
            visit.outside_since_ms = now_ms
        if now_ms - visit.outside_since_ms >= self.settings.exit_grace_s * 1000:
            for kind in (Kind.LOITER, Kind.ZONE):
                opened = memory.opened.pop((kind, zone.name), None)
                if opened is not None:
                    out.append(self._record(opened, model, track, memory.label, Phase.END, visit.outside_since_ms))

    def _line(self, out: list[Event], model: str, track: int, memory: _TrackMemory, line: LineRule, snap: Snapshot, now_ms: int) -> None:
        before = memory.sides.get(line.name)
        now = self._side(memory, line, snap.box, now_ms)
        if now is None or before is None or before.side == now.side or not segments_intersect(before.at, now.at, line.a, line.b):
            return
        at_ms = _crossed_at(line, before, now, now_ms)
        crossing = _Open(_event_id(self.camera_id, model, track, Kind.LINE, line.name, at_ms), Kind.LINE, line.name, at_ms, snap, now_ms)
        out.append(self._record(crossing, model, track, memory.label, Phase.INSTANT, at_ms, direction="in" if now.side > 0 else "out"))

    @staticmethod
    def _side(memory: _TrackMemory, line: LineRule, box: Box, ms: int) -> LineSide | None:
        """Which side of the line the box's anchor is on at `ms`, remembered (None, and nothing remembered, when it is
        on the line)."""
        p = line.filter.anchor.of(box)
        now_side = side(p, line.a, line.b, margin=LINE_MARGIN * (box[3] - box[1]))
        if now_side == 0:
            return None
        memory.sides[line.name] = LineSide(now_side, p, ms)
        return memory.sides[line.name]

    def _touch(
        self,
        out: list[Event],
        model: str,
        track: int,
        memory: _TrackMemory,
        kind: Kind,
        where: str,
        snap: Snapshot,
        now_ms: int,
        started_ms: int | None = None,
    ) -> None:
        """Start the event, or keep it: a better snapshot is sent as an update, at most once per interval.

        `started_ms`: when the event began, where that is known to be before the frame that shows it (a loitering
        began when the stay passed the zone's limit, which may fall between samples or while the track was lost)."""
        opened = memory.opened.get((kind, where))
        if opened is None:
            start = now_ms if started_ms is None else started_ms
            opened = _Open(_event_id(self.camera_id, model, track, kind, where, start), kind, where, start, snap, now_ms)
            memory.opened[(kind, where)] = opened
            out.append(self._record(opened, model, track, memory.label, Phase.START, start))
            return
        if snap.score > opened.snapshot.score:
            opened.snapshot, opened.improved = snap, True
        if opened.improved and now_ms - opened.last_sent_ms >= self.settings.update_interval_s * 1000:
            opened.improved, opened.last_sent_ms = False, now_ms
            out.append(self._record(opened, model, track, memory.label, Phase.UPDATE, now_ms))

    def _record(self, o: _Open, model: str, track: int, label: str, phase: Phase, at_ms: int, direction: str = "") -> Event:
        return Event(o.id, self.camera_id, model, o.kind, phase, track, label, o.start_ms, at_ms, o.snapshot, o.where, direction)


def _event_id(camera_id: str, model: str, track: int, kind: Kind, where: str, start_ms: int) -> str:
    """Readable and unique: the start time tells two visits of one track apart, and tracks of a tracker that
    started afresh (its ids count from 1 again)."""
    return f"{camera_id}/{model}/{kind.value}/{where or '-'}/{track}/{start_ms}"
