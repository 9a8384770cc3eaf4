"""`python -m camerafleet_dev.cluster up|down|status --data-dir out/cluster` (`make cluster-up` /
`make cluster-down`): the one-node cluster in the background, detached from this process.

`up` sets up the node's network, starts every component, loads the images into containerd, deploys
CoreDNS and KubeRay, waits until the node is Ready and both run, and writes `<data-dir>/env` with
KUBECONFIG, KAFKA_BOOTSTRAP, CAMERAFLEET_S3_ENDPOINT and the S3 credentials (mode 0600). `down` stops
everything in reverse order, unmounts what the kubelet mounted and removes the network set-up; data
and logs stay in the data directory (`*.out` per component).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from camerafleet_dev.cluster import addons, network
from camerafleet_dev.cluster.node import NODE_NAME, Containerd, Kubelet, KubeProxy, KubeScheduler
from camerafleet_dev.devservers import helm
from camerafleet_dev.devservers._process import pid_alive, stop_process_group
from camerafleet_dev.devservers.controlplane import ControlPlane, fetch_controlplane
from camerafleet_dev.devservers.kafka import KafkaServer, fetch_kafka
from camerafleet_dev.devservers.minio import MinioServer, fetch_minio
from camerafleet_dev.devservers.node_tools import binary, fetch_node_tools
from camerafleet_dev.images import build_node_images, load

STOP_ORDER = (
    "kube-proxy",
    "kube-scheduler",
    "kubelet",
    "containerd",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
    "kafka",
    "minio",
)


def say(text: str) -> None:
    print(f"[camerafleet] {text}", file=sys.stderr, flush=True)


MIN_FREE_GIB = 15  # the Ray image unpacked in containerd (~9 GiB), Pod logs, and the kubelet's eviction margin


def wait_for(what: str, check: Any, timeout_s: float, interval_s: float = 1.0, explain: Any = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}" + (f": {explain()}" if explain else ""))
        time.sleep(interval_s)


def _node_pressure(control: ControlPlane) -> str:
    """Why Pods may not start: the node's pressure conditions (the kubelet evicts Pods under them)."""
    result = control.kubectl("get", "node", NODE_NAME, "-o", "json")
    if result.returncode != 0:
        return f"the node is not readable: {result.stderr.strip()}"
    conditions = json.loads(result.stdout)["status"].get("conditions") or []
    pressure = [f"{c['type']} ({c.get('message', '')})" for c in conditions if c["type"].endswith("Pressure") and c["status"] == "True"]
    return "node under " + ", ".join(pressure) if pressure else "no node pressure; see kubectl get pods -A and out/cluster/kubelet.out"


def _free_gib(path: Path) -> float:
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**30


