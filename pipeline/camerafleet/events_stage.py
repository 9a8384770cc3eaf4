"""The events stage: a fleet's results topic in, events out, each camera's tracking kept with its offsets.

Members of one consumer group share the results topic's partitions; the topic is keyed by camera, so every
result of a camera reaches one member, in the order it was written (`tracking.camera` puts them back in
capture order). For each partition a member owns, one Kafka transaction per batch holds the batch's events,
the new tracking state of every camera the batch touched (on the state topic, compacted, keyed by camera)
and the consumed offsets. Either all of it is committed or none, so a member that dies, or a partition that
moves to another member, resumes from the last committed offsets with the state that goes with them:
nothing is tracked twice and no event is sent twice (readers use `read_committed`). Each partition has its
own transactional producer (`<group>.<partition>`), so a member that was thought dead and comes back is
fenced off by the broker when the partition's new owner starts its producer.

A camera's state is its trackers, its open events and the results waiting for their turn: a few KB for a
camera with a handful of tracks, sent compressed with every batch that touches the camera.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from camerafleet.clip_store import ClipStore
from camerafleet.kafka_access import client_options
from camerafleet.tracking.camera import CameraRules, CameraTracking, TrackedFrame
from camerafleet.tracking.events import Event

log = logging.getLogger("camerafleet.events")

STATE_LOAD_TIMEOUT_S = 90.0  # above the producers' transaction timeout (60 s): a dead member's open one is aborted by then
# Every camera's state goes to one partition of the state topic, whatever its number of partitions: a member
# taking over reads one partition from its start (compacted: a record per camera, 10 KB each for 4,096 cameras
# is 40 MB) instead of finding out where each camera's state went.
STATE_PARTITION = 0


def event_record(e: Event) -> dict[str, Any]:
    """An event as the events topic carries it (camelCase, like the results topic)."""
    d = asdict(e)
    snap = d.pop("snapshot")
    return {
        "id": e.id,
        "cameraId": e.camera_id,
        "model": e.model,
        "kind": e.kind.value,
        "phase": e.phase.value,
        "trackId": e.track_id,
        "label": e.label,
        "startMs": e.start_ms,
        "atMs": e.at_ms,
        "where": e.where or None,
        "direction": e.direction or None,
        "snapshot": {
            "captureTsMs": snap["capture_ms"],
            "uri": snap["uri"],
            "box": [round(v, 2) for v in e.snapshot.box],
            "score": snap["score"],
        },
    }


def tracks_record(camera_id: str, frame: TrackedFrame) -> dict[str, Any]:
    """A tracked frame as the tracks topic carries it: each confirmed track's id on that frame, with the box of the
    detection that continued it (the result's own box, so a reader finds the detection by it)."""
    return {
        "cameraId": camera_id,
        "captureTsMs": frame.capture_ms,
        "tracks": [
            {"model": model, "trackId": o.track_id, "label": o.label, "box": list(o.box), "score": o.score}
            for model, observations in sorted(frame.tracks.items())
            for o in observations
        ],
    }


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, stage: EventsStage):
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.stage.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        pass  # taken over when their first batch comes (`step`): aiokafka may hand out records before this returns


