"""`python -m camerafleet_dev.cluster up|down|status|load-images|restart-kubelet|stop-node|start-node --data-dir out/cluster`
(`make cluster-up` / `make cluster-down` / `make cluster-status`): the cluster in the background, detached
from this process. Two nodes by default (`--nodes 1` for one): `camerafleet-node` in the host's network
namespace (the system pool: CoreDNS, KubeRay, the operator, Ray heads) and `camerafleet-node-2` in a
namespace of its own (the GPU pool: labelled and tainted as one, no GPU). See `plan.py` for the addresses.

`up` sets up the network, starts every component, loads the images into every node's containerd, deploys
CoreDNS and KubeRay, waits until the nodes are Ready (with their pools' labels and taints) and both run,
and writes `<data-dir>/env` with KUBECONFIG, KAFKA_BOOTSTRAP, CAMERAFLEET_S3_ENDPOINT, the S3 credentials
and CAMERAFLEET_NODES (mode 0600). `down` stops everything in reverse order, unmounts what the kubelets mounted and
removes the network set-up; data and logs stay in the data directory (`*.out` per component, node 2's
in `node-2/`). `restart-kubelet [--node NAME]` restarts one kubelet (node 1's unless told); `stop-node --node
NAME` kills a node's processes and containers as if its host died and `start-node --node NAME` brings it
back: faults the e2e tests inject (`faults.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from camerafleet_dev.cluster import addons, faults, network, policy_agent
from camerafleet_dev.cluster.node import Containerd, Kubelet, KubeProxy, KubeScheduler
from camerafleet_dev.cluster.plan import MAX_NODES, PRIMARY, NodePlan, cluster_plan
from camerafleet_dev.cluster.policy_agent import PolicyAgent
from camerafleet_dev.cluster.state import NODE_KINDS, STOP_ORDER, ClusterState
from camerafleet_dev.cluster.teardown import down
from camerafleet_dev.devservers import helm
from camerafleet_dev.devservers._process import LocalServer, pid_alive
from camerafleet_dev.devservers.controlplane import ControlPlane, fetch_controlplane
from camerafleet_dev.devservers.kafka import KafkaServer, fetch_kafka
from camerafleet_dev.devservers.minio import MinioServer, fetch_minio
from camerafleet_dev.devservers.node_tools import fetch_node_tools
from camerafleet_dev.images import build_node_images, load

__all__ = ["STOP_ORDER", "down", "main", "status", "up"]


def say(text: str) -> None:
    print(f"[camerafleet] {text}", file=sys.stderr, flush=True)


MIN_FREE_GIB = 15  # the Ray image unpacked in containerd (~9 GiB), Pod logs, and the kubelet's eviction margin
MIN_FREE_GIB_PER_EXTRA_NODE = 10  # each further node's containerd holds its own copy of every image


def wait_for(what: str, check: Any, timeout_s: float, interval_s: float = 1.0, explain: Any = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}" + (f": {explain()}" if explain else ""))
        time.sleep(interval_s)


def _node_pressure(control: ControlPlane, node: NodePlan, data_dir: Path) -> str:
    """Why Pods may not start: the node's pressure conditions (the kubelet evicts Pods under them)."""
    result = control.kubectl("get", "node", node.name, "-o", "json")
    if result.returncode != 0:
        return f"node {node.name} is not readable: {result.stderr.strip()}; see {node.data_dir(data_dir) / 'kubelet.out'}"
    conditions = json.loads(result.stdout)["status"].get("conditions") or []
    pressure = [f"{c['type']} ({c.get('message', '')})" for c in conditions if c["type"].endswith("Pressure") and c["status"] == "True"]
    if pressure:
        return f"node {node.name} under " + ", ".join(pressure)
    return f"no pressure on node {node.name}; see kubectl get pods -A and {node.data_dir(data_dir) / 'kubelet.out'}"


def _free_gib(path: Path) -> float:
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**30


def _start(component: LocalServer, node: NodePlan, state: ClusterState) -> Any:
    """Start a node's process and record it; a failure names the node (the message names the log)."""
    try:
        component.start()
    except RuntimeError as err:
        raise RuntimeError(f"{component.kind} of node {node.name} did not start: {err}") from err
    state.note(node.pid_key(component.kind), component.pid)
    return component


