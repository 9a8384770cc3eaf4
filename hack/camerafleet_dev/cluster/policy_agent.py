"""The NetworkPolicy agent of the cluster: kube-router's firewall alone (no routing, no service proxy), one
per node, in the node's network namespace, so that the NetworkPolicies the operator writes are enforced
as on a real cluster (the CNI bridge plugin enforces none).

Why kube-router: the Kubernetes network SIG's kube-network-policies (kind's agent) queues packets with
nftables' `queue` expression, which this machine's kernel lacks (CONFIG_NFT_QUEUE is not set), and it
only runs in-cluster. kube-router's firewall uses iptables and ipset, and takes `--kubeconfig`. v2.10.0:
its flaws reported against v2.1.0 (GO-2026-4724, service proxy; GO-2026-5653, BGP admin port) are fixed
and neither part runs here; the proxy serves v2.10.0 and not the later v2.11 archives. Its go.mod pins a
netlink snapshot the proxy does not serve either: v1.3.1 stands in (netlink is used by the routing and
proxy controllers, which are off).

Each agent filters the Pods whose `status.hostIP` is its node's address: node 1's in the host's network
namespace (its rules sit in the host's FORWARD chain, removed by `down`), node 2's inside `cf-node2`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from camerafleet_dev.cluster.node import component_kubeconfig
from camerafleet_dev.cluster.plan import PRIMARY, SERVICE_CIDR, NodePlan
from camerafleet_dev.devservers._process import LocalServer, port_accepts, require_executable
from camerafleet_dev.devservers.cache import ToolFetchError, ensure_tool, tool_dir
from camerafleet_dev.devservers.controlplane_build import _GO_HINT, _go_build
from camerafleet_dev.devservers.controlplane_pki import _Pki

KUBE_ROUTER_MODULE = "github.com/cloudnativelabs/kube-router/v2"
KUBE_ROUTER_VERSION = "v2.10.0"
NETLINK_STAND_IN = "github.com/vishvananda/netlink v1.3.1"
HEALTH_PORT = 20244  # one per network namespace, so the same on every node
#: Who the agent is to the API server, and what it may read (nothing more: it writes no object).
USER = "system:camerafleet:policy-agent"
READS = ("pods", "namespaces", "nodes", "services", "endpoints")


def home() -> Path:
    return tool_dir("kube-router", KUBE_ROUTER_VERSION)


def binary() -> Path:
    return home() / "bin" / "kube-router"


def fetch(out: TextIO | None = None) -> Path:
    """Build kube-router once into the tool cache (a few minutes on 2 cores); the binary's path."""
    out = sys.stderr if out is None else out
    return ensure_tool("kube-router", KUBE_ROUTER_VERSION, lambda staging: _build(staging, out), out=out) / "bin" / "kube-router"


def _build(staging: Path, out: TextIO) -> None:
    go = require_executable("go", _GO_HINT)
    work = staging / "build"
    work.mkdir()
    (work / "go.mod").write_text(
        "// Throwaway wrapper: the proxy answers 403 (not 404) for kube-router's sub-paths, so `go install\n"
        "// <module>/cmd/kube-router@version` cannot find the module; a wrapper that requires it can.\n"
        f"module camerafleet.local/kube-router-build\n\ngo 1.26\n\nrequire {KUBE_ROUTER_MODULE} {KUBE_ROUTER_VERSION}\n\n"
        f"replace github.com/vishvananda/netlink => {NETLINK_STAND_IN}\n"
    )
    (work / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{KUBE_ROUTER_MODULE}/cmd/kube-router"\n')
    tidy = subprocess.run([go, "mod", "tidy"], cwd=work, env=dict(os.environ, GOWORK="off"), capture_output=True, text=True, check=False)
    if tidy.returncode != 0:
        raise ToolFetchError(f"resolving kube-router {KUBE_ROUTER_VERSION}'s modules failed:\n{tidy.stderr[-3000:]}")
    (staging / "bin").mkdir()
    print(
        f"[camerafleet] building kube-router {KUBE_ROUTER_VERSION} (the NetworkPolicy agent; minutes on 2 cores) ...", file=out, flush=True
    )
    seconds = _go_build(
        go, work, [f"{KUBE_ROUTER_MODULE}/cmd/kube-router"], str(staging / "bin" / "kube-router"), ["-s", "-w"], "kube-router", out
    )
    print(f"[camerafleet] built kube-router in {seconds:.0f} s", file=out, flush=True)


def rbac() -> list[dict]:
    """Read access to what the firewall watches, for the agent's user."""
    rules = [
        {"apiGroups": [""], "resources": list(READS), "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    ]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "camerafleet:policy-agent"}}
    return [
        role | {"rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "camerafleet:policy-agent"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "camerafleet:policy-agent"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        },
    ]


class PolicyAgent(LocalServer):
    kind = "policy-agent"

    def __init__(self, data_dir: Path, *, pki: _Pki, server: str, detached: bool, node: NodePlan = PRIMARY) -> None:
        super().__init__(data_dir, startup_timeout_s=120.0, detached=detached)
        self.pki, self.server, self.node = pki, server, node

    @property
    def log_path(self) -> Path:
        return self.stdout_path

    def _prepare(self) -> None:
        component_kubeconfig(self.pki, self.data_dir / "policy-agent.kubeconfig", self.server, "policy-agent", USER, [])
        # Pods of one bridge talk through it: only with this do their packets meet iptables (node 1's is set
        # by the network set-up; a namespace has its own).
        subprocess.run([*self.node.exec_prefix(), "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"], check=True)

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        return [
            *self.node.exec_prefix(),
            str(binary()),
            f"--kubeconfig={self.data_dir / 'policy-agent.kubeconfig'}",
            f"--hostname-override={self.node.name}",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--enable-cni=false",
            "--enable-ipv6=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--health-port={HEALTH_PORT}",
            "--metrics-port=0",
            "-v=1",
        ], dict(os.environ)

    def _ready(self) -> bool:
        return port_accepts(HEALTH_PORT, host=self.node.probe_host)


def cleanup(nodes: Sequence[NodePlan]) -> None:
    """Remove the agents' iptables chains and ipsets (node 1's are in the host's namespace; a further node's
    go with its namespace, but are removed too while it exists)."""
    if not binary().exists():
        return
    for node in nodes:
        if node.primary or Path(f"/var/run/netns/{node.netns}").exists():
            subprocess.run([*node.exec_prefix(), str(binary()), "--cleanup-config"], capture_output=True, check=False, timeout=120)
