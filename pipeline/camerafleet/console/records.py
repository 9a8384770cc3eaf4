"""The console API's records: what the page (and anyone scripting against the console) reads, with
camelCase keys like the manifest's. Nothing here carries a bucket URI or a camera's source URL: frames
are addressed by camera id and sequence number only."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from camerafleet.api.source_report import SourceProblem

MAX_DETECTIONS = 100  # per model and frame: a model gone wild must not make the page heavy


class Record(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class HealthFlag(StrEnum):
    """What the tile warns about: `down` from the producer, the others from the camera-health model."""

    DOWN = "down"
    DARK = "dark"
    COVERED = "covered"
    BLURRED = "blurred"


class Detection(Record):
    model: str = Field(description="The model that found it.")
    label: str = Field(description="What it is (the model's class name).")
    score: float = Field(description="The model's confidence, 0 to 1.")
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in frame pixels.")
    landmarks: list[tuple[float, float]] | None = Field(default=None, description="Face landmarks (x, y) in frame pixels.")
    track_id: int | None = Field(default=None, description="The events stage's track id (per camera and model), once its tracks came.")


class _RawDetection(BaseModel):
    """A detection as models publish it (`models/boxes.py`); anything else in a result is ignored."""

    model_config = ConfigDict(extra="ignore")

    box: tuple[float, float, float, float]
    label: str = Field(default="object", max_length=100)
    score: float
    landmarks: list[tuple[float, float]] | None = None


class ModelResult(Record):
    """One model's result for one frame, as far as the console shows it."""

    model: str = Field(description="Model name.")
    detections: list[Detection] = Field(description="Its detections, best first, at most MAX_DETECTIONS.")
    flags: list[str] = Field(description="Its flags (the camera-health model's dark / covered / blurred).")
    batch_size: int | None = Field(default=None, description="Frames in the model batch that carried this frame.")
    batch_ms: float | None = Field(default=None, description="How long that batch took, in ms.")

    @classmethod
    def of(cls, model: str, result: dict[str, Any]) -> ModelResult:
        """Parse leniently: a malformed detection is left out rather than hiding the frame."""
        detections = []
        for raw in result.get("detections", [])[:MAX_DETECTIONS] if isinstance(result.get("detections"), list) else []:
            try:
                d = _RawDetection.model_validate(raw)
            except ValidationError:
                continue
            detections.append(Detection(model=model, label=d.label, score=d.score, box=d.box, landmarks=d.landmarks))
        flags = result.get("flags")
        size, batch_ms = result.get("batchSize"), result.get("batchMs")
        return cls(
            model=model,
            detections=detections,
            flags=[f for f in flags if isinstance(f, str)] if isinstance(flags, list) else [],
            batch_size=size if isinstance(size, int) else None,
            batch_ms=float(batch_ms) if isinstance(batch_ms, int | float) else None,
        )


class FrameView(Record):
    seq: int = Field(description="The frame's sequence number; its JPEG is at /api/cameras/<id>/frames/<seq>.")
    capture_ts_ms: int = Field(description="Capture time, ms since the Unix epoch.")
    latency_ms: int | None = Field(description="Capture to result, in ms.")
    width: int | None = Field(description="Frame width in pixels (the boxes' coordinate space).")
    height: int | None = Field(description="Frame height in pixels.")
    detections: list[Detection] = Field(description="Every model's detections.")
    flags: list[str] = Field(description="Health flags the models set on this frame.")
    tracked: bool = Field(
        default=False, description="Whether the events stage's tracks of this frame came (its detections carry track ids)."
    )


class RecentFrame(Record):
    seq: int = Field(description="Sequence number.")
    capture_ts_ms: int = Field(description="Capture time, ms since the Unix epoch.")
    latency_ms: int | None = Field(description="Capture to result, in ms.")
    labels: dict[str, int] = Field(description="Detections by label.")
    flags: list[str] = Field(description="Health flags.")

    @classmethod
    def of(cls, frame: FrameView) -> RecentFrame:
        labels: dict[str, int] = {}
        for d in frame.detections:
            labels[d.label] = labels.get(d.label, 0) + 1
        return cls(seq=frame.seq, capture_ts_ms=frame.capture_ts_ms, latency_ms=frame.latency_ms, labels=labels, flags=frame.flags)


class _RawTrack(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="ignore")

    model: str
    track_id: int
    box: tuple[float, float, float, float]


class TracksRecord(BaseModel):
    """A record of the events stage's tracks topic (`events_stage.tracks_record`): a frame's confirmed tracks."""

    model_config = ConfigDict(alias_generator=to_camel, extra="ignore")

    camera_id: str
    capture_ts_ms: int
    tracks: list[_RawTrack]

    def track_ids(self) -> dict[tuple[str, tuple[float, ...]], int]:
        """Track id by model and box (rounded: the boxes are the result's own, read from JSON twice)."""
        return {(t.model, box_key(t.box)): t.track_id for t in self.tracks}


def box_key(box: tuple[float, float, float, float]) -> tuple[float, ...]:
    return tuple(round(v, 1) for v in box)


class Shape(Record):
    """A zone (polygon) or a directed line (crossing to the right of its first point to its second is "in") of the
    camera's manifest, in frame pixels: the tiles draw them."""

    kind: Literal["zone", "line"] = Field(description="zone or line.")
    name: str = Field(description="Its name in the manifest.")
    points: list[tuple[float, float]] = Field(description="Its points (x, y) in frame pixels.")


