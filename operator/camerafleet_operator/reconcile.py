"""One reconcile pass of a CameraFleet: validate, topics, Kubernetes objects, observed state -> status.

The kopf handlers are thin wrappers around `reconcile_fleet`, which runs one step per concern (the spec,
the topics, the owned objects, serving, each job) against a `Conditions` accumulator; the decisions
(conditions, phase, job resubmission backoff, topic ownership) are plain functions, unit-tested without
a cluster.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from camerafleet.api.manifest import API_VERSION, KIND, FleetSpec, format_validation_error
from camerafleet.topics import KafkaUnavailable, TopicPlan, TopicReconciler, plan_topics
from camerafleet_operator import render
from camerafleet_operator.kube import Kube
from camerafleet_operator.observe import job_condition, scheduling_condition, service_condition, upgrade_condition
from camerafleet_operator.status import Conditions, Event, FleetStatus, JobState, phase_of
from camerafleet_operator.tenancy import per_fleet
from camerafleet_operator.validate import DEFAULT_POLICY, ClusterPolicy, cluster_problems, operator_bootstrap

log = logging.getLogger("camerafleet.operator")

SPEC_HASH = "camerafleet.io/spec-hash"
CLUSTER_HASH = "camerafleet.io/cluster-hash"
RECREATE_POLL_S = 5.0
KAFKA_RETRY_S = 15.0
JOB_CONDITIONS = {"producer": "ProducersRunning", "consumer": "ConsumersRunning"}


@dataclass
class ReconcileResult:
    status: FleetStatus
    events: list[Event] = field(default_factory=list)
    retry_after_s: float | None = None  # a temporary error: try again after this long
    retry_reason: str = ""


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def group_key(group: str) -> str:
    """A consumer group's key among the claims (no topic name holds a space)."""
    return f"consumer group {group}"


def older_fleets(fleet_name: str, namespace: str, created: str, all_fleets: list[dict[str, Any]]) -> list[tuple[dict[str, Any], FleetSpec]]:
    """The fleets created before this one and not being deleted, each with the spec it runs (`per_fleet`):
    where two fleets want the same names, the older one keeps them (like Strimzi)."""
    mine = (created, namespace, fleet_name)
    older = []
    for other in all_fleets:
        meta = other["metadata"]
        if (meta.get("creationTimestamp", ""), meta["namespace"], meta["name"]) >= mine or meta.get("deletionTimestamp"):
            continue
        try:
            older.append((other, per_fleet(meta["namespace"], meta["name"], FleetSpec.model_validate(other.get("spec") or {}))))
        except ValidationError:
            continue
    return older


def _whose(other: dict[str, Any]) -> str:
    return f"{other['metadata']['namespace']}/{other['metadata']['name']}"


def topic_claims(
    fleet_name: str, namespace: str, created: str, spec: FleetSpec, all_fleets: list[dict[str, Any]], kafka_cluster: str | None
) -> dict[str, str]:
    """Topics and consumer groups that older fleets on the same Kafka already claim, each fleet with the names it
    runs on (`tenancy.per_fleet`). `spec` is this fleet's, per fleet. The same Kafka is the same cluster id
    (`kafka_cluster`, this fleet's; another's is in its status); where either is not known yet, the same
    address as the operator dials it."""
    kafka = operator_bootstrap(spec.kafka.bootstrap_servers, namespace)
    claims: dict[str, str] = {}
    for other, other_spec in older_fleets(fleet_name, namespace, created, all_fleets):
        other_cluster = (other.get("status") or {}).get("kafkaClusterId")
        if kafka_cluster and other_cluster:
            if other_cluster != kafka_cluster:
                continue
        elif operator_bootstrap(other_spec.kafka.bootstrap_servers, other["metadata"]["namespace"]) != kafka:
            continue
        for name in [*other_spec.topics(), group_key(other_spec.kafka.consumer_group)]:
            claims.setdefault(name, _whose(other))
    return claims


