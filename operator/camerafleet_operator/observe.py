"""What KubeRay v1.6's statuses of a RayJob and a RayService say about a fleet's parts, as plain
functions of the objects' dicts (unit-tested with statuses copied from a real KubeRay)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from camerafleet_operator.render import LABEL_COMPONENT

# Serve application statuses that mean the models do not serve as the spec asks, even while KubeRay's
# Ready (which counts healthy proxies, not applications) stays True.
APP_FAILED = {"DEPLOY_FAILED", "UNHEALTHY"}


@dataclass(frozen=True)
class Observed:
    """One part of the fleet as its KubeRay object reports it."""

    ok: bool | None  # None: not known yet (starting, waiting for KubeRay)
    reason: str
    message: str
    failed: bool = False  # the job ended or failed: resubmit it after its backoff
    invalid: bool = False  # KubeRay refused the object: only a spec change helps
    recheck_s: float | None = None  # look again this soon: the state changes then without an event of its own


def job_condition(job: dict[str, Any] | None) -> Observed:
    if job is None:
        return Observed(False, "Missing", "the RayJob does not exist yet")
    if job["metadata"].get("deletionTimestamp"):
        return Observed(None, "Deleting", "the RayJob is being deleted (KubeRay stops its Ray job first)")
    st = job.get("status") or {}
    deployment, job_status, message = st.get("jobDeploymentStatus") or "", st.get("jobStatus") or "", st.get("message") or ""
    if deployment == "ValidationFailed":
        return Observed(False, "InvalidSpec", f"KubeRay refused the RayJob {job['metadata']['name']}: {message}", invalid=True)
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
    """ServingReady from KubeRay's Ready and, always, the Serve application's own status: a model edit whose
    replicas fail leaves Ready True (the proxies are healthy) and the app DEPLOY_FAILED or UNHEALTHY."""
    if svc is None:
        return Observed(False, "Missing", "the RayService does not exist yet")
    st = svc.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None:
        return Observed(None, "WaitingForKubeRay", "KubeRay has not picked the RayService up yet; is the KubeRay operator running?")
    reason, message = ready.get("reason") or "", ready.get("message") or ""
    app_state, app_text = app_status(st, app_name)
    if reason == "ValidationFailed":
        return Observed(False, "InvalidSpec", f"KubeRay refused the RayService {svc['metadata']['name']}: {message}", invalid=True)
    if app_state in APP_FAILED:
        return Observed(False, "ServingFailed", app_text)
    if ready.get("status") == "True":
        return Observed(True, reason or "Ready", message or "the Serve application serves")
    if reason == "Initializing":  # a normal start (pods, then the Serve app): not yet known, not degraded
        return Observed(None, "Initializing", "; ".join(x for x in (message, app_text) if x) or "the Serve application is starting")
    return Observed(False, reason or "NotReady", "; ".join(x for x in (message, app_text) if x))


def app_status(status: dict[str, Any], app_name: str) -> tuple[str, str]:
    """The Serve application's status and a line saying it (e.g. DEPLOY_FAILED and the builder's traceback,
    or UNHEALTHY and the failing deployment's message). The serving cluster's (active) status counts; the
    pending cluster's only while there is no active one (a first start)."""
    for key in ("activeServiceStatus", "pendingServiceStatus"):
        app = ((status.get(key) or {}).get("applicationStatuses") or {}).get(app_name)
        if not app:
            continue
        state = app.get("status", "")
        messages = [app.get("message", "")] + [
            f"{name} {d.get('status', '')}: {gist(d.get('message', ''))}"
            for name, d in sorted((app.get("serveDeploymentStatuses") or {}).items())
            if d.get("status") not in (None, "", "HEALTHY")
        ]
        text = "; ".join(m for m in messages if m)[:900]
        return state, f"Serve app {app_name} {state}: {text}".rstrip(": ")
    return "", ""


def upgrade_condition(svc: dict[str, Any] | None, now: datetime, timeout_s: int) -> Observed:
    """ServingUpToDate: whether the cluster that serves is the one the spec asks for. With upgradeStrategy
    NewCluster KubeRay builds a pending cluster for a cluster-level change and keeps Ready True while it
    comes up, with no timeout of its own: on a full GPU cluster it would stay Pending forever, unseen."""
    st = (svc or {}).get("status") or {}
    pending = (st.get("pendingServiceStatus") or {}).get("rayClusterName")
    active = (st.get("activeServiceStatus") or {}).get("rayClusterName")
    if not (pending and active):  # a first start has a pending cluster only: ServingReady says how it goes
        return Observed(True, "UpToDate", "no new serving cluster is being brought up")
    began = next((c.get("lastTransitionTime") for c in st.get("conditions") or [] if c.get("type") == "UpgradeInProgress"), None)
    elapsed = (now - datetime.fromisoformat(began.replace("Z", "+00:00"))).total_seconds() if began else 0.0
    pending_apps = "; ".join(
        f"Serve app {name} {a.get('status', '')}"
        for name, a in sorted(((st.get("pendingServiceStatus") or {}).get("applicationStatuses") or {}).items())
    )
    state = f" ({pending_apps})" if pending_apps else ""
    if elapsed > timeout_s:
        return Observed(
            False,
            "UpgradeStalled",
            f"the new Ray cluster {pending} has not taken over after {elapsed:.0f} s (upgradeTimeoutSeconds {timeout_s}){state}; "
            f"the old cluster keeps serving. Its Pods may lack capacity: kubectl get pods -l ray.io/cluster={pending}. "
            "Free capacity, revert the change, or set kubernetes.servingUpgrade: Recreate",
        )
    return Observed(None, "UpgradeInProgress", f"KubeRay is bringing up the new Ray cluster {pending} for {elapsed:.0f} s{state}")


