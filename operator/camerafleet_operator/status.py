"""The `status` of a CameraFleet: one pydantic model, used by the reconciler and for the CRD schema.

Conditions follow the Kubernetes convention (type, status, reason, message, lastTransitionTime,
observedGeneration); `lastTransitionTime` only moves when a condition's status changes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from camerafleet.api.manifest import Strict

CONDITION_TYPES = ("TopicsReady", "ServingReady", "ProducersRunning", "ConsumersRunning", "Ready")
Phase = Literal["Pending", "Reconciling", "Running", "Degraded", "Failed"]


class Condition(Strict):
    type: str = Field(description="TopicsReady, ServingReady, ProducersRunning, ConsumersRunning or Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="Whether the condition holds.")
    reason: str = Field(description="One CamelCase word for machines, e.g. NotSupported, Conflict, InvalidSpec.")
    message: str = Field(default="", description="What happened and what to do, for people.")
    last_transition_time: str = Field(description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, description="The spec generation this condition describes.")


class JobState(Strict):
    failures: int = Field(default=0, ge=0, description="How often this RayJob failed and was resubmitted.")
    next_retry_at: str | None = Field(default=None, description="When a failed RayJob will be resubmitted (RFC 3339).")
    last_failure: str | None = Field(default=None, description="Why the RayJob failed last.")


class FleetStatus(Strict):
    phase: Phase = Field(default="Pending", description="Pending, Reconciling, Running, Degraded or Failed.")
    observed_generation: int | None = Field(default=None, description="The spec generation last reconciled.")
    cameras: int = Field(default=0, ge=0, description="Cameras in the reconciled spec.")
    models: int = Field(default=0, ge=0, description="Models in the reconciled spec.")
    topics: list[str] = Field(default_factory=list, description="Kafka topics this fleet owns.")
    conditions: list[Condition] = Field(default_factory=list, description="Current state, one entry per condition type.")
    producer_job: JobState = Field(default_factory=JobState, description="Resubmission state of the producer RayJob.")
    consumer_job: JobState = Field(default_factory=JobState, description="Resubmission state of the consumer RayJob.")


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


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
