"""What `up` records in `<data-dir>/cluster.json` for `down`, `status` and `restart-kubelet`: the process
id of every component (node 1's under their plain names, a further node's as `kind@node-name`) and the
nodes the cluster was started with. A file written before there were several nodes has no `nodes`: it
was a one-node cluster."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from camerafleet_dev.cluster.plan import MAX_NODES, PRIMARY, NodePlan, cluster_plan, node_named

#: The processes of each node, in the order `down` stops them (after the cluster-wide kube-scheduler).
NODE_KINDS = ("policy-agent", "kube-proxy", "kubelet", "containerd")
#: Everything, in the order `down` stops it: a node's processes before the control plane they report to.
STOP_ORDER = (
    "policy-agent",
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


@dataclass
class ClusterState:
    path: Path
    pids: dict[str, int] = field(default_factory=dict)
    node_names: list[str] = field(default_factory=lambda: [PRIMARY.name])

    @classmethod
    def file(cls, data_dir: Path) -> Path:
        return data_dir / "cluster.json"

    @classmethod
    def load(cls, data_dir: Path) -> ClusterState | None:
        path = cls.file(data_dir)
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        return cls(path, dict(saved.get("pids") or {}), list(saved.get("nodes") or [PRIMARY.name]))

    @property
    def nodes(self) -> tuple[NodePlan, ...]:
        every = cluster_plan(MAX_NODES)
        return tuple(node_named(name, every) for name in self.node_names)

    def note(self, key: str, pid: int | None) -> None:
        if pid is not None:
            self.pids[key] = pid
        self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps({"nodes": self.node_names, "pids": self.pids}, indent=2))

    def keys_of(self, kind: str) -> list[str]:
        """The keys of every process of this kind: further nodes' first, node 1's (`kind`) last."""
        return sorted((k for k in self.pids if k == kind or k.startswith(f"{kind}@")), key=lambda k: k == kind)
