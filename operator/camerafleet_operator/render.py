"""What a CameraFleet becomes in Kubernetes, as pure functions from the fleet to object dicts: a
ConfigMap holding the manifest, a KubeRay RayService serving the models, and producer and consumer
RayJobs whose entrypoint is the same `camerafleet run` as on one machine.

The operator applies these objects; the top-level `rayservice.yaml` and `rayjob.yaml` are rendered from
the example fleet by the same functions (`make generate`), so they can be applied with plain kubectl and
a test keeps them in sync.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Literal

import yaml

from camerafleet.api.manifest import (
    API_VERSION,
    CA_DIR,
    CONFIG_MAP_KEY,
    GROUP,
    KIND,
    PLURAL,
    FleetSpec,
    Placement,
    PodResources,
    WorkerGroupSpec,
)
from camerafleet.api.serve_options import (
    APP_IMPORT_PATH,
    SERVE_CONTROLLER_ENV,
    app_args,
    ingress_options,
    ingress_user_config,
    model_deployment_options,
    model_user_config,
)
from camerafleet.api.settings import FleetAccess
from camerafleet.api.versions import RAY_VERSION

CONFIG_DIR = "/etc/camerafleet"
SERVE_PORT = 8000
CONSOLE_PORT = 8090  # the fleet console, served by the producer job's driver on its head Pod
DASHBOARD_PORT = 8265
METRICS_PORT = 8080  # KubeRay's `metrics` port on every Ray container
RUN_METRICS_PORT = 8081  # a job driver's own metrics (`camerafleet run --metrics-port`): its pools, on its head Pod
LABEL_CONSOLE = "camerafleet.io/console"  # on the Pod that serves a fleet's console: its Service selects it
RESTART_DIGEST = "camerafleet.io/restart-digest"  # a RayJob's metadata: see restart_digest
LABEL_FLEET = "camerafleet.io/fleet"
RAY_TOKEN_KEY = "auth_token"  # the key of the token in the Secret KubeRay's authOptions.secretName names
LABEL_COMPONENT = "camerafleet.io/component"
MANAGED_BY = {"app.kubernetes.io/managed-by": "camerafleet-operator", "app.kubernetes.io/part-of": "camerafleet"}

Role = Literal["producer", "consumer", "all"]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (embedded manifests, serveConfigV2) as readable literal blocks; a structure used
    twice (the security context) written out twice, not as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None))


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=120)


def to_yaml_all(objs: list[Any]) -> str:
    return yaml.dump_all(objs, Dumper=_Dumper, sort_keys=False, width=120)


def names(fleet_name: str) -> dict[str, str]:
    return {
        "config": f"{fleet_name}-config",
        "service": f"{fleet_name}-serving",
        "producer": f"{fleet_name}-producer",
        "consumer": f"{fleet_name}-consumer",
        "all": f"{fleet_name}-pipeline",
        "runner": f"{fleet_name}-runner",
        "console": f"{fleet_name}-console",
        "ray_token": f"{fleet_name}-ray-token",
        "access": f"{fleet_name}-access",
    }


def serve_url(fleet_name: str, namespace: str, spec: FleetSpec) -> str:
    """Where consumers reach the Serve app: KubeRay's `<rayservice>-serve-svc` Service."""
    return f"http://{names(fleet_name)['service']}-serve-svc.{namespace}.svc:{SERVE_PORT}{spec.serving.route_prefix}"


def serve_status_url(fleet_name: str, namespace: str) -> str:
    """The Ray dashboard of the RayService's cluster (KubeRay's `<rayservice>-head-svc`), where Serve reports replicas."""
    return f"http://{names(fleet_name)['service']}-head-svc.{namespace}.svc:{DASHBOARD_PORT}"


def pod_labels(fleet_name: str, component: str) -> dict[str, str]:
    """Labels of every Ray Pod of a fleet: what a PodMonitor (the stack chart's) selects to scrape Ray's
    metrics agent on the Pods' `metrics` port, and what says whose Pod it is."""
    return {LABEL_FLEET: fleet_name, LABEL_COMPONENT: component}


def _meta(name: str, namespace: str, fleet_name: str, component: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {**MANAGED_BY, LABEL_FLEET: fleet_name, LABEL_COMPONENT: component},
    }
    if owner:
        meta["ownerReferences"] = [owner]
    return meta


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def fleet_document(fleet_name: str, spec: FleetSpec, *, serving_url: str | None) -> dict[str, Any]:
    """The manifest the pods run: the fleet's spec, with consumers pointed at the RayService over HTTP and
    no results log on the Pods' disks."""
    # JSON values: enums (a zone's anchor) as their strings, which YAML can write (found by the e2e test of events).
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True, exclude={"kubernetes"})
    # Consumers run on worker Pods: no results file on their disks, the results topic is the record.
    data.setdefault("results", {})["localLog"] = False
    if serving_url:
        data.setdefault("serving", {})["url"] = serving_url
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": fleet_name}, "spec": data}