def folder_conflict(fleet_name: str, namespace: str, created: str, spec: FleetSpec, all_fleets: list[dict[str, Any]]) -> str | None:
    """An older fleet's bucket folder that holds this fleet's, or lies inside it (one fleet's expiry rule and
    sweeper would reach the other's frames), on the same S3 endpoint; None when there is none."""
    mine = spec.bucket.uri.rstrip("/") + "/"
    for other, other_spec in older_fleets(fleet_name, namespace, created, all_fleets):
        theirs = other_spec.bucket.uri.rstrip("/") + "/"
        if other_spec.bucket.endpoint == spec.bucket.endpoint and (mine.startswith(theirs) or theirs.startswith(mine)):
            return f"bucket folder {mine} overlaps {theirs} of fleet {_whose(other)}"
    return None


def spec_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj["spec"], sort_keys=True).encode()).hexdigest()[:16]


def _stamp(when: datetime) -> str:
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def next_retry(state: JobState, initial_s: int, max_s: int, now: datetime, reason: str) -> JobState:
    failures = state.failures + 1
    delay = min(initial_s * 2 ** (failures - 1), max_s)
    return JobState(failures=failures, next_retry_at=_stamp(now + timedelta(seconds=delay)), last_failure=reason[:500])


def while_running(state: JobState, now: datetime, stable_s: int) -> JobState:
    """A RayJob that runs: once it has run as long as the longest backoff (`stable_s`) its failures are
    forgiven, as the kubelet forgives a container after ten minutes of running, so a failure weeks later
    waits the first backoff again (10 s), not the longest (10 min)."""
    since = _parse_time(state.running_since)
    if since is None:
        return state.model_copy(update={"next_retry_at": None, "running_since": _stamp(now)})
    if state.failures and (now - since).total_seconds() >= stable_s:
        return state.model_copy(update={"failures": 0})
    return state


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


@dataclass
class _Pass:
    """What one pass knows and has decided so far."""

    body: dict[str, Any]
    kube: Kube
    now: datetime
    conds: Conditions
    name: str
    namespace: str
    retry_after: float | None = None
    retry_reason: str = ""
    invalid: list[str] = field(default_factory=list)  # what KubeRay refused: only a spec change helps
    kafka_cluster: str | None = None  # Kafka's cluster id, once asked

    def retry(self, after_s: float, reason: str = "") -> None:
        """Come back after `after_s` (the soonest of all steps' wishes)."""
        if self.retry_after is None or after_s < self.retry_after:
            self.retry_after, self.retry_reason = after_s, reason or self.retry_reason


async def reconcile_fleet(
    body: dict[str, Any],
    kube: Kube,
    now: datetime | None = None,
    topic_admin: Callable[[str], TopicReconciler] = TopicReconciler,
    policy: ClusterPolicy = DEFAULT_POLICY,
) -> ReconcileResult:
    """One pass over a fleet: its topics (through `topic_admin`, Kafka), its Kubernetes objects (through
    `kube`), and the status and events that describe what was observed."""
    meta = body["metadata"]
    status = FleetStatus.model_validate({k: v for k, v in (body.get("status") or {}).items() if k in _FIELDS})
    p = _Pass(body, kube, now or datetime.now(UTC), Conditions(status.conditions, meta.get("generation")), meta["name"], meta["namespace"])
    checked, problems = await _checked_spec(p, policy)
    if checked is None:  # nothing is touched: one Warning event (Ready's), the other conditions say why they wait
        p.conds.invalid(problems)
        return _result(p, status, {})
    spec = per_fleet(p.namespace, p.name, checked)
    fleets = await p.kube.list(API_VERSION, KIND)
    if conflict := folder_conflict(p.name, p.namespace, meta.get("creationTimestamp", ""), spec, fleets):
        p.conds.set("TopicsReady", None, "Conflict", "not reconciled: the fleet's bucket folder belongs to another fleet", event=False)
        p.conds.blocked(conflict)
        return _result(p, status, {})
    topics = await _topics(p, spec, topic_admin, fleets)
    owned = None if topics is None else topics.owned
    created = sorted(set(status.created_topics) | set(topics.create if topics else ()))
    if topics is not None and topics.conflicts:  # another fleet's names: nothing starts on them
        p.conds.blocked("; ".join(topics.conflicts))
        return _result(p, status, {"topics": owned, "created_topics": created})
    owner = render.owner_reference(body)
    objects = render.fleet_objects(p.name, p.namespace, spec, owner, access=policy.fleet_access)
    await p.kube.create(render.ray_token_secret(p.name, p.namespace, secrets.token_urlsafe(32), owner))  # once; kept after
    await _apply_owned(p, [o for o in objects if o["kind"] not in ("RayJob", "RayService")])
    serving = await _serving(p, spec, next(o for o in objects if o["kind"] == "RayService"))
    jobs = {
        role: await _job(p, spec, role, job, getattr(status, f"{role}_job"), serving_ok=serving)
        for role, job in zip(("producer", "consumer"), (o for o in objects if o["kind"] == "RayJob"), strict=True)
    }
    await _scheduling(p, spec)
    if p.invalid:  # KubeRay refused what the API server accepted
        p.conds.set("Ready", False, "InvalidSpec", "fix the spec: " + "; ".join(p.invalid))
        return _result(p, status, {"producer_job": jobs["producer"], "consumer_job": jobs["consumer"]})
    p.conds.settle_ready()
    return _result(
        p,
        status,
        {
            "cameras": len(spec.cameras),
            "models": len(spec.models),
            "topics": status.topics if owned is None else owned,
            "created_topics": created,
            "producer_job": jobs["producer"],
            "consumer_job": jobs["consumer"],
        },
    )


