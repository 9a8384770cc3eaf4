"""Node faults the e2e tests inject into the cluster of `make cluster-up`: a kubelet restarted
(`restart-kubelet`), and a whole node stopped as if its host died (`stop-node`: its kubelet, kube-proxy,
containerd, the containers' shims and every container killed at once, nothing told to the API server)
and started again (`start-node`, with the data it had: images, the kubelet's and containerd's state).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from camerafleet_dev.cluster import network
from camerafleet_dev.cluster.node import Containerd, Kubelet, KubeProxy
from camerafleet_dev.cluster.plan import NodePlan, node_named
from camerafleet_dev.cluster.policy_agent import PolicyAgent
from camerafleet_dev.cluster.state import NODE_KINDS, ClusterState
from camerafleet_dev.devservers._process import LocalServer, pid_alive, stop_process_group
from camerafleet_dev.devservers.controlplane import ControlPlane

RUNC_ROOT = "/run/containerd/runc/k8s.io"  # where every node's containerd runc shims keep the state of namespace k8s.io


def say(text: str) -> None:
    print(f"[camerafleet] {text}", file=sys.stderr, flush=True)


def _node(data_dir: Path, node_name: str) -> tuple[ClusterState, NodePlan]:
    state = ClusterState.load(data_dir)
    if state is None:
        raise RuntimeError(f"no cluster in {data_dir} (`make cluster-up` starts one)")
    if node_name not in state.node_names:
        raise RuntimeError(f"the cluster in {data_dir} has no node {node_name!r} (it has {', '.join(state.node_names)})")
    return state, node_named(node_name, state.nodes)


def _stop(state: ClusterState, node: NodePlan, kind: str, timeout_s: float) -> None:
    pid = state.pids.get(node.pid_key(kind))
    if pid is not None and pid_alive(pid):
        stop_process_group(pid, timeout_s)


def _server(data_dir: Path) -> str:
    """The running API server's address, from the kubeconfig it was started with: a new ControlPlane object
    only knows the CA (its ports are chosen afresh), and a kubelet pointed elsewhere never reports again."""
    return str(yaml.safe_load((data_dir / "controlplane" / "kubeconfig").read_text())["clusters"][0]["cluster"]["server"])


def _components(data_dir: Path, node: NodePlan, kinds: tuple[str, ...]) -> list[LocalServer]:
    control = ControlPlane(data_dir / "controlplane", detached=True, network=network.NETWORK)
    node_dir, server = node.data_dir(data_dir), _server(data_dir)
    made: dict[str, LocalServer] = {
        "containerd": Containerd(node_dir, node=node, detached=True),
        "kubelet": Kubelet(
            node_dir,
            node=node,
            pki=control._pki,
            server=server,
            containerd_socket=node_dir / "containerd" / "containerd.sock",
            detached=True,
        ),
        "kube-proxy": KubeProxy(node_dir, node=node, pki=control._pki, server=server, detached=True),
        "policy-agent": PolicyAgent(node_dir, node=node, pki=control._pki, server=server, detached=True),
    }
    return [made[kind] for kind in kinds]


def _start(data_dir: Path, state: ClusterState, node: NodePlan, kinds: tuple[str, ...]) -> None:
    for component in _components(data_dir, node, kinds):
        component.start()
        state.note(node.pid_key(component.kind), component.pid)


def restart_kubelet(data_dir: Path, node_name: str) -> int:
    """Stop a node's kubelet (SIGTERM) and start it again with the same configuration."""
    state, node = _node(data_dir, node_name)
    _stop(state, node, "kubelet", 30.0)
    _start(data_dir, state, node, ("kubelet",))
    say(f"kubelet of {node.name} restarted (pid {state.pids[node.pid_key('kubelet')]})")
    return 0


def stop_node(data_dir: Path, node_name: str) -> int:
    """The node's processes killed (SIGKILL: a host that died says goodbye to no one), then its containers."""
    state, node = _node(data_dir, node_name)
    for kind in NODE_KINDS:  # the policy agent, kube-proxy, kubelet (so nothing restarts the containers), containerd
        _stop(state, node, kind, 0.0)
    containers = stop_containers(node.data_dir(data_dir) / "containerd")
    shims = stop_shims(node.data_dir(data_dir) / "containerd" / "containerd.sock")
    say(f"node {node.name} stopped: its policy agent, kubelet, kube-proxy and containerd, {shims} shims and {containers} containers killed")
    return 0


def start_node(data_dir: Path, node_name: str) -> int:
    """The node's containerd, kubelet, kube-proxy and policy agent started again on the data they had."""
    state, node = _node(data_dir, node_name)
    if running := [kind for kind in NODE_KINDS if pid_alive(state.pids.get(node.pid_key(kind), 0))]:
        raise RuntimeError(f"node {node.name} still runs its {', '.join(running)}: `stop-node` it first")
    _start(data_dir, state, node, NODE_KINDS[::-1])
    say(f"node {node.name} started again")
    return 0


def stop_containers(containerd_dir: Path) -> int:
    """Kill and delete (runc) every container whose bundle is under `containerd_dir`: containers live in their
    own process groups, so stopping containerd and its shims leaves them running."""
    if shutil.which("runc") is None:  # the node's tools were never installed: none of its containers ran
        return 0
    listed = subprocess.run(["runc", "--root", RUNC_ROOT, "list", "--format", "json"], capture_output=True, text=True, check=False)
    root = str(containerd_dir.resolve())
    ours = [c["id"] for c in json.loads(listed.stdout or "null") or [] if str(c.get("bundle", "")).startswith(root)]
    for container in ours:
        subprocess.run(["runc", "--root", RUNC_ROOT, "delete", "--force", container], capture_output=True, check=False)
    return len(ours)


def stop_shims(socket: Path | None = None) -> int:
    """containerd's shims (which outlive containerd on purpose): those serving `socket`, or every one of
    namespace k8s.io (which only the cluster's containerds use)."""
    stopped = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv[0].endswith(b"containerd-shim-runc-v2"):
            continue
        if (str(socket).encode() in argv) if socket is not None else (b"-namespace" in argv and b"k8s.io" in argv):
            stop_process_group(int(proc.name), 10.0)
            stopped += 1
    return stopped