def config_map(fleet_name: str, namespace: str, spec: FleetSpec, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = fleet_document(fleet_name, spec, serving_url=serve_url(fleet_name, namespace, spec))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(names(fleet_name)["config"], namespace, fleet_name, "config", owner),
        "data": {CONFIG_MAP_KEY: to_yaml(doc)},
    }


# Serve's access log writes a line per request to each replica's log: at 150 cameras x 5 fps through the
# ingress and two models, ~2,250 lines a second, over a GiB an hour of the Pods' disks. Requests are
# counted in the fleet's metrics instead.
SERVE_LOGGING = {"enable_access_log": False}


def serve_config(fleet_name: str, spec: FleetSpec) -> dict[str, Any]:
    """serveConfigV2: one application, deployment options from the same builders as a local run. What a
    person tunes (a model's replicas, batching, resources; maxFrameAgeMs) goes per deployment, so an edit
    restarts no replica (see `app_args`); cameras and actor counts are not in it at all."""
    app = spec.serving_app(fleet_name)
    deployments = [
        {**ingress_options(spec.serving), "user_config": ingress_user_config(app)},
        *({**model_deployment_options(m), "user_config": model_user_config(m)} for m in spec.models),
    ]
    return {
        "applications": [
            {
                "name": spec.serving.app_name,
                "route_prefix": spec.serving.route_prefix,
                "import_path": APP_IMPORT_PATH,
                "logging_config": SERVE_LOGGING,
                "args": app_args(app),
                "deployments": deployments,
            }
        ]
    }


def _env_from(spec: FleetSpec) -> list[dict[str, Any]]:
    return [{"secretRef": {"name": s}} for s in spec.kubernetes.env_from_secrets]


def _resources(r: PodResources) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": r.cpu, "memory": r.memory}
    if r.gpus:
        limits["nvidia.com/gpu"] = r.gpus
    return {"requests": {"cpu": r.cpu_request or r.cpu, "memory": r.memory_request or r.memory}, "limits": limits}


# Non-root, no privilege, the runtime's seccomp profile: what Pod Security "restricted" asks of every container.
SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# Ray keeps its object store in /dev/shm: KubeRay mounts a memory emptyDir there sized to the container's
# memory limit, unless the Pod already mounts something at /dev/shm (so the fleet mounts nothing there).
#
# A deleted or replaced RayJob stops its Ray job; the runner then drains its consumers (up to 60 s) and
# writes the summary. Ray kills the job 3 s after SIGTERM by default: RAY_JOB_STOP_WAIT_TIME_S gives it
# 90 s. KubeRay removes its finalizer right after asking for the stop, so the job's Pods are deleted at
# once: their preStop hook (`camerafleet.prestop`) holds each Pod until what runs on it has ended, within a
# grace period longer than the stop wait.
JOB_STOP_WAIT_S = 90
# What a Pod writes to its own disk is Ray's logs (the results go to Kafka): Ray rotates each log file at
# 512 MiB and keeps 5 old ones, up to 3 GiB per file and dozens of files per Pod, in ephemeral storage the
# kubelet evicts for. 64 MiB and 2 old ones keep each file under 192 MiB.
RAY_LOG_ROTATION = (
    {"name": "RAY_ROTATION_MAX_BYTES", "value": str(64 * 2**20)},
    {"name": "RAY_ROTATION_BACKUP_COUNT", "value": "2"},
)
JOB_PRESTOP_S = JOB_STOP_WAIT_S + 15
JOB_GRACE_PERIOD_S = JOB_STOP_WAIT_S + 30


def _container(spec: FleetSpec, name: str, resources: PodResources, *, mount_config: str | None) -> dict[str, Any]:
    k = spec.kubernetes
    container: dict[str, Any] = {
        "name": name,
        "image": k.image,
        "imagePullPolicy": k.image_pull_policy,
        "resources": _resources(resources),
        "securityContext": SECURITY_CONTEXT,
        "env": list(RAY_LOG_ROTATION),
    }
    if spec.kubernetes.env_from_secrets:
        container["envFrom"] = _env_from(spec)
    mounts = [{"name": "fleet-config", "mountPath": CONFIG_DIR, "readOnly": True}] if mount_config else []
    if k.ca_secret:
        mounts.append({"name": "fleet-ca", "mountPath": CA_DIR, "readOnly": True})
    if mounts:
        container["volumeMounts"] = mounts
    return container


