"""A consumer whose loop dies of an unexpected error, against the real broker: the group member would keep
heartbeating with no loop behind it (its partitions never reassigned, nothing alerting). The loop is started
again from the committed offsets, counted, and every message still gets its result. Announcements the topic's
retention deleted before they were read are counted too, and so are those a removed camera's producer makes after
the member that had drained its topic was replaced."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from camerafleet import consumer as consumer_module
from camerafleet.api.manifest import load_manifest
from camerafleet.consumer import ConsumerActor
from camerafleet.topics import wait_committed
from tests.fixtures.pipeline import write_fleet, yolo_model
from tests.integration.test_pipeline import topic_values

pytestmark = pytest.mark.integration
MESSAGES = 6
CATCH_UP_S = 120  # a busy 2-core machine; each frame fails fast (no inference service answers)
JOIN_S = 60  # joining a consumer group: seconds on a quiet machine, more under load


def unserved_consumer(tmp_path, bootstrap: str, name: str, cameras: tuple[str, ...] = ("1",)):
    """A consumer of fleet `name` (topics `<name>_camera_<id>`, `<name>_results`, ...) whose inference service is
    never there."""
    manifest = write_fleet(
        tmp_path / f"{name}-{len(cameras)}.yaml",
        name,
        bootstrap,
        cameras=[{"id": c, "source": "synthetic:"} for c in cameras],
        models=[yolo_model()],
        consumer={"maxFrameAgeMs": 600_000},
        serving={"appName": name, "routePrefix": f"/{name}", "url": f"http://127.0.0.1:9/{name}"},  # nothing listens
    )
    spec = load_manifest(manifest).spec
    return ConsumerActor.__ray_metadata__.modified_class(spec.model_dump_json(by_alias=True), str(tmp_path / "results.jsonl"), name)  # type: ignore[attr-defined]


async def create_topics(bootstrap: str, name: str, cameras: tuple[str, ...] = ("1",)) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, 1, 1) for t in (*(f"{name}_camera_{c}" for c in cameras), f"{name}_results", f"{name}_deadletter")]
        )
    finally:
        await admin.close()


async def announce(bootstrap: str, name: str, tmp_path, camera: str = "1", seqs: range = range(MESSAGES)) -> str:
    """Announces frames `seqs` of `camera` on its topic; returns the topic."""
    topic = f"{name}_camera_{camera}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for seq in seqs:
            frame = {
                "cameraId": camera,
                "seq": seq,
                "epochMs": 1,
                "captureTsMs": int(time.time() * 1000),
                "uri": f"file://{tmp_path}/{camera}-{seq}.jpg",
            }
            await producer.send_and_wait(topic, orjson.dumps({**frame, "width": 64, "height": 48}), key=camera.encode())
    finally:
        await producer.stop()
    return topic


def test_a_consumer_loop_that_dies_is_started_again_and_loses_nothing(tmp_path, kafka_server, ray_cluster):
    consumer = unserved_consumer(tmp_path, kafka_server.bootstrap, "loopdies")

    async def scenario() -> dict[tuple[str, int], int]:
        await create_topics(kafka_server.bootstrap, "loopdies")
        await announce(kafka_server.bootstrap, "loopdies", tmp_path)
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
        await create_topics(kafka_server.bootstrap, "expired")
        topic = await announce(kafka_server.bootstrap, "expired", tmp_path)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
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


def test_frames_announced_on_a_removed_cameras_topic_after_a_caught_up_member_was_replaced_are_answered(
    tmp_path, kafka_server, ray_cluster, monkeypatch
):
    """The drain state of a removed camera lives in the member that heard of the edit. A member started after it
    had caught up finds nothing unread at its start; the camera's producer, which hears of the edit later, then
    announces a few more frames. The member looks again every UNREAD_LOOK_S and answers them."""
    monkeypatch.setattr(consumer_module, "UNREAD_LOOK_S", 2.0)  # a minute in production; the test need not wait that long
    bootstrap = kafka_server.bootstrap
    before = unserved_consumer(tmp_path, bootstrap, "late", cameras=("1", "2"))
    after = unserved_consumer(tmp_path, bootstrap, "late", cameras=("1",))  # camera 2 removed

    async def scenario() -> dict[tuple[str, int], int]:
        await create_topics(bootstrap, "late", cameras=("1", "2"))
        await announce(bootstrap, "late", tmp_path, camera="2")
        await before.start()
        try:  # the member that reads camera 2 catches up, then goes (its Pod replaced after the removal)
            behind = await wait_committed(bootstrap, "late", {("late_camera_2", 0): MESSAGES}, CATCH_UP_S)
            assert not behind, behind
        finally:
            await before.stop()
        await after.start()
        try:
            await asyncio.sleep(1)
            await announce(bootstrap, "late", tmp_path, camera="2", seqs=range(MESSAGES, MESSAGES + 3))  # the late producer
            return await wait_committed(bootstrap, "late", {("late_camera_2", 0): MESSAGES + 3}, CATCH_UP_S)
        finally:
            await after.stop()

    behind = asyncio.run(scenario())
    assert not behind, f"frames announced after the removal were left unread: {behind}"
    results = asyncio.run(topic_values(bootstrap, "late_results", MESSAGES + 3))
    assert sorted(r["offset"] for r in results if r["topic"] == "late_camera_2") == list(range(MESSAGES + 3)), results


def test_an_idle_consumer_reads_lag_once_a_second_and_does_not_spin(tmp_path, kafka_server, ray_cluster):
    """Its loop turned every batchWaitMs (20 ms) with nothing to read, and read the lag of every partition and set a
    gauge for each on every turn: an idle consumer of the bench's fleet used 0.029 of a core, 0.019 since.
    Upper bounds only: a slow machine turns the loop less often, never more."""
    consumer = unserved_consumer(tmp_path, kafka_server.bootstrap, "idle", cameras=("1", "2", "3"))
    idle_s = 4.0

    async def scenario() -> tuple[int, int]:
        await create_topics(kafka_server.bootstrap, "idle", cameras=("1", "2", "3"))
        calls = {"lag": 0, "read": 0}
        real_update_lag = consumer._update_lag

        async def counted_update_lag() -> None:
            calls["lag"] += 1
            await real_update_lag()

        consumer._update_lag = counted_update_lag
        await consumer.start()
        real_getmany = consumer.group.getmany

        async def counted_getmany(*args, **kwargs):
            calls["read"] += 1
            return await real_getmany(*args, **kwargs)

        consumer.group.getmany = counted_getmany
        try:
            joined_by = time.monotonic() + JOIN_S
            while len(consumer.group.assignment()) < 3 and time.monotonic() < joined_by:  # noqa: ASYNC110 - the client has no event for it
                await asyncio.sleep(0.2)
            assert len(consumer.group.assignment()) == 3, f"the consumer did not join its group within {JOIN_S} s"
            await asyncio.sleep(1.5)  # the first fetches answered: every partition's high watermark known
            calls.update(lag=0, read=0)
            await asyncio.sleep(idle_s)
            counted = calls["lag"], calls["read"]
        finally:
            await consumer.stop()
        return counted

    lag_reads, reads = asyncio.run(scenario())
    assert lag_reads <= idle_s / consumer_module.LAG_LOOK_S + 2, lag_reads
    assert reads <= idle_s * 1000 / consumer_module.IDLE_WAIT_MS + 2, reads
    assert consumer.lag == {f"idle_camera_{c}/0": 0 for c in "123"}, consumer.lag
