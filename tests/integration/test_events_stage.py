"""The events stage on a real Kafka broker: results of two cameras in, the scene's crossings, zone visits and
loitering out; a stage stopped halfway and another started in its place (the same consumer group) give the
same events and tracks as one that ran throughout, none twice and none missing; results of a camera the fleet
does not have are counted, not tracked."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from camerafleet.events_stage import EventsStage, event_record
from camerafleet.tracking.camera import CameraRules
from camerafleet_dev.devservers.kafka import KafkaServer
from tests.fixtures.scenes import DOCK, DOOR, records

pytestmark = pytest.mark.integration

RULES = CameraRules(zones=[DOCK], lines=[DOOR], reorder_window_ms=1000)
CAMERAS = ("lobby", "yard")
READ_TIMEOUT_S = 120  # generous: the broker shares two cores with the rest of the suite


async def create_topics(bootstrap: str, prefix: str) -> dict[str, str]:
    names = {"results": f"{prefix}.results", "events": f"{prefix}.events", "state": f"{prefix}.events-state", "tracks": f"{prefix}.tracks"}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(names["results"], num_partitions=2, replication_factor=1),
                NewTopic(names["events"], num_partitions=1, replication_factor=1),
                NewTopic(names["tracks"], num_partitions=1, replication_factor=1),
                NewTopic(names["state"], num_partitions=1, replication_factor=1, topic_configs={"cleanup.policy": "compact"}),
            ]
        )
    finally:
        await admin.close()
    return names


async def write_results(bootstrap: str, topic: str, rows: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for row in rows:
            await producer.send(topic, orjson.dumps(row), key=row["cameraId"].encode())
        await producer.flush()
    finally:
        await producer.stop()


async def read_events(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every committed event on the topic, in order."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    await reader.start()
    try:
        tp = TopicPartition(topic, 0)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        out: list[dict[str, Any]] = []
        while await reader.position(tp) < end:
            for recs in (await reader.getmany(timeout_ms=1000)).values():
                out += [orjson.loads(r.value) for r in recs]
        return out
    finally:
        await reader.stop()


async def run_stage(bootstrap: str, names: dict[str, str], group: str, until_read: int, max_batch: int = 500) -> int:
    """A stage member that reads until `until_read` results went through it, then stops (without ending tracks)."""
    stage = EventsStage(
        bootstrap,
        results_topic=names["results"],
        events_topic=names["events"],
        state_topic=names["state"],
        tracks_topic=names["tracks"],
        group=group,
        rules=dict.fromkeys(CAMERAS, RULES),
        max_batch=max_batch,
    )
    await stage.start()
    read = 0
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            while read < until_read:
                read += await stage.step()
    finally:
        await stage.stop()
    return read


def the_scene(rows_per_camera: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The cameras' results interleaved, as consumers write them."""
    return [row for rows in zip(*rows_per_camera, strict=True) for row in rows]


def key(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["id"], e["phase"], e["atMs"])


