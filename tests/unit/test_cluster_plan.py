"""The cluster's address plan (hack/camerafleet_dev/cluster/plan.py), checked as data: no command runs. The
workplace's network rule is that the cluster uses 198.18.0.0/15 only and that Pod traffic never leaves the
machine; these tests hold every address, route, rule and CNI setting of one and two nodes to it."""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

import pytest

from camerafleet_dev.cluster import network, plan
from camerafleet_dev.cluster.plan import CLUSTER_RANGE, NodePlan, Step, cluster_plan

CLUSTER = ipaddress.IPv4Network(CLUSTER_RANGE)
SIZES = [1, 2, 8]  # 1 and 2 are what `up` offers; 8 checks the layout beyond them


def addresses(tokens: tuple[str, ...]) -> list[ipaddress.IPv4Network]:
    """Every IPv4 address or network among a command's words."""
    found = []
    for token in tokens:
        try:
            found.append(ipaddress.IPv4Network(token, strict=False))
        except ValueError:
            continue
    return found


def commands(steps: list[Step]) -> list[tuple[str, ...]]:
    return [s.argv for s in steps] + [s.probe for s in steps if s.probe is not None]


def node_addresses(node: NodePlan) -> list[str]:
    values = [node.node_ip, node.pod_cidr, node.gateway, node.veth_host_ip, node.veth_cidr]
    return [v for v in values if v is not None]


@pytest.mark.parametrize("size", SIZES)
def test_every_address_of_every_node_lies_in_the_cluster_range(size: int) -> None:
    for node in cluster_plan(size):
        for value in node_addresses(node):
            assert ipaddress.IPv4Network(value, strict=False).subnet_of(CLUSTER), (node.name, value)
    for value in (plan.POD_CIDR, plan.SERVICE_CIDR, plan.DNS_SERVICE_IP, plan.NODE_RANGE, plan.VETH_RANGE):
        assert ipaddress.IPv4Network(value, strict=False).subnet_of(CLUSTER), value


@pytest.mark.parametrize("size", SIZES)
def test_every_address_in_a_command_lies_in_the_cluster_range(size: int) -> None:
    nodes = cluster_plan(size)
    for argv in commands(plan.setup_steps(nodes)) + commands(plan.teardown_steps(nodes)):
        for address in addresses(argv):
            assert address.subnet_of(CLUSTER), (address, argv)


@pytest.mark.parametrize("size", SIZES)
def test_no_two_ranges_overlap(size: int) -> None:
    nodes = cluster_plan(size)
    pod_ranges = [ipaddress.IPv4Network(n.pod_cidr) for n in nodes]
    veths = [ipaddress.IPv4Network(n.veth_cidr) for n in nodes if n.veth_cidr]
    for a, b in itertools.combinations(pod_ranges + veths + [ipaddress.IPv4Network(plan.SERVICE_CIDR)], 2):
        assert not a.overlaps(b), (a, b)
    pods = ipaddress.IPv4Network(plan.POD_CIDR)
    assert all(r.subnet_of(pods) for r in pod_ranges), "every node's Pods must be in kube-proxy's clusterCIDR"
    for node in nodes:  # a node's own address is no Pod's and no Service's
        ip = ipaddress.IPv4Address(node.node_ip)
        assert ip not in pods and ip not in ipaddress.IPv4Network(plan.SERVICE_CIDR), node


@pytest.mark.parametrize("size", SIZES)
def test_names_are_unique_and_fit_the_kernel(size: int) -> None:
    nodes = cluster_plan(size)
    for attribute in ("name", "node_ip", "bridge", "netns", "veth_host", "veth_node", "subdir"):
        values = [getattr(n, attribute) for n in nodes if getattr(n, attribute)]
        assert len(values) == len(set(values)), (attribute, values)
    for node in nodes:
        for interface in (node.bridge, node.veth_host, node.veth_node):
            assert interface is None or len(interface) <= 15, interface  # IFNAMSIZ - 1