_FIELDS = set(FleetStatus.model_fields) | {f.alias for f in FleetStatus.model_fields.values() if f.alias}


def _result(p: _Pass, status: FleetStatus, update: dict[str, Any]) -> ReconcileResult:
    conditions = p.conds.items
    if p.kafka_cluster:
        update = {**update, "kafka_cluster_id": p.kafka_cluster}
    new = status.model_copy(
        update={**update, "conditions": conditions, "observed_generation": p.conds.generation, "phase": phase_of(conditions)}
    )
    return ReconcileResult(new, p.conds.events, p.retry_after, p.retry_reason)


async def _checked_spec(p: _Pass, policy: ClusterPolicy) -> tuple[FleetSpec | None, list[str]]:
    """The fleet's spec, or None and every problem that keeps it from running on this cluster."""
    try:
        spec = FleetSpec.model_validate(p.body.get("spec") or {})
    except ValidationError as err:
        text = format_validation_error(err, f"CameraFleet {p.namespace}/{p.name}").split("\n", 1)[-1]
        return None, [line.strip(" -") for line in text.splitlines()]
    problems = cluster_problems(p.name, spec, policy)
    problems += await missing_references(p.kube, p.namespace, spec)
    return (None if problems else spec), problems


async def _topics(
    p: _Pass, spec: FleetSpec, topic_admin: Callable[[str], TopicReconciler], fleets: list[dict[str, Any]]
) -> TopicPlan | None:
    """TopicsReady; what was planned and done in Kafka (the topics this fleet owns, those it created, those
    another fleet owns), or None when Kafka could not be asked."""
    created = p.body["metadata"].get("creationTimestamp", "")
    try:
        # The operator runs in its own namespace: a short Service name in the spec means the fleet's namespace.
        async with topic_admin(operator_bootstrap(spec.kafka.bootstrap_servers, p.namespace)) as topics:
            p.kafka_cluster = await topics.cluster_id()
            claims = topic_claims(p.name, p.namespace, created, spec, fleets, p.kafka_cluster)
            if owner := claims.get(group_key(spec.kafka.consumer_group)):
                plan = TopicPlan(conflicts=[f"consumer group {spec.kafka.consumer_group} belongs to fleet {owner}"])
            else:
                plan = plan_topics(spec, await topics.describe(sorted(spec.topics())), claims)
            if plan.conflicts:  # the fleet cannot run on these names: Kafka is left as it is
                plan = TopicPlan(conflicts=plan.conflicts)
            await topics.apply(spec, plan)
    except KafkaUnavailable as err:
        p.conds.set("TopicsReady", False, "KafkaUnavailable", f"{err}; retrying")
        p.retry(KAFKA_RETRY_S, str(err))
        return None
    if plan.conflicts:
        p.conds.set("TopicsReady", False, "Conflict", "; ".join(plan.conflicts))
    elif plan.not_supported:
        p.conds.set("TopicsReady", False, "NotSupported", "; ".join(plan.not_supported) + " (Kafka left unchanged)")
    else:
        p.conds.set("TopicsReady", True, "Reconciled", f"{len(plan.owned)} topics match the spec")
    return plan


