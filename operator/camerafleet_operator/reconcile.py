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
from camerafleet_operator.validate import cluster_problems

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


@dataclass(frozen=True)
class Observed:
    """What a RayJob's or RayService's status, as KubeRay v1.6 writes it, says about its part of the fleet."""

    ok: bool | None  # None: not known yet (starting, waiting for KubeRay)
    reason: str
    message: str
    failed: bool = False  # the job ended or failed: resubmit it after its backoff
    invalid: bool = False  # KubeRay refused the object: only a spec change helps


def job_condition(job: dict[str, Any] | None) -> Observed:
    if job is None:
        return Observed(False, "Missing", "the RayJob does not exist yet")
    if job["metadata"].get("deletionTimestamp"):
        return Observed(None, "Deleting", "the RayJob is being deleted (KubeRay stops its Ray job first)")
    st = job.get("status") or {}
    deployment, job_status, message = st.get("jobDeploymentStatus") or "", st.get("jobStatus") or "", st.get("message") or ""
    if deployment == "ValidationFailed":
        return Observed(False, "InvalidSpec", f"KubeRay refused the RayJob: {message}", invalid=True)
    if deployment == "Failed" or job_status == "FAILED":
        return Observed(False, "JobFailed", message or f"the RayJob failed (jobStatus {job_status or 'unknown'})", failed=True)
    if deployment == "Complete":  # the pipeline runs until stopped: a job that ended is restarted
        return Observed(False, "JobEnded", f"the RayJob ended (jobStatus {job_status or 'unknown'}) {message}".strip(), failed=True)
    if deployment == "Running" and job_status == "RUNNING":
        return Observed(True, "Running", "the RayJob is running")
    if not deployment:
        return Observed(None, "WaitingForKubeRay", "KubeRay has not picked the RayJob up yet; is the KubeRay operator running?")
    return Observed(None, deployment, f"RayJob is {deployment} (jobStatus {job_status or 'not known yet'})")


def service_condition(svc: dict[str, Any] | None, app_name: str) -> Observed:
    if svc is None:
        return Observed(False, "Missing", "the RayService does not exist yet")
    st = svc.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None:
        return Observed(None, "WaitingForKubeRay", "KubeRay has not picked the RayService up yet; is the KubeRay operator running?")
    reason, message = ready.get("reason") or "", ready.get("message") or ""
    app = _app_status(st, app_name)
    if ready.get("status") == "True":
        return Observed(True, reason or "Ready", message or "the Serve application serves")
    if reason == "ValidationFailed":
        return Observed(False, "InvalidSpec", f"KubeRay refused the RayService: {message}", invalid=True)
    if reason == "Initializing":  # a normal start (pods, then the Serve app): not yet known, not degraded
        return Observed(None, "Initializing", "; ".join(x for x in (message, app) if x) or "the Serve application is starting")
    return Observed(False, reason or "NotReady", "; ".join(x for x in (message, app) if x))


def _app_status(status: dict[str, Any], app_name: str) -> str:
    """The Serve application's own status and message (e.g. DEPLOY_FAILED and the builder's traceback)."""
    for key in ("pendingServiceStatus", "activeServiceStatus"):
        app = ((status.get(key) or {}).get("applicationStatuses") or {}).get(app_name)
        if app:
            return f"Serve app {app_name} {app.get('status', '')}: {app.get('message', '')[:300]}".rstrip(": ")
    return ""


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


async def missing_references(kube: Kube, namespace: str, spec: FleetSpec) -> list[str]:
    """Objects the spec names that must exist first: KubeRay creates no Pod for a head whose service account
    is missing, and the fleet would wait forever. Checked on every pass, so creating it is enough."""
    account = spec.kubernetes.service_account_name
    if account and await kube.get("v1", "ServiceAccount", namespace, account) is None:
        return [
            f"kubernetes.serviceAccountName: ServiceAccount {account!r} does not exist in namespace {namespace}; create it "
            "or leave the field out (the operator then creates one for the fleet's jobs)"
        ]
    return []


