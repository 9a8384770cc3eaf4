"""What the console knows about a running fleet, kept apart from how it is served: a pure state fed by
result records (from the results topic), event records (from the events topic), producer stats, the consumer
group's lag and Serve's replica counts, and read as the typed records the page's API returns.

Every figure is computed from what the console itself saw since it started, so a console restarted in the
middle of a run starts its counters at zero (the run's summary and Prometheus hold the whole run)."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from camerafleet.api.messages import ResultRecord
from camerafleet.api.outcomes import Outcome, Reason
from camerafleet.console.records import (
    CameraDetail,
    CameraTile,
    EventView,
    FleetHeader,
    FleetSnapshot,
    FrameView,
    HealthFlag,
    ModelResult,
    ModelView,
    PoolView,
    RecentFrame,
    Shape,
    Timeline,
    TracksRecord,
    box_key,
)
from camerafleet.stats import ProducerCameraStats
from camerafleet.summary import percentiles

# Processed frames kept per camera: the frames the API serves, and those the events stage's tracks are put on. Its
# tracks come a reorder window (2 s) and a batch (about 1 s) after the results: 45 frames at 15 fps.
RECENT_FRAMES = 64
DETAIL_FRAMES = 20  # of them in the detail view's history
# A tracked camera's tile shows the newest frame whose tracks came; when none came for this long (the events stage
# is down or behind), the newest frame, without track ids.
TRACKS_FRESH_S = 10.0
LATENCIES_KEPT = 500  # per camera, for p50/p99
RATE_WINDOW_S = 10.0  # fps and throughput are averaged over this window
MODEL_BATCHES_KEPT = 200  # per model, for its batch size and time
# Event records kept, fleet-wide: the timeline's and the event list's history. An event record is about 0.5 KB
# here, and 150 cameras with a few people each make a few records a second: 2,000 are some minutes, 1 MB.
EVENTS_KEPT = 2000
TIMELINE_MOST = 500  # records one timeline answer carries

_Record = TypeVar("_Record", ResultRecord, TracksRecord)


class FrameNotKept(LookupError):
    """A frame the console does not serve: an unknown camera, or a frame outside the camera's recent ones."""


@dataclass
class _Frame:
    view: FrameView
    uri: str


@dataclass
class _Camera:
    """One camera's state; `version` grows with every change so the page is sent only what changed."""

    camera_id: str
    stall_timeout_s: float
    processed: int = 0
    dropped: Counter[Reason] = field(default_factory=Counter)
    failed: Counter[Reason] = field(default_factory=Counter)
    latencies_ms: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))
    processed_at: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    recent: deque[_Frame] = field(default_factory=lambda: deque(maxlen=RECENT_FRAMES))
    producer: ProducerCameraStats | None = None
    tracks_at: float | None = None  # when the last of its frames' tracks came (the console's clock)
    version: int = 0

    def shown(self, now: float) -> FrameView | None:
        """The frame its tile shows."""
        if self.tracks_at is not None and now - self.tracks_at <= TRACKS_FRESH_S:
            for f in reversed(self.recent):
                if f.view.tracked:
                    return f.view
        return self.recent[-1].view if self.recent else None


@dataclass(frozen=True)
class _Event:
    view: EventView
    snapshot_uri: str  # where its snapshot frame is, in the bucket (never sent to the page)


@dataclass
class _Model:
    max_replicas: int
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=MODEL_BATCHES_KEPT))
    batch_ms: deque[float] = field(default_factory=lambda: deque(maxlen=MODEL_BATCHES_KEPT))
    replicas: int | None = None


