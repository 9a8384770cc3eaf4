"""One reconcile pass of a CameraFleet: validate, topics, Kubernetes objects, observed state -> status.

The kopf handlers are thin wrappers around `reconcile_fleet`; the decisions below (conditions, phase,
job resubmission backoff, topic ownership) are plain functions, unit-tested without a cluster.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from camerafleet.api.manifest import API_VERSION, KIND, FleetSpec, format_validation_error
from camerafleet.topics import KafkaUnavailable, TopicReconciler, plan_topics
from camerafleet_operator import render
from camerafleet_operator.kube import Kube
from camerafleet_operator.status import FleetStatus, JobState, set_condition

log = logging.getLogger("camerafleet.operator")

SPEC_HASH = "camerafleet.io/spec-hash"
# Reasons that need a person's attention become Warning events; waiting for KubeRay is not one of them.
WARNING_REASONS = {"InvalidSpec", "NotSupported", "Conflict", "KafkaUnavailable", "JobFailed"}
KAFKA_RETRY_S = 15.0


@dataclass
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class ReconcileResult:
    status: FleetStatus
    events: list[Event] = field(default_factory=list)
    retry_after_s: float | None = None  # a temporary error: try again after this long
    retry_reason: str = ""


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def topic_claims(fleet_name: str, namespace: str, created: str, spec: FleetSpec, all_fleets: list[dict[str, Any]]) -> dict[str, str]:
    """Topics that older fleets on the same Kafka already claim (the older fleet wins, like Strimzi)."""
    mine = (created, namespace, fleet_name)
    claims: dict[str, str] = {}
    for other in all_fleets:
        meta = other["metadata"]
        key = (meta.get("creationTimestamp", ""), meta["namespace"], meta["name"])
        if key >= mine or meta.get("deletionTimestamp"):
            continue
        try:
            other_spec = FleetSpec.model_validate(other.get("spec") or {})
        except ValidationError:
            continue
        if other_spec.kafka.bootstrap_servers != spec.kafka.bootstrap_servers:
            continue
        for topic in other_spec.topics():
            claims.setdefault(topic, f"{meta['namespace']}/{meta['name']}")
    return claims


def spec_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj["spec"], sort_keys=True).encode()).hexdigest()[:16]


def job_condition(job: dict[str, Any] | None) -> tuple[bool | None, str, str, bool]:
    """(ok, reason, message, failed) from a RayJob's status as KubeRay writes it."""
    if job is None:
        return False, "Missing", "the RayJob does not exist yet", False
    st = job.get("status") or {}
    deployment, job_status = st.get("jobDeploymentStatus"), st.get("jobStatus")
    if deployment == "Failed" or job_status == "FAILED":
        return False, "JobFailed", st.get("message") or f"the RayJob failed (jobStatus {job_status})", True
    if deployment == "Running" and job_status in ("RUNNING", None):
        return True, "Running", "the RayJob is running", False
    if deployment is None:
        return None, "WaitingForKubeRay", "KubeRay has not picked the RayJob up yet; is the KubeRay operator running?", False
    return None, str(deployment), f"RayJob is {deployment} (jobStatus {job_status})", False


def service_condition(svc: dict[str, Any] | None) -> tuple[bool | None, str, str]:
    if svc is None:
        return False, "Missing", "the RayService does not exist yet"
    st = svc.get("status") or {}
    ready = next((c for c in st.get("conditions", []) if c.get("type") == "Ready"), None)
    if ready is not None:
        return ready.get("status") == "True", ready.get("reason") or "Ready", ready.get("message") or ""
    if st.get("serviceStatus") == "Running":
        return True, "Running", "the Serve application is running"
    if not st:
        return None, "WaitingForKubeRay", "KubeRay has not picked the RayService up yet; is the KubeRay operator running?"
    return None, str(st.get("serviceStatus") or "Pending"), "the Serve application is starting"


