"""What the API server accepts in a CameraFleet but KubeRay or the cluster would refuse or never run, and
what only makes sense on one machine: found before anything is applied and reported as InvalidSpec,
each problem naming the field and the fix, so a fleet never sits in Reconciling for a reason no retry
can cure. (KubeRay's own refusals that slip through still end as InvalidSpec: see `job_condition`.)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from camerafleet.api.manifest import FleetSpec, PodResources
from camerafleet.api.settings import FleetAccess, Settings

# KubeRay (v1.6, utils/validation.go): RayJob and RayService names are DNS-1035 labels of at most 47
# characters (a RayCluster name's 53 less the 6 of its suffix); the fleet's objects add "-producer",
# "-consumer" or "-pipeline" (9) to the fleet's name.
MAX_FLEET_NAME = 47 - len("-producer")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_BYTES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def cpus(quantity: str) -> float:
    number, unit = _QUANTITY.match(quantity).groups()  # type: ignore[union-attr]  # the manifest's pattern
    return float(number) / 1000 if unit == "m" else float(number)


def memory_bytes(quantity: str) -> float:
    number, unit = _QUANTITY.match(quantity).groups()  # type: ignore[union-attr]
    return float(number) * _BYTES[unit or ""] / (1000 if unit == "m" else 1)


def _is_local_host(host: str) -> bool:
    host = host.strip("[]")
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _is_local_path(path: str) -> bool:
    return "://" not in path and not path.startswith("synthetic:") and not PurePosixPath(path).is_absolute()


def _group_problems(field: str, resources: PodResources) -> list[str]:
    problems = []
    if cpus(resources.cpu) <= 0:
        problems.append(f"{field}.cpu is {resources.cpu}: a pod needs some CPU")
    if memory_bytes(resources.memory) < 2**30:
        problems.append(f"{field}.memory is {resources.memory}: a Ray node needs at least 1Gi")
    return problems


@dataclass(frozen=True)
class ClusterPolicy:
    """What the operator's installation allows fleets (the chart's values, through the operator's environment)."""

    allow_local_addresses: bool = False  # a development control plane where nothing runs in Pods
    allowed_images: tuple[str, ...] = ()  # image prefixes fleets may run; empty: any
    fleet_access: FleetAccess | None = None  # who may reach a fleet's Pods; None: no NetworkPolicy

    @classmethod
    def of(cls, settings: Settings) -> ClusterPolicy:
        return cls(settings.allow_local_addresses, settings.allowed_images, settings.fleet_access)


DEFAULT_POLICY = ClusterPolicy()


def cluster_problems(name: str, spec: FleetSpec, policy: ClusterPolicy = DEFAULT_POLICY) -> list[str]:
    """Every reason the fleet cannot run on a cluster, as `field: problem; what to do` lines (empty: none)."""
    problems: list[str] = []
    image = spec.kubernetes.image
    if policy.allowed_images and not image.startswith(policy.allowed_images):
        problems.append(
            f"spec.kubernetes.image {image}: not an image this cluster's operator allows ({', '.join(policy.allowed_images)}); "
            "ask its administrators, or use one of those"
        )
    if len(name) > MAX_FLEET_NAME:
        problems.append(
            f"metadata.name: {len(name)} characters; at most {MAX_FLEET_NAME} (KubeRay limits the RayJob names derived from it)"
        )
    if not _DNS_1035.match(name):
        problems.append(f"metadata.name {name!r}: must start with a letter and hold only a-z, 0-9 and '-' (KubeRay needs DNS-1035 names)")
    if not policy.allow_local_addresses:
        local = [s for s in spec.kafka.bootstrap_servers.split(",") if _is_local_host(s.strip().rsplit(":", 1)[0])]
        if local:
            problems.append(
                f"spec.kafka.bootstrapServers {', '.join(local)}: a loopback address, which no Pod can reach; give the broker's Service or host name"
            )
        if spec.bucket.uri.startswith("file://"):
            problems.append(
                f"spec.bucket.uri {spec.bucket.uri}: a directory of one machine, which Pods do not share; use s3://bucket/prefix"
            )
    for i, model in enumerate(spec.models):
        if model.model_uri and _is_local_path(model.model_uri):
            problems.append(
                f"spec.models.{i}.modelUri {model.model_uri}: a relative path; give an absolute path in the image or s3://bucket/key"
            )
    for i, camera in enumerate(spec.cameras):
        if not camera.source_secret_env and _is_local_path(camera.source):
            problems.append(
                f"spec.cameras.{i}.source {camera.source}: a relative path; give a stream URL, synthetic: or an absolute path in the image"
            )
    k = spec.kubernetes
    workers = k.gpu_workers.resources
    problems += _group_problems("spec.kubernetes.head", k.head)
    problems += _group_problems("spec.kubernetes.gpuWorkers.resources", workers)
    problems += _group_problems("spec.kubernetes.jobWorkers.resources", k.job_workers.resources)
    for i, model in enumerate(spec.models):
        r = model.resources
        if r.gpus > workers.gpus:
            problems.append(
                f"spec.models.{i}.resources.gpus is {r.gpus:g} but a GPU worker has {workers.gpus} (spec.kubernetes.gpuWorkers.resources.gpus): "
                "no replica could ever be placed; lower the model's gpus or give the workers GPUs"
            )
        if r.cpus > cpus(workers.cpu):
            problems.append(
                f"spec.models.{i}.resources.cpus is {r.cpus:g} but a GPU worker has {workers.cpu} CPU: no replica could ever be placed"
            )
        if r.memory_bytes and r.memory_bytes > memory_bytes(workers.memory):
            problems.append(f"spec.models.{i}.resources.memoryBytes is more than a GPU worker's memory {workers.memory}")
    job_cpu = cpus(k.job_workers.resources.cpu)
    for field, wanted in (("producer", spec.producer.cpus_per_actor), ("consumer", spec.consumer.cpus_per_actor)):
        if wanted > job_cpu:
            problems.append(
                f"spec.{field}.cpusPerActor is {wanted:g} but a job worker has {k.job_workers.resources.cpu} CPU (spec.kubernetes.jobWorkers)"
            )
    for group, tolerations in (
        ("head", k.head.tolerations),
        ("gpuWorkers", k.gpu_workers.tolerations),
        ("jobWorkers", k.job_workers.tolerations),
    ):
        for i, t in enumerate(tolerations):
            field = f"spec.kubernetes.{group}.tolerations.{i}"
            if t.operator == "Exists" and t.value:
                problems.append(f"{field}: operator Exists takes no value")
            if t.operator == "Equal" and not t.key:
                problems.append(f"{field}: operator Equal needs a key")
            if t.toleration_seconds is not None and t.effect != "NoExecute":
                problems.append(f"{field}: tolerationSeconds only applies to effect NoExecute")
    return problems


def operator_bootstrap(bootstrap_servers: str, namespace: str) -> str:
    """The fleet's Kafka as the operator must dial it. The fleet's Pods resolve a short Service name
    (`camerafleet-kafka:9092`) in their own namespace; the operator runs in another (`camerafleet-system`),
    where the same name resolves to nothing and TopicsReady would never be True. A host without a dot that
    is not an address becomes `<host>.<fleet namespace>.svc`; anything else is dialled as given."""
    servers = []
    for server in bootstrap_servers.split(","):
        host, sep, port = server.strip().rpartition(":")
        host, port = (host, port) if sep else (port, "")
        if "." not in host and not _is_local_host(host) and ":" not in host.strip("[]"):
            host = f"{host}.{namespace}.svc"
        servers.append(f"{host}:{port}" if sep else host)
    return ",".join(servers)
