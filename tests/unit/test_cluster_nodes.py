"""The configuration each node's processes are started with (hack/camerafleet_dev/cluster/node.py), rendered
into a temporary directory: nothing is started. Node 1 must keep what the one-node cluster had; node 2 must
run in its own network namespace with files, ports and identities that do not collide with node 1's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from camerafleet_dev.cluster import addons
from camerafleet_dev.cluster.node import Containerd, Kubelet, KubeProxy
from camerafleet_dev.cluster.plan import NodePlan, cluster_plan
from camerafleet_dev.cluster.state import ClusterState
from camerafleet_dev.devservers.controlplane_pki import _Pki

SERVER = "https://198.18.128.1:6443"
NODE1, NODE2 = cluster_plan(2)


@pytest.fixture
def pki(tmp_path: Path) -> _Pki:
    pki = _Pki(tmp_path / "pki")
    pki.ensure()
    return pki


def kubelet(tmp_path: Path, pki: _Pki, node: NodePlan) -> tuple[dict, list[str]]:
    node_dir = node.data_dir(tmp_path / "cluster")
    k = Kubelet(node_dir, node=node, pki=pki, server=SERVER, containerd_socket=node_dir / "containerd" / "containerd.sock", detached=True)
    k._prepare()
    return yaml.safe_load((node_dir / "kubelet.yaml").read_text()), k._command()[0]


def test_node_one_kubelet_is_as_before(tmp_path: Path, pki: _Pki) -> None:
    config, argv = kubelet(tmp_path, pki, NODE1)
    assert argv[0].endswith("/kubelet"), "node 1 runs in the host's namespace, without nsenter"
    assert "--hostname-override=camerafleet-node" in argv and "--node-ip=198.18.128.1" in argv
    assert "--node-labels=camerafleet.io/pool=system" in argv
    assert config["address"] == "198.18.128.1" and config["healthzBindAddress"] == "127.0.0.1"
    assert "podLogsDir" not in config and "registerWithTaints" not in config
    assert (pki.directory / "kubelet-serving.crt").is_file() and (pki.directory / "kubelet.crt").is_file()
    quirks = {"cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [], "failCgroupV1": False, "failSwapOn": False}
    assert {k: config[k] for k in quirks} == quirks


def test_node_two_kubelet_has_its_own_everything(tmp_path: Path, pki: _Pki) -> None:
    config1, _ = kubelet(tmp_path, pki, NODE1)
    config2, argv = kubelet(tmp_path, pki, NODE2)
    assert argv[:3] == ["nsenter", "--net=/var/run/netns/cf-node2", "--"]
    assert "--hostname-override=camerafleet-node-2" in argv and "--node-ip=198.18.129.2" in argv
    assert f"--root-dir={tmp_path / 'cluster' / 'node-2' / 'kubelet'}" in argv
    assert "--node-labels=camerafleet.io/pool=gpu,nvidia.com/gpu.present=true" in argv
    assert config2["registerWithTaints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert config2["address"] == config2["healthzBindAddress"] == "198.18.129.2" and config2["port"] == 10250
    # Two kubelets sharing /var/log/pods delete each other's Pod log folders (kuberuntime_gc.go).
    assert config2["podLogsDir"] == str(tmp_path / "cluster" / "node-2" / "pod-logs")
    assert config2["containerRuntimeEndpoint"] == f"unix://{tmp_path / 'cluster' / 'node-2' / 'containerd' / 'containerd.sock'}"
    for key in ("cgroupDriver", "cgroupsPerQOS", "enforceNodeAllocatable", "failCgroupV1", "failSwapOn", "clusterDNS", "authentication"):
        assert config2[key] == config1[key], key
    assert (pki.directory / "kubelet-serving-camerafleet-node-2.crt").is_file()
    kubeconfig = yaml.safe_load((tmp_path / "cluster" / "node-2" / "kubelet.kubeconfig").read_text())
    assert kubeconfig["users"][0]["name"] == "system:node:camerafleet-node-2"


def test_node_two_containerd_and_cni_are_its_own(tmp_path: Path) -> None:
    for node in (NODE1, NODE2):
        c = Containerd(node.data_dir(tmp_path), node=node, detached=True)
        c._prepare()
        toml = (c.data_dir / "containerd" / "config.toml").read_text()
        assert f'root = "{c.data_dir}/containerd/root"' in toml and f'address = "{c.socket}"' in toml
        assert "restrict_oom_score_adj = true" in toml and f'conf_dir = "{c.data_dir}/cni/net.d"' in toml
        cni = json.loads((c.data_dir / "cni" / "net.d" / "10-camerafleet.conflist").read_text())
        assert cni["plugins"][0]["bridge"] == node.bridge and cni["plugins"][0]["ipMasq"] is False
        assert cni["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] == node.pod_cidr
        assert c._command()[0][: len(node.exec_prefix())] == list(node.exec_prefix())
    assert NODE2.data_dir(tmp_path) != NODE1.data_dir(tmp_path)


def test_node_two_kube_proxy_runs_in_its_namespace(tmp_path: Path, pki: _Pki) -> None:
    proxy = KubeProxy(NODE2.data_dir(tmp_path), node=NODE2, pki=pki, server=SERVER, detached=True)
    proxy._prepare()
    config = yaml.safe_load((proxy.data_dir / "kube-proxy.yaml").read_text())
    assert config["hostnameOverride"] == "camerafleet-node-2" and config["nodePortAddresses"] == ["198.18.129.2/32"]
    assert config["clusterCIDR"] == "198.18.0.0/17" and config["healthzBindAddress"] == "198.18.129.2:10256"
    assert proxy._command()[0][:3] == ["nsenter", "--net=/var/run/netns/cf-node2", "--"]


def test_every_kubelet_is_bound_to_the_node_role() -> None:
    [binding] = addons.node_rbac(cluster_plan(2))
    assert [s["name"] for s in binding["subjects"]] == ["system:node:camerafleet-node", "system:node:camerafleet-node-2"]


def test_a_state_file_of_the_one_node_cluster_is_read_as_one_node(tmp_path: Path) -> None:
    ClusterState.file(tmp_path).write_text(json.dumps({"pids": {"kubelet": 1, "containerd": 2}}))
    state = ClusterState.load(tmp_path)
    assert state is not None and state.nodes == (NODE1,) and state.keys_of("kubelet") == ["kubelet"]
    state.node_names.append(NODE2.name)
    state.note(NODE2.pid_key("kubelet"), 3)
    again = ClusterState.load(tmp_path)
    assert again is not None and again.nodes == (NODE1, NODE2)
    assert again.keys_of("kubelet") == ["kubelet@camerafleet-node-2", "kubelet"], "down stops node 2's before node 1's"