@pytest.mark.parametrize("size", SIZES)
def test_nothing_masquerades_or_routes_out(size: int) -> None:
    nodes = cluster_plan(size)
    for argv in commands(plan.setup_steps(nodes)):
        words = {w.upper() for w in argv}
        assert not words & {"MASQUERADE", "SNAT", "NAT"}, argv  # no NAT rule of ours, in any table
        if "route" in argv and "default" in argv:  # a default route only to the host, or unreachable
            assert "unreachable" in argv or any(argv[i + 1] in {n.veth_host_ip for n in nodes} for i, w in enumerate(argv) if w == "via"), (
                argv
            )
    for node in nodes:
        bridge = plan.cni_config(node, Path("/ipam"))["plugins"][0]  # type: ignore[index]
        assert bridge["ipMasq"] is False and bridge["ipam"]["ranges"] == [[{"subnet": node.pod_cidr, "gateway": node.gateway}]]


@pytest.mark.parametrize("size", SIZES)
def test_every_namespace_gets_the_whole_guard(size: int) -> None:
    nodes = cluster_plan(size)
    argvs = [s.argv for s in plan.setup_steps(nodes)]
    for node in nodes:
        prefix = node.ip()
        rule = (*prefix, "rule", "add", "from", CLUSTER_RANGE, "lookup", plan.ROUTE_TABLE, "priority", plan.RULE_PRIORITY)
        assert rule in argvs, node.name
        assert (*prefix, "route", "replace", "unreachable", "default", "table", plan.ROUTE_TABLE) in argvs, node.name
        assert (*prefix, "route", "replace", "throw", CLUSTER_RANGE, "table", plan.ROUTE_TABLE) in argvs, node.name
        assert (*node.exec_prefix(), "iptables", "-I", "FORWARD", "1", *plan.GUARD) in argvs, node.name
        checks = plan.guard_checks(node)
        assert set(checks) == {"rule", "table", "forward"}
        assert all(tuple(argv[: len(node.exec_prefix())]) == node.exec_prefix() for argv, _ in checks.values() if "iptables" in argv)


@pytest.mark.parametrize("size", SIZES)
def test_the_host_routes_each_further_node_through_its_veth_in_both_tables(size: int) -> None:
    nodes = cluster_plan(size)
    argvs = [s.argv for s in plan.setup_steps(nodes)]
    for node in nodes[1:]:
        via = ("via", node.node_ip, "dev", node.veth_host)
        assert ("ip", "route", "replace", node.pod_cidr, *via) in argvs
        assert ("ip", "route", "replace", node.pod_cidr, *via, "table", plan.ROUTE_TABLE) in argvs
        assert ("ip", "route", "replace", node.veth_cidr, "dev", node.veth_host, "table", plan.ROUTE_TABLE) in argvs
        assert ("ip", "-n", node.netns, "route", "replace", "default", "via", node.veth_host_ip, "dev", node.veth_node) in argvs
        veth = ipaddress.IPv4Network(node.veth_cidr)
        assert ipaddress.IPv4Address(node.node_ip) in veth and ipaddress.IPv4Address(node.veth_host_ip) in veth
        # Routes through the veth only once both its ends are up; the namespace exists before anything in it.
        first_inside = next(i for i, a in enumerate(argvs) if a[:3] == ("ip", "-n", node.netns))
        assert argvs.index(("ip", "netns", "add", node.netns)) < first_inside
        assert argvs.index(("ip", "-n", node.netns, "link", "set", node.veth_node, "up")) < argvs.index(
            ("ip", "route", "replace", node.pod_cidr, *via)
        )