def next_retry(state: JobState, initial_s: int, max_s: int, now: datetime, reason: str) -> JobState:
    failures = state.failures + 1
    delay = min(initial_s * 2 ** (failures - 1), max_s)
    return JobState(
        failures=failures,
        next_retry_at=(now + timedelta(seconds=delay)).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        last_failure=reason[:500],
    )


def phase_of(status: FleetStatus) -> str:
    by_type = {c.type: c for c in status.conditions}
    if any(c.reason == "InvalidSpec" for c in status.conditions):
        return "Failed"
    if all(
        by_type.get(t) is not None and by_type[t].status == "True"
        for t in ("TopicsReady", "ServingReady", "ProducersRunning", "ConsumersRunning")
    ):
        return "Running"
    if any(c.status == "False" and c.reason not in ("Missing",) for c in status.conditions if c.type != "Ready"):
        return "Degraded"
    return "Reconciling"


async def reconcile_fleet(
    body: dict[str, Any], kube: Kube, now: datetime | None = None, topic_admin: Callable[[str], TopicReconciler] = TopicReconciler
) -> ReconcileResult:
    """One pass over a fleet: its topics (through `topic_admin`, Kafka), its Kubernetes objects (through
    `kube`), and the status and events that describe what was observed."""
    now = now or datetime.now(UTC)
    meta = body["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], meta.get("generation")
    old = body.get("status") or {}
    status = FleetStatus.model_validate({k: v for k, v in old.items() if k in FleetStatus.model_fields or k in _ALIASES})
    conds = list(status.conditions)
    events: list[Event] = []

    def cond(type_: str, ok: bool | None, reason: str, message: str) -> None:
        nonlocal conds
        before = next((c for c in conds if c.type == type_), None)
        conds = set_condition(conds, type_, ok, reason, message, generation)
        after = next(c for c in conds if c.type == type_)
        changed = before is None or before.status != after.status or before.reason != after.reason
        if changed and (ok is True or reason in WARNING_REASONS):
            events.append(Event("Warning" if reason in WARNING_REASONS else "Normal", reason, f"{type_}: {message}"))

    try:
        spec = FleetSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        text = format_validation_error(err, f"CameraFleet {namespace}/{name}").split("\n", 1)[-1]
        for t in ("TopicsReady", "ServingReady", "ProducersRunning", "ConsumersRunning"):  # one Warning event (Ready's), not five
            conds = set_condition(conds, t, None, "InvalidSpec", "not reconciled: the spec is invalid", generation)
        cond("Ready", False, "InvalidSpec", "fix the spec: " + "; ".join(line.strip(" -") for line in text.splitlines()))
        status = status.model_copy(update={"conditions": conds, "observed_generation": generation})
        return ReconcileResult(status.model_copy(update={"phase": phase_of(status)}), events)

    retry_after, retry_reason = None, ""
    # 1. Kafka topics
    claims = topic_claims(name, namespace, meta.get("creationTimestamp", ""), spec, await kube.list(API_VERSION, KIND))
    owned: list[str] = status.topics
    try:
        async with topic_admin(spec.kafka.bootstrap_servers) as topics:
            plan = plan_topics(spec, await topics.describe(sorted(spec.topics())), claims)
            await topics.apply(spec, plan)
        owned = plan.owned
        if plan.conflicts:
            cond("TopicsReady", False, "Conflict", "; ".join(plan.conflicts))
        elif plan.not_supported:
            cond("TopicsReady", False, "NotSupported", "; ".join(plan.not_supported) + " (Kafka left unchanged)")
        else:
            cond("TopicsReady", True, "Reconciled", f"{len(plan.owned)} topics match the spec")
    except KafkaUnavailable as err:
        cond("TopicsReady", False, "KafkaUnavailable", f"{err}; retrying")
        retry_after, retry_reason = KAFKA_RETRY_S, str(err)

    # 2. Kubernetes objects (owned, so garbage collection removes them with the fleet)
    owner = render.owner_reference(body)
    config, service, producer, consumer = render.fleet_objects(name, namespace, spec, owner)
    await kube.apply(config)
    await kube.apply(service)
    jobs: dict[str, JobState] = {}
    for role, job_obj, state in (("producer", producer, status.producer_job), ("consumer", consumer, status.consumer_job)):
        jobs[role] = await _reconcile_job(kube, job_obj, state, spec, now, events)
        live = await kube.get("ray.io/v1", "RayJob", namespace, job_obj["metadata"]["name"])
        ok, reason, message, failed = job_condition(live)
        if failed or (live is None and jobs[role].next_retry_at):
            retry = jobs[role].next_retry_at
            reason, message = "JobFailed", f"{jobs[role].last_failure}; failure {jobs[role].failures}, resubmitting at {retry}"
            ok = False
            wait = ((_parse_time(retry) or now) - now).total_seconds()
            retry_after = max(1.0, wait) if retry_after is None else min(retry_after, max(1.0, wait))
        cond("ProducersRunning" if role == "producer" else "ConsumersRunning", ok, reason, message)

    # 3. Serving
    ok, reason, message = service_condition(await kube.get("ray.io/v1", "RayService", namespace, service["metadata"]["name"]))
    cond("ServingReady", ok, reason, message)

    by_type = {c.type: c for c in conds}
    pending = [t for t in ("TopicsReady", "ServingReady", "ProducersRunning", "ConsumersRunning") if by_type[t].status != "True"]
    if pending:
        cond("Ready", False, "NotReady", "waiting for " + ", ".join(f"{t} ({by_type[t].reason})" for t in pending))
    else:
        cond("Ready", True, "Ready", "topics, serving, producers and consumers are all up")
    status = status.model_copy(
        update={
            "conditions": conds,
            "observed_generation": generation,
            "cameras": len(spec.cameras),
            "models": len(spec.models),
            "topics": owned,
            "producer_job": jobs["producer"],
            "consumer_job": jobs["consumer"],
        }
    )
    return ReconcileResult(status.model_copy(update={"phase": phase_of(status)}), events, retry_after, retry_reason)


_ALIASES = {f.alias for f in FleetStatus.model_fields.values() if f.alias}


async def _reconcile_job(kube: Kube, job: dict[str, Any], state: JobState, spec: FleetSpec, now: datetime, events: list[Event]) -> JobState:
    """Apply a RayJob; a failed one is deleted once its backoff expires so the next pass resubmits it.
    RayJob specs are not updated in place: a changed spec replaces the job (manifest changes reach running
    jobs through the mounted ConfigMap without that)."""
    meta = job["metadata"]
    job["metadata"].setdefault("annotations", {})[SPEC_HASH] = spec_hash(job)
    live = await kube.get("ray.io/v1", "RayJob", meta["namespace"], meta["name"])
    k = spec.kubernetes
    if live is not None:
        ok, _reason, message, failed = job_condition(live)
        if failed:
            if state.next_retry_at is None:
                state = next_retry(state, k.job_retry_initial_seconds, k.job_retry_max_seconds, now, message)
                events.append(
                    Event("Warning", "JobFailed", f"RayJob {meta['name']} failed ({message}); resubmitting at {state.next_retry_at}")
                )
            if now >= (_parse_time(state.next_retry_at) or now):
                await kube.delete("ray.io/v1", "RayJob", meta["namespace"], meta["name"])
                events.append(Event("Normal", "JobResubmitted", f"RayJob {meta['name']} resubmitted after failure {state.failures}"))
            return state
        if (live["metadata"].get("annotations") or {}).get(SPEC_HASH) != job["metadata"]["annotations"][SPEC_HASH]:
            await kube.delete("ray.io/v1", "RayJob", meta["namespace"], meta["name"])
            events.append(Event("Normal", "JobReplaced", f"RayJob {meta['name']} replaced: its spec changed"))
            return state
        if ok:
            state = JobState(failures=state.failures, last_failure=state.last_failure)
        return state
    if now < (_parse_time(state.next_retry_at) or now):
        return state
    await kube.apply(job)
    return state.model_copy(update={"next_retry_at": None})
