"""The events stage as Ray actors: `events.actors` members of one consumer group on the results topic, each
running an `EventsStage`, and what the runner does with them (start, hand manifest edits on, drain, stop).

An actor that dies is restarted by Ray and its `run` call retried (`max_task_retries=-1`): it rejoins the
group and takes its partitions over from the last committed transaction, so a death costs neither events
nor duplicates. Its own local log (`<run>/events.jsonl`, where results logs are kept) gets only committed
events, after their transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import ray

from camerafleet import actor_metrics as metrics
from camerafleet.api.manifest import FleetSpec, LineSpec, ZoneSpec
from camerafleet.bucket import open_bucket
from camerafleet.clip_store import ClipStore
from camerafleet.events_stage import EventsStage, event_record
from camerafleet.logs import configure_logging
from camerafleet.summary import read_records, summarize_events
from camerafleet.topics import end_offsets, wait_committed
from camerafleet.tracking.camera import CameraRules
from camerafleet.tracking.clips import ClipSettings
from camerafleet.tracking.events import Filter, LineRule, Phase, ZoneRule
from camerafleet.tracking.tracker import TrackerSettings

log = logging.getLogger("camerafleet.events")

STEP_MS = 500
STOP_WAIT_S = 30.0


class _TransactionVerificationRetries(logging.Filter):
    """Kafka 3.6+ checks that a transactional write's partition is part of the transaction, and while the
    coordinator still finishes the previous transaction it answers NOT_ENOUGH_REPLICAS, which aiokafka logs
    as a warning and retries (aio-libs/aiokafka#1172): nothing is lost, but a batch a second would log one.
    Only that warning is left out of the events actors' logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NotEnoughReplicasError" not in record.getMessage()


def _filter(shape: ZoneSpec | LineSpec) -> Filter:
    return Filter(frozenset(shape.models), frozenset(shape.labels), shape.anchor)


def camera_rules(spec: FleetSpec) -> dict[str, CameraRules]:
    """Each camera's zones, lines and tracking settings, as the manifest gives them."""
    tracker = TrackerSettings(max_lost_s=spec.events.max_lost_seconds, reid_max_lost_s=spec.events.reidentify_seconds)
    c = spec.events.clips
    clips = ClipSettings(round(c.pre_roll_seconds * 1000), round(c.post_roll_seconds * 1000)) if spec.events.keeps_clips else None
    return {
        c.id: CameraRules(
            zones=[ZoneRule(z.name, tuple((x, y) for x, y in z.points), _filter(z), z.loiter_seconds) for z in c.zones],
            lines=[
                LineRule(ln.name, (ln.points[0][0], ln.points[0][1]), (ln.points[1][0], ln.points[1][1]), _filter(ln)) for ln in c.lines
            ],
            reorder_window_ms=spec.events.reorder_window_ms,
            tracker=tracker,
            clips=clips,
        )
        for c in spec.cameras
    }


@ray.remote(max_restarts=-1, max_task_retries=-1)
class EventsActor:
    def __init__(self, spec_json: str, events_log: str | None, fleet: str):
        configure_logging()
        logging.getLogger("aiokafka.producer.sender").addFilter(_TransactionVerificationRetries())
        metrics.bind_fleet(fleet)
        self.spec = FleetSpec.model_validate_json(spec_json)
        self.events_log = events_log
        self.stopping = asyncio.Event()
        self.stopped = asyncio.Event()
        self.stage: EventsStage | None = None
        self.final: dict[str, Any] | None = None
        self.last_error: str | None = None

    async def run(self) -> None:
        """Track until `stop`; started again (Ray retries it) when the actor is restarted."""
        k = self.spec.kafka
        clips = ClipStore(open_bucket(self.spec.bucket), self.spec.events.clips.keep_days) if self.spec.events.keeps_clips else None
        stage = self.stage = EventsStage(
            k.bootstrap_servers,
            results_topic=k.results_topic,
            events_topic=k.events_topic,
            state_topic=k.events_state_topic,
            tracks_topic=k.events_tracks_topic,
            group=k.events_group,
            rules=camera_rules(self.spec),
            clips=clips,
        )
        await stage.start()
        try:
            while not self.stopping.is_set():
                try:
                    await stage.step(STEP_MS)
                except Exception as err:  # noqa: BLE001 - the batch was not committed: the group re-reads it
                    self.last_error = f"{type(err).__name__}: {err}"
                    log.error("events stage: a batch failed and is read again: %s", self.last_error)
                    await stage.stop()
                    await asyncio.sleep(1)
                    await stage.start()
                    continue
                committed = stage.take_committed()
                for e in committed:
                    if e.phase in (Phase.START, Phase.INSTANT):
                        tags = {"camera": e.camera_id, "kind": e.kind.value, "where": e.where or "-", "direction": e.direction or "-"}
                        metrics.events().inc(tags=tags)
                if self.events_log and committed:
                    self._append(committed)
        finally:
            self.final = self.stats()  # leaving the group forgets the cameras
            await stage.stop()
            if clips is not None:
                clips.close()
            self.stopped.set()

    def _append(self, events: list[Any]) -> None:
        assert self.events_log is not None
        os.makedirs(os.path.dirname(self.events_log) or ".", exist_ok=True)
        with open(self.events_log, "ab") as f:  # one write per batch; O_APPEND shares the file between actors
            f.write(b"".join(orjson.dumps(event_record(e)) + b"\n" for e in events))

    async def update_spec(self, spec_json: str) -> None:
        self.spec = FleetSpec.model_validate_json(spec_json)
        if self.stage is not None:
            self.stage.update_rules(camera_rules(self.spec))

    def stats(self) -> dict[str, Any]:
        stage = self.stage
        if stage is None:
            return {"counts": {}, "clip_frames": {}, "cameras": {}, "problems": [], "last_error": self.last_error}
        return {
            "counts": dict(stage.counts),
            "clip_frames": dict(stage.clips.counts) if stage.clips else {},
            "cameras": {c: dict(t.counts) for c, t in stage.cameras.items()},
            "problems": sorted({p for t in stage.cameras.values() for p in t.problems}),
            "last_error": self.last_error,
        }

    async def stop(self) -> dict[str, Any]:
        """Finish the batch in hand (committed, or re-read by the next run), leave the group; the stats."""
        self.stopping.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopped.wait(), STOP_WAIT_S)
        return self.final or self.stats()