def _pod_spec(
    container: dict[str, Any], *, service_account: str | None, config_map_name: str | None, ca_secret: str | None, placement: Placement
) -> dict[str, Any]:
    pod: dict[str, Any] = {"containers": [container]}
    if service_account:
        pod["serviceAccountName"] = service_account
    volumes = [{"name": "fleet-config", "configMap": {"name": config_map_name}}] if config_map_name else []
    if ca_secret:
        volumes.append({"name": "fleet-ca", "secret": {"secretName": ca_secret}})
    if volumes:
        pod["volumes"] = volumes
    if placement.node_selector:
        pod["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in placement.tolerations]
    return pod


def ray_cluster_spec(
    spec: FleetSpec,
    workers: WorkerGroupSpec,
    group_name: str,
    *,
    auth_secret: str,
    config_map_name: str | None,
    service_account: str | None,
    pod_labels: dict[str, str],
) -> dict[str, Any]:
    head = _container(spec, "ray-head", spec.kubernetes.head, mount_config=config_map_name)
    head["ports"] = [
        {"containerPort": 6379, "name": "gcs-server"},
        {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
        {"containerPort": SERVE_PORT, "name": "serve"},
    ]
    worker = _container(spec, "ray-worker", workers.resources, mount_config=config_map_name)
    return {
        "rayVersion": RAY_VERSION,
        # Ray's dashboard (job submission), GCS and client port refuse callers without the fleet's token. One
        # Secret for the fleet's three clusters: the producer's console reads the RayService's dashboard, and
        # a RayService's clusters change names on every upgrade. `mode` said: KubeRay 1.6 has no default.
        "authOptions": {"mode": "token", "secretName": auth_secret},
        "enableInTreeAutoscaling": True,
        # The autoscaler sidecar KubeRay adds to the head: KubeRay's default asks half a CPU for a process that
        # mostly sleeps, and runs it without a securityContext. Version v2 said, not implied: Ray 2.60 runs v2
        # under KubeRay by default, and KubeRay 1.6 gives the Pods v2's settings (restartPolicy Never, so a Ray
        # container that dies is replaced by KubeRay, not restarted under the autoscaler) only when told.
        "autoscalerOptions": {
            "version": "v2",
            "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
            "securityContext": SECURITY_CONTEXT,
        },
        "headGroupSpec": {
            # Heads only coordinate unless asked to work (small nodes): KubeRay then gives Ray the CPU limit.
            "rayStartParams": {"dashboard-host": "0.0.0.0"}
            if spec.kubernetes.head_runs_work
            else {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": _pod_spec(
                    head,
                    service_account=service_account,
                    config_map_name=config_map_name,
                    ca_secret=spec.kubernetes.ca_secret,
                    placement=spec.kubernetes.head,
                ),
            },
        },
        "workerGroupSpecs": [
            {
                "groupName": group_name,
                "replicas": workers.replicas,
                "minReplicas": workers.min_replicas,
                "maxReplicas": workers.max_replicas,
                "rayStartParams": {},
                "template": {
                    "metadata": {"labels": dict(pod_labels)},
                    "spec": _pod_spec(
                        worker,
                        service_account=service_account,
                        config_map_name=config_map_name,
                        ca_secret=spec.kubernetes.ca_secret,
                        placement=workers,
                    ),
                },
            }
        ],
    }


def ray_service(fleet_name: str, namespace: str, spec: FleetSpec, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    cluster = ray_cluster_spec(
        spec,
        spec.kubernetes.gpu_workers,
        "gpu-workers",
        auth_secret=names(fleet_name)["ray_token"],
        config_map_name=None,
        service_account=spec.kubernetes.service_account_name,
        pod_labels=pod_labels(fleet_name, "serving"),
    )
    head_env = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]  # the Serve controller runs there
    # Serve's own placement (spread) stays: scaling down, it stops the replicas on the nodes with the fewest first, which
    # empties a worker Pod for Ray's autoscaler to remove (where two nodes tie, a replica can keep both). Its pack
    # strategy (RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY, Ray 2.60), the only way to Serve's node compaction, can strand
    # a replica on a scale-up: it books a node's free room for some replicas (soft affinity), sends the ones that do
    # not fit anywhere, and one of those takes that room first; the booked replica then waits on the full node, and
    # Ray's autoscaler adds no node for it (seen in the e2e run: one of four replicas waited 10 min).
    head_env.extend({"name": k, "value": v} for k, v in SERVE_CONTROLLER_ENV.items())
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": _meta(names(fleet_name)["service"], namespace, fleet_name, "serving", owner),
        "spec": {
            # Explicit, with its consequences reported (ServingUpToDate): NewCluster builds the new cluster beside
            # the old one; with Recreate KubeRay leaves cluster-level changes alone (None) and the operator
            # replaces the RayService itself.
            "upgradeStrategy": {"type": "NewCluster" if spec.kubernetes.serving_upgrade == "NewCluster" else "None"},
            "serveConfigV2": to_yaml(serve_config(fleet_name, spec)),
            "rayClusterConfig": cluster,
        },
    }