class EventsStage:
    """One member of the events stage's consumer group. `rules` are the cameras' zones and lines, by camera id."""

    def __init__(
        self,
        bootstrap: str,
        *,
        results_topic: str,
        events_topic: str,
        state_topic: str,
        tracks_topic: str,
        group: str,
        rules: Mapping[str, CameraRules],
        clips: ClipStore | None = None,
        max_batch: int = 500,
    ):
        self.bootstrap, self.results_topic, self.events_topic, self.state_topic = bootstrap, results_topic, events_topic, state_topic
        self.tracks_topic = tracks_topic
        self.group, self.rules, self.clips, self.max_batch = group, dict(rules), clips, max_batch
        self.consumer: AIOKafkaConsumer | None = None
        self.producers: dict[int, AIOKafkaProducer] = {}  # by results partition
        self.cameras: dict[str, CameraTracking] = {}
        self.partition_of: dict[str, int] = {}
        self.counts: Counter[str] = Counter()  # events by kind, and results not of the fleet's cameras ("foreign")
        self.committed: list[Event] = []  # events of the transactions committed since the caller last took them

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            **client_options(),
        )
        await self.consumer.start()
        self.consumer.subscribe([self.results_topic], listener=_Rebalance(self))

    async def take_over(self, assigned: list[TopicPartition]) -> None:
        """Partitions given to this member: a producer for each (fencing any earlier owner's), and the saved state
        of their cameras."""
        partitions = {tp.partition for tp in assigned if tp.topic == self.results_topic}
        for p in sorted(partitions - set(self.producers)):
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                transactional_id=f"{self.group}.{p}",
                enable_idempotence=True,
                acks="all",
                compression_type="gzip",
                **client_options(),
            )
            await producer.start()
            self.producers[p] = producer
        for camera, (partition, state) in (await self._saved_states()).items():
            rules = self.rules.get(camera)
            if partition in partitions and rules is not None:
                self.cameras[camera] = CameraTracking.from_state(camera, rules, state)
                self.partition_of[camera] = partition

    async def release(self, revoked: list[TopicPartition]) -> None:
        """Partitions taken away: their cameras' state is the new owner's to load (it was committed with every batch)."""
        partitions = {tp.partition for tp in revoked if tp.topic == self.results_topic}
        for camera in [c for c, p in self.partition_of.items() if p in partitions]:
            del self.cameras[camera], self.partition_of[camera]
        for p in partitions:
            producer = self.producers.pop(p, None)
            if producer is not None:
                await producer.stop()

    async def _saved_states(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """The last committed state of every camera on the state topic (compacted: one record per camera, and
        the versions compaction has not removed yet).

        Read committed, up to the partition's end as it is now: other members' transactions are open most of
        the time (one per batch), and a committed reader stops before the first open one until it ends, while
        the state this member needs may have been committed after it. So the end is taken uncommitted, and the
        committed reader waits until it gets there (a batch's time; a dead member's open transaction is aborted
        by the broker after its timeout)."""
        tp = TopicPartition(self.state_topic, STATE_PARTITION)
        states: dict[str, tuple[int, dict[str, Any]]] = {}
        ender = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, **client_options())
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, isolation_level="read_committed", **client_options()
        )
        await ender.start()
        await reader.start()
        try:
            end = (await ender.end_offsets([tp]))[tp]
            reader.assign([tp])
            await reader.seek_to_beginning(tp)
            async with asyncio.timeout(STATE_LOAD_TIMEOUT_S):
                while await reader.position(tp) < end:
                    for records in (await reader.getmany(tp, timeout_ms=1000)).values():
                        for rec in records:
                            if rec.key is None:
                                continue
                            if rec.value is None:  # a tombstone: the camera's state was dropped
                                states.pop(rec.key.decode(), None)
                            else:
                                saved = orjson.loads(rec.value)
                                states[rec.key.decode()] = (saved["partition"], saved["state"])
            return states
        finally:
            await reader.stop()
            await ender.stop()

    async def step(self, timeout_ms: int = 1000) -> int:
        """Read one batch and commit what it gives, partition by partition; returns the results read."""
        assert self.consumer is not None, "start() first"
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_batch)
        if new := [tp for tp in batch if tp.partition not in self.producers]:
            await self.take_over(new)
        for tp, records in sorted(batch.items()):
            await self._commit(tp, records)
        return sum(len(r) for r in batch.values())

    async def _commit(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        producer = self.producers[tp.partition]
        touched: set[str] = set()
        events: list[Event] = []
        async with producer.transaction():
            for rec in records:
                camera = rec.key.decode() if rec.key else ""
                tracking = self.tracking(camera, tp.partition)
                if tracking is None:
                    self.counts["foreign"] += 1
                    continue
                touched.add(camera)
                for e in tracking.take(orjson.loads(rec.value)):
                    events.append(e)
                    await producer.send(self.events_topic, orjson.dumps(event_record(e)), key=rec.key)
            if self.clips is not None:  # before the commit: a batch read again keeps its frames again (harmless)
                await self.clips.keep((c, ms, uri) for c in sorted(touched) for ms, uri in self.cameras[c].take_kept())
            for camera in sorted(touched):
                for frame in self.cameras[camera].take_tracked():
                    await producer.send(self.tracks_topic, orjson.dumps(tracks_record(camera, frame)), key=camera.encode())
                saved = {"partition": tp.partition, "state": self.cameras[camera].to_state()}
                await producer.send(self.state_topic, orjson.dumps(saved), key=camera.encode(), partition=STATE_PARTITION)
            await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, self.group)
        self.counts.update(e.kind.value for e in events)
        self.committed += events

    def take_committed(self) -> list[Event]:
        """The events committed since the last call (for the caller's own log and metrics)."""
        committed, self.committed = self.committed, []
        return committed

    def update_rules(self, rules: Mapping[str, CameraRules]) -> None:
        """A manifest edit: cameras' zones, lines and settings change from their next result on; a removed camera's
        tracking is dropped (its saved state stays, for when it comes back)."""
        self.rules = dict(rules)
        for camera in list(self.cameras):
            if camera in self.rules:
                self.cameras[camera].update_rules(self.rules[camera])
            else:
                del self.cameras[camera], self.partition_of[camera]

    def tracking(self, camera: str, partition: int) -> CameraTracking | None:
        """The camera's tracking (new if none was saved); None for a camera that is not the fleet's."""
        tracking = self.cameras.get(camera)
        if tracking is None and camera in self.rules:
            tracking = self.cameras[camera] = CameraTracking(camera, self.rules[camera])
            self.partition_of[camera] = partition
        return tracking

    async def stop(self) -> None:
        """Leave the group. What was tracked since the last commit is dropped: the next owner (this one, started
        again) resumes from the committed state and offsets."""
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
        for producer in self.producers.values():
            await producer.stop()
        self.producers.clear()
        self.cameras.clear()
        self.partition_of.clear()