class EventView(Record):
    """One record of an event from the events topic (its start, end, or an instant one such as a crossing)."""

    id: str = Field(description="The event's id, the same for its start and end.")
    camera_id: str = Field(description="Camera id.")
    model: str = Field(description="The model whose detections were tracked.")
    kind: Literal["object", "zone", "loiter", "line"] = Field(description="object (a track), zone, loiter or line.")
    phase: Literal["start", "end", "instant"] = Field(description="start, end or instant (crossings, loitering).")
    where: str | None = Field(description="The zone or line.")
    direction: Literal["in", "out"] | None = Field(description="A crossing's direction.")
    label: str = Field(description="What was tracked (the model's class name).")
    track_id: int = Field(description="The track's id (per camera and model).")
    start_ms: int = Field(description="When the event started (capture time, ms since the Unix epoch).")
    at_ms: int = Field(description="When this record's phase happened.")
    box: tuple[float, float, float, float] = Field(description="The track's box on its best frame so far (x1, y1, x2, y2).")
    snapshot_ms: int = Field(description="That frame's capture time; its JPEG is at /api/cameras/<id>/snapshots/<ms> while kept.")


class Timeline(Record):
    events: list[EventView] = Field(description="Matching events, newest first.")
    kept: int = Field(description="Event records the console keeps (the most recent, since it started or a little before).")
    cameras: list[str] = Field(description="Cameras with kept events (the filters' choices).")
    places: list[str] = Field(description="Zones and lines with kept events.")
    labels: list[str] = Field(description="Labels with kept events.")
    clips: bool = Field(default=False, description="Whether events have clips (/api/clip.mp4?event=<id>).")


class CameraTile(Record):
    camera_id: str = Field(description="Camera id from the manifest.")
    version: int = Field(description="Grows with every change; the live stream sends a tile only when it changed.")
    up: bool | None = Field(description="Whether the source delivers frames; empty where this process runs no producers.")
    problem: SourceProblem | None = Field(description="Why the source is down, while it is.")
    flags: list[HealthFlag] = Field(description="down, then the latest frame's health flags.")
    fps: float = Field(description="Processed frames per second over the last 10 s.")
    latency_ms_p50: float | None = Field(description="Median capture-to-result latency of recent frames, ms.")
    latency_ms_p99: float | None = Field(description="99th percentile of the same, ms.")
    produced: int | None = Field(description="Frames sampled (producers' count); empty where this process runs no producers.")
    processed: int = Field(description="Frames processed since the console started.")
    dropped: int = Field(description="Frames dropped (with a reason) since the console started.")
    failed: int = Field(description="Frames failed (with a reason) since the console started.")
    latest: FrameView | None = Field(
        description="The latest processed frame, with its detections; of a tracked camera, the latest whose track ids came."
    )
    shapes: list[Shape] = Field(default=[], description="The camera's zones and lines.")


class ModelView(Record):
    name: str = Field(description="Model name.")
    replicas: int | None = Field(description="Running replicas, when Serve runs in this Ray cluster.")
    max_replicas: int = Field(description="The most replicas the autoscaler may run (the manifest's maxReplicas).")
    mean_batch_size: float | None = Field(description="Mean frames per batch over its recent batches.")
    batch_ms_p50: float | None = Field(description="Median batch time, ms.")


class PoolView(Record):
    pool: str = Field(description="producer or consumer.")
    actors: int = Field(description="Actors running now.")
    desired_actors: int = Field(description="Actors the pool should have; more than `actors` while new ones wait for room.")
    max_actors: int | None = Field(description="The autoscaler's maxActors; empty when the pool's size is fixed.")


class FleetHeader(Record):
    fleet: str = Field(description="Fleet name.")
    cameras: int = Field(description="Cameras in the manifest.")
    cameras_down: int = Field(description="Cameras whose source is down.")
    processed_per_s: float = Field(description="Processed frames per second, whole fleet, over the last 10 s.")
    processed: int = Field(description="Frames processed since the console started.")
    dropped: int = Field(description="Frames dropped since the console started.")
    failed: int = Field(description="Frames failed since the console started.")
    produced: int | None = Field(description="Frames sampled in this run; empty where this process runs no producers.")
    shed_slots: int | None = Field(description="Slots shed by admission in this run (not frames: never captured).")
    lag: int | None = Field(description="Announced frames without a result yet (the consumer group's backlog).")
    models: list[ModelView] = Field(description="Each model's replicas and batching.")
    pools: list[PoolView] = Field(description="The producer and consumer pools this process runs.")


class FleetSnapshot(Record):
    header: FleetHeader = Field(description="Fleet-wide figures.")
    camera_ids: list[str] = Field(description="Every camera, in manifest order (the grid's order).")
    tiles: list[CameraTile] = Field(description="Tiles that changed since the last snapshot sent (all when `full`).")
    full: bool = Field(description="Whether `tiles` holds every camera.")


class CameraDetail(Record):
    tile: CameraTile = Field(description="The camera's tile.")
    recent: list[RecentFrame] = Field(description="Its recent processed frames, newest first.")
    dropped_by_reason: dict[str, int] = Field(description="Dropped frames by reason, since the console started.")
    failed_by_reason: dict[str, int] = Field(description="Failed frames by reason, since the console started.")
    shed_slots: int | None = Field(description="Slots shed by admission in this run.")
    down_slots: int | None = Field(description="Slots missed while the source was down, in this run.")
    reconnects: int | None = Field(description="Times the source went down and was reopened, in this run.")
    source_problems: dict[str, int] = Field(description="Times the source went down, by problem.")
    stall_timeout_s: float = Field(description="How long a silent source takes to be reported down (stallTimeoutSeconds).")