def ray_job(fleet_name: str, namespace: str, spec: FleetSpec, role: Role, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A RayJob running `camerafleet run` on the mounted manifest; role `all` is the whole pipeline in one job."""
    entrypoint = f"camerafleet run {CONFIG_DIR}/{CONFIG_MAP_KEY}" + ("" if role == "all" else f" --role {role}")
    entrypoint += f" --metrics-port {RUN_METRICS_PORT}"  # only the driver knows its pools' sizes (the dashboard's pools panel)
    serves_console = spec.kubernetes.console and role in ("producer", "all")
    if serves_console:  # the process that knows which cameras are down; it reads the rest from Kafka
        entrypoint += f" --console-port {CONSOLE_PORT} --console-host 0.0.0.0"
    workers = spec.kubernetes.gpu_workers if role == "all" else spec.kubernetes.job_workers
    config = names(fleet_name)["config"]
    cluster = ray_cluster_spec(
        spec,
        workers,
        f"{role}-workers",
        auth_secret=names(fleet_name)["ray_token"],
        config_map_name=config,
        service_account=runner_account(fleet_name, spec),
        pod_labels=pod_labels(fleet_name, role),
    )
    # The job's driver runs on the head: it reads manifest changes from the ConfigMap through the API.
    head = cluster["headGroupSpec"]["template"]
    head["spec"]["containers"][0]["env"] += [
        {"name": "RAY_JOB_STOP_WAIT_TIME_S", "value": str(JOB_STOP_WAIT_S)},
        {"name": "CAMERAFLEET_MANIFEST_CONFIGMAP", "value": config},
    ]
    head["spec"]["containers"][0]["ports"].append({"containerPort": RUN_METRICS_PORT, "name": "run-metrics"})
    _drain_before_stop(head["spec"], "head")
    for group in cluster["workerGroupSpecs"]:
        _drain_before_stop(group["template"]["spec"], "worker")
    if serves_console:  # the label its Service selects (with KubeRay's head label), and a named port
        head["metadata"]["labels"][LABEL_CONSOLE] = fleet_name
        head["spec"]["containers"][0]["ports"].append({"containerPort": CONSOLE_PORT, "name": "console"})
    if serves_console and role == "producer":  # the models run in the RayService: its dashboard has their replicas
        head["spec"]["containers"][0]["env"].append(
            {"name": "CAMERAFLEET_SERVE_STATUS_URL", "value": serve_status_url(fleet_name, namespace)}
        )
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": _meta(names(fleet_name)[role], namespace, fleet_name, role, owner),
        "spec": {
            "entrypoint": entrypoint,
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 300,
            # The pipeline never ends on its own, so its health must not hang on a process that follows its logs.
            # K8sJobMode's submitter Pod does: when its log stream ends (a dashboard restart, a head replaced after
            # a failed liveness probe on a loaded node) or it is evicted three times, KubeRay fails the RayJob 30 s
            # later and the whole job cluster is rebuilt. In HTTPMode KubeRay submits through the dashboard and,
            # when a replaced head no longer knows the job, submits it again: the job cluster stays.
            "submissionMode": "HTTPMode",
            # Part of the spec, so that the operator replaces the job when they change: a running job keeps its
            # Kafka, bucket, serving, results and events as they were at its start (it reads the rest live).
            "metadata": {RESTART_DIGEST: restart_digest(spec)},
            "rayClusterSpec": cluster,
        },
    }


def restart_digest(spec: FleetSpec) -> str:
    """A digest of the manifest sections a running job applies only when it starts again (`FleetSpec.restart_sections`)."""
    return hashlib.sha256(json.dumps(spec.restart_sections(), sort_keys=True).encode()).hexdigest()[:16]


def _drain_before_stop(pod: dict[str, Any], role: Literal["head", "worker"]) -> None:
    """A job Pod that is deleted waits until its part of the run has drained (see JOB_STOP_WAIT_S)."""
    pod["terminationGracePeriodSeconds"] = JOB_GRACE_PERIOD_S
    hook = ["python", "-m", "camerafleet.prestop", role, str(JOB_PRESTOP_S)]
    pod["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": hook}}}


def runner_account(fleet_name: str, spec: FleetSpec) -> str:
    """The service account of the jobs' Ray Pods: the fleet's own, else one the operator creates."""
    return spec.kubernetes.service_account_name or names(fleet_name)["runner"]


def runner_access(fleet_name: str, namespace: str, spec: FleetSpec, owner: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What lets a job's driver read its fleet's ConfigMap from the API server, seconds after an edit (the
    mounted file waits for the kubelet's next Pod sync, a minute or more), and say its pools' sizes in the
    fleet's status and Events: the service account (unless the fleet names its own), a Role allowing `get`
    on that one ConfigMap, `patch` on that one fleet's status and `create` on Events (which cannot be
    limited by name), and the binding. KubeRay does the same for its autoscaler."""
    name = names(fleet_name)["runner"]
    account = runner_account(fleet_name, spec)
    objects: list[dict[str, Any]] = []
    if account == name:
        objects.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace, fleet_name, "runner", owner)})
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(name, namespace, fleet_name, "runner", owner),
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [names(fleet_name)["config"]], "verbs": ["get"]},
                {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "resourceNames": [fleet_name], "verbs": ["patch"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            ],
        }
    )
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(name, namespace, fleet_name, "runner", owner),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        }
    )
    return objects


