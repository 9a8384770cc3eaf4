"""Idempotent creation of the fleet's Kafka topics: one per camera, plus results and dead-letter.

The pipeline never relies on broker auto-creation: topics are created with the partitions, replication
factor and retention of the manifest before anything is produced.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from camerafleet.api.manifest import FleetSpec

log = logging.getLogger("camerafleet.kafka")


class KafkaUnavailable(RuntimeError):
    """Kafka cannot be reached; the message names the address and what to check."""


def fleet_topics(spec: FleetSpec) -> dict[str, int]:
    """Every topic the fleet needs, with its partition count."""
    topics = {spec.topic(c.id): spec.kafka.partitions_per_topic for c in spec.cameras}
    topics[spec.kafka.results_topic] = max(1, spec.kafka.partitions_per_topic)
    topics[spec.kafka.dead_letter_topic] = 1
    return topics


async def connect_admin(bootstrap: str, timeout_s: float = 15.0) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
    except (KafkaConnectionError, KafkaError, OSError) as err:
        await admin.close()
        raise KafkaUnavailable(
            f"cannot reach Kafka at {bootstrap} ({type(err).__name__}): start a broker (`make kafka`) or set "
            "KAFKA_BOOTSTRAP / spec.kafka.bootstrapServers to a reachable address"
        ) from None
    return admin


async def _wait_for_group_coordinator(admin: AIOKafkaAdminClient, group: str, timeout_s: float = 30.0) -> None:
    """A fresh broker creates its offsets topic on the first group lookup; waiting for it here keeps
    consumers from starting against a coordinator that is not there yet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await admin.find_coordinator(group)
            return
        except KafkaError as err:
            if loop.time() > deadline:
                raise KafkaUnavailable(f"Kafka has no coordinator for consumer group {group!r} after {timeout_s:.0f} s: {err}") from None
            await asyncio.sleep(0.5)


async def ensure_topics(spec: FleetSpec, bootstrap: str) -> list[str]:
    """Create the fleet's missing topics; returns the names created. Existing topics are left as they are."""
    admin = await connect_admin(bootstrap)
    try:
        existing = set(await admin.list_topics())
        wanted = fleet_topics(spec)
        missing = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=spec.kafka.replication_factor,
                topic_configs={"retention.ms": str(spec.kafka.retention_ms)},
            )
            for name, partitions in wanted.items()
            if name not in existing
        ]
        created: list[str] = []
        for start in range(0, len(missing), 100):
            chunk = missing[start : start + 100]
            try:
                resp = await admin.create_topics(chunk)
            except TopicAlreadyExistsError:
                continue
            for name, code, *_ in resp.topic_errors:
                if code == 0:
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:
                    raise KafkaUnavailable(
                        f"Kafka refused to create topic {name!r} (error code {code}): check broker permissions and limits"
                    )
        await _wait_for_group_coordinator(admin, spec.kafka.consumer_group)
        if created:
            log.info("created %d Kafka topic(s): %s", len(created), ", ".join(sorted(created)[:10]) + (" ..." if len(created) > 10 else ""))
        return created
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topics: list[str], timeout_s: float = 15.0) -> dict[str, dict[int, int]]:
    """Each topic's partitions and their end offsets (the offset the next message will get). The run's
    ledger counts what was announced during the run from these, taken at its start and at its end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    admin = await connect_admin(bootstrap, timeout_s)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=int(timeout_s * 1000))
    try:
        while True:  # a topic created a moment ago may not be in the metadata yet
            described = {t["topic"]: t for t in await admin.describe_topics(topics)}
            partitions = {
                t: sorted(p["partition"] for p in described[t]["partitions"])
                for t in topics
                if t in described and described[t]["partitions"]
            }
            missing = [t for t in topics if t not in partitions]
            if not missing:
                break
            if loop.time() > deadline:
                raise KafkaUnavailable(f"Kafka at {bootstrap} does not describe topic(s) {', '.join(missing[:5])}")
            await asyncio.sleep(0.5)
        await asyncio.wait_for(consumer.start(), timeout=timeout_s)
        tps = [TopicPartition(t, p) for t in topics for p in partitions[t]]
        if tps:
            consumer.assign(tps)  # fetches these topics' metadata now; unassigned, the first call waits ~15 s for it
        ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout=timeout_s) if tps else {}
    except (TimeoutError, KafkaError, OSError) as err:
        raise KafkaUnavailable(
            f"cannot read the end offsets of {len(topics)} topic(s) at {bootstrap}: {type(err).__name__}: {err}"
        ) from None
    finally:
        await admin.close()
        try:
            await asyncio.wait_for(consumer.stop(), timeout=5)
        except (TimeoutError, KafkaError, OSError):
            pass
    out: dict[str, dict[int, int]] = {t: {} for t in topics}
    for tp, offset in ends.items():
        out[tp.topic][tp.partition] = offset
    return out


async def wait_committed(bootstrap: str, group: str, want: dict[tuple[str, int], int], timeout_s: float) -> dict[tuple[str, int], int]:
    """Wait until the consumer group has committed at least `want[(topic, partition)]` on every partition
    (consumers commit only after the results of those messages are written). Returns how many messages
    each partition still lacks when the time is up; empty when the group caught up."""
    from aiokafka import TopicPartition

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    behind = dict(want)
    admin = None
    try:
        while True:
            try:
                if admin is None:
                    admin = await connect_admin(bootstrap, timeout_s=10)
                done = await admin.list_consumer_group_offsets(group, partitions=[TopicPartition(t, p) for t, p in want])
                behind = {
                    (t, p): end - max(0, done[TopicPartition(t, p)].offset) if TopicPartition(t, p) in done else end
                    for (t, p), end in want.items()
                }
                behind = {tp: n for tp, n in behind.items() if n > 0}
            except (KafkaUnavailable, KafkaError, OSError) as err:
                log.warning("reading the committed offsets of group %s: %s", group, err)
                if admin is not None:
                    await admin.close()
                    admin = None
            if not behind or loop.time() > deadline:
                return behind
            await asyncio.sleep(0.5)
    finally:
        if admin is not None:
            await admin.close()
