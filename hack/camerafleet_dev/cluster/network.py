"""The node's network: addresses from 198.18.0.0/15 only, and nothing that lets Pod traffic leave.

- The node's own address sits on the loopback interface (a local address, not 127/8; these kernels have
  no dummy interfaces); the API server, the kubelet, Kafka and MinIO listen on it, and Pods reach it
  through their default route (the CNI bridge's gateway is this host, which owns the address).
- Pods get addresses of POD_CIDR on the CNI bridge, Services of SERVICE_CIDR (kube-proxy, iptables).
- Pod traffic cannot leave the machine, twice over: a policy-routing rule sends everything from the
  Pod and Service ranges to a table that only knows those ranges (anything else is unreachable), and a
  FORWARD rule drops what the Pod range sends elsewhere. There is no masquerade rule for Pod traffic,
  and CoreDNS has no upstream. IP forwarding is switched on (Service traffic from one Pod to another is
  routed through the host) and back to what it was by `teardown`.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from camerafleet_dev.devservers.controlplane import NodeNetwork

CLUSTER_RANGE = "198.18.0.0/15"  # RFC 2544 benchmarking addresses: never routed on the Internet
POD_CIDR = "198.18.0.0/17"  # the cluster's Pods (kube-proxy's clusterCIDR)
NODE_POD_CIDR = "198.18.0.0/24"  # this node's Pods (the CNI bridge's range)
NODE_IP = "198.18.128.1"  # the node itself, on the loopback interface
SERVICE_CIDR = "198.19.0.0/16"
DNS_SERVICE_IP = "198.19.0.10"
NODE_INTERFACE = "lo"
BRIDGE = "cf-br0"
ROUTE_TABLE = "1918"
RULE_PRIORITY = "1918"
GUARD = [
    "-s",
    CLUSTER_RANGE,
    "!",
    "-d",
    CLUSTER_RANGE,
    "-m",
    "comment",
    "--comment",
    "camerafleet: Pod traffic stays on this machine",
    "-j",
    "DROP",
]

NETWORK = NodeNetwork(node_ip=NODE_IP, service_cidr=SERVICE_CIDR, pod_cidr=POD_CIDR)


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


def setup(state_dir: Path) -> None:
    """Create the node's interface, the no-egress guard, and the kernel settings Pods need (idempotent)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    if NODE_IP not in _run("ip", "-4", "addr", "show", NODE_INTERFACE).stdout:
        _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_INTERFACE)
    # Policy routing: from the cluster's ranges, only the cluster's ranges are routable.
    if f"lookup {ROUTE_TABLE}" not in _run("ip", "rule", "show").stdout:
        _run("ip", "rule", "add", "from", CLUSTER_RANGE, "lookup", ROUTE_TABLE, "priority", RULE_PRIORITY)
    _run("ip", "route", "replace", "throw", CLUSTER_RANGE, "table", ROUTE_TABLE)
    _run("ip", "route", "replace", "unreachable", "default", "table", ROUTE_TABLE)
    if _run("iptables", "-C", "FORWARD", *GUARD, check=False).returncode != 0:
        _run("iptables", "-I", "FORWARD", "1", *GUARD)
    SavedSysctls(ip_forward=_sysctl("net.ipv4.ip_forward")).save(state_dir / "sysctls.json")
    _sysctl("net.ipv4.ip_forward", "1")
    # Replies between Pods on the bridge must pass iptables too, or a Service's DNAT is not undone.
    bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not bridge_nf.exists():
        raise NetworkError("this kernel has no br_netfilter (/proc/sys/net/bridge is missing): load it (modprobe br_netfilter) and retry")
    bridge_nf.write_text("1")


def guard_in_place() -> bool:
    """Whether both halves of the no-egress guard are there (the e2e tests check it)."""
    rule = f"lookup {ROUTE_TABLE}" in _run("ip", "rule", "show", check=False).stdout
    table = _run("ip", "route", "show", "table", ROUTE_TABLE, check=False).stdout
    forward = _run("iptables", "-C", "FORWARD", *GUARD, check=False).returncode == 0
    return rule and "unreachable default" in table and forward


def remove_pod_namespaces() -> list[str]:
    """Delete the network namespaces of this node's Pods that outlived them (the node stopped without the
    kubelet tearing its Pods down): their veths and addresses go with them. Recognised by an address in
    NODE_POD_CIDR, so no other user's namespaces are touched."""
    pods = ipaddress.IPv4Network(NODE_POD_CIDR)
    removed = []
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith("cni-"):
            continue
        addresses = _run("ip", "-n", name, "-4", "-o", "addr", "show", check=False).stdout.split()
        if any("/" in a and ipaddress.IPv4Interface(a).ip in pods for a in addresses if a[0].isdigit()):
            _run("ip", "netns", "delete", name, check=False)
            removed.append(name)
    return removed


def teardown(state_dir: Path) -> None:
    """Undo `setup` and remove the CNI bridge (best effort: each step runs even if another failed)."""
    _run("ip", "rule", "del", "from", CLUSTER_RANGE, "lookup", ROUTE_TABLE, check=False)
    _run("ip", "route", "flush", "table", ROUTE_TABLE, check=False)
    while _run("iptables", "-D", "FORWARD", *GUARD, check=False).returncode == 0:
        pass
    _run("ip", "link", "del", BRIDGE, check=False)
    _run("ip", "addr", "del", f"{NODE_IP}/32", "dev", NODE_INTERFACE, check=False)
    saved = SavedSysctls.load(state_dir / "sysctls.json")
    if saved is not None:
        _sysctl("net.ipv4.ip_forward", saved.ip_forward)
        (state_dir / "sysctls.json").unlink()


def cni_config(ipam_dir: Path) -> dict[str, object]:
    """The CNI bridge: Pods on NODE_POD_CIDR, the host as their gateway, no masquerade. Address leases are
    kept in `ipam_dir` (under the cluster's data dir), so `down` can release those of Pods it stopped."""
    gateway = str(ipaddress.IPv4Network(NODE_POD_CIDR)[1])
    return {
        "cniVersion": "1.0.0",
        "name": "camerafleet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": NODE_POD_CIDR, "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