async def reconcile_fleet(
    body: dict[str, Any],
    kube: Kube,
    now: datetime | None = None,
    topic_admin: Callable[[str], TopicReconciler] = TopicReconciler,
    allow_local_addresses: bool = False,
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
        problems = [line.strip(" -") for line in text.splitlines()]
    else:
        problems = cluster_problems(name, spec, allow_local_addresses=allow_local_addresses)
        problems += await missing_references(kube, namespace, spec)
    if problems:  # nothing is touched: one Warning event (Ready's), the other conditions say why they wait
        for t in ("TopicsReady", "ServingReady", "ProducersRunning", "ConsumersRunning"):
            conds = set_condition(conds, t, None, "InvalidSpec", "not reconciled: the spec is invalid", generation)
        cond("Ready", False, "InvalidSpec", "fix the spec: " + "; ".join(problems))
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

    # 2. Kubernetes objects (owned, so garbage collection removes them with the fleet). The consumers call
    # the Serve app through the RayService's serve Service, which KubeRay creates once the app runs: both jobs
    # wait for ServingReady, so no frame is produced only to fail or go stale while the models load.
    owner = render.owner_reference(body)
    objects = render.fleet_objects(name, namespace, spec, owner)
    producer, consumer = (o for o in objects if o["kind"] == "RayJob")
    [service] = (o for o in objects if o["kind"] == "RayService")
    for obj in objects:
        if obj["kind"] != "RayJob":  # jobs wait for the Serve app, below
            await kube.apply(obj)
    if not spec.kubernetes.console:  # turned off: its Service goes (owned objects otherwise go only with the fleet)
        console = await kube.get("v1", "Service", namespace, render.names(name)["console"])
        if console is not None and console["metadata"].get("labels", {}).get(render.LABEL_FLEET) == name:
            await kube.delete("v1", "Service", namespace, console["metadata"]["name"])
    serving = service_condition(await kube.get("ray.io/v1", "RayService", namespace, service["metadata"]["name"]), spec.serving.app_name)
    cond("ServingReady", serving.ok, serving.reason, serving.message)
    invalid = [serving.message] if serving.invalid else []
    jobs: dict[str, JobState] = {}
    for role, job_obj, state in (("producer", producer, status.producer_job), ("consumer", consumer, status.consumer_job)):
        condition = "ProducersRunning" if role == "producer" else "ConsumersRunning"
        existing = await kube.get("ray.io/v1", "RayJob", namespace, job_obj["metadata"]["name"])
        if serving.ok is not True and existing is None:
            jobs[role] = state
            cond(condition, None, "WaitingForServing", f"the {role}s start once the Serve application serves")
            continue
        jobs[role] = await _reconcile_job(kube, job_obj, state, spec, now, events)
        observed = job_condition(await kube.get("ray.io/v1", "RayJob", namespace, job_obj["metadata"]["name"]))
        ok, reason, message = observed.ok, observed.reason, observed.message
        if observed.invalid:
            invalid.append(message)
        elif observed.failed or (observed.reason == "Missing" and jobs[role].next_retry_at):
            retry = jobs[role].next_retry_at
            reason, message = "JobFailed", f"{jobs[role].last_failure}; failure {jobs[role].failures}, resubmitting at {retry}"
            ok = False
            wait = ((_parse_time(retry) or now) - now).total_seconds()
            retry_after = max(1.0, wait) if retry_after is None else min(retry_after, max(1.0, wait))
        cond(condition, ok, reason, message)
    if invalid:  # KubeRay refused what the API server accepted: only a spec change helps
        cond("Ready", False, "InvalidSpec", "fix the spec: " + "; ".join(invalid))
        status = status.model_copy(
            update={
                "conditions": conds,
                "observed_generation": generation,
                "producer_job": jobs["producer"],
                "consumer_job": jobs["consumer"],
            }
        )
        return ReconcileResult(status.model_copy(update={"phase": phase_of(status)}), events)

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
    if live is not None and live["metadata"].get("deletionTimestamp"):
        return state  # KubeRay's finalizer stops the Ray job first; the next pass applies the new one
    if live is not None:
        observed = job_condition(live)
        message, failed, ok = observed.message, observed.failed, observed.ok
        if observed.invalid:
            return state  # reported as InvalidSpec; resubmitting the same spec would be refused again
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
