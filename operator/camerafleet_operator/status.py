"""The `status` of a CameraFleet: one pydantic model, used by the reconciler and for the CRD schema, and
the accumulator a reconcile pass sets its conditions through.

Conditions follow the Kubernetes convention (type, status, reason, message, lastTransitionTime,
observedGeneration); `lastTransitionTime` only moves when a condition's status changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from camerafleet.api.manifest import Strict
from camerafleet.api.pool_status import PoolsStatus, now_rfc3339

# What a fleet needs to run: Ready is True when all four are.
PARTS = ("TopicsReady", "ServingReady", "ProducersRunning", "ConsumersRunning")
# ServingUpToDate: the RayService's cluster matches the spec (False while a new cluster KubeRay builds for a
# cluster-level change cannot come up). Not a part of Ready: the old cluster still serves meanwhile.
# PodsScheduled: every Pod of the fleet found a node. Not a part of Ready: a worker added for load that fits no
# node leaves the fleet running short (Degraded); a head that fits none already keeps its part from being ready.
CONDITION_TYPES = (*PARTS, "ServingUpToDate", "PodsScheduled", "Ready")
# Reasons that need a person's attention become Warning events; waiting for KubeRay is not one of them.
WARNING_REASONS = {
    "InvalidSpec",
    "NotSupported",
    "Conflict",
    "KafkaUnavailable",
    "JobFailed",
    "ServingFailed",
    "UpgradeStalled",
    "Unschedulable",
}
Phase = Literal["Pending", "Reconciling", "Running", "Degraded", "Failed"]


class Condition(Strict):
    type: str = Field(description="TopicsReady, ServingReady, ProducersRunning, ConsumersRunning, ServingUpToDate, PodsScheduled or Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="Whether the condition holds.")
    reason: str = Field(description="One CamelCase word for machines, e.g. NotSupported, Conflict, InvalidSpec.")
    message: str = Field(default="", description="What happened and what to do, for people.")
    last_transition_time: str = Field(description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, description="The spec generation this condition describes.")


class JobState(Strict):
    failures: int = Field(
        default=0,
        ge=0,
        description="How often this RayJob failed and was resubmitted since it last ran for jobRetryMaxSeconds; each doubles the wait.",
    )
    running_since: str | None = Field(default=None, description="Since when the RayJob has been running without failing (RFC 3339).")
    next_retry_at: str | None = Field(default=None, description="When a failed RayJob will be resubmitted (RFC 3339).")
    last_failure: str | None = Field(default=None, description="Why the RayJob failed last.")


class FleetStatus(Strict):
    phase: Phase = Field(default="Pending", description="Pending, Reconciling, Running, Degraded or Failed.")
    observed_generation: int | None = Field(default=None, description="The spec generation last reconciled.")
    cameras: int = Field(default=0, ge=0, description="Cameras in the reconciled spec.")
    models: int = Field(default=0, ge=0, description="Models in the reconciled spec.")
    topics: list[str] = Field(default_factory=list, description="Kafka topics this fleet runs on.")
    created_topics: list[str] = Field(
        default_factory=list,
        description="Kafka topics this fleet created: the only ones topicDeletionPolicy Delete deletes (never one it adopted). "
        "Written by the operator only (the status subresource).",
    )
    kafka_cluster_id: str | None = Field(
        default=None,
        max_length=256,
        description="Kafka's own id of the cluster the fleet's topics are in: two fleets share a Kafka when these match, "
        "whatever addresses they name it by. Written by the operator only (the status subresource).",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Current state, one entry per condition type.")
    producer_job: JobState = Field(default_factory=JobState, description="Resubmission state of the producer RayJob.")
    consumer_job: JobState = Field(default_factory=JobState, description="Resubmission state of the consumer RayJob.")


class CrdStatus(FleetStatus):
    """The status as the CRD declares it: the operator's (FleetStatus, all it reads and writes) and `pools`,
    which only the fleet's runs write."""

    pools: PoolsStatus | None = Field(
        default=None,
        description="The producer and consumer pools as their jobs last said: actors running and desired, like a Deployment's replicas.",
    )


def set_condition(
    conditions: list[Condition], type_: str, ok: bool | None, reason: str, message: str, generation: int | None
) -> list[Condition]:
    """Conditions with `type_` set; lastTransitionTime kept when the status did not change."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    old = next((c for c in conditions if c.type == type_), None)
    when = old.last_transition_time if old is not None and old.status == status else now_rfc3339()
    new = Condition(
        type=type_, status=status, reason=reason, message=message[:1000], last_transition_time=when, observed_generation=generation
    )
    return [c for c in conditions if c.type != type_] + [new]


@dataclass
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


class Conditions:
    """The conditions of one reconcile pass, started from the published ones. Setting a condition whose
    status or reason changed records an Event when it deserves one: Normal when it turns True, Warning
    for a reason that needs a person (WARNING_REASONS); a wait is no event."""

    def __init__(self, published: list[Condition], generation: int | None):
        self.items = list(published)
        self.generation = generation
        self.events: list[Event] = []

    def get(self, type_: str) -> Condition | None:
        return next((c for c in self.items if c.type == type_), None)

    def set(self, type_: str, ok: bool | None, reason: str, message: str, *, event: bool = True) -> None:
        before = self.get(type_)
        self.items = set_condition(self.items, type_, ok, reason, message, self.generation)
        after = self.get(type_)
        assert after is not None
        changed = before is None or (before.status, before.reason) != (after.status, after.reason)
        if event and changed and (ok is True or reason in WARNING_REASONS):
            self.events.append(Event("Warning" if reason in WARNING_REASONS else "Normal", reason, f"{type_}: {message}"))

    def invalid(self, problems: list[str]) -> None:
        """A spec that cannot run: the parts wait without an event of their own, Ready says what to fix."""
        for type_ in PARTS:
            if (c := self.get(type_)) is None or c.reason != "InvalidSpec":
                self.set(type_, None, "InvalidSpec", "not reconciled: the spec is invalid", event=False)
        self.set("Ready", False, "InvalidSpec", "fix the spec: " + "; ".join(problems))

    def blocked(self, conflict: str) -> None:
        """Names another fleet owns: nothing starts on them, Ready says whose they are."""
        for type_ in PARTS:
            if type_ != "TopicsReady":
                self.set(type_, None, "Conflict", "not started: the fleet's names belong to another fleet", event=False)
        self.set(
            "Ready", False, "Conflict", f"{conflict}; give this fleet other names (spec.kafka, spec.bucket.uri) or delete the other fleet"
        )

    def settle_ready(self) -> None:
        """Ready from the parts: True when all four hold, else what each waits for."""
        parts = {t: self.get(t) for t in PARTS}
        pending = [f"{t} ({c.reason if c else 'not observed'})" for t, c in parts.items() if c is None or c.status != "True"]
        if pending:
            self.set("Ready", False, "NotReady", "waiting for " + ", ".join(pending))
        else:
            self.set("Ready", True, "Ready", "topics, serving, producers and consumers are all up")


def phase_of(conditions: list[Condition]) -> Phase:
    """Failed: the spec cannot run. Running: every part holds and nothing is False. Degraded: something
    is False for a reason other than not existing yet. Reconciling: on its way."""
    by_type = {c.type: c for c in conditions}
    if any(c.reason == "InvalidSpec" for c in conditions):
        return "Failed"
    problems = [c for c in conditions if c.type != "Ready" and c.status == "False" and c.reason != "Missing"]
    if all(t in by_type and by_type[t].status == "True" for t in PARTS) and not problems:
        return "Running"
    return "Degraded" if problems else "Reconciling"
