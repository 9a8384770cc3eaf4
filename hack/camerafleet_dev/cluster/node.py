"""A node's processes: containerd (Debian package), kubelet and kube-proxy (built by `node_tools.py`), and
the cluster's one kube-scheduler, each a `LocalServer` with its configuration and state in the node's data
directory (node 1: the cluster's data directory; a further node: a folder of it, `node-2`).

A node in a network namespace of its own (`plan.py`) runs its containerd, kubelet and kube-proxy there
(`NodePlan.exec_prefix`), so the kubelet's node address is one of its interfaces, the CNI bridge is created
there, and kube-proxy's rules are that namespace's. Its ports are the upstream defaults (nothing else
listens in that namespace), and its health endpoints listen on the node's address so that the harness,
in the host's namespace, can reach them. Its Pod logs go to a folder of its own: a kubelet deletes the
folders of Pods it does not know in its Pod log directory, so two kubelets sharing /var/log/pods would
delete each other's.

What these VMs need (FIELD-NOTES §3b, confirmed here): containerd's CRI `restrict_oom_score_adj` (a
negative oom_score_adj is refused), kubelet on cgroup v1 with the cgroupfs driver, no QoS cgroups and no
node-allocatable enforcement, and a Pod sandbox image whose command is an absolute path. containerd gets
a proxy address that nothing listens on, so an image pull can never reach a registry: every image is
imported beforehand.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from camerafleet_dev.cluster import network
from camerafleet_dev.cluster.plan import PRIMARY, NodePlan
from camerafleet_dev.devservers._process import LocalServer, free_port, port_accepts
from camerafleet_dev.devservers.controlplane_pki import _b64_file, _Pki, _write_kubeconfig
from camerafleet_dev.devservers.node_tools import binary
from camerafleet_dev.images import PAUSE_IMAGE

NODE_NAME = PRIMARY.name
KUBELET_PORT = 10250
# The upstream default ports, for a node in a namespace of its own (node 1 takes free ports of the host).
KUBELET_HEALTHZ_PORT = 10248
PROXY_METRICS_PORT = 10249
PROXY_HEALTHZ_PORT = 10256
# An address nothing listens on: containerd's pulls (if any were tried) fail here, on the machine.
NO_REGISTRY_PROXY = "http://127.0.0.1:9"


def component_kubeconfig(pki: _Pki, path: Path, server: str, name: str, common_name: str, groups: list[str]) -> Path:
    """A kubeconfig with a client certificate of its own for a node component (least privilege: its
    bootstrap RBAC role, e.g. system:kube-scheduler, not system:masters)."""
    cert, key = pki.issue(name, common_name, groups)
    return _write_kubeconfig(
        path,
        server=server,
        ca_cert=pki.ca_cert,
        user=common_name,
        credentials={"client-certificate-data": _b64_file(cert), "client-key-data": _b64_file(key)},
    )


class Containerd(LocalServer):
    kind = "containerd"

    def __init__(self, data_dir: Path, *, node: NodePlan = PRIMARY, detached: bool) -> None:
        super().__init__(data_dir, detached=detached)
        self.node = node

    @property
    def socket(self) -> Path:
        return self.data_dir / "containerd" / "containerd.sock"

    @property
    def log_path(self) -> Path:
        return self.stdout_path

    def _prepare(self) -> None:
        base = self.data_dir / "containerd"
        (self.data_dir / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "cni" / "net.d" / "10-camerafleet.conflist").write_text(
            json.dumps(network.cni_config(self.data_dir / "cni" / "ipam", self.node), indent=2)
        )
        base.mkdir(parents=True, exist_ok=True)
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (base / "config.toml").write_text(
            "version = 2\n"
            f'root = "{base}/root"\nstate = "{base}/state"\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f"[{cri}]\n"
            f'  sandbox_image = "{PAUSE_IMAGE}"\n'
            "  restrict_oom_score_adj = true\n"
            f'[{cri}.containerd]\n  snapshotter = "overlayfs"\n'
            f'[{cri}.containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n'
            f"[{cri}.containerd.runtimes.runc.options]\n  SystemdCgroup = false\n"
            f'[{cri}.cni]\n  bin_dir = "/usr/lib/cni"\n  conf_dir = "{self.data_dir}/cni/net.d"\n'
        )

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        env = dict(os.environ, HTTP_PROXY=NO_REGISTRY_PROXY, HTTPS_PROXY=NO_REGISTRY_PROXY, NO_PROXY="")
        return [*self.node.exec_prefix(), "containerd", "--config", str(self.data_dir / "containerd" / "config.toml")], env

    def _ready(self) -> bool:
        if not self.socket.exists():
            return False
        return subprocess.run(["ctr", "--address", str(self.socket), "version"], capture_output=True, check=False).returncode == 0

    def images(self) -> set[str]:
        out = subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", "images", "ls", "-q"], capture_output=True, text=True, check=True
        )
        return set(out.stdout.split())


class Kubelet(LocalServer):
    kind = "kubelet"

    def __init__(
        self, data_dir: Path, *, pki: _Pki, server: str, containerd_socket: Path, detached: bool, node: NodePlan = PRIMARY
    ) -> None:
        super().__init__(data_dir, startup_timeout_s=120.0, detached=detached)
        self.pki, self.server, self.containerd_socket, self.node = pki, server, containerd_socket, node
        self.healthz_port = free_port() if node.primary else KUBELET_HEALTHZ_PORT

    @property
    def log_path(self) -> Path:
        return self.stdout_path

    @property
    def root_dir(self) -> Path:
        return self.data_dir / "kubelet"

    def _prepare(self) -> None:
        self.root_dir.mkdir(parents=True, exist_ok=True)
        node = self.node
        suffix = "" if node.primary else f"-{node.name}"  # node 1's certificates keep their names
        cert, key = self.pki.issue(f"kubelet-serving{suffix}", node.name, [], server_ips=[node.node_ip])
        component_kubeconfig(
            self.pki, self.data_dir / "kubelet.kubeconfig", self.server, f"kubelet{suffix}", f"system:node:{node.name}", ["system:nodes"]
        )
        # Pods with dnsPolicy Default (CoreDNS) get this resolver file: no nameserver, so no upstream.
        (self.data_dir / "resolv.conf").write_text("# no upstream DNS: names outside cluster.local do not resolve\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": node.node_ip,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": node.probe_host,
            "healthzPort": self.healthz_port,
            "tlsCertFile": str(cert),
            "tlsPrivateKeyFile": str(key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local",
            "clusterDNS": [network.DNS_SERVICE_IP],
            "resolvConf": str(self.data_dir / "resolv.conf"),
            "serializeImagePulls": False,
            # Images are imported, never pulled: none may be collected to make room.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
            "registerNode": True,
            "maxPods": 64,
        }
        if node.taints:  # from the first moment the node exists, so no Pod lands on it before `up` checks them
            config["registerWithTaints"] = [{"key": x.key, "value": x.value, "effect": x.effect} for x in node.taints]
        if not node.primary:
            config["podLogsDir"] = str(self.data_dir / "pod-logs")
        (self.data_dir / "kubelet.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        labels = ",".join(f"{k}={v}" for k, v in self.node.labels)
        return [
            *self.node.exec_prefix(),
            str(binary("kubelet")),
            f"--config={self.data_dir / 'kubelet.yaml'}",
            f"--kubeconfig={self.data_dir / 'kubelet.kubeconfig'}",
            f"--root-dir={self.root_dir}",
            f"--hostname-override={self.node.name}",
            f"--node-ip={self.node.node_ip}",
            *([f"--node-labels={labels}"] if labels else []),  # applied when the node registers (`up` checks them after)
            "--v=1",
        ], dict(os.environ)

    def _ready(self) -> bool:
        host = self.node.probe_host
        if not port_accepts(self.healthz_port, host=host):
            return False
        try:
            import urllib.request

            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://{host}:{self.healthz_port}/healthz", timeout=5
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False


class KubeScheduler(LocalServer):
    kind = "kube-scheduler"

    def __init__(self, data_dir: Path, *, pki: _Pki, server: str, detached: bool) -> None:
        super().__init__(data_dir, startup_timeout_s=60.0, detached=detached)
        self.pki, self.server = pki, server
        self.port = free_port()

    @property
    def log_path(self) -> Path:
        return self.stdout_path

    def _prepare(self) -> None:
        component_kubeconfig(self.pki, self.data_dir / "scheduler.kubeconfig", self.server, "kube-scheduler", "system:kube-scheduler", [])

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        kubeconfig = self.data_dir / "scheduler.kubeconfig"
        return [
            str(binary("kube-scheduler")),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.data_dir / 'scheduler-certs'}",
        ], dict(os.environ)

    def _ready(self) -> bool:
        return port_accepts(self.port)


class KubeProxy(LocalServer):
    kind = "kube-proxy"

    def __init__(self, data_dir: Path, *, pki: _Pki, server: str, detached: bool, node: NodePlan = PRIMARY) -> None:
        super().__init__(data_dir, startup_timeout_s=60.0, detached=detached)
        self.pki, self.server, self.node = pki, server, node
        if node.primary:
            self.healthz_port, self.metrics_port = free_port(), free_port()
        else:
            self.healthz_port, self.metrics_port = PROXY_HEALTHZ_PORT, PROXY_METRICS_PORT

    @property
    def log_path(self) -> Path:
        return self.stdout_path

    def _prepare(self) -> None:
        node = self.node
        kubeconfig = component_kubeconfig(self.pki, self.data_dir / "proxy.kubeconfig", self.server, "kube-proxy", "system:kube-proxy", [])
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "clusterCIDR": network.POD_CIDR,
            "hostnameOverride": node.name,
            "healthzBindAddress": f"{node.probe_host}:{self.healthz_port}",
            "metricsBindAddress": f"{node.probe_host}:{self.metrics_port}",
            "conntrack": {"maxPerCore": 0},  # leave the host's conntrack sysctls alone
            "nodePortAddresses": [f"{node.node_ip}/32"],
        }
        if not node.primary:
            # kube-proxy exits when it cannot set these (as sysctls of its namespace): left as they are.
            config["conntrack"] = {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"}
        (self.data_dir / "kube-proxy.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        return [*self.node.exec_prefix(), str(binary("kube-proxy")), f"--config={self.data_dir / 'kube-proxy.yaml'}"], dict(os.environ)

    def _ready(self) -> bool:
        return port_accepts(self.healthz_port, host=self.node.probe_host)