def up(data_dir: Path) -> int:
    if os.geteuid() != 0:
        raise SystemExit("the node needs root (network set-up, containerd, kubelet): run `make cluster-up` as root")
    state_file = data_dir / "cluster.json"
    if state_file.exists() and any(pid_alive(pid) for pid in json.loads(state_file.read_text())["pids"].values()):
        say(f"the cluster in {data_dir} is already (partly) running; `make cluster-down` first")
        return 1
    if network.guard_in_place():  # one node per machine: the addresses and the kubelet's ports are fixed
        say("a cluster already runs on this machine (or was not taken down): `make cluster-down` in its checkout first")
        return 1
    if (free := _free_gib(data_dir)) < MIN_FREE_GIB:
        say(f"the node needs {MIN_FREE_GIB} GiB free where {data_dir} is ({free:.1f} GiB): the kubelet would evict its Pods")
        return 1
    started = time.monotonic()
    for fetch in (fetch_kafka, fetch_minio, fetch_controlplane, helm.fetch_helm, fetch_node_tools):
        fetch()
    say(f"tools ready ({time.monotonic() - started:.0f} s); building the node's images (pause, CoreDNS, KubeRay) ...")
    node_images = build_node_images()
    data_dir.mkdir(parents=True, exist_ok=True)
    network.setup(data_dir)
    pids: dict[str, int] = {}

    def note(component: Any) -> None:
        pids[component.kind] = component.pid
        state_file.write_text(json.dumps({"pids": pids}, indent=2))

    minio = MinioServer(data_dir / "minio", listen_host=network.NODE_IP, detached=True).start()
    note(minio)
    kafka = KafkaServer(data_dir / "kafka", listen_host=network.NODE_IP, detached=True).start()
    note(kafka)
    control = ControlPlane(data_dir / "controlplane", detached=True, network=network.NETWORK).start()
    for component in control.components:
        note(component)
    addons.apply(control, addons.node_rbac(), data_dir / "node-rbac.yaml")
    containerd = Containerd(data_dir, detached=True).start()
    note(containerd)
    load(node_images, containerd.socket)
    kubelet = Kubelet(data_dir, pki=control._pki, server=control.server, containerd_socket=containerd.socket, detached=True).start()
    note(kubelet)
    scheduler = KubeScheduler(data_dir, pki=control._pki, server=control.server, detached=True).start()
    note(scheduler)
    proxy = KubeProxy(data_dir, pki=control._pki, server=control.server, detached=True).start()
    note(proxy)
    wait_for(f"node {NODE_NAME} Ready", lambda: _node_ready(control), 180)
    addons.apply(control, addons.coredns(), data_dir / "coredns.yaml")
    addons.install_kuberay(control)
    for what, namespace, deployment in (("CoreDNS", "kube-system", "coredns"), ("the KubeRay operator", "default", "kuberay-operator")):
        wait_for(
            f"{what} available", lambda n=namespace, d=deployment: _available(control, n, d), 300, explain=lambda: _node_pressure(control)
        )
    env = {
        "KUBECONFIG": str(control.kubeconfig),
        "KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CAMERAFLEET_S3_ENDPOINT": minio.endpoint,
        "AWS_ACCESS_KEY_ID": minio.access_key,
        "AWS_SECRET_ACCESS_KEY": minio.secret_key,
        "CONTAINERD_ADDRESS": str(containerd.socket),
        "KUBECTL": str(control.kubectl_path),
        "HELM": str(helm.binary()),
    }
    env_file = data_dir / "env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    say(f"cluster up in {time.monotonic() - started:.0f} s: node {NODE_NAME} Ready, CoreDNS and KubeRay running; settings in {env_file}")
    print(f"KUBECONFIG={control.kubeconfig}\nKAFKA_BOOTSTRAP={kafka.bootstrap}\nCAMERAFLEET_S3_ENDPOINT={minio.endpoint}")
    return 0


def _node_ready(control: ControlPlane) -> bool:
    result = control.kubectl("get", "node", NODE_NAME, "-o", "json")
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


def down(data_dir: Path, timeout_s: float = 30.0) -> int:
    state_file = data_dir / "cluster.json"
    pids: dict[str, int] = json.loads(state_file.read_text())["pids"] if state_file.exists() else {}
    for kind in STOP_ORDER:
        pid = pids.get(kind)
        if pid is not None and pid_alive(pid):
            say(f"stopping {kind} (pid {pid}) ...")
            stop_process_group(pid, timeout_s)
    _stop_leftover_containers(data_dir)
    _stop_leftover_shims(data_dir)
    # The kubelet did not tear its Pods down: release what they held in the host's network stack.
    if removed := network.remove_pod_namespaces():
        say(f"removed the network namespaces of {len(removed)} stopped Pods")
    shutil.rmtree(data_dir / "cni" / "ipam", ignore_errors=True)  # their address leases
    if (proxy := binary("kube-proxy")).exists():
        subprocess.run([str(proxy), "--cleanup"], capture_output=True, check=False)  # its iptables rules
    _unmount_below(data_dir)
    network.teardown(data_dir)
    state_file.unlink(missing_ok=True)
    (data_dir / "env").unlink(missing_ok=True)
    say(f"the cluster is down (data and logs stay in {data_dir})")
    return 0


RUNC_ROOT = "/run/containerd/runc/k8s.io"  # where containerd's runc shims keep the state of namespace k8s.io


