"""A consumer whose loop dies of an unexpected error, against the real broker: the group member would keep
heartbeating with no loop behind it (its partitions never reassigned, nothing alerting). The loop is started
again from the committed offsets, counted, and every message still gets its result. Announcements the topic's
retention deleted before they were read are counted too."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from camerafleet.api.manifest import load_manifest
from camerafleet.consumer import ConsumerActor
from camerafleet.topics import wait_committed
from tests.fixtures.pipeline import write_fleet, yolo_model
from tests.integration.test_pipeline import topic_values

pytestmark = pytest.mark.integration
MESSAGES = 6
CATCH_UP_S = 120  # a busy 2-core machine; each frame fails fast (no inference service answers)


def unserved_consumer(tmp_path, bootstrap: str, name: str):
    """A consumer of fleet `name` (camera 1, topics `<name>_...`) whose inference service is never there."""
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        name,
        bootstrap,
        cameras=[{"id": "1", "source": "synthetic:"}],
        models=[yolo_model()],
        consumer={"maxFrameAgeMs": 600_000},
        serving={"appName": name, "routePrefix": f"/{name}", "url": f"http://127.0.0.1:9/{name}"},  # nothing listens
    )
    spec = load_manifest(manifest).spec
    return ConsumerActor.__ray_metadata__.modified_class(spec.model_dump_json(by_alias=True), str(tmp_path / "results.jsonl"), name)  # type: ignore[attr-defined]


async def announce(admin: AIOKafkaAdminClient, bootstrap: str, name: str, tmp_path) -> str:
    """Creates the fleet's topics and announces MESSAGES frames of camera 1; returns the camera's topic."""
    topic = f"{name}_camera_1"
    await admin.create_topics([NewTopic(t, 1, 1) for t in (topic, f"{name}_results", f"{name}_deadletter")])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for seq in range(MESSAGES):
            frame = {
                "cameraId": "1",
                "seq": seq,
                "epochMs": 1,
                "captureTsMs": int(time.time() * 1000),
                "uri": f"file://{tmp_path}/{seq}.jpg",
            }
            await producer.send_and_wait(topic, orjson.dumps({**frame, "width": 64, "height": 48}), key=b"1")
    finally:
        await producer.stop()
    return topic


def test_a_consumer_loop_that_dies_is_started_again_and_loses_nothing(tmp_path, kafka_server, ray_cluster):
    consumer = unserved_consumer(tmp_path, kafka_server.bootstrap, "loopdies")

    async def scenario() -> dict[tuple[str, int], int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
            await announce(admin, kafka_server.bootstrap, "loopdies", tmp_path)
        finally:
            await admin.close()
        real_update_lag, died = consumer._update_lag, []

        async def dies_once() -> None:  # a bug in the loop, once, while a batch is in flight
            if not died and consumer.inflight:
                died.append(True)
                raise RuntimeError("a bug in the consume loop")
            await real_update_lag()

        consumer._update_lag = dies_once
        await consumer.start()
        try:
            return await wait_committed(kafka_server.bootstrap, "loopdies", {("loopdies_camera_1", 0): MESSAGES}, CATCH_UP_S)
        finally:
            await consumer.stop()

    behind = asyncio.run(scenario())
    assert not behind, f"the group did not commit every message after the loop died: {behind}"
    assert consumer.loop_restarts == 1 and "the consume loop died (RuntimeError" in (consumer.last_error or "")
    results = asyncio.run(topic_values(kafka_server.bootstrap, "loopdies_results", MESSAGES))
    assert {r["offset"] for r in results} == set(range(MESSAGES)), results


def test_announcements_the_topics_retention_deleted_unread_are_counted_dropped_by_position(tmp_path, kafka_server, ray_cluster):
    """Found by the soak: a fleet stopped for longer than its camera topics keep frames resumes from committed offsets
    below the log's start, and the Kafka client moves to the start without a word: those frames had no outcome.
    Deleting the first records (as retention does) before a consumer starts must give each of them its record."""
    consumer, deleted = unserved_consumer(tmp_path, kafka_server.bootstrap, "expired"), 4

    async def scenario() -> dict[tuple[str, int], int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
            topic = await announce(admin, kafka_server.bootstrap, "expired", tmp_path)
            # The group had read nothing (the runner starts it at offset 0 of a new topic), then retention deleted 4.
            group = AIOKafkaConsumer(bootstrap_servers=kafka_server.bootstrap, group_id="expired", enable_auto_commit=False)
            await group.start()
            group.assign([TopicPartition(topic, 0)])
            await group.commit({TopicPartition(topic, 0): 0})
            await group.stop()
            await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=deleted)})
        finally:
            await admin.close()
        await consumer.start()
        try:
            return await wait_committed(kafka_server.bootstrap, "expired", {(topic, 0): MESSAGES}, CATCH_UP_S)
        finally:
            await consumer.stop()

    behind = asyncio.run(scenario())
    assert not behind, f"the group did not commit every message: {behind}"
    results = asyncio.run(topic_values(kafka_server.bootstrap, "expired_results", MESSAGES))
    reasons = {r["offset"]: r.get("reason") for r in results}
    assert sorted(reasons) == list(range(MESSAGES)), reasons  # every announcement has its record
    assert [reasons[o] == "expired_unread" for o in range(MESSAGES)] == [o < deleted for o in range(MESSAGES)], reasons
    assert all(r["outcome"] == "dropped" and r["cameraId"] == "1" for r in results if r["offset"] < deleted), results
    assert "deleted by their topic's retention" in (consumer.last_error or "")