def scheduling_condition(pods: list[dict[str, Any]], now: datetime, timeout_s: int) -> Observed:
    """PodsScheduled: whether every Pod of the fleet found a node. The scheduler marks a Pod that fits no node
    (too big for every node, a GPU no node has, a selector or taint nothing matches) Unschedulable and KubeRay
    reports nothing of it: the fleet would wait as Initializing, or run short of the replicas it scaled to,
    forever and unexplained. Reported once a Pod has waited `timeout_s`, since a cluster autoscaler may be
    adding the node it needs meanwhile."""
    late: list[tuple[float, dict[str, Any], str]] = []
    waiting: list[tuple[float, dict[str, Any], str]] = []
    for pod in pods:
        st = pod.get("status") or {}
        scheduled: dict[str, Any] = next((c for c in st.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
        if pod["metadata"].get("deletionTimestamp") or st.get("phase") != "Pending" or scheduled.get("reason") != "Unschedulable":
            continue
        since = scheduled.get("lastTransitionTime")
        waited = (now - datetime.fromisoformat(since.replace("Z", "+00:00"))).total_seconds() if since else 0.0
        (late if waited >= timeout_s else waiting).append((waited, pod, scheduled.get("message") or ""))
    if late:
        shown = "; ".join(_unschedulable(waited, pod, why) for waited, pod, why in sorted(late, key=lambda x: -x[0])[:3])
        more = f"; and {len(late) - 3} more" if len(late) > 3 else ""
        where = sorted({_sized_by(pod) for _, pod, _ in late})
        return Observed(
            False,
            "Unschedulable",
            f"{shown}{more}. Lower what they ask ({', '.join(where)}; cpuRequest and memoryRequest let a small node "
            "hold them) or their placement, or add nodes that fit",
        )
    if waiting:
        longest = max(waited for waited, _, _ in waiting)
        return Observed(
            None,
            "WaitingForNodes",
            f"{len(waiting)} Pod(s) fit no node yet (for {longest:.0f} s); reported after schedulingTimeoutSeconds "
            f"({timeout_s}) in case a cluster autoscaler is adding one",
            recheck_s=timeout_s - longest + 1,
        )
    return Observed(True, "Scheduled", "every Pod of the fleet has a node")


def _sized_by(pod: dict[str, Any]) -> str:
    """The spec field that sizes a fleet's Pod, from its labels (KubeRay's node type, the fleet's component)."""
    labels = pod["metadata"].get("labels") or {}
    if labels.get("ray.io/node-type") == "head":
        return "kubernetes.head"
    return "kubernetes.gpuWorkers.resources" if labels.get(LABEL_COMPONENT) == "serving" else "kubernetes.jobWorkers.resources"


def _unschedulable(waited: float, pod: dict[str, Any], why: str) -> str:
    """One Pod that fits no node: its name, its part of the fleet, what it asks and the scheduler's reason (its
    first sentence: the rest is about preemption)."""
    asks: dict[str, str] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        for name, quantity in ((container.get("resources") or {}).get("requests") or {}).items():
            asks[name] = quantity if name not in asks else f"{asks[name]}+{quantity}"
    labels = pod["metadata"].get("labels") or {}
    part = f"{labels.get(LABEL_COMPONENT, 'fleet')} {labels.get('ray.io/node-type', 'pod')}"
    reason = why.split(" preemption:")[0].strip()[:300]
    asked = ", ".join(f"{k}={v}" for k, v in sorted(asks.items())) or "nothing"
    return f"Pod {pod['metadata']['name']} ({part}, asks {asked}) has fit no node for {waited:.0f} s: {reason}"


def gist(message: str, limit: int = 400) -> str:
    """Serve's message of a failed deployment is a sentence and a traceback: the sentence and the traceback's
    last line (the exception: what to fix, e.g. the model file that is missing) fit a condition; the frames
    between them do not."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 2:
        return " ".join(lines)[-limit:]
    return f"{lines[0][: limit // 2]} ... {lines[-1][-limit // 2 :]}"
