"""kopf handlers: thin wrappers that call the reconciler and write its status, events and retries.

Create, update (of the spec), resume (after an operator restart) and a periodic timer (drift: a deleted
RayJob or a topic deleted behind the operator's back comes back) all run the same idempotent reconcile.
A finalizer exists only for fleets whose topics must be deleted with them (topicDeletionPolicy Delete).
An API server that is restarting, unreachable or refusing a call is a temporary error: retried after
KUBE_RETRY_S with a one-line reason, never a traceback and kopf's 60 s default backoff.

kopf runs the timer and the change handlers of one object concurrently; a lock per fleet keeps them one
at a time, each starting from the newest body kopf knows, so a pass begun on an older spec can never
overwrite what a newer one just applied.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import kopf
from kubernetes import config as kube_config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from camerafleet.api.manifest import API_VERSION, GROUP, PLURAL, VERSION, FleetSpec
from camerafleet.api.settings import Settings
from camerafleet.topics import KafkaUnavailable, TopicReconciler
from camerafleet_operator import metrics, render
from camerafleet_operator.kube import Kube
from camerafleet_operator.reconcile import ReconcileResult, reconcile_fleet, topic_claims
from camerafleet_operator.tenancy import per_fleet
from camerafleet_operator.validate import ClusterPolicy, operator_bootstrap

SETTINGS = Settings.from_env()
RESYNC_SECONDS = SETTINGS.resync_seconds
POLICY = ClusterPolicy.of(SETTINGS)
KUBE_RETRY_S = 10.0
log = logging.getLogger("camerafleet.operator")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    prefix = "camerafleet.io"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=prefix, key="last-handled-configuration")
    settings.persistence.finalizer = f"{prefix}/topics"
    settings.posting.level = logging.WARNING  # our own events say what matters; kopf's per-handler chatter does not
    settings.posting.reporting_component = "camerafleet-operator"
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()
    memo.kube = Kube(ApiClient())
    memo.locks = {}  # fleet uid -> asyncio.Lock; shared by the per-object memos (kopf copies memo shallowly)


def _publish(body: kopf.Body, patch: kopf.Patch, outcome: ReconcileResult) -> None:
    patch.status.update(outcome.status.model_dump(by_alias=True, mode="json"))
    metrics.record_reconcile(
        body.metadata.namespace or "", body.metadata.name or "", outcome.status.phase, retry=outcome.retry_after_s is not None
    )
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    if outcome.retry_after_s is not None:
        raise kopf.TemporaryError(outcome.retry_reason or "waiting", delay=outcome.retry_after_s)


def api_problem(err: ApiException | TransportError) -> str:
    """One line on a failed Kubernetes API call (an ApiException's text is headers and a JSON body)."""
    if isinstance(err, ApiException):
        try:
            message = json.loads(err.body or "{}").get("message") or ""
        except (ValueError, AttributeError):
            message = str(err.body or "")[:300]
        return f"the Kubernetes API answered {err.status} {err.reason}: {message}".rstrip(": ")
    return f"the Kubernetes API cannot be reached ({type(err).__name__}: {str(err)[:300]})"


async def _reconcile(snapshot: dict[str, Any], kube: Kube) -> ReconcileResult:
    try:
        return await reconcile_fleet(snapshot, kube, policy=POLICY)
    except (ApiException, TransportError) as err:
        meta = snapshot.get("metadata") or {}
        metrics.record_error(meta.get("namespace", ""), meta.get("name", ""))
        raise kopf.TemporaryError(f"{api_problem(err)}; retrying in {KUBE_RETRY_S:.0f} s", delay=KUBE_RETRY_S) from None


def _lock(memo: kopf.Memo, body: kopf.Body) -> asyncio.Lock:
    return memo.locks.setdefault(body.metadata.uid, asyncio.Lock())


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    async with _lock(memo, body):
        _publish(body, patch, await _reconcile(dict(body), memo.kube))


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    async with _lock(memo, body):
        snapshot = dict(body)  # the body is live: taken under the lock, it is the newest kopf has seen
        outcome = await _reconcile(snapshot, memo.kube)
        if body.metadata.get("generation") != snapshot["metadata"].get("generation"):
            return  # the spec changed meanwhile: the change handler publishes the newer state
        outcome.retry_after_s = None  # the timer comes back on its own
        _publish(body, patch, outcome)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget_metrics(body: kopf.Body, **_: Any) -> None:
    """A deleted fleet leaves the phase gauge (optional: this handler never holds the deletion up)."""
    metrics.forget_fleet(body.metadata.namespace or "", body.metadata.name or "")


RAY_STOP_WAIT = timedelta(minutes=10)  # KubeRay stops a job in seconds and drains it within its Pods' grace period (2 min)
RAY_STOP_POLL_S = 5.0


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def stop_ray_before_its_token_goes(body: kopf.Body, memo: kopf.Memo, runtime: timedelta, **_: Any) -> None:
    """The fleet's RayJobs and RayService are deleted first, and the fleet waits until KubeRay has let them go.

    KubeRay stops a RayJob through its head's dashboard, with the token of the fleet's Secret, before it
    removes its finalizer. Left to garbage collection, the Secret (owned by the fleet) is deleted together
    with the RayJobs, and a RayJob whose token is gone keeps its finalizer for ever (KubeRay 1.6: "failed
    to get auth secret"), its Pods with it. A KubeRay that does not finish holds the deletion up
    RAY_STOP_WAIT at most (then a Warning Event says what is left)."""
    ns, names = body.metadata.namespace or "", render.names(body.metadata.name or "")
    ray = [
        ("ray.io/v1", "RayJob", names["producer"]),
        ("ray.io/v1", "RayJob", names["consumer"]),
        ("ray.io/v1", "RayService", names["service"]),
    ]
    try:
        left = [(v, k, n) for v, k, n in ray if await memo.kube.get(v, k, ns, n) is not None]
        for api_version, kind, name in left:
            await memo.kube.delete(api_version, kind, ns, name)
    except (ApiException, TransportError) as err:
        raise kopf.TemporaryError(f"{api_problem(err)}; retrying in {KUBE_RETRY_S:.0f} s", delay=KUBE_RETRY_S) from None
    if not left:
        return
    waiting = ", ".join(f"{kind} {name}" for _, kind, name in left)
    if runtime < RAY_STOP_WAIT:
        raise kopf.TemporaryError(f"waiting for KubeRay to stop {waiting}", delay=RAY_STOP_POLL_S)
    kopf.event(
        body,
        type="Warning",
        reason="RayNotStopped",
        message=f"KubeRay did not let go of {waiting} within {RAY_STOP_WAIT}; deleting the fleet anyway",
    )


def _deletes_topics(spec: kopf.Spec, **_: Any) -> bool:
    return (spec.get("kafka") or {}).get("topicDeletionPolicy") == "Delete"


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_deletes_topics)
async def delete_topics(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Owned Kubernetes objects go by garbage collection; only the topics need the operator."""
    meta = body.metadata
    try:
        spec = per_fleet(meta["namespace"], meta["name"], FleetSpec.model_validate(dict(body.spec)))
    except ValueError:
        return  # never reconciled: nothing was created
    try:
        fleets = await memo.kube.list(API_VERSION, "CameraFleet")
    except (ApiException, TransportError) as err:
        raise kopf.TemporaryError(f"{api_problem(err)}; retrying in {KUBE_RETRY_S:.0f} s", delay=KUBE_RETRY_S) from None
    # Only what it created (its status, which only the operator writes), never a topic it adopted.
    status: dict[str, Any] = dict(body.status or {})
    claims = topic_claims(meta["name"], meta["namespace"], meta.get("creationTimestamp", ""), spec, fleets, status.get("kafkaClusterId"))
    owned = [t for t in status.get("createdTopics", []) if t not in claims]
    try:
        async with TopicReconciler(operator_bootstrap(spec.kafka.bootstrap_servers, meta["namespace"])) as topics:
            deleted = await topics.delete(owned)
    except KafkaUnavailable as err:
        raise kopf.TemporaryError(f"cannot delete topics yet: {err}", delay=15) from None
    kopf.event(body, type="Normal", reason="TopicsDeleted", message=f"deleted {len(deleted)} topics (topicDeletionPolicy Delete)")
