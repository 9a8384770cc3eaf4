"""What runs in the cluster before a user installs CameraFleet: the kubelets' RBAC, the nodes' pools
(labels and taints), CoreDNS serving cluster.local with no upstream, and the real KubeRay operator deployed
with its own manifests (the `config/default` kustomization its Go module carries: RBAC, Deployment, CRDs),
from the locally built image of the same name as upstream's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from camerafleet_dev.cluster import network
from camerafleet_dev.cluster.plan import GPU_LABEL, GPU_TAINT, POOL_LABEL, PRIMARY, NodePlan
from camerafleet_dev.devservers.controlplane import KUBERAY_MODULE, KUBERAY_VERSION, ControlPlane
from camerafleet_dev.images import COREDNS_IMAGE

COREFILE = """.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loop
    reload
}
"""


def node_rbac(nodes: Sequence[NodePlan] = (PRIMARY,)) -> list[dict]:
    """A kubelet authenticates as system:node:<name>; with RBAC only (no Node authorizer) the system:node
    role is bound to exactly those users, one per node."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "camerafleet:node"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": f"system:node:{n.name}"} for n in nodes],
        }
    ]


def forget_other_nodes(cluster: ControlPlane, nodes: Sequence[NodePlan]) -> list[str]:
    """Delete the Node objects of this harness's nodes that are not in the plan (a two-node cluster's
    data dir started again with `--nodes 1`): the scheduler would otherwise keep Pods bound to a node that
    never comes back. Only names of the form camerafleet-node-N are touched."""
    listed = cluster.kubectl("get", "nodes", "-o", "name", check=True).stdout.split()
    wanted = {n.name for n in nodes}
    stale = [name for name in (x.removeprefix("node/") for x in listed) if name.startswith(f"{PRIMARY.name}-") and name not in wanted]
    for name in stale:
        cluster.kubectl("delete", "node", name, "--wait=false", check=True)
    return stale


def apply_pools(cluster: ControlPlane, nodes: Sequence[NodePlan]) -> None:
    """Give each registered node its pool's labels and taints. The kubelets register with them already
    (`--node-labels`, `registerWithTaints`), but only when they create the Node object: a node that
    exists from an earlier run keeps what it had, so they are set here as well (idempotently)."""
    for node in nodes:
        labels = [f"{key}={value}" for key, value in node.labels]
        # A pool's label or taint from an earlier run with another number of nodes goes.
        labels += [f"{key}-" for key in (POOL_LABEL, GPU_LABEL) if key not in dict(node.labels)]
        cluster.kubectl("label", "node", node.name, "--overwrite", *labels, check=True)
        for taint in node.taints:
            cluster.kubectl("taint", "node", node.name, "--overwrite", str(taint), check=True)
        if GPU_TAINT not in node.taints:  # refused (harmlessly) when the node has no such taint
            cluster.kubectl("taint", "node", node.name, f"{GPU_TAINT.key}:{GPU_TAINT.effect}-")


def pools_in_place(cluster: ControlPlane, node: NodePlan) -> list[str]:
    """What the node lacks of its pool's labels and taints (empty: all there)."""
    result = cluster.kubectl("get", "node", node.name, "-o", "json")
    if result.returncode != 0:
        return [f"node {node.name} is not readable: {result.stderr.strip()}"]
    obj = json.loads(result.stdout)
    labels = obj["metadata"].get("labels") or {}
    taints = {(t["key"], t.get("value", ""), t["effect"]) for t in obj["spec"].get("taints") or []}
    missing = [f"label {k}={v}" for k, v in node.labels if labels.get(k) != v]
    missing += [f"taint {t}" for t in node.taints if (t.key, t.value, t.effect) not in taints]
    return missing


def coredns() -> list[dict]:
    labels = {"k8s-app": "kube-dns"}
    meta = {"namespace": "kube-system"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", **meta}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", **meta}, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", **meta, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",  # the kubelet's resolv.conf has no nameserver: no upstream
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}],
                        },
                        "containers": [
                            {
                                "name": "coredns",
                                "image": COREDNS_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "170Mi"}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 10},
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", **meta, "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": network.DNS_SERVICE_IP,
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
            },
        },
    ]


def apply(cluster: ControlPlane, docs: list[dict], path: Path) -> None:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=camerafleet-cluster", "-f", str(path), check=True)


def kuberay_config_dir() -> Path:
    """KubeRay's `config/` as its Go module ships it (downloaded with the control plane's tools)."""
    import sys
    import tempfile

    from camerafleet_dev.devservers.controlplane_build import _go_mod_download

    with tempfile.TemporaryDirectory() as tmp:
        info = _go_mod_download("go", KUBERAY_MODULE, KUBERAY_VERSION, Path(tmp), sys.stderr)
    return Path(info["Dir"]) / "config"


def install_kuberay(cluster: ControlPlane) -> None:
    """`kubectl apply -k` of KubeRay's own config/default (namespace default, image quay.io/kuberay/operator)."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=camerafleet-cluster",
        "-k",
        str(kuberay_config_dir() / "default"),
        check=True,
        timeout_s=300,
    )
