"""The fleet's topics and group on a real broker: a topic created again starts its consumer group at offset 0
(Kafka drops a deleted topic's committed offsets only asynchronously; found by the cluster e2e run, where
a fleet created again skipped as many frames as its predecessor had read); producers on their own see
when the group has consumers (found there too: frames produced while the consumer job's Pods started
went stale)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from camerafleet.api.manifest import FleetSpec
from camerafleet.topics import TopicReconciler, ensure_topics, unread_topics, wait_for_group_members
from tests.fixtures.pipeline import wait_until

pytestmark = pytest.mark.integration


async def topic_gone(admin: AIOKafkaAdminClient, topic: str) -> bool:
    return topic not in await admin.list_topics()


def one_camera_fleet(name: str) -> FleetSpec:
    """Topics `<name>_cam_1`, `<name>_results`, `<name>_dead`; consumer group `<name>`."""
    return FleetSpec.model_validate(
        {
            "cameras": [{"id": "1", "source": "synthetic:"}],
            "models": [{"name": "h", "type": "camera-health"}],
            "kafka": {
                "topicPrefix": f"{name}_cam_",
                "resultsTopic": f"{name}_results",
                "deadLetterTopic": f"{name}_dead",
                "consumerGroup": name,
            },
        }
    )


def test_a_recreated_topic_is_read_from_its_start(kafka_server):
    spec = one_camera_fleet("again")
    tp = TopicPartition("again_cam_1", 0)

    async def committed() -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets("again", partitions=[tp])
            return offsets[tp].offset if tp in offsets else None
        finally:
            await admin.close()

    async def first_commits() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
            return {tp.topic for tp in await admin.list_consumer_group_offsets("again")}
        finally:
            await admin.close()

    async def scenario() -> int | None:
        await ensure_topics(spec, kafka_server.bootstrap)
        # Only the topics the group reads: offsets on the results and dead-letter topics would show as a lag for ever.
        assert await first_commits() == {"again_cam_1"}
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_server.bootstrap, group_id="again", enable_auto_commit=False)
        await consumer.start()
        consumer.assign([tp])
        await consumer.commit({tp: 50})  # what a previous incarnation of the fleet had read
        await consumer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        await admin.delete_topics(["again_cam_1"])
        try:  # the deletion completes on the broker some time after it answered
            await wait_until("the topic deleted on the broker", lambda: topic_gone(admin, "again_cam_1"), interval_s=0.5)
        finally:
            await admin.close()
        await ensure_topics(spec, kafka_server.bootstrap)
        return await committed()

    # 50 if Kafka still held the old offset, -1 or None if it had dropped it: either way not the start.
    assert asyncio.run(scenario()) == 0


def test_producers_see_when_the_consumer_group_has_members(kafka_server):
    bootstrap = kafka_server.bootstrap

    async def scenario() -> tuple[bool, bool, bool]:
        await ensure_topics(one_camera_fleet("waiting"), bootstrap)
        alone = await wait_for_group_members(bootstrap, "waiting", timeout_s=3)
        stop = asyncio.Event()
        stop.set()
        stopped = await wait_for_group_members(bootstrap, "waiting", timeout_s=600, stop=stop)
        consumer = AIOKafkaConsumer("waiting_cam_1", bootstrap_servers=bootstrap, group_id="waiting", enable_auto_commit=False)
        await consumer.start()
        try:
            # The group forms on the first fetch; 60 s is for a busy machine, it takes about a second.
            fetch = asyncio.create_task(consumer.getmany(timeout_ms=60_000))
            joined = await wait_for_group_members(bootstrap, "waiting", timeout_s=60)
            fetch.cancel()
        finally:
            await consumer.stop()
        return alone, stopped, joined

    alone, stopped, joined = asyncio.run(scenario())
    assert (alone, stopped, joined) == (False, False, True)


def test_the_fleet_sets_its_own_configs_key_by_key_and_keeps_results_for_days(kafka_server):
    """Issue 24: the legacy whole-config AlterConfigs wiped what an administrator had set on a topic, and the results
    and dead-letter topics got the camera topics' retention (minutes). Now: only retention.ms changes, key by key
    (IncrementalAlterConfigs), results and dead letters kept 7 days."""
    bootstrap = kafka_server.bootstrap
    spec = one_camera_fleet("configs")

    async def scenario() -> dict[str, dict[str, str]]:
        await ensure_topics(spec, bootstrap)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:  # an administrator raises the camera topic's message size (a whole-config set, as kafka-configs.sh did)
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, "configs_cam_1", {"max.message.bytes": "2097152", "retention.ms": "120000"})]
            )
        finally:
            await admin.close()
        edited = spec.model_copy(update={"kafka": spec.kafka.model_copy(update={"retention_ms": 900_000})})
        await ensure_topics(edited, bootstrap)
        async with TopicReconciler(bootstrap) as kafka:
            return {name: state.configs for name, state in (await kafka.describe(list(spec.topics()))).items()}

    configs = asyncio.run(scenario())
    camera = configs["configs_cam_1"]
    assert (camera["retention.ms"], camera["max.message.bytes"]) == ("900000", "2097152"), "the administrator's setting stays"
    week = str(7 * 86_400_000)
    assert configs["configs_results"]["retention.ms"] == configs["configs_dead"]["retention.ms"] == week


def test_the_same_broker_by_two_addresses_is_one_cluster_id(kafka_server):
    """Issue 24: what decides whether two fleets share a Kafka is Kafka's own cluster id, not the address."""
    host, port = kafka_server.bootstrap.rsplit(":", 1)
    other_spelling = f"localhost:{port}" if host != "localhost" else f"127.0.0.1:{port}"

    async def scenario() -> tuple[str, str]:
        async with TopicReconciler(kafka_server.bootstrap) as a, TopicReconciler(other_spelling) as b:
            return await a.cluster_id(), await b.cluster_id()

    first, second = asyncio.run(scenario())
    assert first and first == second, (first, second)