@pytest.mark.parametrize("size", SIZES)
def test_down_undoes_what_up_adds(size: int) -> None:
    nodes = cluster_plan(size)
    undo = [s.argv for s in plan.teardown_steps(nodes)]
    for node in nodes[1:]:
        assert ("ip", "netns", "delete", node.netns) in undo and ("ip", "link", "del", node.veth_host) in undo
    assert ("ip", "rule", "del", "from", CLUSTER_RANGE, "lookup", plan.ROUTE_TABLE) in undo
    assert ("ip", "route", "flush", "table", plan.ROUTE_TABLE) in undo
    assert any(s.repeat and s.argv == ("iptables", "-D", "FORWARD", *plan.GUARD) for s in plan.teardown_steps(nodes))


def test_node_one_is_the_one_node_cluster_of_before() -> None:
    """Existing data dirs, the e2e tests (node `camerafleet-node`) and the host's addresses stay as they were."""
    first, only = cluster_plan(2)[0], cluster_plan(1)[0]
    assert only == plan.PRIMARY and (only.name, only.node_ip, only.pod_cidr) == (first.name, first.node_ip, first.pod_cidr)
    assert dict(only.labels) == {"camerafleet.io/pool": "system", "nvidia.com/gpu.present": "true"}, "the only node is every pool"
    assert (first.name, first.node_ip, first.pod_cidr, first.bridge) == ("camerafleet-node", "198.18.128.1", "198.18.0.0/24", "cf-br0")
    assert (
        first.netns is None
        and first.exec_prefix() == ()
        and first.data_dir(Path("/d")) == Path("/d")
        and first.pid_key("kubelet") == "kubelet"
    )
    assert (first.node_ip, first.pod_cidr, first.bridge) == (network.NODE_IP, network.NODE_POD_CIDR, network.BRIDGE)
    assert first.taints == () and dict(first.labels) == {"camerafleet.io/pool": "system"}


def test_node_two_is_the_gpu_pool_in_a_namespace_of_its_own() -> None:
    second = cluster_plan(2)[1]
    assert (second.name, second.node_ip, second.pod_cidr, second.netns) == (
        "camerafleet-node-2",
        "198.18.129.2",
        "198.18.1.0/24",
        "cf-node2",
    )
    assert second.veth_host_ip == "198.18.129.1" and second.veth_cidr == "198.18.129.0/30"
    assert dict(second.labels) == {"camerafleet.io/pool": "gpu", "nvidia.com/gpu.present": "true"}
    assert [str(t) for t in second.taints] == ["nvidia.com/gpu=present:NoSchedule"]
    # nsenter --net only: `ip netns exec` would give each process a mount namespace of its own.
    assert second.exec_prefix() == ("nsenter", "--net=/var/run/netns/cf-node2", "--")
    assert second.pid_key("kubelet") == "kubelet@camerafleet-node-2" and second.data_dir(Path("/d")) == Path("/d/node-2")
    assert second.probe_host == second.node_ip


def test_plan_refuses_what_it_cannot_lay_out() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        cluster_plan(0)
    with pytest.raises(ValueError, match="room for"):
        cluster_plan(1000)
    with pytest.raises(ValueError, match="no node named"):
        plan.node_named("camerafleet-node-9", cluster_plan(2))


@pytest.mark.parametrize("size", SIZES)
def test_up_verifies_egress_is_refused_in_every_namespace_and_the_routes_between_nodes(size: int) -> None:
    nodes = cluster_plan(size)
    checks = plan.routing_checks(nodes)
    refused = [c.argv for c in checks if c.finds is None]
    for node in nodes:  # each namespace must refuse to route a cluster address to the outside
        assert node.ip("route", "get", plan.OUTSIDE, "from", node.node_ip) in refused, node.name
    for check in checks:  # the only address outside the cluster's range is the one that must be refused
        outside = [a for a in addresses(check.argv) if not a.subnet_of(CLUSTER)]
        assert outside == ([ipaddress.IPv4Network(plan.OUTSIDE)] if check.finds is None else []), check
    reached = {c.argv: c.finds for c in checks if c.finds is not None}
    for node in nodes[1:]:
        assert reached[node.ip("route", "get", plan.PRIMARY_NODE_IP, "from", node.node_ip)] == f"via {node.veth_host_ip}"
