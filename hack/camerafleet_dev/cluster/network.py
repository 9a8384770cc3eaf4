"""The cluster's network, set up and taken down by running the steps of `plan.py` (where the addresses,
routes and the no-egress guard are laid out and explained): addresses from 198.18.0.0/15 only, and nothing
that lets Pod traffic leave the machine.

- Node 1's address sits on the loopback interface (a local address, not 127/8; these kernels have no
  dummy interfaces); the API server, node 1's kubelet, Kafka and MinIO listen on it, and Pods reach it
  through their default route (a node's bridge has the host, or its namespace, as gateway).
- Pods get addresses of their node's range on its CNI bridge, Services of SERVICE_CIDR (kube-proxy,
  iptables, one per node and namespace).
- Pod traffic cannot leave the machine, twice over in every namespace (see `plan.py`), and CoreDNS has no
  upstream. IP forwarding is switched on (Service traffic from one Pod to another, and every Pod's
  traffic to another node, is routed through the host) and back to what it was by `teardown`.

Every command that fails raises `NetworkError` naming the command and what it printed.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from camerafleet_dev.cluster import plan
from camerafleet_dev.cluster.plan import (
    CLUSTER_RANGE,
    DNS_SERVICE_IP,
    GUARD,
    POD_CIDR,
    PRIMARY,
    ROUTE_TABLE,
    RULE_PRIORITY,
    SERVICE_CIDR,
    NodePlan,
)
from camerafleet_dev.devservers.controlplane_pki import NodeNetwork

# Node 1's settings under the names the one-node cluster gave them (other modules and tests use them).
NODE_POD_CIDR = PRIMARY.pod_cidr
NODE_IP = PRIMARY.node_ip
NODE_INTERFACE = plan.PRIMARY_INTERFACE
BRIDGE = PRIMARY.bridge
NETWORK = NodeNetwork(node_ip=NODE_IP, service_cidr=SERVICE_CIDR, pod_cidr=POD_CIDR)

__all__ = [
    "BRIDGE",
    "CLUSTER_RANGE",
    "DNS_SERVICE_IP",
    "GUARD",
    "NETWORK",
    "NODE_INTERFACE",
    "NODE_IP",
    "NODE_POD_CIDR",
    "POD_CIDR",
    "ROUTE_TABLE",
    "RULE_PRIORITY",
    "SERVICE_CIDR",
    "NetworkError",
    "cni_config",
    "guard_in_place",
    "guard_report",
    "namespaces_in_place",
    "remove_pod_namespaces",
    "setup",
    "teardown",
    "verify",
]


class NetworkError(RuntimeError):
    """The node's network could not be set up; the message names the command."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        # On a machine where `make cluster-up` never ran, iptables may not be installed yet: nothing of the
        # node's network can be in place, so a check-only call just fails.
        if check:
            raise NetworkError(f"`{argv[0]}` is not installed: `make cluster-up` installs the node's tools") from None
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: command not found")
    if check and result.returncode != 0:
        raise NetworkError(f"`{' '.join(argv)}` failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _satisfied(probe: Sequence[str], finds: str | None) -> bool:
    result = _run(*probe, check=False)
    return result.returncode == 0 if finds is None else finds in result.stdout


def _apply(step: plan.Step) -> None:
    if step.probe is not None and _satisfied(step.probe, step.probe_finds):
        return
    _run(*step.argv)


@dataclass
class SavedSysctls:
    ip_forward: str

    def save(self, path: Path) -> None:
        if not path.exists():  # the value before the first `up`, kept until `down`
            path.write_text(json.dumps({"ip_forward": self.ip_forward}))

    @classmethod
    def load(cls, path: Path) -> SavedSysctls | None:
        return cls(**json.loads(path.read_text())) if path.exists() else None


def _sysctl(name: str, value: str | None = None) -> str:
    path = Path("/proc/sys") / name.replace(".", "/")
    if value is not None:
        path.write_text(value)
    return path.read_text().strip()


def setup(state_dir: Path, nodes: Sequence[NodePlan] = (PRIMARY,)) -> None:
    """Create the nodes' interfaces, namespaces and routes, the no-egress guard in every namespace, and
    the kernel settings Pods need (idempotent: a step already done is skipped)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    if len(nodes) > 1 and shutil.which("nsenter") is None:
        raise NetworkError("`nsenter` (util-linux) is not installed: the nodes after the first run in network namespaces through it")
    # Bridged traffic must pass iptables (a Service's DNAT between two Pods of one bridge is undone only
    # then): checked first, so a missing module stops `up` before anything was changed.
    bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not bridge_nf.exists():
        raise NetworkError("this kernel has no br_netfilter (/proc/sys/net/bridge is missing): load it (modprobe br_netfilter) and retry")
    SavedSysctls(ip_forward=_sysctl("net.ipv4.ip_forward")).save(state_dir / "sysctls.json")
    _sysctl("net.ipv4.ip_forward", "1")
    bridge_nf.write_text("1")
    for step in plan.setup_steps(nodes):
        _apply(step)
    verify(nodes)


def verify(nodes: Sequence[NodePlan]) -> None:
    """Ask the kernel how it routes what matters (`plan.routing_checks`) and fail, naming the command,
    where the answer is not the plan's: before any component starts on a network that is not right."""
    for check in plan.routing_checks(nodes):
        result = _run(*check.argv, check=False)
        answer = (result.stdout + result.stderr).strip()
        if check.finds is None and result.returncode == 0:
            raise NetworkError(
                f"`{' '.join(check.argv)}` found a route out of the cluster's range ({answer}): the no-egress guard is not working"
            )
        if check.finds is not None and (result.returncode != 0 or check.finds not in result.stdout):
            raise NetworkError(f"`{' '.join(check.argv)}` answered {answer!r}, not a route {check.finds!r} as planned")


def _checks_pass(checks: dict[str, tuple[tuple[str, ...], str | None]]) -> dict[str, bool]:
    return {name: _satisfied(argv, finds) for name, (argv, finds) in checks.items()}


def guard_report(node: NodePlan = PRIMARY) -> dict[str, bool]:
    """Each half of the node's no-egress guard (policy rule, its table, the FORWARD rule) and, for a node
    in a namespace of its own, the host's routes to its Pods: whether each is in place."""
    if node.netns is not None and not _namespace_exists(node.netns):
        return {"namespace": False}
    return _checks_pass({**plan.guard_checks(node), **plan.route_checks(node)})


def guard_in_place(node: NodePlan = PRIMARY) -> bool:
    """Whether the node's no-egress guard is complete (node 1's: the host's; the e2e tests check it)."""
    return all(guard_report(node).values())


def _namespace_exists(name: str) -> bool:
    return _run("ip", "netns", "pids", name, check=False).returncode == 0


def namespaces_in_place(nodes: Sequence[NodePlan]) -> list[str]:
    """The network namespaces of further nodes that exist now (left by a running or crashed cluster)."""
    return [node.netns for node in nodes if node.netns is not None and _namespace_exists(node.netns)]


def remove_pod_namespaces(nodes: Sequence[NodePlan] = (PRIMARY,)) -> list[str]:
    """Delete the network namespaces of the nodes' Pods that outlived them (a node stopped without the
    kubelet tearing its Pods down): their veths and addresses go with them. Recognised by an address in
    one of the nodes' Pod ranges, so no other user's namespaces are touched. (Every node's containerd
    pins its Pods' namespaces in the host's /var/run/netns: they run in the host's mount namespace.)"""
    ranges = [ipaddress.IPv4Network(node.pod_cidr) for node in nodes]
    removed = []
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith("cni-"):
            continue
        words = _run("ip", "-n", name, "-4", "-o", "addr", "show", check=False).stdout.split()
        addresses = [ipaddress.IPv4Interface(w).ip for w in words if "/" in w and w[0].isdigit()]
        if any(a in r for a in addresses for r in ranges):
            _run("ip", "netns", "delete", name, check=False)
            removed.append(name)
    return removed


def teardown(state_dir: Path, nodes: Sequence[NodePlan] = (PRIMARY,)) -> None:
    """Undo `setup` and remove the CNI bridges (best effort: each step runs even if another failed)."""
    for step in plan.teardown_steps(nodes):
        while _run(*step.argv, check=False).returncode == 0 and step.repeat:
            pass
    saved = SavedSysctls.load(state_dir / "sysctls.json")
    if saved is not None:
        _sysctl("net.ipv4.ip_forward", saved.ip_forward)
        (state_dir / "sysctls.json").unlink()


def cni_config(ipam_dir: Path, node: NodePlan = PRIMARY) -> dict[str, object]:
    """The node's CNI bridge (see `plan.cni_config`)."""
    return plan.cni_config(node, ipam_dir)
