"""The cluster's address plan, as data: its nodes, their addresses, and every command that sets up or
checks their network. Nothing runs here (`network.py` runs the steps), so a unit test can check the plan
itself: every address in 198.18.0.0/15, no two Pod ranges overlapping, no masquerade anywhere.

Node 1 (`camerafleet-node`) lives in the host's network namespace, as the one-node cluster always did: its
address on the loopback interface, its Pods on the bridge cf-br0. Every further node is a network
namespace of its own joined to the host by a veth pair (a /30 of VETH_RANGE: the host's end, then the
node's end, which is the node's address), with its own bridge and Pod range inside. The host routes each
such node's Pods through its veth; inside, the node's default route is the host, so its Pods reach node 1's
address (API server, Kafka, MinIO), node 1's Pods, the other nodes and Services. Every namespace gets the
same no-egress guard: a policy-routing rule sends whatever comes from the cluster's range to a table that
knows only the cluster's range (anything else is unreachable), and a FORWARD rule drops what the cluster's
range sends elsewhere. There is no masquerade rule anywhere: Pod traffic never leaves the machine.

Node 2 is the "GPU pool" (the labels and taint a GPU node pool carries; the example fleet's overlay selects
it by NVIDIA's `nvidia.com/gpu.present` label), node 1 the system pool everything else lands on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CLUSTER_RANGE = "198.18.0.0/15"  # RFC 2544 benchmarking addresses: never routed on the Internet
POD_CIDR = "198.18.0.0/17"  # the cluster's Pods (kube-proxy's clusterCIDR): one /24 per node
NODE_RANGE = "198.18.128.0/17"  # the nodes' own addresses
VETH_RANGE = "198.18.129.0/24"  # a /30 per node in a namespace of its own (host end .1, node end .2)
SERVICE_CIDR = "198.19.0.0/16"
DNS_SERVICE_IP = "198.19.0.10"
PRIMARY_NODE_IP = "198.18.128.1"  # node 1, on the loopback interface
PRIMARY_INTERFACE = "lo"
ROUTE_TABLE = "1918"
RULE_PRIORITY = "1918"
NETNS_DIR = "/var/run/netns"  # where `ip netns add` pins a namespace (iproute2's NETNS_RUN_DIR)
MAX_NODES = 2  # tried so far; `cluster_plan` can lay out more
GUARD = (
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
)
POOL_LABEL = "camerafleet.io/pool"
GPU_LABEL = "nvidia.com/gpu.present"  # what NVIDIA's GPU feature discovery labels GPU nodes with


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:  # kubectl taint's and the kubelet's notation
        return f"{self.key}={self.value}:{self.effect}"


GPU_TAINT = Taint("nvidia.com/gpu", "present", "NoSchedule")


@dataclass(frozen=True)
class NodePlan:
    """One node: its name and addresses, where its processes run and keep their files.

    `netns` is None for the node in the host's namespace (node 1); its files stay where the one-node
    cluster kept them (the data dir itself, `subdir` ""), so an existing data dir keeps working."""

    name: str
    node_ip: str
    pod_cidr: str
    bridge: str
    labels: tuple[tuple[str, str], ...]
    taints: tuple[Taint, ...] = ()
    netns: str | None = None
    veth_host: str | None = None  # the host's end of the veth pair
    veth_node: str | None = None  # the node's end, in its namespace
    veth_host_ip: str | None = None
    veth_cidr: str | None = None
    subdir: str = ""

    @property
    def primary(self) -> bool:
        return self.netns is None

    @property
    def gateway(self) -> str:
        """The bridge's address: its Pods' default route."""
        return str(ipaddress.IPv4Network(self.pod_cidr)[1])

    @property
    def probe_host(self) -> str:
        """Where the harness (in the host's namespace) reaches the node's health endpoints: the host's
        loopback for node 1, the node's address (through the veth) for the others."""
        return "127.0.0.1" if self.primary else self.node_ip

    def data_dir(self, cluster_dir: Path) -> Path:
        return cluster_dir / self.subdir if self.subdir else cluster_dir

    def pid_key(self, kind: str) -> str:
        """The key of a node process in cluster.json: node 1's keep their old names ("kubelet")."""
        return kind if self.primary else f"{kind}@{self.name}"

    def exec_prefix(self) -> tuple[str, ...]:
        """What runs a command in the node's network namespace. `nsenter --net` and not `ip netns exec`:
        the latter also gives the command a mount namespace of its own (with /sys remounted), so the
        kubelet's volume mounts would be invisible to containerd and to `down`'s unmounting."""
        return () if self.netns is None else ("nsenter", f"--net={NETNS_DIR}/{self.netns}", "--")

    def ip(self, *args: str) -> tuple[str, ...]:
        """An `ip` command in the node's namespace."""
        return ("ip", *args) if self.netns is None else ("ip", "-n", self.netns, *args)


def cluster_plan(nodes: int = MAX_NODES) -> tuple[NodePlan, ...]:
    """Node 1 as the one-node cluster had it, then nodes 2..n each in a namespace of its own."""
    if nodes < 1:
        raise ValueError("a cluster needs at least one node")
    pod_ranges = list(ipaddress.IPv4Network(POD_CIDR).subnets(new_prefix=24))
    veths = list(ipaddress.IPv4Network(VETH_RANGE).subnets(new_prefix=30))
    if nodes > min(len(pod_ranges), len(veths) + 1):
        raise ValueError(f"the address plan has room for {min(len(pod_ranges), len(veths) + 1)} nodes")
    plan = [
        NodePlan(
            name="camerafleet-node",
            node_ip=PRIMARY_NODE_IP,
            pod_cidr=str(pod_ranges[0]),
            bridge="cf-br0",
            # The only node is every pool: the production layout's models find it by the GPU pool's label.
            labels=((POOL_LABEL, "system"),) if nodes > 1 else ((POOL_LABEL, "system"), (GPU_LABEL, "true")),
        )
    ]
    for number in range(2, nodes + 1):
        veth = veths[number - 2]
        plan.append(
            NodePlan(
                name=f"camerafleet-node-{number}",
                node_ip=str(veth[2]),
                pod_cidr=str(pod_ranges[number - 1]),
                bridge=f"cf-br{number - 1}",
                labels=((POOL_LABEL, "gpu"), (GPU_LABEL, "true")),
                taints=(GPU_TAINT,),
                netns=f"cf-node{number}",
                veth_host=f"cf-n{number}-host",
                veth_node=f"cf-n{number}-node",
                veth_host_ip=str(veth[1]),
                veth_cidr=str(veth),
                subdir=f"node-{number}",
            )
        )
    return tuple(plan)


PRIMARY = cluster_plan(1)[0]


def node_named(name: str, nodes: Sequence[NodePlan] | None = None) -> NodePlan:
    for node in nodes if nodes is not None else cluster_plan(MAX_NODES):
        if node.name == name:
            return node
    raise ValueError(f"no node named {name!r} in the plan")


@dataclass(frozen=True)
class Step:
    """One command of the set-up or tear-down. Set-up: how to tell it is done already (so `up` may run
    over a half set-up): `probe` is run first, and the step skipped when the probe succeeds (`probe_finds`
    None) or its output contains `probe_finds`. Tear-down: `repeat` runs it until it fails."""

    argv: tuple[str, ...]
    probe: tuple[str, ...] | None = None
    probe_finds: str | None = None
    repeat: bool = False


def _guard_steps(node: NodePlan) -> Iterator[Step]:
    """The no-egress guard in the node's namespace (node 1: the host's)."""
    yield Step(
        node.ip("rule", "add", "from", CLUSTER_RANGE, "lookup", ROUTE_TABLE, "priority", RULE_PRIORITY),
        probe=node.ip("rule", "show"),
        probe_finds=f"lookup {ROUTE_TABLE}",
    )
    yield Step(node.ip("route", "replace", "throw", CLUSTER_RANGE, "table", ROUTE_TABLE))
    yield Step(node.ip("route", "replace", "unreachable", "default", "table", ROUTE_TABLE))
    yield Step(
        (*node.exec_prefix(), "iptables", "-I", "FORWARD", "1", *GUARD), probe=(*node.exec_prefix(), "iptables", "-C", "FORWARD", *GUARD)
    )


def _sysctl_step(node: NodePlan, name: str, value: str, *, optional: bool = False) -> Step:
    """A sysctl of the node's own namespace: /proc/sys/net is that of the process that opens it."""
    path = "/proc/sys/" + name.replace(".", "/")
    script = f"[ ! -e {path} ] || echo {value} > {path}" if optional else f"echo {value} > {path}"
    return Step((*node.exec_prefix(), "sh", "-c", script))


def setup_steps(nodes: Sequence[NodePlan]) -> list[Step]:
    """Everything `up` does to the network, in order: node 1's address and guard in the host's namespace,
    then for each further node its namespace and veth pair, the inside of its namespace, and last the
    host's routes to its Pods (through the veth, whose both ends are up by then), in the main table and
    in the guard's table (which knows only the cluster's ranges)."""
    primary = nodes[0]
    steps = [
        Step(
            ("ip", "addr", "add", f"{primary.node_ip}/32", "dev", PRIMARY_INTERFACE),
            probe=("ip", "-4", "addr", "show", PRIMARY_INTERFACE),
            probe_finds=f"inet {primary.node_ip}/32",
        ),
        *_guard_steps(primary),
    ]
    for node in nodes[1:]:
        steps += [*_veth_steps(node), *_inside_steps(node), *_route_steps(node)]
    return steps


def _veth_steps(node: NodePlan) -> list[Step]:
    """The node's namespace and its veth pair, the host's end addressed and up."""
    assert node.netns and node.veth_host and node.veth_node and node.veth_host_ip and node.veth_cidr
    prefix = ipaddress.IPv4Network(node.veth_cidr).prefixlen
    return [
        Step(("ip", "netns", "add", node.netns), probe=("ip", "netns", "pids", node.netns)),
        Step(
            ("ip", "link", "add", node.veth_host, "type", "veth", "peer", "name", node.veth_node),
            probe=("ip", "link", "show", node.veth_host),
        ),
        Step(("ip", "link", "set", node.veth_node, "netns", node.netns), probe=node.ip("link", "show", node.veth_node)),
        Step(("ip", "addr", "replace", f"{node.veth_host_ip}/{prefix}", "dev", node.veth_host)),
        Step(("ip", "link", "set", node.veth_host, "up")),
    ]


def _inside_steps(node: NodePlan) -> list[Step]:
    """Inside the node's namespace: loopback up (the kubelet talks to containerd's streaming server on
    127.0.0.1), the node's end of the veth with the node's address, the host as default route, the guard,
    forwarding on, and bridged Pod traffic through iptables (as on the host: a Service's DNAT between two
    Pods of one bridge is undone only then)."""
    assert node.veth_node and node.veth_host_ip and node.veth_cidr
    prefix = ipaddress.IPv4Network(node.veth_cidr).prefixlen
    return [
        Step(node.ip("link", "set", "lo", "up")),
        Step(node.ip("addr", "replace", f"{node.node_ip}/{prefix}", "dev", node.veth_node)),
        Step(node.ip("link", "set", node.veth_node, "up")),
        Step(node.ip("route", "replace", "default", "via", node.veth_host_ip, "dev", node.veth_node)),
        *_guard_steps(node),
        _sysctl_step(node, "net.ipv4.ip_forward", "1"),
        # Per namespace since Linux 5.3; on older kernels the host's setting covers every namespace.
        _sysctl_step(node, "net.bridge.bridge-nf-call-iptables", "1", optional=True),
    ]


def _route_steps(node: NodePlan) -> list[Step]:
    """The host's routes to the node: its Pods through its veth, in the main table and the guard's."""
    assert node.veth_host and node.veth_cidr
    return [
        Step(("ip", "route", "replace", node.pod_cidr, "via", node.node_ip, "dev", node.veth_host)),
        Step(("ip", "route", "replace", node.veth_cidr, "dev", node.veth_host, "table", ROUTE_TABLE)),
        Step(("ip", "route", "replace", node.pod_cidr, "via", node.node_ip, "dev", node.veth_host, "table", ROUTE_TABLE)),
    ]


def teardown_steps(nodes: Sequence[NodePlan]) -> list[Step]:
    """What `down` runs (each best effort, whatever failed before): the further nodes' namespaces (their
    bridges, routes, rules and iptables rules go with them) and veth pairs (deleting one end deletes both,
    and the host's routes through it), then node 1's guard, bridge and address. A `repeat` step runs until
    it fails (the guard's FORWARD rule may have been added twice by hand)."""
    steps: list[Step] = []
    for node in nodes[1:]:
        assert node.netns and node.veth_host
        steps += [
            Step(("ip", "netns", "delete", node.netns)),
            Step(("ip", "link", "del", node.veth_host)),
            Step(("ip", "route", "del", node.pod_cidr)),
        ]
    primary = nodes[0]
    return [
        *steps,
        Step(("ip", "rule", "del", "from", CLUSTER_RANGE, "lookup", ROUTE_TABLE)),
        Step(("ip", "route", "flush", "table", ROUTE_TABLE)),
        Step(("iptables", "-D", "FORWARD", *GUARD), repeat=True),
        Step(("ip", "link", "del", primary.bridge)),
        Step(("ip", "addr", "del", f"{primary.node_ip}/32", "dev", PRIMARY_INTERFACE)),
    ]


#: An address outside the cluster's range (TEST-NET-1, RFC 5737): what no cluster address may route to.
OUTSIDE = "192.0.2.1"


@dataclass(frozen=True)
class RouteCheck:
    """A routing decision `up` verifies once the network is set up (`ip route get`): `finds` is what the
    answer must contain; None means the kernel must refuse the route (the guard at work)."""

    argv: tuple[str, ...]
    finds: str | None


def routing_checks(nodes: Sequence[NodePlan]) -> list[RouteCheck]:
    """Every namespace refuses to route from the cluster's addresses to the outside; every further node
    reaches node 1's address (API server, Kafka, MinIO) and node 1's Pods through the host, and the host
    reaches the node's Pods through the node's veth, also from node 1's address (the guard's table)."""
    primary = nodes[0]

    def a_pod(node: NodePlan) -> str:  # an address of the node's Pod range (none need exist yet)
        return str(ipaddress.IPv4Network(node.pod_cidr)[10])

    checks = [RouteCheck(("ip", "route", "get", OUTSIDE, "from", primary.node_ip), None)]
    for node in nodes[1:]:
        checks += [
            RouteCheck(node.ip("route", "get", OUTSIDE, "from", node.node_ip), None),
            RouteCheck(node.ip("route", "get", primary.node_ip, "from", node.node_ip), f"via {node.veth_host_ip}"),
            RouteCheck(node.ip("route", "get", a_pod(primary), "from", node.node_ip), f"via {node.veth_host_ip}"),
            RouteCheck(("ip", "route", "get", a_pod(node), "from", primary.node_ip), f"via {node.node_ip} dev {node.veth_host}"),
        ]
    return checks


def guard_checks(node: NodePlan) -> dict[str, tuple[tuple[str, ...], str | None]]:
    """What `status` runs to see the node's guard: each check's command and the text its output must
    contain (None: the command must succeed)."""
    return {
        "rule": (node.ip("rule", "show"), f"lookup {ROUTE_TABLE}"),
        "table": (node.ip("route", "show", "table", ROUTE_TABLE), "unreachable default"),
        "forward": ((*node.exec_prefix(), "iptables", "-C", "FORWARD", *GUARD), None),
    }


def route_checks(node: NodePlan) -> dict[str, tuple[tuple[str, ...], str | None]]:
    """What `status` runs to see the host's routes to a further node's Pods (node 1: none needed)."""
    if node.primary:
        return {}
    return {
        "route": (("ip", "route", "show", node.pod_cidr), f"via {node.node_ip}"),
        "guard table route": (("ip", "route", "show", "table", ROUTE_TABLE, node.pod_cidr), f"via {node.node_ip}"),
    }


def cni_config(node: NodePlan, ipam_dir: Path) -> dict[str, object]:
    """The node's CNI bridge: Pods on the node's range, the bridge as their gateway, no masquerade.
    Address leases are kept in `ipam_dir` (under the cluster's data dir), so `down` can release those of
    Pods it stopped."""
    return {
        "cniVersion": "1.0.0",
        "name": "camerafleet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": node.pod_cidr, "gateway": node.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