def up(data_dir: Path, nodes_wanted: int = MAX_NODES) -> int:
    if os.geteuid() != 0:
        raise SystemExit("the nodes need root (network set-up, containerd, kubelet): run `make cluster-up` as root")
    existing = ClusterState.load(data_dir)
    if existing is not None and any(pid_alive(pid) for pid in existing.pids.values()):
        say(f"the cluster in {data_dir} is already (partly) running; `make cluster-down` first")
        return 1
    # One cluster per machine: the addresses, the namespaces and node 1's kubelet port are fixed.
    if network.guard_in_place() or network.namespaces_in_place(cluster_plan(MAX_NODES)):
        say("a cluster already runs on this machine (or was not taken down): `make cluster-down` in its checkout first")
        return 1
    needed = MIN_FREE_GIB + MIN_FREE_GIB_PER_EXTRA_NODE * (nodes_wanted - 1)
    if (free := _free_gib(data_dir)) < needed:
        say(
            f"{nodes_wanted} nodes need {needed} GiB free where {data_dir} is ({free:.1f} GiB): the kubelets would evict their Pods"
            + (" (`--nodes 1`, or CLUSTER_NODES=1 for make, needs less)" if nodes_wanted > 1 else "")
        )
        return 1
    nodes = cluster_plan(nodes_wanted)
    started = time.monotonic()
    for fetch in (fetch_kafka, fetch_minio, fetch_controlplane, helm.fetch_helm, fetch_node_tools, policy_agent.fetch):
        fetch()
    say(f"tools ready ({time.monotonic() - started:.0f} s); building the node's images (pause, CoreDNS, KubeRay) ...")
    node_images = build_node_images()
    data_dir.mkdir(parents=True, exist_ok=True)
    state = ClusterState(ClusterState.file(data_dir), node_names=[n.name for n in nodes])
    state.save()
    network.setup(data_dir, nodes)

    def note(component: Any) -> None:
        state.note(component.kind, component.pid)

    minio = MinioServer(data_dir / "minio", listen_host=network.NODE_IP, detached=True).start()
    note(minio)
    kafka = KafkaServer(data_dir / "kafka", listen_host=network.NODE_IP, detached=True).start()
    note(kafka)
    control = ControlPlane(data_dir / "controlplane", detached=True, network=network.NETWORK).start()
    for component in control.components:
        note(component)
    addons.apply(control, addons.node_rbac(nodes), data_dir / "node-rbac.yaml")
    if stale := addons.forget_other_nodes(control, nodes):
        say(f"deleted the Node objects of an earlier run that are not in this cluster: {', '.join(stale)}")
    sockets: dict[str, Path] = {}
    for node in nodes:
        containerd = _start(Containerd(node.data_dir(data_dir), node=node, detached=True), node, state)
        sockets[node.name] = containerd.socket
        say(f"loading the node images into the containerd of {node.name} ...")
        load(node_images, containerd.socket)
    for node in nodes:
        kubelet = Kubelet(
            node.data_dir(data_dir), node=node, pki=control._pki, server=control.server, containerd_socket=sockets[node.name], detached=True
        )
        _start(kubelet, node, state)
    scheduler = KubeScheduler(data_dir, pki=control._pki, server=control.server, detached=True).start()
    note(scheduler)
    addons.apply(control, policy_agent.rbac(), data_dir / "policy-agent-rbac.yaml")
    for node in nodes:
        _start(KubeProxy(node.data_dir(data_dir), node=node, pki=control._pki, server=control.server, detached=True), node, state)
        _start(PolicyAgent(node.data_dir(data_dir), node=node, pki=control._pki, server=control.server, detached=True), node, state)
    for node in nodes:
        wait_for(
            f"node {node.name} Ready",
            lambda n=node: _node_ready(control, n.name),
            180,
            explain=lambda n=node: _node_pressure(control, n, data_dir),
        )
    addons.apply_pools(control, nodes)
    for node in nodes:
        if missing := addons.pools_in_place(control, node):
            raise RuntimeError(f"node {node.name} lacks its pool's {', '.join(missing)} after `kubectl label/taint`")
    addons.apply(control, addons.coredns(), data_dir / "coredns.yaml")
    addons.install_kuberay(control)
    for what, namespace, deployment in (("CoreDNS", "kube-system", "coredns"), ("the KubeRay operator", "default", "kuberay-operator")):
        wait_for(
            f"{what} available",
            lambda n=namespace, d=deployment: _available(control, n, d),
            300,
            explain=lambda: "; ".join(_node_pressure(control, n, data_dir) for n in nodes),
        )
    env = {
        "KUBECONFIG": str(control.kubeconfig),
        "KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CAMERAFLEET_S3_ENDPOINT": minio.endpoint,
        "AWS_ACCESS_KEY_ID": minio.access_key,
        "AWS_SECRET_ACCESS_KEY": minio.secret_key,
        "CONTAINERD_ADDRESS": str(sockets[PRIMARY.name]),
        "KUBECTL": str(control.kubectl_path),
        "HELM": str(helm.binary()),
        "CAMERAFLEET_NODES": ",".join(n.name for n in nodes),
    }
    env_file = data_dir / "env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    names = ", ".join(n.name for n in nodes)
    say(
        f"cluster up in {time.monotonic() - started:.0f} s: nodes {names} Ready, NetworkPolicies enforced (kube-router), "
        f"CoreDNS and KubeRay running; settings in {env_file}"
    )
    print(f"KUBECONFIG={control.kubeconfig}\nKAFKA_BOOTSTRAP={kafka.bootstrap}\nCAMERAFLEET_S3_ENDPOINT={minio.endpoint}")
    return 0


