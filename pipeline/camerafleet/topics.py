"""The fleet's Kafka topics, and what the run's ledger reads from Kafka: one admin path for
`camerafleet run` and the operator.

Topics are reconciled with the semantics of Strimzi's topic operator: create what is missing; adopt
what exists; increase partitions; set the fleet's topic configs (retention), key by key. A partition decrease or a
replication-factor change is refused (NotSupported) and Kafka is left as it is. A topic another fleet
claimed first is never touched (Conflict; only the operator knows other fleets). `plan_topics` decides,
purely; `TopicReconciler` reads Kafka and carries the plan out; `ensure_topics` is what a run does at
start. The pipeline never relies on broker auto-creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from camerafleet.api.manifest import FleetSpec
from camerafleet.kafka_access import client_options
from camerafleet.kafka_configs import ConfigRefused, set_topic_configs

log = logging.getLogger("camerafleet.kafka")


class KafkaUnavailable(RuntimeError):
    """Kafka cannot be reached or refused a change; the message names the address and what to check."""


async def connect_admin(bootstrap: str, timeout_s: float = 15.0) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), **client_options())
    try:
        await admin.start()
    except (KafkaConnectionError, KafkaError, OSError) as err:
        await admin.close()
        raise KafkaUnavailable(
            f"cannot reach Kafka at {bootstrap} ({type(err).__name__}): start a broker (`make kafka`) or set "
            "KAFKA_BOOTSTRAP / spec.kafka.bootstrapServers to a reachable address"
        ) from None
    return admin


UNKNOWN_TOPIC = 3
METADATA_WAIT_S = 30.0  # new topics reach every broker's metadata in well under a second; a commit is tried after this anyway
METADATA_LOOK_S = 0.2


@dataclass(frozen=True)
class TopicState:
    partitions: int
    replication_factor: int
    configs: dict[str, str]


@dataclass
class TopicPlan:
    create: dict[str, int] = field(default_factory=dict)
    add_partitions: dict[str, int] = field(default_factory=dict)
    alter_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    not_supported: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    owned: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.create or self.add_partitions or self.alter_configs)


def desired_configs(spec: FleetSpec, topic: str) -> dict[str, str]:
    """What the fleet sets on a topic (only these keys: the rest stays as the broker or an administrator set it).
    Camera topics keep messages only while their frames are in the bucket; results, dead letters and events are the
    record downstream readers catch up from; the events stage's state topic is compacted."""
    k = spec.kafka
    if topic == k.events_state_topic:  # the latest state of each camera, for as long as the fleet runs
        return {"cleanup.policy": "compact"}
    records = topic in (k.results_topic, k.dead_letter_topic, k.events_topic)
    return {"retention.ms": str(k.results_retention_ms if records else k.retention_ms)}


def readers(spec: FleetSpec) -> dict[str, set[str]]:
    """The fleet's consumer groups and the topics each reads: the consumers the camera topics, the events stage the
    results topic. Only these get a committed offset (a group's offsets on topics it never reads would show as a
    lag that grows for ever to whoever watches the group, and alert)."""
    groups = {spec.kafka.consumer_group: {spec.topic(c.id) for c in spec.cameras}}
    if spec.events.enabled:
        groups[spec.kafka.events_group] = {spec.kafka.results_topic}
    return groups


def plan_topics(spec: FleetSpec, existing: dict[str, TopicState], claimed_by_others: dict[str, str]) -> TopicPlan:
    """What to do in Kafka for this fleet. `claimed_by_others` maps topic -> the fleet that owns it."""
    plan = TopicPlan()
    rf = spec.kafka.replication_factor
    for name, partitions in sorted(spec.topics().items()):
        if name in claimed_by_others:
            plan.conflicts.append(f"topic {name} belongs to fleet {claimed_by_others[name]}; left untouched")
            continue
        plan.owned.append(name)
        state = existing.get(name)
        if state is None:
            plan.create[name] = partitions
            continue
        if state.partitions > partitions:
            plan.not_supported.append(f"topic {name} has {state.partitions} partitions; decreasing to {partitions} is not supported")
        elif state.partitions < partitions:
            plan.add_partitions[name] = partitions
        if state.replication_factor != rf:
            plan.not_supported.append(
                f"topic {name} has replication factor {state.replication_factor}; changing it to {rf} is not supported"
            )
        changed = {k: v for k, v in desired_configs(spec, name).items() if state.configs.get(k) != v}
        if changed:
            plan.alter_configs[name] = changed
    return plan


