"""`down`: stop everything `up` started, in reverse order, and release what the nodes left behind in the
host: containers and shims that outlive containerd on purpose, Pod network namespaces, the kubelets' and
containerd's mounts, kube-proxy's iptables rules, and the network set-up (namespaces, veths, routes,
rules, the guard). Data and logs stay in the data directory (`*.out` per component, `node-2/` for node 2).

Every step is best effort and runs whatever failed before it: `down` is also how a failed `up` cleans up.
The network teardown covers every node the plan can have, not only those of the state file, so a crashed
`up` of two nodes is cleaned up by a `down` that found no state.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from camerafleet_dev.cluster import network, policy_agent
from camerafleet_dev.cluster.faults import stop_containers, stop_shims
from camerafleet_dev.cluster.plan import MAX_NODES, cluster_plan
from camerafleet_dev.cluster.state import STOP_ORDER, ClusterState
from camerafleet_dev.devservers._process import pid_alive, stop_process_group
from camerafleet_dev.devservers.node_tools import binary


def say(text: str) -> None:
    print(f"[camerafleet] {text}", file=sys.stderr, flush=True)


def down(data_dir: Path, timeout_s: float = 30.0) -> int:
    state = ClusterState.load(data_dir)
    pids = state.pids if state is not None else {}
    for kind in STOP_ORDER:
        for key in state.keys_of(kind) if state is not None else []:
            pid = pids[key]
            if pid_alive(pid):
                say(f"stopping {key} (pid {pid}) ...")
                stop_process_group(pid, timeout_s)
    if containers := stop_containers(data_dir):  # any node's: node 2's data is a folder of the cluster's
        say(f"stopped {containers} containers of the nodes")
    stop_shims()
    every = cluster_plan(MAX_NODES)
    # The kubelets did not tear their Pods down: release what they held in the host's network stack.
    if removed := network.remove_pod_namespaces(every):
        say(f"removed the network namespaces of {len(removed)} stopped Pods")
    for node in every:
        shutil.rmtree(node.data_dir(data_dir) / "cni" / "ipam", ignore_errors=True)  # their address leases
    policy_agent.cleanup(every)  # before the namespaces go: its ipsets are referenced by its rules
    if (proxy := binary("kube-proxy")).exists():
        # Node 1's iptables rules; a further node's go with its network namespace.
        subprocess.run([str(proxy), "--cleanup"], capture_output=True, check=False)
    _unmount_below(data_dir)
    network.teardown(data_dir, every)
    ClusterState.file(data_dir).unlink(missing_ok=True)
    (data_dir / "env").unlink(missing_ok=True)
    say(f"the cluster is down (data and logs stay in {data_dir})")
    return 0


def _unmount_below(data_dir: Path) -> None:
    """The kubelets and containerds mount volumes, rootfs and netns under the data directory (every node's
    processes run in the host's mount namespace, so their mounts are all listed here)."""
    root = str(data_dir.resolve())
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(root)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
