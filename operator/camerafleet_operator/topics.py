"""Kafka topics of a fleet, reconciled with the semantics of Strimzi's topic operator.

Create what is missing; adopt what exists; increase partitions; apply topic configs (retention). A
partition decrease or a replication-factor change is refused (reason NotSupported) and Kafka is left as
it is. A topic another fleet claimed first is never touched (reason Conflict). `plan_topics` decides,
purely; `TopicReconciler` reads Kafka and carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from camerafleet.api.manifest import FleetSpec
from camerafleet.kafka_topics import KafkaUnavailable, connect_admin, fleet_topics

UNKNOWN_TOPIC = 3


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


def desired_configs(spec: FleetSpec) -> dict[str, str]:
    return {"retention.ms": str(spec.kafka.retention_ms)}


def plan_topics(spec: FleetSpec, existing: dict[str, TopicState], claimed_by_others: dict[str, str]) -> TopicPlan:
    """What to do in Kafka for this fleet. `claimed_by_others` maps topic -> the fleet that owns it."""
    plan = TopicPlan()
    configs = desired_configs(spec)
    rf = spec.kafka.replication_factor
    for name, partitions in sorted(fleet_topics(spec).items()):
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
        changed = {k: v for k, v in configs.items() if state.configs.get(k) != v}
        if changed:
            plan.alter_configs[name] = changed
    return plan


class TopicReconciler:
    """Reads topic state from Kafka and applies a TopicPlan; KafkaUnavailable when Kafka cannot be reached."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    async def __aenter__(self) -> TopicReconciler:
        self.admin: AIOKafkaAdminClient = await connect_admin(self.bootstrap, timeout_s=10)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.admin.close()

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
                    NewTopic(n, p, spec.kafka.replication_factor, topic_configs=desired_configs(spec)) for n, p in plan.create.items()
                ]
                for start in range(0, len(topics), 100):
                    await self.admin.create_topics(topics[start : start + 100])
            if plan.add_partitions:
                await self.admin.create_partitions({n: NewPartitions(total_count=p) for n, p in plan.add_partitions.items()})
            if plan.alter_configs:
                # AlterConfigs replaces a topic's whole dynamic config: send ours in full.
                await self.admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, n, configs=desired_configs(spec)) for n in plan.alter_configs]
                )
        except KafkaError as err:
            raise KafkaUnavailable(f"Kafka at {self.bootstrap} refused a topic change: {err}") from None

    async def delete(self, names: list[str]) -> list[str]:
        present = list(await self.describe(names))
        if present:
            try:
                await self.admin.delete_topics(present)
            except KafkaError as err:
                raise KafkaUnavailable(f"cannot delete topics at {self.bootstrap}: {err}") from None
        return present