def ray_token_secret(fleet_name: str, namespace: str, token: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The token of the fleet's Ray clusters, under the key KubeRay reads (`auth_token`). Created once and
    never read back by the operator (its role may create Secrets, not read them); deleted with the fleet."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(names(fleet_name)["ray_token"], namespace, fleet_name, "ray-auth", owner),
        "type": "Opaque",
        "stringData": {RAY_TOKEN_KEY: token},
    }


def console_service(fleet_name: str, namespace: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fleet console's ClusterIP Service: in the cluster only, reached with `kubectl port-forward`."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(names(fleet_name)["console"], namespace, fleet_name, "console", owner),
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_CONSOLE: fleet_name, "ray.io/node-type": "head"},
            "ports": [{"name": "http", "port": CONSOLE_PORT, "targetPort": "console", "protocol": "TCP"}],
        },
    }


def network_policy(fleet_name: str, namespace: str, access: FleetAccess, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """Who may reach the fleet's Pods: its own Pods (Ray between its nodes, consumers to Serve, the console to
    the RayService's dashboard), KubeRay on the dashboard and Serve's port, and what `access` names on the
    metrics and console ports; nothing else. Egress is left open (Kafka, the bucket and the cameras are
    wherever the spec says)."""

    def rule(peers: list[dict[str, Any]], *ports: int) -> list[dict[str, Any]]:
        # A rule without peers would let everyone in: a port no one is named for gets no rule at all.
        return [{"from": copy.deepcopy(peers), "ports": [{"protocol": "TCP", "port": p} for p in ports]}] if peers else []

    own = {"podSelector": {"matchLabels": {LABEL_FLEET: fleet_name}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(names(fleet_name)["access"], namespace, fleet_name, "access", owner),
        "spec": {
            "podSelector": {"matchLabels": {LABEL_FLEET: fleet_name}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [own]},
                *rule(access.kuberay, DASHBOARD_PORT, SERVE_PORT),
                *rule(access.metrics, METRICS_PORT, RUN_METRICS_PORT),
                *rule(access.console, CONSOLE_PORT),
            ],
        },
    }


def fleet_objects(
    fleet_name: str, namespace: str, spec: FleetSpec, owner: dict[str, Any] | None = None, access: FleetAccess | None = None
) -> list[dict[str, Any]]:
    """Everything the operator keeps in Kubernetes for a fleet, in apply order (its NetworkPolicy first, so
    no Pod of it is ever reachable by everyone)."""
    return [
        *([network_policy(fleet_name, namespace, access, owner)] if access else []),
        config_map(fleet_name, namespace, spec, owner),
        *runner_access(fleet_name, namespace, spec, owner),
        ray_service(fleet_name, namespace, spec, owner),
        ray_job(fleet_name, namespace, spec, "producer", owner),
        ray_job(fleet_name, namespace, spec, "consumer", owner),
        *([console_service(fleet_name, namespace, owner)] if spec.kubernetes.console else []),
    ]