def _stop_leftover_containers(data_dir: Path) -> None:
    """Containers live in their own process groups: stopping containerd and its shims leaves them running.
    Those whose bundle is in this node's data dir are killed and deleted with runc."""
    if shutil.which("runc") is None:  # the node's tools were never installed: none of its containers ran
        return
    listed = subprocess.run(["runc", "--root", RUNC_ROOT, "list", "--format", "json"], capture_output=True, text=True, check=False)
    containers = json.loads(listed.stdout or "null") or []
    root = str(data_dir.resolve())
    ours = [c["id"] for c in containers if str(c.get("bundle", "")).startswith(root)]
    for container in ours:
        subprocess.run(["runc", "--root", RUNC_ROOT, "delete", "--force", container], capture_output=True, check=False)
    if ours:
        say(f"stopped {len(ours)} containers of the node")


def _stop_leftover_shims(data_dir: Path) -> None:
    """containerd's shims (and their containers) outlive containerd on purpose; with the node gone they go too."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and str(data_dir).encode() in b" ".join(cmdline)) or (
            cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and b"-namespace" in cmdline and b"k8s.io" in cmdline
        ):
            stop_process_group(int(proc.name), 10.0)


def _unmount_below(data_dir: Path) -> None:
    """The kubelet and containerd mount volumes, rootfs and netns under the data directory."""
    root = str(data_dir.resolve())
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(root)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


def status(data_dir: Path) -> int:
    state_file = data_dir / "cluster.json"
    if not state_file.exists():
        print(f"no cluster in {data_dir} (`make cluster-up` starts one)")
        return 3
    pids: dict[str, int] = json.loads(state_file.read_text())["pids"]
    alive = {k: pid_alive(p) for k, p in pids.items()}
    for kind, ok in alive.items():
        print(f"{kind}: {'running' if ok else 'NOT running'} (pid {pids[kind]})")
    print(f"no-egress guard: {'in place' if network.guard_in_place() else 'MISSING'}")
    return 0 if alive and all(alive.values()) else 3


def restart_kubelet(data_dir: Path) -> int:
    """Stop the kubelet (SIGTERM) and start it again with the same configuration: a fault the e2e tests inject."""
    state_file = data_dir / "cluster.json"
    state = json.loads(state_file.read_text())
    pid = state["pids"].get("kubelet")
    if pid is not None and pid_alive(pid):
        stop_process_group(pid, 30.0)
    control = ControlPlane(data_dir / "controlplane", detached=True, network=network.NETWORK)
    # The running API server's address, from the kubeconfig it was started with: a new ControlPlane object
    # only knows the CA (its ports are chosen afresh), and a kubelet pointed elsewhere never reports again.
    server = yaml.safe_load((data_dir / "controlplane" / "kubeconfig").read_text())["clusters"][0]["cluster"]["server"]
    kubelet = Kubelet(
        data_dir, pki=control._pki, server=server, containerd_socket=data_dir / "containerd" / "containerd.sock", detached=True
    )
    kubelet.start()
    state["pids"]["kubelet"] = kubelet.pid
    state_file.write_text(json.dumps(state, indent=2))
    say(f"kubelet restarted (pid {kubelet.pid})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m camerafleet_dev.cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["up", "down", "status", "load-images", "restart-kubelet"])
    parser.add_argument("--data-dir", type=Path, default=Path("out/cluster"))
    args = parser.parse_args(argv)
    data_dir = args.data_dir.absolute()
    if args.action == "up":
        try:
            return up(data_dir)
        except (Exception, KeyboardInterrupt) as err:  # a half-started node would block the next `up`: take it down
            say("cluster-up failed: stopping what it started ...")
            down(data_dir)
            if isinstance(err, RuntimeError):  # a condition explained in its message, not a bug
                say(f"cluster-up failed: {err}")
                return 1
            raise
    if args.action == "down":
        return down(data_dir)
    if args.action == "restart-kubelet":
        return restart_kubelet(data_dir)
    if args.action == "load-images":
        from camerafleet_dev.images import OPERATOR_IMAGE, RAY_IMAGE

        load([OPERATOR_IMAGE, RAY_IMAGE], data_dir / "containerd" / "containerd.sock")
        return 0
    return status(data_dir)


if __name__ == "__main__":
    sys.exit(main())