class TopicReconciler:
    """Reads topic state from Kafka and applies a TopicPlan; KafkaUnavailable when Kafka cannot be reached."""

    def __init__(self, bootstrap: str, timeout_s: float = 10.0):
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s

    async def __aenter__(self) -> TopicReconciler:
        self.admin: AIOKafkaAdminClient = await connect_admin(self.bootstrap, timeout_s=self.timeout_s)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def cluster_id(self) -> str:
        """Kafka's own id of the cluster: the same whatever address names it (a Service, its FQDN, a broker)."""
        try:
            cluster = (await self.admin.describe_cluster()).get("cluster_id")
        except KafkaError as err:
            raise KafkaUnavailable(f"cannot describe the cluster at {self.bootstrap}: {err}") from None
        if not cluster:
            raise KafkaUnavailable(f"the Kafka at {self.bootstrap} reports no cluster id (a broker older than Kafka 0.10.1)")
        return str(cluster)

    async def describe(self, names: list[str]) -> dict[str, TopicState]:
        try:
            topics = [t for t in await self.admin.describe_topics(names) if t["error_code"] != UNKNOWN_TOPIC]
            if not topics:
                return {}
            resources = [ConfigResource(ConfigResourceType.TOPIC, t["topic"]) for t in topics]
            described = await self.admin.describe_configs(resources)
        except KafkaError as err:
            raise KafkaUnavailable(f"cannot describe topics at {self.bootstrap}: {err}") from None
        configs: dict[str, dict[str, str]] = {}
        for response in described:
            for res in response.to_object()["resources"]:
                configs[res["resource_name"]] = {e["config_names"]: e["config_value"] for e in res["config_entries"]}
        return {
            t["topic"]: TopicState(
                partitions=len(t["partitions"]),
                replication_factor=len(t["partitions"][0]["replicas"]) if t["partitions"] else 0,
                configs=configs.get(t["topic"], {}),
            )
            for t in topics
        }

    async def apply(self, spec: FleetSpec, plan: TopicPlan) -> None:
        try:
            if plan.create:
                topics = [
                    NewTopic(n, p, spec.kafka.replication_factor, topic_configs=desired_configs(spec, n)) for n, p in plan.create.items()
                ]
                for start in range(0, len(topics), 100):
                    await self._create(topics[start : start + 100])
                for group, topics_read in readers(spec).items():
                    if created := {t: n for t, n in plan.create.items() if t in topics_read}:
                        await self._start_group_at_zero(group, created)
            if plan.add_partitions:
                await self.admin.create_partitions({n: NewPartitions(total_count=p) for n, p in plan.add_partitions.items()})
            await set_topic_configs(self.admin, plan.alter_configs)
        except ConfigRefused as err:
            raise KafkaUnavailable(f"Kafka at {self.bootstrap} refused a topic change: {err}") from None
        except KafkaError as err:
            raise KafkaUnavailable(f"Kafka at {self.bootstrap} refused a topic change: {err}") from None

    async def _start_group_at_zero(self, group: str, created: dict[str, int]) -> None:
        """A topic just created is read from its start by the group that reads it. Kafka drops a deleted topic's
        committed offsets only asynchronously, so a fleet deleted with its topics and created again could
        otherwise resume at its predecessor's offsets and skip as many frames (seen on the cluster)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False, **client_options())
        try:
            await consumer.start()
            # The broker answers a creation before every broker's metadata has the topics: a commit before then
            # fails (150 new topics: 59 "not found in cluster metadata" errors logged per topic, then a failed commit).
            for _ in range(int(METADATA_WAIT_S / METADATA_LOOK_S)):
                if set(created) <= await consumer.topics():
                    break
                await asyncio.sleep(METADATA_LOOK_S)
            tps = [TopicPartition(t, p) for t, n in created.items() for p in range(n)]
            consumer.assign(tps)
            await consumer.commit(dict.fromkeys(tps, 0))
        except KafkaError as err:  # the group already has members: they read the topic as it is
            log.warning("could not start consumer group %s at offset 0 of %d new topic(s): %s", group, len(created), err)
        finally:
            await consumer.stop()

    async def _create(self, topics: list[NewTopic]) -> None:
        """Create topics; one that appeared meanwhile (another process created it) is fine."""
        try:
            resp = await self.admin.create_topics(topics)
        except TopicAlreadyExistsError:
            return
        for name, code, *_ in resp.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise KafkaUnavailable(f"Kafka refused to create topic {name!r} (error code {code}): check broker permissions and limits")

    async def delete(self, names: list[str]) -> list[str]:
        present = list(await self.describe(names))
        if present:
            try:
                await self.admin.delete_topics(present)
            except KafkaError as err:
                raise KafkaUnavailable(f"cannot delete topics at {self.bootstrap}: {err}") from None
        return present


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


async def wait_for_group_members(bootstrap: str, group: str, timeout_s: float, stop: asyncio.Event | None = None) -> bool:
    """Wait until consumer group `group` has a member; whether it got one within `timeout_s` (or before `stop`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    admin = None
    try:
        while loop.time() < deadline and not (stop and stop.is_set()):
            try:
                if admin is None:
                    admin = await connect_admin(bootstrap, timeout_s=10)
                (response,) = await admin.describe_consumer_groups([group])
                if any(g["members"] for g in response.to_object()["groups"]):
                    return True
            except (KafkaUnavailable, KafkaError, OSError) as err:
                log.warning("describing consumer group %s: %s", group, err)
                if admin is not None:
                    await admin.close()
                    admin = None
            await asyncio.sleep(1.0)
        return False
    finally:
        if admin is not None:
            await admin.close()


async def ensure_topics(spec: FleetSpec, bootstrap: str) -> TopicPlan:
    """Bring the fleet's topics in line with its spec before anything is produced (what a run does at
    start; the operator reconciles the same way, knowing other fleets' claims too). Returns the plan
    carried out: `create` names the topics created, `not_supported` what was left as it is."""
    async with TopicReconciler(bootstrap, timeout_s=15.0) as topics:
        plan = plan_topics(spec, await topics.describe(sorted(spec.topics())), {})
        await topics.apply(spec, plan)
        await _wait_for_group_coordinator(topics.admin, spec.kafka.consumer_group)
    if plan.create:
        names = sorted(plan.create)
        log.info("created %d Kafka topic(s): %s", len(names), ", ".join(names[:10]) + (" ..." if len(names) > 10 else ""))
    return plan


async def end_offsets(bootstrap: str, topics: list[str], timeout_s: float = 15.0) -> dict[str, dict[int, int]]:
    """Each topic's partitions and their end offsets (the offset the next message will get). The run's
    ledger counts what was announced during the run from these, taken at its start and at its end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    admin = await connect_admin(bootstrap, timeout_s)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=int(timeout_s * 1000), **client_options()
    )
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
        with contextlib.suppress(TimeoutError, KafkaError, OSError):
            await asyncio.wait_for(consumer.stop(), timeout=5)
    out: dict[str, dict[int, int]] = {t: {} for t in topics}
    for tp, offset in ends.items():
        out[tp.topic][tp.partition] = offset
    return out


async def wait_committed(bootstrap: str, group: str, want: dict[tuple[str, int], int], timeout_s: float) -> dict[tuple[str, int], int]:
    """Wait until the consumer group has committed at least `want[(topic, partition)]` on every partition
    (consumers commit only after the results of those messages are written). Returns how many messages
    each partition still lacks when the time is up; empty when the group caught up."""
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


async def unread_topics(bootstrap: str, group: str, prefix: str, besides: set[str], timeout_s: float = 15.0) -> list[str]:
    """The camera topics (named `<prefix>...`, other than `besides`) on which `group` has committed short of the end:
    frames announced and never answered, as a removed camera leaves when its consumers restart before they have
    read it all."""
    admin = await connect_admin(bootstrap, timeout_s)
    try:
        committed = await asyncio.wait_for(admin.list_consumer_group_offsets(group), timeout=timeout_s)
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout=timeout_s))  # a deleted topic's offsets linger
    except (TimeoutError, KafkaError, OSError) as err:
        raise KafkaUnavailable(f"cannot read the offsets group {group} committed at {bootstrap}: {type(err).__name__}: {err}") from None
    finally:
        await admin.close()
    topics = sorted({tp.topic for tp in committed if tp.topic.startswith(prefix) and tp.topic in existing - besides})
    ends = await end_offsets(bootstrap, topics, timeout_s) if topics else {}
    return [t for t in topics if any(meta.offset < ends[t].get(tp.partition, 0) for tp, meta in committed.items() if tp.topic == t)]


async def read_span(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int], timeout_s: float = 120.0) -> list[bytes]:
    """The values of `topic`'s messages in [start, end) per partition (a run's results: the record of every
    frame's outcome when the consumers keep no file of their own). Messages already expired by retention
    are missing from the answer, never waited for; `timeout_s` bounds the whole read."""
    want = {p: (start.get(p, 0), e) for p, e in end.items() if e > start.get(p, 0)}
    if not want:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **client_options())
    values: list[bytes] = []
    try:
        await asyncio.wait_for(consumer.start(), timeout=30)
        tps = {p: TopicPartition(topic, p) for p in want}
        consumer.assign(list(tps.values()))
        for p, (lo, _) in want.items():
            consumer.seek(tps[p], lo)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        remaining = dict(want)
        while remaining:
            if loop.time() > deadline:
                raise KafkaUnavailable(f"reading {topic} took over {timeout_s:.0f} s; {len(remaining)} partition(s) not read to their end")
            batches = await consumer.getmany(*(tps[p] for p in remaining), timeout_ms=1000, max_records=5000)
            for tp, messages in batches.items():
                hi = remaining.get(tp.partition, (0, 0))[1]
                values += [m.value for m in messages if m.offset < hi and m.value is not None]
                if messages and messages[-1].offset + 1 >= hi:
                    remaining.pop(tp.partition, None)
            for p in list(remaining):  # retention may have removed the span's end: nothing more will come
                if await consumer.position(tps[p]) >= remaining[p][1]:
                    remaining.pop(p)
    except (TimeoutError, KafkaError, OSError) as err:
        raise KafkaUnavailable(f"cannot read {topic} at {bootstrap}: {type(err).__name__}: {err}") from None
    finally:
        with contextlib.suppress(TimeoutError, KafkaError, OSError):
            await asyncio.wait_for(consumer.stop(), timeout=5)
    return values