def test_a_fleet_of_150_new_topics_starts_its_group_at_offset_0_on_every_one(kafka_server, caplog):
    """The broker answers a creation before its metadata has the topics; committing then failed for a fleet of
    150 cameras (59 "not found in cluster metadata" errors per topic, and a failed commit, in the bench's log)."""
    spec = FleetSpec.model_validate(
        {
            "cameras": [{"id": str(i), "source": "synthetic:"} for i in range(150)],
            "models": [{"name": "h", "type": "camera-health"}],
            "kafka": {"topicPrefix": "many_cam_", "resultsTopic": "many_results", "deadLetterTopic": "many_dead", "consumerGroup": "many"},
        }
    )
    tps = [TopicPartition(f"many_cam_{i}", 0) for i in range(150)]

    async def scenario() -> dict[TopicPartition, int]:
        await ensure_topics(spec, kafka_server.bootstrap)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets("many", partitions=tps)
            return {tp: o.offset for tp, o in offsets.items()}
        finally:
            await admin.close()

    with caplog.at_level("WARNING"):
        assert asyncio.run(scenario()) == dict.fromkeys(tps, 0)
    problems = [
        r.getMessage() for r in caplog.records if "not found in cluster metadata" in r.getMessage() or "could not start" in r.getMessage()
    ]
    assert not problems, problems[:3]


def test_a_camera_topic_the_group_committed_short_of_its_end_is_found_unread(kafka_server):
    """A consumer that starts looks for removed cameras' frames its group never answered (consumer.py reads those
    topics until drained): a topic committed short of its end is found, one read to its end is not."""
    spec = one_camera_fleet("leftover")
    spec = spec.model_copy(update={"cameras": [*spec.cameras, spec.cameras[0].model_copy(update={"id": "2"})]})

    async def scenario() -> list[list[str]]:
        await ensure_topics(spec, kafka_server.bootstrap)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap)
        await producer.start()
        try:
            for topic in ("leftover_cam_1", "leftover_cam_2"):
                for _ in range(3):
                    await producer.send_and_wait(topic, b"{}", partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_server.bootstrap, group_id="leftover", enable_auto_commit=False)
        await consumer.start()
        consumer.assign([TopicPartition("leftover_cam_1", 0), TopicPartition("leftover_cam_2", 0)])
        found = []
        try:
            for offset_1, besides in ((1, set()), (1, {"leftover_cam_1"}), (3, set())):
                await consumer.commit({TopicPartition("leftover_cam_1", 0): offset_1, TopicPartition("leftover_cam_2", 0): 3})
                found.append(await unread_topics(kafka_server.bootstrap, "leftover", "leftover_cam_", besides=besides))
        finally:
            await consumer.stop()
        return found

    # Short of its end, short but one of the fleet's own (read anyway), read to its end.
    assert asyncio.run(scenario()) == [["leftover_cam_1"], [], []]