class FleetView:
    """The console's state of one fleet. Not thread-safe: one event loop feeds and reads it."""

    def __init__(
        self,
        fleet: str,
        cameras: dict[str, float],
        models: dict[str, int],
        clock: Callable[[], float] = time.monotonic,
        shapes: dict[str, list[Shape]] | None = None,
    ):
        """`cameras`: camera id -> its stallTimeoutSeconds; `models`: model name -> its maxReplicas, in manifest order;
        `shapes`: camera id -> its zones and lines."""
        self.fleet = fleet
        self.clock = clock
        self.cameras = {cam: _Camera(cam, stall) for cam, stall in cameras.items()}
        self.models = {name: _Model(most) for name, most in models.items()}
        self.shapes = shapes or {}
        self.lag: int | None = None
        self.pools: list[PoolView] = []
        self.events: deque[_Event] = deque(maxlen=EVENTS_KEPT)
        self.ignored_records = 0  # records of cameras this fleet does not have, or not readable as results or events

    # -- feeding ---------------------------------------------------------------------------------------

    def set_fleet(self, cameras: dict[str, float], models: dict[str, int], shapes: dict[str, list[Shape]] | None = None) -> None:
        """The manifest changed: keep the state of cameras and models that stay."""
        if (shapes or {}) != self.shapes:
            self.shapes = shapes or {}
            for state in self.cameras.values():
                state.version += 1
        self.cameras = {cam: self.cameras.get(cam) or _Camera(cam, stall) for cam, stall in cameras.items()}
        self.models = {name: self.models.get(name) or _Model(most) for name, most in models.items()}
        for cam, stall in cameras.items():
            self.cameras[cam].stall_timeout_s = stall
        for name, most in models.items():
            self.models[name].max_replicas = most

    def add_result(self, raw: dict[str, object]) -> None:
        """One result record as the consumers publish it (`ResultRecord.to_dict()` without the raw value)."""
        if (own := self._own(ResultRecord, raw)) is None:
            return
        record, cam = own
        cam.version += 1
        if record.outcome != Outcome.PROCESSED:
            if record.reason is not None:
                (cam.dropped if record.outcome == Outcome.DROPPED else cam.failed)[record.reason] += 1
            return
        cam.processed += 1
        cam.processed_at.append(self.clock())
        if record.latency_ms is not None:
            cam.latencies_ms.append(record.latency_ms)
        results = [ModelResult.of(name, result) for name, result in (record.models or {}).items()]
        for res in results:
            model = self.models.get(res.model)
            if model is not None and res.batch_size is not None:
                model.batch_sizes.append(res.batch_size)
                if res.batch_ms is not None:
                    model.batch_ms.append(res.batch_ms)
        if record.seq is None or record.uri is None:
            return
        frame = FrameView(
            seq=record.seq,
            capture_ts_ms=record.capture_ts_ms or 0,
            latency_ms=record.latency_ms,
            width=record.width,
            height=record.height,
            detections=[d for res in results for d in res.detections],
            flags=sorted({f for res in results for f in res.flags}),
        )
        cam.recent.append(_Frame(frame, record.uri))

    def add_tracks(self, raw: dict[str, Any]) -> None:
        """One record of the tracks topic: the frame's detections get their track ids (a frame already gone from the
        recent ones is passed over)."""
        if (own := self._own(TracksRecord, raw)) is None:
            return
        record, cam = own
        frame = next((f for f in reversed(cam.recent) if f.view.capture_ts_ms == record.capture_ts_ms), None)
        if frame is None:
            return
        ids = record.track_ids()
        detections = [d.model_copy(update={"track_id": ids.get((d.model, box_key(d.box)))}) for d in frame.view.detections]
        frame.view = frame.view.model_copy(update={"detections": detections, "tracked": True})
        cam.tracks_at = self.clock()
        cam.version += 1

    def add_event(self, raw: dict[str, Any]) -> None:
        """One record of the events topic (`events_stage.event_record`); updates of open events are not kept (the
        timeline shows when things started and ended)."""
        if raw.get("phase") == "update":
            return
        try:
            snapshot = raw["snapshot"]
            event = EventView.model_validate(
                {**{k: v for k, v in raw.items() if k != "snapshot"}, "box": snapshot["box"], "snapshotMs": snapshot["captureTsMs"]}
            )
            uri = str(snapshot["uri"])
        except (ValidationError, KeyError, TypeError):
            self.ignored_records += 1
            return
        if event.camera_id not in self.cameras:
            self.ignored_records += 1
            return
        self.events.append(_Event(event, uri))

    def timeline(self, camera: str | None = None, place: str | None = None, label: str | None = None, kind: str | None = None) -> Timeline:
        """Kept event records that match every filter given, newest first."""
        kept = [e.view for e in self.events]
        matching = [
            e
            for e in reversed(kept)
            if (camera is None or e.camera_id == camera)
            and (place is None or e.where == place)
            and (label is None or e.label == label)
            and (kind is None or e.kind == kind)
        ]
        return Timeline(
            events=matching[:TIMELINE_MOST],
            kept=len(kept),
            cameras=sorted({e.camera_id for e in kept}),
            places=sorted({e.where for e in kept if e.where}),
            labels=sorted({e.label for e in kept}),
        )

    def snapshot_uri(self, camera_id: str, capture_ms: int) -> str:
        """The bucket URI of the snapshot frame of a kept event of the camera; FrameNotKept otherwise."""
        for e in reversed(self.events):
            if e.view.camera_id == camera_id and e.view.snapshot_ms == capture_ms:
                return e.snapshot_uri
        raise FrameNotKept(f"camera {camera_id!r} has no kept event with a snapshot at {capture_ms}")

    def event_span(self, event_id: str) -> tuple[str, int, int]:
        """The camera of a kept event, its start and its end (or its latest record, while it goes on); FrameNotKept
        for an event the console does not keep."""
        records = [e.view for e in self.events if e.view.id == event_id]
        if not records:
            raise FrameNotKept("no such event among the console's recent events")
        return records[0].camera_id, records[0].start_ms, max(r.at_ms for r in records)

    def update_producers(self, stats: dict[str, ProducerCameraStats]) -> None:
        for cam_id, stats_of in stats.items():
            cam = self.cameras.get(cam_id)
            if cam is not None and _producer_changed(cam.producer, stats_of):
                cam.producer = stats_of
                cam.version += 1

    def update_lag(self, lag: int | None) -> None:
        self.lag = lag

    def update_pools(self, pools: list[PoolView]) -> None:
        self.pools = pools

    def update_replicas(self, replicas: dict[str, int]) -> None:
        """Model name -> its running replicas."""
        for name, running in replicas.items():
            if name in self.models:
                self.models[name].replicas = running

    # -- reading ---------------------------------------------------------------------------------------

    def header(self) -> FleetHeader:
        now = self.clock()
        cams = self.cameras.values()
        produced = [c.producer.produced for c in cams if c.producer is not None]
        return FleetHeader(
            fleet=self.fleet,
            cameras=len(self.cameras),
            cameras_down=sum(1 for c in cams if _health(c) == HealthFlag.DOWN),
            processed_per_s=round(sum(_rate(c.processed_at, now) for c in cams), 2),
            processed=sum(c.processed for c in cams),
            dropped=sum(sum(c.dropped.values()) for c in cams),
            failed=sum(sum(c.failed.values()) for c in cams),
            produced=sum(produced) if produced else None,
            shed_slots=sum(c.producer.shed_slots for c in cams if c.producer is not None) if produced else None,
            lag=self.lag,
            models=[
                ModelView(
                    name=name,
                    replicas=m.replicas,
                    max_replicas=m.max_replicas,
                    mean_batch_size=round(sum(m.batch_sizes) / len(m.batch_sizes), 2) if m.batch_sizes else None,
                    batch_ms_p50=percentiles(list(m.batch_ms))["p50"],
                )
                for name, m in self.models.items()
            ],
            pools=self.pools,
        )

    def tile(self, camera_id: str) -> CameraTile:
        cam = self._camera(camera_id)
        now = self.clock()
        lat = percentiles(list(cam.latencies_ms))
        p = cam.producer
        return CameraTile(
            camera_id=cam.camera_id,
            version=cam.version,
            up=None if p is None else p.source_up,
            problem=None if p is None or p.source_up else p.last_problem,
            flags=_flags(cam),
            fps=round(_rate(cam.processed_at, now), 2),
            latency_ms_p50=lat["p50"],
            latency_ms_p99=lat["p99"],
            produced=None if p is None else p.produced,
            processed=cam.processed,
            dropped=sum(cam.dropped.values()),
            failed=sum(cam.failed.values()),
            latest=cam.shown(now),
            shapes=self.shapes.get(camera_id, []),
        )

    def snapshot(self, since: dict[str, int] | None = None) -> FleetSnapshot:
        """The header and the tiles of cameras whose version differs from `since` (all when None)."""
        tiles = [self.tile(c) for c, cam in self.cameras.items() if since is None or since.get(c) != cam.version]
        return FleetSnapshot(header=self.header(), tiles=tiles, camera_ids=list(self.cameras), full=since is None)

    def versions(self) -> dict[str, int]:
        return {c: cam.version for c, cam in self.cameras.items()}

    def detail(self, camera_id: str) -> CameraDetail:
        cam = self._camera(camera_id)
        p = cam.producer
        return CameraDetail(
            tile=self.tile(camera_id),
            recent=[RecentFrame.of(f.view) for f in list(reversed(cam.recent))[:DETAIL_FRAMES]],
            dropped_by_reason={r.value: n for r, n in sorted(cam.dropped.items())},
            failed_by_reason={r.value: n for r, n in sorted(cam.failed.items())},
            shed_slots=None if p is None else p.shed_slots,
            down_slots=None if p is None else p.down_slots,
            reconnects=None if p is None else p.reconnects,
            source_problems={} if p is None else {k.value: n for k, n in sorted(p.source_problems.items())},
            stall_timeout_s=cam.stall_timeout_s,
        )

    def frame_uri(self, camera_id: str, seq: int) -> str:
        """The bucket URI of one of the camera's recent processed frames; FrameNotKept otherwise."""
        for f in self._camera(camera_id).recent:
            if f.view.seq == seq:
                return f.uri
        raise FrameNotKept(f"camera {camera_id!r} has no recent processed frame {seq}: the console serves its last {RECENT_FRAMES}")

    def _own(self, kind: type[_Record], raw: dict[str, Any]) -> tuple[_Record, _Camera] | None:
        """A record parsed as `kind`, with its camera; None, and counted, when it is not a record of this fleet's."""
        try:
            record = kind.model_validate(raw)
        except ValidationError:
            self.ignored_records += 1
            return None
        cam = self.cameras.get(record.camera_id)
        if cam is None:
            self.ignored_records += 1
            return None
        return record, cam

    def _camera(self, camera_id: str) -> _Camera:
        cam = self.cameras.get(camera_id)
        if cam is None:
            raise FrameNotKept("no such camera in this fleet")
        return cam


def _rate(times: deque[float], now: float) -> float:
    recent = sum(1 for t in times if now - t <= RATE_WINDOW_S)
    return recent / RATE_WINDOW_S


def _health(cam: _Camera) -> HealthFlag | None:
    return HealthFlag.DOWN if cam.producer is not None and not cam.producer.source_up else None


def _flags(cam: _Camera) -> list[HealthFlag]:
    """Down (from the producer) first, then what the latest processed frame's health model saw."""
    down = [HealthFlag.DOWN] if _health(cam) else []
    known = {flag.value for flag in HealthFlag}
    seen = [HealthFlag(f) for f in cam.recent[-1].view.flags if f in known] if cam.recent else []
    return down + seen


def _producer_changed(old: ProducerCameraStats | None, new: ProducerCameraStats) -> bool:
    if old is None:
        return True
    return (old.produced, old.source_up, old.last_problem, old.shed_slots) != (
        new.produced,
        new.source_up,
        new.last_problem,
        new.shed_slots,
    )