def test_events_of_two_cameras_and_a_stage_replaced_halfway(kafka_server: KafkaServer) -> None:
    bootstrap = kafka_server.bootstrap
    rows = the_scene([records(5, camera=c) for c in CAMERAS])
    stranger = {**rows[0], "cameraId": "not-ours"}

    async def scenario() -> tuple[dict[str, str], dict[str, str], int]:
        whole = await create_topics(bootstrap, f"ev-{uuid.uuid4().hex[:8]}")
        await write_results(bootstrap, whole["results"], [*rows, stranger])
        await run_stage(bootstrap, whole, f"{whole['results']}.g", len(rows) + 1)

        halves = await create_topics(bootstrap, f"ev-{uuid.uuid4().hex[:8]}")
        await write_results(bootstrap, halves["results"], [*rows, stranger])
        group = f"{halves['results']}.g"
        first = await run_stage(bootstrap, halves, group, len(rows) // 2, max_batch=37)  # stops between batches
        await run_stage(bootstrap, halves, group, len(rows) + 1 - first, max_batch=37)
        return whole, halves, first

    whole_topics, halves_topics, first = asyncio.run(scenario())
    whole, halves = (asyncio.run(read_events(bootstrap, t["events"])) for t in (whole_topics, halves_topics))
    whole_tracks, halves_tracks = (asyncio.run(read_events(bootstrap, t["tracks"])) for t in (whole_topics, halves_topics))
    assert 0 < first < len(rows)
    for camera in CAMERAS:
        mine = [e for e in whole if e["cameraId"] == camera]
        crossings = sorted(e["direction"] for e in mine if e["kind"] == "line")
        assert crossings == ["in", "out"], crossings
        starts = Counter(e["kind"] for e in mine if e["phase"] == "start")
        assert starts == {"object": 3, "zone": 1, "loiter": 1}, starts
        # Every frame released from the reorder buffer (all but the last window's) has its tracks record, in capture
        # order, carrying the ids the events name.
        captured = [r["captureTsMs"] for r in rows if r["cameraId"] == camera]
        tracked = [t for t in whole_tracks if t["cameraId"] == camera]
        assert [t["captureTsMs"] for t in tracked] == [ms for ms in captured if ms <= captured[-1] - RULES.reorder_window_ms]
        ids = {o["trackId"] for t in tracked for o in t["tracks"]}
        assert ids == {e["trackId"] for e in mine if e["kind"] == "object"}, ids
    assert not {e["cameraId"] for e in whole} - set(CAMERAS)  # the stranger's result is not tracked
    # The replaced stage: the same events and tracks, in the same order per camera, none twice, none missing.
    for camera in CAMERAS:
        assert [key(e) for e in halves if e["cameraId"] == camera] == [key(e) for e in whole if e["cameraId"] == camera]
        assert [t for t in halves_tracks if t["cameraId"] == camera] == [t for t in whole_tracks if t["cameraId"] == camera]
    assert len({key(e) for e in halves}) == len(halves)


def test_a_member_that_dies_mid_batch_is_fenced_and_its_batch_never_seen(kafka_server: KafkaServer) -> None:
    """A member sends a batch's events and dies before committing; the member that takes its partitions over
    fences its producer (the open transaction is aborted: readers never see those events) and tracks the batch
    again from the last committed state. A zombie that wakes up later and commits makes nothing visible."""
    bootstrap = kafka_server.bootstrap
    rows = the_scene([records(5, camera=c) for c in CAMERAS])

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        whole = await create_topics(bootstrap, f"ev-{uuid.uuid4().hex[:8]}")
        await write_results(bootstrap, whole["results"], rows)
        await run_stage(bootstrap, whole, f"{whole['results']}.g", len(rows))

        names = await create_topics(bootstrap, f"ev-{uuid.uuid4().hex[:8]}")
        await write_results(bootstrap, names["results"], rows)
        group = f"{names['results']}.g"
        first = await run_stage(bootstrap, names, group, len(rows) // 3, max_batch=37)
        zombie = EventsStage(
            bootstrap,
            results_topic=names["results"],
            events_topic=names["events"],
            state_topic=names["state"],
            tracks_topic=names["tracks"],
            group=group,
            rules=dict.fromkeys(CAMERAS, RULES),
            max_batch=37,
        )
        await zombie.start()
        async with asyncio.timeout(READ_TIMEOUT_S):
            while not (batch := await zombie.consumer.getmany(timeout_ms=1000, max_records=37)):  # type: ignore[union-attr]
                pass
        await zombie.take_over(list(batch))
        tp, recs = sorted(batch.items())[0]
        producer = zombie.producers[tp.partition]
        await producer.begin_transaction()
        for rec in recs:  # everything but the commit
            for e in zombie.tracking(rec.key.decode(), tp.partition).take(orjson.loads(rec.value)):  # type: ignore[union-attr]
                await producer.send(names["events"], orjson.dumps(event_record(e)), key=rec.key)
        await producer.flush()
        await zombie.consumer.stop()  # gone from the group (as after its session timed out), its producer not
        await run_stage(bootstrap, names, group, len(rows) - first, max_batch=37)
        with contextlib.suppress(Exception):  # the broker refuses it (fenced); how the client says so does not matter
            await producer.commit_transaction()
        for zombie_producer in zombie.producers.values():
            with contextlib.suppress(Exception):
                await zombie_producer.stop()
        return await read_events(bootstrap, whole["events"]), await read_events(bootstrap, names["events"])

    whole, replaced = asyncio.run(scenario())
    assert len({key(e) for e in replaced}) == len(replaced), "an event was sent twice"
    assert sorted(map(key, replaced)) == sorted(map(key, whole))