_OPTIONAL = (("v1", "Service", "console"), ("networking.k8s.io/v1", "NetworkPolicy", "access"))  # kept only while wanted


async def _apply_owned(p: _Pass, objects: list[dict[str, Any]]) -> None:
    """The objects the fleet owns (garbage-collected with it). One no longer wanted (a console turned off, the
    operator's NetworkPolicies turned off) is deleted, but an object of that name the operator did not make stays."""
    for obj in objects:
        await p.kube.apply(obj)
    wanted = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for api_version, kind, role in _OPTIONAL:
        name = render.names(p.name)[role]
        if (kind, name) in wanted:
            continue
        live = await p.kube.get(api_version, kind, p.namespace, name)
        if live is not None and live["metadata"].get("labels", {}).get(render.LABEL_FLEET) == p.name:
            await p.kube.delete(api_version, kind, p.namespace, name)


def cluster_hash(service: dict[str, Any]) -> str:
    """What KubeRay counts as a cluster-level change of a RayService: its rayClusterConfig, less the worker
    groups' replica counts (which the autoscaler owns)."""
    config = copy.deepcopy(service["spec"]["rayClusterConfig"])
    for group in config.get("workerGroupSpecs", []):
        for key in ("replicas", "minReplicas", "maxReplicas"):
            group.pop(key, None)
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


async def _serving(p: _Pass, spec: FleetSpec, service: dict[str, Any]) -> bool:
    """ServingReady and ServingUpToDate; whether the Serve application serves (the jobs wait for it).

    servingUpgrade NewCluster: KubeRay rolls a cluster-level change out on a second cluster; one that does
    not take over within upgradeTimeoutSeconds is reported (UpgradeStalled). Recreate: KubeRay leaves such
    changes alone (upgradeStrategy None) and the operator deletes the RayService, then creates the new one."""
    name = service["metadata"]["name"]
    service["metadata"].setdefault("annotations", {})[CLUSTER_HASH] = cluster_hash(service)
    live = await p.kube.get("ray.io/v1", "RayService", p.namespace, name)
    recreate = spec.kubernetes.serving_upgrade == "Recreate"
    if live is not None and not live["metadata"].get("deletionTimestamp"):
        known = (live["metadata"].get("annotations") or {}).get(CLUSTER_HASH)
        if recreate and known is not None and known != service["metadata"]["annotations"][CLUSTER_HASH]:
            await p.kube.delete("ray.io/v1", "RayService", p.namespace, name)
            p.conds.events.append(Event("Normal", "ServingRecreated", f"RayService {name} deleted to be recreated: its cluster changed"))
            live = await p.kube.get("ray.io/v1", "RayService", p.namespace, name)
    if live is not None and live["metadata"].get("deletionTimestamp"):
        message = f"RayService {name} is being deleted to be recreated (servingUpgrade Recreate); frames meanwhile end stale"
        p.conds.set("ServingReady", None, "Recreating", message)
        p.conds.set("ServingUpToDate", None, "Recreating", message)
        p.retry(RECREATE_POLL_S)
        return False
    await p.kube.apply(service)
    live = await p.kube.get("ray.io/v1", "RayService", p.namespace, name)
    serving = service_condition(live, spec.serving.app_name)
    p.conds.set("ServingReady", serving.ok, serving.reason, serving.message)
    if serving.invalid:
        p.invalid.append(serving.message)
    upgrade = upgrade_condition(live, p.now, spec.kubernetes.upgrade_timeout_seconds)
    # A first cluster is up to date from the start: an event only once an upgrade was seen.
    p.conds.set("ServingUpToDate", upgrade.ok, upgrade.reason, upgrade.message, event=p.conds.get("ServingUpToDate") is not None)
    return serving.ok is True


