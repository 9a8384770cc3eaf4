"""The fleet's topics on a real broker: a topic created again starts its consumer group at offset 0
(Kafka keeps the committed offsets of a deleted topic; found by the cluster e2e run, where a fleet
created again skipped as many frames as its predecessor had read)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from camerafleet.api.manifest import FleetSpec
from camerafleet.topics import ensure_topics

pytestmark = pytest.mark.integration


def test_a_recreated_topic_is_read_from_its_start(kafka_server):
    spec = FleetSpec.model_validate(
        {
            "cameras": [{"id": "1", "source": "synthetic:"}],
            "models": [{"name": "h", "type": "camera-health"}],
            "kafka": {
                "topicPrefix": "again_cam_",
                "resultsTopic": "again_results",
                "deadLetterTopic": "again_dead",
                "consumerGroup": "again",
            },
        }
    )
    tp = TopicPartition("again_cam_1", 0)

    async def committed() -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets("again", partitions=[tp])
            return offsets[tp].offset if tp in offsets else None
        finally:
            await admin.close()

    async def scenario() -> tuple[int | None, int | None]:
        await ensure_topics(spec, kafka_server.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_server.bootstrap, group_id="again", enable_auto_commit=False)
        await consumer.start()
        consumer.assign([tp])
        await consumer.commit({tp: 50})  # what a previous incarnation of the fleet had read
        await consumer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        await admin.delete_topics(["again_cam_1"])
        await admin.close()
        kept = await committed()
        await asyncio.sleep(1)  # the deletion completes on the broker
        await ensure_topics(spec, kafka_server.bootstrap)
        return kept, await committed()

    kept, after = asyncio.run(scenario())
    assert kept == 50, "Kafka keeps a deleted topic's committed offsets (what made this necessary)"
    assert after == 0