def _node_ready(control: ControlPlane, name: str = PRIMARY.name) -> bool:
    result = control.kubectl("get", "node", name, "-o", "json")
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout)["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _available(control: ControlPlane, namespace: str, name: str) -> bool:
    result = control.kubectl("get", "deployment", name, "-n", namespace, "-o", "json")
    if result.returncode != 0:
        return False
    status = json.loads(result.stdout).get("status") or {}
    return int(status.get("availableReplicas") or 0) >= 1


def status(data_dir: Path) -> int:
    """Each process (the cluster's, then each node's) and each namespace's no-egress guard."""
    state = ClusterState.load(data_dir)
    if state is None:
        print(f"no cluster in {data_dir} (`make cluster-up` starts one)")
        return 3
    alive = {key: pid_alive(pid) for key, pid in state.pids.items()}

    def line(key: str, label: str, indent: str = "") -> None:
        if key in state.pids:
            print(f"{indent}{label}: {'running' if alive[key] else 'NOT running'} (pid {state.pids[key]})")
        else:
            print(f"{indent}{label}: NOT started")

    for kind in (k for k in STOP_ORDER[::-1] if k not in NODE_KINDS):
        line(kind, kind)
    missing = []
    for node in state.nodes:
        where = "the host's network namespace" if node.primary else f"network namespace {node.netns}"
        print(f"node {node.name} ({node.node_ip}, Pods {node.pod_cidr}, {where}):")
        for kind in NODE_KINDS[::-1]:
            line(node.pid_key(kind), kind, "  ")
        report = network.guard_report(node)
        if all(report.values()):
            print("  no-egress guard: in place" + ("" if node.primary else " (and the host's routes to its Pods)"))
        else:
            missing.append(node.name)
            print(f"  no-egress guard: MISSING ({', '.join(k for k, ok in report.items() if not ok)})")
    every_started = all(node.pid_key(kind) in state.pids for node in state.nodes for kind in NODE_KINDS)
    print("no-egress guard: " + (f"MISSING on {', '.join(missing)}" if missing else "in place in every namespace"))
    return 0 if alive and all(alive.values()) and every_started and not missing else 3


FAULTS = {"restart-kubelet": faults.restart_kubelet, "stop-node": faults.stop_node, "start-node": faults.start_node}


def load_images(data_dir: Path) -> int:
    """The project's images into every node's containerd (the node images are loaded by `up`)."""
    from camerafleet_dev.images import OPERATOR_IMAGE, RAY_IMAGE

    state = ClusterState.load(data_dir)
    for node in state.nodes if state is not None else (PRIMARY,):
        say(f"loading the project's images into the containerd of {node.name} ...")
        load([OPERATOR_IMAGE, RAY_IMAGE], node.data_dir(data_dir) / "containerd" / "containerd.sock")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m camerafleet_dev.cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["up", "down", "status", "load-images", *FAULTS])
    parser.add_argument("--data-dir", type=Path, default=Path("out/cluster"))
    parser.add_argument(
        "--nodes", type=int, choices=range(1, MAX_NODES + 1), default=MAX_NODES, help=f"up: how many nodes (default {MAX_NODES})"
    )
    parser.add_argument("--node", default=PRIMARY.name, help=f"restart-kubelet, stop-node, start-node: which node (default {PRIMARY.name})")
    args = parser.parse_args(argv)
    data_dir = args.data_dir.absolute()
    if args.action == "up":
        try:
            return up(data_dir, args.nodes)
        except (Exception, KeyboardInterrupt) as err:  # a half-started cluster would block the next `up`: take it down
            say("cluster-up failed: stopping what it started ...")
            down(data_dir)
            if isinstance(err, RuntimeError):  # a condition explained in its message, not a bug
                say(f"cluster-up failed: {err}")
                return 1
            raise
    if args.action == "down":
        return down(data_dir)
    if args.action in FAULTS:
        try:
            return FAULTS[args.action](data_dir, args.node)
        except RuntimeError as err:
            say(f"{args.action} failed: {err}")
            return 1
    if args.action == "load-images":
        return load_images(data_dir)
    return status(data_dir)


if __name__ == "__main__":
    sys.exit(main())