async def _scheduling(p: _Pass, spec: FleetSpec) -> None:
    """PodsScheduled, from the fleet's Pods (KubeRay's, labelled with the fleet); while one waits for a node
    within schedulingTimeoutSeconds, the pass comes back when that wait ends, to report it on time."""
    pods = await p.kube.list("v1", "Pod", p.namespace, labels=f"{render.LABEL_FLEET}={p.name}")
    observed = scheduling_condition(pods, p.now, spec.kubernetes.scheduling_timeout_seconds)
    # A fleet's Pods all placed from the start is no news: an event once a Pod did not fit.
    news = observed.ok is False or p.conds.get("PodsScheduled") is not None
    p.conds.set("PodsScheduled", observed.ok, observed.reason, observed.message, event=news)
    if observed.recheck_s is not None:
        p.retry(observed.recheck_s, "a Pod waits for a node")


async def _job(p: _Pass, spec: FleetSpec, role: str, job: dict[str, Any], state: JobState, *, serving_ok: bool) -> JobState:
    """ProducersRunning or ConsumersRunning; the job's resubmission state. The consumers call the Serve app
    through the RayService's serve Service, which KubeRay creates once the app runs: a job starts only once
    serving is ready, so no frame is produced only to fail or go stale while the models load."""
    condition = JOB_CONDITIONS[role]
    name = job["metadata"]["name"]
    if not serving_ok and await p.kube.get("ray.io/v1", "RayJob", p.namespace, name) is None:
        p.conds.set(condition, None, "WaitingForServing", f"the {role}s start once the Serve application serves")
        return state
    state = await _reconcile_job(p.kube, job, state, spec, p.now, p.conds.events)
    observed = job_condition(await p.kube.get("ray.io/v1", "RayJob", p.namespace, name))
    ok, reason, message = observed.ok, observed.reason, observed.message
    if observed.invalid:
        p.invalid.append(message)
    elif observed.failed or (observed.reason == "Missing" and state.next_retry_at):
        ok, reason = False, "JobFailed"
        message = f"{state.last_failure}; failure {state.failures}, resubmitting at {state.next_retry_at}"
        p.retry(max(1.0, ((_parse_time(state.next_retry_at) or p.now) - p.now).total_seconds()))
    p.conds.set(condition, ok, reason, message)
    return state


async def _reconcile_job(kube: Kube, job: dict[str, Any], state: JobState, spec: FleetSpec, now: datetime, events: list[Event]) -> JobState:
    """Apply a RayJob; a failed one is deleted once its backoff expires so the next pass resubmits it.
    RayJob specs are not updated in place: a changed spec replaces the job, a refused one included (KubeRay
    never validates a RayJob again), while manifest changes reach running jobs through the mounted
    ConfigMap without that."""
    meta = job["metadata"]
    job["metadata"].setdefault("annotations", {})[SPEC_HASH] = spec_hash(job)
    live = await kube.get("ray.io/v1", "RayJob", meta["namespace"], meta["name"])
    k = spec.kubernetes
    if live is None:
        if now < (_parse_time(state.next_retry_at) or now):
            return state
        await kube.apply(job)
        return state.model_copy(update={"next_retry_at": None})
    if live["metadata"].get("deletionTimestamp"):
        return state  # KubeRay's finalizer stops the Ray job first; the next pass applies the new one
    if (live["metadata"].get("annotations") or {}).get(SPEC_HASH) != job["metadata"]["annotations"][SPEC_HASH]:
        await kube.delete("ray.io/v1", "RayJob", meta["namespace"], meta["name"])
        events.append(Event("Normal", "JobReplaced", f"RayJob {meta['name']} replaced: its spec changed"))
        return state
    observed = job_condition(live)
    if observed.invalid:
        return state  # reported as InvalidSpec; resubmitting the same spec would be refused again
    if observed.failed:
        if state.next_retry_at is None:
            state = next_retry(state, k.job_retry_initial_seconds, k.job_retry_max_seconds, now, observed.message)
            events.append(
                Event("Warning", "JobFailed", f"RayJob {meta['name']} failed ({observed.message}); resubmitting at {state.next_retry_at}")
            )
        if now >= (_parse_time(state.next_retry_at) or now):
            await kube.delete("ray.io/v1", "RayJob", meta["namespace"], meta["name"])
            events.append(Event("Normal", "JobResubmitted", f"RayJob {meta['name']} resubmitted after failure {state.failures}"))
        return state
    if observed.ok:
        state = while_running(state, now, k.job_retry_max_seconds)
    return state