class EventsPool:
    """The runner's side: the actors, and the totals of what they tracked."""

    def __init__(self, fleet: str, spec: FleetSpec, run_dir: Path, say: Any):
        self.fleet, self.spec, self.say = fleet, spec, say
        self.events_log = str(run_dir / "events.jsonl") if spec.results.local_log else None
        self.actors: list[Any] = []

    async def start(self) -> None:
        spec_json = self.spec.model_dump_json()
        e = self.spec.events
        actor = EventsActor.options(num_cpus=e.cpus_per_actor)  # type: ignore[attr-defined]
        self.actors = [actor.remote(spec_json, self.events_log, self.fleet) for _ in range(e.actors)]
        for a in self.actors:
            a.run.remote()  # runs until stop (retried by Ray on a restarted actor)
        self.say(f"events: {e.actors} actor(s) tracking into Kafka topic {self.spec.kafka.events_topic}")

    async def update_spec(self, spec: FleetSpec) -> None:
        self.spec = spec
        await asyncio.gather(*(a.update_spec.remote(spec.model_dump_json()) for a in self.actors), return_exceptions=True)

    async def drain(self, timeout_s: float) -> None:
        """Wait until the stage has committed every result written so far (the consumers have stopped)."""
        topic = self.spec.kafka.results_topic
        ends = (await end_offsets(self.spec.kafka.bootstrap_servers, [topic])).get(topic, {})
        want = {(topic, p): end for p, end in ends.items() if end > 0}
        behind = await wait_committed(self.spec.kafka.bootstrap_servers, self.spec.kafka.events_group, want, timeout_s)
        if behind:
            self.say(f"events: {sum(behind.values())} results not tracked within {timeout_s:.0f} s; the next run takes them")

    async def stop(self) -> dict[str, Any]:
        """Stop the actors; what the run's events add up to (from its events log where one is kept: every committed
        event once; else from the actors' own counts), each camera's results tracked, late or written twice, and
        zones or lines that do not fit their camera's frame."""
        answers = await asyncio.gather(*(a.stop.remote() for a in self.actors), return_exceptions=True)
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        stats = [a for a in answers if isinstance(a, Mapping)]
        summary = await asyncio.to_thread(self._logged)
        if summary is None:
            started: Counter[str] = Counter()
            for a in stats:
                started.update({k: v for k, v in a["counts"].items() if k != "foreign"})
            summary = {"started": dict(started), "cameras": {}}
        results: dict[str, Counter[str]] = {}
        for a in stats:
            for camera, c in a["cameras"].items():
                results.setdefault(camera, Counter()).update(c)
        summary["results"] = {c: dict(v) for c, v in sorted(results.items())}
        summary["problems"] = sorted({p for a in stats for p in a["problems"]})
        clip_frames: Counter[str] = Counter()
        for a in stats:
            clip_frames.update(a.get("clip_frames", {}))
        if clip_frames:
            summary["clip_frames"] = dict(clip_frames)
        return summary

    def _logged(self) -> dict[str, Any] | None:
        """The events log's sums; None where no log is kept (or no event came)."""
        if self.events_log is None or not os.path.exists(self.events_log):
            return None
        return summarize_events(read_records(Path(self.events_log)))
